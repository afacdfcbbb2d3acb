# SPDX-License-Identifier: MIT
"""Rate limiting at the socket hooks end to end (issue 5; the XDP half is not
tested here): per-service and per-client GCRA buckets held to their rates
under a flood from two processes on two CPUs, a quiet client untouched by a
noisy one, limits changed and removed by `sluicectl apply` (and an unrelated
service's bucket left alone), UDP flows (a socket is one flow), fast and
exactly counted refusals, and `sluicectl stats`.

The floods are `client.py flood` processes pinned with taskset to CPU 0 and
CPU 1, started together at one CLOCK_MONOTONIC instant. What a limiter must
admit is computed from what it was really offered: the window between the
first and the last attempt the floods made (not the nominal duration), less
the tokens a full bucket had to throw away while no flood process ran at all
(a pause longer than burst/rate, seen in the floods' `gaps`, e.g. when
someone else's benchmark holds both CPUs). Every test applies an empty
document first, so its services get fresh ids and start with full buckets."""
import json
import math
import os
import subprocess
import time

import pytest

import sluice_e2e as E
from sluice_e2e import XDP_DROPS, XDP_KEYS, XDP_PASSES, be, doc, svc

VIP = "10.96.5.10"
VIP_OTHER = "10.96.5.20"
VIP_CLIENTS = "10.96.5.30"
VIP_UDP = "10.96.5.53"
PORT = 80
UDP_PORT = 53

ACCURACY = 0.10      # issue 5: accepted within ±10% of burst + rate × window
RATE_ACCURACY = 0.15  # a rate measured over a 1 s slice of a flood
START_DELAY = 0.5    # from starting the flood processes to their common start instant
TWO_CPUS = (0, 1)

STATS_KEYS = {"service", "accepted", "refused_total", "refused", "rate_limit", "tokens", "xdp"}
RATE_KEYS = {"connections_per_second", "burst", "per_client_connections_per_second",
             "per_client_burst", "syn_per_second", "syn_burst"}
REASONS = {"no_backend", "none_usable", "breaker_open", "max_connections",
           "rate_limited_service", "rate_limited_client"}
STATS_COLUMNS = ["SERVICE", "ACCEPTED", "REFUSED", "RATE_SVC", "RATE_CLIENT", "CONN/S",
                 "PER_CLIENT/S", "TOKENS"]


@pytest.fixture(autouse=True)
def two_cpus():
    if os.cpu_count() < 2:
        pytest.skip("the floods need two CPUs")


# --- helpers ------------------------------------------------------------------------------

def limited(topo, name, vip, rate=0, burst=0, client_rate=0, client_burst=0,
            protocol="tcp"):
    """A round_robin service over every backend, with a rate_limit block unless all 0."""
    port, be_port = (UDP_PORT, 5353) if protocol == "udp" else (PORT, 8080)
    s = svc(name, vip, port, [be(h.v4, be_port) for h in topo.backends], "round_robin",
            protocol=protocol)
    rl = {"connections_per_second": rate, "burst": burst,
          "per_client_connections_per_second": client_rate, "per_client_burst": client_burst}
    rl = {k: v for k, v in rl.items() if v}
    if rl:
        s["rate_limit"] = rl
    return s


def apply_fresh(sluice, *services):
    """An empty document, then ours: every service gets a new id, so a full bucket."""
    sluice.apply(doc())
    sluice.apply(doc(*services))


def stats(sluice, name):
    """The `stats NAME -j` entry of one service, its key set checked."""
    out = sluice.ctl_json("stats", name)
    assert isinstance(out, list) and len(out) == 1, f"stats {name} -j: {out}"
    e = out[0]
    assert set(e) == STATS_KEYS, f"stats -j keys: {sorted(e)}"
    # The services -j reasons (README); the shared reason table adds "unhealthy" (a
    # per-backend skip reason, always 0 here), so the set is checked as a superset.
    assert REASONS <= set(e["refused"]), f"stats -j refused keys: {sorted(e['refused'])}"
    assert set(e["rate_limit"]) == RATE_KEYS, f"stats -j rate_limit keys: {e['rate_limit']}"
    assert set(e["xdp"]) == XDP_KEYS and set(e["xdp"]["dropped"]) == XDP_DROPS \
        and set(e["xdp"]["passed"]) == XDP_PASSES, \
        f"stats -j xdp keys: {e['xdp']}"
    assert e["service"] == name
    return e


def service_entry(sluice, name):
    found = [s for s in sluice.services() if s["name"] == name]
    assert len(found) == 1, f"service {name} in `services -j`: {found}"
    return found[0]


def counters(sluice, name):
    """(accepted, rate_limited_service, rate_limited_client) from `stats -j`, checked
    against `services -j` (the same per-CPU counters, read a moment apart)."""
    e = stats(sluice, name)
    s = service_entry(sluice, name)
    assert s["selected"] == e["accepted"], f"services -j {s} vs stats -j {e}"
    assert s["refused"] == e["refused"], f"services -j {s} vs stats -j {e}"
    assert e["refused_total"] == sum(e["refused"].values()), e
    return e["accepted"], e["refused"]["rate_limited_service"], \
        e["refused"]["rate_limited_client"]


def floods(sluice, jobs, duration):
    """jobs: [(namespace, cpu or None, host, port, [extra flood args])]; runs one
    `client.py flood` per job (pinned to cpu), all starting at one CLOCK_MONOTONIC
    instant; returns their outputs in order."""
    start_at = time.monotonic() + START_DELAY
    procs = []
    try:
        for ns, cpu, host, port, extra in jobs:
            cmd = [E.PY, E.CLIENT, "flood", host, str(port), "--duration", str(duration),
                   "--start-at", f"{start_at:.6f}", *map(str, extra)]
            if cpu is not None:
                cmd = ["taskset", "-c", str(cpu), *cmd]
            procs.append(subprocess.Popen(sluice.wrap(ns, cmd), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          env=E.CLEAN_ENV))
        outs = []
        for job, p in zip(jobs, procs):
            out, err = p.communicate(timeout=START_DELAY + duration + 60)
            assert p.returncode == 0, f"client.py flood {job}: exit {p.returncode}: {err}"
            outs.append(json.loads(out))
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def flood_pair(sluice, ns, host, port, duration, *extra):
    """Two flood processes in namespace ns (one client), on CPU 0 and CPU 1."""
    return floods(sluice, [(ns, cpu, host, port, extra) for cpu in TWO_CPUS], duration)


def merge_intervals(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def intersect(xs, ys):
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append([a, b])
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def offered(outs):
    """(first, last, idle): the floods' common window and the pauses inside it in which
    no flood process made an attempt."""
    first = min(o["first"] for o in outs)
    last = max(o["last"] for o in outs)
    idle = None
    for o in outs:
        mine = merge_intervals(o["gaps"] + [[first, o["first"]], [o["last"], last]])
        idle = mine if idle is None else intersect(idle, mine)
    return first, last, [g for g in idle if g[1] > g[0]]


def expected_admitted(outs, rate, burst):
    """burst + rate × window, less what a full bucket wasted in pauses of every flood
    (tokens beyond burst accrued while nobody asked). Returns (expected, window, detail)."""
    first, last, idle = offered(outs)
    window = last - first
    wasted = sum(max(0.0, rate * (b - a) - burst) for a, b in idle)
    detail = (f"window {window:.3f} s, {len(idle)} pauses of every flood "
              f"(longest {max((b - a for a, b in idle), default=0):.3f} s), "
              f"{wasted:.1f} tokens wasted in them")
    return burst + rate * window - wasted, window, detail


def total(outs, key):
    return sum(o[key] for o in outs)


def assert_flood_clean(outs):
    for o in outs:
        assert not o["errors"], f"flood attempts failed other than ECONNREFUSED: {o['errors']}"


def assert_within(got, expected, tolerance, what):
    assert abs(got - expected) <= tolerance * expected, \
        f"{what}: {got} admitted, expected {expected:.1f} ±{tolerance:.0%}"


def describe(outs):
    return "; ".join(f"cpu{i}: {o['count']} attempts, {o['ok']} ok, {o['refused']} refused, "
                     f"refused call median {o['refused_call_s']['median']} s"
                     for i, o in enumerate(outs))


# --- accuracy: service and per-client buckets under a two-CPU flood -------------------

def test_service_limit_accuracy_two_cpus(sluice, topo):
    """R=200/s, B=50, flooded from two processes on two CPUs for 2 s: admitted within ±10%
    of B + R × window; every refusal is ECONNREFUSED at once (median connect() well under
    1 ms) and counted exactly as rate_limited_service."""
    rate, burst = 200, 50
    apply_fresh(sluice, limited(topo, "rl", VIP, rate, burst))
    acc0, svc0, cli0 = counters(sluice, "rl")
    assert stats(sluice, "rl")["tokens"] == burst, "a new service starts with a full bucket"

    outs = flood_pair(sluice, topo.client.ns, VIP, PORT, 2.0)
    assert_flood_clean(outs)
    ok, refused = total(outs, "ok"), total(outs, "refused")
    expected, window, detail = expected_admitted(outs, rate, burst)
    print(f"service limit: {ok} admitted, expected {expected:.1f} ({detail}); {describe(outs)}")
    assert refused > 20 * ok, f"the flood must offer far more than the rate: {describe(outs)}"
    assert_within(ok, expected, ACCURACY, f"R={rate}/s B={burst} over {window:.3f} s ({detail})")

    acc1, svc1, cli1 = counters(sluice, "rl")
    assert acc1 - acc0 == ok, "accepted must count exactly the admitted connects"
    assert svc1 - svc0 == refused, \
        "rate_limited_service must count exactly the connects refused with ECONNREFUSED"
    assert cli1 == cli0, "no per-client limit: nothing refused as rate_limited_client"
    for o in outs:
        med = o["refused_call_s"]["median"]
        assert med is not None and med < 0.001, \
            f"refused connect() median {med} s, expected well under 1 ms: {o['refused_call_s']}"


def test_per_client_limit_noisy_and_quiet_client(sluice, topo):
    """Per-client r=100/s, b=50: a noisy client (two processes in one namespace, two CPUs,
    2 s) is held to b + r × window ±10%, while a quiet client (another namespace, 10
    connects/s) is never refused. The service's own bucket (400/s, burst 400) is never
    hit: the client's bucket is checked first, so the noisy client's refusals do not
    spend the service's tokens."""
    r, b = 100, 50
    noisy, quiet = topo.extra[0], topo.extra[1]
    apply_fresh(sluice, limited(topo, "pc", VIP_CLIENTS, 400, 400, r, b))
    acc0, svc0, cli0 = counters(sluice, "pc")

    # The noisy processes flood flat out; the quiet one paces itself.
    *outs, quiet_out = floods(sluice, [(noisy.ns, 0, VIP_CLIENTS, PORT, []),
                                       (noisy.ns, 1, VIP_CLIENTS, PORT, []),
                                       (quiet.ns, None, VIP_CLIENTS, PORT,
                                        ["--interval", 0.1])], 2.0)
    assert_flood_clean(outs + [quiet_out])
    ok, refused = total(outs, "ok"), total(outs, "refused")
    expected, window, detail = expected_admitted(outs, r, b)
    print(f"per-client limit: noisy {ok} admitted, expected {expected:.1f} ({detail}); "
          f"{describe(outs)}; quiet: {quiet_out['ok']} of {quiet_out['count']} admitted")
    assert refused > 20 * ok, f"the flood must offer far more than the rate: {describe(outs)}"
    assert_within(ok, expected, ACCURACY,
                  f"noisy client, r={r}/s b={b} over {window:.3f} s ({detail})")
    assert quiet_out["count"] >= 10, f"the quiet client made too few attempts: {quiet_out}"
    assert quiet_out["refused"] == 0 and quiet_out["ok"] == quiet_out["count"], \
        f"the quiet client was refused: {quiet_out}"

    acc1, svc1, cli1 = counters(sluice, "pc")
    assert acc1 - acc0 == ok + quiet_out["ok"]
    assert cli1 - cli0 == refused, "rate_limited_client must count the noisy refusals exactly"
    assert svc1 == svc0, "the service's bucket must not have refused anything"


def test_client_identity_bound_source_and_netns(sluice, topo):
    """The client is the bound source address and port when the socket was bound, else its
    network namespace: with per-client r=1/s, b=3, each of two bound source ports and the
    unbound sockets of the same namespace get a full bucket of their own (3 admitted, the
    rest refused as rate_limited_client)."""
    apply_fresh(sluice, limited(topo, "pcb", VIP_CLIENTS, client_rate=1, client_burst=3))
    acc0, svc0, cli0 = counters(sluice, "pcb")
    ports = [23001, 23002]
    bound = sluice.client(topo.client.ns, "tcp", VIP_CLIENTS, PORT, "--bind", topo.client.v4,
                          "--bind-ports", ",".join(map(str, ports)), "--count", 5,
                          "--sequence")
    unbound = sluice.client(topo.client.ns, "tcp", VIP_CLIENTS, PORT, "--count", 5,
                            "--sequence")
    # At 1 token/s, a run that took over a second may see one more token per second.
    slack = int(bound["elapsed_s"] + unbound["elapsed_s"])
    runs = {f"port {p}": bound["sequence"][i * 5:(i + 1) * 5] for i, p in enumerate(ports)}
    runs["unbound"] = unbound["sequence"]
    for who, seq in runs.items():
        assert all(not x.startswith("!") for x in seq[:3]), \
            f"{who}: a new client starts with a full bucket of 3: {seq}"
        oks = sum(not x.startswith("!") for x in seq)
        assert 3 <= oks <= 3 + slack, f"{who}: {oks} of 5 admitted, expected 3: {seq}"
        assert all(x in ("!ECONNREFUSED",) or not x.startswith("!") for x in seq), seq
    ok = bound["ok"] + unbound["ok"]
    refused = bound["errors"].get("ECONNREFUSED", 0) + unbound["errors"].get("ECONNREFUSED", 0)
    acc1, svc1, cli1 = counters(sluice, "pcb")
    assert (acc1 - acc0, cli1 - cli0, svc1 - svc0) == (ok, refused, 0), \
        f"accepted/rate_limited_client/rate_limited_service deltas vs {ok} ok, {refused} refused"


# --- changing and removing limits ------------------------------------------------------

def rate_in_last_second(outs):
    """Connections admitted in the last second of the floods (the bucket long empty)."""
    last = max(o["last"] for o in outs)
    return sum(1 for o in outs for t in o["ok_t"] if t > last - 1.0)


def test_changing_and_removing_a_limit(sluice, topo):
    """R=100/s (B=100) -> R=300/s -> no rate_limit block: the admitted rate (the last second
    of a 2 s two-CPU flood) follows within ±15%, and without the block nothing is refused.
    The service keeps its bucket across the change (not refilled: still empty right after
    the apply), and an unrelated, drained service (1/s, burst 20) keeps its bucket and
    counters through both applies, the second of which also adds a service."""
    other = limited(topo, "other", VIP_OTHER, 1, 20)
    apply_fresh(sluice, limited(topo, "rl", VIP, 100, 100), other)

    # Drain the unrelated service: 20 at once, then 1/s.
    out = sluice.client(topo.client.ns, "tcp", VIP_OTHER, PORT, "--count", 25)
    t_drained = time.monotonic()
    assert out["ok"] >= 20 and out["errors"] == {"ECONNREFUSED": 25 - out["ok"]}, out
    o0 = stats(sluice, "other")
    assert o0["accepted"] == out["ok"]

    def other_untouched(when):
        o = stats(sluice, "other")
        since = time.monotonic() - t_drained
        assert (o["accepted"], o["refused"]) == (o0["accepted"], o0["refused"]), \
            f"{when}: the unrelated service's counters changed: {o0} -> {o}"
        assert o["tokens"] <= o0["tokens"] + math.ceil(since) + 1, \
            f"{when}: the unrelated service's bucket was refilled ({o['tokens']} tokens " \
            f"{since:.1f} s after draining it at 1/s): {o}"
        assert o["rate_limit"]["connections_per_second"] == 1, o

    rates = {}
    outs = flood_pair(sluice, topo.client.ns, VIP, PORT, 2.0)
    assert_flood_clean(outs)
    rates[100] = rate_in_last_second(outs)
    flood_end = max(o["last"] for o in outs)

    # 100/s -> 300/s. The flood left the bucket ~burst intervals (1 s) in debt; at 300/s
    # with burst 100 it stays empty until ~0.67 s after the flood, and a reset bucket
    # would show 100 tokens.
    sluice.apply(doc(limited(topo, "rl", VIP, 300, 100), other))
    e = stats(sluice, "rl")
    since = time.monotonic() - flood_end
    assert e["rate_limit"]["connections_per_second"] == 300, e
    assert e["tokens"] <= max(0.0, (since - 0.67) * 300) + 2, \
        f"the changed service's bucket was refilled by the apply: {e['tokens']} tokens " \
        f"{since:.3f} s after the flood"
    other_untouched("after changing rl's limit")

    outs = flood_pair(sluice, topo.client.ns, VIP, PORT, 2.0)
    assert_flood_clean(outs)
    rates[300] = rate_in_last_second(outs)
    print(f"admitted in the last second: {rates}")
    for rate, got in rates.items():
        assert_within(got, rate, RATE_ACCURACY, f"R={rate}/s, the last second of the flood")

    # No rate_limit block: no limit.
    # The same apply adds a service (a fresh id, a full bucket, written beside the others).
    acc0, svc0, cli0 = counters(sluice, "rl")
    sluice.apply(doc(limited(topo, "rl", VIP), other,
                     limited(topo, "newcomer", VIP_CLIENTS, 1, 5)))
    assert stats(sluice, "rl")["rate_limit"] == dict.fromkeys(RATE_KEYS, 0)
    assert stats(sluice, "newcomer")["tokens"] == 5, "a new service starts with a full bucket"
    outs = floods(sluice, [(topo.client.ns, 0, VIP, PORT, [])], 1.0)
    assert_flood_clean(outs)
    acc1, svc1, cli1 = counters(sluice, "rl")
    assert outs[0]["refused"] == 0 and outs[0]["ok"] == outs[0]["count"], \
        f"refusals without a rate_limit block: {describe(outs)}"
    assert outs[0]["ok"] > 300, f"unlimited, yet only {outs[0]['ok']} connects in 1 s"
    assert (acc1 - acc0, svc1 - svc0, cli1 - cli0) == (outs[0]["ok"], 0, 0)
    other_untouched("after removing rl's limit")

    # And the unrelated service is still limited by its own (drained) bucket.
    tokens = stats(sluice, "other")["tokens"]
    out = sluice.client(topo.client.ns, "tcp", VIP_OTHER, PORT, "--count", tokens + 5)
    assert tokens <= out["ok"] <= tokens + 1 + int(out["elapsed_s"]) and \
        set(out["errors"]) == {"ECONNREFUSED"}, f"{tokens} tokens: {out}"


# --- UDP: a socket is one flow ---------------------------------------------------------

def test_udp_new_sockets_limited_datagrams_not(sluice, topo):
    """UDP R=200/s, B=50: one unconnected socket's 500 datagrams (far beyond the burst)
    all go through and take one token; a connected socket's connect() is one admission;
    new sockets (one sendto() each) flooded from two CPUs for 1 s are held to B + R ×
    window ±10%, refused with ECONNREFUSED and counted exactly."""
    rate, burst = 200, 50
    apply_fresh(sluice, limited(topo, "dns", VIP_UDP, rate, burst, protocol="udp"))
    acc0, svc0, _ = counters(sluice, "dns")
    shown = f"{VIP_UDP}:{UDP_PORT}"

    out = sluice.client(topo.client.ns, "udp", VIP_UDP, UDP_PORT, "--count", 500)
    assert out["ok"] == 500 and not out["errors"], out
    assert out["sources"] == {shown: 500} and len(out["backends"]) == 1, out
    acc1, svc1, _ = counters(sluice, "dns")
    assert (acc1 - acc0, svc1 - svc0) == (1, 0), \
        "one unconnected socket is one flow: one admission, whatever it sends"

    out = sluice.client(topo.client.ns, "udp", VIP_UDP, UDP_PORT, "--count", 300,
                        "--connected")
    assert out["ok"] == 300 and not out["errors"], out
    acc2, svc2, _ = counters(sluice, "dns")
    assert (acc2 - acc1, svc2 - svc1) == (1, 0), "a UDP connect() is one admission"

    time.sleep(2 / rate)  # the two tokens those took are back
    outs = flood_pair(sluice, topo.client.ns, VIP_UDP, UDP_PORT, 1.0, "--udp")
    assert_flood_clean(outs)
    ok, refused = total(outs, "ok"), total(outs, "refused")
    expected, window, detail = expected_admitted(outs, rate, burst)
    print(f"UDP new flows: {ok} admitted, expected {expected:.1f} ({detail}); {describe(outs)}")
    assert refused > 10 * ok, f"the flood must offer far more than the rate: {describe(outs)}"
    assert_within(ok, expected, ACCURACY, f"UDP R={rate}/s B={burst} over {window:.3f} s")
    acc3, svc3, cli3 = counters(sluice, "dns")
    assert (acc3 - acc2, svc3 - svc2) == (ok, refused)
    for o in outs:
        assert o["refused_call_s"]["median"] < 0.001, o["refused_call_s"]


# --- sluicectl stats --------------------------------------------------------------------

def stats_rows(text):
    """`sluicectl stats` text -> {service: {column: value}}."""
    lines = text.strip().splitlines()
    assert lines and lines[0].split() == STATS_COLUMNS, f"stats header: {lines[:1]}"
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == len(STATS_COLUMNS), f"stats row: {line!r}"
        rows[cells[0]] = dict(zip(STATS_COLUMNS, [cells[0], *map(int, cells[1:])]))
    return rows


def test_stats_keys_values_and_tokens(sluice, topo):
    """`stats -j`: key set, configured limits (a burst defaults to its rate), accepted and
    refused equal to what the clients saw, tokens within 0..burst and back to exactly
    burst after an idle spell; `stats [SERVICE]` text shows the same; an unknown service
    is an error."""
    slow = limited(topo, "slow", VIP, 1, 10)
    fast = limited(topo, "fast", VIP_OTHER, 100, 20)
    dflt = limited(topo, "dflt", VIP_CLIENTS, 50, client_rate=7)
    apply_fresh(sluice, slow, fast, dflt)

    everything = sluice.ctl_json("stats")
    assert sorted(e["service"] for e in everything) == ["dflt", "fast", "slow"], everything
    for e in everything:
        assert set(e) == STATS_KEYS, e
        assert (e["accepted"], e["refused_total"]) == (0, 0), e
        # No XDP is attached here: the socket hooks' traffic is not counted there.
        assert e["xdp"] == {**dict.fromkeys(XDP_KEYS - {"dropped", "passed"}, 0),
                            "dropped": dict.fromkeys(XDP_DROPS, 0),
                            "passed": dict.fromkeys(XDP_PASSES, 0)}, e
    assert stats(sluice, "slow")["rate_limit"] == {
        "connections_per_second": 1, "burst": 10, "per_client_connections_per_second": 0,
        "per_client_burst": 0, "syn_per_second": 0, "syn_burst": 0}
    assert stats(sluice, "dflt")["rate_limit"] == {
        "connections_per_second": 50, "burst": 50, "per_client_connections_per_second": 7,
        "per_client_burst": 7, "syn_per_second": 0, "syn_burst": 0}, \
        "a burst defaults to its rate"
    for name, burst in (("slow", 10), ("fast", 20), ("dflt", 50)):
        assert stats(sluice, name)["tokens"] == burst, f"{name}: a new bucket is full"

    # slow: 14 connects at 1/s, burst 10: 10 admitted (11 if a second went by).
    out = sluice.client(topo.client.ns, "tcp", VIP, PORT, "--count", 14)
    refused = out["errors"].get("ECONNREFUSED", 0)
    assert out["ok"] >= 10 and out["ok"] + refused == 14, out
    e = stats(sluice, "slow")
    assert (e["accepted"], e["refused_total"], e["refused"]["rate_limited_service"]) == \
        (out["ok"], refused, refused), e
    assert e["accepted"] == service_entry(sluice, "slow")["selected"]
    assert 0 <= e["tokens"] <= 1 + int(out["elapsed_s"]), e

    # fast: drained by a 0.3 s flood, then full again 20 × 10 ms after its last attempt.
    outs = floods(sluice, [(topo.client.ns, 0, VIP_OTHER, PORT, [])], 0.3)
    assert_flood_clean(outs)
    e = stats(sluice, "fast")
    assert 0 <= e["tokens"] <= 20, e
    assert e["accepted"] == outs[0]["ok"] and \
        e["refused"]["rate_limited_service"] == outs[0]["refused"], (e, describe(outs))
    time.sleep(max(0.0, outs[0]["last"] + 0.3 - time.monotonic()))
    assert stats(sluice, "fast")["tokens"] == 20, "a bucket left idle fills up to its burst"

    # The text form, whole and for one service.
    p = sluice.ctl("stats")
    assert p.returncode == 0, p.stderr
    rows = stats_rows(p.stdout)
    assert set(rows) == {"slow", "fast", "dflt"}, p.stdout
    e = stats(sluice, "slow")
    assert rows["slow"] == {"SERVICE": "slow", "ACCEPTED": e["accepted"],
                            "REFUSED": e["refused_total"],
                            "RATE_SVC": e["refused"]["rate_limited_service"],
                            "RATE_CLIENT": 0, "CONN/S": 1, "PER_CLIENT/S": 0,
                            "TOKENS": rows["slow"]["TOKENS"]}, p.stdout
    assert 0 <= rows["slow"]["TOKENS"] <= 10
    assert (rows["dflt"]["CONN/S"], rows["dflt"]["PER_CLIENT/S"]) == (50, 7)
    p = sluice.ctl("stats", "fast")
    assert p.returncode == 0, p.stderr
    assert set(stats_rows(p.stdout)) == {"fast"}, p.stdout

    p = sluice.ctl("stats", "nosuch")
    assert p.returncode == 1 and "nosuch" in p.stderr and not p.stdout.strip(), p
    p = sluice.ctl("-j", "stats", "nosuch")
    assert p.returncode == 1 and set(json.loads(p.stdout)) == {"error"}, p


def test_stats_tokens_without_a_service_limit(sluice, topo):
    """A service without a service-wide bucket shows no tokens beyond its burst (0), or null."""
    apply_fresh(sluice, limited(topo, "plain", VIP),
                limited(topo, "pconly", VIP_OTHER, client_rate=5, client_burst=2))
    for name in ("plain", "pconly"):
        e = stats(sluice, name)
        assert e["rate_limit"]["burst"] == 0, e
        assert e["tokens"] is None or 0 <= e["tokens"] <= e["rate_limit"]["burst"], \
            f"{name}: tokens {e['tokens']} with burst 0"


# --- the agent's metrics ---------------------------------------------------------------

AGENT_PORT = 18099  # test_agent.py's agents count up from 18100


def test_agent_metrics_count_rate_limited(unloaded_sluice, topo, tmp_path):
    """sluiced's sluice_service_refused_total{reason="rate_limited_service"|
    "rate_limited_client"} are the kernel's counters (`stats -j`), and count what the
    clients saw refused: per-client 1/s (burst 2) and service 1/s (burst 3), 4 connects
    from each of two client namespaces."""
    s = unloaded_sluice()
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(doc(limited(topo, "m", VIP, 1, 3, 1, 2))))
    agent = E.Agent(topo.extra[-1].ns, AGENT_PORT,
                    ["--registry", f"file:{registry}", "--pin-root", s.pin_root,
                     "--cgroup", s.cgroup, "--listen", f"127.0.0.1:{AGENT_PORT}"],
                    str(tmp_path / "sluiced.log"),
                    env={k: v for k, v in E.CLEAN_ENV.items() if not k.startswith("SLUICE_")})
    agent.start()
    try:
        agent.wait_ready()
        outs = [s.client(ns, "tcp", VIP, PORT, "--count", 4)
                for ns in (topo.client.ns, topo.extra[2].ns)]
        ok = sum(o["ok"] for o in outs)
        refused = sum(o["errors"].get("ECONNREFUSED", 0) for o in outs)
        assert ok + refused == 8 and all(set(o["errors"]) <= {"ECONNREFUSED"} for o in outs), \
            outs
        e = stats(s, "m")
        m = agent.metrics()
        got = {r: E.metric(m, "sluice_service_refused_total", service="m", reason=r)
               for r in ("rate_limited_service", "rate_limited_client")}
        assert got == {r: e["refused"][r] for r in got}, f"/metrics {got} vs stats -j {e}"
        assert sum(got.values()) == refused and got["rate_limited_client"] > 0 and \
            got["rate_limited_service"] > 0, f"{got}: clients saw {ok} ok, {refused} refused"
        assert E.metric(m, "sluice_service_connections_selected_total", service="m") == ok
    finally:
        E.JANITOR.run(agent.token)
