-- hubtest: a busted test kit for luahub handlers. It loads a handler file in a
-- sandbox like the hub's, with a fake `hub` module and a fake clock, so a spec can
-- fire events and calls, run timers and simulate a hot reload without a hub:
--
--   local hubtest = require("hubtest")
--   local h = hubtest.load("handlers/counter.lua")
--   h:event("orders.created.v1", '{"id":1}')     --> true (a pattern matched)
--   h:call("orders.count.v1", "")                --> "1"
--   h:take_published()                           --> { {name=..., data=...} }
--   h = h:reload()                               --> version 2, state handed over
--
-- Where the hub's behaviour is a policy rather than a rule, the kit errs on the
-- strict side, so that a passing handler does not rely on anything the hub may lack:
--   * an error in on_event, a timer, snapshot or on_reload is raised to the spec
--     (the hub counts and logs it); it is also counted in .errors/.last_error.
--     An error in on_call is an error reply: :call returns nil, message.
--   * hub.publish records the event in .published and returns opts.receivers
--     (default 0); it is not delivered back to the handler.
--   * globals are per version (a fresh env per load); the instruction budget
--     (opts.instruction_limit, default the hub's 10,000,000) is per call.
--   * print is captured in .logs with level "print".
--   * hub.call(name, data) returns what opts.calls[name](data) returns, at once.
--   * a handler with `group` is one member of its consumer group: :event runs every
--     matching event, as the member the group picked would.
--   * a handler with `consume` (a durable consumer) gets stream entries from
--     :entry(id, fields): it returns true if on_event returned (acknowledged), or
--     false and the error (left pending: call :entry again with the same id to
--     redeliver). ev.deliveries counts per id; the delivery that fails at
--     max_deliveries moves the entry to .dead (as `<stream>:dead` would get it:
--     the fields plus error, deliveries, entry, group) and acknowledges it. A
--     hub.call answered nil, "timeout: ..." fails the delivery whatever on_event
--     returns. Back-off (retry_ms) is the hub's timing: the kit does not wait.
local cjson = require("cjson")

local byte, concat, fmt = string.byte, table.concat, string.format
local pack, unpack = table.pack, table.unpack

local hubtest = {}

local DEFAULT_NOW = 1700000000000 -- 2023-11-14T22:13:20Z, so runs are reproducible
local DEFAULT_INSTRUCTION_LIMIT = 10000000 -- the hub's handler-instruction-limit default
local LOG_LEVELS = { debug = true, info = true, notice = true, warning = true }
local HANDLER_KEYS = {
  subscribe = "list", listen = "list",
  on_event = "function", on_call = "function", snapshot = "function", on_reload = "function",
  on_replaced = "function", group = "string", consume = "consume",
}

---------------------------------------------------------------------------------------
-- Redis glob matching: a port of core/route/glob.c (Redis 7.0 stringmatchlen semantics).

local STAR, QUESTION, LBRACKET, RBRACKET = 42, 63, 91, 93
local BACKSLASH, CARET, DASH = 92, 94, 45

-- Redis compares class range bounds as signed chars (x86-64).
local function signed(b)
  return b < 128 and b or b - 256
end

-- Tests byte c against the class whose body starts at p[i] (just after `[`).
-- Returns whether it matched and the index just past the class.
local function class_match(p, plen, i, c)
  local neg, m = false, false
  if i <= plen and byte(p, i) == CARET then
    neg, i = true, i + 1
  end
  while true do
    local b = byte(p, i)
    if plen - i >= 1 and b == BACKSLASH then -- escaped member
      i = i + 1
      if byte(p, i) == c then m = true end
    elseif b == RBRACKET then
      break
    elseif i > plen then -- unterminated: the class ends with the pattern
      i = i - 1
      break
    elseif plen - i >= 2 and byte(p, i + 1) == DASH then -- range, either order
      local lo, hi, x = signed(b), signed(byte(p, i + 2)), signed(c)
      if lo > hi then lo, hi = hi, lo end
      i = i + 2
      if x >= lo and x <= hi then m = true end
    elseif b == c then
      m = true
    end
    i = i + 1
  end
  if neg then m = not m end
  return m, i + 1
end

-- Tests the one-byte element at p[i] (anything but `*`) against byte c.
local function element_match(p, plen, i, c)
  local b = byte(p, i)
  if b == QUESTION then return true, i + 1 end
  if b == LBRACKET then return class_match(p, plen, i + 1, c) end
  if b == BACKSLASH then
    if i < plen then return byte(p, i + 1) == c, i + 2 end
    return c == BACKSLASH, i + 1 -- a trailing backslash is a literal one
  end
  return b == c, i + 1
end

-- True if name matches the Redis glob pattern. Single pass that backtracks only to
-- the last `*`, like core/route/glob.c (no exponential worst case).
function hubtest.glob(pattern, name)
  local plen, nlen = #pattern, #name
  if nlen == 0 then return plen == 0 end -- Redis never enters its loop
  local pi, si = 1, 1
  local star_pi, star_si, groups = nil, 0, 0
  while si <= nlen do
    if pi <= plen and byte(pattern, pi) == STAR then
      while pi <= plen and byte(pattern, pi) == STAR do pi = pi + 1 end
      if pi > plen then return true end
      groups = groups + 1
      if groups > 1000 then return false end -- Redis's nesting guard
      star_pi, star_si = pi, si
    else
      local ok, nxt = false, pi
      if pi <= plen then ok, nxt = element_match(pattern, plen, pi, byte(name, si)) end
      if ok then
        pi, si = nxt, si + 1
      elseif not star_pi then
        return false
      else -- the last star takes one more byte
        star_si = star_si + 1
        pi, si = star_pi, star_si
      end
    end
  end
  while pi <= plen and byte(pattern, pi) == STAR do pi = pi + 1 end
  return pi > plen
end

---------------------------------------------------------------------------------------
-- State handover: a deep copy of plain data, as between two lua_States.

local function key_repr(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return "." .. k end
  return "[" .. (type(k) == "string" and fmt("%q", k) or tostring(k)) .. "]"
end

local function plain_copy(v, path, active)
  local t = type(v)
  if t == "nil" or t == "string" or t == "number" or t == "boolean" then return v end
  if t ~= "table" then
    error(fmt("%s is a %s: only strings, numbers, booleans and tables can be handed over", path, t), 0)
  end
  if active[v] then error(fmt("%s is a cycle: it contains itself", path), 0) end
  active[v] = true
  local out = {}
  for k, x in next, v do -- raw: metatables are not handed over
    local kt = type(k)
    if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
      error(fmt("%s has a %s key: only strings, numbers and booleans can be keys", path, kt), 0)
    end
    out[k] = plain_copy(x, path .. key_repr(k), active)
  end
  active[v] = nil -- a table reached twice by different paths is copied twice, not a cycle
  return out
end

-- Returns a deep copy of v, or raises if v holds anything but plain data.
function hubtest.copy(v)
  return plain_copy(v, "value", {})
end

---------------------------------------------------------------------------------------
-- Running handler code: a protected call under an instruction budget.

-- Runs fn(...) protected, with a count hook that stops it after limit VM
-- instructions. An existing hook (luacov's, a debugger's) takes precedence: then
-- there is no budget.
local function guarded(limit, fn, ...)
  local hook, mask, count = debug.gethook()
  if not limit or limit <= 0 or hook then return pcall(fn, ...) end
  debug.sethook(function() error("instruction limit exceeded", 2) end, "", limit)
  local res = pack(pcall(fn, ...))
  debug.sethook(hook, mask, count)
  return unpack(res, 1, res.n)
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error("hubtest: " .. err, 0) end
  local src = f:read("a")
  f:close()
  return src
end

local function shallow(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

---------------------------------------------------------------------------------------
-- The fake `hub` module and the sandbox, one of each per instance.

local Timer = {}
Timer.__index = Timer

function Timer:cancel()
  local pending = self.owner.timers[self] ~= nil
  self.owner.timers[self] = nil
  return pending
end

local function add_timer(inst, ms, fn, every)
  local t = setmetatable({ owner = inst, due = inst.clock + ms, every = every, fn = fn }, Timer)
  inst.seq = inst.seq + 1
  t.seq = inst.seq
  inst.timers[t] = true
  return t
end

local function make_hub(inst)
  local hub = { name = inst.name, version = inst.version }

  function hub.publish(name, data)
    if type(name) ~= "string" then error("hub.publish: name must be a string", 2) end
    if type(data) == "number" then data = tostring(data) end
    if type(data) ~= "string" then error("hub.publish: data must be a string", 2) end
    inst.published[#inst.published + 1] = { name = name, data = data }
    local r = inst.opts.receivers or 0
    if type(r) == "function" then r = r(name, data) end
    return r
  end

  -- hub.call answers from opts.calls[name] (a function(data) returning the
  -- reply, or nil and an error), synchronously: a spec decides what the
  -- listener says, timeouts included.
  function hub.call(name, data, timeout)
    if type(name) ~= "string" then error("hub.call: name must be a string", 2) end
    if type(data) == "number" then data = tostring(data) end
    if type(data) ~= "string" then error("hub.call: data must be a string", 2) end
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
      error("hub.call: timeout must be a number of ms >= 0", 2)
    end
    local fn = inst.opts.calls and inst.opts.calls[name]
    if not fn then return nil, fmt("no listener for '%s'", name) end
    local r, err = fn(data)
    if r == nil and type(err) == "string" and err:sub(1, 8) == "timeout:" then inst.call_failed = err end
    return r, err
  end

  function hub.log(level, msg)
    if not LOG_LEVELS[level] then
      error("hub.log: level must be debug, info, notice or warning, got " .. tostring(level), 2)
    end
    if type(msg) ~= "string" and type(msg) ~= "number" then error("hub.log: msg must be a string", 2) end
    inst.logs[#inst.logs + 1] = { level = level, msg = tostring(msg) }
  end

  function hub.now()
    return inst.clock
  end

  function hub.after(ms, fn)
    if type(ms) ~= "number" or ms < 0 then error("hub.after: ms must be a number >= 0", 2) end
    if type(fn) ~= "function" then error("hub.after: fn must be a function", 2) end
    return add_timer(inst, ms, fn, nil)
  end

  function hub.every(ms, fn)
    if type(ms) ~= "number" or ms <= 0 then error("hub.every: ms must be a number > 0", 2) end
    if type(fn) ~= "function" then error("hub.every: fn must be a function", 2) end
    return add_timer(inst, ms, fn, ms)
  end

  function hub.cancel(handle)
    if getmetatable(handle) ~= Timer then error("hub.cancel: not a timer handle", 2) end
    return handle:cancel()
  end

  return hub
end

local BASE = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
  "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "xpcall", "_VERSION",
}

-- A fresh global table for one handler version: base functions, copies of the safe
-- libraries, os.time/clock/date on the fake clock, text-only load, require limited
-- to hub, cjson and the lib path. No io, debug, collectgarbage, loadfile, dofile,
-- package.loadlib, nor os beyond time/clock/date.
local function make_env(inst)
  local env = {}
  for _, k in ipairs(BASE) do env[k] = _G[k] end
  for _, lib in ipairs({ "string", "table", "math", "utf8", "coroutine" }) do env[lib] = shallow(_G[lib]) end
  env._G = env
  env.os = {
    clock = os.clock,
    time = function(t) if t == nil then return inst.clock // 1000 end return os.time(t) end,
    date = function(f, t) return os.date(f, t or inst.clock // 1000) end,
  }
  env.print = function(...)
    local args = pack(...)
    for i = 1, args.n do args[i] = tostring(args[i]) end
    inst.logs[#inst.logs + 1] = { level = "print", msg = concat(args, "\t", 1, args.n) }
  end
  env.load = function(chunk, chunkname, _, ...) -- the mode is always "t"
    if select("#", ...) > 0 then return load(chunk, chunkname, "t", (...)) end
    return load(chunk, chunkname, "t", env)
  end

  local loaded = {
    hub = inst.hub, cjson = cjson, string = env.string, table = env.table, math = env.math,
    utf8 = env.utf8, coroutine = env.coroutine, os = env.os, _G = env,
  }
  env.package = { loaded = loaded, path = inst.opts.lib or inst.dir .. "lib/?.lua", config = package.config }
  env.require = function(modname)
    if type(modname) ~= "string" then error("require: module name must be a string", 2) end
    if loaded[modname] ~= nil then return loaded[modname] end
    local file = package.searchpath(modname, env.package.path)
    if not file then
      error(fmt("module '%s' not found: the sandbox has hub, cjson and %s", modname, env.package.path), 2)
    end
    local chunk, err = load(read_file(file), "@" .. file, "t", env)
    if not chunk then error(err, 0) end
    local r = chunk(modname, file)
    if r ~= nil then loaded[modname] = r elseif loaded[modname] == nil then loaded[modname] = true end
    return loaded[modname]
  end
  return env
end

---------------------------------------------------------------------------------------
-- Validating what a handler file returns, as the hub does.

local function validate(h, path)
  local function bad(msg, ...)
    error(fmt("%s: malformed return value: " .. msg, path, ...), 0)
  end
  if type(h) ~= "table" then bad("expected a table, got %s", type(h)) end
  for k, v in pairs(h) do
    local kind = HANDLER_KEYS[k]
    if not kind then bad("unknown key %s", type(k) == "string" and "'" .. k .. "'" or tostring(k)) end
    if kind == "function" and type(v) ~= "function" then bad("'%s' must be a function, got %s", k, type(v)) end
    if kind == "string" and (type(v) ~= "string" or v == "") then
      bad("'%s' must be a non-empty string, got %s", k, v == "" and "an empty string" or type(v))
    end
    if kind == "list" then
      if type(v) ~= "table" then bad("'%s' must be an array of strings, got %s", k, type(v)) end
      local n = #v
      for i, s in pairs(v) do
        if math.type(i) ~= "integer" or i < 1 or i > n then bad("'%s' must be an array, not a map", k) end
        if type(s) ~= "string" or s == "" then bad("'%s'[%d] must be a non-empty string", k, i) end
      end
    end
  end
  if h.consume ~= nil then
    local c = h.consume
    if type(c) ~= "table" then bad("'consume' must be a table, got %s", type(c)) end
    for k, v in pairs(c) do
      if k == "stream" or k == "group" then
        if type(v) ~= "string" or v == "" or #v > 1024 then
          bad("'consume.%s' must be a non-empty string of at most 1024 bytes", k)
        end
      elseif k == "max_deliveries" or k == "retry_ms" then
        local lo, hi = 1, 1000000
        if k == "retry_ms" then lo, hi = 0, 3600000 end
        if math.type(v) ~= "integer" or v < lo or v > hi then
          bad("'consume.%s' must be an integer from %d to %d", k, lo, hi)
        end
      else
        bad("unknown key in 'consume' (known: stream, group, max_deliveries, retry_ms)")
      end
    end
    if type(c.stream) ~= "string" then bad("'consume' needs 'stream'") end
    if type(c.group) ~= "string" then bad("'consume' needs 'group'") end
  end
  if h.consume and not h.on_event then bad("'consume' without 'on_event'") end
  if h.consume and h.subscribe and #h.subscribe > 0 then
    bad("'consume' with 'subscribe' (on_event would get both)")
  end
  if h.subscribe and #h.subscribe > 0 and not h.on_event then bad("'subscribe' without 'on_event'") end
  if h.listen and #h.listen > 0 and not h.on_call then bad("'listen' without 'on_call'") end
  if h.group and not (h.subscribe and #h.subscribe > 0) then bad("'group' without 'subscribe'") end
end

---------------------------------------------------------------------------------------
-- Instances: one loaded version of one handler.

local Instance = {}
Instance.__index = Instance

local function live(self)
  if self.retired then error("hubtest: this version was replaced by reload; use the instance it returned", 3) end
end

-- Runs handler code fn(...) under the budget; counts and raises its error.
local function run(self, what, fn, ...)
  local res = pack(guarded(self.opts.instruction_limit or DEFAULT_INSTRUCTION_LIMIT, fn, ...))
  if not res[1] then
    self.errors = self.errors + 1
    self.last_error = tostring(res[2])
    error(fmt("hubtest: %s %s failed: %s", self.name, what, self.last_error), 0)
  end
  return unpack(res, 2, res.n)
end

local function cancel_all(self)
  self.timers = {}
end

local function build(path, opts, prev)
  local self = setmetatable({
    path = path,
    dir = path:match("^(.*[/\\])") or "./",
    name = prev and prev.name or opts.name or path:match("([^/\\]-)%.lua$") or path:match("[^/\\]+$"),
    version = prev and prev.version + 1 or 1,
    clock = prev and prev.clock or opts.now or DEFAULT_NOW,
    ids = prev and prev.ids or { last = 0 }, -- event ids grow hub-wide, across versions
    -- a consumer's group outlives its versions: deliveries per pending id, dead letters
    deliveries = prev and prev.deliveries or {},
    dead = prev and prev.dead or {},
    opts = opts,
    published = {}, logs = {}, timers = {}, seq = 0,
    events = 0, errors = 0, last_error = nil,
  }, Instance)
  self.hub = make_hub(self)
  local chunk, err = load(opts.source or read_file(path), "@" .. path, "t", make_env(self))
  if not chunk then error("hubtest: cannot load " .. err, 0) end
  local ok, h = guarded(opts.instruction_limit or DEFAULT_INSTRUCTION_LIMIT, chunk)
  if not ok then error(fmt("hubtest: cannot load %s: %s", path, tostring(h)), 0) end
  validate(h, path)
  self.handler = h
  self.listening = {}
  for _, n in ipairs(h.listen or {}) do self.listening[n] = true end
  return self
end

-- Loads a handler file (version 1). opts: name (default: the file's base name),
-- now (start of the fake clock, ms), lib (require path, default <dir>/lib/?.lua),
-- receivers (what hub.publish returns: number or function(name, data)),
-- instruction_limit (per call, 0 = none), source (use this text instead of the file).
function hubtest.load(path, opts)
  return build(path, opts or {}, nil)
end

-- The first subscribe pattern that matches name, or nil.
function Instance:match(name)
  for _, p in ipairs(self.handler.subscribe or {}) do
    if hubtest.glob(p, name) then return p end
  end
  return nil
end

local function next_id(self)
  self.ids.last = self.ids.last + 1
  return self.ids.last
end

-- Publishes name/data to the handler: true if a subscribe pattern matched (on_event
-- ran), false if none did. An error in on_event is raised.
function Instance:event(name, data)
  live(self)
  data = data or ""
  assert(type(name) == "string" and type(data) == "string", "event: name and data must be strings")
  local pattern = self:match(name)
  if not pattern then return false end
  self.events = self.events + 1
  run(self, "on_event", self.handler.on_event,
    { name = name, data = data, pattern = pattern, id = next_id(self), time = self.clock })
  return true
end

-- A stream entry for a `consume` handler: id ("ms-seq") and its fields (a table of
-- strings). Returns true if on_event returned (the entry is acknowledged), or false
-- and the error (it stays pending; past max_deliveries it went to .dead, and
-- the third result is "dead").
function Instance:entry(id, fields)
  live(self)
  local c = self.handler.consume
  assert(c, "entry: the handler has no 'consume'")
  assert(type(id) == "string" and id:match("^%d+%-%d+$"), "entry: id must be an entry id \"ms-seq\"")
  fields = fields or {}
  local f = {}
  for k, v in pairs(fields) do
    assert(type(k) == "string" and type(v) == "string", "entry: fields must map strings to strings")
    f[k] = v
  end
  local n = (self.deliveries[id] or 0) + 1
  self.deliveries[id] = n
  self.events = self.events + 1
  self.call_failed = nil
  local ev = { stream = c.stream, entry = id, name = f.name, data = f.data, fields = f, deliveries = n,
    time = tonumber(id:match("^(%d+)")) }
  local ok, err = guarded(self.opts.instruction_limit or DEFAULT_INSTRUCTION_LIMIT, self.handler.on_event, ev)
  if ok and self.call_failed then ok, err = false, self.call_failed end
  if ok then
    self.deliveries[id] = nil
    return true
  end
  self.errors = self.errors + 1
  self.last_error = tostring(err)
  if n >= (c.max_deliveries or 5) then
    local d = {}
    for k, v in pairs(f) do d[k] = v end
    d.error, d.deliveries, d.entry, d.group = self.last_error, tostring(n), id, c.group
    self.dead[#self.dead + 1] = d
    self.deliveries[id] = nil
    return false, self.last_error, "dead"
  end
  return false, self.last_error
end

-- Returns the dead letters so far (oldest first) and starts a new list.
function Instance:take_dead()
  local list = {}
  for i, d in ipairs(self.dead) do
    list[i] = d
    self.dead[i] = nil
  end
  return list
end

-- HUB.CALL name data: returns the reply string, or nil and the error message.
function Instance:call(name, data)
  live(self)
  data = data or ""
  assert(type(name) == "string" and type(data) == "string", "call: name and data must be strings")
  if not self.listening[name] then return nil, fmt("no listener for '%s'", name) end
  self.events = self.events + 1
  local ev = { name = name, data = data, id = next_id(self), time = self.clock }
  local ok, r = guarded(self.opts.instruction_limit or DEFAULT_INSTRUCTION_LIMIT, self.handler.on_call, ev)
  if ok and type(r) == "number" then r = tostring(r) end
  if ok and type(r) ~= "string" then
    ok, r = false, fmt("on_call returned %s, expected a string or a number", type(r))
  end
  if not ok then
    self.errors = self.errors + 1
    self.last_error = tostring(r)
    return nil, self.last_error
  end
  return r
end

-- Another listener took over the listen name `name` (a client's HUB.LISTEN): runs
-- on_replaced(name) if the handler has one, as the hub does. The name stays
-- registered (the handler is the fallback), so :call still answers it here.
function Instance:replaced(name)
  live(self)
  assert(self.listening[name], "replaced: the handler does not listen on " .. tostring(name))
  if self.handler.on_replaced then run(self, "on_replaced", self.handler.on_replaced, name) end
end

-- Returns the events published so far and starts a new list.
function Instance:take_published()
  local list = self.published
  self.published = {}
  return list
end

-- Number of pending timers.
function Instance:timer_count()
  local n = 0
  for _ in pairs(self.timers) do n = n + 1 end
  return n
end

-- Moves the fake clock ms forward, firing due timers in time order (ties in the
-- order they were scheduled). Returns how many callbacks ran.
function Instance:advance(ms)
  live(self)
  assert(type(ms) == "number" and ms >= 0, "advance: ms must be a number >= 0")
  local target, fired = self.clock + ms, 0
  while true do
    local t
    for c in pairs(self.timers) do
      if c.due <= target and (not t or c.due < t.due or (c.due == t.due and c.seq < t.seq)) then t = c end
    end
    if not t then break end
    self.clock = t.due
    if t.every then
      t.due = t.due + t.every
      self.seq = self.seq + 1
      t.seq = self.seq
    else
      self.timers[t] = nil
    end
    fired = fired + 1
    run(self, "timer", t.fn)
  end
  self.clock = target
  return fired
end

-- Hot reload: loads path (default: the same file, or the same opts.source text;
-- opts.source gives new text)
-- as the next version, hands over a plain-data copy of snapshot() to its
-- on_reload(old), cancels this version's timers and returns the new instance.
-- If anything fails, raises and leaves this version serving.
function Instance:reload(path, opts)
  live(self)
  local o = shallow(self.opts)
  o.source = opts and opts.source or (not path and self.opts.source) or nil
  local new = build(path or self.path, o, self)
  local ok, err = pcall(function()
    local old
    if self.handler.snapshot then
      old = run(self, "snapshot", self.handler.snapshot)
      old = plain_copy(old, "snapshot()", {})
    end
    if new.handler.on_reload then run(new, "on_reload", new.handler.on_reload, old) end
  end)
  if not ok then
    cancel_all(new)
    err = tostring(err):gsub("^hubtest: ", "")
    error(fmt("hubtest: reload of %s failed, version %d keeps serving: %s", self.name, self.version, err), 0)
  end
  cancel_all(self)
  self.retired = true
  return new
end

return hubtest
