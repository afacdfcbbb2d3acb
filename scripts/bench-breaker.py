#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The circuit-breaker part of scripts/bench.sh: how soon connections stop going to a
backend that died.

  bench-breaker.py run --meta META --csv CSV --victim ADDR:PORT --service NAME
                   --alg ALG --run N --expect K --backends-before F --backends-after F
                   --services-before F --services-after F --breakers-before F
                   --breakers-after F
      prints one JSON object for one run of tests/bench/breakerbench
  bench-breaker.py report RESULTS
      prints every run and, per algorithm, median/min/max; exits 1 when a run did not
      behave as expected (see "problems")

breakerbench's CSV has one line per connection (CLOCK_MONOTONIC ns): start, connect
returned, end, outcome, errno, the backend named in the reply body and the backend
sluice sent the socket to (read from the socket's sl_sock storage). META is its JSON,
with t0_ns, the instant it sent SIGKILL to the victim's nginx processes, and
exited_ns, when it saw all of them gone. A connection "to the dead backend" is one
whose socket sluice sent to the victim, started at or after T0. The sluicectl JSON
snapshots taken around the run cross-check the client's view with the kernel's
counters (connect_failed, refusals, breaker state).
"""
import argparse
import csv
import json
import statistics
import sys


def load_json(path):
    with open(path) as f:
        return json.load(f)


def by_service(rows, service):
    return [r for r in rows if r.get("service", service) == service]


def run(args):
    meta = load_json(args.meta)
    t0 = meta["t0_ns"]
    exited = meta.get("exited_ns") or 0
    recs = []
    with open(args.csv, newline="") as f:
        for row in csv.DictReader(f):
            recs.append({
                "start": int(row["start_ns"]),
                "end": int(row["end_ns"]),
                "outcome": row["outcome"],
                "errno": int(row["errno"]),
                "body": int(row["body_be"]),
                "sk_id": int(row["sk_backend_id"]),
                "sk": row["sk_backend"],
            })

    be_before = {(b["address"], b["port"]): b
                 for b in by_service(load_json(args.backends_before), args.service)}
    be_after = {(b["address"], b["port"]): b
                for b in by_service(load_json(args.backends_after), args.service)}
    addr, port = args.victim.rsplit(":", 1)
    vkey = (addr, int(port))
    problems = []
    if vkey not in be_after:
        problems.append("victim %s is not a backend of %s" % (args.victim, args.service))
    victim_id = be_after.get(vkey, {}).get("id", -1)
    # The reply body names the backend as be<N>, N = its address's last octet - 10.
    body_of = {"%s:%d" % k: int(k[0].rsplit(".", 1)[1]) - 10 for k in be_after}

    before = [r for r in recs if r["start"] < t0]
    after = [r for r in recs if r["start"] >= t0]
    to_victim = [r for r in after if r["sk_id"] == victim_id]
    by_outcome = {}
    for r in to_victim:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    # A connect that failed is what the breaker counts; a connection the dying
    # nginx's listener accepted and its exit then reset counts as established.
    failed_victim = [r for r in to_victim if r["outcome"] in ("refused", "connect_error")]
    refused_victim = by_outcome.get("refused", 0)
    first_refused = min((r for r in to_victim if r["outcome"] == "refused"),
                        key=lambda r: r["start"], default=None)
    # Failures the client cannot pin on the victim: sluice's own refusals have no
    # sl_sock storage, failures elsewhere name another backend.
    stray = [r for r in recs if r["outcome"] != "ok" and r["sk_id"] != victim_id]
    stray_before = [r for r in before if r["outcome"] != "ok"]
    mismatch = [r for r in recs if r["outcome"] == "ok" and r["sk"] and
                body_of.get(r["sk"]) != r["body"]]
    unlabelled = [r for r in recs if not r["sk_id"]]
    last = max(to_victim, key=lambda r: r["start"]) if to_victim else None
    after_last = [r for r in after if last and r["start"] > last["start"]]
    end = max((r["end"] for r in recs), default=t0)
    start = min((r["start"] for r in recs), default=t0)
    victim_share = (sum(1 for r in before if r["sk_id"] == victim_id) / len(before)
                    if before else 0.0)

    def kdelta(field):
        a = be_after.get(vkey, {}).get(field, 0)
        b = be_before.get(vkey, {}).get(field, 0)
        return a - b

    svc_b = next(iter(by_service(load_json(args.services_before), args.service)), {})
    svc_a = next(iter(by_service(load_json(args.services_after), args.service)), {})
    refused_kernel = {k: v - (svc_b.get("refused") or {}).get(k, 0)
                      for k, v in (svc_a.get("refused") or {}).items()}
    brk_before = by_service(load_json(args.breakers_before), args.service)
    brk_after = by_service(load_json(args.breakers_after), args.service)
    vbrk = next((b for b in brk_after if b["backend"] == args.victim), {})
    others_open = [b["backend"] for b in brk_after
                   if b["backend"] != args.victim and b["state"] != "closed"]
    not_fresh = [b["backend"] for b in brk_before
                 if b["state"] != "closed" or b["consecutive_failures"]]

    def ms(t):
        return round((t - t0) / 1e6, 3) if t else None

    out = {
        "alg": args.alg,
        "run": args.run,
        "victim": args.victim,
        "conns": len(recs),
        "seconds": round((end - start) / 1e9, 3),
        "rate_before": len(before) / ((t0 - start) / 1e9) if t0 > start else 0.0,
        "rate_after": len(after) / ((end - t0) / 1e9) if end > t0 else 0.0,
        "victim_share_before": round(victim_share, 4),
        "exit_ms": ms(exited),
        "kill_ms": round((meta["t0_done_ns"] - t0) / 1e6, 3),
        "first_refused_ms": ms(first_refused["start"]) if first_refused else None,
        "last_ms": ms(last["start"]) if last else None,
        "last_done_ms": ms(last["end"]) if last else None,
        "refused_span_ms": (round((last["start"] - first_refused["start"]) / 1e6, 3)
                            if last and first_refused else None),
        "after_end_ms": ms(end),
        # In connections, which do not stretch when the machine is busy.
        "conns_to_last": sum(1 for r in after if last and r["start"] <= last["start"]),
        "refused_span_conns": sum(1 for r in after if last and first_refused and
                                  first_refused["start"] <= r["start"] <= last["start"]),
        "conns_after_last": len(after_last),
        "to_dead": len(to_victim),
        "to_dead_failed": len(failed_victim),
        "to_dead_refused": refused_victim,
        "to_dead_reset": by_outcome.get("io_error", 0) + by_outcome.get("http_error", 0),
        "to_dead_ok": by_outcome.get("ok", 0),
        "to_dead_outcomes": by_outcome,
        "to_dead_after_exit": sum(1 for r in to_victim if exited and r["start"] >= exited),
        "kernel_connect_failed": kdelta("connect_failed"),
        "kernel_ejections": kdelta("ejections"),
        "kernel_refused": refused_kernel,
        "victim_breaker": {k: vbrk.get(k) for k in ("state", "consecutive_failures",
                                                     "times_ejected", "open_remaining_ms")},
        "expect": args.expect,
    }
    if not meta.get("sk_lookup"):
        problems.append("no sl_sock lookups: failures cannot be attributed")
    if meta.get("capped"):
        problems.append("hit the connection cap")
    if not exited:
        problems.append("the victim's processes were not seen to exit")
    if not_fresh:
        problems.append("breakers not fresh before the run: %s" % ", ".join(not_fresh))
    if stray_before:
        problems.append("%d failed connections before the kill" % len(stray_before))
    if stray:
        problems.append("%d failed connections not sent to the victim (%s)"
                        % (len(stray), ", ".join(sorted({"%s %s" % (r["outcome"], r["sk"] or "-")
                                                         for r in stray}))))
    if unlabelled:
        problems.append("%d connections without sl_sock storage" % len(unlabelled))
    if mismatch:
        problems.append("%d replies from another backend than sl_sock names" % len(mismatch))
    if refused_victim != args.expect:
        problems.append("%d refused connections to the dead backend, expected %d"
                        % (refused_victim, args.expect))
    if len(failed_victim) != refused_victim:
        problems.append("failed connects to the dead backend other than refused: %s" % by_outcome)
    if out["kernel_connect_failed"] != len(failed_victim):
        problems.append("kernel connect_failed of the victim grew by %d, client saw %d failed connects"
                        % (out["kernel_connect_failed"], len(failed_victim)))
    if any(refused_kernel.values()):
        problems.append("sluice refused connections: %s" % refused_kernel)
    if vbrk.get("state") != "open":
        problems.append("victim breaker is %s after the run" % vbrk.get("state"))
    if others_open:
        problems.append("other breakers not closed: %s" % ", ".join(others_open))
    out["problems"] = problems
    print(json.dumps(out))
    return 0


def fmt_ms(v):
    return "-" if v is None else "%.3f" % v


def report(args):
    runs = []
    with open(args.results) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    if not runs:
        print("breaker: no runs")
        return 1
    hdr = ("alg", "run", "victim", "conn/s before", "conn/s after", "gone ms", "1st refused ms",
           "last to dead ms", "to dead: refused", "reset", "ok", "kernel failed", "breaker")
    fmt = ("%-11s | %3s | %-16s | %13s | %12s | %7s | %14s | %15s | %16s | %5s | %3s | %13s | %s")
    print(fmt % hdr)
    print("-" * (len(fmt % hdr) + 2))
    for r in runs:
        print(fmt % (r["alg"], r["run"], r["victim"], "%.0f" % r["rate_before"],
                     "%.0f" % r["rate_after"], fmt_ms(r["exit_ms"]),
                     fmt_ms(r["first_refused_ms"]), fmt_ms(r["last_ms"]),
                     r["to_dead_refused"], r["to_dead_reset"], r["to_dead_ok"],
                     r["kernel_connect_failed"],
                     "%s x%s" % (r["victim_breaker"]["state"],
                                 r["victim_breaker"]["times_ejected"])))
    print("  times in ms after T0 (the SIGKILL); gone: the victim's processes seen exited (pidfd);")
    print("  to dead: connections sent to the victim at or after T0, by outcome: refused (RST to")
    print("  the SYN: the breaker counts these), reset (accepted by the dying nginx, reset at its")
    print("  exit), ok (answered before); kernel failed: sluice's connect_failed of the victim")
    print()
    bad = 0
    algs = []
    for r in runs:
        if r["alg"] not in algs:
            algs.append(r["alg"])
    for alg in algs:
        rr = [r for r in runs if r["alg"] == alg]

        def stat(key, f="%.3f"):
            v = [r[key] for r in rr if r[key] is not None]
            if not v:
                return "n/a"
            return (f + " [" + f + " - " + f + "]") % (statistics.median(v), min(v), max(v))
        print("%s, %d runs: median [min - max]" % (alg, len(rr)))
        print("  time from the kill to the last connection sent to the dead backend: %s ms"
              % stat("last_ms"))
        print("    of which nginx exiting (kill -> gone): %s ms; first refused -> last: %s ms"
              % (stat("exit_ms"), stat("refused_span_ms")))
        print("    in connections of the client: kill -> last: %s, first refused -> last: %s"
              % (stat("conns_to_last", "%d"), stat("refused_span_conns", "%d")))
        print("  connections refused by the dead backend: %s (expected consecutive_failures = %d);"
              % (stat("to_dead_refused", "%d"), rr[0]["expect"]))
        print("    all connections sent to it after the kill: %s, reset by the dying nginx: %s"
              % (stat("to_dead", "%d"), stat("to_dead_reset", "%d")))
        print("  conn/s before the kill: %s, after: %s" %
              (stat("rate_before", "%.0f"), stat("rate_after", "%.0f")))
        print("  after the last one: %s connections, all to the other backends"
              % stat("conns_after_last", "%d"))
        for r in rr:
            for p in r["problems"]:
                bad += 1
                print("  UNEXPECTED run %d (%s): %s" % (r["run"], r["victim"], p))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for name in ("meta", "csv", "victim", "service", "alg", "backends-before",
                 "backends-after", "services-before", "services-after", "breakers-before",
                 "breakers-after"):
        r.add_argument("--" + name, required=True)
    r.add_argument("--run", type=int, required=True)
    r.add_argument("--expect", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("results")
    args = ap.parse_args()
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
