# SPDX-License-Identifier: MIT
"""Socket load balancing end to end: real clients in a cgroup where sluice is
attached connect to VIPs and reach real backends in other namespaces.

Every test applies the whole registry document it needs; the previous test's
services disappear with it. Counters are compared as differences, since
backend and service ids (and their per-CPU counters) may outlive one apply."""
import subprocess

import pytest

import sluice_e2e as E
from sluice_e2e import be, doc, svc

VIP4 = "10.96.0.10"
VIP6 = "fd00:96::10"
VIP_EMPTY = "10.96.0.20"
PORT = 80
UDP_PORT = 53
TOLERANCE = 0.15


def all_ids(topo):
    return {b.identity for b in topo.backends}


def web(topo, algorithm, weights=None, family=4, hosts=None, name="web", vip=None):
    hosts = hosts if hosts is not None else topo.backends
    weights = weights or [1] * len(hosts)
    vip = vip or (VIP4 if family == 4 else VIP6)
    return svc(name, vip, PORT, [be(h.v4 if family == 4 else h.v6, 8080, w)
                                 for h, w in zip(hosts, weights)], algorithm)


def selected_by_identity(sluice, topo, service):
    """{identity: selected} for the backends of one service, from `backends SERVICE -j`."""
    return {topo.identity_of(b["address"]): b["selected"] for b in sluice.backends(service)}


def service_entry(sluice, name):
    found = [s for s in sluice.services() if s["name"] == name]
    assert len(found) == 1, f"service {name} in `services -j`: {found}"
    return found[0]


def diff(after, before):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def assert_shares(counts, weights, total):
    """Each identity's share within TOLERANCE (relative) of its weighted share."""
    wsum = sum(weights.values())
    assert set(counts) == set(weights), \
        f"backends used {sorted(counts)}, expected {sorted(weights)}"
    for ident, w in weights.items():
        expected = total * w / wsum
        got = counts.get(ident, 0)
        assert abs(got - expected) <= TOLERANCE * expected, \
            f"{ident}: {got} of {total} connections, expected {expected:.0f} ±15%: {counts}"


def run_and_count(sluice, topo, service, *client_args):
    """Runs one client; returns (client output, per-backend selected delta, service delta)."""
    be_before = selected_by_identity(sluice, topo, service)
    svc_before = service_entry(sluice, service)["selected"]
    out = sluice.client(topo.client.ns, *client_args)
    be_delta = diff(selected_by_identity(sluice, topo, service), be_before)
    svc_delta = service_entry(sluice, service)["selected"] - svc_before
    return out, be_delta, svc_delta


# --- algorithms ---------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["random", "round_robin"])
def test_even_algorithm_uses_all_backends_evenly(sluice, topo, algorithm):
    n = 2000
    sluice.apply(doc(web(topo, algorithm)))
    out, be_delta, svc_delta = run_and_count(sluice, topo, "web", "tcp", VIP4, PORT,
                                             "--count", n)
    assert out["ok"] == n, f"failed connections: {out['errors']}"
    assert_shares(out["backends"], {i: 1 for i in all_ids(topo)}, n)
    assert out["peers"] == {f"{VIP4}:{PORT}": n}, "getpeername() must return the VIP"
    assert be_delta == out["backends"], "per-backend `selected` must count our connections"
    assert svc_delta == n, "service `selected` must count our connections"


def test_weighted_shares_track_weights(sluice, topo):
    n = 2000
    weights = [1, 2, 3, 4]
    sluice.apply(doc(web(topo, "weighted", weights)))
    out, be_delta, svc_delta = run_and_count(sluice, topo, "web", "tcp", VIP4, PORT,
                                             "--count", n)
    assert out["ok"] == n, f"failed connections: {out['errors']}"
    assert_shares(out["backends"], {b.identity: w for b, w in zip(topo.backends, weights)}, n)
    assert out["peers"] == {f"{VIP4}:{PORT}": n}
    assert be_delta == out["backends"]
    assert svc_delta == n


def test_round_robin_is_exact_rotation(sluice, topo):
    """The contract promises exact rotation: every 4 consecutive connections hit all 4."""
    sluice.apply(doc(web(topo, "round_robin")))
    out = sluice.client(topo.client.ns, "tcp", VIP4, PORT, "--count", 400, "--sequence")
    seq = out["sequence"]
    assert out["ok"] == 400, out["errors"]
    assert len(set(seq[:4])) == 4, f"first rotation {seq[:4]}"
    bad = [i for i in range(len(seq) - 4) if seq[i] != seq[i + 4]]
    assert not bad, f"rotation broken at {bad[:5]}: {seq[max(bad[0] - 4, 0):bad[0] + 8]}"


def test_weighted_is_exact_interleaved_rotation(sluice, topo):
    """Weights 1,2,3,4: every 10 consecutive connections split exactly 1,2,3,4, interleaved."""
    weights = [1, 2, 3, 4]
    sluice.apply(doc(web(topo, "weighted", weights)))
    out = sluice.client(topo.client.ns, "tcp", VIP4, PORT, "--count", 400, "--sequence")
    seq = out["sequence"]
    assert out["ok"] == 400, out["errors"]
    for start in range(0, 400, 10):
        window = seq[start:start + 10]
        counts = {b.identity: window.count(b.identity) for b in topo.backends}
        assert counts == {b.identity: w for b, w in zip(topo.backends, weights)}, \
            f"connections {start}..{start + 9}: {window}"
    longest = run = 1
    for prev, cur in zip(seq, seq[1:]):
        run = run + 1 if cur == prev else 1
        longest = max(longest, run)
    assert longest <= 2, f"weighted rotation is not interleaved (runs of {longest}): {seq[:20]}"


# --- maglev ---------------------------------------------------------------------------------

# Bound source ports sit below the ephemeral range (32768-60999): a TIME_WAIT
# socket left by an earlier test's ephemeral port would make bind() fail.
BIND_PORTS = list(range(21001, 21013))
# Maglev promises minimal disruption, not none: when one of 4 backends leaves,
# a builder that keeps its table size moves 0.4-2% of the other backends'
# entries (measured with userspace/lib/maglev.c for tables of 1021..65537
# entries). So removal may move a few clients of the remaining backends; more
# than this share means the table was rebuilt rather than repaired.
MAGLEV_MAX_MOVED = 0.08


def maglev_bound(sluice, topo, ports=BIND_PORTS, per_port=6):
    """{bound port: set of identities} for repeated connects from each bound port."""
    out = sluice.client(topo.client.ns, "tcp", VIP4, PORT, "--bind", topo.client.v4,
                        "--bind-ports", ",".join(map(str, ports)), "--count", per_port)
    assert out["ok"] == per_port * len(ports), f"failed connections: {out['errors']}"
    assert set(out["peers"]) == {f"{VIP4}:{PORT}"}, "getpeername() must return the VIP"
    return {int(k.rsplit(":", 1)[1]): set(v) for k, v in out["per_bind"].items()}


def maglev_netns(sluice, topo, per_ns=3):
    """{namespace: set of identities}, one unbound client per extra client namespace."""
    jobs = [(h.ns, ["tcp", VIP4, PORT, "--count", per_ns]) for h in topo.extra]
    outs = sluice.clients_parallel(jobs)
    for (ns, _), o in zip(jobs, outs):
        assert o["ok"] == per_ns, f"{ns}: failed connections: {o['errors']}"
    return {ns: set(o["backends"]) for (ns, _), o in zip(jobs, outs)}


def single(mapping, what):
    """{client: {identity}} -> {client: identity}, asserting one backend per client."""
    unstable = {c: sorted(ids) for c, ids in mapping.items() if len(ids) != 1}
    assert not unstable, f"one {what} reached several backends: {unstable}"
    return {c: next(iter(ids)) for c, ids in mapping.items()}


def test_maglev_bound_source_is_stable(sluice, topo):
    sluice.apply(doc(web(topo, "maglev")))
    first = single(maglev_bound(sluice, topo), "bound source port")
    second = single(maglev_bound(sluice, topo), "bound source port")
    assert second == first, "the same bound source must keep its backend across runs"
    used = set(first.values())
    assert len(used) >= 2, f"{len(BIND_PORTS)} different source ports all hashed to {used}"


def test_maglev_netns_spread_and_removal(sluice, topo):
    ports = list(range(22001, 22065))
    sluice.apply(doc(web(topo, "maglev")))
    before = single(maglev_netns(sluice, topo), "client namespace")
    assert set(before.values()) == all_ids(topo), \
        f"{len(before)} client namespaces did not spread over all backends: {before}"
    before.update(single(maglev_bound(sluice, topo, ports, 2), "bound source port"))

    removed = topo.backends[-1]
    remaining = topo.backends[:-1]
    sluice.apply(doc(web(topo, "maglev", hosts=remaining)))
    assert {b["address"] for b in sluice.backends("web")} == {h.v4 for h in remaining}

    after = single(maglev_netns(sluice, topo), "client namespace")
    after.update(single(maglev_bound(sluice, topo, ports, 2), "bound source port"))
    stayed = [c for c in before if before[c] != removed.identity]
    moved = {c: f"{before[c]}->{after[c]}" for c in stayed if after[c] != before[c]}
    assert len(moved) <= MAGLEV_MAX_MOVED * len(stayed), (
        f"{len(moved)} of the {len(stayed)} clients of the remaining backends moved when "
        f"{removed.identity} left (allowed {MAGLEV_MAX_MOVED:.0%}): {moved}")
    rehomed = {c: after[c] for c in before if before[c] == removed.identity}
    assert set(rehomed.values()) <= {h.identity for h in remaining}, rehomed


# --- what the application sees --------------------------------------------------------------

@pytest.mark.parametrize("target", [VIP4, VIP6, "::ffff:" + VIP4],
                         ids=["ipv4", "ipv6", "v4-mapped"])
def test_getpeername_returns_vip(sluice, topo, target):
    family = 6 if target == VIP6 else 4
    sluice.apply(doc(web(topo, "round_robin", family=family)))
    out = sluice.client(topo.client.ns, "tcp", target, PORT, "--count", 40)
    assert out["ok"] == 40, out["errors"]
    shown = f"[{target}]:{PORT}" if ":" in target else f"{target}:{PORT}"
    assert out["peers"] == {shown: 40}
    assert set(out["backends"]) == all_ids(topo)


def test_ipv6_vip_tcp(sluice, topo):
    n = 400
    sluice.apply(doc(web(topo, "random", family=6)))
    out, be_delta, svc_delta = run_and_count(sluice, topo, "web", "tcp", VIP6, PORT,
                                             "--count", n)
    assert out["ok"] == n, out["errors"]
    assert set(out["backends"]) == all_ids(topo)
    assert out["peers"] == {f"[{VIP6}]:{PORT}": n}
    assert be_delta == out["backends"]
    assert svc_delta == n
    entry = service_entry(sluice, "web")
    assert (entry["family"], entry["vip"], entry["port"]) == ("ipv6", VIP6, PORT)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_udp_request_response_via_vip(sluice, topo, family):
    vip = VIP4 if family == 4 else VIP6
    shown = f"{vip}:{UDP_PORT}" if family == 4 else f"[{vip}]:{UDP_PORT}"
    sluice.apply(doc(svc("dns", vip, UDP_PORT, [be(h.v4 if family == 4 else h.v6, 5353)
                                                 for h in topo.backends],
                         "round_robin", protocol="udp")))
    # Unconnected: a socket is one flow (its first sendto() is balanced, the rest follow it);
    # every reply must come from the VIP. Four sockets, round_robin: all four backends.
    seen = {}
    for _ in topo.backends:
        out, be_delta, _ = run_and_count(sluice, topo, "dns", "udp", vip, UDP_PORT,
                                         "--count", 5)
        assert out["ok"] == 5, out["errors"]
        assert out["sources"] == {shown: 5}, "recvfrom() must show the VIP as the reply's source"
        assert len(out["backends"]) == 1, f"one socket, one flow, one backend: {out['backends']}"
        assert sum(be_delta.values()) == 1, f"a flow is selected once: {be_delta}"
        seen.update(out["backends"])
    assert set(seen) == all_ids(topo)
    # Connected: connect() picks one backend; peer and sources are the VIP.
    out = sluice.client(topo.client.ns, "udp", vip, UDP_PORT, "--count", 5, "--connected")
    assert out["ok"] == 5, out["errors"]
    assert out["peers"] == {shown: 1}
    assert out["sources"] == {shown: 5}
    assert len(out["backends"]) == 1


# --- what sluice must leave alone -----------------------------------------------------------

def test_non_vip_traffic_untouched(sluice, topo):
    b1, b4 = topo.backends[0], topo.backends[-1]
    others = topo.backends[:-1]
    # "shadow" makes be4's own address a VIP, but on port 80 only.
    sluice.apply(doc(web(topo, "round_robin"),
                     svc("shadow", b4.v4, PORT, [be(h.v4) for h in others], "round_robin")))
    web_before = service_entry(sluice, "web")["selected"]

    for host in (b1.v4, b1.v6, b4.v4):
        out = sluice.client(topo.client.ns, "tcp", host, 8080, "--count", 20)
        shown = f"[{host}]:8080" if ":" in host else f"{host}:8080"
        expect = b1.identity if host != b4.v4 else b4.identity
        assert out["backends"] == {expect: 20}, f"direct connect to {shown}: {out}"
        assert out["peers"] == {shown: 20}
        out = sluice.client(topo.client.ns, "udp", host, 5353, "--count", 3)
        assert out["sources"] == {shown.replace("8080", "5353"): 3}, out

    # The VIP's address on another port is not rewritten; nothing routes 10.96/16.
    out = sluice.client(topo.client.ns, "tcp", VIP4, 8080, "--count", 3, "--timeout", 1)
    assert out["ok"] == 0 and set(out["errors"]) == {"ENETUNREACH"}, out
    out = sluice.client(topo.client.ns, "udp", VIP4, 5353, "--count", 1, "--timeout", 1)
    assert out["ok"] == 0 and set(out["errors"]) == {"ENETUNREACH"}, out
    assert service_entry(sluice, "web")["selected"] == web_before, \
        "traffic that is not for a VIP was counted"

    # Port 80 of be4's address is a VIP and is balanced over be1..be3.
    out = sluice.client(topo.client.ns, "tcp", b4.v4, PORT, "--count", 30)
    assert out["ok"] == 30, out["errors"]
    assert set(out["backends"]) == {h.identity for h in others}
    assert out["peers"] == {f"{b4.v4}:{PORT}": 30}


def test_vip_without_backends_refuses_fast(sluice, topo):
    sluice.apply(doc(web(topo, "round_robin"),
                     svc("empty", VIP_EMPTY, PORT, [], "round_robin")))
    entry = service_entry(sluice, "empty")
    assert entry["backend_count"] == 0
    refused_before = entry["refused"]["no_backend"]
    out = sluice.client(topo.client.ns, "tcp", VIP_EMPTY, PORT, "--count", 20, "--timeout", 3)
    assert out["ok"] == 0 and out["errors"] == {"ECONNREFUSED": 20}, out
    assert out["error_max_s"] < 0.25, f"refusal took {out['error_max_s']} s, expected at once"
    refused = service_entry(sluice, "empty")["refused"]["no_backend"] - refused_before
    assert refused == 20, "refused.no_backend must count the refused connects"
    # The other service is unaffected.
    out = sluice.client(topo.client.ns, "tcp", VIP4, PORT, "--count", 8)
    assert out["ok"] == 8 and set(out["backends"]) == all_ids(topo)


# --- a real client ----------------------------------------------------------------------

@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_curl_through_vip(sluice, topo, family):
    sluice.apply(doc(web(topo, "round_robin", family=family)))
    url = f"http://{VIP4}/" if family == 4 else f"http://[{VIP6}]/"
    seen = []
    for _ in range(8):
        p = sluice.run_in(topo.client.ns, ["curl", "-sS", "-g", "--noproxy", "*",
                                           "--max-time", "5", url], timeout=15)
        assert p.returncode == 0, f"curl {url}: exit {p.returncode}: {p.stderr}"
        seen.append(p.stdout.strip())
    assert set(seen) == all_ids(topo), f"curl answers: {seen}"


def test_traffic_stops_being_balanced_outside_the_cgroup(sluice, topo):
    """A process outside the attached cgroup is not balanced (sanity of the test setup)."""
    sluice.apply(doc(web(topo, "round_robin")))
    p = subprocess.run(E.in_ns(topo.client.ns, E.PY, E.CLIENT, "tcp", VIP4, str(PORT),
                               "--count", "2", "--timeout", "1"),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert '"ENETUNREACH": 2' in p.stdout, p.stdout
