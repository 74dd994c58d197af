-- payload: JSON payload helpers shared by handlers (require("payload") finds it in
-- handlers/lib/). A module like this is loaded into each handler's own state.
local cjson = require("cjson")

local payload = {}

-- Decodes data as a JSON object. Returns the table, or nil and the reason.
-- ("[]" decodes to an empty table too and is accepted as an empty object.)
function payload.object(data)
  local ok, v = pcall(cjson.decode, data)
  if not ok then
    return nil, "invalid JSON: " .. tostring(v)
  end
  if type(v) ~= "table" or v[1] ~= nil then
    return nil, "not a JSON object"
  end
  return v
end

return payload
