#!/bin/bash
# Runs every test suite and prints the total as the final line:
#   N passed, N failed
# Suites: C unit tests (ASan+UBSan builds), busted specs for the Lua test kit and
# the example handlers, luacheck, and the integration tests (pytest) against the
# release binary and again against the ASan+UBSan binary.
set -u
cd "$(dirname "$0")/.."

PASSED=0
FAILED=0
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"

add() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }

# ASan: fail on leaks and errors; UBSan: any finding aborts (see Makefile).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0

# --- C unit tests ------------------------------------------------------------
# one binary per tests/unit/**/test_*.c (stale binaries of removed tests are not run)
for src in $(find tests/unit -name 'test_*.c' | sort); do
    rel=${src#tests/unit/}
    t=build/asan/tests/${rel%.c}
    name=${rel%.c}
    name=${name//\//_}
    if [ ! -x "$t" ]; then add 0 1; echo "unit $name: not built"; continue; fi
    log="$LOGDIR/$name.log"
    "$t" >"$log" 2>&1
    rc=$?
    line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    if [ -n "$line" ]; then
        p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
        # a sanitizer abort after the summary still counts as a failure
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        add "$p" "$f"
    else
        add 0 1
    fi
    echo "unit $name: ${line:-crashed (rc=$rc)}"
    [ "$rc" = 0 ] || tail -30 "$log"
done

# --- core/'s layers: includes follow core/LAYERS ---------------------------------
if /usr/bin/python3 scripts/check-layers.py >"$LOGDIR/layers.log" 2>&1; then
    add 1 0; echo "layers: $(tail -1 "$LOGDIR/layers.log")"
else
    add 0 1; echo "layers: broken"; cat "$LOGDIR/layers.log"
fi
if tests/check_layers_selftest.sh >"$LOGDIR/layers-selftest.log" 2>&1; then
    add 1 0; echo "layers self-test: an upward include and a circle are caught"
else
    add 0 1; echo "layers self-test: failed"; cat "$LOGDIR/layers-selftest.log"
fi

# --- Fuzz seeds: every libFuzzer target replays its committed corpus once ---------
# (the builds are the ASan+UBSan libFuzzer ones `make fuzz` runs; -runs=0 only
# executes the given inputs). One test: any crash or failed check fails it.
fuzz_ok=1
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c); t=${t#fuzz_}
    if [ ! -x "build/fuzz/fuzz_$t" ] ||
        ! "build/fuzz/fuzz_$t" -runs=0 "tests/fuzz/corpus/$t" >"$LOGDIR/fuzz-$t.log" 2>&1; then
        fuzz_ok=0; echo "fuzz seeds $t: failed"; tail -30 "$LOGDIR/fuzz-$t.log"
    fi
done
if [ "$fuzz_ok" = 1 ]; then add 1 0; echo "fuzz seeds: every target replays its corpus cleanly"; else add 0 1; fi

# --- Lua: busted specs and luacheck ---------------------------------------------
specs=$(ls handlers/spec/*_spec.lua tests/lua/*_spec.lua 2>/dev/null)
if [ -n "$specs" ]; then
    log="$LOGDIR/busted.log"
    # busted's Debian launcher uses the default `lua`; run it on Lua 5.4.
    # shellcheck disable=SC2086
    lua5.4 /usr/bin/busted --lpath='./scripts/?.lua;./handlers/lib/?.lua' -o utfTerminal $specs >"$log" 2>&1
    line=$(grep -aE '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' "$log" | tail -1)
    if [ -n "$line" ]; then
        s=$(echo "$line" | grep -oE '[0-9]+ success' | grep -oE '[0-9]+')
        f=$(echo "$line" | grep -oE '[0-9]+ failure' | grep -oE '[0-9]+')
        e=$(echo "$line" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
        add "$s" $((f + e))
        echo "busted: $s passed, $((f + e)) failed"
        [ $((f + e)) = 0 ] || cat "$log"
    else
        add 0 1; echo "busted: did not run"; cat "$log"
    fi
fi

luafiles=$(ls handlers/*.lua scripts/*.lua tests/lua/*.lua 2>/dev/null)
if [ -n "$luafiles" ]; then
    # shellcheck disable=SC2086
    if luacheck --no-color -q $luafiles >"$LOGDIR/luacheck.log" 2>&1; then
        add 1 0; echo "luacheck: clean"
    else
        add 0 1; echo "luacheck: warnings"; cat "$LOGDIR/luacheck.log"
    fi
fi

# --- Integration tests ----------------------------------------------------------
run_pytest() {  # $1 = label, $2 = hub binary
    local log="$LOGDIR/pytest-$1.log"
    LUAHUB_BIN="$2" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration >"$log" 2>&1
    local last
    last=$(grep -aE '[0-9]+ (passed|failed|errors?)( |,|$)' "$log" | tail -1)
    local p f e
    p=$(echo "$last" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); p=${p:-0}
    f=$(echo "$last" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+'); f=${f:-0}
    e=$(echo "$last" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+'); e=${e:-0}
    if [ "$p" = 0 ] && [ "$f" = 0 ] && [ "$e" = 0 ]; then f=1; fi
    add "$p" $((f + e))
    echo "integration ($1): $p passed, $((f + e)) failed"
    [ $((f + e)) = 0 ] || tail -80 "$log"
}
if ls tests/integration/test_*.py >/dev/null 2>&1; then
    run_pytest release build/luahub
    run_pytest asan build/asan/luahub
fi

# --- Bench harness smoke run ------------------------------------------------------
# `make bench` at a tiny size: every scenario must produce a number for each
# server it applies to (bench/check_results.py). Written under build/ so the
# committed bench/results stay those of a real run.
if [ -x bench/run.sh ] && [ -z "${SKIP_BENCH:-}" ]; then
    if BENCH_RESULTS=build/bench-tiny bench/run.sh --tiny >"$LOGDIR/bench.log" 2>&1 &&
        /usr/bin/python3 bench/check_results.py build/bench-tiny/latest.csv >>"$LOGDIR/bench.log" 2>&1; then
        add 1 0; echo "bench --tiny: every scenario produced its numbers"
    else
        add 0 1; echo "bench --tiny: failed"; tail -40 "$LOGDIR/bench.log"
    fi
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
