"""Hostile inputs to capture: a CREATE with 100k patterns, huge message
ids, and a capture of `*` under a publisher at full speed. Each one: the hub
stays up, PING answers within the bound, memory stays bounded."""
import threading
import time

import pytest

from conftest import IS_ASAN, Error, Status, flat_to_dict
from hostile import Watchdog


def growth(n):
    """An RSS growth bound; none under ASan (its quarantine holds freed memory)."""
    return None if IS_ASAN else n

pytestmark = pytest.mark.hub_only


def create_cmd(key, pats, *opts):
    args = [b"HUB.STREAM", b"CREATE", key.encode(), b"CAPTURE"] + [p.encode() for p in pats] + \
        [o.encode() for o in opts]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


@pytest.mark.parametrize("shape", ["p%d.*", "*x%d"])
def test_100k_patterns_in_one_create(server_factory, shape):
    srv = server_factory(config={"client-query-buffer-limit": "64mb"})
    c = srv.raw(timeout=60)
    pats = [shape % i for i in range(100000)]
    with Watchdog(srv) as wd:
        c.send(create_cmd("big", pats))
        assert c.read_reply(timeout=60) == Status(b"OK")
        for i in (0, 500, 99999):
            name = ("p%d.a" if shape.startswith("p") else "ax%d") % i
            assert c.call("PUBLISH", name, "v") == 0
        assert c.call("PUBLISH", "zzz", "v") == 0
    print(wd.check(max_stall=2.0, max_rss_growth=growth(300 << 20)).summary())
    assert c.call("XLEN", "big") == 3
    [m] = c.call("HUB.STREAM", "LIST", timeout=30)
    assert len(flat_to_dict(m)[b"patterns"]) == 100000
    # dropping it unindexes every pattern
    assert c.call("HUB.STREAM", "DROP", "big") == Status(b"OK")
    assert c.call("PUBLISH", "p1.a", "v") == 0 and c.call("EXISTS", "big") == 0


def test_huge_msgids_are_refused_and_dedup_memory_is_capped(server):
    c = server.raw()
    c.call("HUB.STREAM", "CREATE", "s", "CAPTURE", "o", "DUPWINDOW", "3600", "DUPMAX", "1000")
    with Watchdog(server) as wd:
        for _ in range(20):
            r = c.call("HUB.PUBLISH", "o", "x", "MSGID", "m" * (1 << 20))
            assert isinstance(r, Error) and r.startswith(b"ERR msgid is longer than 256 bytes")
        n = 20000
        cmds = b"".join(b"*5\r\n$11\r\nHUB.PUBLISH\r\n$1\r\no\r\n$1\r\nx\r\n$5\r\nMSGID\r\n$256\r\n%s\r\n"
                        % (b"%0256d" % i) for i in range(n))
        c.send(cmds)
        for _ in range(n):
            assert c.read_reply() == [0, b"stored"]
    print(wd.check(max_rss_growth=growth(100 << 20)).summary())
    [m] = c.call("HUB.STREAM", "LIST")
    assert flat_to_dict(m)[b"dedup-records"] == 1000
    assert c.call("XLEN", "s") == n


def test_capture_everything_at_full_speed_keeps_ping_fast(server_factory):
    srv = server_factory(config={"stream-cache-memory": "8mb"})
    c = srv.raw()
    c.call("HUB.STREAM", "CREATE", "all", "CAPTURE", "*", "MAXLEN", "50000")
    stop = threading.Event()
    sent = [0]
    errors = []

    def publisher():
        p = srv.raw(timeout=30)
        batch = b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nev.%02d\r\n$64\r\n%s\r\n" % (i % 100, b"d" * 64)
                         for i in range(500))
        try:
            while not stop.is_set():
                p.send(batch)
                for _ in range(500):
                    r = p.read_reply()
                    if r != 0:
                        errors.append(r)
                sent[0] += 500
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    with Watchdog(srv) as wd:
        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        time.sleep(3)
        stop.set()
        t.join(30)
    print(wd.check(max_rss_growth=growth(250 << 20)).summary())
    assert not errors, errors[:3]
    assert sent[0] > 1000
    n = c.call("XLEN", "all")
    assert n == min(sent[0], 50000), (n, sent[0])
