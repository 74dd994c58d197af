#!/usr/bin/env bash
# bench/restart_time.sh -- restart time with N stored stream entries (default
# 1000000): luahub loading its SQLite store vs redis-server loading the same
# entries from its AOF. A measurement for the bench report, not a test.
#
#   bench/restart_time.sh [N]
#
# Both servers get the same N pipelined `XADD s * f <64 bytes>` commands (real
# rows through the hub, real AOF records in Redis), are stopped (SIGTERM, by
# PID), restarted on the same directory, and timed from exec until PING
# answers +PONG (Redis answers -LOADING until it has replayed the AOF; its
# INFO must then say loading:0). luahub `durability os` vs redis
# `appendonly yes appendfsync everysec`, AOF rewrites off so Redis replays
# the commands (auto-aof-rewrite would turn them into an RDB preamble).
# The hub is also timed after a kill -9 (its WAL replayed by SQLite).
# Servers run on free ports in temp dirs; every one is stopped by PID.
# Environment: HUB_BIN (default build/luahub), REDIS_BIN (redis-server).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
N=${1:-1000000}
HUB_BIN=${HUB_BIN:-$PWD/build/luahub}
REDIS_BIN=${REDIS_BIN:-$(command -v redis-server)}
[ -x "$HUB_BIN" ] || { echo "restart_time.sh: $HUB_BIN not built (make)" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/luahub-restart.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

/usr/bin/python3 - "$N" "$HUB_BIN" "$REDIS_BIN" "$TMP" <<'EOF'
import atexit, os, signal, socket, subprocess, sys, time

N, HUB, REDIS, TMP = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
procs = []


@atexit.register
def stop_all():
    """Every server this script started, stopped by PID (on errors too)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(argv, log):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=TMP)
    procs.append(p)
    return p, t0


def ping_ready(port, p, t0, timeout=600):
    """Seconds from t0 until PING answers +PONG (not -LOADING)."""
    while time.monotonic() - t0 < timeout:
        if p.poll() is not None:
            sys.exit("server exited (rc %s) while starting" % p.returncode)
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            time.sleep(0.002)
            continue
        try:
            s.sendall(b"PING\r\n")
            got = s.recv(64)
        except OSError:
            got = b""
        s.close()
        if got.startswith(b"+PONG"):
            return time.monotonic() - t0
        time.sleep(0.002)
    sys.exit("server not ready after %ds" % timeout)


def call(port, cmd):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(cmd)
    out = b""
    while not out.endswith(b"\r\n") or (out.startswith(b"$") and out.count(b"\r\n") < 2):
        d = s.recv(1 << 16)
        if not d:
            break
        out += d
        if out.startswith(b"$"):
            n = int(out[1:out.index(b"\r\n")])
            if len(out) >= out.index(b"\r\n") + 2 + n + 2:
                break
    s.close()
    return out


def fill(port):
    """N pipelined XADDs, chunks of 10000, every reply read."""
    payload = b"v" * 64
    cmd = b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$64\r\n" + payload + b"\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    t0 = time.monotonic()
    left = N
    while left:
        k = min(10000, left)
        s.sendall(cmd * k)
        got, crlf, last = b"", 0, b""
        while crlf < 2 * k:
            d = s.recv(1 << 20)
            if not d:
                sys.exit("connection closed while filling")
            # an error reply starts a line; a read may also start inside an id ("...-1022")
            if (d.startswith(b"-") and last in (b"", b"\n")) or b"\r\n-" in d:
                sys.exit("error reply while filling: %r" % d[:200])
            # a CRLF split between two reads counts too (else the count falls short
            # and the loop waits for its 60 s socket timeout)
            crlf += d.count(b"\r\n") + (last == b"\r" and d[:1] == b"\n")
            last = d[-1:]
        left -= k
    s.close()
    return time.monotonic() - t0


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    p.wait(timeout=600)


def du(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)))


def mb(n):
    return "%.0f MB" % (n / 1e6)


def xlen(port):
    r = call(port, b"XLEN s\r\n")
    return int(r[1:].strip())


results = {}
log = open(os.path.join(TMP, "servers.log"), "ab")

# --- luahub -------------------------------------------------------------------
hdir, hand = os.path.join(TMP, "hubdata"), os.path.join(TMP, "handlers")
os.makedirs(hand)
port = free_port()
hub = lambda: [HUB, "--port", str(port), "--bind", "127.0.0.1", "--handlers", hand,
               "--dir", hdir, "--durability", "os", "--loglevel", "warning"]
p, t0 = start(hub(), log)
ping_ready(port, p, t0)
fill_s = fill(port)
assert xlen(port) == N
stop(p)
print("luahub: %d XADDs in %.1f s; %s in %s" % (N, fill_s, mb(du(hdir)), hdir.replace(TMP, "$TMP")))
p, t0 = start(hub(), log)
results["hub"] = ping_ready(port, p, t0)
assert xlen(port) == N
rss = int([l for l in open("/proc/%d/status" % p.pid) if l.startswith("VmRSS")][0].split()[1]) * 1024
os.kill(p.pid, signal.SIGKILL)
p.wait()
p, t0 = start(hub(), log)
results["hub-kill9"] = ping_ready(port, p, t0)
assert xlen(port) == N
stop(p)

# --- redis-server ---------------------------------------------------------------
rdir = os.path.join(TMP, "redisdata")
os.makedirs(rdir)
port = free_port()
red = lambda: [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", rdir, "--save", "",
               "--appendonly", "yes", "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0",
               "--loglevel", "warning"]
p, t0 = start(red(), log)
ping_ready(port, p, t0)
rfill_s = fill(port)
assert xlen(port) == N
stop(p)
adir = os.path.join(rdir, "appendonlydir")
print("redis:  %d XADDs in %.1f s; AOF %s" % (N, rfill_s, mb(du(adir) if os.path.isdir(adir) else 0)))
p, t0 = start(red(), log)
results["redis"] = ping_ready(port, p, t0)
loading = call(port, b"INFO persistence\r\n")
assert b"loading:0" in loading, loading[:300]
assert xlen(port) == N
stop(p)

print("restart until PING with %d entries:" % N)
print("  luahub (SIGTERM before)  %8.3f s   (RSS after start %s)" % (results["hub"], mb(rss)))
print("  luahub (kill -9 before)  %8.3f s" % results["hub-kill9"])
print("  redis-server from AOF    %8.3f s   (loading:0)" % results["redis"])
print("  ratio luahub/redis       %8.3f" % (results["hub"] / results["redis"]))
EOF
