-- billing: a durable consumer (README, "Durable consumers"). It reads the stream
-- `orders` as member "billing" of group "billing"; create the capture first:
--
--   HUB.STREAM CREATE orders CAPTURE orders.*
--
-- so every published orders.* event is stored and reaches on_event once it is
-- committed, even if this handler was reloaded, crashed or not loaded then.
-- Each entry is charged through the listener `payments.charge.v1` (a service
-- that answers "ok" or an error); returning acknowledges the entry. An error
-- (or a hub.call timeout) leaves it pending: it is retried after 1 s, 2 s, 4 s,
-- and after the 5th delivery it moves to `orders:dead` with the error.
-- Events that are not charges (name other than orders.paid.*) are acknowledged
-- without a call.
local hub = require("hub")
local cjson = require("cjson")

local charged = 0

return {
  consume = { stream = "orders", group = "billing", max_deliveries = 5, retry_ms = 1000 },

  on_event = function(ev)
    if not (ev.name and ev.name:match("^orders%.paid%.")) then return end
    local ok, order = pcall(cjson.decode, ev.data or "")
    if not ok or type(order) ~= "table" or not order.id then
      error("not a paid order: " .. tostring(ev.data)) -- dead-lettered after 5 tries
    end
    local reply, err = hub.call("payments.charge.v1", cjson.encode({ order = order.id, entry = ev.entry }), 2000)
    if reply ~= "ok" then error("charge failed: " .. tostring(reply or err)) end
    charged = charged + 1
    hub.publish("billing.charged.v1", cjson.encode({ order = order.id, n = charged }))
  end,

  snapshot = function() return { charged = charged } end,
  on_reload = function(old) charged = old and old.charged or 0 end,
}
