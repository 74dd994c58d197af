-- billing.lua: a durable consumer of `orders` (acks, retries, dead letters).
local hubtest = require("hubtest")
local cjson = require("cjson")

describe("billing", function()
  local calls, answer, h
  before_each(function()
    calls, answer = {}, "ok"
    h = hubtest.load("handlers/billing.lua", {
      calls = {
        ["payments.charge.v1"] = function(data)
          calls[#calls + 1] = cjson.decode(data)
          if answer == "timeout" then return nil, "timeout: no reply from 'payments.charge.v1' within 2000 ms" end
          return answer
        end,
      },
    })
  end)

  it("charges a paid order and acknowledges it", function()
    assert.is_true(h:entry("1-0", { name = "orders.paid.v1", data = '{"id":7}' }))
    assert.are.same({ { order = 7, entry = "1-0" } }, calls)
    local p = h:take_published()
    assert.are.equal("billing.charged.v1", p[1].name)
    assert.are.same({ order = 7, n = 1 }, cjson.decode(p[1].data))
  end)

  it("acknowledges other order events without charging", function()
    assert.is_true(h:entry("1-0", { name = "orders.created.v1", data = '{"id":7}' }))
    assert.is_true(h:entry("2-0", { other = "field" })) -- an XADD entry without name/data
    assert.are.same({}, calls)
  end)

  it("leaves a declined charge pending and retries it", function()
    answer = "declined"
    local ok, err = h:entry("1-0", { name = "orders.paid.v1", data = '{"id":7}' })
    assert.is_false(ok)
    assert.matches("charge failed: declined", err)
    answer = "ok"
    assert.is_true(h:entry("1-0", { name = "orders.paid.v1", data = '{"id":7}' }))
    assert.are.equal(2, #calls)
  end)

  it("treats a timeout as a failure", function()
    answer = "timeout"
    assert.is_false((h:entry("1-0", { name = "orders.paid.v1", data = '{"id":1}' })))
  end)

  it("dead-letters a malformed order after 5 deliveries", function()
    local f = { name = "orders.paid.v1", data = "not json" }
    for _ = 1, 4 do assert.is_false((h:entry("9-1", f))) end
    local ok, err, where = h:entry("9-1", f)
    assert.is_false(ok)
    assert.matches("not a paid order", err)
    assert.are.equal("dead", where)
    local dead = h:take_dead()
    assert.are.equal(1, #dead)
    assert.are.equal("9-1", dead[1].entry)
    assert.are.equal("5", dead[1].deliveries)
    assert.are.equal("billing", dead[1].group)
    assert.are.equal("not json", dead[1].data)
  end)

  it("keeps its count across a reload", function()
    assert.is_true(h:entry("1-0", { name = "orders.paid.v1", data = '{"id":1}' }))
    h = h:reload()
    h:take_published()
    assert.is_true(h:entry("2-0", { name = "orders.paid.v1", data = '{"id":2}' }))
    assert.are.same({ order = 2, n = 2 }, cjson.decode(h:take_published()[1].data))
  end)
end)
