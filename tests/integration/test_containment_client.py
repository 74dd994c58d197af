"""Containment of hostile clients: nothing a client sends may crash the hub,
stall the loop for the others beyond a bounded amount of work, or make it
hold unbounded memory. Each case runs inside the watchdog (hostile.py), which
pings the hub from its own connection and samples its RSS.

Cases: long client names (CLIENT INFO / LIST), empty arguments pipelined
behind a blocked HUB.CALL, running out of file descriptors, HUB.LISTEN with
many names, long patterns against long channel names, HUB.STATS with huge
and many names, group keys that could collide, config lines of any length,
strict integers, and assorted floods (many patterns in one command, huge
inline commands, pipelines to a client that never reads)."""
import os
import resource
import socket
import time

import pytest

from conftest import (IS_ASAN, ConnectionClosed, Error, RawClient, Status, encode_command,
                      free_port, wait_for)
from hostile import Watchdog

hub_only = pytest.mark.hub_only
SLOW = 3 if IS_ASAN else 1


def _cpu_ticks(pid):
    """utime + stime of pid, in clock ticks (from /proc/pid/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# --------------------------------------------------------------------------
# 1. Client names
# --------------------------------------------------------------------------

@hub_only
def test_long_client_name_is_refused_and_info_is_whole(server):
    c = server.raw()
    with Watchdog(server) as wd:
        r = c.call("CLIENT", "SETNAME", "n" * (1024 * 1024))
        assert isinstance(r, Error) and b"longer than 1024" in r, r
        r = c.call("CLIENT", "SETNAME", "x" * 2000)
        assert isinstance(r, Error), r
        assert c.call("CLIENT", "SETNAME", "y" * 1024) == Status(b"OK")
        info = c.call("CLIENT", "INFO")
    wd.check()
    line = info.decode() if isinstance(info, bytes) else str(info)
    assert "name=" + "y" * 1024 + " " in line
    assert line.endswith("\n") and line.count("\n") == 1
    assert "resp=2" in line  # the whole line, nothing cut off or leaked


@hub_only
def test_client_list_keeps_every_client_with_long_names(server):
    clients = [server.raw() for _ in range(40)]
    for i, c in enumerate(clients):
        assert c.call("CLIENT", "SETNAME", ("c%02d" % i) + "z" * 1000) == Status(b"OK")
    with Watchdog(server) as wd:
        out = clients[0].call("CLIENT", "LIST")
    wd.check()
    lines = [x for x in out.decode().split("\n") if x]
    named = [x for x in lines if " name=c" in x]
    assert len(named) == 40, len(named)
    assert all(x.endswith("resp=2") for x in lines)


@hub_only
def test_client_list_with_many_clients(server):
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection((server.host, server.port)))
        c = server.raw()
        with Watchdog(server) as wd:
            for _ in range(3):
                out = c.call("CLIENT", "LIST")
        wd.check(max_stall=2.0 * SLOW)
        assert out.count(b"\n") >= 1001
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------
# 2. Requests held behind a blocked HUB.CALL are charged their real size
# --------------------------------------------------------------------------

@hub_only
def test_empty_arguments_held_behind_a_call_are_charged(server_factory):
    srv = server_factory(config={"client-query-buffer-limit": "4mb", "call-timeout": 0})
    lis = srv.raw()
    lis.send_command("HUB.LISTEN", "svc")
    lis.read_reply()
    caller = srv.raw()
    caller.send_command("HUB.CALL", "svc", "x")
    wait_for(lambda: b"flags=b" in srv.raw().call("CLIENT", "LIST"), what="caller blocked")
    # 16-argument requests of empty strings: 4 bytes each on the wire as
    # argument bytes (0), but each held record costs its struct and argv.
    req = b"*16\r\n" + b"$0\r\n\r\n" * 16
    chunk = req * 4096
    sent = 0
    with Watchdog(srv) as wd:
        try:
            while sent < 200 * 1024 * 1024:
                caller.send(chunk)
                sent += len(chunk)
        except (ConnectionResetError, BrokenPipeError, socket.timeout, OSError):
            pass
        closed = not caller.is_open(wait=0.5)
    wd.check(max_rss_growth=120 * 1024 * 1024)
    assert closed, "caller still connected after %d MB" % (sent >> 20)
    assert sent < 150 * 1024 * 1024, "hub read %d MB before closing the caller" % (sent >> 20)


# --------------------------------------------------------------------------
# 3. Out of file descriptors
# --------------------------------------------------------------------------

def _limit_fds(n):
    def pre():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return pre


@hub_only
def test_out_of_file_descriptors_backs_off(workdir):
    import subprocess

    from conftest import HUB_BIN, Server
    port = free_port()
    hdir = os.path.join(workdir, "h")
    os.makedirs(hdir, exist_ok=True)
    err = os.path.join(workdir, "fd.stderr")
    with open(err, "wb") as fe:
        p = subprocess.Popen([HUB_BIN, "--port", str(port), "--bind", "127.0.0.1", "--handlers", hdir,
                              "--maxclients", "1000"],
                             stdout=fe, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                             preexec_fn=_limit_fds(64))
    socks = []
    try:
        srv = Server(workdir, port=port)
        srv.proc = p
        from conftest import wait_ready
        assert wait_ready(p, "127.0.0.1", port) == "ready"
        wd_sock = RawClient(port)  # a connection made before the fds run out
        # below what the hub fitted maxclients to: accept() itself fails (EMFILE)
        resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (20, 20))
        # Fill the fd table: the hub keeps accepting until accept() fails.
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        time.sleep(0.5)
        t0 = _cpu_ticks(p.pid)
        size0 = os.path.getsize(err)
        time.sleep(1.0)
        cpu = (_cpu_ticks(p.pid) - t0) / os.sysconf("SC_CLK_TCK")
        grew = os.path.getsize(err) - size0
        assert p.poll() is None, open(err).read()[-2000:]
        assert cpu < 0.3, "hub burned %.2fs CPU in 1s while out of fds" % cpu
        assert grew < 4096, "log grew %d bytes in 1s" % grew
        assert wd_sock.call("PING") == Status(b"PONG")  # existing clients are still served
        for s in socks:
            s.close()
        socks = []
        # After clients go, the hub accepts again.
        deadline = time.monotonic() + 10
        while True:
            try:
                c = RawClient(port, timeout=2)
                assert c.call("PING") == Status(b"PONG")
                c.close()
                break
            except (OSError, ConnectionClosed, socket.timeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        text = open(err).read()
        assert "maxclients" in text  # fitted to the fd limit, and said so
    finally:
        for s in socks:
            s.close()
        p.terminate()
        p.wait(10)


# --------------------------------------------------------------------------
# 4. HUB.LISTEN / HUB.UNLISTEN with many names
# --------------------------------------------------------------------------

@hub_only
def test_listen_and_unlisten_many_names(server):
    c = server.raw()
    names = ["n%06d" % i for i in range(100000)]
    with Watchdog(server) as wd:
        c.send(encode_command("HUB.LISTEN", *names))
        got = 0
        while got < len(names):
            c.read_reply()
            got += 1
        c.send(encode_command("HUB.UNLISTEN", *names))
        last = None
        for _ in names:
            last = c.read_reply()
    wd.check(max_stall=1.5 * SLOW)
    assert last == [b"unlisten", names[-1].encode(), 0]


# --------------------------------------------------------------------------
# 5. Pattern matching cost
# --------------------------------------------------------------------------

@hub_only
def test_long_pattern_against_long_channel(server):
    sub = server.raw()
    pat = "*" + "a" * 250 + "b"
    sub.send_command("PSUBSCRIBE", pat, "*" + "a?" * 100 + "c", "[a]" * 300 + "b*")
    for _ in range(3):
        sub.read_reply()
    pub = server.raw()
    name = "a" * (4 * 1024 * 1024)
    with Watchdog(server) as wd:
        for _ in range(2):
            assert pub.call("PUBLISH", name, "x", timeout=60) == 0
    wd.check(max_stall=1.0 * SLOW)
    # still exact: the long pattern matches what it should
    assert pub.call("PUBLISH", "a" * 1000 + "b", "y") == 1


@hub_only
def test_many_long_wildcard_patterns_against_long_names(server):
    # Patterns with no literal prefix and a wildcard in the suffix sit in the
    # pattern index's scan list: every publish glob-tests all of them. The
    # backtracking matcher cost pattern x name per pattern (seconds here);
    # the bit-parallel one costs a few word operations per name byte.
    sub = server.raw()
    pats = ["*" + "a" * (240 + i) + "b?" for i in range(12)]
    sub.send(encode_command("PSUBSCRIBE", *pats))
    for _ in pats:
        sub.read_reply()
    pub = server.raw()
    name = "a" * (1024 * 1024)
    with Watchdog(server) as wd:
        assert pub.call("PUBLISH", name, "x", timeout=120) == 0
        assert pub.call("PUBLISH", name + "bz", "x", timeout=120) == len(pats)
    wd.check(max_stall=1.0 * SLOW)


@hub_only
def test_pattern_longer_than_pattern_max_len_is_refused(server_factory, tmp_path):
    hdir = tmp_path / "handlers"
    hdir.mkdir()
    (hdir / "longpat.lua").write_text(
        'return { subscribe = { "x*", string.rep("y", 65) }, on_event = function() end }')
    (hdir / "okpat.lua").write_text(
        'return { subscribe = { string.rep("y", 64) }, on_event = function() end }')
    srv = server_factory(config={"pattern-max-len": 64}, handlers_dir=str(hdir))
    c = srv.raw()
    r = c.call("PSUBSCRIBE", "ok.*", "p" * 65)
    assert isinstance(r, Error) and b"pattern-max-len" in r and b"64" in r, r
    r = c.call("HUB.GSUBSCRIBE", "g", "q" * 65)
    assert isinstance(r, Error) and b"pattern-max-len" in r, r
    # nothing of the refused command was subscribed; a pattern at the cap is fine
    assert c.call("PSUBSCRIBE", "p" * 64) == [b"psubscribe", b"p" * 64, 1]
    h = srv.raw()
    info = {}
    flat = h.call("HUB.HANDLERS")
    for entry in flat:
        d = dict(zip(entry[::2], entry[1::2]))
        info[d[b"name"]] = d
    assert info[b"okpat"][b"state"] == b"running"
    assert info[b"longpat"][b"state"] == b"failed"
    assert b"pattern-max-len" in info[b"longpat"][b"last_error"]


@hub_only
def test_many_patterns_in_one_command(server):
    c = server.raw()
    pats = ["p%d*" % i for i in range(200000)]
    with Watchdog(server) as wd:
        c.send(encode_command("PSUBSCRIBE", *pats))
        for _ in pats:
            c.read_reply()
        pub = server.raw()
        assert pub.call("PUBLISH", "p1x", "m") == 1
        c.send(encode_command("PUNSUBSCRIBE"))
        for _ in pats:
            c.read_reply()
    wd.check(max_stall=1.5 * SLOW)


@hub_only
def test_info_is_whole_with_many_handlers_and_a_long_handlers_dir(server_factory, tmp_path):
    # INFO used to be built in a fixed 8 KB buffer and silently cut; now the
    # text grows, so every section ends whole whatever the values' lengths.
    hdir = tmp_path / ("h" * 200) / ("d" * 200)
    hdir.mkdir(parents=True)
    for i in range(300):
        (hdir / ("handler_%03d_%s.lua" % (i, "n" * 100))).write_text(
            'return { subscribe = { "ev.%d.*" }, on_event = function() end }' % i)
    srv = server_factory(handlers_dir=str(hdir))
    c = srv.raw()
    for args in (("INFO",), ("INFO", "everything"), ("INFO", "server", "handlers", "events")):
        text = c.call(*args)
        text = text.decode() if isinstance(text, bytes) else str(text)
        assert "handlers_dir:%s\r\n" % hdir in text
        assert "\r\nhandlers:300\r\n" in text
        assert "\r\npubsub_patterns:300\r\n" in text or args[-1] == "events"
        assert text.rstrip("\r\n").endswith("consumer_group_misses:0"), text[-200:]
        assert "\r\n\r\n# Events\r\n" in text


# --------------------------------------------------------------------------
# 6. HUB.STATS bounds the bytes of the names it tracks
# --------------------------------------------------------------------------

@hub_only
def test_stats_do_not_copy_huge_names(server_factory):
    srv = server_factory(config={"stats-max-names": 100000, "stats-max-name-len": 256})
    c = srv.raw()
    big = b"q" * (1024 * 1024)
    with Watchdog(srv) as wd:
        for i in range(150):
            c.send_command("PUBLISH", big + b"%d" % i, "x")
        for _ in range(150):
            c.read_reply()
    wd.check(max_rss_growth=60 * 1024 * 1024)
    info = c.call("INFO", "events")
    assert b"event_names_untracked:150" in info, info
    assert c.call("PUBLISH", "short", "x") == 0
    assert b"event_names_tracked:1" in c.call("INFO", "events")


# --------------------------------------------------------------------------
# 7. Group keys are unambiguous
# --------------------------------------------------------------------------

@hub_only
def test_group_keys_cannot_collide(server):
    a, b, pub = server.raw(), server.raw(), server.raw()
    a.call("HELLO", "3")
    b.call("HELLO", "3")
    ra = a.call("HUB.GSUBSCRIBE", b"a\x00b", b"c")
    rb = b.call("HUB.GSUBSCRIBE", b"a", b"b\x00c")
    assert ra and rb
    # two different groups: an event matching both patterns reaches each
    n1 = pub.call("PUBLISH", b"c", "m")
    n2 = pub.call("PUBLISH", b"b\x00c", "m")
    assert (n1, n2) == (1, 1), (n1, n2)
    assert list(a.read_reply()) == [b"gmessage", b"a\x00b", b"c", b"m"]
    assert list(b.read_reply()) == [b"gmessage", b"a", b"b\x00c", b"m"]


# --------------------------------------------------------------------------
# 8. Config files
# --------------------------------------------------------------------------

@hub_only
def test_config_too_many_words_is_an_error(spawn, workdir):
    path = os.path.join(workdir, "words.conf")
    with open(path, "w") as f:
        f.write("client-output-buffer-limit " + " ".join(["pubsub 1mb 0 0"] * 8) + " normal 0 0 0\n")
    p = spawn(["--config", path, "--port", str(free_port())])
    assert p.wait(10) != 0
    assert "words.conf:1" in p.output() and "words" in p.output()


@hub_only
def test_config_line_longer_than_buffer_is_one_line(spawn, workdir):
    # The old 4 KB line buffer split this comment and applied its tail
    # ("maxclients 7") as a directive.
    path = os.path.join(workdir, "ok.conf")
    port = free_port()
    with open(path, "w") as f:
        f.write("#" + "c" * 4094 + "maxclients 7\n")
        f.write("loglevel   " + " " * 6000 + "notice\n")
    p = spawn(["--config", path, "--port", str(port), "--handlers", workdir])
    p.wait_ready(port)
    c = RawClient(port)
    assert b"maxclients:10000" in c.call("INFO", "clients")
    c.close()


# --------------------------------------------------------------------------
# 9. Strict integers (these run against redis-server too)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("HELLO", "+3"), ("HELLO", " 3"), ("HELLO", "03"), ("HELLO", "3 ")])
def test_hello_refuses_loose_integers(server, args):
    r = server.raw().call(*args)
    assert r == Error(b"ERR Protocol version is not an integer or out of range"), r


@pytest.mark.parametrize("db", ["-0", "+0", "00", " 0", "0x0"])
def test_select_refuses_loose_integers(server, db):
    r = server.raw().call("SELECT", db)
    assert r == Error(b"ERR value is not an integer or out of range"), r


def test_client_list_id_refuses_loose_integers(server):
    c = server.raw()
    r = c.call("CLIENT", "LIST", "ID", "+1")
    assert r == Error(b"ERR Invalid client ID"), r


# --------------------------------------------------------------------------
# Floods
# --------------------------------------------------------------------------

def test_inline_command_of_spaces(server):
    c = server.raw()
    with Watchdog(server) as wd:
        try:
            c.send(b" " * (1024 * 1024) + b"\r\n")
            c.send(b"PING\r\n")
            r = c.read_reply(timeout=10)
        except (ConnectionClosed, OSError):
            r = None
    wd.check()
    assert r in (Status(b"PONG"), None) or isinstance(r, Error)


@hub_only
def test_pipeline_to_a_client_that_never_reads(server_factory):
    srv = server_factory(config={"client-output-buffer-limit": ["normal", "8mb", "0", "0"]})
    c = RawClient(srv.port, rcvbuf=4096)
    chunk = b"PING\r\n" * 100000
    with Watchdog(srv) as wd:
        try:
            for _ in range(20):
                c.send(chunk)
        except OSError:
            pass
        wait_for(lambda: not c.is_open(wait=0.1), timeout=20, what="reader closed")
    wd.check(max_rss_growth=80 * 1024 * 1024)


@hub_only
def test_hub_call_with_huge_name(server):
    c = server.raw()
    with Watchdog(server) as wd:
        r = c.call("HUB.CALL", "n" * (8 * 1024 * 1024), "x", timeout=30)
    wd.check()
    assert isinstance(r, Error) and len(r) < 4096


def test_never_ending_bulk_is_bounded(server_factory):
    srv = server_factory(config={"client-query-buffer-limit": "2mb"})
    c = srv.raw()
    with Watchdog(srv) as wd:
        try:
            c.send(b"*2\r\n$4\r\nECHO\r\n$100000000\r\n")
            for _ in range(200):
                c.send(b"z" * 65536)
        except OSError:
            pass
    wd.check(max_rss_growth=60 * 1024 * 1024)
