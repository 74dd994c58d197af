-- signup_gateway.lua: user.signup.v1 -> user.signup.v2; bad input logged and counted.
local hubtest = require("hubtest")
local cjson = require("cjson")

local function v2_events(h)
  local out = {}
  for i, p in ipairs(h:take_published()) do
    assert.are.equal("user.signup.v2", p.name)
    out[i] = cjson.decode(p.data)
  end
  return out
end

local function stats(h)
  return cjson.decode((assert(h:call("user.signup.stats.v1"))))
end

describe("signup_gateway", function()
  local h
  before_each(function()
    h = hubtest.load("handlers/signup_gateway.lua")
  end)

  it("splits name into first and last name, adds schema 2 and keeps every other field", function()
    assert.is_true(h:event("user.signup.v1", cjson.encode({
      name = "Ada King Lovelace", email = "ada@example.org", plan = "pro",
      tags = { "math", "engines" }, referrer = { id = 7 },
    })))
    assert.are.same({ {
      schema = 2, first_name = "Ada", last_name = "King Lovelace", email = "ada@example.org",
      plan = "pro", tags = { "math", "engines" }, referrer = { id = 7 },
    } }, v2_events(h))
  end)

  it("trims and collapses the split; a one-word name has an empty last name", function()
    h:event("user.signup.v1", '{"name":"  Grace \t Hopper  "}')
    h:event("user.signup.v1", '{"name":"Cher"}')
    assert.are.same({
      { schema = 2, first_name = "Grace", last_name = "Hopper" },
      { schema = 2, first_name = "Cher", last_name = "" },
    }, v2_events(h))
  end)

  it("always writes schema 2, whatever v1 carried", function()
    h:event("user.signup.v1", '{"name":"A B","schema":1}')
    assert.are.equal(2, v2_events(h)[1].schema)
  end)

  it("logs and counts invalid JSON without crashing or republishing", function()
    assert.has_no_error(function() h:event("user.signup.v1", "{not json") end)
    assert.are.same({}, h.published)
    assert.are.equal(1, #h.logs)
    assert.are.equal("warning", h.logs[1].level)
    assert.matches("^user%.signup%.v1 event 1 dropped: invalid JSON", h.logs[1].msg)
    assert.are.same({ translated = 0, invalid = 1 }, stats(h))
    assert.are.equal(0, h.errors)
  end)

  it("rejects payloads that are not objects with a usable name", function()
    local bad = {
      { '[1,2]', "not a JSON object" },
      { '"Ada"', "not a JSON object" },
      { "42", "not a JSON object" },
      { "null", "not a JSON object" },
      { '{"email":"x@y"}', "name is missing or not a string" },
      { '{"name":42}', "name is missing or not a string" },
      { '{"name":"   "}', "name is blank" },
    }
    for i, case in ipairs(bad) do
      h:event("user.signup.v1", case[1])
      assert.matches(case[2], h.logs[i].msg, 1, true)
    end
    assert.are.same({}, h.published)
    assert.are.same({ translated = 0, invalid = #bad }, stats(h))
  end)

  it("keeps translating after bad input", function()
    h:event("user.signup.v1", "garbage")
    h:event("user.signup.v1", '{"name":"Alan Turing"}')
    assert.are.same({ { schema = 2, first_name = "Alan", last_name = "Turing" } }, v2_events(h))
    assert.are.same({ translated = 1, invalid = 1 }, stats(h))
  end)

  it("subscribes to v1 only, so it never sees its own v2 output", function()
    assert.is_false(h:event("user.signup.v2", '{"name":"A B"}'))
    assert.is_false(h:event("user.signup.v10", '{"name":"A B"}'))
  end)

  it("keeps its counters across a reload", function()
    h:event("user.signup.v1", '{"name":"A B"}')
    h:event("user.signup.v1", "x")
    local h2 = h:reload()
    assert.are.same({ translated = 1, invalid = 1 }, stats(h2))
    h2:event("user.signup.v1", '{"name":"C D"}')
    assert.are.same({ translated = 2, invalid = 1 }, stats(h2))
  end)
end)
