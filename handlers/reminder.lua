-- reminder: timers that survive a hot reload. Shows hub.after, cancelling a timer,
-- and handing pending work to the next version: a reload cancels the old version's
-- timers, so snapshot() lists what is pending and on_reload() re-arms it.
--
--   reminder.set.v1     {"in_ms": 5000, "name": "some.event", "data": "..."}: after in_ms
--                       publishes data ("" if absent) on name; replies with the new id
--   reminder.cancel.v1  an id: replies 1 if that reminder was pending, else 0
--   reminder.pending.v1 replies with how many reminders are pending
local hub = require("hub")
local payload = require("payload")

local pending = {} -- id -> { due = ms, name =, data =, timer = handle }
local last_id = 0

local function arm(id, r)
  r.timer = hub.after(math.max(0, r.due - hub.now()), function()
    pending[id] = nil
    hub.publish(r.name, r.data)
  end)
  pending[id] = r
end

local function set(data)
  local req, err = payload.object(data)
  if not req then
    error("reminder.set.v1: " .. err, 0)
  end
  if type(req.in_ms) ~= "number" or req.in_ms < 0 then
    error("reminder.set.v1: in_ms must be a number >= 0", 0)
  end
  if type(req.name) ~= "string" or req.name == "" then
    error("reminder.set.v1: name must be a non-empty string", 0)
  end
  if req.data ~= nil and type(req.data) ~= "string" then
    error("reminder.set.v1: data must be a string", 0)
  end
  last_id = last_id + 1
  arm(last_id, { due = hub.now() + req.in_ms, name = req.name, data = req.data or "" })
  return last_id
end

local function cancel(data)
  local id = math.tointeger(tonumber(data))
  local r = id and pending[id]
  if not r then
    return 0
  end
  r.timer:cancel()
  pending[id] = nil
  return 1
end

local function count()
  local n = 0
  for _ in pairs(pending) do
    n = n + 1
  end
  return n
end

return {
  listen = { "reminder.set.v1", "reminder.cancel.v1", "reminder.pending.v1" },
  on_call = function(ev)
    if ev.name == "reminder.set.v1" then
      return set(ev.data)
    elseif ev.name == "reminder.cancel.v1" then
      return cancel(ev.data)
    end
    return count()
  end,

  -- Timer handles are not plain data: hand over what is needed to re-arm them.
  snapshot = function()
    local list = {}
    for id, r in pairs(pending) do
      list[#list + 1] = { id = id, due = r.due, name = r.name, data = r.data }
    end
    table.sort(list, function(a, b) return a.id < b.id end)
    return { last_id = last_id, pending = list }
  end,
  on_reload = function(old)
    if not old then return end
    last_id = old.last_id
    for _, r in ipairs(old.pending) do
      arm(r.id, { due = r.due, name = r.name, data = r.data })
    end
  end,
}
