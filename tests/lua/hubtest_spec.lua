-- Specs of the handler test kit itself (scripts/hubtest.lua): Redis glob rules,
-- handler validation, the sandbox, events and calls, timers, and hot reload.
local hubtest = require("hubtest")

-- Loads a handler from source text, as if it were the file handlers/<name>.lua.
local function load_src(src, opts)
  opts = opts or {}
  opts.source = src
  return hubtest.load("handlers/" .. (opts.file or "t") .. ".lua", opts)
end

-- Asserts that fn raises an error whose whole message matches pattern (luassert's
-- error_matches strips a leading "file:line: ", which would hide the kit's prefixes).
local function error_matches(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  assert.matches(pattern, tostring(err))
end

describe("hubtest.glob follows Redis's rules", function()
  local cases = {
    -- pattern, name, matches
    { "orders.*.v1", "orders.created.v1", true },
    { "orders.*.v1", "orders.a.b.v1", true }, -- * crosses dots
    { "orders.*.v1", "orders..v1", true }, -- * matches nothing
    { "orders.*.v1", "orders.created.v2", false },
    { "orders.*", "Orders.x", false }, -- case-sensitive
    { "*", "anything", true },
    { "*", "", false }, -- Redis quirk: an empty name matches only the empty pattern
    { "", "", true },
    { "", "a", false },
    { "h?llo", "hello", true },
    { "h?llo", "hllo", false },
    { "??", "ab", true },
    { "??", "a", false },
    { "h[ae]llo", "hallo", true },
    { "h[ae]llo", "hillo", false },
    { "h[^e]llo", "hallo", true },
    { "h[^e]llo", "hello", false },
    { "h[a-c]llo", "hbllo", true },
    { "h[a-c]llo", "hdllo", false },
    { "h[c-a]llo", "hbllo", true }, -- a range in either order
    { "h\\*llo", "h*llo", true },
    { "h\\*llo", "hello", false },
    { "[\\]]", "]", true }, -- escaped member
    { "[\\-]", "-", true },
    { "a]", "a]", true }, -- ] ^ - are literals outside a class
    { "^a-", "^a-", true },
    { "[]a", "xa", false }, -- [] is an empty class: never matches
    { "[^]a", "xa", true }, -- [^] matches any byte
    { "[a-]", "_", true }, -- a range end is verbatim: ]..a
    { "[a-]", "b", false },
    { "[abc", "b", true }, -- unterminated: closed at the end
    { "a[", "a[", false }, -- a lone trailing [ never matches
    { "a[^", "ax", true }, -- a trailing [^ matches any byte
    { "a\\", "a\\", true }, -- a trailing \ is a literal \
    { "[a-\xc0]", "\xc8", true }, -- bounds compare as signed chars
    { "[a-\xc0]", "\x01", true },
    { "[a-\xc0]", "b", false },
    { "*a*b", "xaxxaxb", true },
    { "*a*b", "xaxxax", false },
    { "a*", "a", true },
    { "**", "x", true },
  }
  for _, c in ipairs(cases) do
    it(("%q %s %q"):format(c[1], c[3] and "matches" or "does not match", c[2]), function()
      assert.are.equal(c[3], hubtest.glob(c[1], c[2]))
    end)
  end

  it("gives up after 1000 star groups, like Redis's nesting guard", function()
    assert.is_true(hubtest.glob(("*a"):rep(1000), ("a"):rep(1000)))
    assert.is_false(hubtest.glob(("*a"):rep(1001), ("a"):rep(1001)))
  end)

  it("stays linear-ish on a pathological pattern", function()
    assert.is_false(hubtest.glob(("a*"):rep(30) .. "b", ("a"):rep(2000)))
  end)
end)

describe("hubtest.load validates the handler table", function()
  local function rejects(src, pattern)
    error_matches(function() load_src(src) end, pattern)
  end

  it("loads a file and binds hub.name (the base name) and hub.version", function()
    local h = hubtest.load("handlers/relay.lua")
    assert.are.equal("relay", h.name)
    assert.are.equal(1, h.version)
    h = load_src([[local hub = require("hub")
      return { listen = { "who" }, on_call = function() return hub.name .. "@" .. hub.version end }]],
      { file = "whoami" })
    assert.are.equal("whoami@1", (h:call("who")))
  end)

  it("accepts an empty table: everything is optional", function()
    assert.are.equal("t", load_src("return {}").name)
  end)

  it("rejects a file that does not return a table", function()
    rejects("return 42", "handlers/t%.lua: malformed return value: expected a table, got number")
    rejects("local x = 1", "malformed return value: expected a table, got nil")
  end)

  it("rejects unknown keys", function()
    rejects("return { on_events = function() end }", "malformed return value: unknown key 'on_events'")
    rejects("return { 'x' }", "malformed return value: unknown key 1")
  end)

  it("requires on_event with subscribe and on_call with listen", function()
    rejects("return { subscribe = { 'a.*' } }", "'subscribe' without 'on_event'")
    rejects("return { listen = { 'a' } }", "'listen' without 'on_call'")
    assert.has_no_error(function() load_src("return { subscribe = {}, listen = {} }") end)
  end)

  it("rejects lists that are not arrays of non-empty strings", function()
    rejects("return { subscribe = 'a.*', on_event = print }", "'subscribe' must be an array of strings, got string")
    rejects("return { subscribe = { x = 'a' }, on_event = print }", "'subscribe' must be an array, not a map")
    rejects("return { listen = { 'a', 7 }, on_call = print }", "'listen'%[2%] must be a non%-empty string")
    rejects("return { listen = { '' }, on_call = print }", "must be a non%-empty string")
  end)

  it("rejects callbacks that are not functions", function()
    rejects("return { subscribe = { 'a' }, on_event = 'x' }", "'on_event' must be a function, got string")
    rejects("return { snapshot = {} }", "'snapshot' must be a function, got table")
  end)

  it("takes group as a non-empty string beside subscribe, like the hub", function()
    assert.equal("g", load_src("return { group = 'g', subscribe = { 'a' }, on_event = print }").handler.group)
    rejects("return { group = 7, subscribe = { 'a' }, on_event = function() end }",
      "'group' must be a non%-empty string, got number")
    rejects("return { group = '', subscribe = { 'a' }, on_event = function() end }",
      "'group' must be a non%-empty string, got an empty string")
    rejects("return { group = 'g' }", "'group' without 'subscribe'")
  end)

  it("reports syntax and top-level runtime errors", function()
    rejects("return {", "hubtest: cannot load handlers/t%.lua:1:")
    rejects("error('boom')", "hubtest: cannot load handlers/t%.lua: handlers/t%.lua:1: boom")
    error_matches(function() hubtest.load("handlers/does-not-exist.lua") end, "does%-not%-exist")
  end)
end)

describe("the sandbox", function()
  it("has no io: a handler using it fails to load", function()
    error_matches(function() load_src("io.write('x') return {}") end, "cannot load.*global 'io'")
  end)

  it("has no os.exit: a handler calling it fails when it runs", function()
    local h = load_src("return { subscribe = { 'x' }, on_event = function() os.exit(1) end }")
    error_matches(function() h:event("x") end, "on_event failed:.*field 'exit'")
  end)

  it("leaves out the escape hatches", function()
    local h = load_src([[
      local absent = {}
      for _, name in ipairs({ "io", "debug", "loadfile", "dofile", "collectgarbage" }) do
        if _G[name] ~= nil then absent[#absent + 1] = name end
      end
      for _, name in ipairs({ "exit", "execute", "getenv", "remove", "rename", "tmpname" }) do
        if os[name] ~= nil then absent[#absent + 1] = "os." .. name end
      end
      if package.loadlib ~= nil then absent[#absent + 1] = "package.loadlib" end
      return { listen = { "leaks" }, on_call = function() return table.concat(absent, ",") end }]])
    assert.are.equal("", (h:call("leaks")))
  end)

  it("requires only hub, cjson and modules from the lib path", function()
    local h = load_src([[
      local hub = require("hub")
      assert(require("hub") == hub)
      local ok1 = pcall(require, "io")
      local ok2 = pcall(require, "debug")
      local ok3 = pcall(require, "lfs")
      return { listen = { "r" }, on_call = function()
        return tostring(ok1) .. tostring(ok2) .. tostring(ok3) .. require("cjson").encode({ 1 })
      end }]])
    assert.are.equal("falsefalsefalse[1]", (h:call("r")))
  end)

  it("loads lib modules once per handler, into the handler's own env", function()
    local base = os.tmpname()
    local f = assert(io.open(base .. "_mymod.lua", "w"))
    f:write("loads = (loads or 0) + 1\nreturn { twice = function(x) return 2 * x end }\n")
    f:close()
    local src = [[local m = require("mymod"); require("mymod")
      return { listen = { "n" }, on_call = function() return m.twice(loads) end }]]
    local h1 = load_src(src, { lib = base .. "_?.lua" })
    local h2 = load_src(src, { lib = base .. "_?.lua" })
    os.remove(base .. "_mymod.lua")
    os.remove(base)
    assert.are.equal("2", (h1:call("n")))
    assert.are.equal("2", (h2:call("n")))
    assert.is_nil(rawget(_G, "loads"))
  end)

  it("finds modules in handlers/lib by default", function()
    local h = load_src([[local payload = require("payload")
      return { listen = { "p" }, on_call = function(ev) return payload.object(ev.data).a end }]])
    assert.are.equal("x", (h:call("p", '{"a":"x"}')))
  end)

  it("gives each load fresh globals that do not leak into the test", function()
    local src = [[counter = (counter or 0) + 1
      return { listen = { "g" }, on_call = function() return counter end }]]
    assert.are.equal("1", (load_src(src):call("g")))
    assert.are.equal("1", (load_src(src):call("g")))
    assert.is_nil(rawget(_G, "counter"))
  end)

  it("refuses binary chunks but allows text load with an env", function()
    local h = load_src([[
      local bin, err = load(string.dump(function() return 1 end))
      local text = load("return x + 1", "expr", "t", { x = 41 })
      return { listen = { "l" }, on_call = function() return tostring(bin) .. "|" .. err .. "|" .. text() end }]])
    local reply = h:call("l")
    assert.matches("^nil|.*binary.*|42$", reply)
  end)

  it("runs os.time and os.date on the fake clock", function()
    local h = load_src([[return { listen = { "t" }, on_call = function()
      return os.time() .. " " .. os.date("!%Y-%m-%dT%H:%M:%S") end }]], { now = 86400000 })
    assert.are.equal("86400 1970-01-02T00:00:00", (h:call("t")))
  end)

  it("stops a runaway loop with the instruction budget", function()
    local h = load_src("return { subscribe = { 'x' }, on_event = function() while true do end end }",
      { instruction_limit = 100000 })
    error_matches(function() h:event("x") end, "instruction limit exceeded")
    local rc, err = load_src("return { listen = { 'x' }, on_call = function() while true do end end }",
      { instruction_limit = 100000 }):call("x")
    assert.is_nil(rc)
    assert.matches("instruction limit exceeded", err)
  end)

  it("captures print in the logs", function()
    local h = load_src("print('a', 1, nil) return {}")
    assert.are.same({ { level = "print", msg = "a\t1\tnil" } }, h.logs)
  end)
end)

describe("events and calls", function()
  local src = [[
    local hub = require("hub")
    local last
    return {
      subscribe = { "a.*", "*.b", "c" },
      on_event = function(ev)
        if ev.data == "fail" then error("bad data") end
        last = ev
        hub.publish("seen", ev.name)
      end,
      listen = { "last", "num", "fail", "nothing", "table" },
      on_call = function(ev)
        if ev.name == "num" then return 7 end
        if ev.name == "fail" then error({ code = 1 }) end
        if ev.name == "nothing" then return nil end
        if ev.name == "table" then return {} end
        local l = last
        return ("%s %s %s %d %d %s"):format(l.name, l.data, l.pattern, l.id, l.time, tostring(ev.pattern))
      end,
    }]]

  it("delivers an event to on_event with the fields the hub sets", function()
    local h = load_src(src, { now = 5000 })
    assert.is_true(h:event("a.b", "d1")) -- the first pattern that matches
    assert.are.equal("a.b d1 a.* 1 5000 nil", (h:call("last")))
    h:advance(10)
    assert.is_true(h:event("x.b"))
    assert.are.equal("x.b  *.b 3 5010 nil", (h:call("last"))) -- ids count calls too
    assert.are.equal(4, h.events)
  end)

  it("returns false when no pattern matches", function()
    local h = load_src(src)
    assert.is_false(h:event("b.a"))
    assert.is_false(h:event("cc"))
    assert.are.same({}, h.published)
  end)

  it("raises an error from on_event, counts it and keeps serving", function()
    local h = load_src(src)
    error_matches(function() h:event("c", "fail") end, "t on_event failed: handlers/t%.lua:6: bad data")
    assert.are.equal(1, h.errors)
    assert.matches("bad data", h.last_error)
    assert.is_true(h:event("c", "ok"))
  end)

  it("replies with strings, numbers as tostring, and errors as nil, message", function()
    local h = load_src(src)
    h:event("c")
    assert.are.equal("7", (h:call("num")))
    local rc, err = h:call("fail")
    assert.is_nil(rc)
    assert.matches("^table: ", err)
    rc, err = h:call("nothing")
    assert.is_nil(rc)
    assert.are.equal("on_call returned nil, expected a string or a number", err)
    assert.are.same({ nil, "on_call returned table, expected a string or a number" }, { h:call("table") })
    assert.are.same({ nil, "no listener for 'other'" }, { h:call("other") })
    assert.are.equal(3, h.errors)
  end)

  it("records published events and takes them", function()
    local h = load_src(src)
    h:event("a.1")
    h:event("a.2")
    assert.are.same({ { name = "seen", data = "a.1" }, { name = "seen", data = "a.2" } }, h:take_published())
    assert.are.same({}, h.published)
    h:event("a.3")
    assert.are.same({ { name = "seen", data = "a.3" } }, h:take_published())
  end)

  it("returns opts.receivers from hub.publish", function()
    local p = [[local hub = require("hub")
      return { listen = { "p" }, on_call = function(ev) return hub.publish(ev.data, "x") end }]]
    assert.are.equal("0", (load_src(p):call("p", "a")))
    assert.are.equal("3", (load_src(p, { receivers = 3 }):call("p", "a")))
    assert.are.equal("1", (load_src(p, { receivers = function(n) return n == "a" and 1 or 0 end }):call("p", "a")))
  end)

  it("records hub.log and rejects unknown levels", function()
    local h = load_src([[local hub = require("hub")
      hub.log("notice", "up")
      return { listen = { "log" }, on_call = function(ev) hub.log(ev.data, "x") return "" end }]])
    assert.are.same({ { level = "notice", msg = "up" } }, h.logs)
    assert.are.equal("", (h:call("log", "debug")))
    local rc, err = h:call("log", "error")
    assert.is_nil(rc)
    assert.matches("level must be debug, info, notice or warning", err)
  end)
end)

describe("timers and the fake clock", function()
  local src = [[
    local hub = require("hub")
    local fired = {}
    local handles = {}
    local function mark(tag) return function() fired[#fired + 1] = tag .. "@" .. hub.now() end end
    return {
      listen = { "after", "every", "cancel", "hcancel", "fired" },
      on_call = function(ev)
        local tag, ms = ev.data:match("^(%w+) (%d+)$")
        if ev.name == "after" then handles[tag] = hub.after(tonumber(ms), mark(tag))
        elseif ev.name == "every" then handles[tag] = hub.every(tonumber(ms), mark(tag))
        elseif ev.name == "cancel" then return tostring(handles[ev.data]:cancel())
        elseif ev.name == "hcancel" then return tostring(hub.cancel(handles[ev.data]))
        else return table.concat(fired, " ") end
        return ""
      end,
    }]]

  local function timers(now)
    local h = load_src(src, { now = now or 0 })
    local function fired() return (h:call("fired")) end
    return h, fired
  end

  it("fires due timers in time order, ties in scheduling order", function()
    local h, fired = timers()
    h:call("after", "c 30")
    h:call("after", "a 10")
    h:call("after", "b 30")
    h:call("after", "z 0")
    assert.are.equal(1, h:advance(0))
    assert.are.equal("z@0", fired())
    assert.are.equal(1, h:advance(20))
    assert.are.equal("z@0 a@10", fired())
    assert.are.equal(2, h:advance(10))
    assert.are.equal("z@0 a@10 c@30 b@30", fired())
    assert.are.equal(30, h.clock)
    assert.are.equal(0, h:timer_count())
  end)

  it("repeats every timers and interleaves them with one-shots", function()
    local h, fired = timers(1000)
    h:call("every", "e 10")
    h:call("after", "a 25")
    assert.are.equal(4, h:advance(35))
    assert.are.equal("e@1010 e@1020 a@1025 e@1030", fired())
    assert.are.equal(1035, h.clock)
    assert.are.equal(1, h:timer_count())
  end)

  it("cancels through the handle or hub.cancel, once", function()
    local h, fired = timers()
    h:call("every", "e 10")
    h:call("after", "a 10")
    h:advance(10)
    assert.are.equal("true", (h:call("cancel", "e")))
    assert.are.equal("false", (h:call("hcancel", "e")))
    assert.are.equal("false", (h:call("cancel", "a"))) -- already fired
    h:advance(100)
    assert.are.equal("e@10 a@10", fired())
  end)

  it("fires timers a callback schedules within the same advance", function()
    local h = load_src([[local hub = require("hub")
      local log = {}
      hub.after(5, function()
        log[#log + 1] = "first@" .. hub.now()
        hub.after(5, function() log[#log + 1] = "second@" .. hub.now() end)
      end)
      local t
      t = hub.every(3, function() log[#log + 1] = "once@" .. hub.now(); t:cancel() end)
      return { listen = { "log" }, on_call = function() return table.concat(log, " ") end }]], { now = 0 })
    assert.are.equal(3, h:advance(10))
    assert.are.equal("once@3 first@5 second@10", (h:call("log")))
  end)

  it("rejects bad timer arguments", function()
    local h = load_src([[local hub = require("hub")
      return { listen = { "t" }, on_call = function(ev) return hub[ev.data](0, print) and "" end }]])
    assert.matches("ms must be a number > 0", select(2, h:call("t", "every")))
    assert.are.equal("", (h:call("t", "after")))
  end)

  it("raises a timer's error from advance", function()
    local h = load_src("require('hub').after(1, function() error('tick') end) return {}")
    error_matches(function() h:advance(1) end, "t timer failed: .*tick")
    assert.are.equal(1, h.errors)
  end)
end)

describe("hubtest.copy (the snapshot handover)", function()
  it("deep-copies plain data", function()
    local shared = { 1, 2 }
    local v = { s = "x", n = 1.5, i = 3, b = false, nested = { a = shared, b = shared }, [2] = true }
    local c = hubtest.copy(v)
    assert.are.same(v, c)
    assert.are_not.equal(v.nested, c.nested)
    assert.are_not.equal(c.nested.a, c.nested.b) -- a shared table is not a cycle
    assert.are.equal("integer", math.type(c.i))
  end)

  it("rejects functions, userdata, cycles and table keys", function()
    error_matches(function() hubtest.copy({ f = print }) end, "value%.f is a function")
    error_matches(function() hubtest.copy({ list = { io.stdout } }) end, "value%.list%[1%] is a userdata")
    local cyc = { a = {} }
    cyc.a.back = cyc
    error_matches(function() hubtest.copy(cyc) end, "value%.a%.back is a cycle")
    error_matches(function() hubtest.copy({ [{}] = 1 }) end, "has a table key")
  end)

  it("drops metatables", function()
    local c = hubtest.copy(setmetatable({ x = 1 }, { __index = { y = 2 } }))
    assert.is_nil(getmetatable(c))
    assert.is_nil(c.y)
  end)
end)

describe("reload", function()
  local v1 = [[
    local hub = require("hub")
    local state = { n = 0, list = {} }
    hub.every(10, function() hub.publish("tick", hub.name .. "@" .. hub.version) end)
    return {
      subscribe = { "x" },
      on_event = function(ev) state.n = state.n + 1; state.list[#state.list + 1] = ev.id end,
      listen = { "n" },
      on_call = function() return state.n end,
      snapshot = function() return state end,
      on_reload = function(old) state = old end,
    }]]

  it("hands the snapshot to the next version, which gets version + 1", function()
    local h1 = load_src(v1, { file = "rel" })
    h1:event("x")
    h1:event("x")
    local h2 = h1:reload()
    assert.are.equal(2, h2.version)
    assert.are.equal("rel", h2.name)
    assert.are.equal("2", (h2:call("n")))
    h2:event("x")
    assert.are.equal("3", (h2:call("n")))
    assert.are.equal(3, h2:reload():reload().version - 1)
  end)

  it("hands over a copy, not the old version's tables", function()
    local h1 = load_src([[local state = { t = {} }
      return { snapshot = function() return state end,
        on_reload = function(old) old.t.changed = true end }]])
    local before = h1.handler.snapshot()
    h1:reload()
    assert.is_nil(before.t.changed)
  end)

  it("keeps the clock and event ids going and cancels the old timers", function()
    local h1 = load_src(v1, { now = 0, file = "rel" })
    h1:advance(10)
    h1:event("x")
    h1:advance(5)
    local h2 = h1:reload()
    assert.are.equal(0, h1:timer_count())
    assert.are.equal(15, h2.clock)
    h2:event("x")
    assert.are.same({ 1, 2 }, h2.handler.snapshot().list)
    h2:advance(10) -- only the new version's timer runs
    assert.are.same({ { name = "tick", data = "rel@1" } }, h1.published)
    assert.are.same({ { name = "tick", data = "rel@2" } }, h2.published)
  end)

  it("loads a different file or source as the next version", function()
    local h1 = load_src(v1)
    h1:event("x")
    local h2 = h1:reload(nil, { source = [[return { listen = { "n" },
      on_call = function() return "v2 has " .. N end, on_reload = function(old) N = old.n end }]] })
    assert.are.equal("v2 has 1", (h2:call("n")))
    local h3 = h2:reload("handlers/echo.lua")
    assert.are.equal(3, h3.version)
    assert.are.equal("t", h3.name) -- the handler's name does not change
    assert.are.equal("hi", (h3:call("echo.v1", "hi")))
  end)

  it("calls on_reload with nil when the old version kept no snapshot", function()
    local h = load_src("return {}"):reload(nil, { source = [[local got = "unset"
      return { listen = { "g" }, on_call = function() return tostring(got) end,
        on_reload = function(old) got = old end }]] })
    assert.are.equal("nil", (h:call("g")))
  end)

  it("retires the old instance", function()
    local h1 = load_src(v1)
    h1:reload()
    error_matches(function() h1:event("x") end, "replaced by reload")
    error_matches(function() h1:call("n") end, "replaced by reload")
    error_matches(function() h1:reload() end, "replaced by reload")
  end)

  local function fails_and_keeps_serving(src, pattern)
    local h1 = load_src(v1)
    h1:event("x")
    error_matches(function() h1:reload(nil, { source = src }) end, pattern)
    assert.are.equal(1, h1.version)
    assert.are.equal(1, h1:timer_count())
    assert.is_true(h1:event("x"))
    assert.are.equal("2", (h1:call("n")))
    return h1
  end

  it("fails on a snapshot holding a function, old version keeps serving", function()
    local h1 = load_src([[local hub = require("hub")
      hub.every(10, function() end)
      local n = 0
      return { subscribe = { "x" }, on_event = function() n = n + 1 end,
        listen = { "n" }, on_call = function() return n end,
        snapshot = function() return { n = n, f = print } end }]])
    h1:event("x")
    error_matches(function() h1:reload() end,
      "reload of t failed, version 1 keeps serving: snapshot%(%)%.f is a function")
    assert.is_true(h1:event("x"))
    assert.are.equal("2", (h1:call("n")))
    assert.are.equal(1, h1:timer_count())
  end)

  it("fails on a snapshot holding a cycle", function()
    local h1 = load_src([[local s = {}; s.self = s
      return { snapshot = function() return s end }]])
    error_matches(function() h1:reload() end, "snapshot%(%)%.self is a cycle")
  end)

  it("fails on a new version that does not load, old version keeps serving", function()
    fails_and_keeps_serving("return { bogus = 1 }", "malformed return value: unknown key 'bogus'")
    fails_and_keeps_serving("syntax error here", "cannot load")
  end)

  it("fails on an on_reload error and drops the new version's timers", function()
    local h1 = fails_and_keeps_serving([[
      require("hub").every(1, function() error("must never run") end)
      return { on_reload = function(old) error("cannot use " .. old.n) end }]],
      "reload of t failed, version 1 keeps serving: t on_reload failed: .*cannot use 1")
    assert.has_no_error(function() h1:advance(100) end)
  end)
end)


describe("hub.call in the kit", function()
  it("answers from opts.calls", function()
    local src = [[
local hub = require("hub")
return { subscribe = {"a"}, on_event = function(ev)
  local r, err = hub.call("svc", ev.data)
  hub.publish("out", r or err)
end }]]
    local h = hubtest.load("x.lua", { source = src, calls = { svc = function(d) return "R" .. d end } })
    h:event("a", "1")
    assert.are.equal("R1", h:take_published()[1].data)
    local h2 = hubtest.load("x.lua", { source = src })
    h2:event("a", "1")
    assert.are.equal("no listener for 'svc'", h2:take_published()[1].data)
  end)
end)


describe("a takeover in the kit", function()
  local src = [[
local hub = require("hub")
return { listen = { "svc" }, on_call = function() return "mine" end,
  on_replaced = function(name) if name == "boom" then error("bad") end hub.publish("lost", name) end }]]

  it("runs on_replaced for a listen name and keeps answering it", function()
    local h = hubtest.load("x.lua", { source = src })
    h:replaced("svc")
    assert.are.same({ { name = "lost", data = "svc" } }, h:take_published())
    assert.are.equal("mine", (h:call("svc", "")))
  end)

  it("refuses a name the handler does not listen on", function()
    local h = hubtest.load("x.lua", { source = src })
    assert.has_error(function() h:replaced("other") end)
    assert.are.same({}, h:take_published())
  end)

  it("raises and counts an error in on_replaced, like the hub", function()
    local h = hubtest.load("x.lua", { source = src:gsub('"svc" }', '"svc", "boom" }') })
    local ok, err = pcall(h.replaced, h, "boom")
    assert.is_false(ok)
    assert.matches("^hubtest: x on_replaced failed: .*bad$", err)
    assert.are.equal(1, h.errors)
  end)

  it("is a no-op for a handler without on_replaced", function()
    local h = hubtest.load("handlers/echo.lua")
    assert.has_no_error(function() h:replaced("echo.v1") end)
    assert.are.equal(0, h.errors)
  end)
end)

describe("a consume handler (durable consumer)", function()
  local src = [[
    local fails = {}
    return {
      consume = { stream = "orders", group = "g", max_deliveries = 3 },
      on_event = function(ev)
        if ev.fields.fail then error("boom " .. ev.entry) end
        fails[#fails + 1] = ev.deliveries
      end,
    }
  ]]

  it("acknowledges an entry when on_event returns, with name/data/fields", function()
    local seen
    local h = load_src([[
      return { consume = { stream = "s", group = "g" }, on_event = function(ev) SEEN(ev) end }
    ]])
    h.handler.on_event = function(ev) seen = ev end
    assert.is_true(h:entry("5-1", { name = "n", data = "d", x = "y" }))
    assert.are.same({ stream = "s", entry = "5-1", name = "n", data = "d", fields = { name = "n", data = "d", x = "y" },
      deliveries = 1, time = 5 }, seen)
    assert.is_true(h:entry("6-0", { x = "y" }))
    assert.is_nil(seen.name)
  end)

  it("leaves a failed entry pending, counts deliveries and dead-letters at max_deliveries", function()
    local h = load_src(src)
    local ok, err = h:entry("1-0", { fail = "1" })
    assert.is_false(ok)
    assert.matches("boom 1%-0", err)
    assert.is_false((h:entry("1-0", { fail = "1" })))
    local ok3, _, where = h:entry("1-0", { fail = "1", data = "x" })
    assert.is_false(ok3)
    assert.are.equal("dead", where)
    local dead = h:take_dead()
    assert.are.equal("3", dead[1].deliveries)
    assert.are.equal("1-0", dead[1].entry)
    assert.are.equal("x", dead[1].data)
    assert.matches("boom", dead[1].error)
    assert.are.equal(3, h.errors)
    -- a new delivery of the same id starts again at 1
    assert.is_true(h:entry("2-0", {}))
  end)

  it("keeps delivery counts across a reload (the group outlives versions)", function()
    local h = load_src(src)
    assert.is_false((h:entry("1-0", { fail = "1" })))
    h = h:reload()
    assert.is_false((h:entry("1-0", { fail = "1" })))
    local _, _, where = h:entry("1-0", { fail = "1" })
    assert.are.equal("dead", where)
  end)

  it("fails a delivery whose hub.call timed out", function()
    local h = load_src([[
      local hub = require("hub")
      return { consume = { stream = "s", group = "g" },
        on_event = function(ev) hub.call("svc", "x") end }
    ]], { calls = { svc = function() return nil, "timeout: no reply from 'svc' within 10 ms" end } })
    local ok, err = h:entry("1-0", {})
    assert.is_false(ok)
    assert.matches("^timeout:", err)
  end)

  it("validates the consume key like the hub", function()
    error_matches(function() load_src('return { consume = { stream = "s", group = "g" } }') end,
      "'consume' without 'on_event'")
    error_matches(function() load_src('return { consume = { stream = "s" }, on_event = print }') end,
      "'consume' needs 'group'")
    error_matches(function()
      load_src('return { consume = { stream = "s", group = "g", retry_ms = -1 }, on_event = print }')
    end, "'consume.retry_ms' must be an integer from 0 to 3600000")
    error_matches(function()
      load_src('return { consume = { stream = "s", group = "g" }, subscribe = { "a" }, on_event = print }')
    end, "'consume' with 'subscribe'")
  end)
end)
