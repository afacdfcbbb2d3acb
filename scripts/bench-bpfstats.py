#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run-time statistics of BPF programs, for scripts/bench.sh.

  bench-bpfstats.py ids PIN_ROOT [SLUICECTL]   print "NAME ID" per sluice program
  bench-bpfstats.py snap ID...                 print {"ID": [name, run_time_ns, run_cnt]}
  bench-bpfstats.py delta BEFORE AFTER         print {"NAME": [run_time_ns, run_cnt]}

The kernel counts run_time_ns and run_cnt only while kernel.bpf_stats_enabled is 1.
"""
import glob
import json
import os
import subprocess
import sys


def bpftool(*args):
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True)
    if out.returncode:
        return None
    return json.loads(out.stdout)


def ids(pin_root, ctl=None):
    found = {}
    if ctl:
        out = subprocess.run([ctl, "--pin-root", pin_root, "-j", "status"],
                             capture_output=True, text=True)
        try:
            for p in json.loads(out.stdout).get("programs") or []:
                found[p["name"]] = p["id"]
        except (ValueError, AttributeError, KeyError, TypeError):
            pass
    if not found:
        for path in sorted(glob.glob(os.path.join(pin_root, "progs", "*"))):
            p = bpftool("prog", "show", "pinned", path)
            if p:
                found[p.get("name", os.path.basename(path))] = p["id"]
    for name, pid in sorted(found.items()):
        print(name, pid)


def snap(prog_ids):
    want = set(int(i) for i in prog_ids)
    out = {}
    for p in bpftool("prog", "show") or []:
        if p.get("id") in want:
            out[str(p["id"])] = [p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0)]
    print(json.dumps(out))


def delta(before, after):
    with open(before) as f:
        a = json.load(f)
    with open(after) as f:
        b = json.load(f)
    out = {}
    for pid, (name, ns, cnt) in b.items():
        _, ns0, cnt0 = a.get(pid, [name, 0, 0])
        out[name] = [ns - ns0, cnt - cnt0]
    print(json.dumps(out))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "ids":
        ids(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif len(sys.argv) >= 2 and sys.argv[1] == "snap":
        snap(sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "delta":
        delta(sys.argv[2], sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
