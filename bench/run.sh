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
#   BENCH_DATA            where servers' data directories go (default build/: a real
#                         disk, so fsync costs what it costs; not a tmpfs)
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
HUB_CMD=${HUB_CMD:-"$ROOT/build/luahub --port {port} --bind 127.0.0.1 --handlers $ROOT/handlers --loglevel warning --dir {dir}"}
HUB_REDIS=0

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) PROFILE=quick ;;
    --tiny) PROFILE=tiny ;;
    --full) PROFILE=full ;;
    --reps) REPS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --pin) PIN=1 ;;
    --hub-redis) HUB_CMD=$REDIS_CMD HUB_REDIS=1 ;;
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
# servers' data directories ({dir}): one fresh directory per server start
mkdir -p "${BENCH_DATA:-$ROOT/build}"
DATA=$(mktemp -d "${BENCH_DATA:-$ROOT/build}/bench-data.XXXXXX")
NDIRS=0
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
declare -A SRV_PID SRV_PORT SRV_DIR

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
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK" "$DATA"
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

# start_server NAME TEMPLATE -> SRV_PID[NAME], SRV_PORT[NAME], SRV_DIR[NAME] (a new
# empty directory, with an empty handlers/ in it, substituted for {dir}); the log is
# $WORK/NAME.log
start_server() {
    local name=$1 tmpl=$2 port pid cmd deadline dir
    NDIRS=$((NDIRS + 1))
    dir=$DATA/$name.$NDIRS
    mkdir -p "$dir/handlers"
    SRV_DIR[$name]=$dir
    for _ in 1 2 3; do
        port=$(free_port)
        cmd=${tmpl//\{port\}/$port}
        cmd=${cmd//\{dir\}/$dir}
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

# server_cmd_for ID SERVER: the command line, plus the scenario's hub_args/redis_args
# (with --hub-redis, the redis slot's arguments go to both)
server_cmd_for() {
    local extra
    if [ "$2" = hub ] && [ "$HUB_REDIS" = 0 ]; then extra=${SC[$1.hub_args]}; else extra=${SC[$1.redis_args]}; fi
    echo "$(server_cmd "$2")${extra:+ $extra}"
}

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
#   hub_args=  arguments added to the luahub command line for this scenario ({dir}:
#   redis_args= the server's own fresh data directory); either implies fresh=1
#   setup=     shell command run after the (fresh) server is up, before the load;
#              sees $PORT $PID $SERVER $ROOT $DIR. Exit 0: go on; exit 77: the row
#              is *skipped* on that server, the last line printed is the reason
#              (shown in the table; check_results.py accepts it only for the rows
#              it lists); any other exit: a failed run
#   run=       shell command run INSTEAD of the loadgen (no harness server): it
#              prints one JSON line like the loadgen's; sees $SERVER $ROOT $LOADGEN
#              $PROFILE $REP $WORKDIR (an empty directory) $RUNDIR (kept for the whole
#              bench run); exit 77 = skipped as above
#   reps=N     at most N repetitions of this scenario (expensive ones)
#   target_on= the metric the target applies to (default: every metric of the row)
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
    SC[$id.hub_args]='' SC[$id.redis_args]='' SC[$id.setup]='' SC[$id.run]='' SC[$id.target_on]='' SC[$id.reps]=''
    for kv in "$@"; do SC[$id.${kv%%=*}]=${kv#*=}; done
    if [ -n "${SC[$id.hub_args]}${SC[$id.redis_args]}" ]; then SC[$id.fresh]=1; fi
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

# Durable streams (README "Durable streams"). Every one gets fresh servers with a fresh
# data directory ({dir}, under BENCH_DATA) and the durability settings named in the
# title; redis gets its AOF (appendfsync always = luahub fsync, everysec = os).
HUB_FSYNC="--durability fsync" REDIS_ALWAYS="--dir {dir} --appendonly yes --appendfsync always"
HUB_OS="--durability os" REDIS_EVERYSEC="--dir {dir} --appendonly yes --appendfsync everysec"
case $PROFILE in  # consume: entries pre-filled; restart: entries stored
full)  XC_N=100000; RESTART_N=1000000 ;;
quick) XC_N=20000;  RESTART_N=100000 ;;
*)     XC_N=2000;   RESTART_N=10000 ;;
esac
XADD_LOAD="call --conns 4 --pipeline 64 --size 64 --cmd XADD,bench.xadd,*,data"
scenario xadd_fsync   label="XADD fsync" title="XADD pipelined (4 conns × 64), 64 B, luahub durability fsync vs redis appendfsync always" \
    metrics=calls_per_s unit=XADD/s target="ratio>=1.0" hub_args="$HUB_FSYNC" redis_args="$REDIS_ALWAYS" \
    hub="$XADD_LOAD"
scenario xadd_os      label="XADD os" title="XADD pipelined (4 conns × 64), 64 B, luahub durability os vs redis appendfsync everysec" \
    metrics=calls_per_s unit=XADD/s target="ratio>=1.0" hub_args="$HUB_OS" redis_args="$REDIS_EVERYSEC" \
    hub="$XADD_LOAD"
scenario xconsume     label="XREADGROUP+XACK" title="consume: $XC_N entries pre-filled, 4 consumers XREADGROUP COUNT 100 + XACK until drained (os / everysec)" \
    metrics=consumed_per_s unit=entries/s hub_args="$HUB_OS" redis_args="$REDIS_EVERYSEC" \
    hub="consume --key bench.consume --entries $XC_N --conns 4 --count 100 --size 64"
# Capture and Lua consumers (HUB.STREAM, handler key `consume`) are separate work:
# until the hub has them, bench/streams/capture_setup.sh skips this row with the reason.
# shellcheck disable=SC2016  # expanded by the harness when the setup runs
scenario cap_lua_ack  label="capture→Lua" redis=- \
    title="PUBLISH → capture (HUB.STREAM) → Lua consume handler → ack (its hub.publish counted), 1→1, 64 B" \
    hub_args="$HUB_OS --handlers {dir}/handlers" setup='"$ROOT/bench/streams/capture_setup.sh"' \
    hub="pubsub --pubs 1 --subs 1 --size 64 --channel bench.cap.in --sub-channel bench.cap.out"
# pub/sub latency with and without a stream writer at full speed (pipelined XADD,
# MAXLEN ~ 100000 so the stream stays the same size), same server settings.
# shellcheck disable=SC2016  # expanded when `during` runs
XADD_BG='exec "$LOADGEN" call --port "$PORT" --conns 1 --pipeline 64 --size 64 --warmup 0 --duration 100000 --drain 0 --cmd "XADD bench.bg MAXLEN ~ 100000 * data"'
scenario lat_quiet    label="quiet" chart=latency title="latency, pub/sub 1→1 at ${LAT_RATE} msg/s, streams on (os / everysec), no stream writer" \
    metrics=p50_us,p99_us,p999_us unit=µs better=lower hub_args="$HUB_OS" redis_args="$REDIS_EVERYSEC" \
    hub="pubsub --pubs 1 --subs 1 --size 64 --rate $LAT_RATE"
scenario lat_xadd_bg  label="+XADD" chart=latency title="latency, pub/sub 1→1 at ${LAT_RATE} msg/s while another client XADDs at full speed (pipeline 64)" \
    metrics=p50_us,p99_us,p999_us unit=µs better=lower hub_args="$HUB_OS" redis_args="$REDIS_EVERYSEC" \
    target="keep<=1.2:lat_quiet" target_on=p99_us during="$XADD_BG" settle=0.2 \
    hub="pubsub --pubs 1 --subs 1 --size 64 --rate $LAT_RATE"
# Restart with RESTART_N stored entries vs redis loading them from its AOF; measured by
# bench/restart_time.sh (bench/streams/restart_row.sh runs it once per repetition for
# both servers, or says why not). At most 3 repetitions: 1M entries take a while.
scenario restart      label="restart" title="restart time with $RESTART_N stored entries, until PING answers (luahub os after SIGTERM; redis: loading its AOF, everysec)" \
    metrics=restart_s unit=s better=lower hub="(run)" redis="(run)" reps=3 chart=none \
    run="\"\$ROOT/bench/streams/restart_row.sh\" $RESTART_N"

# Scenarios other engineers add (reload under load, remote listeners, ...).
for f in "$ROOT"/bench/scenarios.d/*.sh; do
    [ -e "$f" ] || continue
    # shellcheck disable=SC1090
    . "$f"
done

# ---------------------------------------------------------------------------
# measurement

# record ID SERVER REP JSON: one result line in $RAW
record() {
    printf '{"scenario":"%s","server":"%s","rep":%d,"result":%s}\n' "$1" "$2" "$3" "$4" >>"$RAW"
}

# json_str TEXT: TEXT as a JSON string (quotes, backslashes and control characters escaped)
json_str() {
    $PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"
}

# run_one ID SERVER REP: one loadgen run (or the scenario's run= command), appended
# to $RAW as {"scenario":..,"server":..,"rep":..,"result":{loadgen's line}}; a
# skipped run's result is {"skipped": "reason"}
run_one() {
    local id=$1 srv=$2 rep=$3 args port pid out rc during_pid='' dir='' t0=${EPOCHREALTIME/./}
    if [ "$srv" = hub ]; then args=${SC[$id.hub]}; else args=${SC[$id.redis]}; fi
    [ "$args" = "=" ] && args=${SC[$id.hub]}
    case $args in -|@*|"") return 0 ;; esac
    [ -n "${SC[$id.reps]}" ] && [ "$rep" -gt "${SC[$id.reps]}" ] && return 0
    LAST_RUN="$id/$rep"
    if [ -n "${SC[$id.run]}" ]; then
        local wd
        wd=$(mktemp -d "$DATA/run.XXXXXX")
        out=$(SERVER=$srv ROOT=$ROOT LOADGEN=$LOADGEN PROFILE=$PROFILE WORKDIR=$wd RUNDIR=$DATA REP=$rep \
            timeout 900 bash -c "${SC[$id.run]}" 2>>"$WORK/run.err" </dev/null)
        rc=$?
        rm -rf "$wd"
        out=${out##*$'\n'}
        # shellcheck disable=SC1003  # tr deletes quotes and backslashes
        if [ "$rc" = 77 ]; then out="{\"skipped\":$(json_str "$out")}"
        elif [ "$rc" != 0 ] || [[ $out != \{* ]]; then out="{\"error\":\"run= command exited $rc: $(json_str "$out" | tr -d '"\\')\"}"
        fi
        record "$id" "$srv" "$rep" "$out"
        progress "$id" "$srv" "$rep" "$t0" "$out"
        return 0
    fi
    if [ "${SC[$id.fresh]}" = 1 ]; then
        start_server "$srv-fresh" "$(server_cmd_for "$id" "$srv")" || return 1
        port=${SRV_PORT[$srv-fresh]} pid=${SRV_PID[$srv-fresh]} dir=${SRV_DIR[$srv-fresh]}
    else
        if ! kill -0 "${SRV_PID[$srv]}" 2>/dev/null; then
            # it died (a crash in an earlier scenario): say so, restart, go on
            record "$id" "$srv" "$rep" "{\"error\":\"server had exited before this run (after $LAST_RUN); restarted\"}"
            wait "${SRV_PID[$srv]}" 2>/dev/null
            start_server "$srv" "$(server_cmd "$srv")" || return 1
        fi
        port=${SRV_PORT[$srv]} pid=${SRV_PID[$srv]} dir=${SRV_DIR[$srv]}
    fi
    out=''
    if [ -n "${SC[$id.setup]}" ]; then
        out=$(PORT=$port PID=$pid SERVER=$srv ROOT=$ROOT DIR=$dir timeout 60 bash -c "${SC[$id.setup]}" \
            2>>"$WORK/setup.err" </dev/null)
        rc=$?
        out=${out##*$'\n'}
        # shellcheck disable=SC1003  # tr deletes quotes and backslashes
        if [ "$rc" = 77 ]; then out="{\"skipped\":$(json_str "$out")}"
        elif [ "$rc" != 0 ]; then out="{\"error\":\"setup exited $rc: $(json_str "$out" | tr -d '"\\')\"}"
        else out=''
        fi
    fi
    if [ -z "$out" ]; then
        if [ -n "${SC[$id.during]}" ]; then
            # its own process group (setsid does not fork here), stopped as a group
            PORT=$port PID=$pid SERVER=$srv ROOT=$ROOT LOADGEN=$LOADGEN setsid bash -c "${SC[$id.during]}" \
                >>"$WORK/during.log" 2>&1 </dev/null &
            during_pid=$!
            sleep "${SC[$id.settle]}"
        fi
        set -f   # the arguments are split on spaces, never globbed (XADD,key,*,...)
        # shellcheck disable=SC2086
        out=$(timeout 300 $GEN_PIN "$LOADGEN" $args --port "$port" --pid "$pid" --warmup "$WARMUP" \
            --duration "$DURATION" --drain "$DRAIN" --label "$id/$srv/$rep" 2>>"$WORK/loadgen.err")
        rc=$?
        set +f
        if [ -n "$during_pid" ]; then
            kill -TERM -- "-$during_pid" 2>/dev/null
            stop_pid "$during_pid"
        fi
        out=${out##*$'\n'}   # its last line
        [[ $out == \{* ]] || out="{\"error\":\"loadgen exited $rc without a result\"}"
    fi
    if [ "${SC[$id.fresh]}" = 1 ]; then
        stop_pid "$pid"
        rm -rf "$dir"
    fi
    record "$id" "$srv" "$rep" "$out"
    progress "$id" "$srv" "$rep" "$t0" "$out"
    return 0
}

# progress ID SERVER REP T0 JSON: a short progress line on stderr
progress() {
    local k summary='' out=$5
    for k in msgs_per_s calls_per_s consumed_per_s restart_s p99_us bytes_per lost srv_cpu gen_cpu; do
        [[ $out =~ \"$k\":([0-9.]+) ]] && summary+="$k=${BASH_REMATCH[1]} "
    done
    [[ $out =~ \"error\":\"([^\"]*) ]] && summary+="error: ${BASH_REMATCH[1]}"
    [[ $out =~ \"skipped\":\"([^\"]*) ]] && summary+="skipped: ${BASH_REMATCH[1]}"
    printf '  %-14s %-5s rep %d %5dms: %s\n' "$1" "$2" "$3" $(((${EPOCHREALTIME/./} - $4) / 1000)) "$summary" >&2
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "${SC[$id.title]}" "${SC[$id.metrics]}" \
        "${SC[$id.unit]}" "${SC[$id.better]}" "${SC[$id.target]}" "${SC[$id.hub]}" "${SC[$id.redis]}" \
        "${SC[$id.chart]}" "${SC[$id.label]}" "${SC[$id.target_on]}" "${SC[$id.hub_args]}" "${SC[$id.redis_args]}"
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
