-- counter.lua: counts orders.*.v1, answers orders.count.v1, keeps its count across reloads.
local hubtest = require("hubtest")
local cjson = require("cjson")

local function seen_events(h)
  local out = {}
  for i, p in ipairs(h:take_published()) do
    assert.are.equal("orders.seen.v1", p.name)
    out[i] = cjson.decode(p.data)
  end
  return out
end

describe("counter", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/counter.lua")
  end)

  it("counts every orders.*.v1 event and acknowledges it on orders.seen.v1", function()
    assert.is_true(h:event("orders.created.v1", '{"id":1}'))
    assert.is_true(h:event("orders.paid.v1", '{"id":1}'))
    assert.is_true(h:event("orders.eu.shipped.v1", "")) -- * crosses dots, as in Redis
    assert.are.same({
      { n = 1, name = "orders.created.v1" },
      { n = 2, name = "orders.paid.v1" },
      { n = 3, name = "orders.eu.shipped.v1" },
    }, seen_events(h))
  end)

  it("ignores other versions and other names", function()
    assert.is_false(h:event("orders.created.v2"))
    assert.is_false(h:event("orders.created"))
    assert.is_false(h:event("users.created.v1"))
    assert.are.equal("0", (h:call("orders.count.v1")))
  end)

  it("does not count its own acknowledgements", function()
    h:event("orders.created.v1")
    local ack = h:take_published()[1]
    assert.is_true(h:event(ack.name, ack.data)) -- matches orders.*.v1 ...
    assert.are.same({}, h.published) -- ... but is neither counted nor acknowledged
    assert.are.equal("1", (h:call("orders.count.v1")))
  end)

  it("answers orders.count.v1 with the count", function()
    for _ = 1, 5 do h:event("orders.created.v1") end
    assert.are.equal("5", (h:call("orders.count.v1", "")))
  end)

  it("keeps its count across a reload", function()
    for _ = 1, 3 do h:event("orders.created.v1") end
    h:take_published()
    local h2 = h:reload()
    assert.are.equal(2, h2.version)
    assert.are.equal("3", (h2:call("orders.count.v1")))
    h2:event("orders.created.v1")
    assert.are.same({ { n = 4, name = "orders.created.v1" } }, seen_events(h2))
  end)

  it("starts from zero after a version that kept no snapshot", function()
    local stateless = hubtest.load("handlers/counter.lua", { source = "return {}" })
    local h2 = stateless:reload("handlers/counter.lua")
    assert.are.equal("0", (h2:call("orders.count.v1")))
  end)
end)
