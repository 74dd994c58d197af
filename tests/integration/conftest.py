"""Integration-test fixtures for luahub.

The same tests run against the hub (default) and against real redis-server
(LUAHUB_TARGET=redis): passing against Redis proves they encode Redis's
semantics, passing against the hub proves the hub has them.

    LUAHUB_BIN=build/luahub /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
    LUAHUB_TARGET=redis     /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

Fixtures:
  server          a fresh server for one test (default options)
  server_factory  start(config={...}) -> Server; every server it starts is
                  stopped (by PID) at the end of the test and, for the hub,
                  its stderr is checked for sanitizer reports
  spawn           runs the server binary with arbitrary arguments (no
                  readiness wait), for tests of startup failures and signals
  tmp_path        pytest's own

Helpers: Server.raw() (exact-byte socket client), Server.client() (redis-py,
RESP2), Server.cli(...) (redis-cli -p PORT ...).

Handler tests: write_handler(hdir, name, text) writes a file atomically; the
`hdir` fixture is an empty handlers directory and `start({file: text},
**options)` a hub serving it (srv.hdir is the directory); hub_call /
hub_call_error run HUB.CALL and return the reply or the error text.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("LUAHUB_TARGET", "hub").strip().lower() or "hub"
if TARGET not in ("hub", "redis"):
    raise RuntimeError("LUAHUB_TARGET must be 'hub' or 'redis', not %r" % TARGET)
IS_REDIS = TARGET == "redis"
IS_HUB = not IS_REDIS


def _hub_bin():
    b = os.environ.get("LUAHUB_BIN", "build/luahub")
    if not os.path.isabs(b) and not os.path.exists(b):
        b = os.path.join(REPO, b)
    return os.path.abspath(b)


HUB_BIN = _hub_bin()
REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
# Sanitized builds start and run slower; give them more time to get ready.
IS_ASAN = IS_HUB and ("asan" in HUB_BIN or os.environ.get("LUAHUB_ASAN") == "1")
READY_TIMEOUT = 15.0 if IS_ASAN else 5.0
STOP_TIMEOUT = 5.0
IO_TIMEOUT = 5.0 if IS_ASAN else 3.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


# --------------------------------------------------------------------------
# pytest hooks: the hub_only marker
# --------------------------------------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "hub_only: behaviour that only luahub has (skipped when LUAHUB_TARGET=redis)")


def pytest_collection_modifyitems(config, items):
    if not IS_REDIS:
        return
    skip = pytest.mark.skip(reason="hub-only behaviour (LUAHUB_TARGET=redis)")
    for item in items:
        if "hub_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return "luahub integration target: %s (%s)" % (TARGET, REDIS_BIN if IS_REDIS else HUB_BIN)


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------

def free_port():
    """A TCP port that was free a moment ago (bind to 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_is_listening(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# RESP parsing
# --------------------------------------------------------------------------

class Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


class ProtocolViolation(Exception):
    """The server sent something that is not RESP."""


class Status(bytes):
    """A simple string (+OK)."""


class Error(bytes):
    """An error reply (-ERR ...): returned, never raised."""


class Push(list):
    """A RESP3 push frame (>)."""


class RSet(list):
    """A RESP3 set (~)."""


def _line(buf, pos):
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete()
    return buf[pos:end], end + 2


def parse_reply(buf, pos=0):
    """Parses one RESP2/RESP3 reply from buf at pos. Returns (value, newpos);
    raises Incomplete when more bytes are needed."""
    if pos >= len(buf):
        raise Incomplete()
    t = buf[pos:pos + 1]
    line, pos = _line(buf, pos + 1)
    if t == b"+":
        return Status(line), pos
    if t == b"-":
        return Error(line), pos
    if t in (b":", b"("):
        return int(line), pos
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete()
        data = bytes(buf[pos:pos + n])
        if buf[pos + n:pos + n + 2] != b"\r\n":
            raise ProtocolViolation("bulk not terminated by CRLF at %d" % (pos + n))
        pos += n + 2
        if t == b"=":
            data = data[4:]  # strip the "txt:" format
        if t == b"!":
            data = Error(data)
        return data, pos
    if t in (b"*", b">", b"~"):
        n = int(line)
        if n < 0:
            return None, pos
        out = []
        for _ in range(n):
            v, pos = parse_reply(buf, pos)
            out.append(v)
        if t == b">":
            return Push(out), pos
        if t == b"~":
            return RSet(out), pos
        return out, pos
    if t == b"%":
        n = int(line)
        out = {}
        for _ in range(n):
            k, pos = parse_reply(buf, pos)
            v, pos = parse_reply(buf, pos)
            out[k if not isinstance(k, list) else tuple(k)] = v
        return out, pos
    if t == b"|":  # attribute: skip it, return the value that follows
        n = int(line)
        for _ in range(2 * n):
            _, pos = parse_reply(buf, pos)
        return parse_reply(buf, pos)
    if t == b"_":
        return None, pos
    if t == b",":
        return float(line), pos
    if t == b"#":
        return line == b"t", pos
    raise ProtocolViolation("unknown RESP type byte %r" % t)


def encode_command(*args):
    """RESP multibulk encoding of a command."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def flat_to_dict(lst):
    """A RESP2 flattened map ([k1, v1, k2, v2, ...]) as a dict."""
    return {lst[i]: lst[i + 1] for i in range(0, len(lst), 2)}


# --------------------------------------------------------------------------
# Raw socket client, for exact-byte assertions
# --------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class RawClient:
    def __init__(self, port=None, host="127.0.0.1", unix_path=None, rcvbuf=None, timeout=IO_TIMEOUT):
        self.timeout = timeout
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (host, port)
        if rcvbuf is not None:
            # before connect, so the advertised window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(target)
        self.buf = bytearray()
        self.closed_by_peer = False

    # -- writing
    def send(self, data):
        self.sock.sendall(data)

    def send_command(self, *args):
        self.send(encode_command(*args))

    # -- reading
    def _fill(self, deadline):
        """Reads more bytes into the buffer; raises socket.timeout at the
        deadline and ConnectionClosed on EOF/reset."""
        if self.closed_by_peer:
            raise ConnectionClosed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.closed_by_peer = True
            raise ConnectionClosed()
        self.buf += d

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def expect(self, data, timeout=None):
        """Reads exactly len(data) bytes and asserts they are data."""
        try:
            got = self.read_exact(len(data), timeout)
        except socket.timeout:
            got = bytes(self.buf)
            raise AssertionError("timed out waiting for %r; got only %r" % (data[:300], got[:300]))
        except ConnectionClosed:
            raise AssertionError("connection closed waiting for %r; got only %r" % (data[:300], bytes(self.buf[:300])))
        if got != data:
            # show a little of what follows, for a readable message
            try:
                self._fill(time.monotonic() + 0.05)
            except (socket.timeout, ConnectionClosed):
                pass
            more = bytes(self.buf[:200])
            raise AssertionError("expected %r\n     got %r (followed by %r)" % (data[:500], got[:500], more))
        return got

    def read_reply_raw(self, timeout=None):
        """Reads one whole reply; returns (value, the exact bytes)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                v, end = parse_reply(self.buf, 0)
            except Incomplete:
                self._fill(deadline)
                continue
            raw = bytes(self.buf[:end])
            del self.buf[:end]
            return v, raw

    def read_reply(self, timeout=None):
        return self.read_reply_raw(timeout)[0]

    def call(self, *args, timeout=None):
        self.send_command(*args)
        return self.read_reply(timeout)

    def read_until_close(self, timeout=None):
        """Reads until the peer closes; returns every byte read. Raises
        AssertionError if the connection is still open at the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnectionClosed:
                out = bytes(self.buf)
                self.buf.clear()
                return out
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs (read %r)"
                                     % (timeout or self.timeout, bytes(self.buf[:200])))

    def assert_no_data(self, wait):
        """Asserts that nothing arrives within `wait` seconds (and the
        connection stays open)."""
        if self.buf:
            raise AssertionError("unexpected data %r" % bytes(self.buf[:200]))
        deadline = time.monotonic() + wait
        try:
            self._fill(deadline)
        except socket.timeout:
            return
        except ConnectionClosed:
            raise AssertionError("connection closed unexpectedly")
        raise AssertionError("unexpected data %r" % bytes(self.buf[:200]))

    def is_open(self, wait=0.05):
        """True if the peer has not closed the connection (data is buffered)."""
        if self.closed_by_peer:
            return False
        try:
            self._fill(time.monotonic() + wait)
        except socket.timeout:
            return True
        except ConnectionClosed:
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------

def option_args(config):
    """{key: value} -> ["--key", "value", ...] (a value of None -> no value;
    a list/tuple -> several words)."""
    args = []
    for k, v in (config or {}).items():
        args.append("--" + k)
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            args.extend(str(x) for x in v)
        else:
            args.append(str(v))
    return args


def wait_ready(proc, host, port, timeout=READY_TIMEOUT, unix_path=None):
    """Polls until the server answers PING with +PONG. Returns "ready",
    "exited" (the process ended) or "timeout"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            if unix_path:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(0.5)
                s.connect(unix_path)
            else:
                s = socket.create_connection((host, port), timeout=0.5)
        except OSError:
            time.sleep(0.005)
            continue
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            got = b""
            while len(got) < 7:
                d = s.recv(64)
                if not d:
                    break
                got += d
            if got.startswith(b"+PONG\r\n"):
                return "ready"
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.005)
    return "timeout"


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Server:
    """One server process on 127.0.0.1:port, started and stopped by PID."""

    def __init__(self, workdir, config=None, port=None, extra_args=None, handlers_dir=None):
        self.workdir = workdir
        self.config = dict(config or {})
        self.extra_args = list(extra_args or [])
        self.port = port
        self.host = "127.0.0.1"
        self.handlers_dir = handlers_dir
        self.proc = None
        self.returncode = None
        self.stopped = False          # stopped (or signalled) on purpose
        self.stdout_path = os.path.join(workdir, "server.%d.stdout" % id(self))
        self.stderr_path = os.path.join(workdir, "server.%d.stderr" % id(self))
        self._clients = []

    # -- command line
    def argv(self):
        if IS_REDIS:
            return [REDIS_BIN, "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--bind", "127.0.0.1", "--hz", "100"] + option_args(self.config) + self.extra_args
        if self.handlers_dir is None:
            self.handlers_dir = tempfile.mkdtemp(prefix="handlers.", dir=self.workdir)
        return [HUB_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                "--handlers", self.handlers_dir] + option_args(self.config) + self.extra_args

    # -- lifecycle
    def start(self, ready_timeout=READY_TIMEOUT):
        if IS_HUB and not os.access(HUB_BIN, os.X_OK):
            pytest.fail("hub binary %s not found or not executable (build it: make build/luahub)" % HUB_BIN)
        fixed_port = self.port is not None
        for attempt in range(5):
            if not fixed_port:
                self.port = free_port()
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL, cwd=self.workdir)
            state = self._wait_ready(ready_timeout)
            if state == "ready":
                return self
            output = self.output()
            if state == "exited" and "in use" in output and not fixed_port and attempt < 4:
                continue  # lost a bind race for the port: try another one
            self.kill()
            pytest.fail("server did not become ready (%s, rc=%s): %s\n--- output ---\n%s"
                        % (state, self.proc.returncode, " ".join(self.argv()), output[-3000:]))
        return self

    def _wait_ready(self, timeout):
        return wait_ready(self.proc, self.host, self.port, timeout)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        """Sends a signal to this server's PID (marks the stop as intended)."""
        self.stopped = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code (None if still running)."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Returns the exit
        code (negative for a signal)."""
        self.close_clients()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.stopped = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    # -- output
    def stderr(self):
        return read_text(self.stderr_path)

    def output(self):
        return read_text(self.stdout_path) + read_text(self.stderr_path)

    def sanitizer_report(self):
        text = self.output()
        for m in SANITIZER_MARKERS:
            if m in text:
                return text
        return None

    # -- clients
    def raw(self, **kw):
        c = RawClient(self.port, self.host, **kw)
        self._clients.append(c)
        return c

    def client(self, **kw):
        kw.setdefault("socket_timeout", IO_TIMEOUT)
        kw.setdefault("socket_connect_timeout", IO_TIMEOUT)
        r = redis.Redis(host=self.host, port=self.port, **kw)
        self._clients.append(r)
        return r

    def cli(self, *args, timeout=IO_TIMEOUT, input=None):
        """Runs redis-cli -p PORT args...; returns the CompletedProcess (text)."""
        return subprocess.run([REDIS_CLI, "-h", self.host, "-p", str(self.port)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, input=input)

    def close_clients(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients.clear()


def _finish(servers):
    """Stops every server and reports crashes / sanitizer findings."""
    problems = []
    for s in servers:
        died = s.proc is not None and s.proc.poll() is not None and not s.stopped
        rc = s.stop()
        if died:
            problems.append("server (pid %d, port %s) died during the test, exit code %s\n%s"
                            % (s.pid, s.port, rc, s.output()[-4000:]))
        if IS_HUB:
            report = s.sanitizer_report()
            if report:
                problems.append("sanitizer report from pid %d:\n%s" % (s.pid, report[-6000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="luahub-it.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server_factory(workdir):
    servers = []

    def start(config=None, **kw):
        s = Server(workdir, config=config, **kw)
        servers.append(s)
        return s.start()

    yield start
    _finish(servers)


@pytest.fixture
def server(server_factory):
    return server_factory()


@pytest.fixture(scope="module")
def module_server():
    """One server shared by the tests of a module that don't interfere."""
    d = tempfile.mkdtemp(prefix="luahub-it.")
    s = Server(d).start()
    yield s
    _finish([s])
    shutil.rmtree(d, ignore_errors=True)


class Spawned:
    """A server binary run with arbitrary arguments (not waited on)."""

    def __init__(self, proc, stdout_path, stderr_path):
        self.proc = proc
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def pid(self):
        return self.proc.pid

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self):
        return read_text(self.stderr_path)

    def output(self):
        return read_text(self.stdout_path) + read_text(self.stderr_path)

    def wait_ready(self, port, timeout=READY_TIMEOUT, unix_path=None):
        state = wait_ready(self.proc, "127.0.0.1", port, timeout, unix_path)
        assert state == "ready", "server not ready (%s, rc=%s):\n%s" % (
            state, self.proc.returncode, self.output()[-3000:])


@pytest.fixture
def spawn(workdir):
    """spawn(args) runs the hub (or redis-server) binary with exactly these
    arguments; the process is stopped by PID at the end of the test."""
    procs = []

    def run(args, binary=None):
        binary = binary or (REDIS_BIN if IS_REDIS else HUB_BIN)
        if IS_HUB and binary == HUB_BIN and not os.access(HUB_BIN, os.X_OK):
            pytest.fail("hub binary %s not found (make build/luahub)" % HUB_BIN)
        n = len(procs)
        out = os.path.join(workdir, "spawn.%d.stdout" % n)
        err = os.path.join(workdir, "spawn.%d.stderr" % n)
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.Popen([binary] + [str(a) for a in args], stdout=fo, stderr=fe,
                                 stdin=subprocess.DEVNULL, cwd=workdir)
        sp = Spawned(p, out, err)
        procs.append(sp)
        return sp

    yield run
    problems = []
    for sp in procs:
        if sp.proc.poll() is None:
            sp.proc.send_signal(signal.SIGTERM)
            try:
                sp.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                sp.proc.kill()
                sp.proc.wait()
        if IS_HUB:
            text = sp.output()
            if any(m in text for m in SANITIZER_MARKERS):
                problems.append("sanitizer report from pid %d:\n%s" % (sp.pid, text[-6000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def wait_for(predicate, timeout=IO_TIMEOUT, interval=0.01, what="condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last value %r)" % (timeout, what, last))


# --------------------------------------------------------------------------
# Handler files
# --------------------------------------------------------------------------

def write_handler(hdir, name, text):
    """Writes <hdir>/<name> atomically (the hub never sees half a file)."""
    path = os.path.join(str(hdir), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@pytest.fixture
def hdir(tmp_path):
    d = tmp_path / "handlers"
    d.mkdir()
    return d


@pytest.fixture
def start(server_factory, hdir):
    """start({file: text}, **options) -> a hub serving those handlers."""
    def run(files, **options):
        for name, text in files.items():
            write_handler(hdir, name, text)
        s = server_factory(config=options or None, handlers_dir=str(hdir))
        s.hdir = hdir
        return s
    return run


def hub_call(r, name, payload=""):
    """HUB.CALL through redis-py: the reply as str."""
    v = r.execute_command("HUB.CALL", name, payload)
    return v.decode() if isinstance(v, bytes) else v


def hub_call_error(r, name, payload=""):
    """HUB.CALL that must fail: the error text."""
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("HUB.CALL", name, payload)
    return str(e.value)
