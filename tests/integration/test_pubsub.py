"""Pub/sub: behaves exactly like Redis's (RESP2 and RESP3)."""
import os
import random
import select
import subprocess
import time

import pytest

from conftest import IO_TIMEOUT, REDIS_CLI, Error, encode_command, flat_to_dict, wait_for


def message_frame(channel, payload):
    return encode_command("message", channel, payload)


def pmessage_frame(pattern, channel, payload):
    return encode_command("pmessage", pattern, channel, payload)


def push(*args):
    """A RESP3 push frame of bulk strings."""
    return b">" + encode_command(*args)[1:]


def sub_reply(kind, name, count):
    if isinstance(name, str):
        name = name.encode()
    name_part = b"$-1\r\n" if name is None else b"$%d\r\n%s\r\n" % (len(name), name)
    return b"*3\r\n$%d\r\n%s\r\n%s:%d\r\n" % (len(kind), kind.encode(), name_part, count)


def get_message(p, timeout=IO_TIMEOUT):
    """The next redis-py pubsub message, within a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=max(0.01, deadline - time.monotonic()))
        if m is not None:
            return m
    raise AssertionError("no pubsub message within %.1fs" % timeout)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------

def test_subscribe_publish_round_trip_resp2_redis_py(server):
    r = server.client()
    p = server.client().pubsub()
    p.subscribe("ch")
    m = get_message(p)
    assert m == {"type": "subscribe", "pattern": None, "channel": b"ch", "data": 1}
    assert r.publish("ch", "hello") == 1
    m = get_message(p)
    assert m == {"type": "message", "pattern": None, "channel": b"ch", "data": b"hello"}
    p.close()


def test_subscribe_publish_round_trip_redis_cli(server):
    proc = subprocess.Popen([REDIS_CLI, "-p", str(server.port), "subscribe", "ch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        buf = b""
        fd = proc.stdout.fileno()

        def read_lines(n):
            nonlocal buf
            deadline = time.monotonic() + IO_TIMEOUT
            while buf.count(b"\n") < n:
                left = deadline - time.monotonic()
                assert left > 0, "redis-cli printed only %r" % buf
                ready, _, _ = select.select([fd], [], [], left)
                if ready:
                    d = os.read(fd, 4096)
                    assert d, "redis-cli exited early: %r %r" % (buf, proc.stderr.read())
                    buf += d
            lines = buf.split(b"\n")
            out, buf = lines[:n], b"\n".join(lines[n:])
            return [l.decode() for l in out]

        assert read_lines(3) == ["subscribe", "ch", "1"]
        r = server.client()
        assert r.publish("ch", "hello world") == 1
        assert read_lines(3) == ["message", "ch", "hello world"]
        assert r.publish("ch", "second") == 1
        assert read_lines(3) == ["message", "ch", "second"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_publish_returns_receiver_count_including_patterns(server):
    r = server.client()
    assert r.publish("news", "x") == 0
    a = server.raw()
    a.send_command("SUBSCRIBE", "news")
    a.expect(sub_reply("subscribe", "news", 1))
    assert r.publish("news", "x") == 1
    assert r.publish("other", "x") == 0
    a.expect(message_frame("news", "x"))
    others = []
    for _ in range(3):
        c = server.raw()
        c.send_command("SUBSCRIBE", "news")
        c.expect(sub_reply("subscribe", "news", 1))
        others.append(c)
    assert r.publish("news", "x") == 4
    for c in [a] + others:
        c.expect(message_frame("news", "x"))
    # a pattern subscriber counts too, once per matching subscription
    pc = server.raw()
    pc.send_command("PSUBSCRIBE", "n*", "*s")
    pc.expect(sub_reply("psubscribe", "n*", 1) + sub_reply("psubscribe", "*s", 2))
    assert r.publish("news", "x") == 6
    assert r.publish("nope", "x") == 1
    for c in [a] + others:
        c.expect(message_frame("news", "x"))
    got = sorted(pc.read_reply() for _ in range(3))
    assert got == sorted([[b"pmessage", b"n*", b"news", b"x"], [b"pmessage", b"*s", b"news", b"x"],
                          [b"pmessage", b"n*", b"nope", b"x"]])
    # the same client subscribed to the channel and a matching pattern: 2
    a.send_command("PSUBSCRIBE", "ne??")
    a.expect(sub_reply("psubscribe", "ne??", 2))
    assert r.publish("news", "x") == 7


def test_psubscribe_delivers_pmessage_with_pattern_channel_message(server):
    c = server.raw()
    c.send_command("PSUBSCRIBE", "orders.*")
    c.expect(sub_reply("psubscribe", "orders.*", 1))
    r = server.client()
    assert r.publish("orders.new", "o1") == 1
    c.expect(pmessage_frame("orders.*", "orders.new", "o1"))
    assert r.publish("order", "no") == 0
    assert r.publish("orders.", "empty-rest") == 1
    c.expect(pmessage_frame("orders.*", "orders.", "empty-rest"))
    c.assert_no_data(0.05)


def test_psubscribe_redis_py(server):
    p = server.client().pubsub()
    p.psubscribe("a.*")
    assert get_message(p) == {"type": "psubscribe", "pattern": None, "channel": b"a.*", "data": 1}
    assert server.client().publish("a.b", "v") == 1
    assert get_message(p) == {"type": "pmessage", "pattern": b"a.*", "channel": b"a.b", "data": b"v"}
    p.close()


def test_channel_and_matching_pattern_both_delivered(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "ch.1")
    c.expect(sub_reply("subscribe", "ch.1", 1))
    c.send_command("PSUBSCRIBE", "ch.*")
    c.expect(sub_reply("psubscribe", "ch.*", 2))
    assert server.client().publish("ch.1", "both") == 2
    # Redis delivers to channel subscribers first, then to patterns
    c.expect(message_frame("ch.1", "both") + pmessage_frame("ch.*", "ch.1", "both"))
    assert server.client().publish("ch.2", "pattern-only") == 1
    c.expect(pmessage_frame("ch.*", "ch.2", "pattern-only"))
    c.assert_no_data(0.05)


def test_subscribing_twice_does_not_duplicate(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "a", "a")
    c.expect(sub_reply("subscribe", "a", 1) + sub_reply("subscribe", "a", 1))
    c.send_command("PSUBSCRIBE", "a*", "a*")
    c.expect(sub_reply("psubscribe", "a*", 2) + sub_reply("psubscribe", "a*", 2))
    assert server.client().publish("a", "once") == 2
    c.expect(message_frame("a", "once") + pmessage_frame("a*", "a", "once"))
    c.assert_no_data(0.05)


# --------------------------------------------------------------------------
# UNSUBSCRIBE / PUNSUBSCRIBE
# --------------------------------------------------------------------------

def read_sub_replies(c, n):
    out = []
    for _ in range(n):
        v = c.read_reply()
        assert isinstance(v, list) and len(v) == 3, v
        out.append(v)
    return out


def test_unsubscribe_without_args_unsubscribes_all_with_decreasing_counts(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "a", "b", "c")
    c.expect(sub_reply("subscribe", "a", 1) + sub_reply("subscribe", "b", 2) + sub_reply("subscribe", "c", 3))
    c.send_command("UNSUBSCRIBE")
    replies = read_sub_replies(c, 3)
    assert [r[0] for r in replies] == [b"unsubscribe"] * 3
    assert sorted(r[1] for r in replies) == [b"a", b"b", b"c"]   # any order, each once
    assert [r[2] for r in replies] == [2, 1, 0]
    c.assert_no_data(0.05)
    assert server.client().publish("a", "x") == 0
    # out of subscribed mode: ordinary commands work again (RESP2)
    c.send_command("ECHO", "back")
    c.expect(b"$4\r\nback\r\n")


def test_unsubscribe_all_counts_include_patterns(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "a", "b")
    c.expect(sub_reply("subscribe", "a", 1) + sub_reply("subscribe", "b", 2))
    c.send_command("PSUBSCRIBE", "p*")
    c.expect(sub_reply("psubscribe", "p*", 3))
    c.send_command("UNSUBSCRIBE")
    replies = read_sub_replies(c, 2)
    assert sorted(r[1] for r in replies) == [b"a", b"b"]
    assert [r[2] for r in replies] == [2, 1]
    # still subscribed (to the pattern): other commands are refused
    c.send_command("ECHO", "x")
    assert isinstance(c.read_reply(), Error)
    c.send_command("PUNSUBSCRIBE")
    c.expect(sub_reply("punsubscribe", "p*", 0))


def test_unsubscribe_with_nothing_subscribed_replies_nil_zero(server):
    c = server.raw()
    c.send_command("UNSUBSCRIBE")
    c.expect(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
    c.send_command("PUNSUBSCRIBE")
    c.expect(b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n")
    # and the connection is not in subscribed mode
    c.send_command("ECHO", "ok")
    c.expect(b"$2\r\nok\r\n")


def test_unsubscribe_named_channels(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "a", "b")
    c.expect(sub_reply("subscribe", "a", 1) + sub_reply("subscribe", "b", 2))
    # one not subscribed: still gets a reply, count unchanged
    c.send_command("UNSUBSCRIBE", "zz", "a")
    c.expect(sub_reply("unsubscribe", "zz", 2) + sub_reply("unsubscribe", "a", 1))
    assert server.client().publish("a", "x") == 0
    assert server.client().publish("b", "x") == 1
    c.expect(message_frame("b", "x"))


def test_punsubscribe_without_args_unsubscribes_all_patterns(server):
    c = server.raw()
    c.send_command("PSUBSCRIBE", "x*", "y*", "z*")
    c.expect(sub_reply("psubscribe", "x*", 1) + sub_reply("psubscribe", "y*", 2) + sub_reply("psubscribe", "z*", 3))
    c.send_command("PUNSUBSCRIBE")
    replies = read_sub_replies(c, 3)
    assert [r[0] for r in replies] == [b"punsubscribe"] * 3
    assert sorted(r[1] for r in replies) == [b"x*", b"y*", b"z*"]
    assert [r[2] for r in replies] == [2, 1, 0]
    assert server.client().publish("xa", "v") == 0
    c.send_command("PUNSUBSCRIBE")
    c.expect(b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n")


def test_punsubscribe_named_pattern_is_exact_not_glob(server):
    c = server.raw()
    c.send_command("PSUBSCRIBE", "a*", "ab")
    c.expect(sub_reply("psubscribe", "a*", 1) + sub_reply("psubscribe", "ab", 2))
    # PUNSUBSCRIBE names the pattern literally: "a?" removes nothing
    c.send_command("PUNSUBSCRIBE", "a?", "a*")
    c.expect(sub_reply("punsubscribe", "a?", 2) + sub_reply("punsubscribe", "a*", 1))
    assert server.client().publish("ab", "v") == 1
    c.expect(pmessage_frame("ab", "ab", "v"))


# --------------------------------------------------------------------------
# Subscribed mode (RESP2)
# --------------------------------------------------------------------------

SUBSCRIBED_MODE_ERROR = (b"-ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
                         b"are allowed in this context\r\n")


def test_resp2_subscribed_mode_rejects_other_commands(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "ch")
    c.expect(sub_reply("subscribe", "ch", 1))
    c.send_command("ECHO", "x")
    c.expect(SUBSCRIBED_MODE_ERROR % b"echo")
    c.send_command("PUBLISH", "ch", "x")
    c.expect(SUBSCRIBED_MODE_ERROR % b"publish")
    c.send_command("PUBSUB", "NUMPAT")
    # Redis 7 names a subcommand as container|subcommand
    c.expect(SUBSCRIBED_MODE_ERROR % b"pubsub|numpat")
    # the connection is still subscribed and usable
    assert server.client().publish("ch", "still") == 1
    c.expect(message_frame("ch", "still"))


def test_resp2_subscribed_mode_pattern_only_also_rejects(server):
    c = server.raw()
    c.send_command("PSUBSCRIBE", "p*")
    c.expect(sub_reply("psubscribe", "p*", 1))
    c.send_command("ECHO", "x")
    c.expect(SUBSCRIBED_MODE_ERROR % b"echo")


def test_resp2_ping_in_subscribed_mode(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "ch")
    c.expect(sub_reply("subscribe", "ch", 1))
    c.send_command("PING")
    c.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    c.send_command("PING", "hi")
    c.expect(b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n")
    # inline PING too
    c.send(b"PING\r\n")
    c.expect(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")


def test_quit_in_subscribed_mode(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "ch")
    c.expect(sub_reply("subscribe", "ch", 1))
    c.send_command("QUIT")
    c.expect(b"+OK\r\n")
    assert c.read_until_close() == b""
    wait_for(lambda: server.client().publish("ch", "x") == 0, what="subscriber removed after QUIT")


def test_reset_leaves_subscribed_mode(server):
    c = server.raw()
    c.send_command("SUBSCRIBE", "ch")
    c.expect(sub_reply("subscribe", "ch", 1))
    c.send_command("PSUBSCRIBE", "c*")
    c.expect(sub_reply("psubscribe", "c*", 2))
    c.send_command("RESET")
    c.expect(b"+RESET\r\n")
    assert server.client().publish("ch", "x") == 0
    c.send_command("ECHO", "normal")
    c.expect(b"$6\r\nnormal\r\n")


def test_subscribe_without_channel_is_arity_error(server):
    c = server.raw()
    c.send_command("SUBSCRIBE")
    c.expect(b"-ERR wrong number of arguments for 'subscribe' command\r\n")
    c.send_command("PSUBSCRIBE")
    c.expect(b"-ERR wrong number of arguments for 'psubscribe' command\r\n")
    c.send_command("PUBLISH", "ch")
    c.expect(b"-ERR wrong number of arguments for 'publish' command\r\n")


# --------------------------------------------------------------------------
# RESP3
# --------------------------------------------------------------------------

def hello3(c):
    c.send_command("HELLO", "3")
    v = c.read_reply()
    assert isinstance(v, dict), v
    assert v[b"proto"] == 3


def test_resp3_messages_are_push_frames(server):
    c = server.raw()
    hello3(c)
    c.send_command("SUBSCRIBE", "ch")
    c.expect(b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
    assert server.client().publish("ch", "hello") == 1
    c.expect(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n")
    c.send_command("PSUBSCRIBE", "c*")
    c.expect(b">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n")
    assert server.client().publish("ch", "two") == 2
    c.expect(push("message", "ch", "two") + push("pmessage", "c*", "ch", "two"))
    c.send_command("UNSUBSCRIBE")
    c.expect(b">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:1\r\n")
    c.send_command("PUNSUBSCRIBE")
    c.expect(b">3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n")
    c.send_command("UNSUBSCRIBE")
    c.expect(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n")


def test_resp3_normal_commands_work_while_subscribed(server):
    c = server.raw()
    hello3(c)
    c.send_command("SUBSCRIBE", "ch")
    c.expect(b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
    c.send_command("ECHO", "x")
    c.expect(b"$1\r\nx\r\n")
    c.send_command("PING")
    c.expect(b"+PONG\r\n")
    c.send_command("PUBSUB", "NUMSUB", "ch")
    c.expect(b"*2\r\n$2\r\nch\r\n:1\r\n")
    # publishing from the subscribed connection itself: a reply and a push
    c.send_command("PUBLISH", "ch", "self")
    got = {c.read_reply_raw()[1], c.read_reply_raw()[1]}
    assert got == {b":1\r\n", push("message", "ch", "self")}
    c.send_command("CLIENT", "ID")
    assert isinstance(c.read_reply(), int)


def test_resp3_pubsub_after_hello_3_then_back_to_2(server):
    c = server.raw()
    hello3(c)
    c.send_command("HELLO", "2")
    v = c.read_reply()
    assert isinstance(v, list) and flat_to_dict(v)[b"proto"] == 2
    c.send_command("SUBSCRIBE", "ch")
    c.expect(sub_reply("subscribe", "ch", 1))
    assert server.client().publish("ch", "v") == 1
    c.expect(message_frame("ch", "v"))


# --------------------------------------------------------------------------
# PUBSUB introspection
# --------------------------------------------------------------------------

def test_pubsub_channels_numsub_numpat(server):
    r = server.client()
    assert r.execute_command("PUBSUB", "CHANNELS") == []
    assert r.execute_command("PUBSUB", "NUMPAT") == 0
    assert r.execute_command("PUBSUB", "NUMSUB") == []
    a, b = server.raw(), server.raw()
    a.send_command("SUBSCRIBE", "news.eu", "news.us", "sport")
    read_sub_replies(a, 3)
    b.send_command("SUBSCRIBE", "news.eu")
    read_sub_replies(b, 1)
    a.send_command("PSUBSCRIBE", "news.*", "x?")
    read_sub_replies(a, 2)
    b.send_command("PSUBSCRIBE", "news.*")   # same pattern, another client
    read_sub_replies(b, 1)

    assert sorted(r.execute_command("PUBSUB", "CHANNELS")) == [b"news.eu", b"news.us", b"sport"]
    assert sorted(r.execute_command("PUBSUB", "CHANNELS", "news.*")) == [b"news.eu", b"news.us"]
    assert sorted(r.execute_command("PUBSUB", "CHANNELS", "*s*")) == [b"news.eu", b"news.us", b"sport"]
    assert r.execute_command("PUBSUB", "CHANNELS", "nomatch*") == []
    assert r.execute_command("PUBSUB", "NUMSUB", "news.eu", "sport", "unknown") == \
        [b"news.eu", 2, b"sport", 1, b"unknown", 0]
    # NUMPAT counts unique patterns (Redis >= 6.2)
    assert r.execute_command("PUBSUB", "NUMPAT") == 2

    a.send_command("UNSUBSCRIBE", "sport")
    read_sub_replies(a, 1)
    a.send_command("PUNSUBSCRIBE", "x?")
    read_sub_replies(a, 1)
    assert sorted(r.execute_command("PUBSUB", "CHANNELS")) == [b"news.eu", b"news.us"]
    assert r.execute_command("PUBSUB", "NUMPAT") == 1
    # a disconnected client's subscriptions go away
    a.close()
    wait_for(lambda: r.execute_command("PUBSUB", "NUMSUB", "news.eu") == [b"news.eu", 1],
             what="NUMSUB to drop after disconnect")
    assert r.execute_command("PUBSUB", "CHANNELS") == [b"news.eu"]
    assert r.execute_command("PUBSUB", "NUMPAT") == 1
    b.close()
    wait_for(lambda: r.execute_command("PUBSUB", "NUMPAT") == 0, what="NUMPAT to drop to 0")
    assert r.execute_command("PUBSUB", "CHANNELS") == []


def test_pubsub_unknown_subcommand_and_arity_errors(server):
    c = server.raw()
    c.send_command("PUBSUB", "NOSUCH")
    c.expect(b"-ERR unknown subcommand 'NOSUCH'. Try PUBSUB HELP.\r\n")
    # Redis 7 names a subcommand as container|subcommand
    c.send_command("PUBSUB", "NUMPAT", "x")
    c.expect(b"-ERR wrong number of arguments for 'pubsub|numpat' command\r\n")
    # (CHANNELS takes 0 or 1 argument; Redis checks that in the subcommand)
    c.send_command("PUBSUB", "CHANNELS", "a", "b")
    c.expect(b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.\r\n")
    c.send_command("PUBSUB")
    c.expect(b"-ERR wrong number of arguments for 'pubsub' command\r\n")
    c.send_command("PING")
    c.expect(b"+PONG\r\n")


# --------------------------------------------------------------------------
# Glob patterns (Redis's stringmatchlen)
# --------------------------------------------------------------------------

GLOB_CASES = [
    # pattern, channels that match, channels that don't
    ("h?llo", ["hello", "hallo", "h.llo"], ["hllo", "heello", "Hello"]),
    ("h*llo", ["hllo", "hello", "heeeello", "h.x.llo"], ["hell", "hallox"]),
    ("h[ae]llo", ["hello", "hallo"], ["hillo", "hllo", "haello"]),
    ("h[^e]llo", ["hallo", "hbllo"], ["hello", "hllo"]),
    ("h[a-c]llo", ["hallo", "hbllo", "hcllo"], ["hdllo", "hAllo"]),
    ("h[c-a]llo", ["hallo", "hbllo"], ["hdllo"]),           # reversed range
    ("h[!e]llo", ["h!llo", "hello"], ["hallo"]),             # '!' is not negation in Redis
    ("h\\*llo", ["h*llo"], ["hello", "hllo"]),               # escaped star
    ("h\\?llo", ["h?llo"], ["hello"]),                       # escaped question mark
    ("h[\\]]llo", ["h]llo"], ["hallo"]),                     # escaped ] inside a class
    # (Redis's "*" does not match the empty channel name: a quirk left unspecified here)
    ("*", ["anything", "a.b.c"], []),
    ("orders.*.v1", ["orders.eu.v1", "orders..v1", "orders.a.b.v1"], ["orders.v1", "orders.eu.v2"]),
    ("exact", ["exact"], ["exactly", "Exact", "xexact"]),
    ("a*b*c", ["abc", "aXbYc", "abbc", "a.b.c.c"], ["ab", "acb", "abcd"]),
    ("**x", ["x", "yyx"], ["xy"]),
    ("x[ab]*[cd]", ["xac", "xb..d"], ["xc", "xa"]),
]

# Corner cases of Redis's matcher: an unterminated class, a trailing backslash.
GLOB_EDGE_CASES = [
    ("h[ab", ["ha", "hb"], ["h[ab", "hc"]),
    ("end\\", ["end\\"], ["end"]),
    ("[]x", [], ["x", "]x"]),
]


def redis_stringmatch(pattern, string):
    """A port of Redis 7.0's stringmatchlen() (case-sensitive), the reference
    for which channels a pattern matches."""
    p, s = pattern, string
    pi, si = 0, 0

    def at(i):
        return p[i] if i < len(p) else None

    while pi < len(p) and si < len(s):
        ch = p[pi]
        if ch == "*":
            while pi + 1 < len(p) and p[pi + 1] == "*":
                pi += 1
            if pi == len(p) - 1:
                return True
            while si < len(s):
                if redis_stringmatch(p[pi + 1:], s[si:]):
                    return True
                si += 1
            return False
        elif ch == "?":
            si += 1
        elif ch == "[":
            pi += 1
            negate = at(pi) == "^"
            if negate:
                pi += 1
            match = False
            while True:
                if at(pi) == "\\" and len(p) - pi >= 2:
                    pi += 1
                    if p[pi] == s[si]:
                        match = True
                elif at(pi) == "]":
                    break
                elif pi >= len(p):
                    pi -= 1
                    break
                elif len(p) - pi >= 3 and p[pi + 1] == "-":
                    lo, hi = sorted((p[pi], p[pi + 2]))
                    pi += 2
                    if lo <= s[si] <= hi:
                        match = True
                elif p[pi] == s[si]:
                    match = True
                pi += 1
            if negate:
                match = not match
            if not match:
                return False
            si += 1
        else:
            if ch == "\\" and len(p) - pi >= 2:
                pi += 1
            if p[pi] != s[si]:
                return False
            si += 1
        pi += 1
        if si == len(s):
            while at(pi) == "*":
                pi += 1
            break
    return pi >= len(p) and si == len(s)


def test_reference_matcher_agrees_with_the_table():
    for pattern, yes, no in GLOB_CASES + GLOB_EDGE_CASES:
        for ch in yes:
            assert redis_stringmatch(pattern, ch), (pattern, ch)
        for ch in no:
            assert not redis_stringmatch(pattern, ch), (pattern, ch)


@pytest.mark.parametrize("cases", [GLOB_CASES, GLOB_EDGE_CASES], ids=["common", "edge"])
def test_glob_patterns_match_like_redis(server, cases):
    sub = server.raw()
    patterns = [c[0] for c in cases]
    sub.send_command("PSUBSCRIBE", *patterns)
    read_sub_replies(sub, len(patterns))
    r = server.client()
    channels = sorted({ch for case in GLOB_CASES + GLOB_EDGE_CASES for ch in case[1] + case[2]})
    for ch in channels:
        expected = sorted(p for p in patterns if redis_stringmatch(p, ch))
        n = r.publish(ch, "m")
        got = []
        for _ in range(n):
            v = sub.read_reply()
            assert isinstance(v, list) and v[0] == b"pmessage" and v[2] == ch.encode() and v[3] == b"m", v
            got.append(v[1].decode())
        assert sorted(got) == expected, "channel %r matched %r, expected %r" % (ch, sorted(got), expected)
        assert n == len(expected)
    sub.assert_no_data(0.05)


def test_pattern_is_case_sensitive_and_binary(server):
    sub = server.raw()
    sub.send_command("PSUBSCRIBE", b"b\x00*", "CASE*")
    read_sub_replies(sub, 2)
    r = server.client()
    assert r.publish(b"b\x00in", "v") == 1
    sub.expect(pmessage_frame(b"b\x00*", b"b\x00in", "v"))
    assert r.publish(b"b", "v") == 0
    assert r.publish("case1", "v") == 0
    assert r.publish("CASE1", "v") == 1
    sub.expect(pmessage_frame("CASE*", "CASE1", "v"))


# --------------------------------------------------------------------------
# Payloads and ordering
# --------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"",
    b"\x00",
    b"a\x00b\x00",
    b"line1\r\nline2\r\n",
    b"\r\n$5\r\n*3\r\n",            # looks like RESP
    bytes(range(256)),
], ids=["empty", "nul", "nuls", "crlf", "resp-lookalike", "all-bytes"])
def test_binary_safe_payloads(server, payload):
    sub = server.raw()
    ch = b"bin\x00\r\nch"
    sub.send_command("SUBSCRIBE", ch)
    sub.expect(sub_reply("subscribe", ch, 1))
    assert server.client().publish(ch, payload) == 1
    sub.expect(message_frame(ch, payload))


def test_one_mebibyte_payload(server):
    payload = os.urandom(1 << 20)
    p = server.client().pubsub()
    p.subscribe("big")
    assert get_message(p)["type"] == "subscribe"
    raw = server.raw()
    raw.send_command("SUBSCRIBE", "big")
    raw.expect(sub_reply("subscribe", "big", 1))
    assert server.client().publish("big", payload) == 2
    m = get_message(p)
    assert m["type"] == "message" and m["data"] == payload
    raw.expect(message_frame("big", payload))
    p.close()


def test_messages_arrive_in_publish_order(server):
    n = 10000
    sub = server.raw()
    sub.send_command("SUBSCRIBE", "seq")
    sub.expect(sub_reply("subscribe", "seq", 1))
    r = server.client()
    expected = bytearray()
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, start + 1000):
            pipe.publish("seq", b"%d" % i)
            expected += message_frame("seq", b"%d" % i)
        assert pipe.execute() == [1] * 1000
    got = sub.read_exact(len(expected), timeout=10)
    if got != bytes(expected):
        # find the first out-of-place message for a useful message
        pos, i = 0, 0
        while pos < len(expected) and got[pos] == expected[pos]:
            pos += 1
        raise AssertionError("stream differs from publish order at byte %d: expected %r got %r"
                             % (pos, bytes(expected[pos:pos + 60]), got[pos:pos + 60]))
    sub.assert_no_data(0.05)


def test_publish_order_across_channels_and_patterns_single_subscriber(server):
    sub = server.raw()
    sub.send_command("SUBSCRIBE", "a", "b")
    read_sub_replies(sub, 2)
    r = server.client()
    pipe = r.pipeline(transaction=False)
    expected = b""
    for i in range(200):
        ch = "a" if i % 3 else "b"
        pipe.publish(ch, str(i))
        expected += message_frame(ch, str(i))
    assert pipe.execute() == [1] * 200
    sub.expect(expected)


def test_reset_from_resp3_returns_to_resp2_and_clears_name(server):
    c = server.raw()
    hello3(c)
    c.send_command("CLIENT", "SETNAME", "x")
    c.expect(b"+OK\r\n")
    c.send_command("SUBSCRIBE", "a")
    c.expect(b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
    c.send_command("RESET")
    c.expect(b"+RESET\r\n")
    c.send_command("CLIENT", "GETNAME")
    c.expect(b"$-1\r\n")                     # RESP2 null, and no name
    c.send_command("PUBSUB", "NUMSUB", "a")
    c.expect(b"*2\r\n$1\r\na\r\n:0\r\n")


def test_subcommands_are_case_insensitive(server):
    c = server.raw()
    c.send_command("pubsub", "numsub", "a")
    c.expect(b"*2\r\n$1\r\na\r\n:0\r\n")
    c.send_command("PubSub", "NumPat")
    c.expect(b":0\r\n")
    c.send_command("pubsub", "channels")
    c.expect(b"*0\r\n")


def test_fan_out_to_many_subscribers_in_order(server):
    subs = []
    for i in range(50):
        c = server.raw()
        c.send_command("SUBSCRIBE", "fan") if i % 2 else c.send_command("PSUBSCRIBE", "f?n")
        c.read_reply()
        subs.append(c)
    r = server.client()
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.publish("fan", "m%d" % i)
    assert pipe.execute() == [50] * 200
    for i, c in enumerate(subs):
        if i % 2:
            c.expect(b"".join(message_frame("fan", "m%d" % j) for j in range(200)))
        else:
            c.expect(b"".join(pmessage_frame("f?n", "fan", "m%d" % j) for j in range(200)))


def test_subscribe_to_many_channels_at_once(server):
    n = 10000
    names = ["ch:%d" % i for i in range(n)]
    c = server.raw()
    c.send_command("SUBSCRIBE", *names)
    c.expect(b"".join(sub_reply("subscribe", ch, i + 1) for i, ch in enumerate(names)), timeout=10)
    r = server.client()
    assert r.execute_command("PUBSUB", "NUMSUB", "ch:0", "ch:9999") == [b"ch:0", 1, b"ch:9999", 1]
    assert len(r.execute_command("PUBSUB", "CHANNELS", "ch:*")) == n
    assert r.publish("ch:5000", "x") == 1
    c.expect(message_frame("ch:5000", "x"))
    c.send_command("UNSUBSCRIBE")
    replies = read_sub_replies(c, n)
    assert [v[2] for v in replies] == list(range(n - 1, -1, -1))
    assert sorted(v[1] for v in replies) == sorted(ch.encode() for ch in names)
    assert r.execute_command("PUBSUB", "CHANNELS") == []


def random_pattern(rng):
    parts = []
    for _ in range(rng.randrange(1, 7)):
        parts.append(rng.choice([
            "a", "b", "c", ".", "ab", "*", "*", "?", "[ab]", "[^a]", "[a-b]", "[b-a]", "[!a]",
            "\\*", "\\?", "\\a", "\\[", "[\\]a]", "[*]", "**",
        ]))
    if rng.random() < 0.1:          # Redis's odd corners: unterminated class, trailing backslash
        parts.append(rng.choice(["[", "[a", "[^", "[a-", "\\"]))
    return "".join(parts)


def random_channel(rng):
    return "".join(rng.choice("abc.*?[]!\\") if rng.random() < 0.15 else rng.choice("abc.")
                   for _ in range(rng.randrange(0, 9)))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_patterns_match_like_redis(server, seed):
    """Many random patterns at once (the hub indexes them): every publish
    reaches exactly the patterns Redis's matcher accepts."""
    rng = random.Random(seed)
    patterns = sorted({random_pattern(rng) for _ in range(300)})
    channels = sorted({random_channel(rng) for _ in range(400)} - {""})
    sub = server.raw()
    sub.send_command("PSUBSCRIBE", *patterns)
    read_sub_replies(sub, len(patterns))
    r = server.client()
    pipe = r.pipeline(transaction=False)
    for ch in channels:
        pipe.publish(ch, "m")
    counts = pipe.execute()
    expected = {ch: sorted(p for p in patterns if redis_stringmatch(p, ch)) for ch in channels}
    wrong = [(ch, n, len(expected[ch])) for ch, n in zip(channels, counts) if n != len(expected[ch])]
    assert not wrong, "PUBLISH counts differ from Redis's matcher (channel, got, expected): %r" % wrong[:20]
    for ch in channels:
        got = []
        for _ in range(len(expected[ch])):
            v = sub.read_reply()
            assert v[0] == b"pmessage" and v[2] == ch.encode(), v
            got.append(v[1].decode())
        assert sorted(got) == expected[ch], ch
    sub.assert_no_data(0.05)
