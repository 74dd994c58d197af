"""Durable streams across restarts, the bounded hot window and its cold
reads, blocking reads that never stall the hub, and store failures (the
hub's own behaviour: these tests only run against the hub)."""
import os
import resource
import signal
import time

import pytest

from conftest import IS_ASAN, Error, flat_to_dict
from hostile import Watchdog

pytestmark = pytest.mark.hub_only


def info(c, section):
    text = c.call("INFO", section).decode()
    return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)


def state(c):
    """Everything a restart must keep, with idle times dropped."""
    out = {"entries": c.call("XRANGE", "s", "-", "+"), "len": c.call("XLEN", "s")}
    st = flat_to_dict(c.call("XINFO", "STREAM", "s"))
    out["meta"] = {k: st[k] for k in (b"last-generated-id", b"max-deleted-entry-id", b"entries-added",
                                      b"recorded-first-entry-id", b"length")}
    out["groups"] = [{k: v for k, v in flat_to_dict(g).items()} for g in c.call("XINFO", "GROUPS", "s")]
    full = flat_to_dict(c.call("XINFO", "STREAM", "s", "FULL"))
    out["pel"] = [[(p[0], p[1], p[2], p[3]) for p in flat_to_dict(g)[b"pending"]] for g in full[b"groups"]]
    out["consumers"] = [sorted(flat_to_dict(x)[b"name"] for x in flat_to_dict(g)[b"consumers"])
                        for g in full[b"groups"]]
    return out


def populate(c):
    for i in range(1, 51):
        c.call("XADD", "s", "%d-1" % i, "f", "v%d" % i, "n", str(i))
    c.call("XDEL", "s", "7-1")
    c.call("XGROUP", "CREATE", "s", "g1", "0")
    c.call("XGROUP", "CREATE", "s", "g2", "$")
    c.call("XREADGROUP", "GROUP", "g1", "alice", "COUNT", "10", "STREAMS", "s", ">")
    c.call("XREADGROUP", "GROUP", "g1", "bob", "COUNT", "5", "STREAMS", "s", ">")
    c.call("XACK", "s", "g1", "2-1", "3-1")
    c.call("XCLAIM", "s", "g1", "bob", "0", "4-1", "RETRYCOUNT", "5", "TIME", "1000000")
    c.call("XGROUP", "CREATECONSUMER", "s", "g2", "carol")


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_everything_survives_a_restart(server_factory, how):
    srv = server_factory()
    c = srv.raw()
    populate(c)
    before = state(c)
    assert (b"4-1", b"bob", 1000000, 5) in before["pel"][0]
    if how == "sigterm":
        srv.stop()
    else:
        srv.stopped = True  # killed on purpose
        srv.close_clients()
        os.kill(srv.pid, signal.SIGKILL)  # every reply above arrived: each was committed before it was sent
        srv.proc.wait()
    srv2 = server_factory()
    after = state(srv2.raw())
    assert after == before


def test_small_window_reads_old_entries_back_cold(server_factory):
    srv = server_factory(config={"stream-cache-memory": "64kb"})
    c = srv.raw()
    payload = "x" * 200
    n = 3000  # ~700 KB of entries, ten times the window
    with Watchdog(srv) as wd:
        for base in range(0, n, 500):
            cmds = b"".join(
                b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$%d\r\n%d-1\r\n$1\r\nf\r\n$200\r\n%s\r\n"
                % (len(str(i + 1)) + 2, i + 1, payload.encode()) for i in range(base, base + 500))
            c.send(cmds)
            for _ in range(500):
                c.read_reply()
        st = info(c, "streams")
        assert int(st["stream_entries_stored"]) == n
        assert int(st["stream_entries_in_memory"]) < n // 2
        assert int(st["stream_window_bytes"]) <= 64 * 1024 + 8192
        # cold reads: the oldest entries, a range across the boundary, reverse
        rows = c.call("XRANGE", "s", "-", "+", "COUNT", "5")
        assert [r[0] for r in rows] == [b"%d-1" % i for i in range(1, 6)]
        assert rows[0][1] == [b"f", payload.encode()]
        allrows = c.call("XRANGE", "s", "-", "+")
        assert [r[0] for r in allrows] == [b"%d-1" % i for i in range(1, n + 1)]
        rev = c.call("XREVRANGE", "s", "+", "-")
        assert [r[0] for r in rev] == [b"%d-1" % i for i in range(n, 0, -1)]
        c.call("XGROUP", "CREATE", "s", "g", "0")
        got = c.call("XREADGROUP", "GROUP", "g", "a", "COUNT", "3", "STREAMS", "s", ">")
        assert [r[0] for r in got[0][1]] == [b"1-1", b"2-1", b"3-1"]
        # XDEL of a cold entry, then it is gone from cold reads too
        assert c.call("XDEL", "s", "2-1") == 1
        assert c.call("XDEL", "s", "2-1") == 0
        assert [r[0] for r in c.call("XRANGE", "s", "-", "+", "COUNT", "3")] == [b"1-1", b"3-1", b"4-1"]
        assert int(info(c, "persistence")["store_cold_reads"]) > 0
    # ASan quarantines freed memory: RSS is bounded for the plain build only
    wd.check(max_stall=2.0, max_rss_growth=None if IS_ASAN else 64 * 1024 * 1024)


def test_blocked_xread_does_not_stall_others(server_factory):
    srv = server_factory()
    r, w = srv.raw(), srv.raw()
    r.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    with Watchdog(srv) as wd:
        for i in range(200):
            assert w.call("PING") == b"PONG"
        assert w.call("XADD", "s", "1-1", "a", "b") == b"1-1"
        assert r.read_reply() == [[b"s", [[b"1-1", [b"a", b"b"]]]]]
    wd.check(max_stall=1.0)


def fsize_limit(pid, n):
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (n, resource.RLIM_INFINITY if n != resource.RLIM_INFINITY else n))


def test_store_failure_refuses_writes_keeps_pubsub_and_recovers(server_factory):
    srv = server_factory()
    c = srv.raw()
    assert c.call("XADD", "s", "1-1", "f", "v") == b"1-1"
    data = os.path.join(srv.workdir, "data")
    biggest = max(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))
    fsize_limit(srv.pid, biggest + 4096)
    big = "x" * (512 * 1024)
    c.send_command("XADD", "s", "2-1", "f", big)
    # no ack for what was not stored: the connection closes without a reply
    out = c.read_until_close(timeout=10)
    assert b"2-1" not in out
    w = srv.raw()
    deadline = time.time() + 10
    err = None
    while time.time() < deadline:
        err = w.call("XADD", "s", "3-1", "f", "v")
        if isinstance(err, Error):
            break
        time.sleep(0.05)
    assert isinstance(err, Error) and err.startswith(b"ERR store unavailable"), err
    assert info(w, "persistence")["store_ok"] == "0"
    # pub/sub keeps working, reads too
    sub = srv.raw()
    sub.call("SUBSCRIBE", "ch")
    assert w.call("PUBLISH", "ch", "hi") == 1
    assert sub.read_reply() == [b"message", b"ch", b"hi"]
    # the cause goes away: writes work again, and the failed entry is not there
    fsize_limit(srv.pid, resource.RLIM_INFINITY)
    deadline = time.time() + 10
    while time.time() < deadline and info(w, "persistence")["store_ok"] != "1":
        time.sleep(0.1)
    assert w.call("XADD", "s", "4-1", "f", "v") == b"4-1"
    assert [r[0] for r in w.call("XRANGE", "s", "-", "+")] in ([b"1-1", b"4-1"], [b"1-1", b"3-1", b"4-1"])
