#!/usr/bin/python3
"""Turns bench/run.sh's raw loadgen lines into the results table, CSV and chart.

    report.py --raw raw.jsonl --defs scenarios.tsv --meta meta.env --out DIR [--stamp S]

Writes DIR/latest.md, DIR/latest.csv, DIR/latest.png (and DIR/<stamp>.* when a
stamp is given) and prints the Markdown on stdout.  Medians throughout; the
spread is (max - min) / median over the repetitions.  A run whose result is
{"skipped": reason} (a scenario's setup found the feature missing) makes the row
show "skipped" with the reason; bench/check_results.py decides whether that is
acceptable for the row.
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def repo_relative(cmd):
    """A server command line as the report shows it: paths inside the
    repository relative to its root, so committed reports name no machine's
    directories."""
    return (cmd or "").replace(REPO + "/", "")
METRIC_NAMES = {"p50_us": "p50", "p90_us": "p90", "p99_us": "p99", "p999_us": "p99.9", "max_us": "max"}
LAT_FIELDS = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]
CSV_FIELDS = ["scenario", "metric", "title", "unit", "better", "applies", "luahub", "redis", "ratio",
              "luahub_spread_pct", "redis_spread_pct", "luahub_n", "redis_n", "target", "target_value", "met", "note",
              "luahub_errors", "redis_errors", "luahub_skipped", "redis_skipped", "profile", "reps"]


def load(args):
    defs = []
    with open(args.defs, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 9:
                continue
            defs.append(dict(id=p[0], title=p[1], metrics=p[2].split(","), unit=p[3], better=p[4],
                             target=p[5], hub=p[6], redis=p[7], chart=p[8],
                             label=p[9] if len(p) > 9 and p[9] else p[0],
                             target_on=p[10] if len(p) > 10 else "",
                             hub_args=p[11] if len(p) > 11 else "", redis_args=p[12] if len(p) > 12 else ""))
    samples, errors, skipped = {}, {}, {}
    with open(args.raw, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (d["scenario"], d["server"])
            r = d.get("result", {})
            if "error" in r:
                errors.setdefault(key, []).append(r["error"])
            elif "skipped" in r:
                skipped.setdefault(key, []).append(str(r["skipped"]) or "no reason given")
            else:
                samples.setdefault(key, []).append(r)
    meta = {}
    with open(args.meta, encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return defs, samples, errors, skipped, meta


def values(samples, key, metric):
    return [float(r[metric]) for r in samples.get(key, []) if isinstance(r.get(metric), (int, float))]


def median(v):
    return statistics.median(v) if v else None


def spread(v):
    if len(v) < 2:
        return None
    m = statistics.median(v)
    return 100.0 * (max(v) - min(v)) / m if m else None


def redis_key(d):
    """(scenario whose redis samples apply, applicable?)"""
    spec = d["redis"]
    if spec == "-" or spec == "":
        return None
    if spec.startswith("@"):
        return (spec[1:], "redis")
    return (d["id"], "redis")


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return "%.3f" % v
    if unit == "µs":
        return "%.1f" % v if v < 1000 else "{:,.0f}".format(v)
    return "{:,.0f}".format(v)


def pct(v):
    return "n/a" if v is None else ("%.0f%%" % v if v >= 10 else "%.1f%%" % v)


def build_rows(defs, samples, errors, skipped, meta):
    by_id = {d["id"]: d for d in defs}
    rows = []
    for d in defs:
        hub_applies = d["hub"] not in ("-", "")
        rk = redis_key(d)
        for metric in d["metrics"]:
            title = d["title"]
            if len(d["metrics"]) > 1:
                title += " — " + METRIC_NAMES.get(metric, metric)
            hv = values(samples, (d["id"], "hub"), metric) if hub_applies else []
            rv = values(samples, rk, metric) if rk else []
            hm, rm = median(hv), median(rv)
            ratio = hm / rm if hm is not None and rm else None
            target, met, note, tval = d["target"], "", "", None
            if d["target_on"] and metric != d["target_on"]:
                target = ""
            if d["redis"].startswith("@"):
                note = "redis column: %s" % by_id.get(d["redis"][1:], {}).get("title", d["redis"][1:])
            if target.startswith("ratio>=") or target.startswith("ratio<="):
                x = float(target[7:])
                tval = ratio
                if ratio is not None:
                    met = "yes" if (ratio >= x if target[5] == ">" else ratio <= x) else "NO"
                target = "luahub/redis %s %s" % ("≥" if target[5] == ">" else "≤", target[7:])
            elif target.startswith("keep<="):
                # a latency that may grow at most x times its own value in scenario REF
                x, ref = target[6:].split(":", 1)
                x = float(x)
                refms = by_id.get(ref, {"metrics": [metric]})["metrics"]
                refm = metric if metric in refms else refms[0]
                h_ref = median(values(samples, (ref, "hub"), refm))
                r_ref = median(values(samples, (ref, "redis"), refm))
                gh = hm / h_ref if hm is not None and h_ref else None
                gr = rm / r_ref if rm is not None and r_ref else None
                if gh is not None:
                    met = "yes" if gh <= x else "NO"
                    tval = gh
                target = "luahub ≤ %.2g× its own %s: **%s** (redis %s)" % (
                    x, ref, "n/a" if gh is None else "%.2f×" % gh, "n/a" if gr is None else "%.2f×" % gr)
            elif target.startswith("keep>="):
                x, ref = target[6:].split(":", 1)
                x = float(x)
                refms = by_id.get(ref, {"metrics": [metric]})["metrics"]
                refm = metric if metric in refms else refms[0]
                h_ref = median(values(samples, (ref, "hub"), refm))
                r_ref = median(values(samples, (ref, "redis"), refm))
                keep_h = 100.0 * hm / h_ref if hm is not None and h_ref else None
                keep_r = 100.0 * rm / r_ref if rm is not None and r_ref else None
                if keep_h is not None:
                    met = "yes" if keep_h >= 100 * x else "NO"
                    tval = keep_h / 100
                target = "luahub ≥ %.0f%% of its own %s: keeps **%s** (redis keeps %s)" % (
                    100 * x, ref, pct(keep_h), pct(keep_r))
            he = len(errors.get((d["id"], "hub"), [])) if hub_applies else 0
            re_ = len(errors.get(rk, [])) if rk and not d["redis"].startswith("@") else 0
            hs = (skipped.get((d["id"], "hub")) or [""])[0] if hub_applies and hm is None else ""
            rs_ = (skipped.get(rk) or [""])[0] if rk and rm is None else ""
            if (hs or rs_) and target:
                met = "skipped"
            rows.append(dict(
                scenario=d["id"], metric=metric, title=title, unit=d["unit"], better=d["better"],
                applies="both" if hub_applies and rk else ("luahub" if hub_applies else "redis"),
                luahub=hm, redis=rm, ratio=ratio, luahub_spread_pct=spread(hv), redis_spread_pct=spread(rv),
                luahub_n=len(hv), redis_n=len(rv), target=target, target_value=tval, met=met, note=note,
                luahub_errors=he, redis_errors=re_, luahub_skipped=hs, redis_skipped=rs_, profile=meta.get("profile", ""), reps=meta.get("reps", ""),
                chart=d["chart"], label=d["label"]))
    return rows


def cell(r, srv):
    if r["applies"] not in ("both", srv):
        return "—"
    if r[srv] is None and r[srv + "_skipped"]:
        return "skipped"
    return fmt(r[srv], r["unit"])


def markdown(rows, defs, samples, errors, meta):
    out = []
    slot_is_redis = "redis-server" in meta.get("hub_cmd", "")
    out.append("# luahub vs redis-server — %s" % meta.get("date", ""))
    out.append("")
    if meta.get("profile") == "tiny":
        out.append("**Profile `tiny`: a smoke run (very short measurements). These numbers are not a benchmark.**")
        out.append("")
    if slot_is_redis:
        out.append("**The luahub column was measured against a second redis-server** (`HUB_CMD` = `%s`): "
                   "this run checks the harness, not luahub." % meta.get("hub_cmd"))
        out.append("")
    out.append("Profile `%s`: %s repetitions per server, alternating (hub, redis / redis, hub / …); "
               "each measurement %ss after a %ss warm-up. Machine: %s. Pinned: %s. Run took %ss."
               % (meta.get("profile"), meta.get("reps"), meta.get("duration"), meta.get("warmup"),
                  meta.get("cpus"), "yes (servers CPU 1, loadgen CPU 0)" if meta.get("pin") == "1" else "no",
                  meta.get("elapsed")))
    out.append("")
    out.append("| scenario | luahub | redis | ratio | spread (luahub / redis) | target | met? |")
    out.append("|---|---:|---:|---:|---:|---|:-:|")
    for r in rows:
        arrow = "↑" if r["better"] == "higher" else "↓"
        ratio = "%.2f" % r["ratio"] if r["ratio"] is not None else "n/a"
        sp = "%s / %s" % (pct(r["luahub_spread_pct"]), pct(r["redis_spread_pct"]))
        out.append("| %s (%s %s) | %s | %s | %s | %s | %s | %s |" % (
            r["title"], r["unit"], arrow, cell(r, "luahub"), cell(r, "redis"), ratio, sp,
            r["target"] or "—", r["met"] or ("—" if not r["target"] else "n/a")))
    out.append("")
    out.append("↑ higher is better, ↓ lower is better. *ratio* is always luahub ÷ redis (medians), so on ↓ rows "
               "(latency, memory) a ratio below 1.0 favours luahub. *spread* is (max − min) ÷ median over the "
               "repetitions. Throughput is delivered messages per second summed over subscribers (1→10 counts "
               "each delivery); latency scenarios send at a fixed rate and time each message from its "
               "*intended* send time (no coordinated omission).")
    seen, notes = set(), []
    for r in rows:
        if r["note"] and r["scenario"] not in seen:
            seen.add(r["scenario"])
            notes.append("- %s: %s" % (r["scenario"], r["note"]))
    for d in defs:
        if d["hub_args"] or d["redis_args"]:
            notes.append("- %s: fresh servers, luahub + `%s`, redis + `%s` ({dir}: a new data directory each)"
                         % (d["id"], d["hub_args"] or "-", d["redis_args"] or "-"))
    for r in rows:
        for srv in ("luahub", "redis"):
            if r[srv + "_skipped"] and (r["scenario"], srv) not in seen:
                seen.add((r["scenario"], srv))
                notes.append("- %s: **skipped on %s**: %s" % (r["scenario"], srv, r[srv + "_skipped"]))
    if notes:
        out.append("")
        out.extend(notes)
    # errors and losses
    probs = []
    for (sc, srv), errs in sorted(errors.items()):
        distinct = list(dict.fromkeys(e[:200] for e in errs))[:3]
        probs.append("- %s on %s: %d failed run(s): %s" % (sc, "luahub" if srv == "hub" else "redis", len(errs),
                                                          "; ".join("`%s`" % e for e in distinct)))
    for (sc, srv), rs in sorted(samples.items()):
        who = "luahub" if srv == "hub" else "redis"
        lost = sum(int(r.get("lost", 0)) for r in rs)
        if lost:
            probs.append("- %s on %s: %d message(s) published but never delivered" % (sc, who, lost))
        extra = sum(int(r.get("extra", 0)) for r in rs)
        if extra:
            probs.append("- %s on %s: %d more deliveries than published × subscribers (duplicates?)"
                         % (sc, who, extra))
        overrun = sum(int(r.get("overrun", 0)) for r in rs)
        if overrun:
            probs.append("- %s on %s: %d calls not sent: 65,536 already in flight on a connection"
                         % (sc, who, overrun))
    if probs:
        out.append("")
        out.append("Problems:")
        out.append("")
        out.extend(probs)
    # CPU: who is the bottleneck?
    out.append("")
    out.append("CPU during the measurement window (median cores used: server / loadgen). "
               "A server near 1.0 is saturated; a loadgen near 1.0 means the generator is the limit.")
    out.append("")
    out.append("| scenario | luahub: server / loadgen | redis: server / loadgen |")
    out.append("|---|---:|---:|")
    for d in defs:
        cells = []
        for srv in ("hub", "redis"):
            rs = samples.get((d["id"], srv), [])
            s = median([r["srv_cpu"] for r in rs if "srv_cpu" in r])
            g = median([r["gen_cpu"] for r in rs if "gen_cpu" in r])
            cells.append("%.2f / %.2f" % (s, g) if s is not None and g is not None else "—")
        if cells != ["—", "—"]:
            out.append("| %s | %s | %s |" % (d["id"], cells[0], cells[1]))
    out.append("")
    out.append("Servers: luahub `%s`; redis `%s` (%s)." % (repo_relative(meta.get("hub_cmd")),
                                                          repo_relative(meta.get("redis_cmd")),
                                                          meta.get("redis_version")))
    out.append("")
    return "\n".join(out)


def write_csv(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            r2 = dict(r)
            for k in ("luahub", "redis", "ratio", "luahub_spread_pct", "redis_spread_pct", "target_value"):
                v = r2[k]
                r2[k] = "" if v is None else ("%.4f" % v).rstrip("0").rstrip(".")
            r2["target"] = r2["target"].replace("**", "")
            w.writerow(r2)


def chart(rows, defs, samples, outdir, png, meta):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found, no chart", file=sys.stderr)
        return False
    ratios = os.path.join(outdir, "latest-ratios.tmp")
    lat = os.path.join(outdir, "latest-latency.tmp")
    nr = 0
    with open(ratios, "w", encoding="utf-8") as f:
        f.write("label ratio met\n")
        for r in rows:
            if r["chart"] == "ratio" and r["ratio"] is not None:
                met = r["met"] if r["target"].startswith("luahub/redis") else ""  # colour ratio targets only
                f.write('"%s" %.4f %d\n' % (r["label"], r["ratio"], 1 if met == "yes" else (0 if met == "NO" else 2)))
                nr += 1
    series = []
    for d in defs:
        if d["chart"] != "latency":
            continue
        for srv in ("hub", "redis"):
            if srv == "redis" and (d["redis"].startswith("@") or d["redis"] in ("-", "")):
                continue
            if srv == "hub" and d["hub"] in ("-", ""):
                continue
            rs = samples.get((d["id"], srv), [])
            meds = [median([float(r[k]) for r in rs if k in r]) for k in LAT_FIELDS]
            if all(m is not None for m in meds):
                series.append(("%s %s" % (d["label"], "luahub" if srv == "hub" else "redis"), meds))
    with open(lat, "w", encoding="utf-8") as f:
        f.write("pct " + " ".join('"%s"' % s[0] for s in series) + "\n")
        for i, k in enumerate(LAT_FIELDS):
            f.write('"%s" ' % METRIC_NAMES[k] + " ".join("%.2f" % max(s[1][i], 0.1) for s in series) + "\n")
    title = "luahub vs redis-server (%s, %s reps, %s)" % (meta.get("profile"), meta.get("reps"), meta.get("date"))
    if "redis-server" in meta.get("hub_cmd", ""):
        title += " [luahub slot = redis-server]"
    cmd = ["gnuplot", "-e", "ratios='%s'; lat='%s'; out='%s'; nr=%d; ns=%d; ttl='%s'"
           % (ratios, lat, png, nr, len(series), title.replace("'", "")), os.path.join(HERE, "plot.gp")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("report: gnuplot failed: %s" % p.stderr.strip()[:500], file=sys.stderr)
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--defs", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stamp", default="")
    args = ap.parse_args()
    defs, samples, errors, skipped, meta = load(args)
    rows = build_rows(defs, samples, errors, skipped, meta)
    md = markdown(rows, defs, samples, errors, meta)
    os.makedirs(args.out, exist_ok=True)
    latest = os.path.join(args.out, "latest")
    with open(latest + ".md", "w", encoding="utf-8") as f:
        f.write(md)
    write_csv(rows, latest + ".csv")
    ok_png = chart(rows, defs, samples, args.out, latest + ".png", meta)
    if args.stamp:
        dated = os.path.join(args.out, args.stamp)
        for ext in (".md", ".csv") + ((".png",) if ok_png else ()):
            shutil.copyfile(latest + ext, dated + ext)
    print(md)
    print("results: %s.{md,csv%s}%s" % (latest, ",png" if ok_png else "",
                                        " (+ %s.*)" % args.stamp if args.stamp else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
