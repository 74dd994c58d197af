"""Streams, the data commands: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM,
XINFO STREAM [FULL], with Redis 7.0's exact reply bytes and error texts.

These tests define the semantics: they pass against redis-server 7.0.15
(LUAHUB_TARGET=redis) and the hub must pass them unchanged. Exact bytes come
from the raw client (srv.raw()); redis-py is used where only values matter.
Approximate trimming (~) is asserted only through its contract (never trims
more than = would, never below the threshold), since Redis's result depends on
its radix-tree node layout.
"""
import time

import pytest

from conftest import Error, flat_to_dict

ERR_SMALLER = b"ERR The ID specified in XADD is equal or smaller than the target stream top item"
ERR_ZERO = b"ERR The ID specified in XADD must be greater than 0-0"
ERR_BADID = b"ERR Invalid stream ID specified as stream command argument"
ERR_WRONGTYPE = b"WRONGTYPE Operation against a key holding the wrong kind of value"
ERR_SYNTAX = b"ERR syntax error"
ERR_NOTINT = b"ERR value is not an integer or out of range"
MAXID = "18446744073709551615-18446744073709551615"


def arity(cmd):
    return b"ERR wrong number of arguments for '%s' command" % cmd.encode()


def entry(eid, *fv):
    """The RESP2 bytes of one entry: [id, [f1, v1, ...]]."""
    out = b"*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(eid), eid.encode(), len(fv))
    for x in fv:
        out += b"$%d\r\n%s\r\n" % (len(x), x.encode())
    return out


def entries(*items):
    return b"*%d\r\n" % len(items) + b"".join(items)


def call_raw(c, *args):
    c.send_command(*args)
    return c.read_reply_raw()[1]


def ids(reply):
    return [e[0] for e in reply]


def fill(c, key, n, start=1):
    """Adds entries start-0 .. start+n-1-0 with field f = the index."""
    for i in range(start, start + n):
        assert c.call("XADD", key, "%d-0" % i, "f", str(i)) == b"%d-0" % i


# --------------------------------------------------------------------------
# XADD ids
# --------------------------------------------------------------------------

def test_xadd_auto_id_uses_the_clock(server):
    c = server.raw()
    before = int(time.time() * 1000)
    a = c.call("XADD", "s", "*", "f", "v")
    b = c.call("XADD", "s", "*", "f", "v")
    after = int(time.time() * 1000)
    (ams, aseq), (bms, bseq) = [tuple(int(x) for x in i.split(b"-")) for i in (a, b)]
    assert before - 1000 <= ams <= after + 1000
    assert (bms, bseq) > (ams, aseq)
    assert bms > ams or bseq == aseq + 1


def test_xadd_explicit_ids_and_reply_bytes(server):
    c = server.raw()
    assert call_raw(c, "XADD", "s", "1-1", "a", "1") == b"$3\r\n1-1\r\n"
    assert call_raw(c, "XADD", "s", "1-2", "a", "1") == b"$3\r\n1-2\r\n"
    assert call_raw(c, "XADD", "s", "2", "a", "1") == b"$3\r\n2-0\r\n"  # a bare ms means ms-0
    assert c.call("XLEN", "s") == 3


def test_xadd_partial_ids(server):
    c = server.raw()
    assert c.call("XADD", "s", "5-*", "f", "v") == b"5-0"
    assert c.call("XADD", "s", "5-*", "f", "v") == b"5-1"
    assert c.call("XADD", "s", "6-*", "f", "v") == b"6-0"
    assert c.call("XADD", "s", "5-*", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "z", "0-*", "f", "v") == b"0-1"  # 0-0 is never a valid id


def test_xadd_auto_id_after_a_future_id_increments_the_sequence(server):
    c = server.raw()
    future = int(time.time() * 1000) + 10 ** 9
    assert c.call("XADD", "s", "%d-5" % future, "f", "v") == b"%d-5" % future
    assert c.call("XADD", "s", "*", "f", "v") == b"%d-6" % future


def test_xadd_id_errors(server):
    c = server.raw()
    assert c.call("XADD", "s", "0-0", "f", "v") == Error(ERR_ZERO)
    assert c.call("EXISTS", "s") == 0
    assert c.call("XADD", "s", "5-5", "f", "v") == b"5-5"
    assert c.call("XADD", "s", "5-5", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "s", "5-4", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "s", "4", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "s", "4-*", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "s", "0-0", "f", "v") == Error(ERR_ZERO)
    for bad in ("abc", "1-x", "7-", "-7", "1-2-3", "18446744073709551616", "9-18446744073709551616", "*-1"):
        assert c.call("XADD", "s", bad, "f", "v") == Error(ERR_BADID), bad
    assert c.call("XLEN", "s") == 1


def test_xadd_exhausted_id_space(server):
    c = server.raw()
    assert c.call("XADD", "s", MAXID, "f", "v") == MAXID.encode()
    assert c.call("XADD", "s", "*", "f", "v") == Error(
        b"ERR The stream has exhausted the last possible ID, unable to add more items")
    assert c.call("XADD", "s", "18446744073709551615-*", "f", "v") == Error(
        b"ERR The stream has exhausted the last possible ID, unable to add more items")


def test_xadd_arity_and_field_pairs(server):
    c = server.raw()
    for args in (["s"], ["s", "*"], ["s", "*", "f"], ["s", "*", "a", "1", "b"], ["s", "MAXLEN", "5"],
                 ["s", "NOMKSTREAM"], ["s", "NOMKSTREAM", "*", "f"]):
        assert c.call("XADD", *args) == Error(arity("xadd")), args
    assert c.call("EXISTS", "s") == 0


def test_xadd_keeps_field_order_and_duplicates(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "b", "2", "a", "1", "b", "3", "", "")
    assert call_raw(c, "XRANGE", "s", "-", "+") == entries(entry("1-0", "b", "2", "a", "1", "b", "3", "", ""))


def test_xadd_binary_safe_fields(server):
    r = server.client()
    blob = bytes(range(256)) * 4
    eid = r.xadd("s", {b"\x00k\r\n": blob})
    assert r.xrange("s") == [(eid, {b"\x00k\r\n": blob})]


def test_xadd_nomkstream(server):
    c = server.raw()
    assert call_raw(c, "XADD", "s", "NOMKSTREAM", "*", "f", "v") == b"$-1\r\n"
    assert c.call("EXISTS", "s") == 0
    assert c.call("XADD", "s", "1-0", "f", "v") == b"1-0"
    assert c.call("XADD", "s", "nomkstream", "2-0", "f", "v") == b"2-0"
    assert c.call("XLEN", "s") == 2


def test_xadd_wrong_type(server):
    c = server.raw()
    # The keyspace of the hub holds streams only; this test works on the
    # stream commands' side: a key that is not a stream is created by Redis
    # with SET, so only the Redis run can make one. The hub's keyspace has
    # no other type, hence the skip there.
    if c.call("SET", "k", "v") != b"OK":
        pytest.skip("the keyspace holds streams only (no SET)")
    for args in (("XADD", "k", "*", "f", "v"), ("XLEN", "k"), ("XRANGE", "k", "-", "+"),
                 ("XREVRANGE", "k", "+", "-"), ("XDEL", "k", "1-0"), ("XTRIM", "k", "MAXLEN", "0"),
                 ("XINFO", "STREAM", "k"), ("XREAD", "STREAMS", "k", "0")):
        assert c.call(*args) == Error(ERR_WRONGTYPE), args


# --------------------------------------------------------------------------
# XADD trimming: MAXLEN / MINID, = and ~, LIMIT
# --------------------------------------------------------------------------

def test_xadd_maxlen_exact(server):
    c = server.raw()
    fill(c, "s", 5)
    assert c.call("XADD", "s", "MAXLEN", "3", "6-0", "f", "6") == b"6-0"
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"4-0", b"5-0", b"6-0"]
    assert c.call("XADD", "s", "MAXLEN", "=", "2", "7-0", "f", "7") == b"7-0"
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"6-0", b"7-0"]
    assert c.call("XADD", "s", "maxlen", "0", "8-0", "f", "8") == b"8-0"
    assert c.call("XLEN", "s") == 0  # the new entry is trimmed at once
    info = flat_to_dict(c.call("XINFO", "STREAM", "s"))
    assert info[b"last-generated-id"] == b"8-0" and info[b"entries-added"] == 8


def test_xadd_minid_exact(server):
    c = server.raw()
    fill(c, "s", 5)
    assert c.call("XADD", "s", "MINID", "3", "6-0", "f", "6") == b"6-0"
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"3-0", b"4-0", b"5-0", b"6-0"]
    assert c.call("XADD", "s", "MINID", "=", "5-0", "7-0", "f", "7") == b"7-0"
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"5-0", b"6-0", b"7-0"]


def test_xadd_approximate_trim_contract(server):
    c = server.raw()
    fill(c, "s", 300)
    c.call("XADD", "s", "MAXLEN", "~", "10", "301-0", "f", "v")
    n = c.call("XLEN", "s")
    assert 10 <= n <= 301
    c.call("XADD", "s", "MINID", "~", "250", "302-0", "f", "v")
    first = c.call("XRANGE", "s", "-", "+", "COUNT", "1")[0][0]
    assert int(first.split(b"-")[0]) <= 250
    assert c.call("XLEN", "s") >= 302 - 250 + 1
    assert c.call("XADD", "s", "MAXLEN", "~", "5", "LIMIT", "10", "303-0", "f", "v") == b"303-0"
    assert c.call("XADD", "s", "MINID", "~", "5", "LIMIT", "0", "304-0", "f", "v") == b"304-0"


def test_xadd_trim_option_errors(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "f", "v")
    cases = [
        (["MAXLEN", "-1"], b"ERR The MAXLEN argument must be >= 0."),
        (["MAXLEN", "abc"], ERR_NOTINT),
        (["MAXLEN", "5", "LIMIT", "10"], b"ERR syntax error, LIMIT cannot be used without the special ~ option"),
        (["MAXLEN", "=", "5", "LIMIT", "10"], b"ERR syntax error, LIMIT cannot be used without the special ~ option"),
        (["MAXLEN", "~", "5", "LIMIT", "-1"], b"ERR The LIMIT argument must be >= 0."),
        (["MAXLEN", "~", "5", "LIMIT", "abc"], ERR_NOTINT),
        (["MINID", "abc"], ERR_BADID),
        (["MINID", "-1"], ERR_BADID),
        (["MINID", "5", "MAXLEN", "3"], b"ERR syntax error, MAXLEN and MINID options at the same time are not compatible"),
        (["MAXLEN", "1", "MINID", "0"], b"ERR syntax error, MAXLEN and MINID options at the same time are not compatible"),
    ]
    for opts, err in cases:
        assert c.call("XADD", "s", *opts, "*", "f", "v") == Error(err), opts
    assert c.call("XLEN", "s") == 1


# --------------------------------------------------------------------------
# XLEN, XRANGE, XREVRANGE
# --------------------------------------------------------------------------

def test_xlen(server):
    c = server.raw()
    assert call_raw(c, "XLEN", "nokey") == b":0\r\n"
    fill(c, "s", 4)
    assert call_raw(c, "XLEN", "s") == b":4\r\n"
    assert c.call("XLEN", "s", "x") == Error(arity("xlen"))
    assert c.call("XLEN") == Error(arity("xlen"))


def test_xrange_reply_bytes(server):
    c = server.raw()
    c.call("XADD", "s", "1-1", "a", "1")
    c.call("XADD", "s", "2-1", "a", "1", "b", "2")
    assert call_raw(c, "XRANGE", "s", "-", "+") == entries(entry("1-1", "a", "1"), entry("2-1", "a", "1", "b", "2"))
    assert call_raw(c, "XREVRANGE", "s", "+", "-") == entries(entry("2-1", "a", "1", "b", "2"), entry("1-1", "a", "1"))
    assert call_raw(c, "XRANGE", "nokey", "-", "+") == b"*0\r\n"
    assert call_raw(c, "XREVRANGE", "nokey", "+", "-") == b"*0\r\n"


def test_xrange_bounds_and_count(server):
    c = server.raw()
    fill(c, "s", 4)
    c.call("XADD", "s", "4-1", "f", "4b")
    assert ids(c.call("XRANGE", "s", "-", "+", "COUNT", "2")) == [b"1-0", b"2-0"]
    assert ids(c.call("XRANGE", "s", "2", "3")) == [b"2-0", b"3-0"]       # ms only: whole ms
    assert ids(c.call("XRANGE", "s", "4", "4")) == [b"4-0", b"4-1"]
    assert ids(c.call("XRANGE", "s", "2", "3-0")) == [b"2-0", b"3-0"]
    assert ids(c.call("XRANGE", "s", "2-1", "3-0")) == [b"3-0"]
    assert ids(c.call("XRANGE", "s", "4-1", "+")) == [b"4-1"]
    assert ids(c.call("XRANGE", "s", "5", "+")) == []
    assert ids(c.call("XRANGE", "s", "3", "2")) == []
    assert ids(c.call("XREVRANGE", "s", "+", "-", "COUNT", "2")) == [b"4-1", b"4-0"]
    assert ids(c.call("XREVRANGE", "s", "3", "2")) == [b"3-0", b"2-0"]
    assert ids(c.call("XREVRANGE", "s", "-", "+")) == []


def test_xrange_exclusive_bounds(server):
    c = server.raw()
    fill(c, "s", 4)
    assert ids(c.call("XRANGE", "s", "(1-0", "(4-0")) == [b"2-0", b"3-0"]
    assert ids(c.call("XRANGE", "s", "(1", "+")) == [b"2-0", b"3-0", b"4-0"]  # (1 is after 1-0
    # an end of bare ms means ms-18446744073709551615, so "(4" still includes 4-0
    assert ids(c.call("XREVRANGE", "s", "(4", "-")) == [b"4-0", b"3-0", b"2-0", b"1-0"]
    assert ids(c.call("XREVRANGE", "s", "(4-0", "-")) == [b"3-0", b"2-0", b"1-0"]
    assert ids(c.call("XREVRANGE", "s", "(4-0", "(1-0")) == [b"3-0", b"2-0"]
    assert ids(c.call("XRANGE", "s", "(2-0", "(2-1")) == []
    assert c.call("XRANGE", "s", "(-", "+") == Error(ERR_BADID)
    assert c.call("XRANGE", "s", "-", "(+") == Error(ERR_BADID)
    assert c.call("XRANGE", "s", "(" + MAXID, "+") == Error(b"ERR invalid start ID for the interval")
    assert c.call("XRANGE", "s", "-", "(0-0") == Error(b"ERR invalid end ID for the interval")


def test_xrange_count_zero_or_negative_is_a_null_array(server):
    # Redis 7.0 answers a null array (RESP2 *-1) for COUNT <= 0.
    c = server.raw()
    fill(c, "s", 2)
    assert call_raw(c, "XRANGE", "s", "-", "+", "COUNT", "0") == b"*-1\r\n"
    assert call_raw(c, "XRANGE", "s", "-", "+", "COUNT", "-1") == b"*-1\r\n"
    assert call_raw(c, "XREVRANGE", "s", "+", "-", "COUNT", "0") == b"*-1\r\n"


def test_xrange_errors(server):
    c = server.raw()
    fill(c, "s", 2)
    assert c.call("XRANGE", "s", "abc", "+") == Error(ERR_BADID)
    assert c.call("XRANGE", "s", "-", "1-x") == Error(ERR_BADID)
    assert c.call("XRANGE", "s", "-", "+", "COUNT") == Error(ERR_SYNTAX)
    assert c.call("XRANGE", "s", "-", "+", "FOO", "1") == Error(ERR_SYNTAX)
    assert c.call("XRANGE", "s", "-", "+", "COUNT", "abc") == Error(ERR_NOTINT)
    assert c.call("XRANGE", "s", "-") == Error(arity("xrange"))
    assert c.call("XREVRANGE", "s", "+") == Error(arity("xrevrange"))


# --------------------------------------------------------------------------
# XDEL, XTRIM
# --------------------------------------------------------------------------

def test_xdel(server):
    c = server.raw()
    fill(c, "s", 4)
    assert call_raw(c, "XDEL", "s", "2-0", "99-0", "2-0") == b":1\r\n"
    assert c.call("XDEL", "s", "2-0") == 0
    assert c.call("XDEL", "s", "1-0", "3-0") == 2
    assert c.call("XDEL", "nokey", "1-0") == 0
    assert c.call("XDEL", "s", "abc") == Error(ERR_BADID)
    assert c.call("XDEL", "s") == Error(arity("xdel"))
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"4-0"]
    assert c.call("XDEL", "s", "4-0") == 1
    assert c.call("EXISTS", "s") == 1  # an emptied stream stays
    assert c.call("XLEN", "s") == 0


def test_xdel_in_the_middle_keeps_order(server):
    r = server.client()
    for i in range(1, 11):
        r.xadd("s", {"i": i}, id="%d-0" % i)
    assert r.xdel("s", "3-0", "5-0", "7-0") == 3
    assert [e[0] for e in r.xrange("s")] == [b"%d-0" % i for i in (1, 2, 4, 6, 8, 9, 10)]
    assert [e[0] for e in r.xrevrange("s", count=2)] == [b"10-0", b"9-0"]


def test_xtrim(server):
    c = server.raw()
    fill(c, "s", 6)
    assert call_raw(c, "XTRIM", "s", "MAXLEN", "4") == b":2\r\n"
    assert c.call("XTRIM", "s", "MAXLEN", "=", "4") == 0
    assert c.call("XTRIM", "s", "MINID", "5") == 2
    assert ids(c.call("XRANGE", "s", "-", "+")) == [b"5-0", b"6-0"]
    assert c.call("XTRIM", "s", "MINID", "0") == 0
    assert c.call("XTRIM", "nokey", "MAXLEN", "0") == 0
    assert c.call("EXISTS", "nokey") == 0
    assert c.call("XTRIM", "s", "MAXLEN", "0") == 2
    assert c.call("EXISTS", "s") == 1 and c.call("XLEN", "s") == 0


def test_xtrim_approximate_contract(server):
    c = server.raw()
    fill(c, "s", 300)
    n = c.call("XTRIM", "s", "MAXLEN", "~", "10")
    assert 0 <= n <= 290
    assert c.call("XLEN", "s") == 300 - n
    n2 = c.call("XTRIM", "s", "MAXLEN", "~", "10", "LIMIT", "1")
    assert 0 <= n2 <= 290 - n
    assert c.call("XLEN", "s") >= 10


def test_xtrim_errors(server):
    c = server.raw()
    fill(c, "s", 2)
    assert c.call("XTRIM", "s") == Error(arity("xtrim"))
    assert c.call("XTRIM", "s", "MAXLEN") == Error(arity("xtrim"))
    assert c.call("XTRIM", "s", "FOO", "1") == Error(ERR_SYNTAX)
    assert c.call("XTRIM", "s", "MAXLEN", "1", "extra") == Error(ERR_SYNTAX)
    assert c.call("XTRIM", "s", "MAXLEN", "-1") == Error(b"ERR The MAXLEN argument must be >= 0.")
    assert c.call("XTRIM", "s", "MAXLEN", "1", "LIMIT", "5") == Error(
        b"ERR syntax error, LIMIT cannot be used without the special ~ option")
    assert c.call("XTRIM", "s", "MINID", "x") == Error(ERR_BADID)
    assert c.call("XLEN", "s") == 2


# --------------------------------------------------------------------------
# XINFO STREAM [FULL]
# --------------------------------------------------------------------------

STREAM_FIELDS = [b"length", b"radix-tree-keys", b"radix-tree-nodes", b"last-generated-id",
                 b"max-deleted-entry-id", b"entries-added", b"recorded-first-entry-id", b"groups",
                 b"first-entry", b"last-entry"]


def test_xinfo_stream_fields(server):
    c = server.raw()
    c.call("XADD", "s", "1-1", "a", "1")
    c.call("XADD", "s", "2-1", "a", "1", "b", "2")
    c.call("XADD", "s", "3-1", "a", "3")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    reply = c.call("XINFO", "STREAM", "s")
    assert reply[0::2] == STREAM_FIELDS
    info = flat_to_dict(reply)
    assert info[b"length"] == 3
    assert isinstance(info[b"radix-tree-keys"], int) and isinstance(info[b"radix-tree-nodes"], int)
    assert info[b"last-generated-id"] == b"3-1"
    assert info[b"max-deleted-entry-id"] == b"0-0"
    assert info[b"entries-added"] == 3
    assert info[b"recorded-first-entry-id"] == b"1-1"
    assert info[b"groups"] == 1
    assert info[b"first-entry"] == [b"1-1", [b"a", b"1"]]
    assert info[b"last-entry"] == [b"3-1", [b"a", b"3"]]


def test_xinfo_stream_entries_added_and_max_deleted_id(server):
    c = server.raw()
    fill(c, "s", 4)
    c.call("XDEL", "s", "2-0")
    c.call("XDEL", "s", "1-0")
    info = flat_to_dict(c.call("XINFO", "STREAM", "s"))
    assert info[b"length"] == 2
    assert info[b"entries-added"] == 4
    assert info[b"max-deleted-entry-id"] == b"2-0"   # the largest id XDEL removed
    assert info[b"recorded-first-entry-id"] == b"3-0"
    # trimming does not move max-deleted-entry-id (Redis 7.0)
    c.call("XTRIM", "s", "MAXLEN", "0")
    info = flat_to_dict(c.call("XINFO", "STREAM", "s"))
    assert info[b"length"] == 0
    assert info[b"entries-added"] == 4
    assert info[b"last-generated-id"] == b"4-0"
    assert info[b"max-deleted-entry-id"] == b"2-0"
    assert info[b"recorded-first-entry-id"] == b"0-0"
    assert info[b"first-entry"] is None and info[b"last-entry"] is None
    # the id space does not restart after the stream was emptied
    assert c.call("XADD", "s", "3-0", "f", "v") == Error(ERR_SMALLER)
    assert c.call("XADD", "s", "5-0", "f", "v") == b"5-0"
    assert flat_to_dict(c.call("XINFO", "STREAM", "s"))[b"entries-added"] == 5


def test_xinfo_stream_empty_reply_bytes_end(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    raw = call_raw(c, "XINFO", "STREAM", "s")
    assert raw.startswith(b"*20\r\n$6\r\nlength\r\n:0\r\n")
    assert raw.endswith(b"$6\r\ngroups\r\n:1\r\n$11\r\nfirst-entry\r\n$-1\r\n$10\r\nlast-entry\r\n$-1\r\n")


def test_xinfo_stream_full(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "alice", "COUNT", "2", "STREAMS", "s", ">")
    c.call("XGROUP", "CREATECONSUMER", "s", "g", "bob")
    reply = c.call("XINFO", "STREAM", "s", "FULL")
    assert reply[0::2] == [b"length", b"radix-tree-keys", b"radix-tree-nodes", b"last-generated-id",
                           b"max-deleted-entry-id", b"entries-added", b"recorded-first-entry-id",
                           b"entries", b"groups"]
    info = flat_to_dict(reply)
    assert info[b"length"] == 3
    assert info[b"entries"] == [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]], [b"3-0", [b"f", b"3"]]]
    (group,) = info[b"groups"]
    assert group[0::2] == [b"name", b"last-delivered-id", b"entries-read", b"lag", b"pel-count",
                           b"pending", b"consumers"]
    g = flat_to_dict(group)
    assert g[b"name"] == b"g" and g[b"last-delivered-id"] == b"2-0"
    assert g[b"entries-read"] == 2 and g[b"lag"] == 1 and g[b"pel-count"] == 2
    assert [p[0:2] for p in g[b"pending"]] == [[b"1-0", b"alice"], [b"2-0", b"alice"]]
    assert all(isinstance(p[2], int) and p[2] > 0 and p[3] == 1 for p in g[b"pending"])
    cons = [flat_to_dict(x) for x in g[b"consumers"]]
    assert [x[0::2] for x in g[b"consumers"]] == [[b"name", b"seen-time", b"pel-count", b"pending"]] * 2
    assert [x[b"name"] for x in cons] == [b"alice", b"bob"]
    assert [x[b"pel-count"] for x in cons] == [2, 0]
    assert [p[0] for p in cons[0][b"pending"]] == [b"1-0", b"2-0"]
    assert all(len(p) == 3 and p[2] == 1 for p in cons[0][b"pending"])
    assert cons[1][b"pending"] == []
    # delivery times in the group PEL equal the consumer's PEL ones
    assert [p[2] for p in g[b"pending"]] == [p[1] for p in cons[0][b"pending"]]


def test_xinfo_stream_full_count(server):
    c = server.raw()
    fill(c, "s", 5)
    info = flat_to_dict(c.call("XINFO", "STREAM", "s", "FULL", "COUNT", "2"))
    assert ids(info[b"entries"]) == [b"1-0", b"2-0"]
    info = flat_to_dict(c.call("XINFO", "STREAM", "s", "FULL", "COUNT", "0"))  # 0: everything
    assert len(info[b"entries"]) == 5
    assert info[b"groups"] == []
    assert c.call("XINFO", "STREAM", "s", "FULL", "COUNT", "abc") == Error(ERR_NOTINT)


def test_xinfo_errors(server):
    c = server.raw()
    fill(c, "s", 1)
    assert c.call("XINFO", "STREAM", "nokey") == Error(b"ERR no such key")
    assert c.call("XINFO", "GROUPS", "nokey") == Error(b"ERR no such key")
    # the subcommand is echoed as the client spelled it
    assert c.call("XINFO", "stream", "s", "foo") == Error(
        b"ERR unknown subcommand or wrong number of arguments for 'stream'. Try XINFO HELP.")
    assert c.call("XINFO", "STREAM", "s", "foo") == Error(
        b"ERR unknown subcommand or wrong number of arguments for 'STREAM'. Try XINFO HELP.")
    assert c.call("XINFO", "foo", "s") == Error(b"ERR unknown subcommand 'foo'. Try XINFO HELP.")
    assert c.call("XINFO", "CONSUMERS", "s") == Error(arity("xinfo|consumers"))
    assert c.call("XINFO") == Error(arity("xinfo"))
