"""RESP protocol handling and connection/introspection commands, as Redis does them."""
import pytest

from conftest import IS_REDIS, encode_command, flat_to_dict, wait_for


# --------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------

def test_pipelining_100_commands_in_one_write(server):
    c = server.raw()
    req, expected = b"", b""
    for i in range(100):
        if i % 3 == 0:
            req += encode_command("PING")
            expected += b"+PONG\r\n"
        elif i % 3 == 1:
            req += encode_command("ECHO", "msg-%d" % i)
            expected += b"$%d\r\nmsg-%d\r\n" % (len("msg-%d" % i), i)
        else:
            req += encode_command("PUBLISH", "nobody", "x")
            expected += b":0\r\n"
    c.send(req)
    c.expect(expected)
    c.assert_no_data(0.05)


def test_pipelined_mixed_inline_and_multibulk(server):
    c = server.raw()
    c.send(b"PING\r\n" + encode_command("ECHO", "a") + b"ECHO b\r\n" + encode_command("PING", "c"))
    c.expect(b"+PONG\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")


def test_inline_commands(server):
    c = server.raw()
    c.send(b"PING\r\n")
    c.expect(b"+PONG\r\n")
    c.send(b"ECHO hello\r\n")
    c.expect(b"$5\r\nhello\r\n")
    c.send(b"ping\n")                          # LF alone ends a line too; any case
    c.expect(b"+PONG\r\n")
    c.send(b"  ECHO    spaced   \r\n")          # extra blanks separate nothing
    c.expect(b"$6\r\nspaced\r\n")
    c.send(b"\r\n\r\nPING\r\n")                  # empty lines are ignored
    c.expect(b"+PONG\r\n")


def test_inline_quoted_arguments(server):
    c = server.raw()
    c.send(b'ECHO "hello world"\r\n')
    c.expect(b"$11\r\nhello world\r\n")
    c.send(b"ECHO 'single quoted'\r\n")
    c.expect(b"$13\r\nsingle quoted\r\n")
    c.send(b'ECHO "esc\\x41\\n\\t\\"q\\""\r\n')
    c.expect(b'$9\r\nescA\n\t"q"\r\n')
    c.send(b'ECHO ""\r\n')
    c.expect(b"$0\r\n\r\n")


def test_inline_unbalanced_quotes_is_protocol_error(server):
    c = server.raw()
    c.send(b'ECHO "unbalanced\r\n')
    c.expect(b"-ERR Protocol error: unbalanced quotes in request\r\n")
    assert c.read_until_close() == b""


def test_inline_too_big_is_protocol_error(server):
    c = server.raw()
    c.send(b"A" * 70000)   # more than 64 KiB without a newline
    c.expect(b"-ERR Protocol error: too big inline request\r\n")
    assert c.read_until_close() == b""


def test_resp_split_across_tiny_writes(server):
    c = server.raw()
    req = encode_command("ECHO", "hello\r\nworld") + encode_command("PUBLISH", "ch", "x")
    for i in range(len(req)):
        c.send(req[i:i + 1])
        if i < len(req) - 1 and i != len(encode_command("ECHO", "hello\r\nworld")) - 1:
            # an incomplete request is never answered
            c.assert_no_data(0.002)
        elif i == len(encode_command("ECHO", "hello\r\nworld")) - 1:
            c.expect(b"$12\r\nhello\r\nworld\r\n")
    c.expect(b":0\r\n")


def test_large_bulk_in_many_chunks(server):
    c = server.raw()
    payload = bytes(range(256)) * 1024           # 256 KiB
    req = encode_command("ECHO", payload)
    for i in range(0, len(req), 997):
        c.send(req[i:i + 997])
    c.expect(b"$%d\r\n%s\r\n" % (len(payload), payload))


# --------------------------------------------------------------------------
# Protocol errors close the connection
# --------------------------------------------------------------------------

@pytest.mark.parametrize("request_bytes,error", [
    (b"*abc\r\n", b"invalid multibulk length"),
    (b"*1\r\n$x\r\n", b"invalid bulk length"),
    (b"*1\r\n$-5\r\n", b"invalid bulk length"),
    (b"*1\r\n$600000000\r\n", b"invalid bulk length"),   # above the 512mb default
    (b"*1\r\nPING\r\n", b"expected '$', got 'P'"),
    (b"*2\r\n$4\r\nECHO\r\n:12\r\n", b"expected '$', got ':'"),
], ids=["multibulk-len", "bulk-len", "negative-bulk-len", "bulk-too-long", "expected-dollar",
        "expected-dollar-colon"])
def test_protocol_error_replies_and_closes(server, request_bytes, error):
    c = server.raw()
    # a complete request before the bad one is still answered
    c.send(encode_command("PING") + request_bytes)
    c.expect(b"+PONG\r\n-ERR Protocol error: " + error + b"\r\n")
    assert c.read_until_close() == b""
    # the server is fine
    assert server.raw().call("PING") == b"PONG"


def test_oversized_bulk_refused_before_payload(server_factory):
    srv = server_factory({"proto-max-bulk-len": "1mb"})
    limit = 1 << 20
    c = srv.raw()
    # exactly the limit is accepted
    payload = b"z" * limit
    c.send(encode_command("ECHO", payload))
    c.expect(b"$%d\r\n%s\r\n" % (limit, payload))
    # one byte more is refused on the header alone: the payload is never sent
    c.send(b"*2\r\n$4\r\nECHO\r\n$%d\r\n" % (limit + 1))
    c.expect(b"-ERR Protocol error: invalid bulk length\r\n")
    assert c.read_until_close() == b""


@pytest.mark.hub_only
def test_max_multibulk_len_refused(server_factory):
    srv = server_factory({"max-multibulk-len": 10})
    c = srv.raw()
    # ten words: at the limit, parsed (and refused only for PING's arity)
    c.send(encode_command("PING", *(["x"] * 9)))
    c.expect(b"-ERR wrong number of arguments for 'ping' command\r\n")
    c2 = srv.raw()
    c2.send(b"*11\r\n")
    c2.expect(b"-ERR Protocol error: invalid multibulk length\r\n")
    assert c2.read_until_close() == b""


def test_unknown_command_error_text(server):
    c = server.raw()
    c.send(b"foo a b\r\n")
    c.expect(b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n")
    c.send_command("foo", "a", "b")
    c.expect(b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n")
    c.send_command("NOSUCH")
    c.expect(b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n")
    # arguments are shown up to 128 bytes
    c.send_command("FOO", "x" * 200, "y")
    c.expect(b"-ERR unknown command 'FOO', with args beginning with: '" + b"x" * 128 + b"' \r\n")
    # the connection stays usable
    c.send_command("PING")
    c.expect(b"+PONG\r\n")


def test_wrong_arity_error_text(server):
    c = server.raw()
    c.send_command("ECHO")
    c.expect(b"-ERR wrong number of arguments for 'echo' command\r\n")
    c.send_command("ECHO", "a", "b")
    c.expect(b"-ERR wrong number of arguments for 'echo' command\r\n")
    c.send_command("PING", "a", "b")
    c.expect(b"-ERR wrong number of arguments for 'ping' command\r\n")
    c.send_command("publish", "ch")
    c.expect(b"-ERR wrong number of arguments for 'publish' command\r\n")
    c.send_command("PING")
    c.expect(b"+PONG\r\n")


# --------------------------------------------------------------------------
# Connection commands
# --------------------------------------------------------------------------

def test_ping_and_echo(server):
    c = server.raw()
    c.send_command("PING")
    c.expect(b"+PONG\r\n")
    c.send_command("PING", "hello")
    c.expect(b"$5\r\nhello\r\n")
    c.send_command("ECHO", "")
    c.expect(b"$0\r\n\r\n")
    c.send_command("ECHO", b"\x00\r\n\xff")
    c.expect(b"$4\r\n\x00\r\n\xff\r\n")
    c.send_command("pInG")
    c.expect(b"+PONG\r\n")


def test_quit_replies_ok_then_closes(server):
    c = server.raw()
    c.send(encode_command("QUIT") + encode_command("PING"))
    c.expect(b"+OK\r\n")
    assert c.read_until_close() == b""     # the pipelined PING is not run


def test_hello_2_and_3(server):
    c = server.raw()
    c.send_command("CLIENT", "ID")
    my_id = c.read_reply()
    assert isinstance(my_id, int)

    c.send_command("HELLO", "3")
    v, raw = c.read_reply_raw()
    assert raw.startswith(b"%"), raw           # a RESP3 map
    assert v[b"proto"] == 3
    assert v[b"id"] == my_id
    if IS_REDIS:
        assert set(v) == {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}
        assert v[b"mode"] == b"standalone" and v[b"role"] == b"master" and v[b"modules"] == []
    # RESP3 is on: a null is _
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"_\r\n")

    c.send_command("HELLO", "2")
    v, raw = c.read_reply_raw()
    assert raw.startswith(b"*"), raw           # a flat array in RESP2
    d = flat_to_dict(v)
    assert d[b"proto"] == 2
    assert d[b"id"] == my_id
    if IS_REDIS:
        assert set(d) == {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$-1\r\n")

    # HELLO without a version reports the current protocol
    c.send_command("HELLO")
    assert flat_to_dict(c.read_reply())[b"proto"] == 2


def test_hello_setname_option(server):
    c = server.raw()
    c.send_command("HELLO", "3", "SETNAME", "via-hello")
    v = c.read_reply()
    assert v[b"proto"] == 3
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$9\r\nvia-hello\r\n")


def test_hello_unsupported_version(server):
    c = server.raw()
    c.send_command("HELLO", "4")
    c.expect(b"-NOPROTO unsupported protocol version\r\n")
    c.send_command("HELLO", "1")
    c.expect(b"-NOPROTO unsupported protocol version\r\n")
    c.send_command("HELLO", "abc")
    c.expect(b"-ERR Protocol version is not an integer or out of range\r\n")
    # still RESP2
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$-1\r\n")


def test_client_id_setname_getname_list(server):
    c = server.raw()
    other = server.raw()
    c.send_command("CLIENT", "ID")
    my_id = c.read_reply()
    other.send_command("CLIENT", "ID")
    other_id = other.read_reply()
    assert isinstance(my_id, int) and isinstance(other_id, int) and my_id != other_id

    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$-1\r\n")
    c.send_command("CLIENT", "SETNAME", "worker-1")
    c.expect(b"+OK\r\n")
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$8\r\nworker-1\r\n")
    c.send_command("CLIENT", "SETNAME", "has space")
    c.expect(b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$8\r\nworker-1\r\n")

    c.send_command("CLIENT", "LIST")
    listing = c.read_reply()
    assert isinstance(listing, bytes), listing
    lines = [l for l in listing.decode().split("\n") if l]
    by_id = {}
    for l in lines:
        fields = dict(f.split("=", 1) for f in l.split(" ") if "=" in f)
        by_id[int(fields["id"])] = fields
    assert my_id in by_id and other_id in by_id, listing
    assert by_id[my_id]["name"] == "worker-1"
    assert by_id[other_id]["name"] == ""

    # an empty name clears it
    c.send_command("CLIENT", "SETNAME", "")
    c.expect(b"+OK\r\n")
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$-1\r\n")


def test_client_unknown_subcommand_and_arity_errors(server):
    c = server.raw()
    c.send_command("CLIENT", "NOSUCH")
    c.expect(b"-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n")
    c.send_command("CLIENT", "ID", "x")
    c.expect(b"-ERR wrong number of arguments for 'client|id' command\r\n")
    c.send_command("CLIENT", "GETNAME", "x")
    c.expect(b"-ERR wrong number of arguments for 'client|getname' command\r\n")
    c.send_command("CLIENT", "SETNAME")
    c.expect(b"-ERR wrong number of arguments for 'client|setname' command\r\n")
    c.send_command("CLIENT")
    c.expect(b"-ERR wrong number of arguments for 'client' command\r\n")
    c.send_command("PING")
    c.expect(b"+PONG\r\n")


def client_list_ids(c, *filters):
    c.send_command("CLIENT", "LIST", *filters)
    listing = c.read_reply()
    assert isinstance(listing, bytes), listing
    return sorted(int(l.split(" ", 1)[0][3:]) for l in listing.decode().split("\n") if l.startswith("id="))


def test_client_list_filters(server):
    c = server.raw()
    my_id = c.call("CLIENT", "ID")
    sub = server.raw()
    sub_id = sub.call("CLIENT", "ID")
    sub.send_command("SUBSCRIBE", "a")
    sub.read_reply()
    psub = server.raw()
    psub_id = psub.call("CLIENT", "ID")
    psub.send_command("PSUBSCRIBE", "a*")
    psub.read_reply()
    assert client_list_ids(c, "TYPE", "pubsub") == sorted([sub_id, psub_id])
    assert client_list_ids(c, "TYPE", "normal") == [my_id]
    assert client_list_ids(c, "ID", sub_id) == [sub_id]
    assert client_list_ids(c, "ID", my_id, psub_id) == sorted([my_id, psub_id])
    assert client_list_ids(c, "ID", 999999) == []


def test_command_unknown_subcommand_error(server):
    c = server.raw()
    c.send_command("COMMAND", "NOSUCH")
    c.expect(b"-ERR unknown subcommand 'NOSUCH'. Try COMMAND HELP.\r\n")


def info_fields(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out


def test_info_sections(server):
    c = server.raw()
    c.send_command("INFO")
    text = c.read_reply()
    assert isinstance(text, bytes)
    text = text.decode()
    for section in ("# Server", "# Clients", "# Memory", "# Stats"):
        assert section + "\r\n" in text, "missing %r in INFO:\n%s" % (section, text)
    assert "connected_clients" in info_fields(text)

    # connected_clients counts connections
    extra = [server.raw() for _ in range(3)]
    for e in extra:
        e.call("PING")

    def clients():
        c.send_command("INFO")
        return int(info_fields(c.read_reply().decode())["connected_clients"])
    wait_for(lambda: clients() == 4, what="connected_clients == 4")
    for e in extra:
        e.close()
    wait_for(lambda: clients() == 1, what="connected_clients == 1 after closes")


def test_command_returns_array_and_redis_py_connects(server):
    r = server.client()
    assert r.ping() is True
    c = server.raw()
    c.send_command("COMMAND")
    v, raw = c.read_reply_raw()
    assert raw.startswith(b"*") and isinstance(v, list) and v, raw[:100]
    entries = {e[0]: e for e in v if isinstance(e, list) and e}
    assert entries[b"publish"][1] == 3
    assert entries[b"subscribe"][1] == -2
    assert entries[b"ping"][1] == -1
    c.send_command("PING")
    c.expect(b"+PONG\r\n")


def test_select_0(server):
    c = server.raw()
    c.send_command("SELECT", "0")
    c.expect(b"+OK\r\n")


def test_redis_cli_ping_and_echo(server):
    out = server.cli("ping")
    assert out.returncode == 0 and out.stdout == "PONG\n", out
    out = server.cli("echo", "hello world")
    assert out.returncode == 0 and out.stdout == "hello world\n", out
    out = server.cli("publish", "ch", "x")
    assert out.returncode == 0 and out.stdout == "0\n", out
