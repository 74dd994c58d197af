"""Hostile durable consumers: one whose on_event always errors (dead letters
bounded by max_deliveries), one that burns its time slice on every entry,
and a 100k-entry backlog (also cold, read back through the store's reader
thread): the loop keeps answering PING within the Watchdog's bound."""
import time

import pytest

from conftest import IS_ASAN
from conftest import write_handler as write
from hostile import Watchdog

pytestmark = pytest.mark.hub_only


def wait_for(fn, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def xadd_many(c, key, n, chunk=1000):
    for i in range(0, n, chunk):
        c.send(b"".join(b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$4\r\ndata\r\n$%d\r\n%d\r\n"
                        % (len(key), key, len(str(j)), j) for j in range(i, min(n, i + chunk))))
        for _ in range(min(n, i + chunk) - i):
            c.read_reply()


def start(server_factory, tmp_path, text, **config):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    srv = server_factory(config=config or None, handlers_dir=str(hdir))
    return srv, hdir


def test_always_failing_consumer_dead_letters_within_max_deliveries(server_factory, tmp_path):
    srv, hdir = start(server_factory, tmp_path, None)
    c = srv.raw()
    n = 300
    xadd_many(c, b"orders", n)
    with Watchdog(srv) as wd:
        write(hdir, "bad.lua", """return { consume = { stream = "orders", group = "g", max_deliveries = 3, retry_ms = 0 },
            on_event = function(ev) error("always") end }""")
        c.call("HUB.RELOAD")
        assert wait_for(lambda: c.call("XLEN", "orders:dead") == n)
    wd.check()
    assert c.call("XPENDING", "orders", "g")[0] == 0
    dead = c.call("XRANGE", "orders:dead", "-", "+", "COUNT", "1")[0][1]
    assert dead[dead.index(b"deliveries") + 1] == b"3"
    h = [x for x in c.call("HUB.HANDLERS") if x[1] == b"bad"][0]
    assert h[h.index(b"errors") + 1] == 3 * n


def test_consumer_burning_its_slice_every_time_does_not_stall_the_loop(server_factory, tmp_path):
    srv, hdir = start(server_factory, tmp_path, None, **{"handler-time-slice": 20})
    c = srv.raw()
    xadd_many(c, b"orders", 20)
    with Watchdog(srv) as wd:
        write(hdir, "burn.lua", """return { consume = { stream = "orders", group = "g", max_deliveries = 2, retry_ms = 1 },
            on_event = function(ev) while true do end end }""")
        c.call("HUB.RELOAD")
        assert wait_for(lambda: c.call("XLEN", "orders:dead") == 20)
    wd.check()
    dead = c.call("XRANGE", "orders:dead", "-", "+", "COUNT", "1")[0][1]
    assert b"time slice exceeded" in dead[dead.index(b"error") + 1]


@pytest.mark.parametrize("cache", ["64mb", "1mb"])
def test_huge_backlog_does_not_stall_the_loop(server_factory, tmp_path, cache):
    srv, hdir = start(server_factory, tmp_path, None, **{"stream-cache-memory": cache})
    c = srv.raw()
    n = 100000
    xadd_many(c, b"orders", n)
    with Watchdog(srv) as wd:
        write(hdir, "count.lua", """local seen, last = 0, -1
            return { consume = { stream = "orders", group = "g" },
              on_event = function(ev)
                local v = tonumber(ev.data)
                if v ~= last + 1 then error("out of order: " .. v .. " after " .. last) end
                last, seen = v, seen + 1
              end,
              snapshot = function() return { seen = seen, last = last } end }""")
        c.call("HUB.RELOAD")
        assert wait_for(lambda: c.call("XINFO", "GROUPS", "orders")[0][-1] == 0, timeout=300 if IS_ASAN else 120)
    wd.check()
    assert c.call("XPENDING", "orders", "g")[0] == 0
    h = [x for x in c.call("HUB.HANDLERS") if x[1] == b"count"][0]
    assert h[h.index(b"errors") + 1] == 0
    cons = h[h.index(b"consume") + 1]
    assert cons[cons.index(b"acked") + 1] == n
    info = c.call("INFO", "streams").decode()
    cold = int(info.split("stream_cold_reads:")[1].split()[0])
    if cache == "1mb":
        assert cold > 100  # most of the backlog came from disk, COLD_BATCH entries a read
