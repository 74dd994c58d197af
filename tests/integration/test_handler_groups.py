"""Lua handlers as competing consumers: a handler with `group = "name"` joins
(group, pattern) for each of its subscribe patterns instead of subscribing,
and shares the group's events with other handlers and with clients in
HUB.GSUBSCRIBE: each event goes to exactly one member. A member whose queue
is full refuses, so the group offers the event to the next one."""
import collections
import os
import threading

import pytest

from test_groups import drain, join
from test_handlers import handlers, reload, write

pytestmark = pytest.mark.hub_only

# A worker reports each event it runs as "<handler name>:<payload>" on done.
WORKER = """
local hub = require("hub")
return {
  group = "workers",
  subscribe = { "jobs.*" },
  on_event = function(ev) hub.publish("done", hub.name .. ":" .. ev.data) end,
}
"""


@pytest.fixture
def start(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()

    def run(files, **options):
        for name, text in files.items():
            write(hdir, name, text)
        s = server_factory(config=options or None, handlers_dir=str(hdir))
        s.hdir = hdir
        return s
    return run


def collector(server):
    """A raw client subscribed to "done"."""
    c = server.raw()
    c.send_command("SUBSCRIBE", "done")
    c.read_reply()
    return c


def read_done(c, n):
    """n "done" payloads as (who, payload) pairs."""
    out = []
    for _ in range(n):
        v = c.read_reply()
        assert v[0] == b"message" and v[1] == b"done", v
        who, _, data = v[2].partition(b":")
        out.append((who.decode(), data))
    return out


def test_lua_and_client_members_share_a_group_round_robin(start):
    s = start({"w1.lua": WORKER, "w2.lua": WORKER})
    member = join(s, "workers", "jobs.*")
    done = collector(s)
    r = s.client()
    assert handlers(r)["w1"]["group"] == "workers"
    assert handlers(r)["w1"]["subscribe"] == ["jobs.*"]
    pipe = r.pipeline(transaction=False)
    for i in range(300):
        pipe.publish("jobs.x", str(i))
    assert pipe.execute() == [1] * 300          # one delivery per event: the group
    by_lua = read_done(done, 200)
    by_client = drain(member, expect=100)
    seen = collections.Counter([int(p) for _, p in by_lua] + [int(p) for p in by_client])
    assert sorted(seen) == list(range(300)) and set(seen.values()) == {1}
    per = collections.Counter(w for w, _ in by_lua)
    assert per == {"w1": 100, "w2": 100}        # round robin over three members
    assert s.client().publish("other", "x") == 0


def test_a_full_queue_refuses_and_the_next_member_takes_it(start):
    """handler-queue-limit 4: a burst of 40 in one write fills the Lua member's
    queue; the events it refuses go to the client member, none are lost."""
    s = start({"w1.lua": WORKER}, **{"handler-queue-limit": "4"})
    member = join(s, "workers", "jobs.*")
    done = collector(s)
    p = s.raw()
    p.sock.sendall(b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\njobs.x\r\n$%d\r\n%d\r\n" % (len(str(i)), i)
                            for i in range(40)))
    assert [p.read_reply() for _ in range(40)] == [1] * 40
    client = [int(x) for x in drain(member, expect=36)]
    lua = [int(x) for _, x in read_done(done, 4)]
    assert sorted(lua + client) == list(range(40))  # round robin alone would give each 20
    assert handlers(s.client())["w1"]["dropped"] == 0
    assert s.client().info("events")["consumer_group_misses"] == 0


def test_a_sole_lua_member_with_a_full_queue_counts_a_miss(start):
    s = start({"w1.lua": WORKER}, **{"handler-queue-limit": "4"})
    done = collector(s)
    p = s.raw()
    p.sock.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\njobs.x\r\n$1\r\nx\r\n" * 10)
    replies = [p.read_reply() for _ in range(10)]
    assert replies == [1] * 4 + [0] * 6          # PUBLISH counts only what a member took
    assert len(read_done(done, 4)) == 4
    assert s.client().info("events")["consumer_group_misses"] == 6


def test_a_handler_does_not_get_its_own_publications_from_its_group(start):
    s = start({"w1.lua": WORKER, "feeder.lua": """
local hub = require("hub")
return { subscribe = { "feed" }, on_event = function(ev) hub.publish("jobs.fed", ev.data) end }
"""})
    done = collector(s)
    r = s.client()
    assert r.publish("feed", "a") == 1
    assert read_done(done, 1) == [("w1", b"a")]


def test_reload_keeps_membership_and_loses_nothing(start):
    """Reloading a sole group member 30 times while events stream: each
    event runs exactly once, in order (membership is kept across versions)."""
    s = start({"w1.lua": WORKER})
    done = collector(s)
    r = s.client()
    n = 3000
    stop = threading.Event()

    outcomes = []

    def reloader():
        rr = s.client()
        for _ in range(30):
            if stop.is_set():
                break
            outcomes.extend(reload(rr, "w1", "FORCE"))

    t = threading.Thread(target=reloader)
    t.start()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.publish("jobs.x", str(i))
        if i % 100 == 99:
            assert pipe.execute() == [1] * 100
    stop.set()
    t.join()
    got = [int(x) for _, x in read_done(done, n)]
    assert got == list(range(n))
    assert outcomes and all(o.startswith("w1: reloaded") for o in outcomes), outcomes[:3]
    assert s.client().info("events")["consumer_group_misses"] == 0


def test_reload_into_another_group_and_unload_leave_the_old_group(start):
    s = start({"w1.lua": WORKER})
    member = join(s, "workers", "jobs.*")
    other = join(s, "crew", "jobs.*")
    done = collector(s)
    r = s.client()
    for i in range(4):
        assert r.publish("jobs.x", str(i)) == 2     # one per group: workers, crew
    assert len(read_done(done, 2)) == 2 and len(drain(member, expect=2)) == 2
    assert len(drain(other, expect=4)) == 4
    write(s.hdir, "w1.lua", WORKER.replace('"workers"', '"crew"'))
    assert reload(r, "w1") == ["w1: reloaded v2"]
    assert handlers(r)["w1"]["group"] == "crew"
    for i in range(4):
        assert r.publish("jobs.x", str(i)) == 2
    assert drain(member, expect=4) == [b"0", b"1", b"2", b"3"]   # w1 left workers
    assert len(read_done(done, 2)) == 2 and len(drain(other, expect=2)) == 2
    os.unlink(os.path.join(str(s.hdir), "w1.lua"))
    assert reload(r, "w1") == ["w1: unloaded"]
    assert r.publish("jobs.x", "z") == 2
    assert drain(other, expect=1) == [b"z"]


def test_dropping_group_turns_members_into_subscribers(start):
    s = start({"w1.lua": WORKER, "w2.lua": WORKER})
    done = collector(s)
    r = s.client()
    write(s.hdir, "w1.lua", WORKER.replace('group = "workers",', ""))
    assert reload(r, "w1") == ["w1: reloaded v2"]
    assert handlers(r)["w1"]["group"] is None
    assert r.publish("jobs.x", "e") == 2            # w1 subscribed, w2's group
    assert sorted(w for w, _ in read_done(done, 2)) == ["w1", "w2"]


@pytest.mark.parametrize("body, message", [
    ('group = 7, subscribe = { "a" }, on_event = function() end', "'group' must be a non-empty string, got number"),
    ('group = "", subscribe = { "a" }, on_event = function() end', "'group' must be a non-empty string, got an empty string"),
    ('group = "g"', "'group' without 'subscribe'"),
    ('group = "g", listen = { "n" }, on_call = function() end', "'group' without 'subscribe'"),
])
def test_malformed_group_fails_the_load(start, body, message):
    s = start({"bad.lua": "return { %s }" % body})
    h = handlers(s.client())["bad"]
    assert h["state"] == "failed"
    assert message in h["last_error"]
    assert s.client().info("events")["consumer_groups"] == 0
