-- counter: the DESIGN.md example. Shows a broadcast subscription (orders.*.v1), a
-- request/reply listener (orders.count.v1, answered with a number) and state that
-- survives a hot reload through snapshot/on_reload.
--
-- Each order event is acknowledged on orders.seen.v1 as {"n": <count>, "name": <event>}.
-- orders.seen.v1 itself matches orders.*.v1. The hub never delivers a handler's own
-- publications back to it, so the counter cannot feed itself; the guard below also
-- skips acknowledgements that some other publisher sends.
local hub = require("hub")
local cjson = require("cjson")

local SEEN = "orders.seen.v1"

local seen = 0

return {
  subscribe = { "orders.*.v1" },
  on_event = function(ev)
    if ev.name == SEEN then return end
    seen = seen + 1
    hub.publish(SEEN, cjson.encode({ n = seen, name = ev.name }))
  end,

  listen = { "orders.count.v1" },
  on_call = function()
    return seen -- a number: the hub replies with tostring(seen)
  end,

  snapshot = function()
    return { seen = seen }
  end,
  on_reload = function(old)
    seen = old and old.seen or 0 -- old is nil if the previous version kept no snapshot
  end,
}
