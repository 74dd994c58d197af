"""Lua handlers as durable consumers (consume = {stream=, group=}): entries
captured from PUBLISH reach on_event in order and are acknowledged, errors
are retried with back-off and dead-lettered past max_deliveries, and
reloads, kill -9 and restarts lose nothing and acknowledge nothing twice."""
import os
import signal
import threading
import time

import pytest

from conftest import Status, flat_to_dict
from conftest import write_handler as write

pytestmark = pytest.mark.hub_only


def wait_for(fn, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    return fn()


def kill9(srv):
    srv.stopped = True
    srv.close_clients()
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()


def fields(c, key):
    return [flat_to_dict(fv) for _id, fv in c.call("XRANGE", key, "-", "+")]


def pending_count(c, key, group):
    return c.call("XPENDING", key, group)[0]


def consume_info(c, name):
    for flat in c.call("HUB.HANDLERS"):
        d = flat_to_dict(flat)
        if d[b"name"] == name.encode():
            return flat_to_dict(d[b"consume"]) if d[b"consume"] else None
    return None


# Records each acknowledged entry: a publish captured into stream `acks`
# lands in the same store batch as the XACK.
RECORDER = """
local hub = require("hub")
return {
  consume = { stream = "orders", group = "billing", max_deliveries = %(max)d, retry_ms = %(retry)d },
  on_event = function(ev)
    %(body)s
    hub.publish("acked." .. ev.data, ev.entry .. " " .. ev.deliveries .. " " .. tostring(ev.name))
  end,
}
"""


def recorder(body="", max=5, retry=1):
    return RECORDER % {"body": body, "max": max, "retry": retry}


@pytest.fixture
def hub(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()

    def start(files=None, **config):
        for name, text in (files or {}).items():
            write(hdir, name, text)
        return server_factory(config=config or None, handlers_dir=str(hdir))
    start.hdir = hdir
    return start


def setup_capture(c):
    assert c.call("HUB.STREAM", "CREATE", "orders", "CAPTURE", "orders.*") == Status(b"OK")
    assert c.call("HUB.STREAM", "CREATE", "acks", "CAPTURE", "acked.*") == Status(b"OK")


def test_captured_entries_reach_on_event_in_order_and_are_acked(hub):
    srv = hub()
    c = srv.raw()
    setup_capture(c)
    for i in range(50):
        c.call("PUBLISH", "orders.created", str(i))
    write(hub.hdir, "billing.lua", recorder())
    assert c.call("HUB.RELOAD")[0].endswith(b"loaded v1")
    assert wait_for(lambda: c.call("XLEN", "acks") == 50)
    for i in range(50, 100):
        c.call("PUBLISH", "orders.created", str(i))
    assert wait_for(lambda: c.call("XLEN", "acks") == 100)
    acks = fields(c, "acks")
    ids = [e[0] for e in c.call("XRANGE", "orders", "-", "+")]
    # in order, each entry once, with its name and first delivery
    assert [a[b"name"] for a in acks] == [b"acked.%d" % i for i in range(100)]
    assert [a[b"data"] for a in acks] == [b"%s 1 orders.created" % i for i in ids]
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 0)
    g = flat_to_dict(c.call("XINFO", "GROUPS", "orders")[0])
    assert g[b"last-delivered-id"] == ids[-1] and g[b"lag"] == 0 and g[b"pending"] == 0
    cons = flat_to_dict(c.call("XINFO", "CONSUMERS", "orders", "billing")[0])
    assert cons[b"name"] == b"billing"
    info = consume_info(c, "billing")
    assert info[b"stream"] == b"orders" and info[b"group"] == b"billing"
    assert info[b"acked"] == 100 and info[b"pending"] == 0 and info[b"dead_lettered"] == 0


def test_xadd_entries_with_other_fields(hub):
    srv = hub({"x.lua": """
local hub = require("hub")
return { consume = { stream = "raw", group = "g" },
  on_event = function(ev)
    hub.publish("seen", tostring(ev.name) .. "|" .. tostring(ev.data) .. "|" .. ev.fields.a .. "|" .. ev.stream)
  end }
"""})
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "seen", "CAPTURE", "seen")
    c.call("XADD", "raw", "*", "a", "1", "b", "2")
    assert wait_for(lambda: c.call("XLEN", "seen") == 1)
    assert fields(c, "seen")[0][b"data"] == b"nil|nil|1|raw"


def test_error_leaves_entry_pending_and_retries_with_backoff(hub):
    # fails the first two deliveries; retry_ms 300 doubles: 300, 600 ms
    srv = hub({"billing.lua": recorder('if ev.deliveries < 3 then error("card declined") end', retry=300)})
    c = srv.raw()
    setup_capture(c)
    t0 = time.time()
    c.call("PUBLISH", "orders.created", "7")
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 1)
    assert c.call("XLEN", "acks") == 0
    info = wait_for(lambda: (lambda i: i if i[b"failures"] >= 1 else None)(consume_info(c, "billing")))
    assert info[b"state"] in (b"backoff", b"ready", b"running")
    assert wait_for(lambda: c.call("XLEN", "acks") == 1)
    elapsed = time.time() - t0
    assert elapsed >= 0.85, elapsed  # 300 + 600 ms of back-off at least
    assert fields(c, "acks")[0][b"data"].split(b" ")[1] == b"3"
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 0)
    assert consume_info(c, "billing")[b"failures"] == 2
    assert b"card declined" in flat_to_dict(
        [f for f in c.call("HUB.HANDLERS") if flat_to_dict(f)[b"name"] == b"billing"][0])[b"last_error"]


def test_max_deliveries_moves_the_entry_to_the_dead_letter_stream(hub):
    srv = hub({"billing.lua": recorder('if ev.data == "13" then error("unlucky " .. ev.data) end', max=3)})
    c = srv.raw()
    setup_capture(c)
    for i in (12, 13, 14):
        c.call("PUBLISH", "orders.created", str(i))
    assert wait_for(lambda: c.call("XLEN", "orders:dead") == 1)
    assert wait_for(lambda: c.call("XLEN", "acks") == 2)
    ids = [e[0] for e in c.call("XRANGE", "orders", "-", "+")]
    d = fields(c, "orders:dead")[0]
    assert d[b"name"] == b"orders.created" and d[b"data"] == b"13"
    assert b"unlucky 13" in d[b"error"] and d[b"deliveries"] == b"3"
    assert d[b"entry"] == ids[1] and d[b"group"] == b"billing"
    # 14 came after 13 was settled (order is kept)
    assert [a[b"name"] for a in fields(c, "acks")] == [b"acked.12", b"acked.14"]
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 0)
    assert consume_info(c, "billing")[b"dead_lettered"] == 1


def test_zero_loss_and_no_duplicate_ack_across_100_reloads_under_load(hub):
    srv = hub({"billing.lua": recorder()})
    c = srv.raw()
    setup_capture(c)
    stop = threading.Event()
    sent = []

    def publisher():
        p = srv.raw()
        i = 0
        while not stop.is_set():
            p.send(b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$14\r\norders.created\r\n$%d\r\n%d\r\n"
                            % (len(str(j)), j) for j in range(i, i + 20)))
            for _ in range(20):
                p.read_reply()
            sent.extend(range(i, i + 20))
            i += 20
    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    r = srv.raw()
    for k in range(100):
        # alternate two texts so each reload builds a new version
        write(hub.hdir, "billing.lua", recorder() + "-- %d\n" % (k % 2))
        rep = r.call("HUB.RELOAD", "billing", "FORCE")
        assert rep[0].startswith(b"billing: reloaded"), rep
    stop.set()
    t.join(30)
    n = len(sent)
    assert n > 100
    assert wait_for(lambda: c.call("XLEN", "acks") >= n, timeout=60)
    time.sleep(0.3)
    acked = [int(a[b"name"].split(b".")[1]) for a in fields(c, "acks")]
    dup = {x for x in acked if acked.count(x) > 1} if len(acked) != len(set(acked)) else set()
    assert not dup, sorted(dup)[:10]
    assert sorted(acked) == sorted(sent)
    assert acked == sorted(acked)  # in order
    assert pending_count(c, "orders", "billing") == 0
    assert consume_info(c, "billing")[b"acked"] == n


def test_pending_entries_come_back_after_kill9(hub):
    # the first load fails every delivery (pending, retried slowly)
    srv = hub({"billing.lua": recorder('error("down")', max=1000, retry=60000)})
    c = srv.raw()
    setup_capture(c)
    for i in range(10):
        c.call("PUBLISH", "orders.created", str(i))
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 1)
    time.sleep(0.2)
    kill9(srv)
    write(hub.hdir, "billing.lua", recorder())
    srv2 = hub()
    c2 = srv2.raw()
    assert wait_for(lambda: c2.call("XLEN", "acks") == 10)
    acks = fields(c2, "acks")
    assert [a[b"name"] for a in acks] == [b"acked.%d" % i for i in range(10)]
    # the pending one was delivered again (count kept), the rest once
    assert acks[0][b"data"].split(b" ")[1] == b"2"
    assert all(a[b"data"].split(b" ")[1] == b"1" for a in acks[1:])
    assert wait_for(lambda: pending_count(c2, "orders", "billing") == 0)


def test_unload_keeps_the_group_and_its_pending_entries(hub):
    srv = hub({"billing.lua": recorder('error("no")', max=1000, retry=60000)})
    c = srv.raw()
    setup_capture(c)
    c.call("PUBLISH", "orders.created", "1")
    c.call("PUBLISH", "orders.created", "2")
    assert wait_for(lambda: pending_count(c, "orders", "billing") == 1)
    os.unlink(os.path.join(str(hub.hdir), "billing.lua"))
    assert c.call("HUB.RELOAD") == [b"billing: unloaded"]
    assert pending_count(c, "orders", "billing") == 1
    assert c.call("XINFO", "CONSUMERS", "orders", "billing")[0][1] == b"billing"
    write(hub.hdir, "billing.lua", recorder())
    c.call("HUB.RELOAD")
    assert wait_for(lambda: c.call("XLEN", "acks") == 2)
    assert [a[b"name"] for a in fields(c, "acks")] == [b"acked.1", b"acked.2"]


def test_existing_group_position_is_respected(hub):
    srv = hub()
    c = srv.raw()
    setup_capture(c)
    c.call("PUBLISH", "orders.created", "old")
    c.call("XGROUP", "CREATE", "orders", "billing", "$")
    c.call("PUBLISH", "orders.created", "new")
    write(hub.hdir, "billing.lua", recorder())
    c.call("HUB.RELOAD")
    assert wait_for(lambda: c.call("XLEN", "acks") == 1)
    time.sleep(0.2)
    assert [a[b"name"] for a in fields(c, "acks")] == [b"acked.new"]


def test_hub_call_timeout_leaves_the_entry_pending(hub):
    srv = hub({"billing.lua": """
local hub = require("hub")
return { consume = { stream = "orders", group = "billing", retry_ms = 100000 },
  on_event = function(ev)
    local r, err = hub.call("slow.svc", ev.data, 100)
    hub.publish("acked." .. ev.data, tostring(r))  -- ignores the failure: the timeout still fails it
  end }
"""})
    c = srv.raw()
    setup_capture(c)
    listener = srv.raw()
    assert listener.call("HUB.LISTEN", "slow.svc") is not None
    c.call("PUBLISH", "orders.created", "1")
    info = wait_for(lambda: (lambda i: i if i[b"failures"] >= 1 else None)(consume_info(c, "billing")))
    assert info[b"acked"] == 0 and info[b"state"] == b"backoff"
    assert pending_count(c, "orders", "billing") == 1


@pytest.mark.parametrize("text,err", [
    ('return { consume = { stream = "s", group = "g" } }', "'consume' without 'on_event'"),
    ('return { consume = { stream = "s" }, on_event = function() end }', "'consume' needs 'group'"),
    ('return { consume = "s", on_event = function() end }', "'consume' must be a table"),
    ('return { consume = { stream = "s", group = "g", max_deliveries = 0 }, on_event = function() end }',
     "'consume.max_deliveries' must be an integer"),
    ('return { consume = { stream = "s", group = "g", retry_ms = 1.5 }, on_event = function() end }',
     "'consume.retry_ms' must be an integer"),
    ('return { consume = { stream = "s", group = "g", x = 1 }, on_event = function() end }',
     "unknown key in 'consume'"),
    ('return { consume = { stream = "s", group = "g" }, subscribe = {"a"}, on_event = function() end }',
     "'consume' with 'subscribe'"),
])
def test_consume_key_is_validated(hub, text, err):
    srv = hub({"bad.lua": text})
    c = srv.raw()
    rep = c.call("HUB.RELOAD", "bad", "FORCE")
    assert err.encode() in rep[0], rep
