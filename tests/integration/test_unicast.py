"""Remote unicast listeners (HUB.LISTEN / HUB.UNLISTEN / HUB.REPLY /
HUB.ERROR) and HUB.CALL to them: round trips in RESP2 and RESP3, error
replies, takeover (newest wins, the old holder is told and still answers what
it already has), fallback when a holder goes, timeouts, callers that go away,
many concurrent callers, pipelined calls (several outstanding per caller,
replies in request order, the idle timeout and CLIENT LIST's flag b), and the
RESP2 listener mode."""
import os
import signal
import threading

import pytest

from conftest import Error, Push, Status, wait_for

pytestmark = pytest.mark.hub_only


def listen(c, *names):
    c.send_command("HUB.LISTEN", *names)
    return [c.read_reply() for _ in names]


def take_request(c, name=b"svc"):
    """Reads one [request, id, name, payload] frame; returns (id, payload)."""
    v = c.read_reply()
    assert list(v[:1]) == [b"request"] and len(v) == 4, v
    assert v[2] == name
    return v[1], v[3]


def write_handler(server_dir, name, text):
    with open(os.path.join(server_dir, name + ".lua"), "w") as f:
        f.write(text)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------

def test_listen_call_reply_round_trip_resp2(server):
    lis, caller = server.raw(), server.raw()
    assert listen(lis, "svc") == [[b"listen", b"svc", 1]]
    caller.send_command("HUB.CALL", "svc", "hello")
    v = lis.read_reply()
    assert type(v) is list and v[0] == b"request" and v[2:] == [b"svc", b"hello"]  # an array in RESP2
    rid = v[1]
    assert lis.call("HUB.REPLY", rid, "world") == Status(b"OK")
    assert caller.read_reply() == b"world"


def test_listen_call_reply_round_trip_resp3(server):
    lis, caller = server.raw(), server.raw()
    lis.call("HELLO", "3")
    caller.call("HELLO", "3")
    lis.send_command("HUB.LISTEN", "svc", "other")
    confirms = [lis.read_reply(), lis.read_reply()]
    assert confirms == [[b"listen", b"svc", 1], [b"listen", b"other", 2]]
    assert all(isinstance(x, Push) for x in confirms)
    caller.send_command("HUB.CALL", "other", b"\x00bin\r\n")
    v = lis.read_reply()
    assert isinstance(v, Push) and v[0] == b"request" and v[2] == b"other" and v[3] == b"\x00bin\r\n"
    # in RESP3 a listener can run anything, and the caller is served in turn
    assert lis.call("ECHO", "still here") == b"still here"
    assert lis.call("HUB.REPLY", v[1], "ok3") == Status(b"OK")
    assert caller.read_reply() == b"ok3"


def test_redis_py_caller_gets_the_listeners_reply(server):
    lis = server.raw()
    listen(lis, "svc")
    r = server.client()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("v", r.execute_command("HUB.CALL", "svc", "q")))
    t.start()
    rid, payload = take_request(lis)
    assert payload == b"q"
    lis.call("HUB.REPLY", rid, "a")
    t.join(5)
    assert out["v"] == b"a"


def test_error_replies_reach_the_caller(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send_command("HUB.CALL", "svc", "1")
    rid, _ = take_request(lis)
    assert lis.call("HUB.ERROR", rid, "no such order") == Status(b"OK")
    assert caller.read_reply() == Error(b"ERR no such order")
    caller.send_command("HUB.CALL", "svc", "2")
    rid, _ = take_request(lis)
    assert lis.call("HUB.REPLY", rid, "bad input", "ERROR") == Status(b"OK")
    assert caller.read_reply() == Error(b"ERR bad input")
    # answered already, never delivered here, not a number
    assert lis.call("HUB.REPLY", rid, "again") == Error(b"ERR unknown request id")
    assert lis.call("HUB.REPLY", "999999", "x") == Error(b"ERR unknown request id")
    assert lis.call("HUB.ERROR", "nope", "x") == Error(b"ERR unknown request id")
    assert lis.call("HUB.REPLY", "1", "x", "BOGUS").startswith(b"ERR syntax error")


def test_only_the_listener_a_request_went_to_may_answer_it(server):
    lis, other, caller = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    caller.send_command("HUB.CALL", "svc", "x")
    rid, _ = take_request(lis)
    assert other.call("HUB.REPLY", rid, "stolen") == Error(b"ERR unknown request id")
    lis.call("HUB.REPLY", rid, "mine")
    assert caller.read_reply() == b"mine"


def test_call_without_listener_is_an_error(server):
    c = server.raw()
    assert c.call("HUB.CALL", "nobody", "x") == Error(b"ERR no listener for 'nobody'")


# --------------------------------------------------------------------------
# Takeover and fallback
# --------------------------------------------------------------------------

def test_takeover_with_requests_in_flight_loses_and_duplicates_nothing(server):
    old, new = server.raw(), server.raw()
    callers = [server.raw() for _ in range(6)]
    listen(old, "svc")
    for i, c in enumerate(callers[:3]):
        c.send_command("HUB.CALL", "svc", "early%d" % i)
    early = [take_request(old) for _ in range(3)]
    assert sorted(p for _, p in early) == [b"early0", b"early1", b"early2"]
    assert listen(new, "svc") == [[b"listen", b"svc", 1]]
    notice = old.read_reply()
    assert notice[0] == b"replaced" and notice[1] == b"svc"
    assert notice[2].startswith(b"client id=")
    for i, c in enumerate(callers[3:]):
        c.send_command("HUB.CALL", "svc", "late%d" % i)
    late = [take_request(new) for _ in range(3)]
    assert sorted(p for _, p in late) == [b"late0", b"late1", b"late2"]
    # the old holder still answers what it already had
    for rid, p in early:
        assert old.call("HUB.REPLY", rid, b"old:" + p) == Status(b"OK")
    for rid, p in late:
        assert new.call("HUB.REPLY", rid, b"new:" + p) == Status(b"OK")
    got = [c.read_reply() for c in callers]
    assert got == [b"old:early0", b"old:early1", b"old:early2", b"new:late0", b"new:late1", b"new:late2"]
    for c in callers:
        c.assert_no_data(0.05)
    old.assert_no_data(0.05)
    new.assert_no_data(0.05)
    for rid, _ in early:
        assert old.call("HUB.REPLY", rid, "twice") == Error(b"ERR unknown request id")


def test_client_takes_over_a_lua_handlers_name_and_falls_back_to_it(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    write_handler(str(hdir), "svc", """
local hub = require("hub")
return {
  listen = { "svc" },
  on_call = function(ev) return "lua:" .. ev.data end,
  on_replaced = function(name) hub.publish("svc.replaced", name) end,
}
""")
    server = server_factory(handlers_dir=str(hdir))
    watcher, caller = server.raw(), server.raw()
    watcher.call("SUBSCRIBE", "svc.replaced")
    assert caller.call("HUB.CALL", "svc", "1") == b"lua:1"
    lis = server.raw()
    listen(lis, "svc")
    assert watcher.read_reply() == [b"message", b"svc.replaced", b"svc"]
    caller.send_command("HUB.CALL", "svc", "2")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "remote:2")
    assert caller.read_reply() == b"remote:2"
    # the handler's reload does not take the name back
    assert caller.call("HUB.RELOAD", "svc", "FORCE") == [b"svc: reloaded v2"]
    caller.send_command("HUB.CALL", "svc", "3")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "remote:3")
    assert caller.read_reply() == b"remote:3"
    lis.close()
    wait_for(lambda: caller.call("HUB.CALL", "svc", "4") == b"lua:4", what="fallback to the handler")


def test_lua_handler_loaded_later_takes_over_a_clients_name(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    server = server_factory(handlers_dir=str(hdir))
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    write_handler(str(hdir), "svc", 'return { listen = { "svc" }, on_call = function() return "lua" end }\n')
    assert caller.call("HUB.RELOAD") == [b"svc: loaded v1"]
    assert lis.read_reply() == [b"replaced", b"svc", b"handler svc"]
    assert caller.call("HUB.CALL", "svc", "") == b"lua"
    os.remove(str(hdir / "svc.lua"))
    assert caller.call("HUB.RELOAD") == [b"svc: unloaded"]
    caller.send_command("HUB.CALL", "svc", "back")
    rid, payload = take_request(lis)
    lis.call("HUB.REPLY", rid, "client again")
    assert caller.read_reply() == b"client again"


def test_name_falls_back_to_the_most_recent_live_registration(server):
    a, b, c = server.raw(), server.raw(), server.raw()
    caller = server.raw()
    listen(a, "svc")
    listen(b, "svc")
    assert a.read_reply()[0] == b"replaced"
    listen(c, "svc")
    assert b.read_reply()[0] == b"replaced"
    b.close()  # not the holder: c keeps it
    caller.send_command("HUB.CALL", "svc", "1")
    rid, _ = take_request(c)
    c.call("HUB.REPLY", rid, "c")
    assert caller.read_reply() == b"c"
    c.close()  # the holder: back to a (b is gone)
    wait_for(lambda: caller.call("PING") == Status(b"PONG") and _holder_answers(caller, a, b"a"),
             what="fallback to a")
    assert a.call("HUB.UNLISTEN", "svc") == [b"unlisten", b"svc", 0]
    assert caller.call("HUB.CALL", "svc", "x") == Error(b"ERR no listener for 'svc'")


def _holder_answers(caller, lis, tag):
    caller.send_command("HUB.CALL", "svc", "probe", "2000")
    try:
        rid, _ = take_request(lis)
    except Exception:
        return False
    lis.call("HUB.REPLY", rid, tag)
    return caller.read_reply() == tag


def test_unlisten_replies_and_counts(server):
    c = server.raw()
    assert c.call("HUB.UNLISTEN") == [b"unlisten", None, 0]
    listen(c, "a", "b", "c")
    assert c.call("HUB.UNLISTEN", "b") == [b"unlisten", b"b", 2]
    c.send_command("HUB.UNLISTEN")
    assert [c.read_reply(), c.read_reply()] == [[b"unlisten", b"a", 1], [b"unlisten", b"c", 0]]
    assert c.call("ECHO", "free") == b"free"


# --------------------------------------------------------------------------
# Failure paths
# --------------------------------------------------------------------------

def test_pending_requests_fail_when_the_listener_disconnects(server):
    lis = server.raw()
    callers = [server.raw() for _ in range(3)]
    listen(lis, "svc")
    for c in callers:
        c.send_command("HUB.CALL", "svc", "x")
    for _ in callers:
        take_request(lis)
    lis.close()
    for c in callers:
        assert c.read_reply() == Error(b"ERR listener for 'svc' disconnected")
        assert c.call("PING") == Status(b"PONG")


def test_call_times_out_and_the_late_reply_is_refused(server_factory):
    server = server_factory(config={"call-timeout": "300"})
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send_command("HUB.CALL", "svc", "x", "100")
    rid, _ = take_request(lis)
    assert caller.read_reply() == Error(b"TIMEOUT no reply from 'svc' within 100 ms")
    assert lis.call("HUB.REPLY", rid, "late") == Error(b"ERR unknown request id")
    caller.send_command("HUB.CALL", "svc", "y")  # the call-timeout option
    take_request(lis)
    assert caller.read_reply() == Error(b"TIMEOUT no reply from 'svc' within 300 ms")
    assert caller.call("HUB.CALL", "svc", "z", "-1") == Error(b"ERR timeout is not an integer or out of range")


def test_caller_disconnecting_while_pending_drops_the_late_reply(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send_command("HUB.CALL", "svc", "x")
    caller.send_command("PING")  # held behind the call, then discarded
    rid, _ = take_request(lis)
    caller.close()
    probe = server.raw()
    wait_for(lambda: b"cmd=hub.call" not in probe.call("CLIENT", "LIST"), what="caller gone")
    assert lis.call("HUB.REPLY", rid, "nobody listens") == Status(b"OK")
    probe.send_command("HUB.CALL", "svc", "y")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "fine")
    assert probe.read_reply() == b"fine"


def test_a_thousand_concurrent_callers_each_get_their_own_reply(server):
    lis = server.raw()
    lis.call("HELLO", "3")
    listen(lis, "svc")
    n = 1000
    callers = [server.raw() for _ in range(n)]
    for i, c in enumerate(callers):
        c.send_command("HUB.CALL", "svc", "q%d" % i)
    reqs = [take_request(lis) for _ in range(n)]
    assert sorted(p for _, p in reqs) == sorted(b"q%d" % i for i in range(n))
    lis.send(b"".join(_encode("HUB.REPLY", rid, b"a" + p[1:]) for rid, p in reqs))
    for _ in range(n):
        assert lis.read_reply() == Status(b"OK")
    for i, c in enumerate(callers):
        assert c.read_reply() == b"a%d" % i
        c.close()


def _encode(*args):
    from conftest import encode_command
    return encode_command(*args)


def test_pipelined_calls_reply_in_request_order(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "a") + _encode("PING") + _encode("HUB.CALL", "svc", "b") +
                _encode("ECHO", "z"))
    rid, p = take_request(lis)
    assert p == b"a"
    caller.assert_no_data(0.1)  # PONG waits behind the blocked call
    lis.call("HUB.REPLY", rid, "A")
    rid, p = take_request(lis)
    assert p == b"b"
    assert caller.read_reply() == b"A"
    assert caller.read_reply() == Status(b"PONG")
    caller.assert_no_data(0.05)
    lis.call("HUB.REPLY", rid, "B")
    assert caller.read_reply() == b"B"
    assert caller.read_reply() == b"z"


# --------------------------------------------------------------------------
# RESP2 listener mode
# --------------------------------------------------------------------------

def test_resp2_listener_may_only_run_listener_and_subscribe_commands(server):
    c = server.raw()
    listen(c, "svc")
    err = c.call("ECHO", "x")
    assert isinstance(err, Error) and err.startswith(b"ERR Can't execute 'echo'")
    assert c.call("HUB.CALL", "svc", "x").startswith(b"ERR Can't execute 'hub.call'")
    assert c.call("PING") == Status(b"PONG")
    assert c.call("SUBSCRIBE", "ch") == [b"subscribe", b"ch", 1]
    assert c.call("UNSUBSCRIBE", "ch") == [b"unsubscribe", b"ch", 0]
    assert listen(c, "svc2") == [[b"listen", b"svc2", 2]]
    assert c.call("HUB.REPLY", "1", "x") == Error(b"ERR unknown request id")
    assert c.call("RESET") == Status(b"RESET")
    assert c.call("ECHO", "free again") == b"free again"
    assert server.raw().call("HUB.CALL", "svc", "x") == Error(b"ERR no listener for 'svc'")


# --------------------------------------------------------------------------
# hub.call from Lua
# --------------------------------------------------------------------------

ASKER = """
local hub = require("hub")
return {
  subscribe = { "ask.*" },
  on_event = function(ev)
    local target = ev.name:sub(5)
    local r, err = hub.call(target, ev.data, TIMEOUT)
    hub.publish("answer", r and ("ok:" .. r) or ("err:" .. err))
  end,
  listen = { "asker.direct" },
  on_call = function(ev)
    local r, err = hub.call("svc", ev.data)
    return r or ("err:" .. err)
  end,
}
"""


@pytest.fixture
def lua_hub(server_factory, tmp_path):
    def start(timeout="nil", config=None, **files):
        hdir = tmp_path / "handlers"
        hdir.mkdir(exist_ok=True)
        write_handler(str(hdir), "asker", ASKER.replace("TIMEOUT", timeout))
        for name, text in files.items():
            write_handler(str(hdir), name, text)
        return server_factory(config=config, handlers_dir=str(hdir))
    return start


def test_lua_hub_call_waits_for_a_remote_listener_without_blocking_the_hub(lua_hub):
    server = lua_hub()
    lis, watcher, pub = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    watcher.call("SUBSCRIBE", "answer")
    pub.call("PUBLISH", "ask.svc", "q1")
    pub.call("PUBLISH", "ask.svc", "q2")
    reqs = [take_request(lis), take_request(lis)]  # both callbacks wait at once
    assert sorted(p for _, p in reqs) == [b"q1", b"q2"]
    assert pub.call("PING") == Status(b"PONG")
    for rid, p in reversed(reqs):
        assert lis.call("HUB.REPLY", rid, b"R" + p) == Status(b"OK")
    got = [watcher.read_reply()[2], watcher.read_reply()[2]]
    assert got == [b"ok:Rq2", b"ok:Rq1"]


def test_lua_hub_call_errors_timeouts_and_disconnects(lua_hub):
    server = lua_hub(timeout="150")
    lis, watcher, pub = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    watcher.call("SUBSCRIBE", "answer")
    pub.call("PUBLISH", "ask.svc", "a")
    rid, _ = take_request(lis)
    lis.call("HUB.ERROR", rid, "refused")
    assert watcher.read_reply()[2] == b"err:refused"
    pub.call("PUBLISH", "ask.svc", "b")
    rid, _ = take_request(lis)
    assert watcher.read_reply()[2] == b"err:timeout: no reply from 'svc' within 150 ms"
    assert lis.call("HUB.REPLY", rid, "late") == Error(b"ERR unknown request id")
    pub.call("PUBLISH", "ask.svc", "c")
    take_request(lis)
    lis.close()
    assert watcher.read_reply()[2] == b"err:listener for 'svc' disconnected"
    pub.call("PUBLISH", "ask.nobody", "d")
    assert watcher.read_reply()[2] == b"err:no listener for 'nobody'"


def test_lua_hub_call_reaches_lua_listeners_at_once(lua_hub):
    server = lua_hub(svc='return { listen = { "svc" }, on_call = function(ev) return "lua:" .. ev.data end }\n')
    watcher, pub = server.raw(), server.raw()
    watcher.call("SUBSCRIBE", "answer")
    pub.call("PUBLISH", "ask.svc", "x")
    assert watcher.read_reply()[2] == b"ok:lua:x"
    # a call back into the calling handler is a cycle, not a deadlock
    pub.call("PUBLISH", "ask.asker.direct", "y")
    assert watcher.read_reply()[2].startswith(b"err:hub.call: call cycle")


WAITER = """
local hub = require("hub")
return {
  listen = { "waiter.v1" },
  on_call = function(ev)
    local r, err = hub.call("svc", ev.data)
    if ev.data == "boom" then error("waiter: boom after the reply", 0) end
    return "w" .. hub.version .. ":" .. (r or err)
  end,
}
"""


def handlers_of(c):
    out = {}
    for flat in c.call("HUB.HANDLERS"):
        d = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
        out[d["name"].decode()] = d
    return out


def waiter_hub(lua_hub):
    """A hub with WAITER, a client listening on svc, a caller and a probe."""
    server = lua_hub(waiter=WAITER)
    lis, caller, probe = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    return server, lis, caller, probe


def test_lua_on_call_waits_for_a_remote_listener_and_its_caller_waits_for_it(lua_hub):
    """HUB.CALL asker.direct runs asker's on_call, which calls the client
    listener svc: the caller is blocked (flag b) until svc answers and
    on_call returns; meanwhile the hub, and another on_call of the same
    handler, go on."""
    server = lua_hub()
    lis, caller, other, probe = server.raw(), server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    cid = caller.call("CLIENT", "ID")
    caller.send_command("HUB.CALL", "asker.direct", "x")
    caller.send_command("PING")                       # held behind the call, in order
    rid, payload = take_request(lis)
    assert payload == b"x"
    assert client_flags(probe, cid) == b"b"
    other.send_command("HUB.CALL", "asker.direct", "y")
    rid2, payload2 = take_request(lis)                # a second on_call waits at the same time
    assert payload2 == b"y"
    assert lis.call("HUB.ERROR", rid2, "no") == Status(b"OK")
    assert other.read_reply() == b"err:no"
    assert lis.call("HUB.REPLY", rid, "X") == Status(b"OK")
    assert caller.read_reply() == b"X"
    assert caller.read_reply() == Status(b"PONG")
    assert client_flags(probe, cid) == b"N"
    h = handlers_of(probe)["asker"]
    assert (h["calls"], h["errors"]) == (2, 0)


def test_a_waiting_on_call_error_timeout_and_unload_answer_the_caller(lua_hub, tmp_path):
    server, lis, caller, probe = waiter_hub(lua_hub)
    caller.send_command("HUB.CALL", "waiter.v1", "boom")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "ignored")
    assert caller.read_reply() == Error(b"ERR waiter: boom after the reply")
    assert handlers_of(probe)["waiter"]["errors"] == 1
    caller.send_command("HUB.CALL", "waiter.v1", "slow", "100")    # the caller's own timeout
    rid, _ = take_request(lis)
    assert caller.read_reply(timeout=5) == Error(b"TIMEOUT no reply from 'waiter.v1' within 100 ms")
    assert lis.call("HUB.REPLY", rid, "late") == Status(b"OK")     # on_call finishes; its reply is dropped
    assert caller.call("PING") == Status(b"PONG")
    caller.send_command("HUB.CALL", "waiter.v1", "z")
    take_request(lis)
    os.unlink(str(tmp_path / "handlers" / "waiter.lua"))
    assert probe.call("HUB.RELOAD", "waiter") == [b"waiter: unloaded"]
    assert caller.read_reply() == Error(b"ERR handler 'waiter' was unloaded before on_call answered")
    assert caller.call("HUB.CALL", "waiter.v1", "x") == Error(b"ERR no listener for 'waiter.v1'")
    assert handlers_of(probe)["asker"]["errors"] == 0


def test_lua_to_a_waiting_lua_listener_to_a_remote_one_and_back(lua_hub):
    """asker's on_event calls waiter (Lua), whose on_call calls svc (a
    client): each waits for the next, and the reply comes back the chain."""
    server = lua_hub(waiter=WAITER)
    lis, watcher, pub = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    watcher.call("SUBSCRIBE", "answer")
    pub.call("PUBLISH", "ask.waiter.v1", "q")
    rid, payload = take_request(lis)
    assert payload == b"q"
    lis.call("HUB.REPLY", rid, "R")
    assert watcher.read_reply()[2] == b"ok:w1:R"
    pub.call("PUBLISH", "ask.waiter.v1", "boom")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "R")
    assert watcher.read_reply()[2] == b"err:waiter: boom after the reply"


def test_a_reloaded_listener_answers_a_waiting_call_from_its_old_version(lua_hub, tmp_path):
    server, lis, caller, probe = waiter_hub(lua_hub)
    caller.send_command("HUB.CALL", "waiter.v1", "a")
    rid, _ = take_request(lis)
    assert probe.call("HUB.RELOAD", "waiter", "FORCE") == [b"waiter: reloaded v2"]
    assert handlers_of(probe)["waiter"]["draining"] == 1
    lis.call("HUB.REPLY", rid, "A")
    assert caller.read_reply() == b"w1:A"                          # v1 finished what it started
    assert handlers_of(probe)["waiter"]["draining"] == 0
    caller.send_command("HUB.CALL", "waiter.v1", "b")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "B")
    assert caller.read_reply() == b"w2:B"


def test_a_waiting_listener_cannot_be_waited_for_outside_callbacks(lua_hub):
    server = lua_hub(waiter=WAITER, reloader="""
local hub = require("hub")
return { on_reload = function() end, listen = { "r" }, on_call = function()
  local co = coroutine.wrap(function() return hub.call("waiter.v1", "x") end)
  local r, err = co()
  return tostring(r) .. "|" .. tostring(err)
end }
""")
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    assert caller.call("HUB.CALL", "r", "") == (
        b"nil|hub.call: a listener that waits can only be waited for in on_event, on_call or a timer callback")
    take_request(lis)           # waiter's on_call did start; its result is dropped


DRAINER = """
local hub = require("hub")
return {
  subscribe = { "q.*" },
  on_event = function(ev)
    local r, err = hub.call("slow", ev.data, TIMEOUT)
    if r == "again" then r, err = hub.call("slow", "second", TIMEOUT) end
    local ok = pcall(hub.after, 10, function() end)
    hub.publish("result", "v" .. hub.version .. ":" .. (r or ("err:" .. err)) .. (ok and "" or ":notimer"))
  end,
}
"""


def handler_info(c, name):
    for flat in c.call("HUB.HANDLERS"):
        d = dict(zip(flat[::2], flat[1::2]))
        if d[b"name"] == name:
            return d


def draining(c, name=b"drainer"):
    return handler_info(c, name)[b"draining"]


@pytest.fixture
def drain_hub(lua_hub):
    def start(timeout="nil"):
        server = lua_hub(drainer=DRAINER.replace("TIMEOUT", timeout))
        lis, watcher, pub = server.raw(), server.raw(), server.raw()
        listen(lis, "slow")
        watcher.call("SUBSCRIBE", "result")
        return server, lis, watcher, pub
    return start


def test_reload_lets_the_old_version_finish_its_waiting_calls(drain_hub):
    server, lis, watcher, pub = drain_hub()
    assert draining(pub) == 0
    pub.call("PUBLISH", "q.1", "before")
    rid, payload = take_request(lis, b"slow")
    assert payload == b"before"
    assert pub.call("HUB.RELOAD", "drainer", "FORCE") == [b"drainer: reloaded v2"]
    h = handler_info(pub, b"drainer")
    assert h[b"version"] == 2 and h[b"draining"] == 1
    assert h[b"used_memory"] > 0 and server.client().info("handlers")["used_memory_lua"] > h[b"used_memory"]
    # new events go to v2 while v1 drains
    pub.call("PUBLISH", "q.2", "new")
    rid2, payload = take_request(lis, b"slow")
    assert payload == b"new"
    # the retired v1 resumes with its reply, publishes, and is closed
    assert lis.call("HUB.REPLY", rid, "R1") == Status(b"OK")
    assert watcher.read_reply()[2] == b"v1:R1:notimer"  # the OLD version, which may not start timers
    wait_for(lambda: draining(pub) == 0, what="draining 0")
    assert lis.call("HUB.REPLY", rid2, "R2") == Status(b"OK")
    assert watcher.read_reply()[2] == b"v2:R2"
    assert handler_info(pub, b"drainer")[b"errors"] == 0


def test_a_draining_version_may_wait_again_and_times_out(drain_hub):
    server, lis, watcher, pub = drain_hub(timeout="300")
    pub.call("PUBLISH", "q.1", "a")
    rid, _ = take_request(lis, b"slow")
    assert pub.call("HUB.RELOAD", "drainer", "FORCE") == [b"drainer: reloaded v2"]
    assert draining(pub) == 1
    lis.call("HUB.REPLY", rid, "again")  # v1 calls again, and waits again
    rid, payload = take_request(lis, b"slow")
    assert payload == b"second" and draining(pub) == 1
    # no answer: the timeout resumes v1, which then finishes
    assert watcher.read_reply()[2] == b"v1:err:timeout: no reply from 'slow' within 300 ms:notimer"
    wait_for(lambda: draining(pub) == 0, what="draining 0")
    assert lis.call("HUB.REPLY", rid, "late") == Error(b"ERR unknown request id")


def requests_on_both_sides_of_a_reload(pub, lis):
    """v1 waits on request 1, a reload makes v2, v2 waits on request 2:
    returns their request ids."""
    pub.call("PUBLISH", "q.1", "a")
    rid1, _ = take_request(lis, b"slow")
    assert pub.call("HUB.RELOAD", "drainer", "FORCE") == [b"drainer: reloaded v2"]
    pub.call("PUBLISH", "q.2", "b")
    rid2, _ = take_request(lis, b"slow")
    return rid1, rid2


def test_several_retired_versions_drain_side_by_side(drain_hub):
    server, lis, watcher, pub = drain_hub()
    rid1, rid2 = requests_on_both_sides_of_a_reload(pub, lis)
    assert pub.call("HUB.RELOAD", "drainer", "FORCE") == [b"drainer: reloaded v3"]
    assert draining(pub) == 2
    lis.call("HUB.REPLY", rid2, "B")
    assert watcher.read_reply()[2] == b"v2:B:notimer"
    wait_for(lambda: draining(pub) == 1, what="draining 1")
    lis.call("HUB.REPLY", rid1, "A")
    assert watcher.read_reply()[2] == b"v1:A:notimer"
    wait_for(lambda: draining(pub) == 0, what="draining 0")


def test_unload_closes_draining_versions_and_drops_their_calls(drain_hub, tmp_path):
    server, lis, watcher, pub = drain_hub()
    rid1, rid2 = requests_on_both_sides_of_a_reload(pub, lis)
    os.remove(str(tmp_path / "handlers" / "drainer.lua"))
    assert pub.call("HUB.RELOAD") == [b"drainer: unloaded", b"asker: unchanged v1"]
    assert lis.call("HUB.REPLY", rid1, "late") == Status(b"OK")  # accepted, dropped
    assert lis.call("HUB.REPLY", rid2, "late") == Status(b"OK")
    watcher.assert_no_data(0.1)


def test_shutdown_with_a_draining_version_is_clean(drain_hub):
    server, lis, watcher, pub = drain_hub()
    pub.call("PUBLISH", "q.1", "a")
    take_request(lis, b"slow")
    assert pub.call("HUB.RELOAD", "drainer", "FORCE") == [b"drainer: reloaded v2"]
    assert draining(pub) == 1
    server.stopped = True
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0


def test_errors_after_a_lua_hub_call_are_counted_and_budgeted(lua_hub):
    server = lua_hub(config={"handler-time-slice": 10000}, failing="""
local hub = require("hub")
return {
  subscribe = { "fail.*" },
  on_event = function(ev)
    local r = hub.call("svc", ev.data)
    if ev.name == "fail.spin" then while true do end end
    error("after: " .. tostring(r))
  end,
}
""")
    lis, pub = server.raw(), server.raw()
    listen(lis, "svc")

    def failing():
        for flat in pub.call("HUB.HANDLERS"):
            d = dict(zip(flat[::2], flat[1::2]))
            if d[b"name"] == b"failing":
                return d

    for event, expect in (("fail.error", b"after: R"), ("fail.spin", b"instruction limit exceeded")):
        pub.call("PUBLISH", event, "x")
        rid, _ = take_request(lis)
        lis.call("HUB.REPLY", rid, "R")
        wait_for(lambda: expect in (failing()[b"last_error"] or b""), what=expect)
    h = failing()
    assert h[b"errors"] == 2 and b"failing.lua:" in h[b"last_error"]
    assert pub.call("PING") == Status(b"PONG")


def test_shutdown_with_calls_in_flight_is_clean(lua_hub):
    """Stopping the hub with a blocked caller (a call outstanding, a later one
    answered early, requests held behind them), a Lua callback and an on_call
    waiting in hub.call, and unanswered requests frees everything (the ASan
    run checks for leaks and use-after-free)."""
    server = lua_hub()
    lis, caller, pub = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "x", "0") + _encode("HUB.CALL", "svc", "y", "0") + _encode("PING") +
                _encode("ECHO", "held"))
    take_request(lis)
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "kept until x is answered")
    pub.call("PUBLISH", "ask.svc", "lua")
    take_request(lis)
    pub.send_command("HUB.CALL", "asker.direct", "waiting on_call")   # on_call waits in hub.call
    take_request(lis)
    server.stopped = True  # on purpose, with every client still connected
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0


def test_many_pipelined_calls_from_one_caller_keep_their_order(server):
    lis, caller = server.raw(), server.raw()
    lis.call("HELLO", "3")
    listen(lis, "svc")
    n = 200
    caller.send(b"".join(_encode("HUB.CALL", "svc", "p%d" % i) + _encode("ECHO", "e%d" % i) for i in range(n)))
    oks = 0
    for i in range(n):  # one request at a time: the next is held until this one is answered
        v = lis.read_reply()
        while v == Status(b"OK"):
            oks += 1
            v = lis.read_reply()
        assert v[0] == b"request" and v[3] == b"p%d" % i
        lis.send(_encode("HUB.REPLY", v[1], b"r%d" % i))
    for i in range(n):
        assert caller.read_reply() == b"r%d" % i
        assert caller.read_reply() == b"e%d" % i
    while oks < n:
        assert lis.read_reply() == Status(b"OK")
        oks += 1


def test_input_held_behind_a_call_is_bounded(server_factory):
    server = server_factory(config={"client-query-buffer-limit": "1024"})
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send_command("HUB.CALL", "svc", "x", "0")
    take_request(lis)
    for _ in range(40):  # small requests, each parsed at once, held in all past the limit
        try:
            caller.send_command("ECHO", "y" * 100)
        except OSError:
            break
    caller.read_until_close()
    assert server.raw().call("PING") == Status(b"PONG")


# --------------------------------------------------------------------------
# Several calls outstanding per caller (pipelined HUB.CALL)
# --------------------------------------------------------------------------

MAX_CALLS = 1024  # UNICAST_MAX_CALLS: outstanding calls per caller


def pending_calls(server):
    return server.client().info("handlers")["unicast_pending_calls"]


def client_fields(probe, cid):
    line = probe.call("CLIENT", "LIST", "ID", cid)
    return dict(f.split(b"=", 1) for f in line.split() if b"=" in f)


def client_flags(probe, cid):
    return client_fields(probe, cid)[b"flags"]


def test_pipelined_calls_all_reach_the_listener_and_replies_keep_request_order(server):
    lis, caller = server.raw(), server.raw()
    lis.call("HELLO", "3")
    listen(lis, "svc")
    n = 8
    caller.send(b"".join(_encode("HUB.CALL", "svc", "p%d" % i) for i in range(n)))
    reqs = [take_request(lis) for _ in range(n)]  # every one before any reply
    assert [p for _, p in reqs] == [b"p%d" % i for i in range(n)]
    assert pending_calls(server) == n
    order = [5, 2, 7, 1, 6, 3, 4]  # all but the first, out of order
    for i in order:
        assert lis.call("HUB.REPLY", reqs[i][0], b"r%d" % i) == Status(b"OK")
    caller.assert_no_data(0.1)  # kept until the first call is answered
    assert pending_calls(server) == 1
    # an answered early call cannot be answered again
    assert lis.call("HUB.REPLY", reqs[5][0], "again") == Error(b"ERR unknown request id")
    assert lis.call("HUB.REPLY", reqs[0][0], "r0") == Status(b"OK")
    assert [caller.read_reply() for _ in range(n)] == [b"r%d" % i for i in range(n)]
    caller.assert_no_data(0.05)
    assert caller.call("PING") == Status(b"PONG")


def test_commands_and_failing_calls_between_calls_keep_their_place(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "a") + _encode("HUB.CALL", "svc", "b") + _encode("PING") +
                _encode("HUB.CALL", "svc", "c") + _encode("HUB.CALL", "nobody", "x") +
                _encode("HUB.CALL", "svc", "y", "-1") + _encode("HUB.CALL", "svc", "d") + _encode("ECHO", "z"))
    (ra, pa), (rb, pb) = take_request(lis), take_request(lis)
    assert (pa, pb) == (b"a", b"b")
    lis.assert_no_data(0.1)  # c waits behind the PING, which waits behind a and b
    lis.call("HUB.REPLY", rb, "B")
    caller.assert_no_data(0.05)
    lis.call("HUB.REPLY", ra, "A")
    assert [caller.read_reply() for _ in range(3)] == [b"A", b"B", Status(b"PONG")]
    rc, pc = take_request(lis)
    assert pc == b"c"
    lis.assert_no_data(0.1)  # the failing calls wait behind c, and d behind them
    caller.assert_no_data(0.05)
    lis.call("HUB.REPLY", rc, "C")
    assert caller.read_reply() == b"C"
    assert caller.read_reply() == Error(b"ERR no listener for 'nobody'")
    assert caller.read_reply() == Error(b"ERR timeout is not an integer or out of range")
    rd, pd = take_request(lis)
    assert pd == b"d"
    caller.assert_no_data(0.05)  # the ECHO waits behind d
    lis.call("HUB.REPLY", rd, "D")
    assert [caller.read_reply(), caller.read_reply()] == [b"D", b"z"]


def test_a_lua_listener_call_between_remote_calls_keeps_its_place(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    write_handler(str(hdir), "lua", 'return { listen = { "lua" }, on_call = function(ev) return "L" .. ev.data end }\n')
    server = server_factory(handlers_dir=str(hdir))
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "a") + _encode("HUB.CALL", "lua", "x") + _encode("HUB.CALL", "svc", "b"))
    ra, _ = take_request(lis)
    lis.assert_no_data(0.1)
    caller.assert_no_data(0.05)
    lis.call("HUB.REPLY", ra, "A")
    assert [caller.read_reply(), caller.read_reply()] == [b"A", b"Lx"]
    rb, pb = take_request(lis)
    assert pb == b"b"
    lis.call("HUB.REPLY", rb, "B")
    assert caller.read_reply() == b"B"


def test_a_timeout_in_the_middle_of_a_pipeline_is_answered_in_its_turn(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "a", "0") + _encode("HUB.CALL", "svc", "b", "100") +
                _encode("HUB.CALL", "svc", "c", "0"))
    (ra, _), (rb, _), (rc, _) = take_request(lis), take_request(lis), take_request(lis)
    wait_for(lambda: pending_calls(server) == 2, what="b timed out")
    caller.assert_no_data(0.05)  # b's TIMEOUT waits for a
    assert lis.call("HUB.REPLY", rb, "late") == Error(b"ERR unknown request id")
    lis.call("HUB.REPLY", rc, "C")
    caller.assert_no_data(0.05)
    lis.call("HUB.REPLY", ra, "A")
    assert [caller.read_reply() for _ in range(3)] == [
        b"A", Error(b"TIMEOUT no reply from 'svc' within 100 ms"), b"C"]


def test_listener_disconnect_fails_each_outstanding_call_in_request_order(server):
    svc, other, caller = server.raw(), server.raw(), server.raw()
    listen(svc, "svc")
    listen(other, "other")
    caller.send(_encode("HUB.CALL", "svc", "a") + _encode("HUB.CALL", "other", "b") +
                _encode("HUB.CALL", "svc", "c") + _encode("HUB.CALL", "other", "d") + _encode("PING"))
    take_request(svc)
    rb, _ = take_request(other, b"other")
    take_request(svc)
    rd, _ = take_request(other, b"other")
    other.call("HUB.REPLY", rd, "D")
    svc.close()  # a and c fail; c in its turn, after b
    assert caller.read_reply() == Error(b"ERR listener for 'svc' disconnected")
    caller.assert_no_data(0.1)
    other.call("HUB.REPLY", rb, "B")
    assert [caller.read_reply() for _ in range(4)] == [
        b"B", Error(b"ERR listener for 'svc' disconnected"), b"D", Status(b"PONG")]
    assert pending_calls(server) == 0


def test_caller_disconnect_with_several_calls_outstanding_drops_them(server):
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(b"".join(_encode("HUB.CALL", "svc", "p%d" % i) for i in range(4)) + _encode("ECHO", "held"))
    reqs = [take_request(lis) for _ in range(4)]
    lis.call("HUB.REPLY", reqs[2][0], "early")  # kept for the caller, then dropped with it
    caller.close()
    wait_for(lambda: pending_calls(server) == 3 and b"cmd=hub.call" not in server.raw().call("CLIENT", "LIST"),
             what="caller gone")
    for i in (0, 1, 3):  # late replies are accepted and dropped
        assert lis.call("HUB.REPLY", reqs[i][0], "late") == Status(b"OK")
    assert lis.call("HUB.REPLY", reqs[2][0], "twice") == Error(b"ERR unknown request id")
    assert pending_calls(server) == 0
    probe = server.raw()
    probe.send_command("HUB.CALL", "svc", "after")
    rid, _ = take_request(lis)
    lis.call("HUB.REPLY", rid, "fine")
    assert probe.read_reply() == b"fine"


def test_calls_past_the_outstanding_limit_wait_for_a_free_slot(server):
    lis, caller = server.raw(), server.raw()
    lis.call("HELLO", "3")
    listen(lis, "svc")
    n = MAX_CALLS + 2
    caller.send(b"".join(_encode("HUB.CALL", "svc", "p%d" % i) for i in range(n)))
    reqs = [take_request(lis) for _ in range(MAX_CALLS)]
    assert reqs[-1][1] == b"p%d" % (MAX_CALLS - 1)
    lis.assert_no_data(0.1)
    assert pending_calls(server) == MAX_CALLS
    lis.send_command("HUB.REPLY", reqs[0][0], "r0")  # frees one slot
    assert lis.read_reply() == Status(b"OK")
    reqs.append(take_request(lis))
    assert reqs[-1][1] == b"p%d" % MAX_CALLS
    lis.assert_no_data(0.1)
    assert caller.read_reply() == b"r0"
    lis.send(b"".join(_encode("HUB.REPLY", rid, b"r" + p[1:]) for rid, p in reqs[1:]))
    for _ in reqs[1:]:
        assert lis.read_reply() == Status(b"OK")
    reqs.append(take_request(lis))
    lis.call("HUB.REPLY", reqs[-1][0], b"r%d" % (n - 1))
    assert [caller.read_reply() for _ in range(n - 1)] == [b"r%d" % i for i in range(1, n)]


def test_early_replies_are_bounded_by_the_query_buffer_limit(server_factory):
    server = server_factory(config={"client-query-buffer-limit": "4096"})
    lis, caller = server.raw(), server.raw()
    listen(lis, "svc")
    caller.send(_encode("HUB.CALL", "svc", "a", "0") + _encode("HUB.CALL", "svc", "b", "0"))
    (ra, _), (rb, _) = take_request(lis), take_request(lis)
    assert lis.call("HUB.REPLY", rb, "x" * 5000) == Status(b"OK")  # too big to keep for the caller
    assert caller.read_until_close() == b""
    assert lis.call("HUB.REPLY", ra, "late") == Status(b"OK")
    # a reply written at once is output, not held: the same size passes
    probe = server.raw()
    probe.send_command("HUB.CALL", "svc", "c")
    rc, _ = take_request(lis)
    lis.call("HUB.REPLY", rc, "y" * 5000)
    assert probe.read_reply() == b"y" * 5000


def test_idle_timeout_never_closes_a_blocked_caller(server_factory):
    server = server_factory(config={"timeout": "1"})
    lis, caller, probe = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    probe.call("HELLO", "3")
    probe.call("SUBSCRIBE", "keep-probe-open")
    cid = caller.call("CLIENT", "ID")
    caller.send(_encode("HUB.CALL", "svc", "x", "0") + _encode("PING"))
    rid, _ = take_request(lis)
    # an idle client connected after the call went out: once the timeout has
    # closed it, the caller has been idle longer than the timeout too
    idle = server.raw()
    idle.read_until_close(timeout=10)
    assert caller.is_open(0.05)
    assert client_fields(probe, cid)[b"flags"] == b"b"
    assert int(client_fields(probe, cid)[b"idle"]) >= 1
    lis.call("HUB.REPLY", rid, "X")
    assert [caller.read_reply(), caller.read_reply()] == [b"X", Status(b"PONG")]
    # the answer restarts the idle clock (as a write does in Redis), so the
    # next cron does not close the caller the moment it is answered
    assert client_fields(probe, cid)[b"idle"] == b"0"
    assert caller.call("PING") == Status(b"PONG")


def test_client_list_shows_flag_b_while_blocked_on_a_call(server):
    lis, caller, probe = server.raw(), server.raw(), server.raw()
    listen(lis, "svc")
    cid = caller.call("CLIENT", "ID")
    assert client_flags(probe, cid) == b"N"
    caller.send_command("HUB.CALL", "svc", "x")
    rid, _ = take_request(lis)
    assert client_flags(probe, cid) == b"b"
    assert b"\r\nblocked_clients:1\r\n" in probe.call("INFO", "clients")
    lis.call("HUB.REPLY", rid, "X")
    assert caller.read_reply() == b"X"
    assert client_flags(probe, cid) == b"N"
    assert b"\r\nblocked_clients:0\r\n" in probe.call("INFO", "clients")
    assert b" flags=N " in caller.call("CLIENT", "INFO")
    # a RESP3 subscriber may call too: P and b, in Redis's order
    caller.call("HELLO", "3")
    assert caller.call("SUBSCRIBE", "ch") == Push([b"subscribe", b"ch", 1])
    caller.send_command("HUB.CALL", "svc", "y")
    rid, _ = take_request(lis)
    assert client_flags(probe, cid) == b"Pb"
    lis.call("HUB.REPLY", rid, "Y")
    assert caller.read_reply() == b"Y"
    assert client_flags(probe, cid) == b"P"
