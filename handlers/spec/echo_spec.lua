-- echo.lua: echo.v1 replies with the payload, time.now.v1 with the clock.
local hubtest = require("hubtest")

describe("echo", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/echo.lua", { now = 1700000000000 })
  end)

  it("replies to echo.v1 with the payload, byte for byte", function()
    assert.are.equal("hello", (h:call("echo.v1", "hello")))
    assert.are.equal("a\0b\r\n\255", (h:call("echo.v1", "a\0b\r\n\255")))
    assert.are.equal('{"x":[1,2]}', (h:call("echo.v1", '{"x":[1,2]}')))
  end)

  it("refuses an empty payload with an error reply and keeps serving", function()
    local reply, err = h:call("echo.v1", "")
    assert.is_nil(reply)
    assert.are.equal("echo.v1: empty payload", err)
    assert.are.equal(1, h.errors)
    assert.are.equal("again", (h:call("echo.v1", "again")))
  end)

  it("replies to time.now.v1 with the clock in integer ms", function()
    assert.are.equal("1700000000000", (h:call("time.now.v1")))
    h:advance(1500)
    assert.are.equal("1700000001500", (h:call("time.now.v1")))
  end)

  it("answers only its own names and takes no broadcast events", function()
    assert.are.same({ nil, "no listener for 'echo.v2'" }, { h:call("echo.v2", "x") })
    assert.is_false(h:event("echo.v1", "x"))
    assert.are.same({}, h.published)
  end)
end)
