#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The ratelimit part's tables (2) and (3) for scripts/bench.sh, from its JSON lines:

  {"part": "conn", "mode": "rl-off"|"rl-on", "round", "bpf": {NAME: [ns, cnt]}, connbench...}
  {"part": "flood", "mode": "sluice-xdp"|"nft-limit", "round", "received", "dropped",
   "sent", "secs", "errors"}

Medians over rounds. Exits 1 when a record is missing or a limiter did not do its job
(a refused connect() in rl-on, a flood where sent != received + dropped).
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--pps", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--slice", type=float, required=True)
    a = ap.parse_args()
    recs = [json.loads(l) for l in open(a.results) if l.strip()]
    bad = False

    conn = {m: [r for r in recs if r["part"] == "conn" and r["mode"] == m]
            for m in ("rl-off", "rl-on")}
    print("(2) ns per connect() of the socket programs, kernel.bpf_stats_enabled=1 "
          "(run_time_ns / run_cnt), medians over rounds;")
    print(f"    connbench, 1 thread, serial connect + GET + close to the VIP, {a.slice} s "
          "per slice, the two services interleaved, a fresh client netns each;")
    print("    rl-off: service without rate_limit; rl-on: the same backends with "
          "rate_limit {10^7/s, burst 10^7, per client 10^7/s}: never refuses, both admit")
    # Programs that ran (the IPv6 and UDP ones do not, here).
    progs = sorted({n for m in conn for r in conn[m] for n in r["bpf"] if r["bpf"][n][1]})
    print(f"    {'program':<18} {'rl-off ns':>10} {'rl-on ns':>10} {'on - off':>9}   runs/slice")
    for n in progs:
        v = {}
        for m in conn:
            per = [r["bpf"][n][0] / r["bpf"][n][1] for r in conn[m]
                   if n in r["bpf"] and r["bpf"][n][1]]
            v[m] = statistics.median(per) if per else float("nan")
        runs = statistics.median([r["bpf"].get(n, [0, 0])[1] for m in conn for r in conn[m]] or [0])
        print(f"    {n:<18} {v['rl-off']:>10.0f} {v['rl-on']:>10.0f} "
              f"{v['rl-on'] - v['rl-off']:>+9.0f}   {runs:.0f}")
    for m in conn:
        if not conn[m]:
            print(f"    {m}: no results")
            bad = True
            continue
        cps = statistics.median(r["conn_per_s"] for r in conn[m])
        errs = sum(r.get("errors", 0) for r in conn[m])
        print(f"    {m}: {cps:.0f} conn/s (median, whole system), {errs} errors over "
              f"{len(conn[m])} slices")
        if errs:
            bad = True

    fl = {m: [r for r in recs if r["part"] == "flood" and r["mode"] == m]
          for m in ("sluice-xdp", "nft-limit")}
    print()
    print(f"(3) a bounded UDP flood (tests/bench/udpflood, sendmmsg x 64, 32-byte payload, "
          f"at most {a.count} datagrams or {a.secs} s)")
    print("    from one source, sender netns -> veth -> receiver netns, limited to "
          f"{a.pps} pkt/s with a burst of {a.pps} per source:")
    print("    sluice-xdp: sl_xdp on the receiver's veth (global.xdp, sluicectl attach-xdp, "
          "mode as logged above), no netfilter rule;")
    print("    nft-limit: table inet benchrl, prerouting priority raw, `ip saddr S limit rate "
          f"over {a.pps}/second burst {a.pps} packets counter drop`, no XDP;")
    print("    received = datagrams reaching the receiver's UDP layer, dropped = the limiter's "
          "own counter; medians over rounds, interleaved")
    print(f"    {'mode':<11} {'sent':>9} {'secs':>6} {'sent/s':>10} {'received':>9} "
          f"{'dropped':>9} {'drops/s':>10} {'rx/s':>8} {'lost':>6}")
    med = {}
    for m, rs in fl.items():
        if not rs:
            print(f"    {m}: no results")
            bad = True
            continue
        row = {
            "sent": statistics.median(r["sent"] for r in rs),
            "secs": statistics.median(r["secs"] for r in rs),
            "sent/s": statistics.median(r["sent"] / r["secs"] for r in rs),
            "received": statistics.median(r["received"] for r in rs),
            "dropped": statistics.median(r["dropped"] for r in rs),
            "drops/s": statistics.median(r["dropped"] / r["secs"] for r in rs),
            "rx/s": statistics.median(r["received"] / r["secs"] for r in rs),
            "lost": statistics.median(r["sent"] - r["received"] - r["dropped"] for r in rs),
        }
        med[m] = row
        print(f"    {m:<11} {row['sent']:>9.0f} {row['secs']:>6.2f} {row['sent/s']:>10.0f} "
              f"{row['received']:>9.0f} {row['dropped']:>9.0f} {row['drops/s']:>10.0f} "
              f"{row['rx/s']:>8.0f} {row['lost']:>6.0f}")
        for r in rs:
            if r["dropped"] < 0 or abs(r["sent"] - r["received"] - r["dropped"]) > 0.001 * r["sent"] + 10:
                print(f"    round {r['round']} {m}: sent {r['sent']} != received {r['received']} "
                      f"+ dropped {r['dropped']} (UNEXPECTED)")
                bad = True
    if len(med) == 2:
        x, n = med["sluice-xdp"]["drops/s"], med["nft-limit"]["drops/s"]
        ratio = x / n if n else float("nan")
        close = abs(ratio - 1) <= 0.10
        print(f"    drops/s sluice-xdp / nft-limit = {ratio:.2f}: "
              + ("close (within 10%), as expected on veth: the sender, not the dropper, "
                 "sets the rate (shared/BENCHMARKING.md);" if close else
                 "NOT within 10% of each other;")
              + " compare the limiters by ns per packet above")
        for m in med:
            exp = a.pps + a.pps * med[m]["secs"]
            print(f"    {m}: received {med[m]['received']:.0f} vs burst + rate x duration "
                  f"= {exp:.0f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
