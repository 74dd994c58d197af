-- relay.lua: bench.in is republished unchanged on bench.out.
local hubtest = require("hubtest")

describe("relay", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/relay.lua")
  end)

  it("republishes each bench.in event unchanged on bench.out, in order", function()
    local payloads = { "1", "", "binary\0\255\r\n", ("x"):rep(100000) }
    for _, p in ipairs(payloads) do
      assert.is_true(h:event("bench.in", p))
    end
    local out = h:take_published()
    assert.are.equal(#payloads, #out)
    for i, p in ipairs(payloads) do
      assert.are.same({ name = "bench.out", data = p }, out[i])
    end
  end)

  it("listens to bench.in only, so it cannot loop on its own output", function()
    assert.is_false(h:event("bench.out", "x"))
    assert.is_false(h:event("bench.inx", "x"))
    assert.is_false(h:event("bench", "x"))
    assert.are.same({}, h.published)
  end)

  it("keeps relaying after a reload", function()
    h:event("bench.in", "a")
    local h2 = h:reload()
    h2:event("bench.in", "b")
    assert.are.same({ { name = "bench.out", data = "a" } }, h.published)
    assert.are.same({ { name = "bench.out", data = "b" } }, h2.published)
  end)

  it("has no timers and no listeners", function()
    assert.are.equal(0, h:timer_count())
    assert.are.same({ nil, "no listener for 'bench.in'" }, { h:call("bench.in", "x") })
  end)
end)
