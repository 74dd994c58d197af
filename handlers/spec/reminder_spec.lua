-- reminder.lua: delayed publishes with hub.after, cancel, and pending reminders
-- re-armed by the next version after a reload.
local hubtest = require("hubtest")
local cjson = require("cjson")

local function set(h, in_ms, name, data)
  return h:call("reminder.set.v1", cjson.encode({ in_ms = in_ms, name = name, data = data }))
end

describe("reminder", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/reminder.lua", { now = 0 })
  end)

  it("publishes the event when it is due, not before", function()
    assert.are.equal("1", (set(h, 1000, "wake.up", "now")))
    h:advance(999)
    assert.are.same({}, h.published)
    h:advance(1)
    assert.are.same({ { name = "wake.up", data = "now" } }, h:take_published())
    h:advance(10000)
    assert.are.same({}, h.published)
    assert.are.equal("0", (h:call("reminder.pending.v1")))
  end)

  it("fires reminders in due order and defaults data to empty", function()
    set(h, 300, "c")
    set(h, 100, "a")
    set(h, 200, "b", "x")
    h:advance(300)
    assert.are.same({ { name = "a", data = "" }, { name = "b", data = "x" }, { name = "c", data = "" } },
      h:take_published())
  end)

  it("cancels a pending reminder, once", function()
    local id = set(h, 100, "never")
    assert.are.equal("1", (h:call("reminder.pending.v1")))
    assert.are.equal("1", (h:call("reminder.cancel.v1", id)))
    assert.are.equal("0", (h:call("reminder.cancel.v1", id)))
    assert.are.equal("0", (h:call("reminder.cancel.v1", "nonsense")))
    h:advance(1000)
    assert.are.same({}, h.published)
    assert.are.equal(0, h:timer_count())
  end)

  it("refuses bad requests with error replies", function()
    local cases = {
      { "{oops", "reminder.set.v1: invalid JSON" },
      { '{"in_ms":-1,"name":"a"}', "in_ms must be a number >= 0" },
      { '{"in_ms":"10","name":"a"}', "in_ms must be a number >= 0" },
      { '{"in_ms":10}', "name must be a non-empty string" },
      { '{"in_ms":10,"name":""}', "name must be a non-empty string" },
      { '{"in_ms":10,"name":"a","data":{}}', "data must be a string" },
    }
    for _, c in ipairs(cases) do
      local reply, err = h:call("reminder.set.v1", c[1])
      assert.is_nil(reply)
      assert.matches(c[2], err, 1, true)
    end
    assert.are.equal(0, h:timer_count())
  end)

  it("hands pending reminders to the next version, which fires them on time", function()
    set(h, 1000, "first", "1")
    set(h, 3000, "second", "2")
    local gone = set(h, 2000, "cancelled")
    h:call("reminder.cancel.v1", gone)
    h:advance(500)
    local h2 = h:reload()
    assert.are.equal(0, h:timer_count()) -- the old version's timers are cancelled...
    assert.are.equal("2", (h2:call("reminder.pending.v1"))) -- ... and re-armed here
    h2:advance(499)
    assert.are.same({}, h2.published)
    h2:advance(1)
    assert.are.same({ { name = "first", data = "1" } }, h2:take_published())
    assert.are.equal("4", (set(h2, 0, "third"))) -- ids go on from the old version
    h2:advance(2000)
    assert.are.same({ { name = "third", data = "" }, { name = "second", data = "2" } }, h2:take_published())
    assert.are.same({}, h.published)
  end)

  it("lets the next version cancel a reminder set by the old one", function()
    local id = set(h, 100, "x")
    local h2 = h:reload()
    assert.are.equal("1", (h2:call("reminder.cancel.v1", id)))
    h2:advance(1000)
    assert.are.same({}, h2.published)
  end)
end)
