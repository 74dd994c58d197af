"""Streams, consumer groups: XGROUP (CREATE/CREATECONSUMER/DELCONSUMER/DESTROY/
SETID), XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO GROUPS/CONSUMERS,
consumers joining and leaving, with Redis 7.0's exact replies and errors.

These tests define the semantics: they pass against redis-server 7.0.15
(LUAHUB_TARGET=redis) and the hub must pass them unchanged. Times (idle,
delivery time) are never asserted as exact values: only types, ordering, and
values that an explicit XCLAIM IDLE/TIME fixed far from "now".
"""
from conftest import Error, flat_to_dict

ERR_BADID = b"ERR Invalid stream ID specified as stream command argument"
ERR_NOKEY_XGROUP = (b"ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may "
                    b"want to use the MKSTREAM option to create an empty stream automatically.")
ERR_NOTINT = b"ERR value is not an integer or out of range"
ERR_SYNTAX = b"ERR syntax error"


def arity(cmd):
    return b"ERR wrong number of arguments for '%s' command" % cmd.encode()


def nogroup(key, group):
    return Error(b"NOGROUP No such key '%s' or consumer group '%s'" % (key.encode(), group.encode()))


def nogroup_xgroup(key, group):
    return Error(b"NOGROUP No such consumer group '%s' for key name '%s'" % (group.encode(), key.encode()))


def call_raw(c, *args):
    c.send_command(*args)
    return c.read_reply_raw()[1]


def fill(c, key, n, start=1):
    for i in range(start, start + n):
        assert c.call("XADD", key, "%d-0" % i, "f", str(i)) == b"%d-0" % i


def groups(c, key):
    return {g[b"name"]: g for g in (flat_to_dict(x) for x in c.call("XINFO", "GROUPS", key))}


def consumers(c, key, group):
    return [flat_to_dict(x) for x in c.call("XINFO", "CONSUMERS", key, group)]


def read_ids(reply):
    """[[key, [[id, fields], ...]], ...] -> {key: [id, ...]}"""
    return {k: [e[0] for e in es] for k, es in (reply or [])}


def pending_ext(c, key, group, *args):
    return [(p[0], p[1], p[3]) for p in c.call("XPENDING", key, group, *args)]


# --------------------------------------------------------------------------
# XGROUP CREATE / DESTROY / SETID
# --------------------------------------------------------------------------

def test_xgroup_create_and_errors(server):
    c = server.raw()
    assert c.call("XGROUP", "CREATE", "s", "g", "$") == Error(ERR_NOKEY_XGROUP)
    assert call_raw(c, "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM") == b"+OK\r\n"
    assert c.call("TYPE", "s") == b"stream" and c.call("XLEN", "s") == 0
    assert call_raw(c, "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM") == b"-BUSYGROUP Consumer Group name already exists\r\n"
    assert c.call("XGROUP", "CREATE", "s", "g2", "0", "ENTRIESREAD", "-5") == Error(
        b"ERR value for ENTRIESREAD must be positive or -1")
    assert c.call("XGROUP", "CREATE", "s", "g2", "0", "ENTRIESREAD", "abc") == Error(ERR_NOTINT)
    assert c.call("XGROUP", "CREATE", "s", "g2", "abc") == Error(ERR_BADID)
    assert c.call("XGROUP", "CREATE", "s", "g2", "$", "foo") == Error(
        b"ERR unknown subcommand or wrong number of arguments for 'CREATE'. Try XGROUP HELP.")
    assert c.call("xgroup", "create", "s", "g2", "$", "foo") == Error(
        b"ERR unknown subcommand or wrong number of arguments for 'create'. Try XGROUP HELP.")
    # a subcommand's arity error names it in lower case, whatever the spelling
    assert c.call("XGROUP", "CREATE", "s", "g2") == Error(arity("xgroup|create"))
    assert c.call("XGROUP", "CREATECONSUMER", "s", "g") == Error(arity("xgroup|createconsumer"))
    assert c.call("XGROUP", "DELCONSUMER", "s", "g") == Error(arity("xgroup|delconsumer"))
    assert c.call("XGROUP", "DESTROY", "s") == Error(arity("xgroup|destroy"))
    assert c.call("XGROUP", "SETID", "s", "g") == Error(arity("xgroup|setid"))
    assert c.call("XGROUP", "foo", "s") == Error(b"ERR unknown subcommand 'foo'. Try XGROUP HELP.")
    assert c.call("XGROUP") == Error(arity("xgroup"))
    assert list(groups(c, "s")) == [b"g"]


def test_xgroup_create_positions_and_lag(server):
    c = server.raw()
    fill(c, "s", 3)
    assert c.call("XGROUP", "CREATE", "s", "zero", "0") == b"OK"
    assert c.call("XGROUP", "CREATE", "s", "last", "$") == b"OK"
    assert c.call("XGROUP", "CREATE", "s", "mid", "2-0") == b"OK"
    assert c.call("XGROUP", "CREATE", "s", "er", "0", "ENTRIESREAD", "0") == b"OK"
    reply = c.call("XINFO", "GROUPS", "s")
    assert [x[0::2] for x in reply] == [[b"name", b"consumers", b"pending", b"last-delivered-id",
                                         b"entries-read", b"lag"]] * 4
    g = groups(c, "s")
    assert list(g) == [b"er", b"last", b"mid", b"zero"]  # sorted by name
    assert (g[b"zero"][b"last-delivered-id"], g[b"zero"][b"entries-read"], g[b"zero"][b"lag"]) == (b"0-0", None, 3)
    assert (g[b"last"][b"last-delivered-id"], g[b"last"][b"entries-read"], g[b"last"][b"lag"]) == (b"3-0", None, 0)
    assert (g[b"mid"][b"last-delivered-id"], g[b"mid"][b"entries-read"], g[b"mid"][b"lag"]) == (b"2-0", None, None)
    assert (g[b"er"][b"last-delivered-id"], g[b"er"][b"entries-read"], g[b"er"][b"lag"]) == (b"0-0", 0, 3)
    assert all(x[b"consumers"] == 0 and x[b"pending"] == 0 for x in g.values())


def test_xinfo_groups_raw_bytes(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    assert call_raw(c, "XINFO", "GROUPS", "s") == (
        b"*1\r\n*12\r\n$4\r\nname\r\n$1\r\ng\r\n$9\r\nconsumers\r\n:0\r\n$7\r\npending\r\n:0\r\n"
        b"$17\r\nlast-delivered-id\r\n$3\r\n0-0\r\n$12\r\nentries-read\r\n$-1\r\n$3\r\nlag\r\n:0\r\n")
    c.call("XGROUP", "DESTROY", "s", "g")
    assert call_raw(c, "XINFO", "GROUPS", "s") == b"*0\r\n"


def test_lag_follows_reads_and_deletions(server):
    c = server.raw()
    fill(c, "s", 4)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "COUNT", "1", "STREAMS", "s", ">")
    g = groups(c, "s")[b"g"]
    assert (g[b"entries-read"], g[b"lag"]) == (1, 3)
    c.call("XADD", "s", "5-0", "f", "5")
    assert groups(c, "s")[b"g"][b"lag"] == 4
    c.call("XDEL", "s", "3-0")  # a tombstone ahead of the group: lag unknown
    g = groups(c, "s")[b"g"]
    assert (g[b"entries-read"], g[b"lag"]) == (1, None)
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    g = groups(c, "s")[b"g"]
    assert (g[b"last-delivered-id"], g[b"entries-read"], g[b"lag"]) == (b"5-0", 5, 0)


def test_xgroup_destroy(server):
    c = server.raw()
    fill(c, "s", 2)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert call_raw(c, "XGROUP", "DESTROY", "s", "g") == b":1\r\n"
    assert c.call("XGROUP", "DESTROY", "s", "g") == 0
    assert c.call("XGROUP", "DESTROY", "nokey", "g") == Error(ERR_NOKEY_XGROUP)
    assert c.call("XPENDING", "s", "g") == nogroup("s", "g")
    assert c.call("XLEN", "s") == 2  # entries are untouched
    assert c.call("XGROUP", "CREATE", "s", "g", "0") == b"OK"  # the name is free again
    assert c.call("XPENDING", "s", "g")[0] == 0


def test_xgroup_setid(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "$")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">") is None
    assert call_raw(c, "XGROUP", "SETID", "s", "g", "0") == b"+OK\r\n"
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")) == {b"s": [b"1-0", b"2-0", b"3-0"]}
    assert c.call("XGROUP", "SETID", "s", "g", "1-0") == b"OK"
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "b", "STREAMS", "s", ">")) == {b"s": [b"2-0", b"3-0"]}
    assert c.call("XGROUP", "SETID", "s", "g", "$", "ENTRIESREAD", "3") == b"OK"
    g = groups(c, "s")[b"g"]
    assert (g[b"last-delivered-id"], g[b"entries-read"], g[b"lag"]) == (b"3-0", 3, 0)
    assert g[b"pending"] == 3  # SETID leaves the PEL alone (1-0 for a; 2-0, 3-0 moved to b)
    assert c.call("XGROUP", "SETID", "s", "nog", "$") == nogroup_xgroup("s", "nog")
    assert c.call("XGROUP", "SETID", "nokey", "g", "$") == Error(ERR_NOKEY_XGROUP)
    assert c.call("XGROUP", "SETID", "s", "g", "abc") == Error(ERR_BADID)


# --------------------------------------------------------------------------
# Consumers: CREATECONSUMER, DELCONSUMER, XINFO CONSUMERS
# --------------------------------------------------------------------------

def test_xgroup_createconsumer(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    assert call_raw(c, "XGROUP", "CREATECONSUMER", "s", "g", "bob") == b":1\r\n"
    assert c.call("XGROUP", "CREATECONSUMER", "s", "g", "bob") == 0
    assert c.call("XGROUP", "CREATECONSUMER", "s", "g", "alice") == 1
    assert c.call("XGROUP", "CREATECONSUMER", "s", "nog", "x") == nogroup_xgroup("s", "nog")
    assert c.call("XGROUP", "CREATECONSUMER", "nokey", "g", "x") == Error(ERR_NOKEY_XGROUP)
    cons = consumers(c, "s", "g")
    assert [x[b"name"] for x in cons] == [b"alice", b"bob"]  # sorted by name
    assert all(x[b"pending"] == 0 and isinstance(x[b"idle"], int) and x[b"idle"] >= 0 for x in cons)
    assert groups(c, "s")[b"g"][b"consumers"] == 2


def test_xinfo_consumers_fields(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "bob", "COUNT", "2", "STREAMS", "s", ">")
    c.call("XGROUP", "CREATECONSUMER", "s", "g", "carol")
    reply = c.call("XINFO", "CONSUMERS", "s", "g")
    assert [x[0::2] for x in reply] == [[b"name", b"pending", b"idle"]] * 2
    cons = consumers(c, "s", "g")
    assert [(x[b"name"], x[b"pending"]) for x in cons] == [(b"bob", 2), (b"carol", 0)]
    assert all(isinstance(x[b"idle"], int) and x[b"idle"] >= 0 for x in cons)
    assert c.call("XINFO", "CONSUMERS", "s", "nog") == nogroup_xgroup("s", "nog")
    assert c.call("XINFO", "CONSUMERS", "nokey", "g") == Error(b"ERR no such key")


def test_xgroup_delconsumer_returns_its_pending_count(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "alice", "COUNT", "1", "STREAMS", "s", ">")
    c.call("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")
    assert call_raw(c, "XGROUP", "DELCONSUMER", "s", "g", "bob") == b":2\r\n"
    assert c.call("XGROUP", "DELCONSUMER", "s", "g", "bob") == 0
    assert c.call("XGROUP", "DELCONSUMER", "s", "g", "nobody") == 0
    assert c.call("XGROUP", "DELCONSUMER", "s", "nog", "bob") == nogroup_xgroup("s", "nog")
    assert c.call("XGROUP", "DELCONSUMER", "nokey", "g", "bob") == Error(ERR_NOKEY_XGROUP)
    # bob's entries are gone from the group's PEL; they are not delivered again by >
    assert c.call("XPENDING", "s", "g") == [1, b"1-0", b"1-0", [[b"alice", b"1"]]]
    assert c.call("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">") is None
    assert [x[b"name"] for x in consumers(c, "s", "g")] == [b"alice"]


def test_consumers_joining_and_leaving(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    fill(c, "s", 6)
    got = {}
    for name in ("w1", "w2", "w3"):
        got[name] = read_ids(c.call("XREADGROUP", "GROUP", "g", name, "COUNT", "2", "STREAMS", "s", ">"))[b"s"]
    assert got == {"w1": [b"1-0", b"2-0"], "w2": [b"3-0", b"4-0"], "w3": [b"5-0", b"6-0"]}
    assert c.call("XACK", "s", "g", "1-0") == 1
    # w2 leaves with its two entries pending; w1 takes over the rest of a dead consumer w3
    assert c.call("XCLAIM", "s", "g", "w1", "0", "5-0", "6-0", "JUSTID") == [b"5-0", b"6-0"]
    assert c.call("XGROUP", "DELCONSUMER", "s", "g", "w3") == 0
    assert c.call("XGROUP", "DELCONSUMER", "s", "g", "w2") == 2
    fill(c, "s", 1, start=7)
    # a newcomer joins and gets only what is new
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "w4", "STREAMS", "s", ">")) == {b"s": [b"7-0"]}
    assert [(x[b"name"], x[b"pending"]) for x in consumers(c, "s", "g")] == [(b"w1", 3), (b"w4", 1)]
    assert c.call("XPENDING", "s", "g") == [4, b"2-0", b"7-0", [[b"w1", b"3"], [b"w4", b"1"]]]
    g = groups(c, "s")[b"g"]
    assert (g[b"consumers"], g[b"pending"], g[b"lag"]) == (2, 4, 0)


# --------------------------------------------------------------------------
# XREADGROUP
# --------------------------------------------------------------------------

def test_xreadgroup_new_entries_and_reply_bytes(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "bob", "COUNT", "1", "STREAMS", "s", ">") == (
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\n1\r\n")
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")) == {b"s": [b"2-0", b"3-0"]}
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">") == b"*-1\r\n"


def test_xreadgroup_history(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "bob", "COUNT", "2", "STREAMS", "s", ">")
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", "0")) == {b"s": [b"1-0", b"2-0"]}
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", "1-0")) == {b"s": [b"2-0"]}
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "bob", "COUNT", "1", "STREAMS", "s", "0")) == {b"s": [b"1-0"]}
    # an empty history is an empty list, not a null (and it creates the consumer)
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "carol", "STREAMS", "s", "0") == b"*1\r\n*2\r\n$1\r\ns\r\n*0\r\n"
    assert [x[b"name"] for x in consumers(c, "s", "g")] == [b"bob", b"carol"]
    # each history read counts as a delivery
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"bob", 3), (b"2-0", b"bob", 3)]
    # an acked entry leaves the history; a deleted one is reported with a null array as its body
    c.call("XACK", "s", "g", "1-0")
    c.call("XDEL", "s", "2-0")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", "0") == (
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*-1\r\n")


def test_xreadgroup_noack(server):
    c = server.raw()
    fill(c, "s", 2)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "a", "NOACK", "STREAMS", "s", ">")) == {b"s": [b"1-0", b"2-0"]}
    assert c.call("XPENDING", "s", "g") == [0, None, None, None]
    g = groups(c, "s")[b"g"]
    assert (g[b"last-delivered-id"], g[b"pending"], g[b"consumers"]) == (b"2-0", 0, 1)
    assert call_raw(c, "XPENDING", "s", "g") == b"*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n"


def test_xreadgroup_multiple_streams(server):
    c = server.raw()
    fill(c, "a", 2)
    fill(c, "b", 1, start=5)
    c.call("XGROUP", "CREATE", "a", "g", "0")
    c.call("XGROUP", "CREATE", "b", "g", "0")
    reply = c.call("XREADGROUP", "GROUP", "g", "x", "COUNT", "1", "STREAMS", "a", "b", ">", ">")
    assert [k for k, _ in reply] == [b"a", b"b"]
    assert read_ids(reply) == {b"a": [b"1-0"], b"b": [b"5-0"]}
    # only streams with something new appear
    assert read_ids(c.call("XREADGROUP", "GROUP", "g", "x", "STREAMS", "a", "b", ">", ">")) == {b"a": [b"2-0"]}
    # history and new entries mixed
    reply = c.call("XREADGROUP", "GROUP", "g", "x", "STREAMS", "a", "b", "0", ">")
    assert reply == [[b"a", [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]]]]]
    reply = c.call("XREADGROUP", "GROUP", "g", "x", "STREAMS", "b", "a", "0", ">")
    assert reply == [[b"b", [[b"5-0", [b"f", b"5"]]]]]


def test_xreadgroup_errors(server):
    c = server.raw()
    fill(c, "s", 1)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    assert c.call("XREADGROUP", "GROUP", "nog", "a", "STREAMS", "s", ">") == Error(
        b"NOGROUP No such key 's' or consumer group 'nog' in XREADGROUP with GROUP option")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "nokey", ">") == Error(
        b"NOGROUP No such key 'nokey' or consumer group 'g' in XREADGROUP with GROUP option")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s") == Error(arity("xreadgroup"))
    assert c.call("XREADGROUP", "GROUP", "g") == Error(arity("xreadgroup"))
    assert c.call("XREADGROUP", "STREAMS", "s", ">") == Error(arity("xreadgroup"))
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">", ">") == Error(
        b"ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", "$") == Error(
        b"ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of "
        b"this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would "
        b"just return an empty result set.")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", "abc") == Error(ERR_BADID)
    assert c.call("XREADGROUP", "GROUP", "g", "a", "FOO", "STREAMS", "s", ">") == Error(ERR_SYNTAX)
    assert c.call("XREADGROUP", "GROUP", "g", "a", "COUNT", "x", "STREAMS", "s", ">") == Error(ERR_NOTINT)
    assert c.call("XPENDING", "s", "g")[0] == 0  # nothing was delivered by the failed calls


# --------------------------------------------------------------------------
# XACK, XPENDING
# --------------------------------------------------------------------------

def test_xack_counts(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "a", "STREAMS", "s", ">")
    assert call_raw(c, "XACK", "s", "g", "1-0", "1-0", "2-0", "9-0") == b":2\r\n"
    assert c.call("XACK", "s", "g", "1-0") == 0
    assert c.call("XACK", "s", "nog", "3-0") == 0      # no group: 0, not an error
    assert c.call("XACK", "nokey", "g", "3-0") == 0
    assert c.call("XACK", "s", "g", "abc") == Error(ERR_BADID)
    assert c.call("XACK", "s", "g", "3-0", "abc") == Error(ERR_BADID)  # validated before acking anything
    assert c.call("XACK", "s", "g") == Error(arity("xack"))
    assert c.call("XPENDING", "s", "g") == [1, b"3-0", b"3-0", [[b"a", b"1"]]]
    assert [x[b"pending"] for x in consumers(c, "s", "g")] == [1]


def test_xpending_summary_bytes(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "bob", "COUNT", "2", "STREAMS", "s", ">")
    c.call("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    # consumer counts are bulk strings in the summary
    assert call_raw(c, "XPENDING", "s", "g") == (
        b"*4\r\n:3\r\n$3\r\n1-0\r\n$3\r\n3-0\r\n*2\r\n*2\r\n$5\r\nalice\r\n$1\r\n1\r\n*2\r\n$3\r\nbob\r\n$1\r\n2\r\n")


def test_xpending_extended(server):
    c = server.raw()
    fill(c, "s", 4)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "bob", "COUNT", "3", "STREAMS", "s", ">")
    c.call("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    rows = c.call("XPENDING", "s", "g", "-", "+", "10")
    assert [(r[0], r[1], r[3]) for r in rows] == [(b"1-0", b"bob", 1), (b"2-0", b"bob", 1),
                                                   (b"3-0", b"bob", 1), (b"4-0", b"alice", 1)]
    assert all(isinstance(r[2], int) and r[2] >= 0 for r in rows)
    assert pending_ext(c, "s", "g", "-", "+", "2") == [(b"1-0", b"bob", 1), (b"2-0", b"bob", 1)]
    assert pending_ext(c, "s", "g", "(1-0", "(4-0", "10") == [(b"2-0", b"bob", 1), (b"3-0", b"bob", 1)]
    assert pending_ext(c, "s", "g", "-", "+", "10", "alice") == [(b"4-0", b"alice", 1)]
    assert pending_ext(c, "s", "g", "-", "+", "10", "nobody") == []
    assert call_raw(c, "XPENDING", "s", "g", "5", "+", "10") == b"*0\r\n"
    assert pending_ext(c, "s", "g", "-", "+", "0") == []


def test_xpending_idle_filter(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")
    # 2-0's last delivery is set one hour back; the others were just delivered
    c.call("XCLAIM", "s", "g", "bob", "0", "2-0", "IDLE", "3600000", "JUSTID")
    assert pending_ext(c, "s", "g", "IDLE", "1800000", "-", "+", "10") == [(b"2-0", b"bob", 1)]
    assert pending_ext(c, "s", "g", "IDLE", "1800000", "-", "+", "10", "bob") == [(b"2-0", b"bob", 1)]
    assert pending_ext(c, "s", "g", "IDLE", "1800000", "-", "+", "10", "alice") == []
    assert len(c.call("XPENDING", "s", "g", "IDLE", "0", "-", "+", "10")) == 3
    rows = c.call("XPENDING", "s", "g", "-", "+", "10")
    assert rows[1][2] >= 3600000 and rows[0][2] < 1800000


def test_xpending_errors(server):
    c = server.raw()
    fill(c, "s", 1)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    assert c.call("XPENDING", "s", "nog") == nogroup("s", "nog")
    assert c.call("XPENDING", "nokey", "g") == nogroup("nokey", "g")
    assert c.call("XPENDING", "s", "g", "-", "+") == Error(ERR_SYNTAX)
    assert c.call("XPENDING", "s", "g", "-", "+", "abc") == Error(ERR_NOTINT)
    assert c.call("XPENDING", "s", "g", "IDLE", "abc", "-", "+", "10") == Error(ERR_NOTINT)
    assert c.call("XPENDING", "s", "g", "x", "+", "10") == Error(ERR_BADID)
    assert c.call("XPENDING", "s") == Error(arity("xpending"))


# --------------------------------------------------------------------------
# XCLAIM
# --------------------------------------------------------------------------

def setup_claim(c):
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")


def test_xclaim_moves_entries_and_counts_deliveries(server):
    c = server.raw()
    setup_claim(c)
    assert call_raw(c, "XCLAIM", "s", "g", "bob", "0", "1-0") == b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\n1\r\n"
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"bob", 2), (b"2-0", b"alice", 1), (b"3-0", b"alice", 1)]
    # JUSTID: ids only, the delivery count is not incremented
    assert call_raw(c, "XCLAIM", "s", "g", "bob", "0", "1-0", "2-0", "JUSTID") == b"*2\r\n$3\r\n1-0\r\n$3\r\n2-0\r\n"
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"bob", 2), (b"2-0", b"bob", 1), (b"3-0", b"alice", 1)]
    assert [(x[b"name"], x[b"pending"]) for x in consumers(c, "s", "g")] == [(b"alice", 1), (b"bob", 2)]


def test_xclaim_min_idle_time(server):
    c = server.raw()
    setup_claim(c)
    # just delivered: not idle for an hour, so not claimed
    assert c.call("XCLAIM", "s", "g", "bob", "3600000", "1-0") == []
    c.call("XCLAIM", "s", "g", "alice", "0", "1-0", "IDLE", "7200000", "JUSTID")
    assert c.call("XCLAIM", "s", "g", "bob", "3600000", "1-0", "2-0", "JUSTID") == [b"1-0"]
    # a negative min-idle-time counts as 0
    assert c.call("XCLAIM", "s", "g", "bob", "-5", "3-0", "JUSTID") == [b"3-0"]


def test_xclaim_idle_time_retrycount(server):
    c = server.raw()
    setup_claim(c)
    c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "RETRYCOUNT", "7", "IDLE", "5000")
    c.call("XCLAIM", "s", "g", "bob", "0", "2-0", "TIME", "1000")  # epoch + 1 s: idle for decades
    rows = c.call("XPENDING", "s", "g", "-", "+", "10")
    assert (rows[0][0], rows[0][1], rows[0][3]) == (b"1-0", b"bob", 7)
    assert 5000 <= rows[0][2] < 3600000
    assert (rows[1][0], rows[1][1], rows[1][3]) == (b"2-0", b"bob", 2)
    assert rows[1][2] > 10 ** 12


def test_xclaim_force_and_missing_entries(server):
    c = server.raw()
    fill(c, "s", 3)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "alice", "COUNT", "2", "STREAMS", "s", ">")
    # not pending: nothing without FORCE
    assert c.call("XCLAIM", "s", "g", "bob", "0", "3-0") == []
    # FORCE creates the pending entry if the entry exists in the stream
    assert c.call("XCLAIM", "s", "g", "bob", "0", "3-0", "FORCE") == [[b"3-0", [b"f", b"3"]]]
    assert c.call("XCLAIM", "s", "g", "bob", "0", "9-0", "FORCE") == []
    assert c.call("XCLAIM", "s", "g", "bob", "0", "9-0", "FORCE", "JUSTID") == []
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"alice", 1), (b"2-0", b"alice", 1), (b"3-0", b"bob", 2)]
    # a pending entry deleted from the stream is dropped from the PEL by XCLAIM
    c.call("XDEL", "s", "2-0")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "2-0") == []
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"alice", 1), (b"3-0", b"bob", 2)]


def test_xclaim_lastid(server):
    c = server.raw()
    setup_claim(c)
    c.call("XGROUP", "SETID", "s", "g", "1-0")
    c.call("XCLAIM", "s", "g", "bob", "0", "2-0", "LASTID", "3-0", "JUSTID")
    assert groups(c, "s")[b"g"][b"last-delivered-id"] == b"3-0"
    c.call("XCLAIM", "s", "g", "bob", "0", "2-0", "LASTID", "1-0", "JUSTID")  # never moves back
    assert groups(c, "s")[b"g"][b"last-delivered-id"] == b"3-0"


def test_xclaim_errors(server):
    c = server.raw()
    setup_claim(c)
    assert c.call("XCLAIM", "s", "g", "bob", "abc", "1-0") == Error(b"ERR Invalid min-idle-time argument for XCLAIM")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "abc") == Error(b"ERR Unrecognized XCLAIM option 'abc'")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "foo") == Error(b"ERR Unrecognized XCLAIM option 'foo'")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "IDLE", "abc") == Error(
        b"ERR Invalid IDLE option argument for XCLAIM")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "TIME", "abc") == Error(
        b"ERR Invalid TIME option argument for XCLAIM")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "RETRYCOUNT", "abc") == Error(
        b"ERR Invalid RETRYCOUNT option argument for XCLAIM")
    assert c.call("XCLAIM", "s", "g", "bob", "0", "1-0", "LASTID", "abc") == Error(ERR_BADID)
    assert c.call("XCLAIM", "s", "nog", "bob", "0", "1-0") == nogroup("s", "nog")
    assert c.call("XCLAIM", "nokey", "g", "bob", "0", "1-0") == nogroup("nokey", "g")
    assert c.call("XCLAIM", "s", "g", "bob", "0") == Error(arity("xclaim"))
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"alice", 1), (b"2-0", b"alice", 1), (b"3-0", b"alice", 1)]


# --------------------------------------------------------------------------
# XAUTOCLAIM
# --------------------------------------------------------------------------

def test_xautoclaim_with_deleted_ids(server):
    c = server.raw()
    setup_claim(c)
    c.call("XDEL", "s", "2-0")
    assert call_raw(c, "XAUTOCLAIM", "s", "g", "carol", "0", "0") == (
        b"*3\r\n$3\r\n0-0\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\n1\r\n"
        b"*2\r\n$3\r\n3-0\r\n*2\r\n$1\r\nf\r\n$1\r\n3\r\n*1\r\n$3\r\n2-0\r\n")
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"carol", 2), (b"3-0", b"carol", 2)]
    assert c.call("XAUTOCLAIM", "s", "g", "carol", "0", "0")[2] == []  # reported once


def test_xautoclaim_cursor_count_justid(server):
    c = server.raw()
    fill(c, "s", 5)
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "0", "COUNT", "2") == [
        b"3-0", [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]]], []]
    assert call_raw(c, "XAUTOCLAIM", "s", "g", "bob", "0", "3-0", "COUNT", "2", "JUSTID") == (
        b"*3\r\n$3\r\n5-0\r\n*2\r\n$3\r\n3-0\r\n$3\r\n4-0\r\n*0\r\n")
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "5-0", "COUNT", "2", "JUSTID") == [b"0-0", [b"5-0"], []]
    assert pending_ext(c, "s", "g", "-", "+", "10") == [(b"1-0", b"bob", 2), (b"2-0", b"bob", 2), (b"3-0", b"bob", 1),
                                                         (b"4-0", b"bob", 1), (b"5-0", b"bob", 1)]
    # min-idle-time filters: nothing has been idle for an hour
    assert c.call("XAUTOCLAIM", "s", "g", "carol", "3600000", "0") == [b"0-0", [], []]


def test_xautoclaim_errors(server):
    c = server.raw()
    setup_claim(c)
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "0", "COUNT", "0") == Error(b"ERR COUNT must be > 0")
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "0", "COUNT", "abc") == Error(b"ERR COUNT must be > 0")
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "0", "foo") == Error(ERR_SYNTAX)
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0", "abc") == Error(ERR_BADID)
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "abc", "0") == Error(
        b"ERR Invalid min-idle-time argument for XAUTOCLAIM")
    assert c.call("XAUTOCLAIM", "s", "nog", "bob", "0", "0") == nogroup("s", "nog")
    assert c.call("XAUTOCLAIM", "nokey", "g", "bob", "0", "0") == nogroup("nokey", "g")
    assert c.call("XAUTOCLAIM", "s", "g", "bob", "0") == Error(arity("xautoclaim"))
