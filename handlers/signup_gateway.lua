-- signup_gateway: a versioned translation gateway. Shows how to introduce a new
-- event version without touching producers: every user.signup.v1 is republished as
-- user.signup.v2, and bad input is logged and counted instead of crashing the handler.
--
--   v1  {"name": "Ada King Lovelace", "email": "ada@example.org", ...}
--   v2  {"schema": 2, "first_name": "Ada", "last_name": "King Lovelace",
--        "email": "ada@example.org", ...}
--
-- name is trimmed and split at its first run of whitespace: first_name is the first
-- word, last_name the rest ("" for a one-word name). Every other field is copied
-- unchanged; schema is always 2. A payload that is not a JSON object, or whose name
-- is missing, not a string or blank, is invalid: logged as a warning, counted, and
-- not republished. The call user.signup.stats.v1 replies {"translated": n, "invalid": n}.
local hub = require("hub")
local cjson = require("cjson")
local payload = require("payload")

local translated, invalid = 0, 0

-- Returns the v2 table for a decoded v1 table, or nil and the reason.
local function to_v2(v1)
  if type(v1.name) ~= "string" then
    return nil, "name is missing or not a string"
  end
  local first, rest = v1.name:match("^%s*(%S+)%s*(.-)%s*$")
  if not first then
    return nil, "name is blank"
  end
  local v2 = {}
  for k, v in pairs(v1) do
    v2[k] = v
  end
  v2.name = nil
  v2.schema = 2
  v2.first_name, v2.last_name = first, rest
  return v2
end

return {
  subscribe = { "user.signup.v1" },
  on_event = function(ev)
    local v1, err = payload.object(ev.data)
    local v2
    if v1 then
      v2, err = to_v2(v1)
    end
    if not v2 then
      invalid = invalid + 1
      hub.log("warning", ("user.signup.v1 event %d dropped: %s"):format(ev.id, err))
      return
    end
    translated = translated + 1
    hub.publish("user.signup.v2", cjson.encode(v2))
  end,

  listen = { "user.signup.stats.v1" },
  on_call = function()
    return cjson.encode({ translated = translated, invalid = invalid })
  end,

  snapshot = function()
    return { translated = translated, invalid = invalid }
  end,
  on_reload = function(old)
    if old then
      translated, invalid = old.translated or 0, old.invalid or 0
    end
  end,
}
