-- capture_consumer: the Lua durable consumer of the bench row cap_lua_ack
-- (bench/run.sh). The stream bench.cap captures bench.cap.in
-- (bench/streams/capture_setup.sh); every entry is republished on bench.cap.out,
-- where the loadgen's subscriber counts it, and returning acknowledges it.
local hub = require("hub")

return {
  consume = { stream = "bench.cap", group = "bench" },
  on_event = function(ev)
    hub.publish("bench.cap.out", ev.data)
  end,
}
