"""Streams in the keyspace: DEL, UNLINK, EXISTS, TYPE, KEYS, SCAN on stream
keys, with Redis 7.0's replies and errors.

These tests define the semantics: they pass against redis-server 7.0.15
(LUAHUB_TARGET=redis) and the hub must pass them unchanged. SCAN's cursor
values are an implementation detail: only the contract is asserted (a full
iteration returns every key exactly once when nothing changes, and the cursor
"0" ends it).
"""
from conftest import Error


def arity(cmd):
    return Error(b"ERR wrong number of arguments for '%s' command" % cmd.encode())


def call_raw(c, *args):
    c.send_command(*args)
    return c.read_reply_raw()[1]


def add(c, *keys):
    for k in keys:
        c.call("XADD", k, "*", "f", "v")


def scan_all(c, *opts):
    """Runs a full SCAN; returns (every key in reply order, number of calls)."""
    cursor, keys, calls = b"0", [], 0
    while True:
        reply = c.call("SCAN", cursor, *opts)
        assert isinstance(reply, list) and len(reply) == 2, reply
        cursor, batch = reply
        assert isinstance(cursor, bytes) and cursor.isdigit()
        keys.extend(batch)
        calls += 1
        assert calls < 10000, "SCAN never returned cursor 0"
        if cursor == b"0":
            return keys, calls


def test_type_stream_and_none(server):
    c = server.raw()
    add(c, "s")
    assert call_raw(c, "TYPE", "s") == b"+stream\r\n"
    assert call_raw(c, "TYPE", "nokey") == b"+none\r\n"
    c.call("XGROUP", "CREATE", "e", "g", "$", "MKSTREAM")
    assert c.call("TYPE", "e") == b"stream"  # an empty stream is still a key
    assert c.call("TYPE") == arity("type")
    assert c.call("TYPE", "a", "b") == arity("type")


def test_exists_counts_repeats(server):
    c = server.raw()
    add(c, "a", "b")
    assert call_raw(c, "EXISTS", "a") == b":1\r\n"
    assert c.call("EXISTS", "nokey") == 0
    assert c.call("EXISTS", "a", "a", "b", "nokey", "a") == 4
    assert c.call("EXISTS") == arity("exists")


def test_del_and_unlink(server):
    c = server.raw()
    add(c, "a", "b", "c", "d")
    assert call_raw(c, "DEL", "a", "nokey", "a", "b") == b":2\r\n"
    assert c.call("EXISTS", "a", "b") == 0
    assert call_raw(c, "UNLINK", "c", "c", "nokey") == b":1\r\n"
    assert c.call("DEL", "nokey") == 0
    assert c.call("EXISTS", "d") == 1
    assert c.call("DEL") == arity("del")
    assert c.call("UNLINK") == arity("unlink")


def test_del_removes_groups_and_the_id_history(server):
    c = server.raw()
    c.call("XADD", "s", "5-0", "f", "v")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert c.call("DEL", "s") == 1
    assert c.call("TYPE", "s") == b"none"
    assert c.call("XLEN", "s") == 0
    assert c.call("XINFO", "GROUPS", "s") == Error(b"ERR no such key")
    assert c.call("XPENDING", "s", "g") == Error(b"NOGROUP No such key 's' or consumer group 'g'")
    # a new stream of the same name starts from scratch
    assert c.call("XADD", "s", "1-0", "f", "v") == b"1-0"
    info = c.call("XINFO", "STREAM", "s")
    assert info[info.index(b"entries-added") + 1] == 1
    assert info[info.index(b"groups") + 1] == 0


def test_empty_stream_stays_until_deleted(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "f", "v")
    c.call("XDEL", "s", "1-0")
    assert c.call("EXISTS", "s") == 1
    assert c.call("KEYS", "*") == [b"s"]
    assert c.call("UNLINK", "s") == 1
    assert c.call("KEYS", "*") == []


def test_keys_globs(server):
    c = server.raw()
    names = ["hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "h?llo", "a:1", "a:2", "a:10", "b"]
    add(c, *names)
    def keys(pat):
        return sorted(k.decode() for k in c.call("KEYS", pat))
    assert keys("*") == sorted(names)
    assert keys("h?llo") == ["h*llo", "h?llo", "hallo", "hello", "hxllo"]
    assert keys("h*llo") == sorted(["hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "h?llo"])
    assert keys("h[ae]llo") == ["hallo", "hello"]
    assert keys("h[^e]llo") == ["h*llo", "h?llo", "hallo", "hxllo"]
    assert keys("h[a-b]llo") == ["hallo"]
    assert keys("h\\*llo") == ["h*llo"]
    assert keys("h\\?llo") == ["h?llo"]
    assert keys("a:?") == ["a:1", "a:2"]
    assert keys("a:*") == ["a:1", "a:10", "a:2"]
    assert keys("b") == ["b"]
    assert keys("nomatch*") == []
    assert call_raw(c, "KEYS", "nomatch") == b"*0\r\n"
    assert c.call("KEYS") == arity("keys")
    assert c.call("KEYS", "a", "b") == arity("keys")


def test_scan_full_iteration_returns_every_key_once(server):
    c = server.raw()
    names = [b"key:%d" % i for i in range(250)]
    add(c, *names)
    keys, _ = scan_all(c)
    assert sorted(keys) == sorted(names)
    keys, calls = scan_all(c, "COUNT", "7")
    assert sorted(keys) == sorted(names)
    assert calls > 1


def test_scan_match(server):
    c = server.raw()
    odd = [b"odd:%d" % i for i in range(1, 100, 2)]
    even = [b"even:%d" % i for i in range(0, 100, 2)]
    add(c, *(odd + even))
    keys, _ = scan_all(c, "MATCH", "odd:*")
    assert sorted(keys) == sorted(odd)
    keys, _ = scan_all(c, "MATCH", "even:?", "COUNT", "5")
    assert sorted(keys) == sorted([b"even:%d" % i for i in range(0, 10, 2)])
    keys, _ = scan_all(c, "COUNT", "1000", "MATCH", "nothing*")
    assert keys == []


def test_scan_empty_keyspace(server):
    c = server.raw()
    assert call_raw(c, "SCAN", "0") == b"*2\r\n$1\r\n0\r\n*0\r\n"


def test_scan_errors(server):
    c = server.raw()
    add(c, "a")
    assert c.call("SCAN", "abc") == Error(b"ERR invalid cursor")
    assert c.call("SCAN", "18446744073709551616") == Error(b"ERR invalid cursor")
    assert c.call("SCAN", "0", "COUNT", "0") == Error(b"ERR syntax error")
    assert c.call("SCAN", "0", "COUNT", "abc") == Error(b"ERR value is not an integer or out of range")
    assert c.call("SCAN", "0", "MATCH") == Error(b"ERR syntax error")
    assert c.call("SCAN", "0", "FOO", "1") == Error(b"ERR syntax error")
    assert c.call("SCAN") == arity("scan")


def test_redis_py_scan_iter_and_keys(server):
    r = server.client()
    for i in range(40):
        r.xadd("s%d" % i, {"f": "v"})
    assert sorted(r.scan_iter(match="s1*", count=3)) == sorted([b"s1"] + [b"s1%d" % i for i in range(10)])
    assert len(r.keys()) == 40
    assert r.exists("s1", "s2", "nokey") == 2
    assert r.type("s1") == b"stream"
    assert r.delete("s1", "s2") == 2
    assert r.unlink("s3") == 1
    assert len(r.keys("*")) == 37
