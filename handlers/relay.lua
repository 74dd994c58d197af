-- relay: the smallest useful handler. Shows a plain subscription: every event on
-- bench.in is republished unchanged on bench.out. The benchmark and the zero-loss
-- reload test rely on it staying exactly this simple.
local hub = require("hub")

return {
  subscribe = { "bench.in" },
  on_event = function(ev)
    hub.publish("bench.out", ev.data)
  end,
}
