# SPDX-License-Identifier: MIT
"""The agent, sluiced, end to end (issue 4): registry file edits reaching new
connections, bad documents, SIGKILL and restart under load, health checks,
/metrics, the HTTP API, SIGTERM and --cleanup-on-exit, directory sources, --help.

Every test gets a fresh cgroup and pin root with nothing loaded
(`unloaded_sluice`): the agent loads the datapath itself, like `sluicectl load`,
so counters and ids start from zero. The agent runs in the last extra client
namespace, outside every sluice cgroup: its health checks reach the backends
from there and its API listens on that namespace's loopback (the test talks to
it through a socket made in the namespace). Clients run in the client namespace
inside the test's cgroup. The backends are this module's own backend_server.py
processes on port 9191, whose HTTP status a test can switch (500 for a failing
health check) and whose listener it can stop. Every agent is killed by PID at
the end of its test.

Times: a change is "visible" at the start of the first connect() that shows it,
from a `client.py loop` running through the VIP while the file is written; the
loop's timestamps and the test's are the same clock (CLOCK_MONOTONIC)."""
import fcntl
import itertools
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import sluice_e2e as E
from sluice_e2e import BACKEND_KEYS, SERVICE_KEYS, be, doc, svc

BE_PORT = 9191
PORT = 80
VIP = "10.96.4.10"
VIP2 = "10.96.4.11"
TOKEN = "e2e-token-0123456789"
VISIBLE_WITHIN = 0.100  # seconds, issue 4

BREAKER_KEYS = {"service", "backend", "id", "state", "consecutive_failures", "times_ejected",
                "open_remaining_ms", "half_open_inflight", "live_connections"}
HEALTH_KEYS = {"service", "backend", "id", "type", "state", "consecutive_ok", "consecutive_fail",
               "last_check_unix_ms", "last_error"}

_ports = itertools.count(18100)


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers9191(topo, tmp_path_factory):
    """backend_server.py on port 9191 (HTTP status switchable) in every backend namespace."""
    workdir = str(tmp_path_factory.mktemp("agent-backends"))
    with E.servers_running(topo, workdir, "port 9191 servers", tcp_port=BE_PORT, udp_port=0,
                           status_files=True) as s:
        yield s


@pytest.fixture
def backends(servers9191, topo):
    """The port 9191 servers; after the test, every one listens and answers 200 again."""
    yield servers9191
    for b in topo.backends:
        servers9191.set_status(b.identity, 200)
        if b.identity not in servers9191.running():
            servers9191.procs.pop(b.identity, None)
            servers9191.start_one(b.identity)


class Run:
    """One test's agents, sharing a fresh cgroup and pin root and a registry path."""

    def __init__(self, sluice, topo, tmp_path):
        self.sluice = sluice
        self.topo = topo
        self.dir = os.path.join(str(tmp_path), "agent")
        os.makedirs(self.dir, exist_ok=True)
        self.registry = os.path.join(self.dir, "registry.json")
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.agents = []

    def agent(self, *extra, registry=None, ready=True, env=None, token_file=True):
        """Starts sluiced on this run's pin root and cgroup (environment without any
        SLUICE_* variable but env); waits until it serves."""
        port = next(_ports)
        args = ["--registry", f"file:{registry or self.registry}",
                "--pin-root", self.sluice.pin_root, "--cgroup", self.sluice.cgroup,
                "--listen", f"127.0.0.1:{port}", *extra]
        if token_file:
            args += ["--api-token-file", self.token_file]
        base = {k: v for k, v in E.CLEAN_ENV.items() if not k.startswith("SLUICE_")}
        log = os.path.join(self.dir, f"sluiced-{len(self.agents)}.log")
        a = E.Agent(self.topo.extra[-1].ns, port, args, log, env={**base, **(env or {})})
        self.agents.append(a)
        a.start()
        return a.wait_ready() if ready else a

    def write(self, document, how="rename", path=None):
        """Writes the registry (a dict, or text verbatim); returns the monotonic time
        just before the new content can be seen (the rename, or the open)."""
        return write_file(path or self.registry, document, how)

    def client(self, vip, count, *extra):
        return self.sluice.client(self.topo.client.ns, "tcp", vip, PORT, "--count", count,
                                  "--sequence", *extra)


@pytest.fixture
def run(unloaded_sluice, topo, tmp_path, backends):
    r = Run(unloaded_sluice(), topo, tmp_path)
    yield r
    for a in r.agents:
        E.JANITOR.run(a.token)  # SIGKILL by PID if still running


# --- helpers ------------------------------------------------------------------------------

def text_of(document):
    return document if isinstance(document, str) else json.dumps(document, indent=1)


def write_file(path, document, how="rename"):
    data = text_of(document)
    if how == "rename":
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        with open(tmp, "w") as f:
            f.write(data)
        t = time.monotonic()
        os.rename(tmp, path)
        return t
    t = time.monotonic()
    with open(path, "w") as f:
        f.write(data)
    return t


def service(topo, hosts=None, weights=None, name="web", vip=VIP, algorithm="round_robin",
            **extra):
    hosts = topo.backends if hosts is None else hosts
    weights = weights or [1] * len(hosts)
    return svc(name, vip, PORT, [be(h.v4, BE_PORT, w) for h, w in zip(hosts, weights)],
               algorithm, **extra)


def ids(topo, hosts=None):
    return [b.identity for b in (topo.backends if hosts is None else hosts)]


def by_identity(run, service_name):
    return {run.topo.identity_of(b["address"]): b for b in run.sluice.backends(service_name)}


def map_view(sluice, health=False):
    """What the maps hold apart from counters: services and backends with their ids
    (and the backends' health)."""
    svcs = sorted((s["name"], s["id"], s["vip"], s["port"], s["algorithm"], s["backend_count"])
                  for s in sluice.services())
    bes = sorted((b["service"], b["id"], b["address"], b["port"], b["weight"],
                  b["health"] if health else None) for b in sluice.backends())
    return svcs, bes


def errors_total(agent):
    return E.metric(agent.metrics(), "sluice_registry_errors_total")


# --- edits reach new connections in under 100 ms ------------------------------------------

def watch_change(run, vip, change, before=0.15, after=0.35):
    """Connections through vip in a loop; change() is called once they run; returns
    (events, time the change was written)."""
    lp = run.sluice.loop(run.topo.client.ns, vip, PORT, "--timeout", "1")
    time.sleep(before)
    t_write = change()
    time.sleep(after)
    out = lp.stop()
    assert out["events"], out
    return out["events"], t_write


def split(events, t):
    return [e for e in events if e[0] < t], [e for e in events if e[0] >= t]


def latency_report(what, latency, events, t_write):
    _, after = split(events, t_write)
    return (f"{what}: visible after {latency * 1e3:.1f} ms (limit {VISIBLE_WITHIN * 1e3:.0f} ms); "
            f"{len(after)} connects after the write, first ones: {after[:12]}")


@pytest.mark.parametrize("how", ["rename", "in_place"])
def test_registry_edits_visible_within_100ms(run, topo, how):
    """add a backend, remove one, change weights, add a service: each is visible to new
    connections through the VIP within 100 ms of the write (atomic rename / in place)."""
    b1, b2, b3, b4 = topo.backends
    run.write(doc(service(topo, [b1, b2, b3], algorithm="weighted")))
    agent = run.agent()
    out = run.client(VIP, 30)
    assert out["backends"] == {"be1": 10, "be2": 10, "be3": 10}, out
    latencies, reports = {}, {}

    def record(what, latency, events, t_write):
        latencies[what] = latency
        reports[what] = latency_report(what, latency, events, t_write)

    # Add be4: visible at the first connect that reaches it.
    events, t = watch_change(run, VIP, lambda: run.write(
        doc(service(topo, [b1, b2, b3, b4], algorithm="weighted")), how))
    old, new = split(events, t)
    assert old and all(r in ("be1", "be2", "be3") for _, r in old), old[-10:]
    seen = next((ts for ts, r in new if r == "be4"), None)
    assert seen is not None, f"be4 never reached after the write: {new[:20]} ... {new[-5:]}"
    record("add backend", seen - t, events, t)
    assert not [r for _, r in new if r.startswith("!")], new
    assert {r for _, r in new[-40:]} == {"be1", "be2", "be3", "be4"}, new[-40:]

    # Remove be1: visible from the connect after the last one that reached it.
    events, t = watch_change(run, VIP, lambda: run.write(
        doc(service(topo, [b2, b3, b4], algorithm="weighted")), how))
    old, new = split(events, t)
    assert "be1" in {r for _, r in old[-8:]}, old[-8:]
    last = max((i for i, (_, r) in enumerate(new) if r == "be1"), default=-1)
    assert last + 1 < len(new) and new[-1][0] - new[last + 1][0] > 0.2, \
        f"be1 still reached at the end: {new[-10:]}"
    record("remove backend", new[last + 1][0] - t, events, t)
    assert not [r for _, r in new if r.startswith("!")], new

    # Weights 1,1,1 -> 1,1,8: be4 twice in a row cannot happen in the old rotation.
    events, t = watch_change(run, VIP, lambda: run.write(
        doc(service(topo, [b2, b3, b4], [1, 1, 8], algorithm="weighted")), how))
    old, new = split(events, t)
    rs = [r for _, r in old]
    assert all(x != y for x, y in zip(rs, rs[1:])), f"old rotation has repeats: {rs[-20:]}"
    seen = next((new[i][0] for i in range(1, len(new))
                 if new[i][1] == new[i - 1][1] == "be4"), None)
    assert seen is not None, f"weights never changed: {new[:20]}"
    record("change weights", seen - t, events, t)
    tail = [r for _, r in new[-50:]]
    assert (tail.count("be4"), tail.count("be2"), tail.count("be3")) == (40, 5, 5), tail

    # A new service: its VIP is unreachable (no route) until the maps have it.
    events, t = watch_change(run, VIP2, lambda: run.write(doc(
        service(topo, [b2, b3, b4], [1, 1, 8], algorithm="weighted"),
        service(topo, [b1], name="api", vip=VIP2)), how))
    old, new = split(events, t)
    assert old and all(r.startswith("!") for _, r in old), old[-5:]
    seen = next((ts for ts, r in new if r == "be1"), None)
    assert seen is not None, f"the new service never answered: {new[:10]} ... {new[-5:]}"
    record("add service", seen - t, events, t)
    assert all(r == "be1" for ts, r in new if ts > seen), new

    print(f"\nsluiced edit-to-connection latency ({how}): " +
          ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in latencies.items()))
    slow = [reports[k] for k, v in latencies.items() if v >= VISIBLE_WITHIN]
    assert not slow, "\n".join(slow)
    assert agent.running()
    assert errors_total(agent) == 0


# --- bad documents keep the last good state ------------------------------------------------

def assert_degraded(agent, before_errors, *needles):
    """The agent counted one more error, says degraded on /readyz and in /metrics, and
    logged an error naming every needle (file, service, field)."""
    n = E.wait_until(lambda: errors_total(agent), lambda v: v >= before_errors + 1, 2.0)
    assert n == before_errors + 1, f"sluice_registry_errors_total {n}, was {before_errors}"
    r = agent.request("GET", "/readyz")
    ready = r.json()
    assert r.status == 503 and ready["ready"] is False and ready["registry"] == "degraded", r
    for needle in needles:
        assert needle in ready["last_error"], (needle, ready)
    m = agent.metrics()
    assert E.metric(m, "sluice_registry_degraded") == 1
    # key=value logs escape the quotes inside msg="..."
    lines = [ln for ln in agent.log().replace('\\"', '"').splitlines()
             if "level=error" in ln and all(x in ln for x in needles)]
    assert lines, f"no error logged naming {needles}:\n{agent.log()[-2000:]}"
    return n


def test_bad_documents_keep_last_good_state(run, topo):
    """Malformed JSON, an invalid address, a file truncated mid-write: each is rejected
    whole, logged and counted, /readyz says degraded, traffic stays on the last good
    state; a good file then applies and the agent is ready again."""
    good = doc(service(topo, topo.backends[:3]))
    run.write(good)
    agent = run.agent()
    assert agent.get_json("/readyz")["registry"] == "ok"
    view = map_view(run.sluice)
    with_be4 = doc(service(topo))
    bad_addr = doc(service(topo))
    bad_addr["services"][0]["backends"][3]["address"] = "10.200.0.300"
    full = text_of(with_be4)
    cases = [
        ("malformed", "{ services: [", (run.registry, "invalid JSON")),
        ("invalid address", bad_addr,
         (run.registry, 'service "web"', "backends[3].address", "10.200.0.300")),
        ("truncated", full[:len(full) // 2], (run.registry, "invalid JSON")),
    ]
    errors = errors_total(agent)
    for i, (what, document, needles) in enumerate(cases):
        run.write(document, "in_place" if i % 2 == 0 else "rename")
        errors = assert_degraded(agent, errors, *needles)
        out = run.client(VIP, 30)
        assert out["backends"] == {"be1": 10, "be2": 10, "be3": 10}, (what, out)
        assert map_view(run.sluice) == view, f"{what}: the maps changed"

    # A writer still in the middle of its write: the agent waits for the close.
    with open(run.registry, "w") as f:
        f.write(full[:len(full) // 2])
        f.flush()
        time.sleep(0.1)
        assert errors_total(agent) == errors, "a file still being written was read"
        f.write(full[len(full) // 2:])
    r = E.wait_until(lambda: agent.request("GET", "/readyz"), lambda r: r.status == 200, 2.0)
    assert r.status == 200 and r.json()["ready"] is True and r.json()["registry"] == "ok", r
    assert r.json()["last_error"] == "", r
    assert errors_total(agent) == errors
    assert E.metric(agent.metrics(), "sluice_registry_degraded") == 0
    out = run.client(VIP, 40)
    assert out["backends"] == {i: 10 for i in ids(topo)}, out


def test_apply_waits_for_the_pin_root_lock(run, topo):
    """The agent applies under the pin root's lock, as sluicectl apply and load take it (a
    load rewrites sl_vip_filter from sl_services, which must not interleave with an apply):
    an edit made while someone holds the lock is applied once it is released."""
    run.write(doc(service(topo, topo.backends[:3])))
    agent = run.agent()
    assert run.client(VIP, 30)["backends"] == {"be1": 10, "be2": 10, "be3": 10}
    fd = os.open(run.sluice.pin_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run.write(doc(service(topo)))
        time.sleep(0.5)
        out = run.client(VIP, 30)
        assert out["backends"] == {"be1": 10, "be2": 10, "be3": 10}, \
            f"applied while the pin root was locked: {out}"
    finally:
        os.close(fd)  # releases the lock
    out = E.wait_until(lambda: run.client(VIP, 40), lambda o: len(o["backends"]) == 4, 3.0)
    assert out["backends"] == {i: 10 for i in ids(topo)}, out
    assert agent.get_json("/readyz")["registry"] == "ok"


# --- SIGKILL under load, restart: no failed connection, maps unchanged ----------------------

def test_kill9_and_restart_under_load(run, topo, backends):
    """Connections in a loop through a VIP while the agent is SIGKILLed, stays away and
    starts again: none fails (be4, down by its health check, must stay down: the breaker
    would not save it), and the maps (ids, addresses, weights, health, live counts of
    held connections) are what they were."""
    hc = {"type": "tcp", "interval_ms": 100, "unhealthy_threshold": 2}
    backends.stop_one("be4")
    run.write(doc(service(topo, weights=[1, 2, 3, 4], algorithm="weighted", health_check=hc,
                          circuit_breaker={"consecutive_failures": 100}),
                  service(topo, topo.backends[:2], name="api", vip=VIP2, algorithm="maglev")))
    agent = run.agent()
    health = E.wait_until(lambda: {i: b["health"] for i, b in by_identity(run, "web").items()},
                          lambda h: h == {"be1": "up", "be2": "up", "be3": "up", "be4": "down"},
                          3.0)
    assert health == {"be1": "up", "be2": "up", "be3": "up", "be4": "down"}, health
    held = run.sluice.hold(topo.client.ns, VIP, PORT, "--count", 6)
    assert held.out["ok"] == 6, held.out
    before = map_view(run.sluice, health=True)
    gen_before = run.sluice.status()["generation"]["generation"]
    live_before = {b["backend"]: b["live_connections"] for b in run.sluice.breakers()}

    lp = run.sluice.loop(topo.client.ns, VIP, PORT, "--interval", "0.002", "--timeout", "2")
    time.sleep(0.4)
    agent.kill9()
    t_killed = time.monotonic()
    time.sleep(0.6)
    assert map_view(run.sluice, health=True) == before, "the maps changed while no agent ran"
    agent2 = run.agent()
    t_ready = time.monotonic()
    time.sleep(0.5)
    out = lp.stop()

    assert out["errors"] == {}, f"failed connections across kill -9 and restart: {out['errors']}"
    assert out["ok"] > 200 and set(out["backends"]) == {"be1", "be2", "be3"}, out["backends"]
    during = [r for ts, r in out["events"] if t_killed <= ts < t_ready]
    after = [r for ts, r in out["events"] if ts >= t_ready]
    assert len(during) > 50 and len(after) > 50, (len(during), len(after))
    assert map_view(run.sluice, health=True) == before, "the restart changed the maps"
    assert {b["backend"]: b["live_connections"] for b in run.sluice.breakers()} == live_before
    log = agent2.log()
    assert "adopted" in log, log
    assert "changes=0" in log, f"the restarted agent changed the maps:\n{log}"
    gen_after = run.sluice.status()["generation"]["generation"]
    assert gen_after >= gen_before
    held.release()


# --- health checks ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_health_check_marks_down_and_up(run, topo, backends, kind):
    """http: be2 answers 500; tcp: be2 stops listening. It is marked down after
    unhealthy_threshold checks and gets no new connections; once healthy again it is
    marked up after healthy_threshold checks and back in the rotation."""
    interval, up_n, down_n = 0.1, 2, 3
    hc = {"type": kind, "interval_ms": int(interval * 1000), "timeout_ms": 80,
          "healthy_threshold": up_n, "unhealthy_threshold": down_n}
    if kind == "http":
        hc["path"] = "/health"
    run.write(doc(service(topo, health_check=hc,
                          circuit_breaker={"consecutive_failures": 100})))
    agent = run.agent()

    def health():
        return {i: b["health"] for i, b in by_identity(run, "web").items()}

    h = E.wait_until(health, lambda h: set(h.values()) == {"up"}, 3.0)
    assert set(h.values()) == {"up"}, h

    t0 = time.monotonic()
    if kind == "http":
        backends.set_status("be2", 500)
    else:
        backends.stop_one("be2")
    h = E.wait_until(health, lambda h: h["be2"] == "down", 3.0)
    took_down = time.monotonic() - t0
    assert h == {"be1": "up", "be2": "down", "be3": "up", "be4": "up"}, h
    assert took_down >= (down_n - 1) * interval - 0.03, \
        f"marked down {took_down:.3f} s after the first failure: before {down_n} checks"
    status = {run.topo.identity_of(t["backend"].rsplit(":", 1)[0]): t
              for t in agent.get_json("/v1/health/status")}
    assert set(status) == set(ids(topo)), status
    assert all(set(t) == HEALTH_KEYS for t in status.values()), status
    t2 = status["be2"]
    assert (t2["type"], t2["state"]) == (kind, "down") and t2["consecutive_fail"] >= down_n, t2
    assert t2["last_error"], t2
    m = agent.metrics()
    assert E.metric(m, "sluice_backend_health", service="web",
                    backend=f"{topo.backend('be2').v4}:{BE_PORT}") == 2
    assert E.metric(m, "sluice_service_unhealthy_backends", service="web") == 1

    skipped = by_identity(run, "web")["be2"]["skipped"]["unhealthy"]
    out = run.client(VIP, 40)
    assert out["ok"] == 40 and "be2" not in out["backends"], out
    assert by_identity(run, "web")["be2"]["skipped"]["unhealthy"] > skipped

    t0 = time.monotonic()
    if kind == "http":
        backends.set_status("be2", 200)
    else:
        backends.start_one("be2")
    h = E.wait_until(health, lambda h: h["be2"] == "up", 3.0)
    took_up = time.monotonic() - t0
    assert set(h.values()) == {"up"}, h
    assert took_up >= (up_n - 1) * interval - 0.03, \
        f"marked up {took_up:.3f} s after recovering: before {up_n} checks"
    out = run.client(VIP, 40)
    assert out["backends"] == {i: 10 for i in ids(topo)}, out
    print(f"\nhealth {kind}: down after {took_down * 1e3:.0f} ms, up after {took_up * 1e3:.0f} ms "
          f"(interval {interval * 1e3:.0f} ms, thresholds {down_n}/{up_n})")


# --- /metrics -------------------------------------------------------------------------------

def test_metrics_promtool_and_counts(run, topo, backends):
    """promtool accepts /metrics, and the per-backend counters are exactly what the
    test did on a fresh service (be4 refuses: its connects count as failures)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(promtool, os.X_OK):
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    run.write(doc(service(topo, circuit_breaker={"consecutive_failures": 100}),
                  service(topo, topo.backends[:1], name="idle", vip=VIP2)))
    agent = run.agent()
    backends.stop_one("be4")
    out = run.client(VIP, 40)
    assert out["backends"] == {"be1": 10, "be2": 10, "be3": 10}, out
    assert out["errors"] == {"ECONNREFUSED": 10}, out

    def counts():
        m = agent.metrics()
        res = {}
        for b in topo.backends:
            lab = {"service": "web", "backend": f"{b.v4}:{BE_PORT}"}
            res[b.identity] = tuple(E.metric(m, f"sluice_backend_{n}", **lab) for n in (
                "connections_selected_total", "connections_established_total",
                "connect_failures_total", "connections_closed_total", "live_connections"))
        return m, res

    want = {"be1": (10, 10, 0, 10, 0), "be2": (10, 10, 0, 10, 0), "be3": (10, 10, 0, 10, 0),
            "be4": (10, 0, 10, 0, 0)}
    m, got = E.wait_until(counts, lambda v: v[1] == want, 2.0)
    assert got == want, f"(selected, established, failed, closed, live) per backend: {got}"
    assert E.metric(m, "sluice_service_connections_selected_total", service="web") == 40
    assert E.metric(m, "sluice_service_connections_selected_total", service="idle") == 0
    assert E.metric(m, "sluice_backend_connections_selected_total", service="idle",
                    backend=f"{topo.backends[0].v4}:{BE_PORT}") == 0
    assert E.metric(m, "sluice_service_backends", service="web") == 4
    assert E.metric(m, "sluice_registry_generation") == \
        run.sluice.status()["generation"]["generation"]
    assert E.metric(m, "sluice_registry_errors_total") == 0
    assert m.get(("sluice_reconcile_duration_seconds_count", ())) >= 1

    text = agent.metrics_text()
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        f"promtool check metrics ({p.returncode}): {p.stdout}{p.stderr}"
    families = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    helped = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# HELP ")}
    assert families == helped and all(f.startswith("sluice_") for f in families), families


# --- the API --------------------------------------------------------------------------------

def test_api(run, topo, backends):
    """Every endpoint; mutating calls refused without the token; 400 on bad JSON; a breaker
    opened by refused connects closed through the API."""
    hc = {"type": "tcp", "interval_ms": 200}
    run.write(doc(service(topo, circuit_breaker={"consecutive_failures": 2,
                                                 "base_ejection_ms": 60000,
                                                 "max_ejection_ms": 60000}),
                  service(topo, topo.backends[:2], name="api", vip=VIP2, health_check=hc)))
    agent = run.agent()

    r = agent.request("GET", "/healthz")
    assert r.status == 200 and r.content_type.startswith("application/json"), r
    r = agent.request("GET", "/readyz")
    assert r.status == 200, r
    ready = r.json()
    assert (ready["ready"], ready["registry"], ready["last_error"]) == (True, "ok", ""), ready

    svcs = agent.get_json("/v1/services")
    assert sorted(s["name"] for s in svcs) == ["api", "web"], svcs
    ctl = {s["name"]: s for s in run.sluice.services()}
    for s in svcs:
        assert SERVICE_KEYS | {"backends"} <= set(s), s
        assert all(set(b) == BACKEND_KEYS for b in s["backends"]), s["backends"]
        assert {k: v for k, v in s.items() if k != "backends"} == ctl[s["name"]]
        assert s["backends"] == run.sluice.backends(s["name"])
    one = agent.get_json("/v1/services/web")
    assert one["name"] == "web" and len(one["backends"]) == 4, one
    r = agent.request("GET", "/v1/services/nope")
    assert r.status == 404 and set(r.json()) == {"error"}, r

    targets = E.wait_until(lambda: agent.get_json("/v1/health/status"),
                           lambda t: len(t) == 2 and all(x["state"] == "up" for x in t), 2.0)
    assert sorted(t["backend"] for t in targets) == \
        sorted(f"{b.v4}:{BE_PORT}" for b in topo.backends[:2]), targets
    assert all(set(t) == HEALTH_KEYS and t["service"] == "api" and t["type"] == "tcp"
               for t in targets), targets

    # Open be1's breaker: it refuses twice in a row.
    be1 = f"{topo.backend('be1').v4}:{BE_PORT}"
    backends.stop_one("be1")
    out = run.client(VIP, 8)
    assert out["errors"] == {"ECONNREFUSED": 2}, out
    backends.start_one("be1")
    brk = agent.get_json("/v1/circuit-breakers")
    assert all(set(b) == BREAKER_KEYS for b in brk), brk
    assert sorted((b["service"], b["backend"], b["id"], b["state"]) for b in brk) == \
        sorted((b["service"], b["backend"], b["id"], b["state"]) for b in run.sluice.breakers())
    assert [b["state"] for b in brk if b["backend"] == be1 and b["service"] == "web"] == ["open"]

    reset = f"/v1/circuit-breakers/web/{be1}/reset"
    for tok in (None, "wrong-token", TOKEN + "x", TOKEN[:-1]):
        r = agent.request("POST", reset, token=tok)
        assert r.status == 401 and set(r.json()) == {"error"}, (tok, r)
    r = agent.request("POST", reset, headers={"Authorization": TOKEN})  # no "Bearer "
    assert r.status == 401, r
    assert [b["state"] for b in run.sluice.breakers("web") if b["backend"] == be1] == \
        ["open"], "reset without the token"
    r = agent.request("POST", "/v1/circuit-breakers/nope/1.2.3.4:80/reset", token=TOKEN)
    assert r.status == 404 and set(r.json()) == {"error"}, r
    r = agent.request("POST", f"/v1/circuit-breakers/web/10.200.0.99:{BE_PORT}/reset",
                      token=TOKEN)
    assert r.status == 404 and set(r.json()) == {"error"}, r
    r = agent.request("POST", reset, token=TOKEN)
    assert r.status == 200, r
    assert r.json() == {"service": "web", "backend": be1, "previous_state": "open",
                        "state": "closed"}, r
    b1 = [b for b in run.sluice.breakers("web") if b["backend"] == be1][0]
    assert (b1["state"], b1["consecutive_failures"], b1["open_remaining_ms"]) == \
        ("closed", 0, 0), b1
    out = run.client(VIP, 40)
    assert out["backends"] == {i: 10 for i in ids(topo)}, out

    # Registration: authenticated first, then the body, then the read-only file source.
    reg = {"service": "web", "address": "10.200.0.14", "port": BE_PORT}
    r = agent.request("POST", "/v1/services/register", body=reg)
    assert r.status == 401 and set(r.json()) == {"error"}, r
    r = agent.request("POST", "/v1/services/register", body="{not json", token=TOKEN)
    assert r.status == 400 and set(r.json()) == {"error"}, r
    r = agent.request("POST", "/v1/services/register", body=reg, token=TOKEN)
    assert r.status == 409 and set(r.json()) == {"error"}, r
    r = agent.request("DELETE", f"/v1/services/web/{be1}")
    assert r.status == 401 and set(r.json()) == {"error"}, r
    r = agent.request("DELETE", f"/v1/services/web/{be1}", token=TOKEN)
    assert r.status == 409 and set(r.json()) == {"error"}, r
    assert len(run.sluice.backends("web")) == 4

    for path in ("/", "/nope", "/v1", "/v1/nope", "/v1/health", "/metrics/x"):
        r = agent.request("GET", path)
        assert r.status == 404 and set(r.json()) == {"error"}, (path, r)
    for method, path in [("POST", "/v1/services"), ("PUT", "/v1/services/web"),
                         ("GET", f"/v1/circuit-breakers/web/{be1}/reset")]:
        r = agent.request(method, path, token=TOKEN)
        assert r.status == 405 and set(r.json()) == {"error"}, (method, path, r)


def test_api_wrong_method_on_known_path_is_405(run, topo):
    run.write(doc(service(topo)))
    agent = run.agent()
    got = {}
    for method, path in [("POST", "/metrics"), ("DELETE", "/healthz"), ("POST", "/readyz"),
                         ("POST", "/v1/health/status"), ("DELETE", "/v1/circuit-breakers")]:
        r = agent.request(method, path, token=TOKEN)
        assert set(r.json()) == {"error"}, (method, path, r)
        got[f"{method} {path}"] = r.status
    assert got == {k: 405 for k in got}, got


def test_api_token_from_environment_and_config_file(run, topo):
    """SLUICE_API_TOKEN works without --api-token-file; with no token configured at all,
    every mutating call is refused. A --config file sets the log format and level."""
    run.write(doc(service(topo)))
    be1 = f"{topo.backend('be1').v4}:{BE_PORT}"
    reset = f"/v1/circuit-breakers/web/{be1}/reset"
    a = run.agent(token_file=False, env={"SLUICE_API_TOKEN": "from-env"})
    assert a.request("POST", reset, token=TOKEN).status == 401
    r = a.request("POST", reset, token="from-env")
    assert r.status == 200 and r.json()["previous_state"] == "closed", r
    a.signal(signal.SIGTERM)
    assert a.wait() == 0, a.log()

    # No token anywhere; and settings from a config file: JSON logs at debug level.
    cfg = os.path.join(run.dir, "sluiced.json")
    with open(cfg, "w") as f:
        json.dump({"log_format": "json", "log_level": "debug"}, f)
    write_file(run.registry, doc(service(topo, topo.backends[:3])))
    b = run.agent("--config", cfg, token_file=False)
    for tok in (None, "", "from-env"):
        r = b.request("POST", reset, token=tok)
        assert r.status == 401 and set(r.json()) == {"error"}, (tok, r)
    lines = [ln for ln in b.log().splitlines() if ln.strip()]
    try:
        records = [json.loads(ln) for ln in lines]
    except ValueError as e:
        raise AssertionError(f"--log-format json (config file): not JSON ({e}):\n{b.log()}")
    assert set(records[0]) >= {"ts", "level", "msg"}, records[0]
    assert any(r["level"] == "debug" and r["msg"].startswith("change op=remove")
               for r in records), f"no debug record of the change: {records[-10:]}"


# --- SIGTERM, --cleanup-on-exit ----------------------------------------------------------

def test_sigterm_leaves_datapath_cleanup_on_exit_removes_it(run, topo):
    run.write(doc(service(topo)))
    agent = run.agent()
    pins = E.list_pins(run.sluice.pin_root)
    # SIGHUP re-reads configuration and registry, and the agent keeps running.
    applied = agent.log().count("registry applied")
    agent.signal(signal.SIGHUP)
    n = E.wait_until(lambda: agent.log().count("registry applied"), lambda n: n > applied, 2.0)
    assert n == applied + 1 and agent.running() and "SIGHUP" in agent.log(), agent.log()
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0, agent.log()
    assert "keeps running" in agent.log()
    assert E.list_pins(run.sluice.pin_root) == pins
    st = run.sluice.status()
    assert st["loaded"] is True and st["generation"]["service_count"] == 1, st
    out = run.client(VIP, 40)
    assert out["backends"] == {i: 10 for i in ids(topo)}, f"after SIGTERM: {out}"

    agent2 = run.agent("--cleanup-on-exit")
    assert "adopted" in agent2.log()
    out = run.client(VIP, 8)
    assert out["ok"] == 8, out
    agent2.signal(signal.SIGTERM)
    assert agent2.wait(10) == 0, agent2.log()
    assert not os.path.exists(run.sluice.pin_root) or not E.list_pins(run.sluice.pin_root), \
        E.list_pins(run.sluice.pin_root)
    progs = E.bpftool_json("cgroup", "show", run.sluice.cgroup) or []
    assert progs == [], f"programs still attached to the cgroup: {progs}"
    out = run.client(VIP, 2)
    assert out["ok"] == 0 and set(out["errors"]) == {"ENETUNREACH"}, \
        f"the VIP is still balanced after --cleanup-on-exit: {out}"


# --- a directory of registry files ----------------------------------------------------------

def test_directory_source_merges_files(run, topo):
    d = os.path.join(run.dir, "registry.d")
    os.mkdir(d)
    b1, b2, b3, b4 = topo.backends
    write_file(os.path.join(d, "a.json"), doc(service(topo, [b1, b2], name="one")))
    write_file(os.path.join(d, "b.json"), doc(service(topo, [b3, b4], name="two", vip=VIP2)))
    write_file(os.path.join(d, "notes.txt"), "not a registry document")
    agent = run.agent(registry=d)
    assert sorted(s["name"] for s in run.sluice.services()) == ["one", "two"]
    assert run.client(VIP, 10)["backends"] == {"be1": 5, "be2": 5}
    assert run.client(VIP2, 10)["backends"] == {"be3": 5, "be4": 5}

    # A third file whose service clashes with the first: the whole directory is rejected.
    errors = errors_total(agent)
    write_file(os.path.join(d, "c.json"), doc(service(topo, [b4], name="one", vip="10.96.4.12")))
    assert_degraded(agent, errors, d)
    assert sorted(s["name"] for s in run.sluice.services()) == ["one", "two"]
    os.unlink(os.path.join(d, "c.json"))
    r = E.wait_until(lambda: agent.request("GET", "/readyz"), lambda r: r.status == 200, 2.0)
    assert r.status == 200, r

    # Deleting a file removes its services.
    os.unlink(os.path.join(d, "b.json"))
    names = E.wait_until(lambda: sorted(s["name"] for s in run.sluice.services()),
                         lambda n: n == ["one"], 2.0)
    assert names == ["one"]
    out = run.client(VIP2, 2)
    assert out["ok"] == 0, out
    assert run.client(VIP, 10)["backends"] == {"be1": 5, "be2": 5}


# --- the command line -----------------------------------------------------------------------

def sluiced_cmd(*args):
    if not os.access(E.SLUICED, os.X_OK):
        pytest.fail(f"{E.SLUICED} is not built", pytrace=False)
    return subprocess.run([E.SLUICED, *args], capture_output=True, text=True, timeout=10)


def test_help_and_bad_flags():
    p = sluiced_cmd("--help")
    assert p.returncode == 0, p
    text = p.stdout + p.stderr
    for flag in ("--registry", "--pin-root", "--cgroup", "--listen", "--api-token-file",
                 "--config", "--log-level", "--log-format", "--cleanup-on-exit",
                 "--no-conn-tracking", "--xdp-flows", "--xdp-no-forward", "SLUICE_XDP_FLOWS",
                 "SLUICE_REGISTRY", "SLUICE_API_TOKEN", "SIGHUP"):
        assert flag in text, f"{flag} missing from --help:\n{text}"
    p = sluiced_cmd("--no-such-flag")
    assert p.returncode == 2 and p.stderr.strip(), p
    p = sluiced_cmd("--xdp-flows", "0")
    assert p.returncode == 2 and "--xdp-flows: expected 1..16777216" in p.stderr, p


def test_help_on_stdout():
    p = sluiced_cmd("--help")
    assert p.returncode == 0 and "--registry" in p.stdout, p


# --- the interface watcher ----------------------------------------------------------------

def agent_ns_status(run):
    """sluicectl status -j for the run's pin root, from the agent's namespace."""
    out = subprocess.run(E.in_ns(run.topo.extra[-1].ns, E.SLUICECTL, "-j", "status",
                                 "--pin-root", run.sluice.pin_root),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def xdp_links(run):
    """{interface: link_id} of the XDP links pinned under the run's pin root, as status shows
    them from the agent's namespace."""
    return {x["interface"]: x["link_id"] for x in agent_ns_status(run)["xdp"]}


def wait_links(run, want, timeout=5.0):
    return E.wait_until(lambda: set(xdp_links(run)), lambda got: got == want, timeout, 0.05)


def test_xdp_interface_watcher(run):
    """--xdp-interfaces PATTERN: sl_xdp on the matching interfaces present at start and on
    those that appear later; an interface that goes is noted and its pin removed."""
    ns = run.topo.extra[-1].ns
    tag = f"w{os.getpid() % 10000}"
    names = [f"{tag}a", f"{tag}ap", f"{tag}b", f"{tag}bp"]

    def ip(*args):
        subprocess.run(E.in_ns(ns, "ip", *args), check=True, timeout=10)

    def remove_veths():
        for name in names[::2]:  # deleting one end removes its peer
            subprocess.run(E.in_ns(ns, "ip", "link", "del", name), capture_output=True,
                           timeout=10)

    cleanup = E.JANITOR.add("watcher veths", remove_veths)
    try:
        ip("link", "add", names[0], "type", "veth", "peer", "name", names[1])
        run.write(doc())
        agent = run.agent("--xdp-interfaces", f"{tag}*")
        assert wait_links(run, set(names[:2])) == set(names[:2]), agent.log()

        ip("link", "add", names[2], "type", "veth", "peer", "name", names[3])
        assert wait_links(run, set(names)) == set(names), agent.log()

        ip("link", "del", names[0])  # takes its peer with it
        assert wait_links(run, set(names[2:])) == set(names[2:]), agent.log()
        log = agent.log()
        assert f"interface {names[0]} went away" in log, log
        assert f"attached to {names[2]}" in log, log
    finally:
        E.JANITOR.run(cleanup)


def test_xdp_watcher_no_forward_and_flow_table_size(run):
    """--xdp-no-forward: the watcher attaches sl_xdp_edge (limits and counters, no
    balancing); --xdp-flows N sizes the flow table when the agent loads the datapath."""
    ns = run.topo.extra[-1].ns
    tag = f"n{os.getpid() % 10000}"
    names = [f"{tag}a", f"{tag}ap"]

    def remove_veth():
        subprocess.run(E.in_ns(ns, "ip", "link", "del", names[0]), capture_output=True,
                       timeout=10)

    cleanup = E.JANITOR.add("watcher veth", remove_veth)
    try:
        subprocess.run(E.in_ns(ns, "ip", "link", "add", names[0], "type", "veth", "peer",
                               "name", names[1]), check=True, timeout=10)
        run.write(doc())
        agent = run.agent("--xdp-interfaces", f"{tag}*", "--xdp-no-forward",
                          "--xdp-flows", "1024")
        assert wait_links(run, set(names)) == set(names), agent.log()
        st = agent_ns_status(run)
        for x in st["xdp"]:
            assert x["program"] == "sl_xdp_edge" and x["forward"] is False, x
        flows = next(m for m in st["maps"] if m["name"] == "sl_xdp_flows")
        assert flows["max_entries"] == 1024 // 4, flows  # buckets of 4 flows
        index = next(m for m in st["maps"] if m["name"] == "sl_xdp_flow_idx")
        assert index["max_entries"] == 1024 // 4 // 16, index  # a word per bucket, 16 a line
        assert "without forwarding (--xdp-no-forward)" in agent.log(), agent.log()
    finally:
        E.JANITOR.run(cleanup)

