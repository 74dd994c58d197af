"""Hostile review: attacks on the containment claim (no handler and no client
can crash the hub, stall its loop beyond a bounded slice, or make it hold
unbounded memory), each with the harness of hostile.py. Every test names the
behaviour it proves; each was first seen failing on the code before its fix."""
import os

import pytest

from conftest import IS_ASAN
from conftest import hub_call as call, hub_call_error as call_error
from hostile import STALL_BOUND, Watchdog


def listener(name, body, setup=""):
    """A handler answering HUB.CALL <name> with on_call's body; `setup` runs
    at load time (its locals are the handler's upvalues)."""
    return 'local hub = require("hub")\n%s\nreturn { listen = { "%s" }, on_call = function(ev)\n%s\nend }\n' % (
        setup, name, body)


# --------------------------------------------------------------------------
# 1. Library calls whose cost is linear in their operand but that allocate
#    nothing: only the count hook saw them, every 1000 instructions, so a
#    loop ran hundreds of them (tens of ms each) between two checks.
# --------------------------------------------------------------------------

# The data is built over several calls (one load or call gets 50 ms).
BIG = 'local S = ("a"):rep(16 * 1024 * 1024)\nlocal T = {}'
PREP = ('if ev.data == "prep" then local n = #T for i = n + 1, n + 250000 do T[i] = i end '
        'return tostring(#T) end\n')


def prepare(r, name):
    """Grows the handler's T to 1.5M elements, one slice at a time."""
    while int(call(r, name, "prep")) < 1500000:
        pass

LINEAR_LOOPS = {
    "utf8_len": 'while true do utf8.len(S) end',
    "plain_find": 'while true do string.find(S, "aaab", 1, true) end',
    "find_no_specials": 'while true do S:find("ab") end',
    "table_insert_front": 'while true do table.insert(T, 1, 0) table.remove(T, 1) end',
    "utf8_offset": 'while true do utf8.offset(S, #S) end',
}


@pytest.mark.parametrize("case", sorted(LINEAR_LOOPS))
def test_linear_library_calls_in_a_loop_stop_at_the_time_slice(start, case):
    srv = start({"lin.lua": listener("lin", PREP + LINEAR_LOOPS[case] + '\nreturn "done"', BIG)},
                **{"handler-instruction-limit": 1 << 40})
    r = srv.client()
    prepare(r, "lin")
    with Watchdog(srv) as wd:
        err = call_error(r, "lin")
    assert "time slice exceeded (handler-time-slice is 50 ms)" in err, err
    wd.check(max_stall=STALL_BOUND)



# --------------------------------------------------------------------------
# 2. A huge error message: last_error is kept outside the Lua cap, for as
#    long as the handler lives, and every HUB.HANDLERS repeats it.
# --------------------------------------------------------------------------

def test_last_error_keeps_a_bounded_prefix_of_a_huge_error_message(start):
    srv = start({"e%d.lua" % i: listener("e%d" % i, 'error(("x"):rep(8 * 1024 * 1024), 0)') for i in range(3)})
    r = srv.client()
    with Watchdog(srv) as wd:
        for i in range(3):
            assert call_error(r, "e%d" % i).startswith("xxxx")   # the caller still gets the error
    wd.check(max_stall=STALL_BOUND * 2)
    rows = r.execute_command("HUB.HANDLERS")
    for row in rows:
        d = dict(zip(row[::2], row[1::2]))
        assert d[b"errors"] == 1, d
        assert 100 < len(d[b"last_error"]) <= 1100, len(d[b"last_error"])


# --------------------------------------------------------------------------
# 3. Files in the handlers directory: a FIFO in lib/ blocked the loop in
#    open() for good; a huge file was read whole outside any cap.
# --------------------------------------------------------------------------

def test_a_fifo_or_a_huge_file_in_the_handlers_dir_fails_the_load_without_blocking(start, hdir):
    (hdir / "lib").mkdir()
    os.mkfifo(str(hdir / "lib" / "pipe.lua"))
    with open(str(hdir / "huge.lua"), "wb") as f:
        f.truncate(200 * 1024 * 1024)   # sparse: 200 MB of NUL bytes
    srv = start({"usespipe.lua": listener("p", 'return "x"', 'require("pipe")')})
    r = srv.client()
    with Watchdog(srv) as wd:
        lines = [l.decode() for l in r.execute_command("HUB.RELOAD", "*", "FORCE")]
    wd.check(max_stall=STALL_BOUND * 2, max_rss_growth=None if IS_ASAN else 50 * 1024 * 1024)
    assert any(l.startswith("usespipe: failed") and "Invalid argument" in l for l in lines), lines
    assert any(l.startswith("huge: failed") and "File too large" in l for l in lines), lines
