# SPDX-License-Identifier: MIT
"""Connection-level circuit breaking end to end (issue 3): breakers opened by
refused, dropped and abandoned connects, half-open probes, max_connections,
max_ejection_percent, panic, least_conn, affinity, live connection counts
(also after SIGKILL) and `sluicectl breakers reset`.

The backends here are a second set of backend_server.py processes on port
9090 (no UDP), owned by this module, so a test may stop one backend's listener
(connects to it get an RST) and start it again without disturbing the
session's servers on 8080. A SYN-dropping backend is an nftables table in its
namespace. Every test starts from fresh backend ids (an empty document is
applied first: new ids come with closed breakers, zero live counts and zero
counters) and ends with every live count back at zero.

Most tests use round_robin: its rotation is exact, so which connect reaches
which backend, and how many reach a failing one, are known in advance."""
import json
import shutil
import time

import pytest

import sluice_e2e as E
from sluice_e2e import be, doc, svc

VIP = "10.96.3.10"
VIP6 = "fd00:96::3:10"
PORT = 80
BE_PORT = 9090

BREAKER_KEYS = {"service", "backend", "id", "state", "consecutive_failures", "times_ejected",
                "open_remaining_ms", "half_open_inflight", "live_connections"}
RESET_KEYS = {"service", "backend", "previous_state", "state"}


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers9090(topo, tmp_path_factory):
    """backend_server.py on port 9090 in every backend namespace, for this module."""
    workdir = str(tmp_path_factory.mktemp("breaker-backends"))
    with E.servers_running(topo, workdir, "port 9090 servers", tcp_port=BE_PORT, udp_port=0) as s:
        yield s


@pytest.fixture
def listeners(servers9090, topo):
    """The port 9090 servers; whatever a test stopped is started again after it."""
    yield servers9090
    for b in topo.backends:
        if b.identity not in servers9090.running():
            servers9090.procs.pop(b.identity, None)
            servers9090.start_one(b.identity)


@pytest.fixture
def nft(topo):
    """drop(identity): backend identity's namespace drops SYNs to port 9090; undone after."""
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is not installed")
    undo = []

    def drop(identity):
        undo.append(E.drop_syns(topo.backend(identity).ns, BE_PORT))

    yield drop
    for u in undo:
        u()


@pytest.fixture(autouse=True)
def holders(sluice, listeners):
    """hold(ns, *args): a `client.py hold` in the sluice cgroup, SIGKILLed after the test
    if still there. Then, for every test: every live count of the live services must be
    back to zero, in `breakers -j` and in sl_live itself (the CLI shows < 0 as 0)."""
    made = []

    def hold(ns, *args):
        h = sluice.hold(ns, *args)
        made.append(h)
        return h

    yield hold
    for h in made:
        E.JANITOR.run(h.token)
    left = E.wait_until(lambda: [b for b in sluice.breakers() if b["live_connections"]],
                        lambda left: not left, 3.0)
    assert not left, f"live connections left after the test: {left}"
    raw = {b["backend"]: sluice.live_raw(b["id"]) for b in sluice.breakers()}
    assert all(v == 0 for v in raw.values()), f"sl_live after the test: {raw}"


# --- helpers ------------------------------------------------------------------------------

def cb_service(topo, hosts=None, algorithm="round_robin", name="cb", lb=None, family=4,
               **breaker):
    hosts = topo.backends if hosts is None else hosts
    s = svc(name, VIP if family == 4 else VIP6, PORT,
            [be(h.v4 if family == 4 else h.v6, BE_PORT) for h in hosts], algorithm)
    s["lb"].update(lb or {})
    if breaker:
        s["circuit_breaker"] = breaker
    return s


def apply_fresh(sluice, *services):
    """An empty document, then ours: every backend gets a new id (closed breaker, zero
    counters); the maps' previous state cannot leak into the test."""
    sluice.apply(doc())
    sluice.apply(doc(*services))


def ep(host):
    return f"{host.v4}:{BE_PORT}"


def breakers(sluice, topo, service="cb"):
    """{identity: breaker entry} of one service."""
    out = {}
    for b in sluice.breakers(service):
        assert set(b) == BREAKER_KEYS, b
        out[topo.identity_of(b["backend"].rsplit(":", 1)[0].strip("[]"))] = b
    return out


def stats(sluice, topo, service="cb"):
    """{identity: backend entry (counters)} of one service."""
    return {topo.identity_of(b["address"]): b for b in sluice.backends(service)}


def service_entry(sluice, name="cb"):
    found = [s for s in sluice.services() if s["name"] == name]
    assert len(found) == 1, found
    return found[0]


COUNTERS = ("selected", "established", "connect_failed", "closed", "panic_selected", "probes",
            "ejections")


def delta(after, before):
    """Per identity, the change of every counter (skips by reason as skipped_<reason>)."""
    out = {}
    for ident, a in after.items():
        b = before.get(ident, {})
        d = {k: a[k] - b.get(k, 0) for k in COUNTERS}
        for r, n in a["skipped"].items():
            d[f"skipped_{r}"] = n - b.get("skipped", {}).get(r, 0)
        out[ident] = d
    return out


def state_of(brk):
    return {i: b["state"] for i, b in brk.items()}


def wait_ejection_over(sluice, topo, ident, timeout):
    """Waits (bounded) until ident's open breaker has no time left."""
    b = E.wait_until(lambda: breakers(sluice, topo)[ident],
                     lambda b: b["state"] == "open" and b["open_remaining_ms"] == 0, timeout)
    assert b["state"] == "open" and b["open_remaining_ms"] == 0, \
        f"{ident}'s ejection did not run out within {timeout} s: {b}"


def tcp(sluice, topo, count, *extra, ns=None):
    return sluice.client(ns or topo.client.ns, "tcp", VIP, PORT, "--count", count,
                         "--sequence", *extra)


# --- a backend that refuses connects --------------------------------------------------

def test_refused_backend_ejected_probed_and_restored(sluice, topo, listeners):
    """consecutive_failures refused connects reach a stopped backend, then none while it
    is open; after the ejection time exactly one probe does; once it listens again the
    probe closes the breaker and it gets its round-robin share again."""
    base, cap = 1000, 2000
    apply_fresh(sluice, cb_service(topo, consecutive_failures=3, base_ejection_ms=base,
                                   max_ejection_ms=cap))
    ids = [b.identity for b in topo.backends]
    listeners.stop_one("be2")

    before = stats(sluice, topo)
    out = tcp(sluice, topo, 40)
    brk = breakers(sluice, topo)
    d = delta(stats(sluice, topo), before)
    assert out["elapsed_s"] < base / 1000, f"the run outlasted the ejection: {out}"
    # round_robin: be2 is the 2nd of every 4; its 3rd failure opens it.
    assert out["errors"] == {"ECONNREFUSED": 3}, out
    assert [i for i, x in enumerate(out["sequence"]) if x.startswith("!")] == [1, 5, 9], out
    assert "be2" not in out["sequence"][10:], out["sequence"]
    assert (d["be2"]["selected"], d["be2"]["connect_failed"], d["be2"]["established"],
            d["be2"]["ejections"]) == (3, 3, 0, 1), d["be2"]
    assert d["be2"]["skipped_breaker_open"] >= 7, d["be2"]
    assert state_of(brk) == {"be1": "closed", "be2": "open", "be3": "closed", "be4": "closed"}
    assert (brk["be2"]["consecutive_failures"], brk["be2"]["times_ejected"]) == (3, 1), brk
    assert 0 < brk["be2"]["open_remaining_ms"] <= base, brk["be2"]
    assert all(brk[i]["consecutive_failures"] == 0 for i in ids if i != "be2"), brk

    # The ejection runs out: the next connect that picks be2 is its one probe; it fails
    # (still no listener) and reopens the breaker for base * 2.
    wait_ejection_over(sluice, topo, "be2", base / 1000 + 2)
    before = stats(sluice, topo)
    out = tcp(sluice, topo, 20)
    brk = breakers(sluice, topo)
    d = delta(stats(sluice, topo), before)
    assert out["errors"] == {"ECONNREFUSED": 1}, out
    assert (d["be2"]["selected"], d["be2"]["probes"], d["be2"]["connect_failed"]) == (1, 1, 1), \
        d["be2"]
    assert brk["be2"]["state"] == "open" and brk["be2"]["times_ejected"] == 2, brk["be2"]
    assert brk["be2"]["half_open_inflight"] == 0, brk["be2"]
    assert base < brk["be2"]["open_remaining_ms"] <= 2 * base, brk["be2"]

    # Listening again: after the (longer) ejection the probe succeeds, the breaker closes,
    # times_ejected decays by one and be2 is back in the exact rotation.
    listeners.start_one("be2")
    wait_ejection_over(sluice, topo, "be2", 2 * base / 1000 + 2)
    before = stats(sluice, topo)
    out = tcp(sluice, topo, 40)
    brk = breakers(sluice, topo)
    d = delta(stats(sluice, topo), before)
    assert out["ok"] == 40, out
    assert out["backends"] == {i: 10 for i in ids}, out
    assert (d["be2"]["probes"], d["be2"]["established"]) == (1, 10), d["be2"]
    assert state_of(brk) == {i: "closed" for i in ids}, brk
    assert (brk["be2"]["consecutive_failures"], brk["be2"]["times_ejected"]) == (0, 1), brk


def test_success_resets_consecutive_failures(sluice, topo, listeners):
    """Failures must be consecutive: an established connect in between starts over."""
    apply_fresh(sluice, cb_service(topo, consecutive_failures=3, base_ejection_ms=60000))
    listeners.stop_one("be1")
    out = tcp(sluice, topo, 8)  # be1 picked twice: 2 failures
    assert out["errors"] == {"ECONNREFUSED": 2}, out
    assert breakers(sluice, topo)["be1"]["consecutive_failures"] == 2
    listeners.start_one("be1")
    out = tcp(sluice, topo, 4)  # be1 once: established
    assert out["ok"] == 4, out
    b1 = breakers(sluice, topo)["be1"]
    assert (b1["state"], b1["consecutive_failures"]) == ("closed", 0), b1
    listeners.stop_one("be1")
    out = tcp(sluice, topo, 8)  # 2 more failures: 2 in a row, not 4
    assert out["errors"] == {"ECONNREFUSED": 2}, out
    b1 = breakers(sluice, topo)["be1"]
    assert (b1["state"], b1["consecutive_failures"], b1["times_ejected"]) == ("closed", 2, 0), b1
    assert stats(sluice, topo)["be1"]["ejections"] == 0


# --- a backend that drops SYNs ------------------------------------------------------------

@pytest.mark.parametrize("how", ["abandoned", "timed_out"])
def test_syn_dropping_backend_opens(sluice, topo, listeners, nft, how):
    """abandoned: the client gives up after 0.3 s and closes the socket mid-connect;
    timed_out: TCP_USER_TIMEOUT makes the kernel fail the connect (ETIMEDOUT)."""
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=60000))
    nft("be3")
    if how == "abandoned":
        extra, err = ("--timeout", "0.3"), "TIMEOUT"
    else:
        extra, err = ("--timeout", "5", "--user-timeout-ms", "200"), "ETIMEDOUT"
    before = stats(sluice, topo)
    out = tcp(sluice, topo, 16, *extra)
    d = delta(stats(sluice, topo), before)
    brk = breakers(sluice, topo)
    assert out["errors"] == {err: 2}, out
    assert [i for i, x in enumerate(out["sequence"]) if x.startswith("!")] == [2, 6], out
    assert out["ok"] == 14 and "be3" not in out["backends"], out
    if how == "timed_out":
        assert out["error_max_s"] < 4, f"the kernel should time the connect out: {out}"
    assert (d["be3"]["selected"], d["be3"]["connect_failed"], d["be3"]["established"],
            d["be3"]["ejections"]) == (2, 2, 0, 1), d["be3"]
    assert state_of(brk) == {"be1": "closed", "be2": "closed", "be3": "open",
                             "be4": "closed"}, brk
    assert brk["be3"]["consecutive_failures"] == 2 and brk["be3"]["times_ejected"] == 1, brk


def test_half_open_admits_half_open_max_probes(sluice, topo, listeners, nft, holders):
    """half_open_max probes at once, no more; probes that never connect (the client is
    killed mid-handshake) reopen the breaker for longer."""
    base = 500
    apply_fresh(sluice, cb_service(topo, topo.backends[:2], consecutive_failures=1,
                                   base_ejection_ms=base, max_ejection_ms=10000,
                                   half_open_max=2, max_ejection_percent=50,
                                   lb={"panic_threshold_percent": 0}))
    nft("be1")
    out = tcp(sluice, topo, 2, "--timeout", "0.2")
    assert out["sequence"] == ["!TIMEOUT", "be2"], out
    assert breakers(sluice, topo)["be1"]["state"] == "open"
    wait_ejection_over(sluice, topo, "be1", base / 1000 + 2)

    before = stats(sluice, topo)
    h = holders(topo.client.ns, VIP, PORT, "--count", 6, "--pending")
    assert h.out["pending"] == 6 and not h.out["errors"], h.out
    brk = breakers(sluice, topo)
    d = delta(stats(sluice, topo), before)
    # round_robin picks be1 3 times; 2 are admitted as probes, the 3rd goes to be2.
    assert (d["be1"]["selected"], d["be1"]["probes"], d["be2"]["selected"]) == (2, 2, 4), d
    assert d["be1"]["skipped_breaker_open"] >= 1, d["be1"]
    assert (brk["be1"]["state"], brk["be1"]["half_open_inflight"]) == ("half_open", 2), brk
    assert (brk["be1"]["live_connections"], brk["be2"]["live_connections"]) == (2, 4), brk

    h.kill()
    brk = E.wait_until(lambda: breakers(sluice, topo),
                       lambda b: b["be1"]["live_connections"] + b["be2"]["live_connections"] == 0,
                       3.0)
    d = delta(stats(sluice, topo), before)
    assert (d["be1"]["connect_failed"], d["be1"]["established"]) == (2, 0), d["be1"]
    assert (brk["be1"]["state"], brk["be1"]["times_ejected"],
            brk["be1"]["half_open_inflight"]) == ("open", 2, 0), brk["be1"]
    assert base < brk["be1"]["open_remaining_ms"] <= 2 * base, brk["be1"]
    assert brk["be2"]["state"] == "closed", brk["be2"]


# --- max_connections --------------------------------------------------------------------

def test_max_connections(sluice, topo, listeners, holders):
    """A backend at its limit gets no new connections; with every backend at its limit,
    connect() fails with ECONNREFUSED at once, counted as max_connections."""
    limit = 3
    apply_fresh(sluice, cb_service(topo, max_connections=limit))
    ids = [b.identity for b in topo.backends]
    first = holders(topo.client.ns, VIP, PORT, "--count", 10)
    assert first.out["sequence"] == ids * 2 + ids[:2], first.out
    live = {i: b["live_connections"] for i, b in breakers(sluice, topo).items()}
    assert live == {"be1": 3, "be2": 3, "be3": 2, "be4": 2}, live

    before = stats(sluice, topo)
    out = tcp(sluice, topo, 16)
    d = delta(stats(sluice, topo), before)
    assert out["ok"] == 16 and set(out["backends"]) == {"be3", "be4"}, out
    for i in ("be1", "be2"):
        assert d[i]["selected"] == 0 and d[i]["skipped_max_connections"] >= 4, (i, d[i])

    second = holders(topo.client.ns, VIP, PORT, "--count", 2)
    assert second.out["backends"] == {"be3": 1, "be4": 1}, second.out
    live = {i: b["live_connections"] for i, b in breakers(sluice, topo).items()}
    assert live == {i: limit for i in ids}, live

    refused_before = service_entry(sluice)["refused"]
    selected_before = service_entry(sluice)["selected"]
    n = 200
    out = tcp(sluice, topo, n, "--connect-times", "--timeout", "2")
    assert out["errors"] == {"ECONNREFUSED": n}, out
    times = sorted(out["connect_s"])
    median, p99 = times[n // 2], times[int(n * 0.99)]
    assert median < 0.0002 and p99 < 0.001, \
        f"refused connect() took median {median * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us " \
        f"(slowest {times[-5:]})"
    entry = service_entry(sluice)
    refused = {k: entry["refused"][k] - refused_before[k] for k in refused_before}
    assert refused == {k: (n if k == "max_connections" else 0) for k in refused}, refused
    assert entry["selected"] == selected_before, "a refused connect was counted as selected"

    first.release()
    second.release()
    live = E.wait_until(lambda: {i: b["live_connections"] for i, b in
                                 breakers(sluice, topo).items()},
                        lambda v: not any(v.values()), 3.0)
    assert live == {i: 0 for i in ids}, live
    out = tcp(sluice, topo, 8)
    assert out["backends"] == {i: 2 for i in ids}, "limits must free up with the connections"


# --- max_ejection_percent and panic -------------------------------------------------------

@pytest.mark.parametrize("pct,budget", [(0, 1), (25, 1), (50, 2)])
def test_max_ejection_percent(sluice, topo, listeners, pct, budget):
    """Two of four backends refuse; at most max(1, pct * 4 / 100) of them are ejected, and
    one failing beyond the budget stays CLOSED (and keeps being used)."""
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=60000,
                                   max_ejection_percent=pct,
                                   lb={"panic_threshold_percent": 0}))
    listeners.stop_one("be1")
    listeners.stop_one("be2")
    before = stats(sluice, topo)
    out = tcp(sluice, topo, 40)
    d = delta(stats(sluice, topo), before)
    brk = breakers(sluice, topo)
    # be1 reaches 2 failures first (connect 4), then be2 (connect 5).
    expect = {"be1": "open", "be2": "open" if budget == 2 else "closed",
              "be3": "closed", "be4": "closed"}
    assert state_of(brk) == expect, brk
    assert (d["be1"]["selected"], d["be1"]["connect_failed"], d["be1"]["ejections"]) == \
        (2, 2, 1), d["be1"]
    if budget == 2:
        assert (d["be2"]["selected"], d["be2"]["ejections"]) == (2, 1), d["be2"]
        assert out["errors"] == {"ECONNREFUSED": 4}, out
    else:
        # Over budget: be2 stays in the rotation (and in the fallback), failing every time.
        assert d["be2"]["selected"] >= 10 and d["be2"]["ejections"] == 0, d["be2"]
        assert d["be2"]["connect_failed"] == d["be2"]["selected"], d["be2"]
        assert brk["be2"]["consecutive_failures"] == d["be2"]["selected"], brk["be2"]
        assert out["errors"] == {"ECONNREFUSED": 2 + d["be2"]["selected"]}, out
    assert out["ok"] == d["be3"]["established"] + d["be4"]["established"], (out, d)
    assert all(d[i]["panic_selected"] == 0 for i in d), d
    assert service_entry(sluice)["panic_selected"] == 0


def test_panic_threshold(sluice, topo, listeners):
    """Once fewer than panic_threshold_percent of the backends are un-ejected, breakers
    are ignored (the open backends get their round-robin share again, counted as
    panic_selected); max_ejection_percent still bounds the ejections."""
    base = 800
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=base,
                                   max_ejection_ms=base, max_ejection_percent=50,
                                   lb={"panic_threshold_percent": 75}))
    ids = [b.identity for b in topo.backends]
    listeners.stop_one("be1")
    listeners.stop_one("be2")
    out = tcp(sluice, topo, 8)
    # 4th failure (connect 5) ejects be2 too: 2 of 4 left, 50% < 75%: panic from connect 6.
    assert out["sequence"] == ["!ECONNREFUSED", "!ECONNREFUSED", "be3", "be4"] * 2, out
    brk = breakers(sluice, topo)
    assert state_of(brk) == {"be1": "open", "be2": "open", "be3": "closed", "be4": "closed"}
    assert service_entry(sluice)["panic_selected"] == 2, "connects 6 and 7 were in panic"

    before, svc_before = stats(sluice, topo), service_entry(sluice)
    out = tcp(sluice, topo, 40)
    d = delta(stats(sluice, topo), before)
    assert out["errors"] == {"ECONNREFUSED": 20} and out["backends"] == {"be3": 10, "be4": 10}
    assert {i: d[i]["selected"] for i in ids} == {i: 10 for i in ids}, d
    assert {i: d[i]["panic_selected"] for i in ids} == {i: 10 for i in ids}, d
    assert service_entry(sluice)["panic_selected"] - svc_before["panic_selected"] == 40
    assert all(d[i]["skipped_breaker_open"] == 0 for i in ids), "panic ignores breakers"


def test_panic_ends_when_backends_recover(sluice, topo, listeners):
    """After panic, backends that listen again must close their breakers once their
    ejection time is over, and the service must leave panic."""
    base = 500
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=base,
                                   max_ejection_ms=base, max_ejection_percent=50,
                                   lb={"panic_threshold_percent": 75}))
    ids = [b.identity for b in topo.backends]
    listeners.stop_one("be1")
    listeners.stop_one("be2")
    tcp(sluice, topo, 8)
    assert service_entry(sluice)["panic_selected"] == 2, "not in panic: test setup broken"
    listeners.start_one("be1")
    listeners.start_one("be2")
    time.sleep(base / 1000 + 0.2)
    out = tcp(sluice, topo, 40)
    assert out["ok"] == 40, out
    panic_before = service_entry(sluice)["panic_selected"]
    out = tcp(sluice, topo, 40)
    assert out["backends"] == {i: 10 for i in ids}, out
    brk = breakers(sluice, topo)
    assert state_of(brk) == {i: "closed" for i in ids}, \
        f"recovered backends still not closed {2 * base} ms after their ejection: {brk}"
    assert service_entry(sluice)["panic_selected"] == panic_before, "still in panic"


# --- least_conn ---------------------------------------------------------------------------

def test_least_conn_avoids_loaded_backend(sluice, topo, listeners, holders):
    """be1 holds 20 long-lived connections; least_conn (two random choices) sends it a
    new connection only when both choices are be1 (1/16), far less than its 1/4 share.
    The others' connections are short (one at a time), so they tie at 0 or 1."""
    n = 600
    apply_fresh(sluice, cb_service(topo, topo.backends[:1], "least_conn"))
    h = holders(topo.client.ns, VIP, PORT, "--count", 20)
    assert h.out["backends"] == {"be1": 20}, h.out
    # The same backend keeps its id (and live count) when the others join.
    sluice.apply(doc(cb_service(topo, algorithm="least_conn")))
    brk = breakers(sluice, topo)
    assert {i: b["live_connections"] for i, b in brk.items()} == \
        {"be1": 20, "be2": 0, "be3": 0, "be4": 0}, brk
    out = tcp(sluice, topo, n)
    assert out["ok"] == n, out
    got = out["backends"]
    # Expected: be1 n/16 = 37.5 (sd 6), the others 187.5 each (sd 11); even would be 150.
    assert got.get("be1", 0) <= 70, f"be1 (20 live) got {got.get('be1', 0)} of {n} " \
        f"(expected ~{n // 16}): {got}"
    for i in ("be2", "be3", "be4"):
        assert got.get(i, 0) >= 140, f"{i} got {got.get(i, 0)} of {n} (expected ~187): {got}"
    h.release()


# --- affinity -----------------------------------------------------------------------------

def test_affinity_holds_expires_and_moves_when_open(sluice, topo, listeners):
    """affinity_timeout_s 1 with round_robin: each client (network namespace, or bound
    source address and port) keeps its first backend while it keeps using it, gets the
    next in the rotation after a second unused, and moves at once when its backend opens."""
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=60000,
                                   lb={"affinity_timeout_s": 1}))
    x1 = topo.extra[0]
    c0 = tcp(sluice, topo, 5, "--interval", "0.4")  # 1.6 s in all, refreshed at each use
    assert c0["backends"] == {"be1": 5}, c0
    out = tcp(sluice, topo, 5, ns=x1.ns)
    assert out["backends"] == {"be2": 5}, out
    bound = sluice.client(topo.client.ns, "tcp", VIP, PORT, "--bind", topo.client.v4,
                          "--bind-ports", "21301", "--count", 4)
    assert bound["backends"] == {"be3": 4}, f"a bound source is a client of its own: {bound}"
    out = tcp(sluice, topo, 3)
    assert out["backends"] == {"be1": 3}, out

    time.sleep(1.3)  # unused for longer than affinity_timeout_s
    out = tcp(sluice, topo, 4)
    assert out["backends"] == {"be4": 4}, f"after the timeout: a fresh pick (be4): {out}"

    # be4 stops listening: 2 refused connects open it, and the very next connect moves.
    listeners.stop_one("be4")
    out = tcp(sluice, topo, 6)
    assert out["sequence"] == ["!ECONNREFUSED"] * 2 + ["be1"] * 4, out
    assert breakers(sluice, topo)["be4"]["state"] == "open"
    listeners.start_one("be4")
    p = sluice.breaker_reset("cb", ep(topo.backend("be4")))
    assert p.returncode == 0, p.stderr
    out = tcp(sluice, topo, 4)
    assert out["backends"] == {"be1": 4}, f"affinity holds on the new backend: {out}"


# --- live counts --------------------------------------------------------------------------

def test_live_counts_after_sigkill_established(sluice, topo, listeners, holders):
    apply_fresh(sluice, cb_service(topo))
    ids = [b.identity for b in topo.backends]
    before = stats(sluice, topo)
    h = holders(topo.client.ns, VIP, PORT, "--count", 20)
    assert h.out["backends"] == {i: 5 for i in ids}, h.out
    live = {i: b["live_connections"] for i, b in breakers(sluice, topo).items()}
    assert live == {i: 5 for i in ids}, live
    h.kill()
    live = E.wait_until(lambda: {i: b["live_connections"] for i, b in
                                 breakers(sluice, topo).items()},
                        lambda v: not any(v.values()), 3.0)
    assert live == {i: 0 for i in ids}, f"live counts after SIGKILL: {live}"
    d = delta(stats(sluice, topo), before)
    assert {i: (d[i]["established"], d[i]["closed"], d[i]["connect_failed"]) for i in ids} == \
        {i: (5, 5, 0) for i in ids}, d


def test_live_counts_after_sigkill_mid_connect(sluice, topo, listeners, nft, holders):
    """Connects still in SYN_SENT when the client is SIGKILLed: each is one failure
    (the breaker opens) and gives its live count back."""
    apply_fresh(sluice, cb_service(topo, topo.backends[:1], consecutive_failures=5))
    nft("be1")
    h = holders(topo.client.ns, VIP, PORT, "--count", 6, "--pending")
    assert h.out["pending"] == 6, h.out
    b1 = breakers(sluice, topo)["be1"]
    assert (b1["live_connections"], b1["state"]) == (6, "closed"), b1
    h.kill()
    b1 = E.wait_until(lambda: breakers(sluice, topo)["be1"],
                      lambda b: b["live_connections"] == 0, 3.0)
    s1 = stats(sluice, topo)["be1"]
    assert b1["live_connections"] == 0, b1
    assert (s1["selected"], s1["connect_failed"], s1["established"]) == (6, 6, 0), s1
    assert (b1["state"], b1["consecutive_failures"], s1["ejections"]) == ("open", 6, 1), b1


@pytest.mark.parametrize("target", [VIP, VIP6, "::ffff:" + VIP],
                         ids=["ipv4", "ipv6", "v4-mapped"])
def test_breaker_and_live_counts_per_family(sluice, topo, listeners, holders, target):
    """The same accounting for IPv4, IPv6 and v4-mapped sockets: refused connects open
    the breaker, held connections count, and SIGKILL gives every count back."""
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=60000,
                                   family=6 if target == VIP6 else 4))
    listeners.stop_one("be2")
    h = holders(topo.client.ns, target, PORT, "--count", 12)
    assert h.out["sequence"][:8] == ["be1", "!ECONNREFUSED", "be3", "be4"] * 2, h.out
    assert h.out["errors"] == {"ECONNREFUSED": 2} and "be2" not in h.out["backends"], h.out
    brk = breakers(sluice, topo)
    assert state_of(brk) == {"be1": "closed", "be2": "open", "be3": "closed", "be4": "closed"}
    live = {i: b["live_connections"] for i, b in brk.items()}
    assert live == {**h.out["backends"], "be2": 0}, (live, h.out)
    h.kill()
    live = E.wait_until(lambda: {i: b["live_connections"] for i, b in
                                 breakers(sluice, topo).items()},
                        lambda v: not any(v.values()), 3.0)
    assert not any(live.values()), f"live counts after SIGKILL: {live}"


def test_live_count_of_removed_backend_does_not_leak(sluice, topo, listeners, holders):
    """Connections to a backend that the registry removes give their live count back
    to that backend's old id only: a backend added later must start at zero, stay at
    zero when they close, and have its max_connections enforced."""
    apply_fresh(sluice, cb_service(topo, max_connections=2))
    h = holders(topo.client.ns, VIP, PORT, "--count", 8)
    assert h.out["backends"] == {b.identity: 2 for b in topo.backends}, h.out
    old_id = breakers(sluice, topo)["be4"]["id"]
    # be4 leaves, then comes back as a new backend.
    sluice.apply(doc(cb_service(topo, topo.backends[:3], max_connections=2)))
    sluice.apply(doc(cb_service(topo, max_connections=2)))
    b4 = breakers(sluice, topo)["be4"]
    assert b4["live_connections"] == 0, b4
    h.release()
    b4 = E.wait_until(lambda: breakers(sluice, topo)["be4"],
                      lambda b: sluice.live_raw(b["id"]) != 0, 0.5)
    raw, closed = sluice.live_raw(b4["id"]), stats(sluice, topo)["be4"]["closed"]
    assert (raw, closed) == (0, 0), \
        (f"the new be4 (id {b4['id']}; the removed one had id {old_id}) has sl_live {raw} "
         f"and closed {closed} after the connections to the removed be4 closed")
    h2 = holders(topo.client.ns, VIP, PORT, "--count", 12)
    assert h2.out["backends"] == {b.identity: 2 for b in topo.backends}, \
        f"max_connections 2: {h2.out}"
    assert h2.out["errors"] == {"ECONNREFUSED": 4}, h2.out
    h2.release()


def test_refusal_reasons_when_nothing_is_usable(sluice, topo, listeners, holders):
    """Nothing usable: connect() fails at once with ECONNREFUSED, counted as none_usable
    when the reasons differ (one at its limit, one open), breaker_open when all are open."""
    apply_fresh(sluice, cb_service(topo, topo.backends[:2], max_connections=1,
                                   consecutive_failures=1, base_ejection_ms=60000,
                                   max_ejection_ms=60000, max_ejection_percent=100,
                                   lb={"panic_threshold_percent": 0}))
    listeners.stop_one("be2")
    h = holders(topo.client.ns, VIP, PORT, "--count", 1)
    assert h.out["backends"] == {"be1": 1}, h.out
    out = tcp(sluice, topo, 1)
    assert out["sequence"] == ["!ECONNREFUSED"], out
    brk = breakers(sluice, topo)
    assert (brk["be1"]["live_connections"], brk["be2"]["state"]) == (1, "open"), brk

    def refused_now(n):
        before = service_entry(sluice)["refused"]
        out = tcp(sluice, topo, n, "--connect-times")
        after = service_entry(sluice)["refused"]
        assert out["errors"] == {"ECONNREFUSED": n}, out
        t = sorted(out["connect_s"])
        assert t[n // 2] < 0.0002, f"refusal took {t[n // 2] * 1e6:.0f} us (median): {t}"
        return {k: after[k] - before[k] for k in after if after[k] != before[k]}

    assert refused_now(10) == {"none_usable": 10}
    h.release()
    listeners.stop_one("be1")
    out = tcp(sluice, topo, 1)  # be1 is the only usable backend: refused by the kernel
    assert out["sequence"] == ["!ECONNREFUSED"], out
    assert state_of(breakers(sluice, topo)) == {"be1": "open", "be2": "open"}
    assert refused_now(10) == {"breaker_open": 10}


# --- breakers reset and the CLI contract --------------------------------------------------

def test_breakers_reset_closes_open_breaker(sluice, topo, listeners):
    apply_fresh(sluice, cb_service(topo, consecutive_failures=2, base_ejection_ms=60000,
                                   max_ejection_ms=60000))
    ids = [b.identity for b in topo.backends]
    listeners.stop_one("be1")
    out = tcp(sluice, topo, 8)
    assert out["errors"] == {"ECONNREFUSED": 2}, out
    b1 = breakers(sluice, topo)["be1"]
    assert b1["state"] == "open" and b1["open_remaining_ms"] > 50000, b1
    listeners.start_one("be1")
    out = tcp(sluice, topo, 8)
    assert "be1" not in out["backends"], "open for a minute: no connect may reach be1"

    p = sluice.breaker_reset("cb", ep(topo.backend("be1")))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert set(res) == RESET_KEYS, res
    assert (res["service"], res["backend"], res["previous_state"], res["state"]) == \
        ("cb", ep(topo.backend("be1")), "open", "closed"), res
    b1 = breakers(sluice, topo)["be1"]
    assert (b1["state"], b1["consecutive_failures"], b1["open_remaining_ms"],
            b1["half_open_inflight"]) == ("closed", 0, 0, 0), b1
    out = tcp(sluice, topo, 40)
    assert out["backends"] == {i: 10 for i in ids}, f"be1 at once back in rotation: {out}"

    # Human output, and the errors.
    p = sluice.ctl("breakers", "reset", "cb", ep(topo.backend("be1")))
    assert p.returncode == 0 and "closed" in p.stdout, (p.returncode, p.stdout, p.stderr)
    p = sluice.ctl("breakers", "reset", "cb", f"10.200.0.99:{BE_PORT}")
    assert p.returncode == 1 and p.stderr.startswith("sluicectl:"), (p.returncode, p.stderr)
    p = sluice.ctl("-j", "breakers", "reset", "no-such-service", ep(topo.backend("be1")))
    assert p.returncode == 1 and set(json.loads(p.stdout)) == {"error"}, p.stdout
    p = sluice.ctl("breakers", "reset", "cb")
    assert p.returncode == 2, (p.returncode, p.stderr)
    p = sluice.ctl("-j", "breakers", "no-such-service")
    assert p.returncode == 1 and set(json.loads(p.stdout)) == {"error"}, p.stdout


def test_breakers_json_contract(sluice, topo, listeners):
    other = svc("other", "10.96.3.11", PORT, [be(topo.backends[0].v4, BE_PORT)], "random")
    apply_fresh(sluice, cb_service(topo), other)
    every = sluice.breakers()
    assert isinstance(every, list) and len(every) == 5, every
    for b in every:
        assert set(b) == BREAKER_KEYS, b
        assert b["state"] in ("closed", "open", "half_open"), b
        for k in BREAKER_KEYS - {"service", "backend", "state"}:
            assert isinstance(b[k], int), (k, b)
    assert sorted((b["service"], b["backend"]) for b in every) == sorted(
        [("cb", ep(h)) for h in topo.backends] + [("other", ep(topo.backends[0]))])
    assert {b["id"] for b in every} == {b["id"] for b in sluice.backends()}
    assert [b["service"] for b in sluice.breakers("other")] == ["other"]
    human = sluice.ctl("breakers")
    assert human.returncode == 0 and len(human.stdout.splitlines()) == 6, human.stdout
