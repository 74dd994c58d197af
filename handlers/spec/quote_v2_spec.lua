-- quote_v2.lua: the JSON request/reply service the rollout moves to.
local hubtest = require("hubtest")
local cjson = require("cjson")

describe("quote_v2", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/quote_v2.lua")
  end)

  it("quotes unit and total price for a sku and qty", function()
    local r = cjson.decode((assert(h:call("quote.v2", '{"sku":"A-1","qty":3}'))))
    assert.are.same({ sku = "A-1", qty = 3, unit_cents = 1250, total_cents = 3750, currency = "EUR" }, r)
  end)

  it("defaults qty to 1 and writes integers without a fraction", function()
    local raw = (assert(h:call("quote.v2", '{"sku":"B-2"}')))
    assert.matches('"total_cents":399[,}]', raw)
    assert.matches('"qty":1[,}]', raw)
  end)

  it("refuses bad requests with the reason and keeps serving", function()
    local cases = {
      { "not json", "quote.v2: bad request: invalid JSON" },
      { "[1]", "quote.v2: bad request: not a JSON object" },
      { '{"sku":"Z-9"}', 'quote.v2: unknown sku "Z-9"' },
      { '{"sku":"A-1","qty":0}', "quote.v2: qty must be a positive integer" },
      { '{"sku":"A-1","qty":1.5}', "quote.v2: qty must be a positive integer" },
      { '{"sku":"A-1","qty":"2"}', "quote.v2: qty must be a positive integer" },
    }
    for _, c in ipairs(cases) do
      local reply, err = h:call("quote.v2", c[1])
      assert.is_nil(reply)
      assert.are.equal(c[2], err:sub(1, #c[2]))
    end
    assert.are.equal(#cases, h.errors)
    assert.is_truthy(h:call("quote.v2", '{"sku":"C-3"}'))
  end)
end)
