#!/usr/bin/env bash
# capture_setup.sh -- `setup` of the bench row cap_lua_ack (bench/run.sh), on a fresh
# hub whose handlers directory is $DIR/handlers (empty): makes the capturing stream
# bench.cap (HUB.STREAM CREATE ... CAPTURE bench.cap.in), then loads
# bench/streams/capture_consumer.lua (handler key `consume`).
# Exit 0: ready. Exit 77 with a reason as the last line: this hub has no capture or
# no Lua consumers yet (the row is shown as skipped). Anything else: a failed run.
set -u
cli() { redis-cli -p "$PORT" "$@" 2>&1; }

r=$(cli HUB.STREAM CREATE bench.cap CAPTURE bench.cap.in)
case $r in
OK) ;;
*"unknown command"*)
    echo "not available: this hub answers unknown command to HUB.STREAM (capture not built yet)"
    exit 77 ;;
*) echo "HUB.STREAM CREATE failed: $r"; exit 1 ;;
esac

cp "$ROOT/bench/streams/capture_consumer.lua" "$DIR/handlers/" || exit 1
r=$(cli HUB.RELOAD | grep '^capture_consumer:')
case $r in
*": loaded v"*) exit 0 ;;
*"unknown key 'consume'"*)
    echo "not available: this hub refuses the handler key consume (Lua consumers not built yet)"
    exit 77 ;;
*) echo "loading capture_consumer.lua failed: $r"; exit 1 ;;
esac
