"""Process lifecycle: signals, configuration, listeners."""
import os
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (IO_TIMEOUT, IS_ASAN, IS_REDIS, REDIS_CLI, RawClient, encode_command,
                      free_port, port_is_listening, wait_for)

EXIT_TIMEOUT = 8.0 if IS_ASAN else 3.0


def subscribe(c, *channels):
    c.send_command("SUBSCRIBE", *channels)
    for _ in channels:
        assert c.read_reply()[0] == b"subscribe"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_subscribers_exits_zero_and_closes_them(server_factory, sig):
    srv = server_factory()
    subs = []
    for i in range(3):
        c = srv.raw()
        subscribe(c, "ch", "other%d" % i)
        subs.append(c)
    p = srv.raw()
    p.send_command("PSUBSCRIBE", "c*")
    p.read_reply()
    subs.append(p)
    resp3 = srv.raw()
    resp3.send_command("HELLO", "3")
    resp3.read_reply()
    resp3.send_command("SUBSCRIBE", "ch")
    resp3.read_reply()
    subs.append(resp3)
    idle = srv.raw()
    assert idle.call("PING") == b"PONG"
    subs.append(idle)
    assert srv.client().publish("ch", "before") == 5

    srv.signal(sig)
    rc = srv.wait(EXIT_TIMEOUT)
    assert rc is not None, "server still running %.0fs after %s" % (EXIT_TIMEOUT, sig.name)
    assert rc == 0, "exit code %s after %s\n%s" % (rc, sig.name, srv.output()[-2000:])
    for c in subs:
        c.read_until_close(timeout=IO_TIMEOUT)
    assert not port_is_listening(srv.port)


@pytest.mark.hub_only
def test_sighup_does_not_stop_the_hub(server):
    c = server.raw()
    subscribe(c, "ch")
    server.proc.send_signal(signal.SIGHUP)
    assert server.client().ping() is True
    assert server.client().publish("ch", "after-hup") == 1
    c.expect(encode_command("message", "ch", "after-hup"))
    assert server.alive()


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

def hub_base_args(workdir):
    handlers = tempfile.mkdtemp(prefix="handlers.", dir=workdir)
    return ["--bind", "127.0.0.1", "--handlers", handlers]


def write_config(workdir, text):
    path = os.path.join(workdir, "luahub.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.hub_only
def test_config_file_is_honoured(spawn, workdir):
    port = free_port()
    conf = write_config(workdir, "# luahub test config\n\nport %d\nmaxclients 2\nloglevel \"notice\"\n" % port)
    proc = spawn(["--config", conf] + hub_base_args(workdir))
    proc.wait_ready(port)
    a = RawClient(port)
    b = None
    try:
        assert a.call("PING") == b"PONG"
        # the readiness probe's connection may still be counted for a moment
        wait_for(lambda: b"connected_clients:1\r\n" in a.call("INFO"), what="connected_clients:1")
        b = RawClient(port)
        assert b.call("PING") == b"PONG"
        # maxclients 2 from the file
        third = RawClient(port)
        third.expect(b"-ERR max number of clients reached\r\n")
        third.read_until_close()
        third.close()
    finally:
        a.close()
        if b:
            b.close()


@pytest.mark.hub_only
def test_flag_overrides_config_file(spawn, workdir):
    file_port, flag_port = free_port(), free_port()
    while flag_port == file_port:
        flag_port = free_port()
    conf = write_config(workdir, "port %d\n" % file_port)
    # the flag comes before --config on purpose: flags win wherever they are
    proc = spawn(["--port", flag_port, "--config", conf] + hub_base_args(workdir))
    proc.wait_ready(flag_port)
    assert not port_is_listening(file_port)


@pytest.mark.parametrize("args,key", [
    (["--nosuchoption", "1"], "nosuchoption"),
    (["--maxclients", "abc"], "maxclients"),
    (["--maxclients", "-3"], "maxclients"),
    (["--port", "99999"], "port"),
    (["--proto-max-bulk-len", "lots"], "proto-max-bulk-len"),
], ids=["unknown-key", "not-a-number", "negative", "out-of-range", "bad-size"])
def test_bad_option_flag_fails_startup_naming_the_key(spawn, workdir, args, key):
    port = free_port()
    if IS_REDIS:
        argv = ["--port", port, "--save", "", "--appendonly", "no"] + args
    else:
        argv = ["--port", port] + hub_base_args(workdir) + args
    proc = spawn(argv)
    rc = proc.wait(EXIT_TIMEOUT)
    assert rc is not None, "server started despite %r" % (args,)
    assert rc != 0
    assert key in proc.stderr(), "stderr does not name %r:\n%s" % (key, proc.stderr())
    assert not port_is_listening(port)


@pytest.mark.hub_only
@pytest.mark.parametrize("args,key", [
    (["--dir", ""], "dir"),
    (["--dir", "d" * 5000], "dir"),
    (["--durability", "sometimes"], "durability"),
    (["--stream-cache-memory", "lots"], "stream-cache-memory"),
    (["--stream-max-pending", "0"], "stream-max-pending"),
    (["--handler-queue-memory", "1"], "handler-queue-memory"),
    (["--handler-max-draining", "-1"], "handler-max-draining"),
    (["--pattern-max-len", "0"], "pattern-max-len"),
    (["--stats-max-name-len", "x"], "stats-max-name-len"),
], ids=["dir-empty", "dir-huge", "durability", "cache-size", "pending-zero", "queue-memory-tiny",
        "draining-negative", "pattern-len-zero", "name-len-word"])
def test_bad_value_of_the_newer_options_fails_startup_naming_the_key(spawn, workdir, args, key):
    # the options containment and the stream store added take hostile values
    # the way the first ones do: a start that names the key, nothing served
    port = free_port()
    proc = spawn(["--port", port] + hub_base_args(workdir) + args)
    rc = proc.wait(EXIT_TIMEOUT)
    assert rc is not None and rc != 0, "server started despite %r" % (args,)
    assert key in proc.stderr(), "stderr does not name %r:\n%s" % (key, proc.stderr()[:500])
    assert not port_is_listening(port)


@pytest.mark.hub_only
@pytest.mark.parametrize("line,key", [
    ("nosuchkey 5", "nosuchkey"),
    ("maxclients many", "maxclients"),
    ("timeout -1", "timeout"),
], ids=["unknown-key", "bad-value", "negative"])
def test_bad_config_file_fails_startup_naming_the_key(spawn, workdir, line, key):
    port = free_port()
    conf = write_config(workdir, "port %d\n%s\n" % (port, line))
    proc = spawn(["--config", conf] + hub_base_args(workdir))
    rc = proc.wait(EXIT_TIMEOUT)
    assert rc is not None, "hub started despite config line %r" % line
    assert rc != 0
    assert key in proc.stderr(), "stderr does not name %r:\n%s" % (key, proc.stderr())
    assert not port_is_listening(port)


@pytest.mark.hub_only
def test_missing_config_file_fails_startup(spawn, workdir):
    proc = spawn(["--port", free_port(), "--config", os.path.join(workdir, "nope.conf")] + hub_base_args(workdir))
    rc = proc.wait(EXIT_TIMEOUT)
    assert rc is not None and rc != 0
    assert "nope.conf" in proc.stderr()


# --------------------------------------------------------------------------
# Unix socket
# --------------------------------------------------------------------------

def test_unixsocket_accepts_connections(server_factory, workdir):
    path = os.path.join(workdir, "hub.sock")
    srv = server_factory({"unixsocket": path})
    assert os.path.exists(path)
    out = subprocess.run([REDIS_CLI, "-s", path, "ping"], capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert out.returncode == 0 and out.stdout == "PONG\n", out
    # pub/sub across both listeners
    sub = RawClient(unix_path=path)
    try:
        subscribe(sub, "ux")
        assert srv.client().publish("ux", "over-unix") == 1
        sub.expect(encode_command("message", "ux", "over-unix"))
    finally:
        sub.close()


# --------------------------------------------------------------------------
# Shutdown flushes pending output (shutdown-timeout)
# --------------------------------------------------------------------------

def queue_lots_for(srv, channel, n=8000, size=1024):
    """Publishes n messages of `size` bytes; returns the bytes a subscriber
    of channel must receive."""
    r = srv.client()
    expected = bytearray()
    for start in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, start + 1000):
            msg = b"%08d" % i + b"." * (size - 8)
            pipe.publish(channel, msg)
            expected += encode_command("message", channel, msg)
        assert pipe.execute() == [1] * 1000
    return bytes(expected)


@pytest.mark.hub_only
def test_sigterm_flushes_pending_output_to_subscribers(server_factory):
    srv = server_factory({"shutdown-timeout": 5})
    sub = srv.raw(rcvbuf=4096)
    subscribe(sub, "flush")
    # ~8 MiB, more than the kernel's socket buffers hold: much of it is still
    # queued in the hub when SIGTERM arrives
    expected = queue_lots_for(srv, "flush")
    srv.signal(signal.SIGTERM)
    got = sub.read_until_close(timeout=10)
    assert len(got) == len(expected), "got %d of %d bytes before the close" % (len(got), len(expected))
    assert got == expected
    rc = srv.wait(EXIT_TIMEOUT)
    assert rc == 0, "exit code %s\n%s" % (rc, srv.output()[-2000:])


@pytest.mark.hub_only
def test_sigterm_does_not_wait_forever_for_a_stuck_consumer(server_factory):
    srv = server_factory({"shutdown-timeout": 1})
    stuck = srv.raw(rcvbuf=4096)     # never reads
    subscribe(stuck, "stuck")
    queue_lots_for(srv, "stuck")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(1 + EXIT_TIMEOUT)
    assert rc is not None, "hub still running %.0fs after SIGTERM with shutdown-timeout 1" % (1 + EXIT_TIMEOUT)
    assert rc == 0, "exit code %s\n%s" % (rc, srv.output()[-2000:])
    assert time.monotonic() - t0 < 1 + EXIT_TIMEOUT
