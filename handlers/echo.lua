-- echo: request/reply (HUB.CALL). Shows listen + on_call: the return value is the
-- reply, a number is sent as its tostring, and error(...) becomes an error reply.
--
--   echo.v1      replies with the payload unchanged; an empty payload is refused
--   time.now.v1  replies with the hub's clock in ms since the epoch, e.g. "1700000000000"
local hub = require("hub")

return {
  listen = { "echo.v1", "time.now.v1" },
  on_call = function(ev)
    if ev.name == "time.now.v1" then
      return math.floor(hub.now()) -- an integer, so the reply has no ".0"
    end
    if ev.data == "" then
      error("echo.v1: empty payload", 0) -- level 0: the reply carries no file:line
    end
    return ev.data
  end,
}
