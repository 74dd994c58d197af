"""Streams, blocking reads: XREAD BLOCK and XREADGROUP BLOCK, as Redis 7.0 does
them (wake on XADD, BLOCK 0, timeouts answer a null, `$`, order of wake-up,
group/key removed while blocked, CLIENT LIST flag b, disconnects).

These tests define the semantics: they pass against redis-server 7.0.15
(LUAHUB_TARGET=redis) and the hub must pass them unchanged. No sleep decides
an outcome: each test waits until the reader is blocked (INFO blocked_clients
or CLIENT LIST flag b) before it appends.
"""
import re

from conftest import Error, encode_command, wait_for


def blocked_clients(c):
    info = c.call("INFO", "clients").decode()
    return int(re.search(r"blocked_clients:(\d+)", info).group(1))


def wait_blocked(c, n):
    wait_for(lambda: blocked_clients(c) == n, what="blocked_clients == %d" % n)


def client_flags(c):
    """{client id: flags} from CLIENT LIST."""
    out = {}
    for line in c.call("CLIENT", "LIST").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
        out[int(f["id"])] = f["flags"]
    return out


def call_raw(c, *args):
    c.send_command(*args)
    return c.read_reply_raw()[1]


def test_xread_block_woken_by_xadd(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XADD", "s", "1-0", "old", "x")
    reader.send_command("XREAD", "BLOCK", "60000", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    assert writer.call("XADD", "s", "2-0", "f", "v") == b"2-0"
    assert reader.read_reply_raw()[1] == (
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
    wait_blocked(writer, 0)
    assert reader.call("PING") == b"PONG"


def test_xread_block_0_waits_forever_until_xadd(server):
    reader, writer = server.raw(), server.raw()
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    reader.assert_no_data(0.2)
    writer.call("XADD", "s", "5-0", "f", "v")
    assert reader.read_reply() == [[b"s", [[b"5-0", [b"f", b"v"]]]]]


def test_xread_block_on_a_missing_key_wakes_when_it_is_created(server):
    reader, writer = server.raw(), server.raw()
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "nokey", "0")
    wait_blocked(writer, 1)
    writer.call("XADD", "nokey", "1-0", "f", "v")
    assert reader.read_reply() == [[b"nokey", [[b"1-0", [b"f", b"v"]]]]]


def test_xread_block_with_data_answers_at_once(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "f", "v")
    assert c.call("XREAD", "BLOCK", "0", "STREAMS", "s", "0") == [[b"s", [[b"1-0", [b"f", b"v"]]]]]


def test_xread_block_timeout_resp2_null_array(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "f", "v")
    assert call_raw(c, "XREAD", "BLOCK", "50", "STREAMS", "s", "$") == b"*-1\r\n"
    assert call_raw(c, "XREAD", "BLOCK", "50", "STREAMS", "nokey", "0") == b"*-1\r\n"
    assert c.call("PING") == b"PONG"


def test_xread_block_timeout_resp3_null(server):
    c = server.raw()
    c.call("HELLO", "3")
    c.call("XADD", "s", "1-0", "f", "v")
    assert call_raw(c, "XREAD", "BLOCK", "50", "STREAMS", "s", "$") == b"_\r\n"
    c.call("XGROUP", "CREATE", "s", "g", "$")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "a", "BLOCK", "50", "STREAMS", "s", ">") == b"_\r\n"


def test_xreadgroup_block_timeout_resp2(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "a", "BLOCK", "50", "STREAMS", "s", ">") == b"*-1\r\n"
    # Redis 7.0: a > read that found nothing (blocking or not) creates no consumer
    assert call_raw(c, "XINFO", "CONSUMERS", "s", "g") == b"*0\r\n"
    assert call_raw(c, "XREADGROUP", "GROUP", "g", "b", "STREAMS", "s", ">") == b"*-1\r\n"
    assert call_raw(c, "XINFO", "CONSUMERS", "s", "g") == b"*0\r\n"


def test_dollar_means_after_the_last_entry_at_block_time(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XADD", "s", "1-0", "f", "1")
    writer.call("XADD", "s", "2-0", "f", "2")
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    writer.call("XADD", "s", "3-0", "f", "3")
    assert reader.read_reply() == [[b"s", [[b"3-0", [b"f", b"3"]]]]]
    # non-blocking $ never returns anything
    assert call_raw(reader, "XREAD", "STREAMS", "s", "$") == b"*-1\r\n"


def test_a_blocked_reader_is_served_right_after_the_appending_command(server):
    # Redis serves blocked readers after each command: two pipelined XADDs
    # wake the reader with the first entry only.
    reader, writer = server.raw(), server.raw()
    writer.call("XADD", "s", "1-0", "f", "1")
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    writer.send(encode_command("XADD", "s", "2-0", "f", "2") + encode_command("XADD", "s", "3-0", "f", "3"))
    assert writer.read_reply() == b"2-0" and writer.read_reply() == b"3-0"
    assert reader.read_reply() == [[b"s", [[b"2-0", [b"f", b"2"]]]]]


def test_xread_block_multiple_streams_reports_the_one_that_grew(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XADD", "a", "1-0", "f", "1")
    writer.call("XADD", "b", "1-0", "f", "1")
    reader.send_command("XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "a", "b", "$", "$")
    wait_blocked(writer, 1)
    writer.call("XADD", "b", "2-0", "f", "2")
    assert reader.read_reply() == [[b"b", [[b"2-0", [b"f", b"2"]]]]]


def test_several_blocked_readers_all_woken(server):
    writer = server.raw()
    readers = [server.raw() for _ in range(3)]
    for i, r in enumerate(readers):
        r.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
        wait_blocked(writer, i + 1)
    writer.call("XADD", "s", "1-0", "f", "v")
    for r in readers:
        assert r.read_reply() == [[b"s", [[b"1-0", [b"f", b"v"]]]]]
    wait_blocked(writer, 0)


def test_blocked_group_readers_are_served_in_the_order_they_blocked(server):
    writer = server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    readers = [server.raw() for _ in range(3)]
    for i, r in enumerate(readers):
        r.send_command("XREADGROUP", "GROUP", "g", "c%d" % i, "COUNT", "1", "BLOCK", "0", "STREAMS", "s", ">")
        wait_blocked(writer, i + 1)
    for i, r in enumerate(readers):
        eid = "%d-0" % (i + 1)
        writer.call("XADD", "s", eid, "f", "v")
        assert r.read_reply() == [[b"s", [[eid.encode(), [b"f", b"v"]]]]]
        wait_blocked(writer, 2 - i)
        for other in readers[i + 1:]:
            assert not other.buf
    rows = writer.call("XPENDING", "s", "g", "-", "+", "10")
    assert [(x[0], x[1]) for x in rows] == [(b"1-0", b"c0"), (b"2-0", b"c1"), (b"3-0", b"c2")]


def test_xreadgroup_block_woken_by_xadd_adds_to_the_pel(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    reader.send_command("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "STREAMS", "s", ">")
    wait_blocked(writer, 1)
    writer.call("XADD", "s", "1-0", "f", "v")
    assert reader.read_reply() == [[b"s", [[b"1-0", [b"f", b"v"]]]]]
    assert writer.call("XPENDING", "s", "g") == [1, b"1-0", b"1-0", [[b"alice", b"1"]]]


def test_xreadgroup_block_noack(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    reader.send_command("XREADGROUP", "GROUP", "g", "alice", "BLOCK", "0", "NOACK", "STREAMS", "s", ">")
    wait_blocked(writer, 1)
    writer.call("XADD", "s", "1-0", "f", "v")
    assert reader.read_reply() == [[b"s", [[b"1-0", [b"f", b"v"]]]]]
    assert writer.call("XPENDING", "s", "g")[0] == 0


def test_xreadgroup_block_with_history_id_does_not_block(server):
    c = server.raw()
    c.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", "0") == [[b"s", []]]


def test_group_destroyed_while_blocked(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    reader.send_command("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")
    wait_blocked(writer, 1)
    assert writer.call("XGROUP", "DESTROY", "s", "g") == 1
    assert reader.read_reply_raw()[1] == b"-NOGROUP the consumer group this client was blocked on no longer exists\r\n"
    wait_blocked(writer, 0)


def test_key_deleted_while_blocked_in_xreadgroup(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    reader.send_command("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")
    wait_blocked(writer, 1)
    assert writer.call("DEL", "s") == 1
    assert reader.read_reply_raw()[1] == b"-UNBLOCKED the stream key no longer exists\r\n"
    wait_blocked(writer, 0)


def test_key_deleted_while_blocked_in_xread_keeps_waiting(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XADD", "s", "5-0", "f", "v")
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    assert writer.call("DEL", "s") == 1
    reader.assert_no_data(0.2)
    assert blocked_clients(writer) == 1
    # the recreated stream starts again from 0; the reader still waits for ids after 5-0
    writer.call("XADD", "s", "1-0", "f", "v")
    reader.assert_no_data(0.2)
    writer.call("XADD", "s", "6-0", "f", "v")
    assert reader.read_reply() == [[b"s", [[b"6-0", [b"f", b"v"]]]]]


def test_a_blocked_client_does_not_block_others(server):
    reader, other = server.raw(), server.raw()
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(other, 1)
    assert other.call("PING") == b"PONG"
    assert other.call("XADD", "t", "1-0", "f", "v") == b"1-0"
    assert other.call("XRANGE", "t", "-", "+") == [[b"1-0", [b"f", b"v"]]]
    assert blocked_clients(other) == 1
    reader.assert_no_data(0.1)


def test_a_blocked_client_queues_its_next_commands(server):
    reader, writer = server.raw(), server.raw()
    reader.send(encode_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$") + encode_command("PING"))
    wait_blocked(writer, 1)
    reader.assert_no_data(0.1)  # PING waits behind the blocked XREAD
    writer.call("XADD", "s", "1-0", "f", "v")
    assert reader.read_reply() == [[b"s", [[b"1-0", [b"f", b"v"]]]]]
    assert reader.read_reply() == b"PONG"


def test_client_list_flag_b_while_blocked(server):
    reader, writer = server.raw(), server.raw()
    rid = reader.call("CLIENT", "ID")
    assert "b" not in client_flags(writer)[rid]
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_for(lambda: "b" in client_flags(writer)[rid], what="flag b on the reader")
    assert blocked_clients(writer) == 1
    writer.call("XADD", "s", "1-0", "f", "v")
    reader.read_reply()
    wait_for(lambda: "b" not in client_flags(writer)[rid], what="flag b cleared")
    assert blocked_clients(writer) == 0


def test_a_blocked_client_disconnecting(server):
    reader, writer = server.raw(), server.raw()
    rid = reader.call("CLIENT", "ID")
    reader.send_command("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    wait_blocked(writer, 1)
    reader.close()
    wait_for(lambda: rid not in client_flags(writer), what="reader gone from CLIENT LIST")
    assert blocked_clients(writer) == 0
    assert writer.call("XADD", "s", "1-0", "f", "v") == b"1-0"
    assert writer.call("PING") == b"PONG"


def test_a_blocked_group_reader_disconnecting_takes_nothing(server):
    reader, writer = server.raw(), server.raw()
    writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    reader.send_command("XREADGROUP", "GROUP", "g", "a", "BLOCK", "0", "STREAMS", "s", ">")
    wait_blocked(writer, 1)
    reader.close()
    wait_blocked(writer, 0)
    writer.call("XADD", "s", "1-0", "f", "v")
    assert writer.call("XPENDING", "s", "g")[0] == 0
    assert writer.call("XREADGROUP", "GROUP", "g", "b", "STREAMS", "s", ">") == [[b"s", [[b"1-0", [b"f", b"v"]]]]]


def test_block_argument_errors(server):
    c = server.raw()
    c.call("XADD", "s", "1-0", "f", "v")
    assert c.call("XREAD", "BLOCK", "abc", "STREAMS", "s", "0") == Error(b"ERR timeout is not an integer or out of range")
    assert c.call("XREAD", "BLOCK", "-1", "STREAMS", "s", "0") == Error(b"ERR timeout is negative")
    assert c.call("XREADGROUP", "GROUP", "g", "a", "BLOCK", "-1", "STREAMS", "s", ">") == Error(b"ERR timeout is negative")
    assert blocked_clients(c) == 0
