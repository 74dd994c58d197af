-- quote_v1_gateway.lua: quote.v1 answered through quote.v2, and the takeover notice.
local hubtest = require("hubtest")
local cjson = require("cjson")

describe("quote_v1_gateway", function()
  local v2, gw, sent
  before_each(function()
    v2 = hubtest.load("handlers/quote_v2.lua")
    sent = {}
    gw = hubtest.load("handlers/quote_v1_gateway.lua", {
      calls = { -- hub.call reaches the real v2 handler, as in the hub
        ["quote.v2"] = function(data)
          sent[#sent + 1] = data
          return v2:call("quote.v2", data)
        end,
      },
    })
  end)

  it("answers the v1 contract: bare sku in, bare cents out", function()
    assert.are.equal("1250", (gw:call("quote.v1", "A-1")))
    assert.are.equal("10000", (gw:call("quote.v1", "C-3")))
    assert.are.same({ sku = "A-1", qty = 1 }, cjson.decode(sent[1]))
  end)

  it("passes v2's refusals on under the old name", function()
    assert.are.same({ nil, 'quote.v1: unknown sku "Z-9"' }, { gw:call("quote.v1", "Z-9") })
    assert.are.same({ nil, "quote.v1: empty sku" }, { gw:call("quote.v1", "") })
    assert.are.equal(1, #sent) -- an empty sku never reaches v2
  end)

  it("reports an unreachable v2 as an error reply", function()
    local lone = hubtest.load("handlers/quote_v1_gateway.lua")
    assert.are.same({ nil, "no listener for 'quote.v2'" }, { lone:call("quote.v1", "A-1") })
  end)

  it("announces a takeover of quote.v1 and still answers as the fallback", function()
    gw:replaced("quote.v1")
    local pub = gw:take_published()
    assert.are.equal(1, #pub)
    assert.are.equal("ops.listener.replaced", pub[1].name)
    assert.are.same({ name = "quote.v1", handler = "quote_v1_gateway" }, cjson.decode(pub[1].data))
    assert.are.equal("notice", gw.logs[1].level)
    assert.are.equal("1250", (gw:call("quote.v1", "A-1")))
  end)
end)
