"""HUB.STATS and INFO's Events section: per-event-name traffic statistics
(published, delivered, called, last-minute rate, last seen, subscribers and
listeners now),
bounded by stats-max-names with least-recently-seen eviction."""
import time

import pytest
import redis

from conftest import Error, flat_to_dict, wait_for

pytestmark = pytest.mark.hub_only

FIELDS = {b"name", b"published", b"delivered", b"called", b"last_minute", b"rate_per_sec",
          b"last_seen_ms", b"subscribers", b"listeners"}


def stats(r, *pattern):
    """HUB.STATS over redis-py (RESP2): a list of dicts, in reply order."""
    return [flat_to_dict(e) for e in r.execute_command("HUB.STATS", *pattern)]


def by_name(r, *pattern):
    return {e[b"name"]: e for e in stats(r, *pattern)}


def info_events(r):
    return r.info("events")


def test_counts_are_exact_after_known_publishes(server):
    r = server.client()
    sub = server.client().pubsub()
    sub.subscribe("orders.created.v1")
    psub = server.client().pubsub()
    psub.psubscribe("orders.*")
    wait_for(lambda: r.pubsub_numsub("orders.created.v1")[0][1] == 1 and r.pubsub_numpat() == 1)
    before = time.time() * 1000
    for i in range(7):
        assert r.publish("orders.created.v1", "e%d" % i) == 2
    after = time.time() * 1000
    e = by_name(r)[b"orders.created.v1"]
    assert set(e) == FIELDS
    assert e[b"published"] == 7
    assert e[b"delivered"] == 14
    assert e[b"called"] == 0
    assert e[b"last_minute"] == 7
    assert float(e[b"rate_per_sec"]) == pytest.approx(7 / 60)
    assert before - 1 <= e[b"last_seen_ms"] <= after + 1
    assert e[b"subscribers"] == 2


def test_subscribers_are_counted_at_query_time(server):
    r = server.client()
    p = server.client().pubsub()
    p.psubscribe("metrics.*", "metrics.cpu")
    wait_for(lambda: r.pubsub_numpat() == 2)
    r.publish("metrics.cpu", "1")
    r.publish("metrics.mem", "1")
    s = by_name(r)
    assert s[b"metrics.cpu"][b"subscribers"] == 2
    assert s[b"metrics.mem"][b"subscribers"] == 1
    assert s[b"metrics.cpu"][b"delivered"] == 2
    p.punsubscribe()
    wait_for(lambda: r.pubsub_numpat() == 0)
    s = by_name(r)
    assert s[b"metrics.cpu"][b"subscribers"] == 0
    assert s[b"metrics.cpu"][b"published"] == 1  # history stays


def test_unsubscribed_names_are_tracked_with_zero_deliveries(server):
    r = server.client()
    assert r.publish("nobody.listens", "x") == 0
    e = by_name(r)[b"nobody.listens"]
    assert (e[b"published"], e[b"delivered"], e[b"subscribers"]) == (1, 0, 0)


def test_pattern_filters_and_entries_are_sorted_by_name(server):
    r = server.client()
    for name in ("orders.created.v2", "users.joined.v1", "orders.created.v1", "orders.paid.v1"):
        r.publish(name, "x")
    assert [e[b"name"] for e in stats(r)] == [b"orders.created.v1", b"orders.created.v2",
                                               b"orders.paid.v1", b"users.joined.v1"]
    assert [e[b"name"] for e in stats(r, "orders.*.v1")] == [b"orders.created.v1", b"orders.paid.v1"]
    assert stats(r, "nothing*") == []


def test_resp3_entries_are_maps(server):
    c = server.raw()
    c.call("HELLO", "3")
    c.call("PUBLISH", "a.b", "x")
    c.call("PUBLISH", "a.b", "y")
    reply = c.call("HUB.STATS", "a.*")
    assert isinstance(reply, list) and len(reply) == 1
    e = reply[0]
    assert isinstance(e, dict) and set(e) == FIELDS
    assert e[b"published"] == 2
    assert isinstance(e[b"rate_per_sec"], float) and e[b"rate_per_sec"] > 0


def test_wrong_arity_is_an_error(server):
    c = server.raw()
    reply = c.call("HUB.STATS", "a", "b")
    assert isinstance(reply, Error) and b"wrong number of arguments" in reply


def test_info_events_section_summarises(server):
    r = server.client()
    for i in range(3):
        r.publish("n%d" % i, "x")
    r.publish("n0", "x")
    ev = info_events(r)
    assert ev["event_names_tracked"] == 3
    assert ev["event_names_evicted"] == 0
    assert ev["event_names_total_events"] == 4
    assert ev["event_names_max"] == 10000
    assert "event_names_tracked" in r.info()  # part of the default INFO


def test_bound_evicts_least_recently_seen(server_factory):
    s = server_factory(config={"stats-max-names": 3})
    r = s.client()
    for name in ("a", "b", "c"):
        r.publish(name, "x")
    r.publish("a", "x")           # a is now the most recently seen; b the least
    r.publish("d", "x")           # evicts b
    assert [e[b"name"] for e in stats(r)] == [b"a", b"c", b"d"]
    r.publish("e", "x")           # evicts c
    assert [e[b"name"] for e in stats(r)] == [b"a", b"d", b"e"]
    ev = info_events(r)
    assert ev["event_names_tracked"] == 3
    assert ev["event_names_evicted"] == 2
    assert ev["event_names_max"] == 3
    r.publish("b", "x")           # a returning name starts again from zero
    assert by_name(r)[b"b"][b"published"] == 1


def test_many_names_stay_within_the_bound(server_factory):
    s = server_factory(config={"stats-max-names": 50})
    r = s.client()
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.publish("flood.%d" % i, "x")
    pipe.execute()
    ev = info_events(r)
    assert ev["event_names_tracked"] == 50
    assert ev["event_names_evicted"] == 950
    names = {e[b"name"] for e in stats(r)}
    assert names == {b"flood.%d" % i for i in range(950, 1000)}


def test_retiring_a_versioned_name_watch_it_go_quiet(server):
    """The operator's workflow: v1 and v2 both flow, producers move to v2,
    v1's publish count stops growing and its subscribers can be told to go."""
    r = server.client()
    for _ in range(3):
        r.publish("orders.created.v1", "x")
        r.publish("orders.created.v2", "x")
    first = by_name(r, "orders.created.*")
    for _ in range(3):
        r.publish("orders.created.v2", "x")
    second = by_name(r, "orders.created.*")
    assert second[b"orders.created.v1"][b"published"] == first[b"orders.created.v1"][b"published"] == 3
    assert second[b"orders.created.v1"][b"last_seen_ms"] == first[b"orders.created.v1"][b"last_seen_ms"]
    assert second[b"orders.created.v2"][b"published"] == 6


def echo_hub(server_factory, tmp_path):
    """A hub whose one handler answers echo.v1; hdir is its handlers directory."""
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    (hdir / "echo.lua").write_text(
        'return { listen = { "echo.v1" }, on_call = function(ev) return ev.data end }')
    s = server_factory(handlers_dir=str(hdir))
    s.hdir = hdir
    return s


def test_calls_are_counted_per_name_answered_or_not(server_factory, tmp_path):
    """HUB.CALL counts toward `called` for its name, whether a Lua handler
    answers it or nobody listens (an operator retiring a name sees both)."""
    s = echo_hub(server_factory, tmp_path)
    r = s.client()
    for i in range(3):
        assert r.execute_command("HUB.CALL", "echo.v1", "x%d" % i) == b"x%d" % i
    with pytest.raises(redis.ResponseError, match="no listener"):
        r.execute_command("HUB.CALL", "gone.v1", "x")
    st = by_name(r)
    assert st[b"echo.v1"][b"called"] == 3
    assert st[b"echo.v1"][b"published"] == 0
    assert st[b"gone.v1"][b"called"] == 1


def test_listeners_count_the_holder_and_its_fallbacks_now(server_factory, tmp_path):
    """`listeners` is the unicast registrations for the name as of the query:
    a Lua handler, then two clients stacked over it; it drops as they go, so
    an operator sees when an old versioned name has nobody left."""
    s = echo_hub(server_factory, tmp_path)
    r = s.client()
    r.execute_command("HUB.CALL", "echo.v1", "x")
    assert by_name(r)[b"echo.v1"][b"listeners"] == 1
    a, b = s.raw(), s.raw()
    for c in (a, b):
        c.send_command("HUB.LISTEN", "echo.v1")
        assert c.read_reply()[0] == b"listen"
    assert a.read_reply()[:2] == [b"replaced", b"echo.v1"]   # b took over from a
    assert by_name(r)[b"echo.v1"][b"listeners"] == 3
    b.close()
    wait_for(lambda: by_name(r)[b"echo.v1"][b"listeners"] == 2)
    a.send_command("HUB.UNLISTEN", "echo.v1")
    assert a.read_reply()[0] == b"unlisten"
    assert by_name(r)[b"echo.v1"][b"listeners"] == 1
    (s.hdir / "echo.lua").unlink()
    assert r.execute_command("HUB.RELOAD", "echo") == [b"echo: unloaded"]
    e = by_name(r)[b"echo.v1"]
    assert (e[b"listeners"], e[b"subscribers"], e[b"called"]) == (0, 0, 1)
