"""Streams through client libraries: redis-py's stream API round trips, redis-cli's
XADD/XRANGE output, and the RESP3 reply shapes (HELLO 3) of XREAD, XREADGROUP,
XINFO and friends, byte for byte.

These tests define the semantics: they pass against redis-server 7.0.15
(LUAHUB_TARGET=redis) and the hub must pass them unchanged.
"""
import threading

import redis

from conftest import Error, wait_for


def call_raw(c, *args):
    c.send_command(*args)
    return c.read_reply_raw()[1]


def resp3(server):
    c = server.raw()
    v = c.call("HELLO", "3")
    assert isinstance(v, dict) and v[b"proto"] == 3
    return c


# --------------------------------------------------------------------------
# redis-py
# --------------------------------------------------------------------------

def test_redis_py_xadd_xrange_xlen_xdel_xtrim(server):
    r = server.client()
    a = r.xadd("s", {"name": "a", "n": 1})
    b = r.xadd("s", {"name": "b"}, id="%d-0" % (int(a.split(b"-")[0]) + 1))
    assert r.xlen("s") == 2
    assert r.xrange("s") == [(a, {b"name": b"a", b"n": b"1"}), (b, {b"name": b"b"})]
    assert r.xrevrange("s", count=1) == [(b, {b"name": b"b"})]
    assert r.xrange("s", min=b, max="+") == [(b, {b"name": b"b"})]
    c = r.xadd("s", {"x": "y"}, maxlen=2, approximate=False)
    assert [e[0] for e in r.xrange("s")] == [b, c]
    assert r.xadd("nokey", {"x": "y"}, nomkstream=True) is None
    assert r.xdel("s", b) == 1
    assert r.xtrim("s", maxlen=0, approximate=False) == 1
    assert r.xlen("s") == 0


def test_redis_py_xread(server):
    r = server.client()
    r.xadd("a", {"f": "1"}, id="1-0")
    r.xadd("b", {"f": "2"}, id="2-0")
    assert r.xread({"a": 0, "b": 0}) == [[b"a", [(b"1-0", {b"f": b"1"})]], [b"b", [(b"2-0", {b"f": b"2"})]]]
    assert r.xread({"a": "1-0"}) == []
    assert r.xread({"a": "$"}, block=50) == []


def test_redis_py_groups_round_trip(server):
    r = server.client()
    r.xgroup_create("s", "g", id="$", mkstream=True)
    ids = [r.xadd("s", {"i": i}, id="%d-0" % (i + 1)) for i in range(4)]
    got = r.xreadgroup("g", "alice", {"s": ">"}, count=3)
    assert got == [[b"s", [(ids[i], {b"i": str(i).encode()}) for i in range(3)]]]
    assert r.xreadgroup("g", "bob", {"s": ">"}, noack=True) == [[b"s", [(ids[3], {b"i": b"3"})]]]
    assert r.xack("s", "g", ids[0]) == 1
    summary = r.xpending("s", "g")
    assert summary == {"pending": 2, "min": ids[1], "max": ids[2],
                       "consumers": [{"name": b"alice", "pending": 2}]}
    rows = r.xpending_range("s", "g", min="-", max="+", count=10)
    assert [(x["message_id"], x["consumer"], x["times_delivered"]) for x in rows] == [
        (ids[1], b"alice", 1), (ids[2], b"alice", 1)]
    assert all(isinstance(x["time_since_delivered"], int) for x in rows)
    assert r.xpending_range("s", "g", "-", "+", 10, consumername="bob") == []
    assert r.xclaim("s", "g", "bob", 0, [ids[1]]) == [(ids[1], {b"i": b"1"})]
    assert r.xclaim("s", "g", "bob", 0, [ids[2]], justid=True) == [ids[2]]
    res = r.xautoclaim("s", "g", "carol", 0, start_id="0-0", count=1)
    assert res[0] == ids[2] and res[1] == [(ids[1], {b"i": b"1"})]
    # redis-py 4.3 returns only the claimed ids with JUSTID
    assert r.xautoclaim("s", "g", "carol", 0, start_id=ids[2], justid=True) == [ids[2]]
    assert r.xgroup_delconsumer("s", "g", "carol") == 2
    assert r.xgroup_createconsumer("s", "g", "dave") == 1
    assert r.xgroup_setid("s", "g", "0") is True
    assert r.xgroup_destroy("s", "g") == 1


def test_redis_py_xinfo(server):
    r = server.client()
    r.xadd("s", {"f": "v"}, id="1-0")
    r.xadd("s", {"f": "w"}, id="2-0")
    r.xgroup_create("s", "g", id="0")
    r.xreadgroup("g", "alice", {"s": ">"}, count=1)
    info = r.xinfo_stream("s")
    assert info["length"] == 2 and info["groups"] == 1
    assert info["last-generated-id"] == b"2-0" and info["entries-added"] == 2
    assert info["max-deleted-entry-id"] == b"0-0" and info["recorded-first-entry-id"] == b"1-0"
    assert info["first-entry"] == (b"1-0", {b"f": b"v"})
    assert info["last-entry"] == (b"2-0", {b"f": b"w"})
    (g,) = r.xinfo_groups("s")
    assert (g["name"], g["consumers"], g["pending"], g["last-delivered-id"]) == (b"g", 1, 1, b"1-0")
    assert (g["entries-read"], g["lag"]) == (1, 1)
    (cons,) = r.xinfo_consumers("s", "g")
    assert cons["name"] == b"alice" and cons["pending"] == 1 and cons["idle"] >= 0
    full = r.xinfo_stream("s", full=True)
    assert full["length"] == 2 and len(full["entries"]) == 2
    assert full["groups"][0]["name"] == b"g"


def test_redis_py_errors(server):
    r = server.client()
    r.xadd("s", {"f": "v"}, id="5-0")
    try:
        r.xadd("s", {"f": "v"}, id="4-0")
    except redis.ResponseError as e:
        assert str(e) == "The ID specified in XADD is equal or smaller than the target stream top item"
    else:
        raise AssertionError("XADD with a smaller id succeeded")
    try:
        r.xgroup_create("s", "g", id="$")
        r.xgroup_create("s", "g", id="$")
    except redis.ResponseError as e:
        assert "BUSYGROUP" in str(e)
    else:
        raise AssertionError("duplicate group accepted")


def test_redis_py_blocking_xreadgroup(server):
    r = server.client()
    r.xgroup_create("s", "g", id="$", mkstream=True)
    w = server.raw()
    reader = server.client()
    out = []
    t = threading.Thread(target=lambda: out.append(reader.xreadgroup("g", "a", {"s": ">"}, block=0)))
    t.start()
    try:
        wait_for(lambda: b"blocked_clients:1\r\n" in w.call("INFO", "clients"), what="reader blocked")
        assert w.call("XADD", "s", "1-0", "f", "v") == b"1-0"
    finally:
        t.join(5)
    assert out == [[[b"s", [(b"1-0", {b"f": b"v"})]]]]


# --------------------------------------------------------------------------
# redis-cli
# --------------------------------------------------------------------------

def test_redis_cli_xadd_xrange_output(server):
    p = server.cli("XADD", "s", "1-0", "name", "a", "n", "1")
    assert (p.returncode, p.stdout) == (0, "1-0\n")
    p = server.cli("XADD", "s", "2-0", "name", "b")
    assert p.stdout == "2-0\n"
    p = server.cli("XRANGE", "s", "-", "+")
    assert p.stdout == "1-0\nname\na\nn\n1\n2-0\nname\nb\n"
    p = server.cli("--no-raw", "XRANGE", "s", "-", "+")
    assert p.stdout == ('1) 1) "1-0"\n   2) 1) "name"\n      2) "a"\n      3) "n"\n      4) "1"\n'
                        '2) 1) "2-0"\n   2) 1) "name"\n      2) "b"\n')
    p = server.cli("XLEN", "s")
    assert p.stdout == "2\n"
    p = server.cli("XADD", "s", "1-0", "f", "v")
    # redis-cli (not a tty) prints an error reply followed by an empty line
    assert p.stdout == "ERR The ID specified in XADD is equal or smaller than the target stream top item\n\n"
    p = server.cli("XRANGE", "nokey", "-", "+")
    assert p.stdout == "\n"


def test_redis_cli_xread_and_groups(server):
    server.cli("XADD", "s", "1-0", "f", "v")
    assert server.cli("XREAD", "STREAMS", "s", "0").stdout == "s\n1-0\nf\nv\n"
    assert server.cli("XGROUP", "CREATE", "s", "g", "0").stdout == "OK\n"
    assert server.cli("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">").stdout == "s\n1-0\nf\nv\n"
    assert server.cli("XACK", "s", "g", "1-0").stdout == "1\n"
    assert server.cli("TYPE", "s").stdout == "stream\n"


# --------------------------------------------------------------------------
# RESP3 shapes
# --------------------------------------------------------------------------

def test_resp3_xread_is_a_map(server):
    c = resp3(server)
    c.call("XADD", "a", "1-0", "f", "v")
    c.call("XADD", "b", "2-0", "g", "w")
    assert call_raw(c, "XREAD", "STREAMS", "a", "b", "0", "0") == (
        b"%2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        b"$1\r\nb\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\ng\r\n$1\r\nw\r\n")
    assert call_raw(c, "XREAD", "STREAMS", "a", "nokey", "0", "0") == (
        b"%1\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
    assert call_raw(c, "XREAD", "STREAMS", "a", "$") == b"_\r\n"


def test_resp3_xreadgroup_is_a_map(server):
    c = resp3(server)
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">") == (
        b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">") == b"_\r\n"
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", "0") == (
        b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")


def test_resp3_xrange_and_xadd_shapes(server):
    c = resp3(server)
    assert call_raw(c, "XADD", "s", "1-0", "f", "v") == b"$3\r\n1-0\r\n"
    assert call_raw(c, "XADD", "nokey", "NOMKSTREAM", "*", "f", "v") == b"_\r\n"
    assert call_raw(c, "XRANGE", "s", "-", "+") == b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert call_raw(c, "XRANGE", "s", "-", "+", "COUNT", "0") == b"_\r\n"
    assert call_raw(c, "XLEN", "s") == b":1\r\n"


def test_resp3_xinfo_stream_is_a_map(server):
    c = resp3(server)
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    raw = call_raw(c, "XINFO", "STREAM", "s")
    assert raw.startswith(b"%10\r\n$6\r\nlength\r\n:1\r\n$15\r\nradix-tree-keys\r\n:")
    assert raw.endswith(
        b"$17\r\nlast-generated-id\r\n$3\r\n1-0\r\n$20\r\nmax-deleted-entry-id\r\n$3\r\n0-0\r\n"
        b"$13\r\nentries-added\r\n:1\r\n$23\r\nrecorded-first-entry-id\r\n$3\r\n1-0\r\n$6\r\ngroups\r\n:1\r\n"
        b"$11\r\nfirst-entry\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        b"$10\r\nlast-entry\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
    c.call("XDEL", "s", "1-0")
    raw = call_raw(c, "XINFO", "STREAM", "s")
    assert raw.endswith(b"$11\r\nfirst-entry\r\n_\r\n$10\r\nlast-entry\r\n_\r\n")


def test_resp3_xinfo_groups_and_consumers_are_arrays_of_maps(server):
    c = resp3(server)
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "$")
    assert call_raw(c, "XINFO", "GROUPS", "s") == (
        b"*1\r\n%6\r\n$4\r\nname\r\n$1\r\ng\r\n$9\r\nconsumers\r\n:0\r\n$7\r\npending\r\n:0\r\n"
        b"$17\r\nlast-delivered-id\r\n$3\r\n1-0\r\n$12\r\nentries-read\r\n_\r\n$3\r\nlag\r\n:0\r\n")
    c.call("XGROUP", "CREATECONSUMER", "s", "g", "bob")
    raw = call_raw(c, "XINFO", "CONSUMERS", "s", "g")
    assert raw.startswith(b"*1\r\n%3\r\n$4\r\nname\r\n$3\r\nbob\r\n$7\r\npending\r\n:0\r\n$4\r\nidle\r\n:")


def test_resp3_xinfo_stream_full_nesting(server):
    c = resp3(server)
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    v = c.call("XINFO", "STREAM", "s", "FULL")
    assert isinstance(v, dict) and list(v) == [
        b"length", b"radix-tree-keys", b"radix-tree-nodes", b"last-generated-id", b"max-deleted-entry-id",
        b"entries-added", b"recorded-first-entry-id", b"entries", b"groups"]
    (g,) = v[b"groups"]
    assert isinstance(g, dict) and list(g) == [b"name", b"last-delivered-id", b"entries-read", b"lag",
                                               b"pel-count", b"pending", b"consumers"]
    (cons,) = g[b"consumers"]
    assert isinstance(cons, dict) and list(cons) == [b"name", b"seen-time", b"pel-count", b"pending"]
    assert g[b"pending"][0][:2] == [b"1-0", b"a"] and g[b"pending"][0][3] == 1


def test_resp3_pending_and_claim_shapes_stay_arrays(server):
    c = resp3(server)
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert call_raw(c, "XPENDING", "s", "g") == b"*4\r\n:1\r\n$3\r\n1-0\r\n$3\r\n1-0\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert call_raw(c, "XAUTOCLAIM", "s", "g", "b", "0", "0", "JUSTID") == b"*3\r\n$3\r\n0-0\r\n*1\r\n$3\r\n1-0\r\n*0\r\n"
    assert call_raw(c, "XCLAIM", "s", "g", "a", "0", "1-0", "JUSTID") == b"*1\r\n$3\r\n1-0\r\n"
    c.call("XACK", "s", "g", "1-0")
    assert call_raw(c, "XPENDING", "s", "g") == b"*4\r\n:0\r\n_\r\n_\r\n_\r\n"


def test_resp2_and_resp3_clients_side_by_side(server):
    c2 = server.raw()
    c3 = resp3(server)
    c2.call("XADD", "s", "1-0", "f", "v")
    assert call_raw(c2, "XREAD", "STREAMS", "s", "0") == b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert call_raw(c3, "XREAD", "STREAMS", "s", "0") == b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    assert c2.call("XREAD", "STREAMS", "s", "$") is None
    assert isinstance(c2.call("XINFO", "STREAM", "s"), list)
    assert isinstance(c3.call("XINFO", "STREAM", "s"), dict)
    assert c3.call("XADD", "s", "0-1", "f", "v") == Error(
        b"ERR The ID specified in XADD is equal or smaller than the target stream top item")
