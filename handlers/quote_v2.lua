-- quote_v2: the new version of a request/reply service, for a versioned rollout
-- (README, "Walk-through: a versioned rollout"). quote.v2 takes a JSON request and
-- replies JSON; its v1 predecessor took a bare SKU and replied a bare number of
-- cents. Old clients keep calling quote.v1, answered by quote_v1_gateway.lua.
--
--   request  {"sku": "A-1", "qty": 2}                  (qty defaults to 1)
--   reply    {"sku": "A-1", "qty": 2, "unit_cents": 1250, "total_cents": 2500,
--             "currency": "EUR"}
--
-- An unknown SKU, a qty that is not a positive integer or a payload that is not a
-- JSON object is an error reply, whose text says which.
local cjson = require("cjson")
local payload = require("payload")

local PRICES = { ["A-1"] = 1250, ["B-2"] = 399, ["C-3"] = 10000 } -- cents

return {
  listen = { "quote.v2" },
  on_call = function(ev)
    local req, why = payload.object(ev.data)
    if not req then
      error("quote.v2: bad request: " .. why, 0)
    end
    local unit = PRICES[req.sku]
    if not unit then
      error(("quote.v2: unknown sku %s"):format(cjson.encode(req.sku)), 0)
    end
    local qty = req.qty == nil and 1 or type(req.qty) == "number" and math.tointeger(req.qty) -- JSON 2 is 2.0
    if not qty or qty < 1 then
      error("quote.v2: qty must be a positive integer", 0)
    end
    return cjson.encode({
      sku = req.sku, qty = qty, unit_cents = unit, total_cents = unit * qty, currency = "EUR",
    })
  end,
}
