-- quote_v1_gateway: keeps old clients of quote.v1 working once the service moved to
-- quote.v2 (quote_v2.lua): a translation gateway for a unicast name. It answers
-- quote.v1 by translating the old request into a quote.v2 call and the reply back.
--
--   quote.v1  request: a bare SKU ("A-1")   reply: the unit price in cents ("1250")
--
-- Takeover: if another listener registers quote.v1 later (a client's HUB.LISTEN),
-- it takes the name over and the hub calls on_replaced here. The gateway then stays
-- registered underneath as the fallback (the name returns to it when that listener
-- goes), logs the change and publishes ops.listener.replaced
-- {"name": "quote.v1", "handler": "quote_v1_gateway"} for dashboards.
--
-- Retiring: once HUB.STATS quote.v1 shows no more calls (last_minute 0), delete
-- this file and HUB.RELOAD quote_v1_gateway: quote.v1's callers then get
-- "ERR no listener for 'quote.v1'".
local hub = require("hub")
local cjson = require("cjson")
local payload = require("payload")

return {
  listen = { "quote.v1" },
  on_call = function(ev)
    if ev.data == "" then
      error("quote.v1: empty sku", 0)
    end
    -- quote.v2 is a Lua listener: hub.call answers at once, even from on_call.
    local reply, err = hub.call("quote.v2", cjson.encode({ sku = ev.data, qty = 1 }))
    if not reply then
      error((err:gsub("^quote%.v2: ", "quote.v1: ")), 0) -- same reasons, the old name
    end
    local v2 = assert(payload.object(reply))
    return ("%d"):format(v2.unit_cents) -- JSON numbers decode as floats: no "1250.0"
  end,
  on_replaced = function(name)
    hub.log("notice", name .. " was taken over by a newer listener; standing by as its fallback")
    hub.publish("ops.listener.replaced", cjson.encode({ name = name, handler = hub.name }))
  end,
}
