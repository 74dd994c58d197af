"""Request/reply under churn: callers pipeline calls to a client listener
(svc) and to a Lua listener whose on_call waits for svc (lw), mixed with
PING, while listeners answer, refuse, ignore (timeouts) and disconnect, and
new ones take the name over. Every caller must get exactly one reply per
request, in request order, and each successful reply must be the one for
its request; the hub (ASan build included) must end with nothing pending."""
import random
import socket
import threading
import time

import pytest

from conftest import ConnectionClosed, Error, Status, wait_for

pytestmark = pytest.mark.hub_only

LW = """
local hub = require("hub")
return {
  listen = { "lw" },
  on_call = function(ev)
    local r, err = hub.call("svc", ev.data, 400)
    return "lw:" .. (r or ("E" .. err))
  end,
}
"""

RUN_SECONDS = 3.0


def listener_loop(server, stop, seed, stats):
    """One listener generation after another: each registers svc, answers
    requests at random (reply / HUB.ERROR / ignore), and after a while
    disconnects, so the name falls back or is taken over."""
    rnd = random.Random(seed)
    while not stop.is_set():
        c = server.raw()
        c.send_command("HUB.LISTEN", "svc")
        life = time.monotonic() + rnd.uniform(0.2, 0.8)
        try:
            while time.monotonic() < life and not stop.is_set():
                try:
                    v = c.read_reply(timeout=0.05)
                except socket.timeout:
                    continue
                if not (isinstance(v, list) and v and v[0] == b"request"):
                    continue  # confirmations, replaced notices, +OK / unknown id
                rid, payload = v[1], v[3]
                roll = rnd.random()
                if roll < 0.75:
                    c.send_command("HUB.REPLY", rid, b"R:" + payload)
                    stats["replied"] += 1
                elif roll < 0.9:
                    c.send_command("HUB.ERROR", rid, b"no:" + payload)
                    stats["refused"] += 1
                else:
                    stats["ignored"] += 1
        except ConnectionClosed:
            pass
        c.close()


def check_reply(kind, payload, v):
    """Whether v is a possible reply to request (kind, payload)."""
    if kind == "ping":
        return v == Status(b"PONG")
    if kind == "svc":
        if not isinstance(v, Error):
            return v == b"R:" + payload
        return (
            v == b"ERR no:" + payload or v.startswith(b"TIMEOUT no reply from 'svc'")
            or v in (b"ERR listener for 'svc' disconnected", b"ERR no listener for 'svc'"))
    # lw: on_call answers with svc's outcome; the caller's own timeout is longer
    if not isinstance(v, Error):
        return v in (b"lw:R:" + payload, b"lw:Eno:" + payload, b"lw:Eno listener for 'svc'",
                     b"lw:Elistener for 'svc' disconnected", b"lw:Etimeout: no reply from 'svc' within 400 ms")
    return False


def caller_loop(server, stop, seed, failures, counts):
    rnd = random.Random(seed)
    c = server.raw()
    n = 0
    while not stop.is_set():
        batch = []
        for _ in range(rnd.randint(1, 24)):
            n += 1
            payload = b"%d-%d" % (seed, n)
            kind = rnd.choice(("svc", "svc", "lw", "ping"))
            if kind == "ping":
                c.send_command("PING")
            elif kind == "svc":
                c.send_command("HUB.CALL", "svc", payload, "300")
            else:
                c.send_command("HUB.CALL", "lw", payload, "3000")
            batch.append((kind, payload))
        if rnd.random() < 0.05:  # goes away with its calls outstanding
            c.close()
            c = server.raw()
            counts["abandoned"] += len(batch)
            continue
        for kind, payload in batch:
            v = c.read_reply(timeout=10)
            counts[kind] += 1
            if not check_reply(kind, payload, v):
                failures.append((kind, payload, v))
                return
    c.close()


def test_pipelined_calls_survive_listener_churn_in_order(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    (hdir / "lw.lua").write_text(LW)
    s = server_factory(handlers_dir=str(hdir))
    stop = threading.Event()
    failures = []
    counts = {"svc": 0, "lw": 0, "ping": 0, "abandoned": 0}
    stats = {"replied": 0, "refused": 0, "ignored": 0}
    threads = [threading.Thread(target=listener_loop, args=(s, stop, i, stats)) for i in range(2)]
    threads += [threading.Thread(target=caller_loop, args=(s, stop, 100 + i, failures, counts)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    stop.set()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    assert counts["svc"] > 50 and counts["lw"] > 20 and counts["ping"] > 20 and counts["abandoned"] > 0, counts
    assert stats["replied"] > 20 and stats["refused"] > 0 and stats["ignored"] > 0, stats
    r = s.client()
    wait_for(lambda: r.info("handlers")["unicast_pending_calls"] == 0, timeout=5, what="nothing pending")
    assert r.info("clients")["blocked_clients"] == 0
    assert r.ping()
