#!/usr/bin/env bash
# bench/run.sh -- luahub against redis-server, every scenario, in the same run.
#
#   bench/run.sh            full run: 5 repetitions, 0.5 s warm-up + 2 s each (~6 min)
#   bench/run.sh --quick    3 repetitions of short measurements (~40 s, under a minute)
#   bench/run.sh --tiny     ~10 s smoke run for `make test` (1 repetition; numbers are
#                           not a benchmark, but every scenario produces one)
#
# Options: --reps N, --only REGEX (scenario ids), --hub-redis (a second redis-server
# in the luahub slot, for developing the harness), --pin (see BENCH_PIN).
# Environment:
#   HUB_CMD / REDIS_CMD   server command lines; {port} is replaced by a free port
#   BENCH_PROFILE         full|quick|tiny (same as the flags)
#   BENCH_REPS, BENCH_ONLY
#   BENCH_PIN=1           servers on CPU 1, load generator on CPU 0 (both servers alike)
#   BENCH_RESULTS         output directory (default bench/results)
#
# Writes $BENCH_RESULTS/latest.{md,csv,png} (plus dated copies unless --tiny).
# Every server this script starts is recorded and stopped (by PID) at exit.
#
# Adding a scenario: call `scenario` (see below) from a file in bench/scenarios.d/*.sh;
# bench/scenarios.d/README.md has the details and two ready-made examples.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

PROFILE=${BENCH_PROFILE:-full}
REPS=${BENCH_REPS:-}
ONLY=${BENCH_ONLY:-}
PIN=${BENCH_PIN:-0}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
LOADGEN=${LOADGEN:-$ROOT/build/loadgen}
PY=/usr/bin/python3
REDIS_CMD=${REDIS_CMD:-"redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning"}
HUB_CMD=${HUB_CMD:-"$ROOT/build/luahub --port {port} --bind 127.0.0.1 --handlers $ROOT/handlers --loglevel warning"}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) PROFILE=quick ;;
    --tiny) PROFILE=tiny ;;
    --full) PROFILE=full ;;
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --pin) PIN=1 ;;
    --hub-redis) HUB_CMD=$REDIS_CMD ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
    esac
    shift
done

# Durations (seconds) per measurement; counts are the same in every profile so
# that numbers stay comparable, only their precision changes.
case $PROFILE in
full)  REPS=${REPS:-5}; WARMUP=0.5;  DURATION=2;   DRAIN=2 ;;
quick) REPS=${REPS:-3}; WARMUP=0.08; DURATION=0.25; DRAIN=1 ;;
tiny)  REPS=${REPS:-1}; WARMUP=0.05; DURATION=0.15; DRAIN=0.5 ;;
*) echo "run.sh: unknown profile $PROFILE" >&2; exit 2 ;;
esac

[ -x "$LOADGEN" ] || { echo "run.sh: $LOADGEN missing (make bench-tools)" >&2; exit 1; }
mkdir -p "$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/luahub-bench.XXXXXX")
RAW=$WORK/raw.jsonl
: >"$RAW"

if [ "$PIN" = 1 ]; then
    SRV_PIN="taskset -c 1"; GEN_PIN="taskset -c 0"
else
    SRV_PIN=""; GEN_PIN=""
fi

# ---------------------------------------------------------------------------
# servers: started here, recorded, stopped by PID

declare -A OUR_PIDS=()   # servers we started and have not stopped yet
declare -A SRV_PID SRV_PORT

stop_pid() {
    local pid=$1
    unset "OUR_PIDS[$pid]"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 250); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# shellcheck disable=SC2317  # called from the trap
cleanup() {
    local pid
    for pid in "${!OUR_PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A random port nobody answers on, below the kernel's ephemeral range (where the
# loadgen's own client sockets live); start_server retries if it was taken anyway.
# Pure bash: spawning helpers costs ~0.1 s each on a loaded 2-core machine.
PORT_LO=10000 PORT_HI=32767
if read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && [ "$eph_lo" -gt 12000 ]; then
    PORT_HI=$((eph_lo - 1))
fi
free_port() {
    local p
    while :; do
        p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO + 1)))
        { exec 3<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null || { echo "$p"; return; }
        exec 3>&-
    done
}

ping_ok() { # port: an inline PING answered by +PONG
    local reply=''
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3 && read -r -t 2 reply <&3
    exec 3>&-
    [[ $reply == +PONG* ]]
}

# start_server NAME TEMPLATE -> SRV_PID[NAME], SRV_PORT[NAME]; the log is $WORK/NAME.log
start_server() {
    local name=$1 tmpl=$2 port pid cmd deadline
    for _ in 1 2 3; do
        port=$(free_port)
        cmd=${tmpl//\{port\}/$port}
        # the subshell execs the server, so $! is the server's own PID
        ( eval "exec $SRV_PIN $cmd" ) >>"$WORK/$name.log" 2>&1 </dev/null &
        pid=$!
        OUR_PIDS[$pid]=1
        deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ]; do
            kill -0 "$pid" 2>/dev/null || break
            if ping_ok "$port"; then
                SRV_PID[$name]=$pid SRV_PORT[$name]=$port
                return 0
            fi
            sleep 0.05
        done
        stop_pid "$pid"
    done
    echo "run.sh: could not start $name: $cmd" >&2
    tail -20 "$WORK/$name.log" >&2
    return 1
}

server_cmd() { [ "$1" = hub ] && echo "$HUB_CMD" || echo "$REDIS_CMD"; }

# ---------------------------------------------------------------------------
# scenarios
#
# scenario ID key=value...
#   title=     text for the table
#   hub=       loadgen arguments against luahub ("-": not run on luahub)
#   redis=     loadgen arguments against redis: "=" same as hub (default),
#              "@ID" reuse the redis samples of scenario ID (a baseline), "-" none
#   metrics=   comma list of JSON fields of the loadgen line (default msgs_per_s);
#              each becomes a row
#   unit=      unit shown (default msg/s)
#   better=    higher|lower (default higher)
#   target=    ratio>=X | ratio<=X | keep>=X:REFID (luahub vs its own REFID) | empty
#   fresh=1    a fresh server process for each measurement of this scenario
#              (anything that leaves state behind: memory, patterns, reloads)
#   during=    shell command run in the background while the load runs, then
#              stopped; sees $PORT, $PID (server), $SERVER (hub|redis), $ROOT
#   settle=    seconds to wait after starting `during` before the load starts
#   chart=     ratio | latency | none (default: ratio for throughput, else none)
#   label=     short name for the chart (default: the id)
# The loadgen always gets --port, --pid, --warmup, --duration, --drain, --label.

declare -a SC_IDS=()
declare -A SC

scenario() {
    local id=$1 kv
    shift
    SC_IDS+=("$id")
    SC[$id.title]=$id SC[$id.hub]=- SC[$id.redis]="=" SC[$id.metrics]=msgs_per_s
    SC[$id.unit]=msg/s SC[$id.better]=higher SC[$id.target]='' SC[$id.fresh]=0
    SC[$id.during]='' SC[$id.settle]=0 SC[$id.chart]='' SC[$id.label]=$id
    for kv in "$@"; do SC[$id.${kv%%=*}]=${kv#*=}; done
    if [ -z "${SC[$id.chart]}" ]; then
        case ${SC[$id.unit]} in */s) SC[$id.chart]=ratio ;; *) SC[$id.chart]=none ;; esac
    fi
}

LAT_RATE=20000   # fixed rate for the pub/sub latency scenarios (msg/s)
CALL_RATE=10000  # fixed rate for the request/reply latency scenario (calls/s)

scenario ps_1_1_64    label="1→1 64B" title="pub/sub 1→1, 64 B"     hub="pubsub --pubs 1 --subs 1 --size 64" target="ratio>=1.0"
scenario ps_1_10_64   label="1→10 64B" title="pub/sub 1→10, 64 B"    hub="pubsub --pubs 1 --subs 10 --size 64" target="ratio>=1.0"
scenario ps_10_10_64  label="10→10 64B" title="pub/sub 10→10, 64 B"   hub="pubsub --pubs 10 --subs 10 --size 64"
scenario ps_1_1_4k    label="1→1 4K" title="pub/sub 1→1, 4 KiB"    hub="pubsub --pubs 1 --subs 1 --size 4096"
scenario ps_1_10_4k   label="1→10 4K" title="pub/sub 1→10, 4 KiB"   hub="pubsub --pubs 1 --subs 10 --size 4096"
scenario ps_10_10_4k  label="10→10 4K" title="pub/sub 10→10, 4 KiB"  hub="pubsub --pubs 10 --subs 10 --size 4096"
# Redis never shrinks its pattern dict, so after this scenario its plain 1->1
# stays ~20x slower in the same process: hence a fresh server (for both).
scenario ps_pat10k    label="10k idle pats" title="pub/sub 1→1 + 10,000 idle patterns" fresh=1 \
    hub="pubsub --pubs 1 --subs 1 --size 64 --idle-patterns 10000" target="keep>=0.5:ps_1_1_64"
scenario lua_relay    label="Lua relay" title="1→1 through a Lua handler (bench.in → relay.lua → bench.out; redis: plain 1→1)" \
    hub="pubsub --pubs 1 --subs 1 --size 64 --channel bench.in --sub-channel bench.out" redis=@ps_1_1_64 \
    target="ratio>=0.6"
scenario call_echo    label="CALL echo" title="request/reply: HUB.CALL echo.v1 vs FCALL echo, 50 conns, no pipelining" \
    metrics=calls_per_s unit=calls/s target="ratio>=1.0" \
    hub="call --conns 50 --pipeline 1 --size 64 --name echo.v1" \
    redis="call --conns 50 --pipeline 1 --size 64 --fcall"
scenario call_echo_p16 label="CALL echo p16" title="request/reply, 10 conns × pipeline 16" metrics=calls_per_s unit=calls/s \
    hub="call --conns 10 --pipeline 16 --size 64 --name echo.v1" \
    redis="call --conns 10 --pipeline 16 --size 64 --fcall"
scenario lat_1_1      label="1→1" title="latency, pub/sub 1→1 at ${LAT_RATE} msg/s" metrics=p50_us,p99_us,p999_us \
    unit=µs better=lower chart=latency hub="pubsub --pubs 1 --subs 1 --size 64 --rate $LAT_RATE"
scenario lat_relay    label="relay" title="latency, through relay.lua at ${LAT_RATE} msg/s (redis: plain 1→1)" \
    metrics=p50_us,p99_us,p999_us unit=µs better=lower chart=latency redis=@lat_1_1 \
    hub="pubsub --pubs 1 --subs 1 --size 64 --rate $LAT_RATE --channel bench.in --sub-channel bench.out"
scenario lat_call     label="CALL" title="latency, HUB.CALL vs FCALL at ${CALL_RATE} calls/s (10 conns)" \
    metrics=p50_us,p99_us,p999_us unit=µs better=lower chart=latency \
    hub="call --conns 10 --size 64 --rate $CALL_RATE --name echo.v1" \
    redis="call --conns 10 --size 64 --rate $CALL_RATE --fcall"
scenario mem_conn     title="RSS per idle connection (2,000 connections)" metrics=bytes_per unit=bytes \
    better=lower fresh=1 target="ratio<=1.0" hub="mem --conns 2000"
scenario mem_sub      title="RSS per subscription (1 connection, 20,000 channels)" metrics=bytes_per \
    unit=bytes better=lower fresh=1 hub="mem --channels 20000"

# Scenarios other engineers add (reload under load, remote listeners, ...).
for f in "$ROOT"/bench/scenarios.d/*.sh; do
    [ -e "$f" ] || continue
    # shellcheck disable=SC1090
    . "$f"
done

# ---------------------------------------------------------------------------
# measurement

# run_one ID SERVER REP: one loadgen run, appended to $RAW as
#   {"scenario":..,"server":..,"rep":..,"result":{loadgen's line}}
run_one() {
    local id=$1 srv=$2 rep=$3 args port pid out rc during_pid='' t0=${EPOCHREALTIME/./}
    if [ "$srv" = hub ]; then args=${SC[$id.hub]}; else args=${SC[$id.redis]}; fi
    [ "$args" = "=" ] && args=${SC[$id.hub]}
    case $args in -|@*|"") return 0 ;; esac
    if [ "${SC[$id.fresh]}" = 1 ]; then
        start_server "$srv-fresh" "$(server_cmd "$srv")" || return 1
        port=${SRV_PORT[$srv-fresh]} pid=${SRV_PID[$srv-fresh]}
    else
        if ! kill -0 "${SRV_PID[$srv]}" 2>/dev/null; then
            # it died (a crash in an earlier scenario): say so, restart, go on
            printf '{"scenario":"%s","server":"%s","rep":%d,"result":{"error":"server had exited before this run (after %s); restarted"}}\n' \
                "$id" "$srv" "$rep" "$LAST_RUN" >>"$RAW"
            wait "${SRV_PID[$srv]}" 2>/dev/null
            start_server "$srv" "$(server_cmd "$srv")" || return 1
        fi
        port=${SRV_PORT[$srv]} pid=${SRV_PID[$srv]}
    fi
    LAST_RUN="$id/$rep"
    if [ -n "${SC[$id.during]}" ]; then
        # its own process group (setsid does not fork here), stopped as a group
        PORT=$port PID=$pid SERVER=$srv ROOT=$ROOT setsid bash -c "${SC[$id.during]}" \
            >>"$WORK/during.log" 2>&1 </dev/null &
        during_pid=$!
        sleep "${SC[$id.settle]}"
    fi
    # shellcheck disable=SC2086
    out=$(timeout 300 $GEN_PIN "$LOADGEN" $args --port "$port" --pid "$pid" --warmup "$WARMUP" \
        --duration "$DURATION" --drain "$DRAIN" --label "$id/$srv/$rep" 2>>"$WORK/loadgen.err")
    rc=$?
    if [ -n "$during_pid" ]; then
        kill -TERM -- "-$during_pid" 2>/dev/null
        stop_pid "$during_pid"
    fi
    if [ "${SC[$id.fresh]}" = 1 ]; then stop_pid "$pid"; fi
    out=${out##*$'\n'}   # its last line
    [[ $out == \{* ]] || out="{\"error\":\"loadgen exited $rc without a result\"}"
    printf '{"scenario":"%s","server":"%s","rep":%d,"result":%s}\n' "$id" "$srv" "$rep" "$out" >>"$RAW"
    # a short progress line on stderr
    local k summary=''
    for k in msgs_per_s calls_per_s p99_us bytes_per lost srv_cpu gen_cpu; do
        [[ $out =~ \"$k\":([0-9.]+) ]] && summary+="$k=${BASH_REMATCH[1]} "
    done
    [[ $out =~ \"error\":\"([^\"]*) ]] && summary+="error: ${BASH_REMATCH[1]}"
    printf '  %-14s %-5s rep %d %5dms: %s\n' "$id" "$srv" "$rep" $(((${EPOCHREALTIME/./} - t0) / 1000)) "$summary" >&2
    return 0
}

SELECTED=()
for id in "${SC_IDS[@]}"; do
    if [ -z "$ONLY" ] || [[ $id =~ $ONLY ]]; then SELECTED+=("$id"); fi
done

START=$SECONDS
LAST_RUN=start
start_server hub "$HUB_CMD" || exit 1
start_server redis "$REDIS_CMD" || exit 1
echo "bench: profile=$PROFILE reps=$REPS warmup=${WARMUP}s duration=${DURATION}s pin=$PIN" >&2
echo "bench: luahub pid ${SRV_PID[hub]} port ${SRV_PORT[hub]}: $HUB_CMD" >&2
echo "bench: redis  pid ${SRV_PID[redis]} port ${SRV_PORT[redis]}: $REDIS_CMD" >&2

for rep in $(seq "$REPS"); do
    # alternate which server goes first: hub, redis | redis, hub | ...
    if [ $((rep % 2)) = 1 ]; then order="hub redis"; else order="redis hub"; fi
    for id in "${SELECTED[@]}"; do
        for srv in $order; do run_one "$id" "$srv" "$rep"; done
    done
done

# Describe the scenarios for the report.
DEFS=$WORK/scenarios.tsv
for id in "${SELECTED[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "${SC[$id.title]}" "${SC[$id.metrics]}" \
        "${SC[$id.unit]}" "${SC[$id.better]}" "${SC[$id.target]}" "${SC[$id.hub]}" "${SC[$id.redis]}" \
        "${SC[$id.chart]}" "${SC[$id.label]}"
done >"$DEFS"

STAMP=$(date +%Y-%m-%d_%H%M%S)
META=$WORK/meta.env
{
    echo "profile=$PROFILE"
    echo "reps=$REPS"
    echo "warmup=$WARMUP"
    echo "duration=$DURATION"
    echo "pin=$PIN"
    echo "date=$(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo "cpus=$(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "redis_version=$(redis-server --version | head -1)"
    echo "hub_cmd=$HUB_CMD"
    echo "redis_cmd=$REDIS_CMD"
    echo "elapsed=$((SECONDS - START))"
} >"$META"

$PY "$ROOT/bench/report.py" --raw "$RAW" --defs "$DEFS" --meta "$META" --out "$RESULTS" \
    --stamp "$([ "$PROFILE" = tiny ] || echo "$STAMP")"
rc=$?
cp "$RAW" "$RESULTS/latest-raw.jsonl.tmp" 2>/dev/null
for f in "$WORK"/*.log "$WORK"/loadgen.err; do   # server logs, for post-mortems
    [ -s "$f" ] && cp "$f" "$RESULTS/latest-$(basename "$f").tmp"
done
exit $rc
