#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Summarise scripts/bench.sh results.

The results file holds one JSON object per connbench run (a slice): connbench's output
plus "mode", "round" and "slice". Slices marked "stats" ran with kernel.bpf_stats_enabled
on and carry "bpf": {program: [run_time_ns, run_cnt]}; they give sluice's own cost and are
left out of rates and latencies. A mode's figure
for a round sums its slices; its latency percentiles come from the raw latencies in
LAT_DIR/lat-<round>-<mode>.u32. The table shows medians over rounds, and ratios are
medians of same-round ratios to the limit. Exits 1 when a mode is missing or had errors.
"""
import argparse
import array
import json
import math
import os
import statistics
import sys


def median(values):
    return statistics.median(values) if values else float("nan")


def pct(sorted_v, p):
    """Nearest-rank percentile of a sorted sequence of ns, in µs."""
    if not sorted_v:
        return float("nan")
    rank = min(len(sorted_v), max(1, math.ceil(p * len(sorted_v))))
    return sorted_v[rank - 1] / 1000.0


def sum_bpf(slices):
    """Sums the per-program [run_time_ns, run_cnt] of several slices."""
    out = {}
    for x in slices:
        for name, (ns, cnt) in (x.get("bpf") or {}).items():
            t = out.setdefault(name, [0, 0])
            t[0] += ns
            t[1] += cnt
    return out


def bpf_per_connect(bpf):
    """ns of all sluice programs per connect(), taking sl_connect4's runs as connects."""
    connects = bpf.get("sl_connect4", [0, 0])[1]
    if not connects:
        return float("nan")
    return sum(ns for ns, _ in bpf.values()) / connects


def load(path, lat_dir):
    """Returns {mode: {round: summary}}."""
    slices, stats = {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                dest = stats if r.get("stats") else slices
                dest.setdefault(r["mode"], {}).setdefault(r["round"], []).append(r)
    runs = {}
    for mode, by_round in slices.items():
        for rnd, sl in by_round.items():
            secs = sum(x["seconds"] for x in sl)
            s = {
                "conns": sum(x["conns"] for x in sl),
                "seconds": secs,
                "errors": sum(x["errors"] for x in sl),
                "bpf": sum_bpf(stats.get(mode, {}).get(rnd, [])),
                "backends": [sum(v) for v in
                             zip(*[x["backends"] + [0] * (16 - len(x["backends"]))
                                   for x in sl])],
            }
            s["rate"] = s["conns"] / secs if secs > 0 else 0.0
            lat = array.array("I")
            lat_path = os.path.join(lat_dir, "lat-%d-%s.u32" % (rnd, mode)) if lat_dir else ""
            if lat_path and os.path.exists(lat_path):
                with open(lat_path, "rb") as lf:
                    lat.frombytes(lf.read())
            if lat:
                v = sorted(lat)
                s["p50"], s["p99"] = pct(v, 0.50), pct(v, 0.99)
            else:
                s["p50"] = median([x["p50_us"] for x in sl])
                s["p99"] = median([x["p99_us"] for x in sl])
            runs.setdefault(mode, {})[rnd] = s
    return runs


def tracking_cost(runs, bpf_of, on="sluice", off="sluice-nct"):
    """The cost of connection tracking (sockops): sluice against sluice-nct."""
    if not runs.get(on) or not runs.get(off):
        return
    a, b = runs[on], runs[off]
    ratios = [a[k]["rate"] / b[k]["rate"] for k in a if k in b and b[k]["rate"] > 0]
    ns_on = bpf_per_connect(bpf_of.get(on, {}))
    ns_off = bpf_per_connect(bpf_of.get(off, {}))
    print()
    print("connection tracking cost: conn/s ratio on/off = %.3f, BPF ns per connect on = %.0f, "
          "off = %.0f" % (median(ratios), ns_on, ns_off))
    print("  on = %s, off = %s (--no-conn-tracking); ratio: median of %d same-round ratios, "
          "min-max %.3f-%.3f;" % (on, off, len(ratios), min(ratios) if ratios else float("nan"),
                                  max(ratios) if ratios else float("nan")))
    print("  BPF: all programs' run_time_ns per sl_connect4 run in the bpf_stats slices, "
          "%+.0f ns per connect with tracking" % (ns_on - ns_off))


def progress(runs, modes, spec):
    rnd, total = (int(x) for x in spec.split("/"))
    for m in modes:
        s = runs.get(m, {}).get(rnd)
        if s is None:
            print("bench: round %d/%d %-14s failed" % (rnd, total, m))
            continue
        print("bench: round %d/%d %-14s %8.0f conn/s  p50 %6.1f µs  p99 %7.1f µs  errors %d"
              % (rnd, total, m, s["rate"], s["p50"], s["p99"], s["errors"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="JSON lines written by bench.sh")
    ap.add_argument("--modes", required=True, help="comma-separated, in table order")
    ap.add_argument("--lat-dir", help="directory of lat-<round>-<mode>.u32 files")
    ap.add_argument("--limit", default="direct", help="the mode every ratio refers to")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--rounds-detail", action="store_true", help="print conn/s per round")
    ap.add_argument("--progress", metavar="ROUND/ROUNDS",
                    help="print one line per mode for that round and stop")
    args = ap.parse_args()

    modes = args.modes.split(",")
    runs = load(args.results, args.lat_dir)
    if args.progress:
        progress(runs, modes, args.progress)
        return 0

    ok = True
    limit = runs.get(args.limit, {})
    rows = []
    for m in modes:
        rr = runs.get(m, {})
        if not rr:
            rows.append((m, None))
            ok = False
            continue
        ratios = [rr[k]["rate"] / limit[k]["rate"]
                  for k in rr if k in limit and limit[k]["rate"] > 0]
        errors = sum(r["errors"] for r in rr.values())
        if errors:
            ok = False
        rows.append((m, {
            "rate": median([r["rate"] for r in rr.values()]),
            "ratio": median(ratios),
            "rmin": min(ratios) if ratios else float("nan"),
            "rmax": max(ratios) if ratios else float("nan"),
            "p50": median([r["p50"] for r in rr.values()]),
            "p99": median([r["p99"] for r in rr.values()]),
            "conns": sum(r["conns"] for r in rr.values()),
            "errors": errors,
        }))

    hdr = ("mode", "conn/s (median)", "ratio to direct", "ratio min-max", "p50 µs", "p99 µs",
           "conns", "errors")
    fmt = "%-14s | %15s | %15s | %13s | %7s | %7s | %8s | %6s"
    print(fmt % hdr)
    print("-" * len(fmt % hdr))
    for m, s in rows:
        if s is None:
            print(fmt % (m, "not run", "-", "-", "-", "-", "-", "-"))
            continue
        print(fmt % (m, "%.0f" % s["rate"], "%.3f" % s["ratio"],
                     "%.3f-%.3f" % (s["rmin"], s["rmax"]), "%.1f" % s["p50"],
                     "%.1f" % s["p99"], s["conns"], s["errors"]))

    sluice_modes = [m for m in modes if m.startswith("sluice") and runs.get(m)]
    if args.rounds_detail:
        rounds = sorted({k for rr in runs.values() for k in rr})
        print()
        print("conn/s per round:")
        print("%-14s " % "round" + " ".join("%7d" % k for k in rounds))
        for m in modes:
            rr = runs.get(m, {})
            print("%-14s " % m + " ".join("%7.0f" % rr[k]["rate"] if k in rr
                                         else "%7s" % "-" for k in rounds))
        for m in sluice_modes:
            sl = runs[m]
            if any(r["bpf"] for r in sl.values()):
                print("%-14s " % (m + " ns") + " ".join(
                    "%7.0f" % bpf_per_connect(sl[k]["bpf"]) if k in sl else "%7s" % "-"
                    for k in rounds) + "   (BPF time per connect, all programs)")

    bpf_of = {}
    for m in sluice_modes:
        sl = runs[m]
        bpf = bpf_of[m] = sum_bpf(sl.values())
        dist = [sum(v) for v in zip(*[r["backends"] for r in sl.values()])]
        while dist and not dist[-1]:
            dist.pop()
        print()
        connects = bpf.get("sl_connect4", [0, 0])[1]
        if connects:
            print("%s BPF cost (run_time_ns/run_cnt over %d connects in slices with "
                  "kernel.bpf_stats_enabled=1):" % (m, connects))
            for name, (ns, cnt) in sorted(bpf.items()):
                if cnt:
                    print("  %-16s %6.0f ns per run, %5.2f runs per connect" %
                          (name, ns / cnt, cnt / connects))
            print("  %-16s %6.0f ns per connect" % ("all programs", bpf_per_connect(bpf)))
        else:
            print("%s BPF cost: no runs of sl_connect4 counted "
                  "(program not found or stats unavailable)" % m)
        print("%s replies per backend: %s" % (m, ", ".join(
            "be%d=%d" % (i + 1, n) for i, n in enumerate(dist))))

    tracking_cost(runs, bpf_of)
    print()
    sluice = dict(rows).get("sluice")
    if sluice:
        print("sluice/direct = %.2f (target >= %.2f)" % (sluice["ratio"], args.target))
    else:
        print("sluice/direct = n/a (target >= %.2f; sluice mode not run)" % args.target)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
