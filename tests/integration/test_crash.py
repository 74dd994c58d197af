"""The kill -9 crash test (issue 11): real processes, real files.

Publishers pipeline writes over several connections and record every write
whose reply they read (acknowledged); a consumer reads with XREADGROUP and
XACKs some of what it got, leaving the rest pending. The hub is killed with
SIGKILL (by PID) after a random delay, so kills land mid-batch, mid-commit
and mid-XACK; it is restarted on the same `dir` and, after each restart:

- every acknowledged entry is in its stream exactly once, with its fields,
  and ids are strictly increasing (XRANGE over the whole stream);
- a written but unacknowledged entry is there at most once, and what a
  connection wrote in one round is there as a prefix (nothing lands after a
  hole: the store commits in order);
- new auto ids are above every acknowledged one;
- each group's pending list holds every entry the consumer saw and did not
  XACK; an entry whose XACK reply was read never comes back (not pending,
  not delivered again); last-delivered ids never move backwards;
- at the end the database passes `PRAGMA integrity_check` (sqlite3 shell).

Kills: CRASH_KILLS (default 24, 12 on the ASan build); `make crash` runs the
same test with CRASH_KILLS=200. The first CRASH_FSYNC_KILLS (default 3)
rounds run with `durability fsync`, the rest with `os`. CRASH_SEED replays
a run. The figures (kills, entries checked, lost, duplicates, restart times)
are printed and written to build/test-logs/crash-<build>.txt.

Captured PUBLISHes are added by `capture_ops` once the hub has
HUB.STREAM ... CAPTURE; until then the publishers send XADD only."""
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import IS_ASAN, REPO, ConnectionClosed, Error, RawClient, flat_to_dict

pytestmark = pytest.mark.hub_only

KILLS = int(os.environ.get("CRASH_KILLS") or (12 if IS_ASAN else 24))
FSYNC_KILLS = int(os.environ.get("CRASH_FSYNC_KILLS") or 3)
SEED = int(os.environ.get("CRASH_SEED") or time.time_ns() % 1000000007)
STREAMS = ("s0", "s1")
CAPTURE = "cap"          # the capturing stream, when the hub has capture
GROUP = "g"
PUBLISHERS = 3
CONSUMERS = ("c1", "c2")
# Each round: load for a random delay, then kill. The publishers are paced
# (writes per second each) so that they are still busy when the kill lands
# and the whole-stream checks (and the run time) stay bounded.
# Past 24 kills (make crash) the rate shrinks so the streams end about as
# long as in `make test`: every check reads the whole stream.
DELAY = (0.02, 0.35)
RATE = (1500 if IS_ASAN else 4000) * min(1.0, 24.0 / max(KILLS, 1))


def parse_id(b):
    ms, seq = b.split(b"-")
    return int(ms), int(seq)


def tag_of(fields):
    """The publisher's tag in an entry's fields (XADD: field t; capture:
    data is the tag)."""
    d = flat_to_dict(fields)
    return d.get(b"t") or d.get(b"data")


# --------------------------------------------------------------------------
# The model of what the clients know
# --------------------------------------------------------------------------

class Ledger:
    """Everything the clients learned, across rounds (shared by threads;
    a lock guards the sets the consumer and checker share)."""

    def __init__(self):
        self.lock = threading.Lock()
        # written: tag -> (stream, round, conn, n); acked: tag -> id or None (PUBLISH)
        self.written = {}
        self.acked = {}
        self.refused = set()             # tags answered with an error: never stored
        self.max_acked = {}              # stream -> highest acknowledged id
        # consumer side, per stream: id -> consumer
        self.pending = {k: {} for k in STREAMS}      # seen, not XACKed
        self.ack_unsure = {k: {} for k in STREAMS}   # XACK sent, reply not read
        self.xacked = {k: set() for k in STREAMS}    # XACK reply read
        self.delivered_max = {k: (0, 0) for k in STREAMS}  # highest id delivered with reply read
        self.last_delivered = {k: (0, 0) for k in STREAMS}  # last seen in XINFO GROUPS
        self.stats = {"kills": 0, "acked_checked": 0, "lost": 0, "duplicates": 0,
                      "restart_ms": [], "entries_at_restart": [], "xacked": 0,
                      "pending_checked": 0, "refused": 0}
        self.unacked_present = set()


# --------------------------------------------------------------------------
# Load: publishers and the consumer
# --------------------------------------------------------------------------

def xadd_ops(conn_no, n, stream):
    """One XADD with an auto id and the tag."""
    tag = b"p%d-%d-%d" % (conn_no[0], conn_no[1], n)
    return stream, tag, (b"XADD", stream.encode(), b"*", b"t", tag, b"pad", b"x" * 32)


def capture_ops(conn_no, n):
    """One PUBLISH a capturing stream stores (fields name, data=tag)."""
    tag = b"c%d-%d-%d" % (conn_no[0], conn_no[1], n)
    return CAPTURE, tag, (b"PUBLISH", b"ev.crash", tag)


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def publisher(port, ledger, rnd, conn_no, capture, stop, errors):
    """Pipelines batches of 1..64 writes; each reply read acknowledges its
    write. Returns when the connection dies (the kill) or stop is set."""
    try:
        c = RawClient(port, timeout=10)
    except OSError:
        return
    n = 0
    try:
        t0 = time.monotonic()
        while not stop.is_set():
            ahead = n / RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            batch = []
            for _ in range(rnd.randint(1, 64)):
                if capture and rnd.random() < 0.3:
                    op = capture_ops(conn_no, n)
                else:
                    op = xadd_ops(conn_no, n, STREAMS[conn_no[0] % len(STREAMS)])
                with ledger.lock:
                    ledger.written[op[1]] = (op[0], conn_no[1], conn_no[0], n)
                batch.append(op)
                n += 1
            c.send(b"".join(encode(op[2]) for op in batch))
            for stream, tag, args in batch:
                r = c.read_reply()
                with ledger.lock:
                    if isinstance(r, Error):
                        ledger.refused.add(tag)
                        ledger.stats["refused"] += 1
                    elif args[0] == b"XADD":
                        ledger.acked[tag] = r
                        i = parse_id(r)
                        if i > ledger.max_acked.get(stream, (0, 0)):
                            ledger.max_acked[stream] = i
                    else:
                        ledger.acked[tag] = None
    except (ConnectionClosed, OSError, socket.timeout):
        pass
    except Exception as e:  # a bad reply: fail the test, not just the thread
        errors.append("publisher %r: %r" % (conn_no, e))
    finally:
        c.close()


def consumer(port, ledger, rnd, stop, errors):
    """XREADGROUP > over both streams as c1/c2 in turn; XACKs about half of
    each delivery (pipelined with the next read now and then)."""
    try:
        c = RawClient(port, timeout=10)
    except OSError:
        return
    try:
        while not stop.is_set():
            name = rnd.choice(CONSUMERS)
            r = c.call(b"XREADGROUP", b"GROUP", GROUP, name, b"COUNT", b"50",
                       b"STREAMS", *STREAMS, *([b">"] * len(STREAMS)))
            if isinstance(r, Error):
                errors.append("XREADGROUP: %r" % r)
                return
            if not r:
                time.sleep(0.005)
                continue
            acks = []
            with ledger.lock:
                for key, entries in r:
                    k = key.decode()
                    for eid, _fields in entries:
                        i = parse_id(eid)
                        if i <= ledger.last_delivered[k] or eid in ledger.xacked[k]:
                            errors.append("%s %s delivered again after restart (last-delivered %r)"
                                          % (k, eid, ledger.last_delivered[k]))
                        ledger.pending[k][eid] = name.encode()
                        ledger.delivered_max[k] = max(ledger.delivered_max[k], i)
                        if rnd.random() < 0.5:
                            acks.append((k, eid))
                # now and then also XACK entries left pending before (maybe
                # before a restart), which bounds the pending lists
                for k in STREAMS:
                    old = [e for e in ledger.pending[k] if (k, e) not in acks] if rnd.random() < 0.2 else []
                    if len(old) > 500:
                        acks.extend((k, e) for e in rnd.sample(old, 20))
            for k in STREAMS:
                ids = [eid for kk, eid in acks if kk == k]
                if not ids:
                    continue
                with ledger.lock:
                    for eid in ids:
                        ledger.ack_unsure[k][eid] = ledger.pending[k].pop(eid)
                got = c.call(b"XACK", k, GROUP, *ids)
                with ledger.lock:
                    if got != len(ids):
                        errors.append("XACK %s of %d pending ids answered %r" % (k, len(ids), got))
                    for eid in ids:
                        del ledger.ack_unsure[k][eid]
                        ledger.xacked[k].add(eid)
                    ledger.stats["xacked"] += len(ids)
    except (ConnectionClosed, OSError, socket.timeout):
        pass
    except Exception as e:
        errors.append("consumer: %r" % (e,))
    finally:
        c.close()


# --------------------------------------------------------------------------
# Checks after a restart
# --------------------------------------------------------------------------

def check_stream(c, key, ledger, problems):
    """XRANGE over the whole stream against what the publishers know."""
    rows = c.call("XRANGE", key, "-", "+")
    assert not isinstance(rows, Error), rows
    n = c.call("XLEN", key)
    if n != len(rows):
        problems.append("%s: XLEN %r but XRANGE has %d entries" % (key, n, len(rows)))
    seen = {}
    prev = (0, 0)
    by_conn = {}
    for eid, fields in rows:
        i = parse_id(eid)
        if i <= prev:
            problems.append("%s: id %s not above the previous one %r" % (key, eid, prev))
        prev = i
        tag = tag_of(fields)
        if tag is None or tag not in ledger.written:
            problems.append("%s: entry %s with unknown fields %r" % (key, eid, fields[:4]))
            continue
        if tag in seen:
            ledger.stats["duplicates"] += 1
            problems.append("%s: %s stored twice (%s and %s)" % (key, tag, seen[tag], eid))
            continue
        seen[tag] = eid
        w = ledger.written[tag]
        if w[0] != key:
            problems.append("%s: %s belongs in %s" % (key, tag, w[0]))
        if tag in ledger.refused:
            problems.append("%s: %s was refused with an error but is stored" % (key, tag))
        if tag in ledger.acked:
            if ledger.acked[tag] is not None and ledger.acked[tag] != eid:
                problems.append("%s: %s acknowledged as %s, stored as %s" % (key, tag, ledger.acked[tag], eid))
        else:
            ledger.unacked_present.add(tag)
        by_conn.setdefault((w[1], w[2]), []).append(w[3])
    for tag, eid in ledger.acked.items():
        if ledger.written[tag][0] != key:
            continue
        ledger.stats["acked_checked"] += 1
        if tag not in seen:
            ledger.stats["lost"] += 1
            problems.append("%s: acknowledged %s (%s) lost" % (key, tag, eid))
    # one connection, one round: stored in the order sent, and a prefix of it
    # (the store commits in order; refused writes are the only holes)
    for (rnd_no, conn_no), ns in by_conn.items():
        if ns != sorted(ns):
            problems.append("%s: round %d conn %d stored out of order" % (key, rnd_no, conn_no))
        if any(b"p%d-%d-%d" % (conn_no, rnd_no, n) in ledger.refused for n in range(max(ns) + 1)):
            continue
        if ns != list(range(len(ns))):
            problems.append("%s: round %d conn %d stored with a hole: %r..." % (key, rnd_no, conn_no, ns[:20]))
    return len(rows)


def check_group(c, key, ledger, problems):
    """The group's pending list and last-delivered id against what the
    consumer knows; then the consumer's knowledge is reset to the truth
    (unsure XACKs resolved, pending entries it never saw adopted)."""
    groups = [flat_to_dict(g) for g in c.call("XINFO", "GROUPS", key)]
    g = [x for x in groups if x[b"name"] == GROUP.encode()]
    if not g:
        problems.append("%s: group %s lost" % (key, GROUP))
        return
    last = parse_id(g[0][b"last-delivered-id"])
    if last < ledger.delivered_max[key]:
        problems.append("%s: last-delivered %r below the delivered %r" % (key, last, ledger.delivered_max[key]))
    if last < ledger.last_delivered[key]:
        problems.append("%s: last-delivered moved back from %r to %r" % (key, ledger.last_delivered[key], last))
    ledger.last_delivered[key] = last
    rows = c.call("XPENDING", key, GROUP, "-", "+", "100000000")
    pel = {r[0]: r[1] for r in rows}
    if len(rows) != len(pel):
        problems.append("%s: XPENDING lists an id twice" % key)
    ids = [parse_id(e) for e in pel]
    if ids != sorted(ids):
        problems.append("%s: XPENDING not in id order" % key)
    for eid, who in ledger.pending[key].items():
        ledger.stats["pending_checked"] += 1
        if eid not in pel:
            problems.append("%s: pending %s (seen by %s, never XACKed) missing" % (key, eid, who))
        elif pel[eid] != who:
            problems.append("%s: pending %s owned by %s, not %s" % (key, eid, pel[eid], who))
    for eid in ledger.xacked[key]:
        if eid in pel:
            problems.append("%s: %s XACKed (reply read) is pending again" % (key, eid))
    for eid, who in pel.items():
        if parse_id(eid) > last:
            problems.append("%s: pending %s above last-delivered %r" % (key, eid, last))
        if eid not in ledger.pending[key] and eid not in ledger.ack_unsure[key]:
            ledger.pending[key][eid] = who  # delivered, reply never read: adopt it
    for eid, who in ledger.ack_unsure[key].items():
        if eid in pel:
            ledger.pending[key][eid] = who
        else:
            ledger.xacked[key].add(eid)
    ledger.ack_unsure[key].clear()
    c.call("PING")


def check_all(srv_port, ledger, capture):
    c = RawClient(srv_port, timeout=30)
    problems = []
    try:
        total = 0
        for key in STREAMS + ((CAPTURE,) if capture else ()):
            total += check_stream(c, key, ledger, problems)
            m = ledger.max_acked.get(key)
            if m:
                new = parse_id(c.call("XADD", key, "*", "probe", "1"))
                if new <= m:
                    problems.append("%s: new auto id %r not above acknowledged %r" % (key, new, m))
                c.call("XDEL", key, "%d-%d" % new)
        for key in STREAMS:
            check_group(c, key, ledger, problems)
    finally:
        c.close()
    return total, problems


# --------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------

def hub_has_capture(c):
    r = c.call("HUB.STREAM", "LIST")
    return not (isinstance(r, Error) and b"unknown command" in r.lower())


def kill9(srv):
    srv.stopped = True  # killed on purpose
    srv.close_clients()
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()


def write_report(ledger, seed, capture):
    s = ledger.stats
    ms = sorted(s["restart_ms"])
    lines = [
        "crash test (%s build, seed %d, capture %s)" % ("asan" if IS_ASAN else "release", seed,
                                                       "on" if capture else "off"),
        "kills: %d (%d with durability fsync)" % (s["kills"], min(FSYNC_KILLS, s["kills"])),
        "acknowledged entries checked: %d (cumulative over restarts; %d distinct)"
        % (s["acked_checked"], len(ledger.acked)),
        "lost: %d, duplicates: %d" % (s["lost"], s["duplicates"]),
        "written unacknowledged and present after a restart: %d; refused: %d" % (len(ledger.unacked_present), s["refused"]),
        "XACKed with reply read: %d; pending entries checked: %d" % (s["xacked"], s["pending_checked"]),
        "restart until PING: median %.0f ms, max %.0f ms (entries stored at the last restart: %d)"
        % (ms[len(ms) // 2] if ms else 0, ms[-1] if ms else 0,
           s["entries_at_restart"][-1] if s["entries_at_restart"] else 0),
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = os.path.join(REPO, "build", "test-logs")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "crash-%s.txt" % ("asan" if IS_ASAN else "release")), "w") as f:
        f.write(text)


def test_kill9_loses_nothing_acknowledged(server_factory, workdir):
    rnd = random.Random(SEED)
    data = os.path.join(workdir, "crashdata")
    ledger = Ledger()
    config = {"dir": data, "durability": "fsync" if FSYNC_KILLS > 0 else "os",
              "stream-cache-memory": "1mb"}  # small window: checks read cold rows too
    srv = server_factory(config=dict(config))
    c = srv.raw()
    for k in STREAMS:
        assert c.call("XGROUP", "CREATE", k, GROUP, "0", "MKSTREAM") == b"OK"
    capture = hub_has_capture(c)
    if capture:
        assert not isinstance(c.call("HUB.STREAM", "CREATE", CAPTURE, "CAPTURE", "ev.*"), Error)
    c.close()
    for round_no in range(KILLS):
        stop = threading.Event()
        errors = []
        threads = [threading.Thread(target=publisher,
                                    args=(srv.port, ledger, random.Random(rnd.random()), (i, round_no),
                                          capture, stop, errors))
                   for i in range(PUBLISHERS)]
        threads.append(threading.Thread(target=consumer,
                                        args=(srv.port, ledger, random.Random(rnd.random()), stop, errors)))
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(*DELAY))
        kill9(srv)
        ledger.stats["kills"] += 1
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "a client thread hung after the kill"
        assert not errors, "seed %d round %d: %s" % (SEED, round_no, errors[:5])
        config["durability"] = "fsync" if round_no + 1 < FSYNC_KILLS else "os"
        t0 = time.monotonic()
        srv = server_factory(config=dict(config))
        ledger.stats["restart_ms"].append((time.monotonic() - t0) * 1000)
        entries, problems = check_all(srv.port, ledger, capture)
        ledger.stats["entries_at_restart"].append(entries)
        assert not problems, "seed %d round %d:\n%s" % (SEED, round_no, "\n".join(problems[:30]))
    kill9(srv)
    write_report(ledger, SEED, capture)
    assert ledger.stats["lost"] == 0 and ledger.stats["duplicates"] == 0
    assert len(ledger.acked) > KILLS, "the publishers got too few acknowledgements to prove anything"
    assert ledger.stats["xacked"] > 0 and ledger.stats["pending_checked"] > 0
    db = os.path.join(data, "luahub.db")
    r = subprocess.run(["sqlite3", db, "PRAGMA integrity_check;"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)


def test_checks_catch_a_lost_entry_and_a_lost_pending_entry(server_factory, workdir):
    """The checks can fail: one round of load, a kill, then an acknowledged
    entry and a pending entry are deleted with the sqlite3 shell; the checks
    after the restart must report both."""
    rnd = random.Random(SEED)
    data = os.path.join(workdir, "crashdata")
    ledger = Ledger()
    srv = server_factory(config={"dir": data, "durability": "os"})
    c = srv.raw()
    for k in STREAMS:
        assert c.call("XGROUP", "CREATE", k, GROUP, "0", "MKSTREAM") == b"OK"
    c.close()
    stop, errors = threading.Event(), []
    threads = [threading.Thread(target=publisher, args=(srv.port, ledger, rnd, (0, 0), False, stop, errors)),
               threading.Thread(target=consumer, args=(srv.port, ledger, rnd, stop, errors))]
    for t in threads:
        t.start()
    wait = time.monotonic() + 10
    while time.monotonic() < wait and not (len(ledger.acked) > 100 and ledger.pending["s0"]):
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors
    kill9(srv)
    lost = parse_id(sorted(ledger.acked.values(), key=parse_id)[len(ledger.acked) // 2])
    gone = parse_id(next(iter(ledger.pending["s0"])))
    sql = ("DELETE FROM entries WHERE ms = %d AND seq = %d; DELETE FROM pending WHERE ms = %d AND seq = %d;"
           % (lost[0] - 2 ** 63, lost[1] - 2 ** 63, gone[0] - 2 ** 63, gone[1] - 2 ** 63))
    r = subprocess.run(["sqlite3", os.path.join(data, "luahub.db"), sql], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    srv = server_factory(config={"dir": data, "durability": "os"})
    _, problems = check_all(srv.port, ledger, False)
    text = "\n".join(problems)
    assert "acknowledged" in text and "lost" in text, text
    assert "pending b'%d-%d'" % gone in text and "never XACKed) missing" in text, text
    assert ledger.stats["lost"] == 1
