"""Capture: pub/sub fanned out into durable streams (HUB.STREAM CREATE key
CAPTURE pattern ..., HUB.STREAM DROP / LIST, HUB.PUBLISH ... MSGID), the
PUBLISH reply gated on the commit, de-duplication across restarts, MAXLEN /
MAXAGE retention, and the store failing while capturing. The hub's own
commands: these tests only run against the hub."""
import os
import resource
import signal
import sqlite3
import time

import pytest

from conftest import Error, Status, flat_to_dict

pytestmark = pytest.mark.hub_only


def entries(c, key):
    """[(name, data[, msgid])] of the stream, in id order."""
    out = []
    for _id, fv in c.call("XRANGE", key, "-", "+"):
        d = flat_to_dict(fv)
        out.append(tuple(d[k] for k in (b"name", b"data", b"msgid") if k in d))
    return out


def listing(c):
    """HUB.STREAM LIST (RESP2) as {key: {field: value}}."""
    return {flat_to_dict(m)[b"key"]: flat_to_dict(m) for m in c.call("HUB.STREAM", "LIST")}


def kill9(srv):
    srv.stopped = True  # killed on purpose
    srv.close_clients()
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()


def wait_for(fn, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def test_publishes_are_captured_by_every_matching_stream_in_order(server):
    c = server.raw()
    assert c.call("HUB.STREAM", "CREATE", "orders", "CAPTURE", "orders.*", "pay.*") == Status(b"OK")
    assert c.call("HUB.STREAM", "CREATE", "eu", "CAPTURE", "*.eu", "orders.*") == Status(b"OK")
    assert c.call("HUB.STREAM", "CREATE", "exact", "CAPTURE", "ping") == Status(b"OK")
    sub = server.raw()
    sub.call("PSUBSCRIBE", "*")
    sent = [("orders.new", "1"), ("pay.eu", "2"), ("ping", "3"), ("other", "4"), ("orders.eu", "5"),
            ("pay.us", "6")]
    for name, data in sent:
        assert c.call("PUBLISH", name, data) == 1  # the subscriber; the streams are not receivers
        assert sub.read_reply() == [b"pmessage", b"*", name.encode(), data.encode()]
    assert entries(c, "orders") == [(b"orders.new", b"1"), (b"pay.eu", b"2"), (b"orders.eu", b"5"),
                                    (b"pay.us", b"6")]
    # orders.eu matches both of eu's patterns: one entry
    assert entries(c, "eu") == [(b"orders.new", b"1"), (b"pay.eu", b"2"), (b"orders.eu", b"5")]
    assert entries(c, "exact") == [(b"ping", b"3")]
    assert c.call("EXISTS", "other") == 0


def test_every_acknowledged_publish_is_stored_after_kill9(server_factory):
    srv = server_factory()
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "log", "CAPTURE", "ev.*")
    n = 3000
    c.send(b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nev.a\r\n$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(n)))
    for _ in range(n):
        assert c.read_reply() == 0
    kill9(srv)  # every reply above came after its entry committed
    db = sqlite3.connect(os.path.join(srv.workdir, "data", "luahub.db"))
    assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == n
    db.close()
    c2 = server_factory().raw()
    assert [int(e[1]) for e in entries(c2, "log")] == list(range(n))
    # the definition came back too
    assert c2.call("PUBLISH", "ev.b", "after") == 0
    assert c2.call("XLEN", "log") == n + 1


def test_handler_publish_is_captured(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    (hdir / "relay.lua").write_text('local hub = require("hub")\n'
                                    'return { subscribe = { "in" },\n'
                                    '  on_event = function(ev) hub.publish("out." .. ev.data, ev.data) end }\n')
    srv = server_factory(handlers_dir=str(hdir))
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "outs", "CAPTURE", "out.*")
    for i in range(5):
        assert c.call("PUBLISH", "in", str(i)) == 1
    assert wait_for(lambda: c.call("XLEN", "outs") == 5)
    assert entries(c, "outs") == [(b"out.%d" % i, b"%d" % i) for i in range(5)]


def test_hub_publish_msgid_within_and_after_the_window(server):
    c = server.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "o.*", "DUPWINDOW", "1")
    sub = server.raw()
    sub.call("SUBSCRIBE", "o.x")
    assert c.call("HUB.PUBLISH", "o.x", "a", "MSGID", "m1") == [1, b"stored"]
    assert sub.read_reply() == [b"message", b"o.x", b"a"]
    # a retry: stored nowhere again, delivered to nobody
    assert c.call("HUB.PUBLISH", "o.x", "a", "MSGID", "m1") == [0, b"duplicate"]
    assert c.call("HUB.PUBLISH", "o.x", "b", "MSGID", "m2") == [1, b"stored"]
    assert sub.read_reply() == [b"message", b"o.x", b"b"]
    assert c.call("HUB.PUBLISH", "nope", "z", "MSGID", "m1") == [0, b"not-captured"]
    assert c.call("HUB.PUBLISH", "o.y", "c") == [0, b"stored"]
    assert entries(c, "s") == [(b"o.x", b"a", b"m1"), (b"o.x", b"b", b"m2"), (b"o.y", b"c")]
    time.sleep(2.2)  # past the window: the same id is a new event
    assert c.call("HUB.PUBLISH", "o.x", "a2", "MSGID", "m1") == [1, b"stored"]
    assert sub.read_reply() == [b"message", b"o.x", b"a2"]
    assert c.call("XLEN", "s") == 4
    # no window: every publish is stored, with its msgid
    c.call("HUB.STREAM", "CREATE", "nodup", "CAPTURE", "n")
    assert c.call("HUB.PUBLISH", "n", "1", "MSGID", "k") == [0, b"stored"]
    assert c.call("HUB.PUBLISH", "n", "1", "MSGID", "k") == [0, b"stored"]
    assert entries(c, "nodup") == [(b"n", b"1", b"k")] * 2


def test_msgid_duplicates_are_known_after_kill9(server_factory):
    srv = server_factory()
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "o", "DUPWINDOW", "3600")
    for i in range(50):
        assert c.call("HUB.PUBLISH", "o", str(i), "MSGID", "id%d" % i) == [0, b"stored"]
    kill9(srv)
    c2 = server_factory().raw()
    assert listing(c2)[b"s"][b"dedup-records"] == 50
    for i in (0, 17, 49):
        assert c2.call("HUB.PUBLISH", "o", "again", "MSGID", "id%d" % i) == [0, b"duplicate"]
    assert c2.call("HUB.PUBLISH", "o", "new", "MSGID", "id50") == [0, b"stored"]
    assert c2.call("XLEN", "s") == 51


def test_dedup_records_are_capped_per_stream(server):
    c = server.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "o", "DUPWINDOW", "3600", "DUPMAX", "100")
    for i in range(300):
        c.call("HUB.PUBLISH", "o", "x", "MSGID", "id%d" % i)
    assert listing(c)[b"s"][b"dedup-records"] == 100
    assert c.call("HUB.PUBLISH", "o", "x", "MSGID", "id299") == [0, b"duplicate"]
    assert c.call("HUB.PUBLISH", "o", "x", "MSGID", "id0") == [0, b"stored"]  # forgotten: past the cap


def test_maxlen_keeps_the_newest(server):
    c = server.raw()
    for i in range(10):
        c.call("XADD", "s", "*", "old", str(i))
    # CREATE on a plain stream turns capture on for it, and trims it now
    assert c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e", "MAXLEN", "3") == Status(b"OK")
    assert c.call("XLEN", "s") == 3
    for i in range(20):
        c.call("PUBLISH", "e", str(i))
    assert entries(c, "s") == [(b"e", b"17"), (b"e", b"18"), (b"e", b"19")]
    assert listing(c)[b"s"][b"maxlen"] == 3


def test_maxlen_trims_entries_only_on_disk(server_factory):
    srv = server_factory(config={"stream-cache-memory": "64kb"})
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e")
    payload = b"x" * 200
    n = 2000  # ~450 KB: most of it leaves memory
    c.send(b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\ne\r\n$204\r\n%04d%s\r\n" % (i, payload) for i in range(n)))
    for _ in range(n):
        assert c.read_reply() == 0
    # tighten the limit: the entries to drop are on disk; their ids are read back first
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e", "MAXLEN", "500")
    assert wait_for(lambda: c.call("XLEN", "s") == 500), c.call("XLEN", "s")
    rows = c.call("XRANGE", "s", "-", "+")
    assert [int(flat_to_dict(fv)[b"data"][:4]) for _i, fv in rows] == list(range(n - 500, n))


def test_maxage_trims_on_a_timer(server):
    c = server.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e", "MAXAGE", "1")
    for i in range(5):
        c.call("PUBLISH", "e", str(i))
    assert c.call("XLEN", "s") == 5
    time.sleep(1.1)
    c.call("PUBLISH", "e", "new")  # on append: the old ones go
    assert entries(c, "s") == [(b"e", b"new")]
    assert wait_for(lambda: c.call("XLEN", "s") == 0, timeout=5)  # and with no append, the timer


def test_list_shapes_resp2_and_resp3(server):
    c = server.raw()
    assert c.call("HUB.STREAM", "LIST") == []
    c.call("HUB.STREAM", "CREATE", "a", "CAPTURE", "x.*", "y", "MAXLEN", "10", "DUPWINDOW", "60")
    c.call("HUB.STREAM", "CREATE", "b", "CAPTURE", "*", "MAXAGE", "3600")
    c.call("HUB.STREAM", "CREATE", "u", "CAPTURE", "u")
    c.call("XADD", "plain", "*", "f", "v")  # not a capture stream: not listed
    c.call("PUBLISH", "y", "1")
    raw = c.call("HUB.STREAM", "LIST")
    assert [flat_to_dict(m)[b"key"] for m in raw] == [b"a", b"b", b"u"]
    a = flat_to_dict(raw[0])
    assert a == {b"key": b"a", b"patterns": [b"x.*", b"y"], b"maxlen": 10, b"maxage": b"unbounded",
                 b"dupwindow": 60, b"dupmax": 100000, b"dedup-records": 0, b"length": 1}
    assert flat_to_dict(raw[1])[b"maxlen"] == b"unbounded" and flat_to_dict(raw[1])[b"maxage"] == 3600
    u = flat_to_dict(raw[2])
    assert (u[b"maxlen"], u[b"maxage"], u[b"dupwindow"]) == (b"unbounded", b"unbounded", 0)
    r3 = server.raw()
    r3.call("HELLO", "3")
    maps = r3.call("HUB.STREAM", "LIST")
    assert all(isinstance(m, dict) for m in maps)
    assert [m[b"key"] for m in maps] == [b"a", b"b", b"u"]
    assert maps[0] == a
    info = dict(l.split(":", 1) for l in c.call("INFO", "capture").decode().splitlines() if ":" in l)
    assert info["capture_streams"] == "3" and info["capture_streams_unbounded"] == "1"


def test_create_again_replaces_the_definition_and_drop_removes_the_stream(server_factory):
    srv = server_factory()
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "a")
    c.call("PUBLISH", "a", "1")
    assert c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "b", "MAXLEN", "5") == Status(b"OK")
    c.call("PUBLISH", "a", "2")  # no longer captured
    c.call("PUBLISH", "b", "3")
    assert entries(c, "s") == [(b"a", b"1"), (b"b", b"3")]
    assert listing(c)[b"s"][b"patterns"] == [b"b"]
    assert c.call("HUB.STREAM", "DROP", "s") == Status(b"OK")
    assert c.call("EXISTS", "s") == 0 and c.call("HUB.STREAM", "LIST") == []
    c.call("PUBLISH", "b", "4")
    assert c.call("EXISTS", "s") == 0
    # DEL of a capture stream ends its capture too
    c.call("HUB.STREAM", "CREATE", "t", "CAPTURE", "t")
    assert c.call("DEL", "t") == 1
    c.call("PUBLISH", "t", "x")
    assert c.call("EXISTS", "t") == 0 and c.call("HUB.STREAM", "LIST") == []
    srv.stop()
    c2 = server_factory().raw()
    assert c2.call("HUB.STREAM", "LIST") == []


def test_blocked_reader_wakes_on_a_captured_publish(server):
    c = server.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e")
    r = server.raw()
    r.send_command("XREAD", "BLOCK", "5000", "STREAMS", "s", "$")
    time.sleep(0.2)
    c.call("PUBLISH", "e", "hello")
    got = r.read_reply(timeout=5)
    assert got[0][0] == b"s" and flat_to_dict(got[0][1][0][1]) == {b"name": b"e", b"data": b"hello"}


@pytest.mark.parametrize("args,err", [
    (("HUB.STREAM",), b"ERR wrong number of arguments"),
    (("HUB.STREAM", "CREATE", "s"), b"ERR wrong number of arguments"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE"), b"ERR wrong number of arguments"),
    (("HUB.STREAM", "CREATE", "s", "PATTERNS", "a"), b"ERR syntax error"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "MAXLEN", "3"), b"ERR CAPTURE needs at least one pattern"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "MAXLEN", "3", "FOO", "1"), b"ERR syntax error: unknown option"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "MAXLEN"), b"ERR syntax error: an option without"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "MAXLEN", "-1"), b"ERR value is not an integer"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "MAXAGE", "x"), b"ERR value is not an integer"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "DUPWINDOW", "99999999999"), b"ERR DUPWINDOW must be at most"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "a", "DUPMAX", "0"), b"ERR DUPMAX must be between"),
    (("HUB.STREAM", "CREATE", "s", "CAPTURE", "p" * 300), b"ERR pattern is longer than pattern-max-len"),
    (("HUB.STREAM", "DROP", "nope"), b"ERR no such capture stream"),
    (("HUB.STREAM", "DROP"), b"ERR wrong number of arguments"),
    (("HUB.STREAM", "LIST", "x"), b"ERR wrong number of arguments"),
    (("HUB.STREAM", "FROB"), b"ERR unknown subcommand 'FROB'"),
    (("HUB.PUBLISH", "n"), b"ERR wrong number of arguments"),
    (("HUB.PUBLISH", "n", "d", "MSGID"), b"ERR wrong number of arguments"),
    (("HUB.PUBLISH", "n", "d", "ID", "x"), b"ERR syntax error"),
    (("HUB.PUBLISH", "n", "d", "MSGID", "i" * 257), b"ERR msgid is longer than 256 bytes"),
])
def test_errors(server_factory, args, err):
    srv = server_factory(config={"pattern-max-len": "256"})
    c = srv.raw()
    c.call("XADD", "plain", "*", "f", "v")
    got = c.call(*args)
    assert isinstance(got, Error) and got.startswith(err), got
    assert c.call("HUB.STREAM", "LIST") == []
    assert c.call("EXISTS", "s") == 0
    assert isinstance(c.call("HUB.STREAM", "DROP", "plain"), Error)  # a plain stream is no capture stream


def fsize_limit(pid, n):
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY if n != resource.RLIM_INFINITY else n))


def test_store_failing_while_capturing(server_factory):
    """The publish still reaches subscribers; the publisher is never told a
    failed entry was stored (its connection closes, or it gets the error)."""
    srv = server_factory()
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "e")
    assert c.call("PUBLISH", "e", "ok") == 0
    sub = srv.raw()
    sub.call("SUBSCRIBE", "e")
    data = os.path.join(srv.workdir, "data")
    biggest = max(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))
    fsize_limit(srv.pid, biggest + 4096)
    c.send_command("PUBLISH", "e", "x" * (512 * 1024))
    out = c.read_until_close(timeout=10)
    assert out == b"", out  # the gated reply is never sent: the batch failed
    assert sub.read_reply()[:2] == [b"message", b"e"]  # delivered at once all the same
    w = srv.raw()
    err = wait_for(lambda: (lambda v: v if isinstance(v, Error) else None)(w.call("PUBLISH", "e", "down")))
    assert err.startswith(b"ERR store unavailable") and b"delivered to 1 receivers, not stored" in err, err
    assert sub.read_reply() == [b"message", b"e", b"down"]
    assert w.call("HUB.PUBLISH", "e", "d", "MSGID", "q").startswith(b"ERR store unavailable")
    assert w.call("PUBLISH", "not-captured", "x") == 0  # pub/sub untouched
    fsize_limit(srv.pid, resource.RLIM_INFINITY)
    assert wait_for(lambda: w.call("PUBLISH", "e", "back") == 1)
    assert entries(w, "s")[0] == (b"e", b"ok") and entries(w, "s")[-1] == (b"e", b"back")
    assert all(e[1] not in (b"down",) for e in entries(w, "s"))
