#!/usr/bin/env bash
# restart_row.sh N -- the `run` command of the bench row `restart` (bench/run.sh):
# restart time of $SERVER (hub | redis) with N stored entries, measured by
# bench/restart_time.sh, which prints one JSON line with "restart_s" (seconds from
# start to the first answered PING with the data loaded). Without that script
# (separate work) this exits 77 with the reason: the row is "not measured".
set -u
N=$1
script=$ROOT/bench/restart_time.sh
if [ ! -x "$script" ]; then
    echo "not measured: bench/restart_time.sh is not on this branch yet"
    exit 77
fi
exec "$script" --server "$SERVER" --entries "$N" --workdir "$WORKDIR"
