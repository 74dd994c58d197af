"""Lua handlers: loading, events, calls, errors, the sandbox and its limits,
timers, and hot reload (SIGHUP and HUB.RELOAD) with state handover and no
event lost. Every test writes its own handlers directory."""
import json
import os
import signal
import threading
import time

import pytest
import redis

from conftest import IO_TIMEOUT, wait_for
from conftest import hub_call as call, hub_call_error as call_error, write_handler as write

pytestmark = pytest.mark.hub_only


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def handlers(r):
    """HUB.HANDLERS (RESP2) as {name: {field: value}} with str values."""
    out = {}
    for flat in r.execute_command("HUB.HANDLERS"):
        d = {}
        for i in range(0, len(flat), 2):
            k = flat[i].decode()
            v = flat[i + 1]
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [x.decode() for x in v]
            d[k] = v
        out[d["name"]] = d
    return out


def reload(r, *args):
    return [x.decode("utf-8", "replace") for x in r.execute_command("HUB.RELOAD", *args)]


def sighup(server):
    os.kill(server.pid, signal.SIGHUP)  # not server.signal(): that marks the server as stopping


def subscriber(server, *channels, patterns=()):
    """A raw client subscribed to channels / patterns (confirmations read)."""
    c = server.raw()
    for ch in channels:
        c.send_command("SUBSCRIBE", ch)
        c.read_reply()
    for p in patterns:
        c.send_command("PSUBSCRIBE", p)
        c.read_reply()
    return c


def next_message(c, timeout=IO_TIMEOUT):
    """(channel, payload) of the next message or pmessage frame."""
    m = c.read_reply(timeout)
    if m[0] == b"pmessage":
        return m[2].decode(), m[3].decode()
    return m[1].decode(), m[2].decode()


COUNTER = r'''
local hub = require("hub")
local n = 0
return {
  subscribe = { "c.*" },
  on_event = function(ev) n = n + 1 end,
  listen = { "c.count" },
  on_call = function() return "%s:" .. n .. ":v" .. hub.version end,
  snapshot = function() return { n = n } end,
  on_reload = function(old) n = old and old.n or 0 end,
}
'''


def counter(tag):
    return COUNTER % tag


# --------------------------------------------------------------------------
# Events and calls
# --------------------------------------------------------------------------

def test_handler_receives_events_and_republishes(start):
    s = start({"relay.lua": r'''
local hub = require("hub")
return {
  subscribe = { "in.*" },
  on_event = function(ev)
    hub.publish("out", table.concat({ ev.name, ev.data, ev.pattern, math.type(ev.id), math.type(ev.time) }, "|"))
  end,
}
'''})
    sub = subscriber(s, "out")
    r = s.client()
    assert r.publish("in.a", "hello") == 1  # the handler is a receiver
    assert next_message(sub) == ("out", "in.a|hello|in.*|integer|integer")
    assert r.publish("other", "x") == 0
    assert r.publish("in.b", "") == 1
    assert next_message(sub) == ("out", "in.b||in.*|integer|integer")
    assert handlers(r)["relay"]["events"] == 2


def test_handler_never_receives_its_own_publications(start):
    """The DESIGN.md counter publishes orders.seen.v1, which its own
    orders.*.v1 matches: it must count each order once, not feed itself."""
    s = start({"counter.lua": r'''
local hub   = require("hub")
local cjson = require("cjson")
local seen = 0
return {
  subscribe = { "orders.*.v1" },
  on_event  = function(ev)
    seen = seen + 1
    hub.publish("orders.seen.v1", cjson.encode({ n = seen, name = ev.name }))
  end,
  listen    = { "orders.count.v1" },
  on_call   = function(ev) return tostring(seen) end,
}
'''})
    sub = subscriber(s, "orders.seen.v1")
    r = s.client()
    for i in range(3):
        r.publish("orders.created.v1", str(i))
    seen = [json.loads(next_message(sub)[1])["n"] for _ in range(3)]
    assert seen == [1, 2, 3]
    r.publish("orders.flush.v1", "")  # a marker: once it is counted, all before it were
    assert json.loads(next_message(sub)[1]) == {"n": 4, "name": "orders.flush.v1"}
    assert call(r, "orders.count.v1") == "4"
    assert handlers(r)["counter"]["events"] == 4


def test_event_fields_id_and_time_come_from_the_router(start):
    s = start({"t.lua": r'''
local hub = require("hub")
return {
  subscribe = { "t" },
  on_event = function(ev) hub.publish("t.out", ev.id .. " " .. ev.time .. " " .. hub.now()) end,
}
'''})
    sub = subscriber(s, "t.out")
    r = s.client()
    before = time.time() * 1000
    r.publish("t", "a")
    r.publish("t", "b")
    ids = []
    for _ in range(2):
        ev_id, ev_time, now = (int(x) for x in next_message(sub)[1].split())
        assert before - 1000 <= ev_time <= now <= time.time() * 1000 + 1000
        ids.append(ev_id)
    assert ids[1] > ids[0] > 0


def test_event_matching_several_patterns_runs_once_with_the_first_pattern(start):
    s = start({"m.lua": r'''
local hub = require("hub")
return {
  subscribe = { "a.*", "*.b", "a.b" },
  on_event = function(ev) hub.publish("m.out", ev.name .. " " .. ev.pattern) end,
}
'''})
    sub = subscriber(s, "m.out")
    r = s.client()
    r.publish("a.b", "1")
    r.publish("x.b", "2")
    assert next_message(sub) == ("m.out", "a.b a.*")
    assert next_message(sub) == ("m.out", "x.b *.b")
    sub.assert_no_data(0.2)
    assert handlers(r)["m"]["events"] == 2


def test_events_are_processed_in_publish_order(start):
    s = start({"o.lua": r'''
local hub = require("hub")
return { subscribe = { "o.*" }, on_event = function(ev) hub.publish("o-out", ev.data) end }
'''})
    sub = subscriber(s, "o-out")
    r = s.client()
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.publish("o.%d" % (i % 7), str(i))
    p.execute()
    got = [int(next_message(sub)[1]) for _ in range(2000)]
    assert got == list(range(2000))


def test_call_replies_with_the_return_value(start):
    s = start({"svc.lua": r'''
return {
  listen = { "echo", "int", "float", "nil", "table", "boom", "boom0", "name" },
  on_call = function(ev)
    if ev.name == "echo" then return ev.data end
    if ev.name == "int" then return 42 end
    if ev.name == "float" then return 1.5 end
    if ev.name == "nil" then return nil end
    if ev.name == "table" then return {} end
    if ev.name == "boom" then error("it broke") end
    if ev.name == "boom0" then error("plain message", 0) end
    return tostring(ev.pattern) .. " " .. math.type(ev.id) .. " " .. math.type(ev.time)
  end,
}
'''})
    r = s.client()
    assert call(r, "echo", "hi there") == "hi there"
    assert r.execute_command("HUB.CALL", "echo", b"\x00\xff\r\n") == b"\x00\xff\r\n"
    assert call(r, "echo", "") == ""
    assert call(r, "int") == "42"
    assert call(r, "float") == "1.5"
    assert call(r, "name") == "nil integer integer"
    assert call_error(r, "nil") == "on_call returned nil, expected a string or a number"
    assert call_error(r, "table") == "on_call returned table, expected a string or a number"
    assert call_error(r, "boom0") == "plain message"
    msg = call_error(r, "boom")
    assert msg.endswith("svc.lua:10: it broke"), msg
    assert "traceback" not in msg
    h = handlers(r)["svc"]
    assert h["calls"] == 10 and h["errors"] == 4
    assert h["last_error"].startswith("on_call: ") and h["last_error"].endswith("svc.lua:10: it broke")


def test_call_to_unknown_name_and_bad_arguments(start):
    s = start({"e.lua": 'return { listen = { "e" }, on_call = function(ev) return ev.data end }'})
    r = s.client()
    assert call_error(r, "nobody") == "no listener for 'nobody'"
    assert r.execute_command("HUB.CALL", "e", "x", 1000) == b"x"
    with pytest.raises(redis.ResponseError, match="timeout"):
        r.execute_command("HUB.CALL", "e", "x", "soon")
    with pytest.raises(redis.ResponseError, match="timeout"):
        r.execute_command("HUB.CALL", "e", "x", -1)
    with pytest.raises(redis.ResponseError, match="syntax"):
        r.execute_command("HUB.CALL", "e", "x", 1, 2)
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("HUB.CALL", "e")


def test_publish_from_a_call_reaches_clients_and_other_handlers(start):
    s = start({
        "a.lua": r'''
local hub = require("hub")
return { listen = { "a" }, on_call = function(ev) return hub.publish("to.b", ev.data) end }
''',
        "b.lua": r'''
local hub = require("hub")
return { subscribe = { "to.b" }, on_event = function(ev) hub.publish("from.b", ev.data .. "!") end }
''',
    })
    sub = subscriber(s, "from.b", "to.b")
    r = s.client()
    assert call(r, "a", "x") == "2"  # handler b and the subscriber
    assert next_message(sub) == ("to.b", "x")
    assert next_message(sub) == ("from.b", "x!")


def test_handlers_publishing_to_each_other_stay_fair(start):
    """Two handlers that republish to each other forever neither recurse nor
    starve clients: their events are run in bounded batches."""
    pingpong = r'''
local hub = require("hub")
local n = 0
return {
  subscribe = { "%s" },
  on_event = function(ev) n = n + 1; hub.publish("%s", ev.data) end,
  listen = { "%s.n" },
  on_call = function() return n end,
}
'''
    s = start({"ping.lua": pingpong % ("ping", "pong", "ping"),
               "pong.lua": pingpong % ("pong", "ping", "pong")})
    r = s.client()
    r.publish("ping", "go")
    wait_for(lambda: int(call(r, "ping.n")) > 5000, what="the loop to spin")
    for _ in range(20):
        t = time.monotonic()
        assert r.ping()
        assert time.monotonic() - t < 1.0
    a = int(call(r, "pong.n"))
    time.sleep(0.05)
    assert int(call(r, "pong.n")) > a
    # stop it by reloading a version that does not republish
    write(s.handlers_dir, "pong.lua", 'return { subscribe = { "pong" }, on_event = function() end }')
    assert reload(r, "pong") == ["pong: reloaded v2"]
    n = int(call(r, "ping.n"))
    time.sleep(0.05)
    assert int(call(r, "ping.n")) <= n + 1


def test_a_handler_can_subscribe_to_events_of_another_handler(start):
    s = start({
        "first.lua": r'''
local hub = require("hub")
return { subscribe = { "x" }, on_event = function(ev) hub.publish("y", ev.data .. "1") end }
''',
        "second.lua": r'''
local hub = require("hub")
return { subscribe = { "y" }, on_event = function(ev) hub.publish("z", ev.data .. "2") end }
''',
    })
    sub = subscriber(s, "z")
    s.client().publish("x", "0")
    assert next_message(sub) == ("z", "012")


# --------------------------------------------------------------------------
# Loading and errors
# --------------------------------------------------------------------------

def test_syntax_error_at_load_shows_failed_with_file_and_line(start):
    s = start({
        "bad.lua": 'return {\n  subscribe = { "x" },\n  on_event = function( end,\n}\n',
        "good.lua": 'return { listen = { "good" }, on_call = function() return "fine" end }',
    })
    r = s.client()
    assert r.ping()
    h = handlers(r)
    assert h["bad"]["state"] == "failed"
    assert h["bad"]["version"] == 0
    assert "bad.lua:3:" in h["bad"]["last_error"], h["bad"]["last_error"]
    assert h["bad"]["subscribe"] == []
    assert h["good"]["state"] == "running"
    assert call(r, "good") == "fine"
    assert r.publish("x", "1") == 0  # a failed handler is not subscribed
    assert "bad.lua:3:" in s.output()


@pytest.mark.parametrize("text,message", [
    ('return 42', "malformed return value: expected a table, got number"),
    ('return { subscribe = { "x" } }', "malformed return value: 'subscribe' without 'on_event'"),
    ('return { listen = { "x" } }', "malformed return value: 'listen' without 'on_call'"),
    ('return { on_evnt = function() end }', "malformed return value: unknown key 'on_evnt'"),
    ('return { subscribe = "x", on_event = print }', "'subscribe' must be an array of strings, got string"),
    ('return { subscribe = { a = "x" }, on_event = print }', "'subscribe' must be an array, not a map"),
    ('return { subscribe = { "" }, on_event = print }', "'subscribe'[1] must be a non-empty string"),
    ('return { on_call = "f" }', "'on_call' must be a function, got string"),
    ('error("at load")', "m.lua:1: at load"),
    ('local x = require("nope")', "module 'nope' not found"),
])
def test_malformed_handlers_fail_to_load_with_a_reason(start, text, message):
    s = start({"m.lua": text})
    h = handlers(s.client())["m"]
    assert h["state"] == "failed"
    assert message in h["last_error"], h["last_error"]


def test_errors_are_counted_and_do_not_affect_other_handlers(start):
    s = start({
        "flaky.lua": r'''
local hub = require("hub")
return {
  subscribe = { "ev" },
  on_event = function(ev)
    if ev.data == "bad" then error("cannot handle " .. ev.data) end
    hub.publish("flaky.ok", ev.data)
  end,
}
''',
        "steady.lua": r'''
local hub = require("hub")
return { subscribe = { "ev" }, on_event = function(ev) hub.publish("steady.ok", ev.data) end }
''',
    })
    sub = subscriber(s, "flaky.ok", "steady.ok")
    r = s.client()
    for d in ("1", "bad", "2", "bad", "3"):
        r.publish("ev", d)
    got = sorted(next_message(sub) for _ in range(8))
    assert got == sorted([("flaky.ok", d) for d in "123"] + [("steady.ok", d) for d in ("1", "bad", "2", "bad", "3")])
    wait_for(lambda: handlers(r)["flaky"]["events"] == 5)
    h = handlers(r)
    assert h["flaky"]["errors"] == 2
    assert h["flaky"]["last_error"].startswith("on_event: ")
    assert h["flaky"]["last_error"].endswith("flaky.lua:6: cannot handle bad")
    assert h["steady"]["errors"] == 0 and h["steady"]["events"] == 5
    assert h["flaky"]["state"] == "running"


def test_listen_name_taken_by_another_handler_fails_the_second(start):
    s = start({
        "a.lua": 'return { listen = { "shared" }, on_call = function() return "a" end }',
        "b.lua": 'return { listen = { "shared", "b" }, on_call = function() return "b" end }',
    })
    r = s.client()
    h = handlers(r)
    assert h["a"]["state"] == "running"
    assert h["b"]["state"] == "failed"
    assert "listen name 'shared' is already taken by handler 'a'" in h["b"]["last_error"]
    assert call(r, "shared") == "a"
    assert call_error(r, "b") == "no listener for 'b'"


# --------------------------------------------------------------------------
# Hot reload
# --------------------------------------------------------------------------

def test_reload_by_sighup_hands_state_over(start):
    s = start({"c.lua": counter("one")})
    r = s.client()
    for i in range(3):
        r.publish("c.x", str(i))
    wait_for(lambda: call(r, "c.count") == "one:3:v1")
    write(s.handlers_dir, "c.lua", counter("two"))
    sighup(s)
    wait_for(lambda: call(r, "c.count") == "two:3:v2", what="the reload")
    r.publish("c.y", "")
    wait_for(lambda: call(r, "c.count") == "two:4:v2")
    h = handlers(r)["c"]
    assert h["version"] == 2 and h["state"] == "running" and h["events"] == 4


def test_sighup_with_nothing_changed_reloads_nothing(start):
    s = start({"c.lua": counter("one")})
    r = s.client()
    loaded_at = handlers(r)["c"]["loaded_at"]
    os.utime(os.path.join(str(s.handlers_dir), "c.lua"))  # a newer mtime is not a change
    sighup(s)
    time.sleep(0.2)
    assert r.ping()
    h = handlers(r)["c"]
    assert h["version"] == 1 and h["loaded_at"] == loaded_at


def test_reload_command_replies_with_what_happened(start):
    s = start({"a.lua": counter("a"), "b.lua": counter("b").replace("c.count", "b.count")})
    r = s.client()
    assert reload(r) == ["a: unchanged v1", "b: unchanged v1"]
    write(s.handlers_dir, "a.lua", counter("a2"))
    assert reload(r) == ["a: reloaded v2", "b: unchanged v1"]
    assert reload(r, "a") == ["a: unchanged v2"]
    assert reload(r, "a", "FORCE") == ["a: reloaded v3"]
    assert reload(r, "*", "force") == ["a: reloaded v4", "b: reloaded v2"]
    write(s.handlers_dir, "new.lua", 'return {}')
    assert reload(r, "new") == ["new: loaded v1"]
    os.remove(os.path.join(str(s.handlers_dir), "b.lua"))
    assert reload(r) == ["b: unloaded", "a: unchanged v4", "new: unchanged v1"]  # unloads first
    with pytest.raises(redis.ResponseError, match="no handler 'ghost'"):
        r.execute_command("HUB.RELOAD", "ghost")
    with pytest.raises(redis.ResponseError, match="invalid handler name"):
        r.execute_command("HUB.RELOAD", "../etc/passwd")
    with pytest.raises(redis.ResponseError, match="syntax"):
        r.execute_command("HUB.RELOAD", "a", "now")
    assert call(r, "c.count") == "a2:0:v4"


def test_a_file_added_later_is_loaded_by_sighup(start):
    s = start({})
    r = s.client()
    assert handlers(r) == {}
    write(s.handlers_dir, "late.lua", 'return { listen = { "late" }, on_call = function() return "here" end }')
    sighup(s)
    wait_for(lambda: "late" in handlers(r))
    assert call(r, "late") == "here"


def test_files_that_are_not_handlers_are_ignored(start):
    s = start({
        "h.lua": "return {}",
        "lib/helper.lua": "return {}",
        "spec/h_spec.lua": "error('not a handler')",
        "notes.txt": "x",
        ".hidden.lua": "error('hidden')",
    })
    assert list(handlers(s.client())) == ["h"]


@pytest.mark.parametrize("how", ["sighup", "command"])
def test_deleted_file_unloads_the_handler(start, how):
    s = start({"gone.lua": r'''
local hub = require("hub")
return {
  subscribe = { "g" }, on_event = function() end,
  listen = { "gone" }, on_call = function() return "still here" end,
}
'''})
    r = s.client()
    assert call(r, "gone") == "still here"
    assert r.publish("g", "") == 1
    os.remove(os.path.join(str(s.handlers_dir), "gone.lua"))
    if how == "sighup":
        sighup(s)
        wait_for(lambda: "gone" not in handlers(r), what="the unload")
    else:
        assert reload(r, "gone") == ["gone: unloaded"]
    assert handlers(r) == {}
    assert call_error(r, "gone") == "no listener for 'gone'"
    assert r.publish("g", "") == 0
    assert r.execute_command("PUBSUB", "NUMPAT") == 0


@pytest.mark.parametrize("v2,reason", [
    ('return {\n  listen = { "c.count" },\n  on_call = function() return "v2" end,,\n}', "c.lua:3:"),
    (counter("v2").replace("n = old and old.n or 0", "error('refusing the state')"),
     "on_reload: "),
    (counter("v2").replace('listen = { "c.count" }', 'listen = { "taken" }'),
     "listen name 'taken' is already taken by handler 'other'"),
    ('while true do end', "instruction limit exceeded"),
])
def test_failed_reload_leaves_the_old_version_serving(start, v2, reason):
    s = start({
        "c.lua": counter("v1"),
        "other.lua": 'return { listen = { "taken" }, on_call = function() return "" end }',
    }, **{"handler-time-slice": 10000})  # the instruction limit, not the slice, stops v2's loop
    r = s.client()
    r.publish("c.1", "")
    wait_for(lambda: call(r, "c.count") == "v1:1:v1")
    write(s.handlers_dir, "c.lua", v2)
    lines = reload(r, "c")
    assert len(lines) == 1 and lines[0].startswith("c: failed: ") and reason in lines[0], lines
    assert call(r, "c.count") == "v1:1:v1"
    r.publish("c.2", "")
    wait_for(lambda: call(r, "c.count") == "v1:2:v1")
    h = handlers(r)["c"]
    assert h["state"] == "reload-failed" and h["version"] == 1
    assert reason in h["last_error"]
    # the same broken file again: unchanged (but a taken listen name is tried
    # again: it may be free by now); a fixed file: the next version is 2
    lines = reload(r, "c")
    if "already taken" in reason:
        assert len(lines) == 1 and lines[0].startswith("c: failed: ") and reason in lines[0], lines
    else:
        assert lines == ["c: unchanged v1"]
    write(s.handlers_dir, "c.lua", counter("v3"))
    assert reload(r, "c") == ["c: reloaded v2"]
    assert call(r, "c.count") == "v3:2:v2"
    assert handlers(r)["c"]["state"] == "running"


@pytest.mark.parametrize("snapshot,reason", [
    ("function() return { f = print } end", "snapshot().f is a function"),
    ("function() local t = {}; t.me = t; return t end", "snapshot().me is a cycle"),
    ("function() return { [{}] = 1 } end", "snapshot() has a table key"),
    ("function() return { co = coroutine.create(print) } end", "snapshot().co is a thread"),
    ("function() return { t = require('hub').after(1000, print) } end", "snapshot().t is a userdata"),
    ("function() error('no snapshot today') end", "snapshot: "),
])
def test_snapshot_that_is_not_plain_data_fails_the_reload(start, snapshot, reason):
    v1 = 'return { listen = { "s" }, on_call = function() return "v1" end, snapshot = %s }' % snapshot
    s = start({"s.lua": v1})
    r = s.client()
    write(s.handlers_dir, "s.lua", 'return { listen = { "s" }, on_call = function() return "v2" end, '
                                   'on_reload = function() end }')
    lines = reload(r, "s")
    assert lines[0].startswith("s: failed: ") and reason in lines[0], lines
    assert call(r, "s") == "v1"


def test_snapshot_handover_copies_plain_data_deeply(start):
    v1 = r'''
return {
  snapshot = function()
    local shared = { 1, 2 }
    return { s = "x\0y", i = 7, f = 2.5, b = false, nested = { a = { b = { c = "deep" } } },
             list = { 10, 20, 30 }, [1] = "one", [2.5] = "float key", [true] = "bool key",
             twice1 = shared, twice2 = shared }
  end,
}
'''
    v2 = r'''
local cjson = require("cjson")
local old
return {
  listen = { "old" },
  on_call = function()
    return table.concat({ #old.s, math.type(old.i), old.f, tostring(old.b), old.nested.a.b.c,
      table.concat(old.list, ","), old[1], old[2.5], old[true], tostring(old.twice1 ~= old.twice2),
      #old.twice2 }, " ")
  end,
  on_reload = function(o) old = o end,
}
'''
    s = start({"h.lua": v1})
    r = s.client()
    write(s.handlers_dir, "h.lua", v2)
    assert reload(r, "h") == ["h: reloaded v2"]
    assert call(r, "old") == "3 integer 2.5 false deep 10,20,30 one float key bool key true 2"


def test_first_version_gets_no_on_reload_and_a_version_without_snapshot_hands_over_nil(start):
    body = r'''
local got = "never called"
return {
  listen = { "got" },
  on_call = function() return got end,
  on_reload = function(old) got = "called with " .. type(old) end,
}
'''
    s = start({"h.lua": body})
    r = s.client()
    assert call(r, "got") == "never called"
    write(s.handlers_dir, "h.lua", body + "\n-- v2\n")
    assert reload(r, "h") == ["h: reloaded v2"]
    assert call(r, "got") == "called with nil"


def test_subscription_changes_apply_at_the_switch(start):
    s = start({"h.lua": r'''
local hub = require("hub")
return { subscribe = { "one", "both" }, on_event = function(ev) hub.publish("h.out", "v1 " .. ev.name) end }
'''})
    sub = subscriber(s, "h.out")
    r = s.client()
    write(s.handlers_dir, "h.lua", r'''
local hub = require("hub")
return { subscribe = { "two", "both" }, on_event = function(ev) hub.publish("h.out", "v2 " .. ev.name) end }
''')
    assert reload(r, "h") == ["h: reloaded v2"]
    assert r.publish("one", "") == 0
    assert r.publish("two", "") == 1
    assert r.publish("both", "") == 1
    assert next_message(sub) == ("h.out", "v2 two")
    assert next_message(sub) == ("h.out", "v2 both")
    assert handlers(r)["h"]["subscribe"] == ["two", "both"]
    assert sorted(x.decode() for x in r.execute_command("PUBSUB", "CHANNELS")) == ["h.out"]


def test_lifecycle_events_are_published(start):
    s = start({"h.lua": 'return {}'})
    sub = subscriber(s, patterns=["hub.handler.*"])
    r = s.client()
    write(s.handlers_dir, "h.lua", 'return { }  -- v2')
    reload(r)
    ch, data = next_message(sub)
    assert ch == "hub.handler.reloaded"
    assert json.loads(data) == {"name": "h", "version": 2, "error": None}
    write(s.handlers_dir, "h.lua", 'return {')
    reload(r)
    ch, data = next_message(sub)
    assert ch == "hub.handler.failed"
    d = json.loads(data)
    assert d["name"] == "h" and d["version"] == 2 and "h.lua:1:" in d["error"]
    write(s.handlers_dir, "n.lua", 'return {}')
    reload(r, "n")
    ch, data = next_message(sub)
    assert ch == "hub.handler.loaded" and json.loads(data) == {"name": "n", "version": 1, "error": None}
    os.remove(os.path.join(str(s.handlers_dir), "n.lua"))
    reload(r, "n")
    ch, data = next_message(sub)
    assert ch == "hub.handler.unloaded" and json.loads(data)["name"] == "n"


def test_failed_event_is_valid_json_even_for_binary_error_text(start):
    s = start({"h.lua": "return {}"})
    sub = subscriber(s, patterns=["hub.handler.failed"])
    write(s.handlers_dir, "h.lua", 'error("bad \\255 byte \\"quoted\\"\\n\\tline")')
    reload(s.client(), "h")
    d = json.loads(sub.read_reply()[3])
    assert "bad \ufffd byte \"quoted\"\n\tline" in d["error"], d


def test_lib_modules_are_required_and_a_changed_lib_reloads_its_users(start):
    s = start({
        "lib/util.lua": 'return { tag = "first" }',
        "lib/deep/mod.lua": 'return "deep"',
        "user.lua": r'''
local util = require("util")
local deep = require("deep.mod")
return { listen = { "tag" }, on_call = function() return util.tag .. " " .. deep end }
''',
        "bystander.lua": "return {}",
    })
    r = s.client()
    assert call(r, "tag") == "first deep"
    write(s.handlers_dir, "lib/util.lua", 'return { tag = "second" }')
    assert reload(r) == ["bystander: unchanged v1", "user: reloaded v2"]
    assert call(r, "tag") == "second deep"


def test_state_survives_many_reloads_of_the_example_counter(start):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "handlers", "counter.lua")) as f:
        src = f.read()
    s = start({"counter.lua": src})
    r = s.client()
    for i in range(5):
        r.publish("orders.created.v1", '{"id":%d}' % i)
        write(s.handlers_dir, "counter.lua", src + "\n-- revision %d\n" % i)
        assert reload(r, "counter") == ["counter: reloaded v%d" % (i + 2)]
    assert call(r, "orders.count.v1") == "5"


# --------------------------------------------------------------------------
# Zero loss across reloads
# --------------------------------------------------------------------------

RELAY = r'''
-- revision %d
local hub = require("hub")
return {
  subscribe = { "bench.in" },
  on_event = function(ev)
    hub.publish("bench.out", ev.data)
  end,
}
'''


def test_zero_loss_across_100_reloads_during_a_stream(start):
    """A publisher streams numbered events into a relay handler while the
    handler is reloaded 100 times; the subscriber of its output sees every
    number exactly once, in order."""
    s = start({"relay.lua": RELAY % 0})
    sub = subscriber(s, "bench.out")
    r = s.client()
    sent = [0]
    stop = threading.Event()
    failure = []

    def publish():
        try:
            p = s.client()
            while not stop.is_set():
                assert p.publish("bench.in", str(sent[0])) == 1
                sent[0] += 1
                time.sleep(0.0005)  # a steady, modest rate
        except Exception as e:  # reported by the main thread
            failure.append(e)

    t = threading.Thread(target=publish, daemon=True)
    t.start()
    try:
        wait_for(lambda: sent[0] >= 100, what="the stream to start")
        marks = []
        for i in range(1, 101):
            write(s.handlers_dir, "relay.lua", RELAY % i)
            assert reload(r, "relay") == ["relay: reloaded v%d" % (i + 1)]
            marks.append(sent[0])
        wait_for(lambda: sent[0] >= marks[-1] + 100, what="events after the last reload")
    finally:
        stop.set()
        t.join(IO_TIMEOUT)
    assert not failure, failure
    total = sent[0]
    assert marks[0] < marks[-1] < total  # the reloads were spread over the stream
    got = [int(next_message(sub)[1]) for _ in range(total)]
    assert got == list(range(total))
    sub.assert_no_data(0.2)
    h = handlers(r)["relay"]
    assert h["version"] == 101 and h["events"] == total and h["dropped"] == 0 and h["errors"] == 0


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------

RUNAWAY = r'''
local hub = require("hub")
return {
  subscribe = { "spin" },
  on_event = function() while true do end end,
  listen = { "spin", "sneaky", "coro", "ok" },
  on_call = function(ev)
    if ev.name == "ok" then return "ok" end
    if ev.name == "sneaky" then
      while true do pcall(function() while true do end end) end
    end
    if ev.name == "coro" then
      local co = coroutine.wrap(function() while true do end end)
      while true do pcall(co) end
    end
    while true do end
  end,
}
'''


def test_runaway_loop_is_stopped_by_the_instruction_budget(start):
    s = start({"runaway.lua": RUNAWAY, "other.lua": 'return { listen = { "other" }, on_call = function() return "up" end }'},
              **{"handler-instruction-limit": 200000})
    r = s.client()
    msg = call_error(r, "spin")
    assert "runaway.lua:" in msg and msg.endswith("instruction limit exceeded"), msg
    assert "instruction limit exceeded" in call_error(r, "sneaky")  # pcall cannot swallow it
    assert "instruction limit exceeded" in call_error(r, "coro")    # nor a coroutine
    assert call(r, "ok") == "ok"  # the handler itself keeps working
    r.publish("spin", "")
    wait_for(lambda: handlers(r)["runaway"]["events"] == 1)
    h = handlers(r)["runaway"]
    assert h["errors"] == 4 and "instruction limit exceeded" in h["last_error"]
    assert call(r, "other") == "up"
    assert r.ping()


def test_ping_answers_while_a_handler_runs_away_with_the_default_budget(start):
    s = start({"runaway.lua": RUNAWAY})
    r = s.client()
    for _ in range(3):
        r.publish("spin", "")
    t = time.monotonic()
    assert r.ping()
    wait_for(lambda: handlers(r)["runaway"]["errors"] == 3, timeout=30)
    assert time.monotonic() - t < 30
    assert call(r, "ok") == "ok"


def test_memory_cap_is_an_error_for_that_handler_only(start):
    s = start({
        "hog.lua": r'''
local keep = {}
return {
  listen = { "hog", "rep", "small" },
  on_call = function(ev)
    if ev.name == "small" then return #keep end
    if ev.name == "rep" then return #string.rep("x", 64 * 1024 * 1024) end
    local t = {}
    while true do t[#t + 1] = ("%d"):format(#t) .. string.rep("y", 100) end
  end,
}
''',
        "fine.lua": r'''
local hub = require("hub")
return {
  subscribe = { "f" }, on_event = function(ev) hub.publish("f.out", ev.data) end,
  listen = { "fine" }, on_call = function() return string.rep("z", 3 * 1024 * 1024):len() end,
}
''',
    }, **{"handler-memory-limit": "2mb", "handler-time-slice": 10000})  # the cap, not the slice
    sub = subscriber(s, "f.out")
    r = s.client()
    msg = call_error(r, "hog")
    assert "not enough memory" in msg and "handler-memory-limit" in msg, msg
    assert "not enough memory" in call_error(r, "rep")
    assert call(r, "small") == "0"  # the hog recovers once its garbage is collected
    assert "not enough memory" in call_error(r, "fine")  # 3 MB is over 2 MB for everyone...
    r.publish("f", "still fine")  # ...but one handler's failure never touches another
    assert next_message(sub) == ("f.out", "still fine")
    h = handlers(r)
    assert h["hog"]["errors"] == 2 and h["fine"]["errors"] == 1
    assert 0 < h["hog"]["used_memory"] <= 2 * 1024 * 1024


def test_a_lua_listener_reply_over_the_callers_memory_cap_is_an_error_not_a_leak(start):
    """hub.call copies a Lua listener's reply into the caller's state; past the
    caller's cap that is its memory error (caught by pcall here), and the
    reply's C copy is freed (the ASan run's leak check would report it)."""
    s = start({
        "big.lua": r'''
return { listen = { "big" }, on_call = function(ev) return string.rep("b", tonumber(ev.data)) end }
''',
        "caller.lua": r'''
local hub = require("hub")
return {
  subscribe = { "go" },
  on_event = function(ev)
    local keep = {}  -- 2.5 MB in 1 kB strings, so building it never needs twice its size
    for i = 1, 2500 do keep[i] = string.rep("k", 1000) .. i end
    local ok, r = pcall(hub.call, "big", ev.data)
    hub.publish("res", (ok and "ok:" .. #r or "err:" .. tostring(r)) .. ":" .. #keep)
  end,
}
''',
    }, **{"handler-memory-limit": "4mb", "handler-time-slice": 10000})  # the cap, not the slice
    sub = subscriber(s, "res")
    r = s.client()
    for _ in range(3):
        r.publish("go", str(1536 * 1024))
        ch, msg = next_message(sub)
        assert msg.startswith("err:") and "not enough memory" in msg and msg.endswith(":2500"), msg
    r.publish("go", "1000")
    assert next_message(sub) == ("res", "ok:1000:2500")  # the caller goes on after its memory error
    h = handlers(r)
    assert h["caller"]["errors"] == 0 and h["big"]["errors"] == 0 and h["big"]["calls"] == 4


def test_queue_limit_drops_and_counts(start):
    s = start({"slow.lua": r'''
return {
  subscribe = { "q" },
  on_event = function() local x = 0; for i = 1, 20000 do x = x + i end end,
}
'''}, **{"handler-queue-limit": 10})
    r = s.client()
    n = 3000
    p = r.pipeline(transaction=False)
    for i in range(n):
        p.publish("q", str(i))
    p.execute()
    wait_for(lambda: handlers(r)["slow"]["queued"] == 0 and
             handlers(r)["slow"]["events"] + handlers(r)["slow"]["dropped"] == n, timeout=30)
    h = handlers(r)["slow"]
    assert h["dropped"] > 0 and h["events"] >= 10
    assert "queue full" in s.output()


# --------------------------------------------------------------------------
# Sandbox
# --------------------------------------------------------------------------

PROBE = r'''
return {
  listen = { "run" },
  on_call = function(ev)
    local f, err = load(ev.data, "=probe")
    if not f then return "compile error: " .. err end
    local ok, r = pcall(f)
    if ok then return "ok: " .. tostring(r) end
    return "error: " .. tostring(r)
  end,
}
'''


@pytest.mark.parametrize("code", [
    "return io.open('/etc/passwd')",
    "return io",
    "return os.exit(1)",
    "return os.execute('true')",
    "return os.getenv('HOME')",
    "return os.remove('/tmp/x')",
    "return package.loadlib('libc.so.6', 'puts')",
    "return require('lfs')",
    "return require('io')",
    "return require('debug')",
    "return require('os').exit(1)",
    "return dofile('/etc/passwd')",
    "return loadfile('/etc/passwd')",
    "return debug.getinfo(1)",
    "return string.dump(function() end)",
    "return assert(load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n'))",
    "return assert(load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n', 'x', 'b'))",
    "return collectgarbage('stop')",
    "return package.searchers[3]('x')",
    "package.path = '/etc/?'; return require('passwd')",
])
def test_sandbox_escapes_fail(start, code):
    s = start({"probe.lua": PROBE})
    r = s.client()
    got = call(r, "run", code)
    assert got.startswith("error: ") or got == "ok: nil", got
    assert r.ping()


@pytest.mark.parametrize("code,want", [
    ("return require('cjson').encode({ a = 1 })", 'ok: {"a":1}'),
    ("return require('cjson.safe').decode('{') == nil", "ok: true"),
    ("return require('hub').name .. ' ' .. require('hub').version", "ok: probe 1"),
    ("return math.type(require('hub').now())", "ok: integer"),
    ("return type(os.time()) .. type(os.clock()) .. type(os.date('%Y'))", "ok: numbernumberstring"),
    ("return string.dump", "ok: nil"),
    ("return select('#', load('return 1 + 1')) .. load('return 1 + 1')()", "ok: 12"),
    ("local env = {}; load('x = 5', 'c', 't', env)(); return env.x", "ok: 5"),
    ("return collectgarbage('count') > 0", "ok: true"),
    ("return coroutine.wrap(function() coroutine.yield(4) end)()", "ok: 4"),
    ("return utf8.char(72, 105) .. table.concat({1, 2}) .. ('%d'):format(3)", "ok: Hi123"),
    ("print('printed'); return 1", "ok: 1"),
])
def test_sandbox_keeps_the_safe_library(start, code, want):
    s = start({"probe.lua": PROBE})
    assert call(s.client(), "run", code) == want


def test_handlers_do_not_share_globals(start):
    s = start({
        "a.lua": 'shared = "from a"; return { listen = { "a" }, on_call = function() return tostring(shared) end }',
        "b.lua": 'return { listen = { "b" }, on_call = function() return tostring(shared) end }',
    })
    r = s.client()
    assert call(r, "a") == "from a"
    assert call(r, "b") == "nil"


def test_os_exit_does_not_stop_the_hub(start):
    s = start({"probe.lua": PROBE})
    r = s.client()
    call(r, "run", "os.exit(0)")
    call(r, "run", "require('os').exit(0)")
    assert r.ping()
    assert s.alive()


# --------------------------------------------------------------------------
# The hub module: timers, log
# --------------------------------------------------------------------------

def test_timers_after_every_and_cancel(start):
    s = start({"t.lua": r'''
local hub = require("hub")
local ticks = 0
return {
  listen = { "start", "count" },
  on_call = function(ev)
    if ev.name == "count" then return ticks end
    hub.after(50, function() hub.publish("t.out", "after") end)
    local never = hub.after(30, function() hub.publish("t.out", "never") end)
    local every
    every = hub.every(20, function()
      ticks = ticks + 1
      hub.publish("t.out", "tick " .. ticks)
      if ticks == 3 then hub.publish("t.out", "cancel " .. tostring(every:cancel())) end
    end)
    local first = never:cancel()
    return tostring(first) .. " " .. tostring(hub.cancel(never)) .. " " .. tostring(never)
  end,
}
'''})
    sub = subscriber(s, "t.out")
    r = s.client()
    assert call(r, "start") == "true false hub.timer (done)"
    got = [next_message(sub)[1] for _ in range(5)]
    assert sorted(got) == sorted(["tick 1", "tick 2", "after", "tick 3", "cancel true"])
    ticks = [g for g in got if g != "after"]
    assert ticks == ["tick 1", "tick 2", "tick 3", "cancel true"]
    sub.assert_no_data(0.3)
    assert call(r, "count") == "3"
    assert handlers(r)["t"]["timers"] == 0


def test_timer_errors_are_counted_and_argument_errors_raise(start):
    s = start({"t.lua": r'''
local hub = require("hub")
return {
  listen = { "go", "bad" },
  on_call = function(ev)
    if ev.name == "bad" then
      local msgs = {}
      for _, f in ipairs({
        function() hub.after(-1, print) end, function() hub.every(0, print) end,
        function() hub.after(10, "x") end, function() hub.cancel({}) end,
        function() hub.publish(1, "x") end, function() hub.publish("x", {}) end,
        function() hub.log("loud", "x") end }) do
        local ok, err = pcall(f)
        msgs[#msgs + 1] = ok and "no error" or err:gsub("^.-:%d+: ", "")
      end
      return table.concat(msgs, "; ")
    end
    hub.after(10, function() error("timer trouble") end)
    return "armed"
  end,
}
'''})
    r = s.client()
    assert call(r, "bad") == "; ".join([
        "hub.after: ms must be a number >= 0", "hub.every: ms must be a number > 0",
        "hub.after: fn must be a function", "hub.cancel: not a timer handle",
        "hub.publish: name must be a string", "hub.publish: data must be a string",
        "hub.log: level must be debug, info, notice or warning, got loud"])
    assert call(r, "go") == "armed"
    wait_for(lambda: handlers(r)["t"]["errors"] == 1)
    assert handlers(r)["t"]["last_error"].startswith("timer: ")
    assert "timer trouble" in handlers(r)["t"]["last_error"]


def test_reload_stops_the_old_versions_timers(start):
    v1 = r'''
local hub = require("hub")
hub.every(20, function() hub.publish("tick", "v" .. hub.version) end)
return {}
'''
    s = start({"t.lua": v1})
    sub = subscriber(s, "tick")
    r = s.client()
    assert next_message(sub) == ("tick", "v1")
    assert handlers(r)["t"]["timers"] == 1
    write(s.handlers_dir, "t.lua", "return {}")
    assert reload(r, "t") == ["t: reloaded v2"]
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # drain ticks already sent before the switch
        try:
            sub.read_reply(0.1)
        except Exception:
            break
    sub.buf.clear()
    sub.assert_no_data(0.3)
    assert handlers(r)["t"]["timers"] == 0


def test_the_example_reminder_rearms_its_timers_across_a_reload(start):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "handlers")
    files = {}
    for name in ("reminder.lua", "lib/payload.lua"):
        with open(os.path.join(here, name)) as f:
            files[name] = f.read()
    s = start(files)
    sub = subscriber(s, "remind.me")
    r = s.client()
    assert call(r, "reminder.set.v1", '{"in_ms": 300, "name": "remind.me", "data": "now"}') == "1"
    write(s.handlers_dir, "reminder.lua", files["reminder.lua"] + "\n-- v2\n")
    assert reload(r, "reminder") == ["reminder: reloaded v2"]
    assert call(r, "reminder.pending.v1") == "1"
    assert next_message(sub) == ("remind.me", "now")
    assert call(r, "reminder.pending.v1") == "0"


def test_hub_log_writes_to_the_hub_log(start):
    s = start({"l.lua": r'''
local hub = require("hub")
return { listen = { "log" }, on_call = function(ev) hub.log("warning", ev.data); return "" end }
'''})
    r = s.client()
    call(r, "log", "something to say")
    wait_for(lambda: "Handler l: something to say" in s.output())


def test_hub_log_is_rate_limited(start):
    s = start({"l.lua": r'''
local hub = require("hub")
return { listen = { "log" },
         on_call = function() for i = 1, 1000 do hub.log("warning", "line " .. i) end; return "" end }
'''})
    call(s.client(), "log")
    time.sleep(0.1)
    out = s.output()
    assert "line 1\n" in out
    assert out.count("Handler l: line") < 400


# --------------------------------------------------------------------------
# Introspection
# --------------------------------------------------------------------------

def test_hub_handlers_fields(start):
    s = start({"c.lua": counter("x")})
    r = s.client()
    h = handlers(r)["c"]
    assert set(h) == {"name", "version", "state", "file", "loaded_at", "events", "calls", "errors", "dropped",
                      "queued", "timers", "used_memory", "draining", "last_error", "subscribe", "group", "listen",
                      "consume"}
    assert h["draining"] == 0 and h["group"] is None and h["consume"] is None
    assert h["file"].endswith("/c.lua")
    assert abs(h["loaded_at"] - time.time() * 1000) < 60000
    assert h["last_error"] is None
    assert h["subscribe"] == ["c.*"] and h["listen"] == ["c.count"]
    assert h["used_memory"] > 0


def test_hub_handlers_is_a_map_per_handler_in_resp3(start):
    s = start({"a.lua": "return {}", "b.lua": "return {"})
    c = s.raw()
    c.call("HELLO", "3")
    reply = c.call("HUB.HANDLERS")
    assert [d[b"name"] for d in reply] == [b"a", b"b"]
    assert reply[0][b"state"] == b"running" and reply[0][b"last_error"] is None
    assert reply[1][b"state"] == b"failed" and b"b.lua:1:" in reply[1][b"last_error"]


def test_info_has_a_handlers_section(start):
    s = start({"a.lua": counter("a"), "b.lua": "return {"})
    r = s.client()
    r.publish("c.1", "")
    wait_for(lambda: r.info("handlers").get("handler_events") == 1)
    info = r.info("handlers")
    assert info["handlers"] == 2 and info["handlers_failed"] == 1
    assert info["handler_errors"] == 1
    assert info["used_memory_lua"] > 0
    assert "handlers" in r.info()


def test_shutdown_with_live_handlers_and_timers_is_clean(start):
    s = start({"t.lua": r'''
local hub = require("hub")
hub.every(10, function() hub.publish("x", "y") end)
hub.after(60000, print)
setmetatable({}, { __gc = function() hub.publish("during", "close") end })
return { subscribe = { "q" }, on_event = function() end }
'''})
    r = s.client()
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.publish("q", str(i))
    p.execute()
    assert s.stop() == 0
