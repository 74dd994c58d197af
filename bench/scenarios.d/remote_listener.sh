# Request/reply through a remote unicast listener (roadmap 3): the same loadgen
# process also opens one listener connection (`call --listener 1`) that holds
# echo.remote.v1 (HUB.LISTEN) and answers every [request, id, name, payload]
# frame with HUB.REPLY id payload, the replies to one read written in one batch.
# One listener because the newest HUB.LISTEN takes a name over (`--listener N`
# spreads the callers over N names, NAME.0..NAME.<N-1>, one listener each).
# Callers and listener share the generator's one thread, as in every scenario.
#
# The same shapes as the Lua-listener rows call_echo / call_echo_p16 / lat_call
# (HUB.CALL echo.v1, answered by handlers/echo.lua), so the luahub column of the
# two rows is remote vs Lua; the redis column reuses those rows' FCALL echo
# samples (no extra redis runs).
#
# Pipelining: a caller's pipelined HUB.CALLs to a client listener all go out at
# once (up to 1024 outstanding per caller; README, Unicast listeners, "Blocking
# and pipelining"), so 10 conns × pipeline 16 keeps up to 160 requests at the
# listener, which answers each read's worth in one write; the hub writes every
# caller's replies in request order. Against FCALL, where redis runs all 160
# back to back.
# The listener's counts (lis_replies, lis_ok, lis_errors, lis_other: e.g. a
# `replaced` push) are in the loadgen's JSON line (latest-raw.jsonl.tmp).
scenario call_remote label="CALL remote" metrics=calls_per_s unit=calls/s redis=@call_echo \
    title="request/reply through a remote listener (HUB.CALL → client HUB.LISTEN/HUB.REPLY), 50 conns, no pipelining (Lua: call_echo; redis: FCALL echo)" \
    hub="call --conns 50 --pipeline 1 --size 64 --name echo.remote.v1 --listener 1"
scenario call_remote_p16 label="CALL remote p16" metrics=calls_per_s unit=calls/s redis=@call_echo_p16 \
    title="request/reply through a remote listener, 10 conns × pipeline 16 (all 16 outstanding per caller; Lua: call_echo_p16; redis: FCALL)" \
    hub="call --conns 10 --pipeline 16 --size 64 --name echo.remote.v1 --listener 1"
scenario lat_call_remote label="CALL remote" metrics=p50_us,p99_us,p999_us unit=µs better=lower chart=latency \
    redis=@lat_call \
    title="latency, HUB.CALL through a remote listener at ${CALL_RATE} calls/s (10 conns; Lua: lat_call; redis: FCALL)" \
    hub="call --conns 10 --size 64 --rate $CALL_RATE --name echo.remote.v1 --listener 1"
