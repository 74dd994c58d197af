#!/usr/bin/python3
"""Checks bench/results/latest.csv after a bench run (`make test` runs it after
`bench/run.sh --tiny`): every scenario row must carry a finite, positive number
for each server it applies to ("applies" = both | luahub | redis), except the
rows in SKIP_OK, which may instead be skipped with the reason given there.

    /usr/bin/python3 bench/check_results.py [path/to/latest.csv]

Prints one line per problem and exits 1 if there is any; 0 otherwise.
"""
import csv
import math
import os
import sys

EXPECTED = {  # the built-in scenarios; a run missing one of them is incomplete
    "ps_1_1_64", "ps_1_10_64", "ps_10_10_64", "ps_1_1_4k", "ps_1_10_4k", "ps_10_10_4k", "ps_pat10k",
    "lua_relay", "call_echo", "call_echo_p16", "lat_1_1", "lat_relay", "lat_call", "mem_conn", "mem_sub",
    "xadd_fsync", "xadd_os", "xconsume", "cap_lua_ack", "lat_quiet", "lat_xadd_bg", "restart",
}
# The only row that may be skipped instead of measured, and the reason it must give:
# capture and Lua consumers are being built separately (bench/streams/capture_setup.sh
# skips the row while the hub lacks them). Any other skip, or another reason, is a problem.
SKIP_OK = {
    ("cap_lua_ack", "luahub"): "not available: ",
}


def number(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "results", "latest.csv")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        print("check_results: cannot read %s: %s" % (path, e))
        return 1
    problems = []
    seen = set()
    for r in rows:
        sc = r.get("scenario", "?")
        seen.add(sc)
        what = "%s/%s" % (sc, r.get("metric", "?"))
        applies = r.get("applies", "both")
        for srv in ("luahub", "redis"):
            if applies not in ("both", srv):
                continue
            v = number(r.get(srv))
            why = r.get(srv + "_skipped") or ""
            if v is None and why:
                ok = SKIP_OK.get((sc, srv))
                if ok is None or not why.startswith(ok):
                    problems.append("%s: %s skipped (%s): only %s may be skipped, with the reason in SKIP_OK" % (
                        what, srv, why, ", ".join(sorted("%s/%s" % k for k in SKIP_OK))))
                continue
            if v is None:
                errs = r.get(srv + "_errors") or "0"
                problems.append("%s: no %s value%s" % (what, srv, " (%s failed runs)" % errs if errs != "0" else ""))
            elif r.get("metric") == "lost":
                # a count whose only right value is zero (no event lost on reload)
                if v != 0:
                    problems.append("%s: %s lost %s events" % (what, srv, r.get(srv)))
            elif v < 0 or (v == 0 and r.get("better") == "higher"):
                problems.append("%s: %s value %s is not a measurement" % (what, srv, r.get(srv)))
        skipped_row = r.get("luahub_skipped") or r.get("redis_skipped")
        if applies == "both" and number(r.get("ratio")) is None and not problems and not skipped_row:
            problems.append("%s: no ratio" % what)
    missing = sorted(EXPECTED - seen)
    if missing and not os.environ.get("BENCH_ONLY"):
        problems.append("scenarios missing from the run: %s" % ", ".join(missing))
    for p in problems:
        print("check_results: " + p)
    print("check_results: %s: %d rows, %d problem(s)" % (path, len(rows), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
