"""Competing consumers: HUB.GSUBSCRIBE / HUB.GUNSUBSCRIBE. Each event matching
a group's pattern goes to exactly one live member of the group, round robin;
members get [gmessage, group, channel, payload] frames."""
import collections
import threading
import time

import pytest

from conftest import Error, Push, encode_command, wait_for

pytestmark = pytest.mark.hub_only


def confirm(kind, group, count):
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n" % (len(kind), kind.encode(), len(group), group.encode(), count)


def gframe(group, channel, payload, resp3=False):
    b = encode_command("gmessage", group, channel, payload)
    return b">" + b[1:] if resp3 else b


def join(server, group, *patterns, resp3=False):
    c = server.raw()
    if resp3:
        c.call("HELLO", "3")
    c.send_command("HUB.GSUBSCRIBE", group, *patterns)
    for _ in patterns:
        v = c.read_reply()
        assert v[0] == b"gsubscribe", v
    return c


def drain(c, until_kind=None, expect=None, timeout=5.0):
    """Reads gmessage payloads from c. Stops at a confirmation of until_kind,
    or once `expect` payloads were read, or (neither given) when the socket has
    been quiet for 0.2s."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expect is not None and len(got) >= expect:
            return got
        try:
            v = c.read_reply(timeout=0.2 if until_kind is None and expect is None else max(0.01, deadline - time.monotonic()))
        except Exception:
            if until_kind is None and expect is None:
                return got
            raise
        if v[0] == b"gmessage":
            got.append(v[3])
        elif until_kind is not None and v[0] == until_kind.encode():
            return got
        else:
            raise AssertionError("unexpected frame %r" % (v,))
    raise AssertionError("timed out with %d messages" % len(got))


def test_confirmations_have_psubscribe_shape(server):
    c = server.raw()
    c.send_command("HUB.GSUBSCRIBE", "workers", "jobs.*", "tasks.*")
    c.expect(confirm("gsubscribe", "workers", 1) + confirm("gsubscribe", "workers", 2))
    c.send_command("HUB.GSUBSCRIBE", "workers", "jobs.*")     # already a member
    c.expect(confirm("gsubscribe", "workers", 2))
    c.send_command("SUBSCRIBE", "plain")
    c.expect(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nplain\r\n:3\r\n")
    c.send_command("HUB.GUNSUBSCRIBE", "workers", "jobs.*", "nope.*")
    c.expect(confirm("gunsubscribe", "workers", 2) + confirm("gunsubscribe", "workers", 2))
    c.send_command("HUB.GUNSUBSCRIBE", "workers")
    c.expect(confirm("gunsubscribe", "workers", 1))
    c.send_command("HUB.GUNSUBSCRIBE", "workers")             # nothing left to leave
    c.expect(confirm("gunsubscribe", "workers", 1))


def test_leave_all_patterns_of_one_group_only(server):
    c = server.raw()
    c.send_command("HUB.GSUBSCRIBE", "a", "x.*", "y.*")
    c.send_command("HUB.GSUBSCRIBE", "b", "x.*")
    for _ in range(3):
        c.read_reply()
    c.send_command("HUB.GUNSUBSCRIBE", "a")
    replies = sorted([c.read_reply(), c.read_reply()], key=lambda v: v[2])
    assert [v[0] for v in replies] == [b"gunsubscribe", b"gunsubscribe"]
    assert sorted(v[2] for v in replies) == [1, 2]
    p = server.client()
    assert p.publish("x.1", "m") == 1
    c.expect(gframe("b", "x.1", "m"))


def test_resp2_member_is_in_subscribed_mode(server):
    c = join(server, "g", "jobs.*")
    v = c.call("ECHO", "x")
    assert isinstance(v, Error) and b"only" in v
    assert c.call("PING") == [b"pong", b""]
    c.send_command("HUB.GUNSUBSCRIBE", "g")
    c.expect(confirm("gunsubscribe", "g", 0))
    assert c.call("ECHO", "x") == b"x"


def test_wrong_arity(server):
    c = server.raw()
    assert isinstance(c.call("HUB.GSUBSCRIBE", "g"), Error)
    assert isinstance(c.call("HUB.GUNSUBSCRIBE"), Error)


def test_resp3_frames_are_pushes(server):
    c = server.raw()
    c.call("HELLO", "3")
    c.send_command("HUB.GSUBSCRIBE", "g", "jobs.*")
    c.expect(b">3\r\n$10\r\ngsubscribe\r\n$1\r\ng\r\n:1\r\n")
    assert c.call("ECHO", "still usable") == b"still usable"  # RESP3: no subscribed mode
    assert server.client().publish("jobs.1", "payload") == 1
    c.expect(gframe("g", "jobs.1", "payload", resp3=True))
    v = c.call("HUB.GUNSUBSCRIBE", "g", "jobs.*")
    assert isinstance(v, Push) and v == [b"gunsubscribe", b"g", 0]


def test_publish_counts_one_per_group(server):
    members = [join(server, "g1", "jobs.*") for _ in range(3)]
    other = join(server, "g2", "jobs.*")
    plain = server.client().pubsub()
    plain.subscribe("jobs.1")
    p = server.client()
    wait_for(lambda: p.pubsub_numsub("jobs.1")[0][1] == 1)
    assert p.publish("jobs.1", "x") == 3          # g1 once, g2 once, the subscriber once
    assert p.publish("jobs.2", "x") == 2
    assert p.publish("other", "x") == 0
    got = sum(len(drain(m)) for m in members)
    assert got == 2
    assert drain(other) == [b"x", b"x"]
    assert p.info("events")["consumer_groups"] == 2


def test_each_event_exactly_once_round_robin(server):
    n_members, n_events = 3, 3000
    members = [join(server, "workers", "jobs.*") for _ in range(n_members)]
    p = server.client()
    results = [None] * n_members

    def reader(i):
        results[i] = drain(members[i], timeout=30)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(n_members)]
    for t in threads:
        t.start()
    pipe = p.pipeline(transaction=False)
    for seq in range(n_events):
        pipe.publish("jobs.created", str(seq))
    counts = pipe.execute()
    for t in threads:
        t.join()
    assert counts == [1] * n_events
    seen = collections.Counter(int(x) for r in results for x in r)
    assert len(seen) == n_events and set(seen.values()) == {1}
    # round robin over a fixed membership: an even split
    assert [len(r) for r in results] == [n_events // n_members] * n_members


def test_events_go_to_a_live_member_after_a_disconnect(server):
    a = join(server, "g", "jobs.*")
    b = join(server, "g", "jobs.*")
    p = server.client()
    a.close()
    wait_for(lambda: p.info("clients")["connected_clients"] == 2)
    for i in range(10):
        assert p.publish("jobs.x", str(i)) == 1
    assert drain(b, expect=10) == [str(i).encode() for i in range(10)]
    b.close()
    wait_for(lambda: p.info("events")["consumer_groups"] == 0)
    assert p.publish("jobs.x", "late") == 0


def test_reset_leaves_groups(server):
    c = join(server, "g", "jobs.*")
    assert c.call("RESET") == b"RESET"
    p = server.client()
    assert p.publish("jobs.x", "m") == 0
    assert p.info("events")["consumer_groups"] == 0


def test_members_join_and_leave_under_load(server):
    """A publisher streams numbered events while members come and go; one
    member stays throughout. Members leave cleanly (HUB.GUNSUBSCRIBE, then
    read up to its confirmation), so every event is delivered to exactly one
    member: nothing missing, nothing duplicated."""
    n_events = 20000
    stayer = join(server, "workers", "load.*")
    p = server.client()
    done = threading.Event()
    replies = []

    def publish():
        pipe = p.pipeline(transaction=False)
        for seq in range(n_events):
            pipe.publish("load.ev", str(seq))
            if seq % 200 == 199:
                replies.extend(pipe.execute())
                time.sleep(0.002)
        replies.extend(pipe.execute())
        done.set()

    stayer_got = []
    churn_got = []

    def stay():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if done.is_set() and len(stayer_got) + len(churn_got) >= n_events:
                return
            try:
                v = stayer.read_reply(timeout=0.1)
            except Exception:
                continue
            assert v[0] == b"gmessage"
            stayer_got.append(v[3])

    pub = threading.Thread(target=publish)
    st = threading.Thread(target=stay)
    pub.start()
    st.start()
    churns = 0
    while not done.is_set():
        c = join(server, "workers", "load.*")
        time.sleep(0.01)
        c.send_command("HUB.GUNSUBSCRIBE", "workers", "load.*")
        churn_got.extend(drain(c, until_kind="gunsubscribe"))
        c.close()
        churns += 1
    pub.join()
    st.join()
    assert replies == [1] * n_events
    seen = collections.Counter(int(x) for x in stayer_got + churn_got)
    missing = n_events - len(seen)
    dups = {k: v for k, v in seen.items() if v > 1}
    assert missing == 0 and not dups, (missing, list(dups.items())[:5])
    assert churns >= 3
    assert len(churn_got) > 0


def test_abrupt_member_disconnect_under_load_never_duplicates(server):
    """Members that vanish without leaving may lose what was in flight to
    them (at most once), but nothing is ever delivered twice and the live
    member gets everything published after the others are gone."""
    stayer = join(server, "g", "q.*")
    p = server.client()
    goners = [join(server, "g", "q.*") for _ in range(3)]
    for i in range(300):
        assert p.publish("q.e", str(i)) == 1
    for g in goners:
        g.close()
    wait_for(lambda: p.info("clients")["connected_clients"] == 2)
    for i in range(300, 400):
        assert p.publish("q.e", str(i)) == 1
    got = [int(x) for x in drain(stayer, expect=175)]
    assert len(got) == len(set(got))
    assert set(range(300, 400)) <= set(got)
