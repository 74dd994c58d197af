"""The containment harness: runs a hostile case while another client measures
the hub's PING latency and its memory, then says whether the hub stayed alive,
responsive and within its bounds.

    with Watchdog(srv) as wd:
        ...the hostile case...
    wd.check(max_stall=..., max_rss=...)   # raises AssertionError with figures

The watchdog is its own connection: it sends PING, waits for +PONG, records
the round trip, sleeps `interval`, and repeats for as long as the block runs.
A ping still outstanding when the block ends is waited for (up to `grace`
seconds) and counts with its full latency, so a stall that outlives the case
is never hidden. Memory is sampled from /proc/<pid>/status (VmRSS) at the same
pace, and VmHWM (the peak RSS the kernel saw) is read at the end.

Bounds: tests pass `max_stall` in seconds; STALL_BOUND is a default that
leaves room for a noisy shared 2-core machine and the sanitizer build, while
still failing by orders of magnitude on the stalls containment removes (those
were seconds to hours)."""
import socket
import threading
import time

from conftest import IS_ASAN

# Default: the longest PING round trip a hostile case may cause.
STALL_BOUND = 1.0 if IS_ASAN else 0.5


def rss_bytes(pid, field="VmRSS"):
    """A /proc/<pid>/status memory field in bytes (0 if the process is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watchdog:
    """PING latency and RSS of one server while a `with` block runs."""

    def __init__(self, srv, interval=0.005, grace=30.0):
        self.srv = srv
        self.interval = interval
        self.grace = grace
        self.latencies = []
        self.max_latency = 0.0
        self.rss_samples = []
        self.error = None
        self.rss_start = 0
        self.hwm_end = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.sock = socket.create_connection((self.srv.host, self.srv.port), timeout=self.grace)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rss_start = rss_bytes(self.srv.pid)
        self._ping()  # connected and answered before the case starts
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.grace + 5)
        self.hwm_end = rss_bytes(self.srv.pid, "VmHWM")
        try:
            self.sock.close()
        except OSError:
            pass
        return False

    def _ping(self):
        t0 = time.monotonic()
        self.sock.sendall(b"PING\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            d = self.sock.recv(64)
            if not d:
                raise ConnectionError("hub closed the watchdog connection")
            got += d
        if got != b"+PONG\r\n":
            raise ConnectionError("unexpected PING reply %r" % got)
        dt = time.monotonic() - t0
        self.latencies.append(dt)
        self.max_latency = max(self.max_latency, dt)

    def _run(self):
        try:
            while not self._stop.is_set():
                self._ping()
                self.rss_samples.append(rss_bytes(self.srv.pid))
                time.sleep(self.interval)
        except Exception as e:  # noqa: BLE001 -- reported by check()
            self.error = e

    @property
    def max_rss(self):
        return max(self.rss_samples + [self.rss_start])

    def summary(self):
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] if lat else 0
        return ("pings=%d p50=%.1fms max=%.1fms rss start=%.1fMB max=%.1fMB hwm=%.1fMB"
                % (len(lat), p50 * 1e3, self.max_latency * 1e3, self.rss_start / 1e6,
                   self.max_rss / 1e6, self.hwm_end / 1e6))

    def check(self, max_stall=STALL_BOUND, max_rss=None, max_rss_growth=None):
        """Asserts: the hub is alive, the watchdog's pings all came back,
        none took longer than max_stall seconds, and (when given) RSS stayed
        under max_rss bytes / grew by less than max_rss_growth bytes."""
        assert self.srv.alive(), "hub died: %s\n%s" % (self.summary(), self.srv.output()[-3000:])
        assert self.error is None, "watchdog failed: %r (%s)" % (self.error, self.summary())
        assert self.latencies, "watchdog measured nothing"
        assert self.max_latency <= max_stall, "PING stalled %.3fs > %.3fs (%s)" % (
            self.max_latency, max_stall, self.summary())
        peak = max(self.max_rss, self.hwm_end)
        if max_rss is not None:
            assert peak <= max_rss, "RSS peaked at %.1fMB > %.1fMB (%s)" % (
                peak / 1e6, max_rss / 1e6, self.summary())
        if max_rss_growth is not None:
            grew = peak - self.rss_start
            assert grew <= max_rss_growth, "RSS grew %.1fMB > %.1fMB (%s)" % (
                grew / 1e6, max_rss_growth / 1e6, self.summary())
        return self
