"""The versioned rollout of the README's walk-through, on the example handlers
themselves (handlers/quote_v2.lua and handlers/quote_v1_gateway.lua): new
clients call quote.v2, old ones keep calling quote.v1 through the gateway, a
listener taking quote.v1 over tells the previous holder, the name falls back
when it goes, and HUB.STATS shows the old name's traffic until it is retired."""
import json
import os
import shutil
import threading

import pytest
import redis

from conftest import IO_TIMEOUT, REPO, Error, flat_to_dict, wait_for

pytestmark = pytest.mark.hub_only

FILES = ("quote_v2.lua", "quote_v1_gateway.lua", "lib/payload.lua")


@pytest.fixture
def hdir(tmp_path):
    d = tmp_path / "handlers"
    (d / "lib").mkdir(parents=True)
    return d


def install(hdir, *names):
    for n in names:
        shutil.copy(os.path.join(REPO, "handlers", n), str(hdir / n))


def stats(r, name):
    for e in r.execute_command("HUB.STATS", name):
        e = flat_to_dict(e)
        if e[b"name"] == name.encode():
            return e
    return None


def listen(c, name):
    c.send_command("HUB.LISTEN", name)
    assert c.read_reply() == [b"listen", name.encode(), 1]


def test_old_clients_keep_working_through_the_gateway_until_it_is_retired(server_factory, hdir):
    install(hdir, *FILES)
    s = server_factory(handlers_dir=str(hdir))
    r = s.client()
    v2 = json.loads(r.execute_command("HUB.CALL", "quote.v2", '{"sku":"A-1","qty":2}'))
    assert v2 == {"sku": "A-1", "qty": 2, "unit_cents": 1250, "total_cents": 2500, "currency": "EUR"}
    assert r.execute_command("HUB.CALL", "quote.v1", "A-1") == b"1250"
    with pytest.raises(redis.ResponseError, match="quote.v1: unknown sku \"Z-9\""):
        r.execute_command("HUB.CALL", "quote.v1", "Z-9")

    # A listener outside the hub takes quote.v1 over: the gateway is told.
    ops = s.raw()
    ops.send_command("SUBSCRIBE", "ops.listener.replaced")
    ops.read_reply()
    svc = s.raw()
    listen(svc, "quote.v1")
    assert json.loads(ops.read_reply()[2]) == {"name": "quote.v1", "handler": "quote_v1_gateway"}
    assert stats(r, "quote.v1")[b"listeners"] == 2
    caller = s.raw()
    caller.send_command("HUB.CALL", "quote.v1", "B-2")
    kind, rid, name, payload = svc.read_reply()
    assert (kind, name, payload) == (b"request", b"quote.v1", b"B-2")
    svc.call("HUB.REPLY", rid, "399")
    assert caller.read_reply() == b"399"

    # It goes away: quote.v1 falls back to the gateway.
    svc.close()
    wait_for(lambda: stats(r, "quote.v1")[b"listeners"] == 1, what="fallback")
    assert r.execute_command("HUB.CALL", "quote.v1", "B-2") == b"399"

    # Retiring: the operator sees the calls, removes the gateway, callers get a clear error.
    e = stats(r, "quote.v1")
    assert e[b"called"] == 4 and e[b"last_minute"] == 4
    os.unlink(str(hdir / "quote_v1_gateway.lua"))
    assert r.execute_command("HUB.RELOAD", "quote_v1_gateway") == [b"quote_v1_gateway: unloaded"]
    with pytest.raises(redis.ResponseError, match="no listener for 'quote.v1'"):
        r.execute_command("HUB.CALL", "quote.v1", "A-1")
    assert stats(r, "quote.v1")[b"listeners"] == 0
    assert r.execute_command("HUB.CALL", "quote.v2", '{"sku":"C-3"}').startswith(b'{')


def test_the_gateway_taking_over_from_a_legacy_service_lets_it_finish_in_flight(server_factory, hdir):
    """The other direction: a legacy v1 service outside the hub holds
    quote.v1; deploying the gateway takes the name over. The service is told
    with a push, still answers the request it already had, and later
    requests reach the gateway: none lost, none answered twice."""
    install(hdir, "quote_v2.lua", "lib/payload.lua")
    s = server_factory(handlers_dir=str(hdir))
    r = s.client()
    legacy = s.raw()
    listen(legacy, "quote.v1")
    caller = s.raw()
    caller.send_command("HUB.CALL", "quote.v1", "A-1")
    kind, rid, _, _ = legacy.read_reply()
    assert kind == b"request"

    install(hdir, "quote_v1_gateway.lua")
    assert r.execute_command("HUB.RELOAD", "quote_v1_gateway") == [b"quote_v1_gateway: loaded v1"]
    assert legacy.read_reply() == [b"replaced", b"quote.v1", b"handler quote_v1_gateway"]
    assert r.execute_command("HUB.CALL", "quote.v1", "C-3") == b"10000"   # the gateway now

    assert legacy.call("HUB.REPLY", rid, "1250-from-legacy") == b"OK"    # in flight: still its own
    assert caller.read_reply() == b"1250-from-legacy"
    assert legacy.call("HUB.REPLY", rid, "again") == Error(b"ERR unknown request id")  # once only
    caller.send_command("PING")
    assert caller.read_reply() == b"PONG"                                 # nothing else came


def test_redis_cli_calls_through_the_gateway_and_a_remote_listener(server_factory, hdir):
    """An operator's redis-cli reaches the same names: the Lua gateway at once,
    a remote listener by waiting for its HUB.REPLY, and errors as (error)."""
    install(hdir, *FILES)
    s = server_factory(handlers_dir=str(hdir))
    out = s.cli("HUB.CALL", "quote.v1", "C-3")
    assert (out.returncode, out.stdout) == (0, "10000\n")
    assert s.cli("HUB.CALL", "quote.v1", "Z-9").stdout.strip() == 'ERR quote.v1: unknown sku "Z-9"'
    svc = s.raw()
    listen(svc, "quote.v1")
    caller = threading.Thread(target=lambda: results.append(s.cli("HUB.CALL", "quote.v1", "A-1")))
    results = []
    caller.start()
    kind, rid, _, payload = svc.read_reply()
    assert (kind, payload) == (b"request", b"A-1")
    assert svc.call("HUB.REPLY", rid, "from-remote") == b"OK"
    caller.join(IO_TIMEOUT)
    assert results[0].stdout == "from-remote\n"
    assert s.cli("HUB.CALL", "quote.v1", "A-1", "50").stdout.startswith("TIMEOUT no reply from 'quote.v1' within 50 ms")
