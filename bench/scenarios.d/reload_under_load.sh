# Reload under load (DESIGN.md decision 5: no event lost). relay.lua is reloaded
# (HUB.RELOAD relay FORCE: a real new version each time, state handed over) in a
# loop with 100 ms pauses (about 5 reloads a second measured) while events stream through it, at full rate and at the fixed
# latency rate. Compare with lua_relay / lat_relay (the same without reloads).
# The loadgen counts lost and duplicated events by sequence number; any loss is
# listed under Problems in latest.md. luahub only; a fresh hub for each run.
RELOAD_LOOP='while :; do redis-cli -p "$PORT" HUB.RELOAD relay FORCE >/dev/null; sleep 0.1; done'
scenario reload_relay_sat label="relay+reload" fresh=1 redis=- \
    title="1→1 through relay.lua while HUB.RELOAD relay FORCE runs in a loop with 100 ms pauses (≈5 reloads/s) (the lost row counts events, 0 is the target)" \
    metrics=msgs_per_s,lost unit=msg/s \
    hub="pubsub --pubs 1 --subs 1 --size 64 --channel bench.in --sub-channel bench.out" \
    during="$RELOAD_LOOP"
scenario reload_relay_lat label="relay+reload" chart=latency fresh=1 redis=- \
    title="latency, relay.lua at ${LAT_RATE} msg/s while HUB.RELOAD relay FORCE runs in a loop with 100 ms pauses (≈5 reloads/s)" \
    metrics=p50_us,p99_us,p999_us unit=µs better=lower \
    hub="pubsub --pubs 1 --subs 1 --size 64 --rate $LAT_RATE --channel bench.in --sub-channel bench.out" \
    during="$RELOAD_LOOP"
