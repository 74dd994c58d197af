#!/usr/bin/env bash
# restart_row.sh N -- the `run` command of the bench row `restart` (bench/run.sh):
# restart time of $SERVER (hub | redis) with N stored entries, from
# bench/restart_time.sh N, which fills and restarts both servers in one run (luahub
# durability os vs redis appendfsync everysec replaying its AOF; time from exec to
# the first +PONG) and prints text. The first call of a repetition ($REP) runs it and
# keeps its output in $RUNDIR; the other server's call of the same repetition reads
# that. Prints one JSON line {"restart_s": ..., "entries": N}; without the script
# (separate work) exits 77 with the reason: the row is "not measured".
set -u
N=$1
script=$ROOT/bench/restart_time.sh
if [ ! -x "$script" ]; then
    echo "not measured: bench/restart_time.sh is not on this branch yet"
    exit 77
fi
out=$RUNDIR/restart.$N.$REP.txt
if [ ! -s "$out" ]; then
    "$script" "$N" >"$out.tmp" || { cat "$out.tmp" >&2; exit 1; }
    mv "$out.tmp" "$out"
fi
case $SERVER in
hub) pat='luahub (SIGTERM before)' ;;
*) pat='redis-server from AOF' ;;
esac
s=$(grep -F "$pat" "$out" | awk '{for (i = 1; i <= NF; i++) if ($(i+1) == "s") { print $i; exit }}')
k=$(grep -F 'luahub (kill -9 before)' "$out" | awk '{for (i = 1; i <= NF; i++) if ($(i+1) == "s") { print $i; exit }}')
[ -n "$s" ] || { echo "restart_time.sh printed no figure for $SERVER" >&2; cat "$out" >&2; exit 1; }
if [ "$SERVER" = hub ]; then
    printf '{"restart_s":%s,"restart_kill9_s":%s,"entries":%s}\n' "$s" "${k:-null}" "$N"
else
    printf '{"restart_s":%s,"entries":%s}\n' "$s" "$N"
fi
