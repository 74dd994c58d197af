"""Containment of handler Lua code: nothing a handler runs may stall or crash
the hub. Each hostile case runs inside the watchdog (hostile.py), which
measures the longest PING round trip and the RSS while it runs."""
import subprocess

import pytest
import redis

from conftest import HUB_BIN, IS_ASAN, wait_for
from conftest import write_handler as write, hub_call as call, hub_call_error as call_error
from hostile import STALL_BOUND, Watchdog

# The slice is 50 ms; a case may also spend one full collection of a
# handler's heap, and the sanitizer build is several times slower.
SLICE_STALL = STALL_BOUND


def listener(name, body):
    """A handler answering HUB.CALL <name> with on_call's body."""
    return 'local hub = require("hub")\nlocal cjson = require("cjson")\n' \
           'return { listen = { "%s" }, on_call = function(ev)\n%s\nend }\n' % (name, body)


# --------------------------------------------------------------------------
# 1. Finalizers: Lua runs them with hooks off
# --------------------------------------------------------------------------

def test_gc_finalizer_is_refused_and_a_late_gc_field_is_inert(start, hdir):
    srv = start({
        "fin.lua": listener("fin", '''
            local ok, err = pcall(setmetatable, {}, {__gc = function() while true do end end})
            collectgarbage()
            return tostring(ok) .. " " .. tostring(err)'''),
        "late.lua": '''
            local mt = {}
            KEEP = setmetatable({}, mt)            -- kept at top level: closed at reload
            mt.__gc = function() while true do end end   -- added later: not a finalizer
            return { listen = { "late" }, on_call = function()
              local m2 = {}
              local t = setmetatable({}, m2)
              m2.__gc = function() while true do end end
              t = nil
              collectgarbage(); collectgarbage()
              return "alive"
            end }''',
    })
    r = srv.client()
    with Watchdog(srv) as wd:
        out = call(r, "fin")
        assert out.startswith("false ") and "finalizers (__gc) are not available to handlers" in out, out
        assert call(r, "late") == "alive"
        write(hdir, "late.lua", 'return {}')
        r.execute_command("HUB.RELOAD", "late")   # lua_close of the old state
    wd.check(max_stall=SLICE_STALL)
    assert r.ping()


# --------------------------------------------------------------------------
# 2. xpcall's message handler
# --------------------------------------------------------------------------

def test_xpcall_message_handler_runs_under_the_budget(start):
    srv = start({"x.lua": listener("x", '''
        if ev.data == "plain" then
          local ok, e = xpcall(function(a) error(a .. "!", 0) end, function(e) return "h:" .. e end, "boom")
          return tostring(ok) .. "," .. e
        end
        xpcall(function() error("x") end, function() while true do end end)
        return "unreachable"''')})
    r = srv.client()
    assert call(r, "x", "plain") == "false,h:boom!"
    with Watchdog(srv) as wd:
        err = call_error(r, "x")
    assert "time slice exceeded" in err or "instruction limit exceeded" in err, err
    wd.check(max_stall=SLICE_STALL)


# --------------------------------------------------------------------------
# 3. Fresh coroutines start with a full hook step
# --------------------------------------------------------------------------

def test_nested_fresh_coroutines_are_charged(start):
    srv = start({"co.lua": listener("co", '''
        local function f(d)
          if d > 0 then
            coroutine.resume(coroutine.create(f), d - 1)
            coroutine.wrap(f)(d - 1)
          end
        end
        f(40)
        return "unreachable"''')})
    r = srv.client()
    with Watchdog(srv) as wd:
        err = call_error(r, "co")
    assert "time slice exceeded" in err or "instruction limit exceeded" in err, err
    wd.check(max_stall=SLICE_STALL)


# --------------------------------------------------------------------------
# 4. cjson nesting depth
# --------------------------------------------------------------------------

def test_cjson_depth_is_clamped_for_every_instance(start):
    srv = start({"j.lua": listener("j", '''
        local safe = require("cjson.safe")
        local inst = { cjson, safe, cjson.new(), safe.new() }
        local out = {}
        local t = {}
        local cur = t
        for _ = 1, 300000 do cur[1] = {} cur = cur[1] end
        for i, m in ipairs(inst) do
          m.decode_max_depth(1e9)
          m.encode_max_depth(1e9)
          -- cjson raises, cjson.safe returns nil, err: either way "failed:<message>"
          local ok, r1, r2 = pcall(m.decode, string.rep("[", 300000))
          out[#out + 1] = tostring(not ok or r1 == nil) .. ":" .. tostring(ok and r2 or r1):sub(1, 60)
          ok, r1, r2 = pcall(m.encode, t)
          out[#out + 1] = tostring(not ok or r1 == nil) .. ":" .. tostring(ok and r2 or r1):sub(1, 60)
          -- the clamped maximum still works
          local deep = string.rep("[", 999) .. "1" .. string.rep("]", 999)
          out[#out + 1] = tostring(m.encode(m.decode(deep)) == deep)
        end
        return table.concat(out, "|")''')}, **{"handler-time-slice": 10000})
    r = srv.client()
    with Watchdog(srv) as wd:
        out = call(r, "j").split("|")
    wd.check(max_stall=SLICE_STALL * 2)
    assert len(out) == 12, out
    for i in range(4):
        dec, enc, ok = out[3 * i:3 * i + 3]
        assert dec.startswith("true:Found too many nested data structures"), out
        assert enc.startswith("true:Cannot serialise, excessive nesting (1001)"), out
        assert ok == "true", out


def test_cjson_encode_output_is_bounded_by_the_memory_cap(start):
    # lua-cjson builds its text with malloc, outside the state's cap: one
    # 1 MB string referenced 100,000 times (a few MB of Lua memory) asked for
    # 100 GB, and {[1e9] = 1} with sparse arrays allowed for a billion
    # "null"s. Both are refused before any output exists.
    srv = start({"j.lua": listener("j", '''
        local safe = require("cjson.safe")
        local s = string.rep("x", 1024 * 1024)
        local many = {}
        for i = 1, 100000 do many[i] = s end
        local out = {}
        local ok, err = pcall(cjson.encode, many)
        out[#out + 1] = tostring(ok) .. ":" .. tostring(err)
        local r, e = safe.encode(many)                  -- cjson.safe: nil, err
        out[#out + 1] = tostring(r) .. ":" .. tostring(e)
        local inst = cjson.new()
        inst.encode_sparse_array(true, 0)               -- ratio 0: never "too sparse"
        ok, err = pcall(inst.encode, {[1e9] = 1})
        out[#out + 1] = tostring(ok) .. ":" .. tostring(err)
        -- ordinary values still encode, holes included
        out[#out + 1] = inst.encode({[3] = 1}) .. cjson.encode({a = "x"})
        return table.concat(out, "|")''')}, **{"handler-time-slice": 10000})
    r = srv.client()
    with Watchdog(srv) as wd:
        out = call(r, "j").split("|")
    wd.check(max_stall=SLICE_STALL * 2, max_rss_growth=None if IS_ASAN else 200 * 1024 * 1024)
    cap = "cannot encode: the JSON text would pass the handler's memory cap (67108864 bytes)"
    assert out[0].startswith("false:") and out[0].endswith(cap), out
    assert out[1] == "nil:" + cap, out
    assert out[2].startswith("false:") and out[2].endswith(cap), out
    assert out[3] == '[null,null,1]{"a":"x"}', out


# --------------------------------------------------------------------------
# 5. C library loops
# --------------------------------------------------------------------------

def test_empty_string_rep_returns_at_once(start):
    srv = start({"rep.lua": listener("rep", 'return #string.rep("", 1e9) .. #string.rep("", 1e9, "")')})
    r = srv.client()
    with Watchdog(srv) as wd:
        assert call(r, "rep") == "00"
    wd.check(max_stall=SLICE_STALL)


@pytest.mark.parametrize("code", [
    'for _ = 1, 1e9 do string.rep("", 1e9, "") end',
    'table.move({}, 1, 1e9, 2)',
    'local s = ("a"):rep(200) ; s:find(".-.-.-.-b")',
    'local s = ("a"):rep(200) ; s:match(".-.-.-.-b")',
    'local s = ("a"):rep(200) ; s:gsub(".-.-.-.-b", "")',
    'local s = ("a"):rep(200) ; for x in s:gmatch(".-.-.-.-b") do end',
    'local t = {} for i = 1, 2e6 do t[i] = (i * 7919) % 1000003 end ; table.sort(t)',
    'for _ = 1, 1e7 do collectgarbage() end',
])
def test_library_loops_stop_at_the_time_slice(start, code):
    srv = start({"lib.lua": listener("lib", code + '\nreturn "done"')})
    r = srv.client()
    with Watchdog(srv) as wd:
        err = call_error(r, "lib")
    assert "time slice exceeded (handler-time-slice is 50 ms)" in err or "instruction limit exceeded" in err, err
    wd.check(max_stall=SLICE_STALL)
    assert call_error(r, "lib")   # the handler keeps working (and failing)


# --------------------------------------------------------------------------
# 6. The slice is shared by nested invocations
# --------------------------------------------------------------------------

def test_slice_covers_hub_call_into_a_burning_listener(start):
    srv = start({
        "burn.lua": listener("burn", 'while true do end'),
        "caller.lua": listener("caller", '''
            local n = 0
            for _ = 1, 500 do
              local ok, err = pcall(hub.call, "burn", "")
              n = n + 1
            end
            return "made " .. n .. " calls"'''),
    })
    r = srv.client()
    with Watchdog(srv) as wd:
        err = call_error(r, "caller")
    assert "time slice exceeded (handler-time-slice is 50 ms)" in err, err
    wd.check(max_stall=SLICE_STALL)


def test_slice_is_sticky_and_configurable(start):
    srv = start({"s.lua": listener("s", '''
        local t0 = os.clock()
        while true do pcall(function() while true do local x = ("a"):rep(10) end end) end''')},
        **{"handler-time-slice": 20, "handler-instruction-limit": 1 << 40})
    r = srv.client()
    with Watchdog(srv) as wd:
        err = call_error(r, "s")
    assert "time slice exceeded (handler-time-slice is 20 ms)" in err, err
    wd.check(max_stall=SLICE_STALL)


@pytest.mark.hub_only
def test_time_slice_option_rejects_zero(tmp_path):
    out = subprocess.run([HUB_BIN, "--port", "0", "--handlers", str(tmp_path), "--handler-time-slice", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "handler-time-slice" in out.stderr, out


# --------------------------------------------------------------------------
# 7. Near the memory cap
# --------------------------------------------------------------------------

def test_allocation_loop_near_the_memory_cap_is_bounded(start):
    srv = start({"m.lua": listener("m", '''
        FILL = FILL or {}
        if ev.data == "fill" then   -- may take several calls of one slice each
          local ok, err = pcall(function() for i = #FILL + 1, 1e9 do FILL[i] = {i, i, i} end end)
          return tostring(err):match("not enough memory") and "filled " .. #FILL or "more"
        end
        for _ = 1, 1000 do pcall(function() local x = {} for j = 1, 1e6 do x[j] = j end end) end
        return "unreachable"''')}, **{"handler-memory-limit": "16mb", "handler-instruction-limit": 1 << 40})
    r = srv.client()
    out = "more"
    for _ in range(200):
        try:
            out = call(r, "m", "fill")
        except redis.ResponseError as e:
            assert "time slice exceeded" in str(e), e
        if out.startswith("filled"):
            break
    assert out.startswith("filled "), out
    with Watchdog(srv) as wd:
        err = call_error(r, "m")
    assert "time slice exceeded" in err, err
    # the first refusal past the slice ends the run: one or two emergency
    # collections of a 16 MB heap, not one per pcall round
    wd.check(max_stall=STALL_BOUND)


# --------------------------------------------------------------------------
# 8. hub.call where it cannot wait; the hub's own waiting coroutines
# --------------------------------------------------------------------------

def test_hub_call_in_a_sort_comparator_registers_nothing(start):
    srv = start({"h.lua": listener("h", '''
        local got
        table.sort({3, 2, 1}, function(a, b)
          local r, err = hub.call("remote", "x")
          got = got or tostring(r) .. " " .. tostring(err)
          return a < b
        end)
        local g2
        ("ab"):gsub(".", function(c) local r, e = hub.call("remote", c); g2 = tostring(r) .. " " .. tostring(e) end)
        -- a yield now must not receive an orphaned reply
        local ok, err = pcall(coroutine.yield)
        return got .. " | " .. g2 .. " | " .. tostring(ok) .. " " .. tostring(err)''')})
    lis = srv.raw()
    lis.send_command("HUB.LISTEN", "remote")
    lis.read_reply()
    r = srv.client()
    with Watchdog(srv) as wd:
        err = call_error(r, "h")
    wd.check(max_stall=SLICE_STALL)
    # the comparator's calls failed without reaching the listener
    assert "may only yield inside hub.call" in err, err
    assert lis.is_open() and lis.assert_no_data(0.2) is None


def test_handler_cannot_resume_or_close_its_waiting_coroutine(start):
    srv = start({"w.lua": '''
        local hub = require("hub")
        local CO
        return {
          subscribe = { "park" },
          on_event = function(ev) CO = coroutine.running(); hub.call("remote", "x") end,
          listen = { "poke" },
          on_call = function(ev)
            local a = table.pack(pcall(coroutine.resume, CO, "fake reply"))
            local b = table.pack(pcall(coroutine.close, CO))
            return tostring(a[2]) .. " | " .. tostring(b[2]) .. " | " .. coroutine.status(CO)
          end,
        }'''})
    lis = srv.raw()
    lis.send_command("HUB.LISTEN", "remote")
    lis.read_reply()
    r = srv.client()
    with Watchdog(srv) as wd:
        r.publish("park", "")
        req = lis.read_reply()
        assert req[0] == b"request", req
        out = call(r, "poke")
        assert out.count("cannot") == 2 and "waiting in hub.call" in out and out.endswith("suspended"), out
        assert lis.call("HUB.REPLY", req[1], "real") is not None
    wd.check(max_stall=SLICE_STALL)
    wait_for(lambda: r.execute_command("HUB.HANDLERS") is not None)


# --------------------------------------------------------------------------
# 9. Many listen names
# --------------------------------------------------------------------------

def test_many_listen_names_load_in_linear_time(start, hdir):
    # the slice also bounds loading; this case measures the copy of the list
    srv = start({}, **{"handler-time-slice": 5000})
    r = srv.client()
    names = ", ".join('"n%d"' % (i % 60000) for i in range(80000))
    with Watchdog(srv) as wd:
        write(hdir, "many.lua", 'return { listen = { %s }, on_call = function() return "ok" end }' % names)
        r.execute_command("HUB.RELOAD", "many")
        assert call(r, "n59999") == "ok"
    wd.check(max_stall=STALL_BOUND * (4 if IS_ASAN else 2))
