"""Hostile inputs to the stream commands: each has a defined outcome (an
error or a bounded reply), the hub keeps answering PING, memory stays
bounded."""
import pytest

from conftest import IS_ASAN, Error, encode_command
from hostile import Watchdog

pytestmark = pytest.mark.hub_only
RSS = None if IS_ASAN else 256 * 1024 * 1024


def test_huge_and_max_ids(server):
    c = server.raw()
    with Watchdog(server) as wd:
        assert c.call("XADD", "s", "18446744073709551616-0", "f", "v") == Error(
            b"ERR Invalid stream ID specified as stream command argument")
        assert c.call("XADD", "s", "9" * 200, "f", "v") == Error(
            b"ERR Invalid stream ID specified as stream command argument")
        assert c.call("XADD", "s", "18446744073709551615-18446744073709551615", "f", "v") == \
            b"18446744073709551615-18446744073709551615"
        assert c.call("XADD", "s", "*", "f", "v") == Error(
            b"ERR The stream has exhausted the last possible ID, unable to add more items")
        assert c.call("XRANGE", "s", "(18446744073709551615-18446744073709551615", "+") == Error(
            b"ERR invalid start ID for the interval")
        assert c.call("XADD", "s", "*", "f") == Error(b"ERR wrong number of arguments for 'xadd' command")
    wd.check(max_stall=1.0)


def test_keys_with_nul_and_empty_keys(server):
    c = server.raw()
    assert c.call("XADD", "a\x00b", "1-1", "f", "v") == b"1-1"
    assert c.call("XADD", "", "1-1", "f", "v") == b"1-1"
    assert sorted(c.call("KEYS", "*")) == [b"", b"a\x00b"]
    assert c.call("TYPE", "a\x00b") == b"stream"
    assert c.call("EXISTS", "a", "a\x00b", "") == 2
    assert c.call("DEL", "a\x00b", "") == 2


def test_many_fields_in_one_xadd(server):
    c = server.raw()
    n = 200000  # 400k arguments: under max-multibulk-len
    with Watchdog(server) as wd:
        args = ["XADD", "s", "*"] + ["f", "v"] * n
        c.send(encode_command(*args))
        rid = c.read_reply(timeout=30)
        assert isinstance(rid, bytes) and not isinstance(rid, Error)
        got = c.call("XRANGE", "s", "-", "+", timeout=30)
        assert len(got[0][1]) == 2 * n
    wd.check(max_stall=3.0, max_rss=RSS)


def test_xreadgroup_and_xautoclaim_huge_counts(server):
    c = server.raw()
    for i in range(100):
        c.call("XADD", "s", "%d-1" % (i + 1), "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    with Watchdog(server) as wd:
        got = c.call("XREADGROUP", "GROUP", "g", "a", "COUNT", "1000000000", "STREAMS", "s", ">")
        assert len(got[0][1]) == 100
        r = c.call("XAUTOCLAIM", "s", "g", "b", "0", "0", "COUNT", "1000000000")
        assert r[0] == b"0-0" and len(r[1]) == 100
        assert c.call("XAUTOCLAIM", "s", "g", "b", "0", "0", "COUNT", "9223372036854775807") == Error(
            b"ERR COUNT must be > 0")
    wd.check(max_stall=1.0, max_rss=RSS)


def test_pending_list_is_bounded(server_factory):
    srv = server_factory(config={"stream-max-pending": "10"})
    c = srv.raw()
    for i in range(20):
        c.call("XADD", "s", "%d-1" % (i + 1), "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    got = c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert len(got[0][1]) == 10
    err = c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert isinstance(err, Error) and b"stream-max-pending" in err
    # NOACK still reads
    got = c.call("XREADGROUP", "GROUP", "g", "a", "NOACK", "STREAMS", "s", ">")
    assert len(got[0][1]) == 10


def test_keys_with_many_streams(server):
    c = server.raw()
    n = 20000
    with Watchdog(server) as wd:
        for base in range(0, n, 1000):
            c.send(b"".join(encode_command("XADD", "k%d" % i, "1-1", "f", "v") for i in range(base, base + 1000)))
            for _ in range(1000):
                c.read_reply()
        assert len(c.call("KEYS", "*", timeout=30)) == n
        seen, cur = set(), b"0"
        while True:
            cur, keys = c.call("SCAN", cur, "COUNT", "1000")
            seen.update(keys)
            if cur == b"0":
                break
        assert len(seen) == n
    wd.check(max_stall=2.0, max_rss=RSS)
