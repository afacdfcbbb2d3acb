# SPDX-License-Identifier: MIT
"""The Redis registry end to end (issue 7): several agents ("nodes", each with its
own cgroup and pin root) on one real redis-server.

Redis and the agents run in the last extra client namespace (outside every sluice
cgroup); Redis listens on that namespace's 127.0.0.1 and a free port, without
persistence, and is stopped by PID. Clients run in the client namespace inside a
node's cgroup, so each node's datapath balances its own clients. The backends are
this module's backend_server.py processes on port 9292. sluicectl talks to Redis
from the agents' namespace.

Times: "visible" is the start of the first connect() that shows a change, from a
`client.py loop` through the VIP (CLOCK_MONOTONIC, the test's clock too)."""
import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

import sluice_e2e as E
from redis_e2e import REDIS_SERVER, RedisServer, free_port
from sluice_e2e import be, doc, svc

pytestmark = pytest.mark.skipif(not os.access(REDIS_SERVER, os.X_OK),
                                reason="redis-server is not installed (scripts/install-deps.sh)")

BE_PORT = 9292
PORT = 80
VIP = "10.96.7.10"
VIP2 = "10.96.7.11"
VIP6 = "fd00:96:7::10"
TOKEN = "e2e-redis-token-42"
VISIBLE_WITHIN = 0.100  # seconds, issue 7
# An instance whose heartbeats stopped is gone from the maps this long after its key
# expired, at most: the agent reads it back at its own TTL deadline (README).
TTL_BOUND = 0.250
# Reconnect backoff is capped at 5 s (with jitter): a restarted Redis is seen within that.
RECONNECT_WITHIN = 8.0


@pytest.fixture(scope="module")
def servers9292(topo, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("redis-backends"))
    with E.servers_running(topo, workdir, "port 9292 servers", tcp_port=BE_PORT,
                           udp_port=0) as s:
        yield s


class Node:
    def __init__(self, sluice, agent):
        self.sluice = sluice
        self.agent = agent

    def backends(self, service="web"):
        """{address: weight} of service's backends in this node's maps ({} if absent); one
        read of every backend, so a service going meanwhile is not an error."""
        return {b["address"]: b["weight"] for b in self.sluice.backends()
                if b["service"] == service}

    def loop(self, topo, vip=VIP, *extra):
        return self.sluice.loop(topo.client.ns, vip, PORT, "--timeout", "1", *extra)

    def client(self, topo, vip=VIP, count=12):
        return self.sluice.client(topo.client.ns, "tcp", vip, PORT, "--count", count,
                                  "--sequence")


class Fleet:
    """One Redis and the nodes of one test, with the registry path and token."""

    def __init__(self, unloaded_sluice, topo, tmp_path):
        self.unloaded_sluice = unloaded_sluice
        self.topo = topo
        self.ns = topo.extra[-1].ns
        self.dir = os.path.join(str(tmp_path), "fleet")
        os.makedirs(self.dir, exist_ok=True)
        self.redis = RedisServer(self.ns, self.dir)
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.nodes = []
        self.docs = 0

    def ctl(self, *args, env=None, timeout=30):
        """sluicectl in the agents' namespace, with --registry (unless args give one)."""
        if not any(a == "--registry" for a in args):
            args = (*args, "--registry", self.redis.url())
        base = {k: v for k, v in E.CLEAN_ENV.items() if not k.startswith("SLUICE_")}
        return subprocess.run(E.in_ns(self.ns, E.SLUICECTL, *args), capture_output=True,
                              text=True, timeout=timeout, env={**base, **(env or {})})

    def write_doc(self, document):
        self.docs += 1
        path = os.path.join(self.dir, f"doc-{self.docs}.json")
        with open(path, "w") as f:
            f.write(document if isinstance(document, str) else json.dumps(document, indent=1))
        return path

    def put(self, document, *extra):
        p = self.ctl("registry", "put", self.write_doc(document), *extra)
        assert p.returncode == 0, f"registry put: {p.stderr}{p.stdout}"
        return p

    def get(self):
        p = self.ctl("registry", "get")
        assert p.returncode == 0, f"registry get: {p.stderr}"
        return p.stdout

    def node(self, *extra, sluice=None, url=None, ready=True, env=None):
        """A sluiced on a fresh cgroup and pin root (or sluice's), following Redis."""
        s = sluice or self.unloaded_sluice()
        port = free_port(self.ns)
        args = ["--registry", url or self.redis.url(), "--pin-root", s.pin_root,
                "--cgroup", s.cgroup, "--listen", f"127.0.0.1:{port}",
                "--api-token-file", self.token_file, *extra]
        base = {k: v for k, v in E.CLEAN_ENV.items() if not k.startswith("SLUICE_")}
        log = os.path.join(self.dir, f"sluiced-{len(self.nodes)}.log")
        a = E.Agent(self.ns, port, args, log, env={**base, **(env or {})})
        n = Node(s, a)
        self.nodes.append(n)
        a.start()
        a.wait_ready()
        if ready:
            wait_ready(n)
        return n


def wait_ready(n, timeout=RECONNECT_WITHIN):
    r = E.wait_until(lambda: n.agent.request("GET", "/readyz"), lambda r: r.status == 200,
                     timeout)
    assert r.status == 200, f"not ready: {r}\n{n.agent.log()[-2000:]}"
    return r.json()


@pytest.fixture
def fleet(unloaded_sluice, topo, tmp_path, servers9292):
    f = Fleet(unloaded_sluice, topo, tmp_path)
    yield f
    for n in f.nodes:
        E.JANITOR.run(n.agent.token)  # SIGKILL by PID if still running
    f.redis.stop()


def service(topo, hosts, name="web", vip=VIP, weights=None, **extra):
    weights = weights or [1] * len(hosts)
    return svc(name, vip, PORT, [be(h.v4, BE_PORT, w) for h, w in zip(hosts, weights)],
               "round_robin", **extra)


def ep(host):
    return f"{host.v4}:{BE_PORT}"


def addrs(hosts):
    return {h.v4 for h in hosts}


def metric(agent, name):
    return E.metric(agent.metrics(), name)


def first_seen(events, t, identity):
    return next((ts for ts, r in events if ts >= t and r == identity), None)


def gone_at(events, t, identity):
    """Start of the first connect after t that follows the last one reaching identity."""
    after = [e for e in events if e[0] >= t]
    last = max((i for i, (_, r) in enumerate(after) if r == identity), default=-1)
    if last + 1 >= len(after):
        return None
    return after[last + 1][0]


# --- two nodes, one registry ------------------------------------------------------------------

def test_two_nodes_follow_api_registrations_within_100ms(fleet, topo):
    """A registration through one node's API is in both nodes' maps, and in their
    connections through the VIP, within 100 ms; so is a deregistration through the other."""
    b1, b2, b3, _ = topo.backends
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1, b2])))
    a, b = fleet.node(), fleet.node()
    for n in (a, b):
        got = E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b2]), 2.0)
        assert set(got) == addrs([b1, b2]), got
        assert n.client(topo)["backends"] == {"be1": 6, "be2": 6}

    loops = [n.loop(topo) for n in (a, b)]
    time.sleep(0.15)
    t = time.monotonic()
    r = a.agent.request("POST", "/v1/services/register", token=TOKEN,
                        body={"service": "web", "address": b3.v4, "port": BE_PORT, "weight": 1,
                              "ttl": 60})
    assert r.status == 200, r
    assert r.json() == {"service": "web", "instance": ep(b3),
                        "key": f"sluice:instance:web:{ep(b3)}", "weight": 1, "ttl": 60}, r
    time.sleep(0.35)
    outs = [lp.stop() for lp in loops]
    latencies = []
    for name, out in zip("ab", outs):
        seen = first_seen(out["events"], t, "be3")
        assert seen is not None, f"node {name}: be3 never reached: {out['events'][-10:]}"
        latencies.append(seen - t)
        assert out["errors"] == {}, (name, out["errors"])
    for n in (a, b):
        assert set(n.backends()) == addrs([b1, b2, b3])
    assert 55 <= fleet.redis.call("TTL", f"sluice:instance:web:{ep(b3)}") <= 60

    loops = [n.loop(topo) for n in (a, b)]
    time.sleep(0.15)
    t = time.monotonic()
    r = b.agent.request("DELETE", f"/v1/services/web/{ep(b3)}", token=TOKEN)
    assert r.status == 200 and r.json() == {"service": "web", "instance": ep(b3),
                                            "deregistered": True}, r
    time.sleep(0.35)
    outs = [lp.stop() for lp in loops]
    for name, out in zip("ab", outs):
        gone = gone_at(out["events"], t, "be3")
        assert gone is not None, f"node {name}: be3 still reached at the end"
        latencies.append(gone - t)
        assert out["errors"] == {}, (name, out["errors"])
    for n in (a, b):
        assert set(n.backends()) == addrs([b1, b2])
    print("\nregistration -> connections on nodes a, b: %.1f, %.1f ms; deregistration: "
          "%.1f, %.1f ms" % tuple(x * 1e3 for x in latencies))
    assert max(latencies) < VISIBLE_WITHIN, latencies
    for n in (a, b):
        assert metric(n.agent, "sluice_registry_errors_total") == 0
        assert metric(n.agent, "sluice_registry_stale") == 0


# --- TTL and heartbeats ---------------------------------------------------------------------

def heartbeat(fleet, host, ttl):
    """`sluicectl register web HOST --ttl TTL --heartbeat` as a process (killed by PID at the
    latest by the janitor); returns it once it has registered."""
    p = subprocess.Popen(E.in_ns(fleet.ns, E.SLUICECTL, "register", "web", ep(host), "--ttl",
                                 str(ttl), "--heartbeat", "--registry", fleet.redis.url()),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=E.CLEAN_ENV)
    token = E.JANITOR.add(f"heartbeat {p.pid}", lambda: (p.poll() is None and p.kill(),
                                                        p.wait(timeout=10)))
    line = p.stdout.readline()
    assert line.startswith(f"registered {ep(host)} in web"), \
        f"heartbeat: {line!r} {p.poll()} {p.stderr.read() if p.poll() is not None else ''}"
    return p, token


def test_instance_that_stops_heartbeating_disappears_after_its_ttl(fleet, topo):
    """A heartbeating instance outlives its TTL; SIGKILLed (no more heartbeats, no
    deregistration), it is gone from both nodes at most TTL_BOUND after its key expires and
    new connections stop going to it. A heartbeat stopped by SIGTERM deregisters at once."""
    b1, b2, b3, _ = topo.backends
    ttl = 2
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1])))
    a, b = fleet.node(), fleet.node()
    hb, token = heartbeat(fleet, b2, ttl)
    for n in (a, b):
        got = E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b2]), 1.0)
        assert set(got) == addrs([b1, b2]), got
    time.sleep(ttl * 1.5)  # longer than the TTL: only the heartbeats keep it
    for n in (a, b):
        assert set(n.backends()) == addrs([b1, b2]), "a heartbeating instance expired"

    loops = [n.loop(topo, VIP, "--interval", "0.002") for n in (a, b)]
    time.sleep(0.2)
    key = f"sluice:instance:web:{ep(b2)}"
    t0 = time.monotonic()
    pttl = fleet.redis.call("PTTL", key)
    os.kill(hb.pid, signal.SIGKILL)
    E.JANITOR.run(token)
    expires = t0 + pttl / 1000.0
    gone = {}
    deadline = expires + 2.0
    while len(gone) < 2 and time.monotonic() < deadline:
        for name, n in zip("ab", (a, b)):
            if name not in gone and ep(b2).split(":")[0] not in n.backends():
                gone[name] = time.monotonic()
        time.sleep(0.005)
    time.sleep(0.3)
    outs = [lp.stop() for lp in loops]
    assert set(gone) == {"a", "b"}, f"not gone {expires + 2.0 - t0:.1f} s after the kill: {gone}"
    for name, out in zip("ab", outs):
        lag = gone[name] - expires
        print(f"\nnode {name}: gone {lag * 1e3:.0f} ms after the key expired (ttl {ttl} s)")
        assert -0.05 <= lag <= TTL_BOUND, f"node {name}: gone {lag:.3f} s after expiry"
        # be2 still listens: connections reached it until it left the maps, none after.
        late = [ts for ts, r in out["events"] if r == "be2" and ts > gone[name] + 0.05]
        assert not late, f"node {name}: connections to be2 after it left the maps: {late[:5]}"
        assert out["errors"] == {}, out["errors"]
        assert {r for ts, r in out["events"] if ts > gone[name] + 0.05} == {"be1"}
    assert fleet.redis.call("SISMEMBER", "sluice:instances:web", ep(b2)) == 0, \
        "the expired member is still in the set"

    # SIGTERM: the heartbeat deregisters before it exits.
    hb3, token3 = heartbeat(fleet, b3, ttl)
    for n in (a, b):
        got = E.wait_until(n.backends, lambda v: b3.v4 in v, 1.0)
        assert b3.v4 in got, got
    t = time.monotonic()
    hb3.send_signal(signal.SIGTERM)
    assert hb3.wait(timeout=5) == 0, hb3.stderr.read()
    E.JANITOR.run(token3)
    for n in (a, b):
        got = E.wait_until(n.backends, lambda v: b3.v4 not in v, 1.0)
        assert b3.v4 not in got, got
    assert time.monotonic() - t < 1.0
    assert fleet.redis.call("EXISTS", f"sluice:instance:web:{ep(b3)}") == 0


# --- Redis away and back ------------------------------------------------------------------

def readyz(n):
    r = n.agent.request("GET", "/readyz")
    return r.status, r.json()


def test_redis_down_under_load_then_back(fleet, topo):
    """Redis stopped under client load: zero failed connections, the maps as they were,
    /readyz and the metrics say stale and since when. Redis back (empty, as after a restart
    without persistence) with a document put meanwhile: both nodes resync to it."""
    b1, b2, b3, _ = topo.backends
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1, b2])))
    a, b = fleet.node(), fleet.node()
    for n in (a, b):
        assert set(E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b2]), 2.0)) == \
            addrs([b1, b2])
    views = [(n.sluice.services(), n.sluice.backends()) for n in (a, b)]
    loops = [n.loop(topo, VIP, "--interval", "0.002") for n in (a, b)]
    time.sleep(0.3)
    wall0 = time.time()
    fleet.redis.stop()
    for n in (a, b):
        st, body = E.wait_until(lambda: readyz(n), lambda v: v[1]["stale"], 2.0)
        assert st == 503 and body["registry"] == "stale" and body["ready"] is False, body
        assert body["last_error"], body
        assert wall0 - 0.5 <= body["stale_since"] <= time.time(), (wall0, body)
        m = n.agent.metrics()
        assert E.metric(m, "sluice_registry_stale") == 1
        assert abs(E.metric(m, "sluice_registry_stale_since_timestamp_seconds") -
                   body["stale_since"]) < 0.01
    time.sleep(1.0)
    for n, view in zip((a, b), views):
        assert [(x["name"], x["id"]) for x in n.sluice.services()] == \
            [(x["name"], x["id"]) for x in view[0]], "services changed while Redis was away"
        assert [(x["address"], x["id"], x["weight"]) for x in n.sluice.backends()] == \
            [(x["address"], x["id"], x["weight"]) for x in view[1]], \
            "backends changed while Redis was away"

    # Back empty; a document (be3 added, be2 gone) put before the nodes reconnect.
    fleet.redis.start()
    t_back = time.monotonic()
    fleet.put(doc(service(topo, [b1, b3])))
    for n in (a, b):
        got = E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b3]), RECONNECT_WITHIN)
        assert set(got) == addrs([b1, b3]), f"{got}\n{n.agent.log()[-2000:]}"
        wait_ready(n)
    took = time.monotonic() - t_back
    time.sleep(0.3)
    outs = [lp.stop() for lp in loops]
    for name, out, n in zip("ab", outs, (a, b)):
        assert out["errors"] == {}, f"node {name}: failed connections: {out['errors']}"
        assert out["ok"] > 300, out["ok"]
        assert "be3" in {r for ts, r in out["events"] if ts > t_back}, name
        assert metric(n.agent, "sluice_registry_stale") == 0
        assert metric(n.agent, "sluice_registry_stale_since_timestamp_seconds") == 0
        assert "redis" in n.agent.log() and "the maps stay as they are" in n.agent.log()
    print(f"\nRedis back: both nodes in step {took:.2f} s later")


def test_empty_redis_is_believed_only_after_the_grace(fleet, topo):
    """A Redis that comes back empty removes nothing until --redis-empty-grace has passed
    (a node with a longer grace still holds everything); then the services go."""
    b1, b2, _, _ = topo.backends
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1, b2])))
    short = fleet.node("--redis-empty-grace", "1.5")
    long = fleet.node("--redis-empty-grace", "60")
    for n in (short, long):
        assert set(E.wait_until(n.backends, lambda v: len(v) == 2, 2.0)) == addrs([b1, b2])
    fleet.redis.stop()
    fleet.redis.start()

    def in_grace(n):
        st, body = readyz(n)
        return st == 503 and body["registry"] == "degraded" and \
            "holds no services" in body["last_error"]

    for n in (short, long):
        assert E.wait_until(lambda: in_grace(n), bool, RECONNECT_WITHIN), readyz(n)
    t_seen = time.monotonic()
    for n in (short, long):
        assert set(n.backends()) == addrs([b1, b2]), "removed before the grace ended"
        assert n.client(topo)["backends"] == {"be1": 6, "be2": 6}
    empty = E.wait_until(lambda: short.backends(), lambda v: v == {}, 3.0)
    took = time.monotonic() - t_seen
    assert empty == {}, f"still there after the grace: {empty}\n{short.agent.log()[-1500:]}"
    assert 1.0 <= took <= 2.5, f"removed {took:.2f} s after the grace was seen (grace 1.5 s)"
    assert "still holds no services" in short.agent.log()
    assert wait_ready(short)["registry"] == "ok"
    assert set(long.backends()) == addrs([b1, b2])
    assert in_grace(long)

    # Services written again end the grace at once: the node then holds what Redis holds
    # (be2 goes now), and what stayed kept its id (reconciled, never flushed).
    id_b1 = {b["address"]: b["id"] for b in long.sluice.backends()}[b1.v4]
    fleet.put(doc(service(topo, [b1])))
    got = E.wait_until(long.backends, lambda v: set(v) == addrs([b1]), 1.0)
    assert set(got) == addrs([b1]), got
    assert wait_ready(long, 1.0)["registry"] == "ok"
    assert {b["address"]: b["id"] for b in long.sluice.backends()} == {b1.v4: id_b1}
    assert "holds services again" in long.agent.log()
    assert set(E.wait_until(short.backends, lambda v: v, 1.0)) == addrs([b1])


def test_unreachable_redis_at_start_leaves_the_maps(fleet, topo):
    """An agent whose Redis is not there starts, serves, says stale, and touches nothing
    that is pinned; once Redis is up it follows it."""
    b1, b2, b3, _ = topo.backends
    s = fleet.unloaded_sluice()
    s.load()
    s.apply(doc(service(topo, [b1, b2])))
    before = (s.services(), [(x["address"], x["id"], x["weight"]) for x in s.backends()])
    n = fleet.node(sluice=s, ready=False)
    st, body = readyz(n)
    assert st == 503 and body["registry"] == "stale" and body["stale"] is True, body
    assert "cannot connect" in body["last_error"] or "refused" in body["last_error"], body
    assert metric(n.agent, "sluice_registry_stale") == 1
    time.sleep(1.0)
    after = (s.services(), [(x["address"], x["id"], x["weight"]) for x in s.backends()])
    assert [x["name"] for x in after[0]] == ["web"] and after[1] == before[1]
    assert n.client(topo)["backends"] == {"be1": 6, "be2": 6}
    assert "redis" in n.agent.log()

    fleet.redis.start()
    fleet.put(doc(service(topo, [b1, b2, b3])))
    got = E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b2, b3]), RECONNECT_WITHIN)
    assert set(got) == addrs([b1, b2, b3])
    assert wait_ready(n)["stale"] is False
    # The backends that stayed kept their ids: reconciled by difference, never flushed.
    ids = {x["address"]: x["id"] for x in s.backends()}
    assert all(ids[addr] == i for addr, i, w in before[1]), (before, ids)


# --- bad data ----------------------------------------------------------------------------

def test_bad_keys_are_skipped_and_the_rest_syncs(fleet, topo):
    """Bad JSON in one service, an invalid address in another, a bad instance value: each
    skipped with an error naming its key; the other services and instances still sync,
    changes keep flowing, and fixing the keys clears the degraded state."""
    b1, b2, b3, b4 = topo.backends
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1, b2])))
    n = fleet.node()
    assert set(E.wait_until(n.backends, lambda v: len(v) == 2, 2.0)) == addrs([b1, b2])
    r = fleet.redis.client()
    bad_inst = f"sluice:instance:web:{ep(b4)}"
    r.pipeline([
        ["HSET", "sluice:services", "broken", "{not json"],
        ["HSET", "sluice:services", "badvip", json.dumps({"vip": "10.96.7.300", "port": 80})],
        # With a TTL, so the put below (which lists web's persistent backends) leaves it.
        ["SET", bad_inst, json.dumps({"address": b4.v4, "port": BE_PORT, "weight": 0}), "EX",
         600],
        ["SADD", "sluice:instances:web", ep(b4)],
        ["PUBLISH", "sluice:changes", "broken"],
        ["PUBLISH", "sluice:changes", "badvip"],
        ["PUBLISH", "sluice:changes", f"web {ep(b4)}"],
    ])
    # A good service and a good instance written after the bad ones still arrive.
    fleet.put(doc(service(topo, [b1, b2]), service(topo, [b3], name="late", vip=VIP2)))
    r.close()
    p = fleet.ctl("register", "web", ep(b3))
    assert p.returncode == 0, p.stderr
    assert set(E.wait_until(n.backends, lambda v: len(v) == 3, 2.0)) == addrs([b1, b2, b3])
    assert set(E.wait_until(lambda: n.backends("late"), lambda v: v, 2.0)) == addrs([b3])
    assert n.client(topo, VIP2, 4)["backends"] == {"be3": 4}
    assert n.client(topo, VIP, 9)["backends"] == {"be1": 3, "be2": 3, "be3": 3}

    st, body = E.wait_until(lambda: readyz(n), lambda v: v[0] == 503, 2.0)
    assert body["registry"] == "degraded" and "sluice:services field" in body["last_error"], body
    assert "(and 2 more skipped keys)" in body["last_error"], body
    assert metric(n.agent, "sluice_registry_errors_total") == 3
    assert metric(n.agent, "sluice_registry_degraded") == 1
    log = n.agent.log().replace('\\"', '"')
    for needle in ('sluice:services field "broken": invalid JSON',
                   'sluice:services field "badvip": vip: invalid address "10.96.7.300"',
                   f"{bad_inst}: weight: must be 1..65535"):
        assert any("level=error" in ln and needle in ln for ln in log.splitlines()), \
            f"no error naming {needle!r}:\n{log[-2000:]}"
    assert {s["name"] for s in n.sluice.services()} == {"web", "late"}

    # A full resync (SIGHUP) finds the same: nothing new is counted, nothing changes.
    n.agent.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert metric(n.agent, "sluice_registry_errors_total") == 3
    assert set(n.backends()) == addrs([b1, b2, b3])

    r = fleet.redis.client()
    r.pipeline([["HDEL", "sluice:services", "broken", "badvip"],
                ["SET", bad_inst, json.dumps({"address": b4.v4, "port": BE_PORT}), "EX", 600],
                ["PUBLISH", "sluice:changes", "broken"],
                ["PUBLISH", "sluice:changes", "badvip"],
                ["PUBLISH", "sluice:changes", f"web {ep(b4)}"]])
    r.close()
    body = wait_ready(n, 2.0)
    assert body["last_error"] == "", body
    assert set(n.backends()) == addrs([b1, b2, b3, b4])


# --- sluicectl ---------------------------------------------------------------------------

def canonical(document):
    """What `registry get` holds for a document: services by name, backends by address."""
    out = []
    for s in sorted(document["services"], key=lambda s: s["name"]):
        s = dict(s)
        s["backends"] = sorted(({"address": b["address"], "port": b["port"],
                                 "weight": b.get("weight", 1)} for b in s.get("backends", [])),
                               key=lambda b: (b["address"], b["port"]))
        out.append(s)
    return {"services": out}


def test_cli_put_get_register_deregister(fleet, topo):
    b1, b2, b3, b4 = topo.backends
    fleet.redis.start()
    document = doc(service(topo, [b2, b1], weights=[3, 1]),
                   svc("six", VIP6, PORT, [be(b4.v6, BE_PORT)], "random",
                       health_check={"type": "tcp", "interval_ms": 500}))
    p = fleet.put(document)
    assert "put 2 services (3 persistent instances)" in p.stdout, p.stdout
    n = fleet.node()
    text = fleet.get()
    assert json.loads(text) == canonical(document), text
    # The agent's generation SHA-256 is the SHA-256 of what `registry get` prints.
    gen = E.wait_until(lambda: n.sluice.status()["generation"],
                       lambda g: g and g["sha256"] == hashlib.sha256(text.encode()).hexdigest(),
                       2.0)
    assert gen["sha256"] == hashlib.sha256(text.encode()).hexdigest(), (gen, text)
    assert n.backends() == {b1.v4: 1, b2.v4: 3}
    assert n.backends("six") == {b4.v6: 1}
    assert n.sluice.client(topo.client.ns, "tcp", VIP6, PORT, "--count", 3)["backends"] == \
        {"be4": 3}
    pretty = fleet.ctl("-p", "registry", "get")
    assert pretty.returncode == 0 and json.loads(pretty.stdout) == json.loads(text)

    # register / deregister
    p = fleet.ctl("-j", "register", "web", ep(b3), "--weight", "2", "--ttl", "30")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"registry": fleet.redis.url(), "service": "web",
                                    "instance": ep(b3), "key": f"sluice:instance:web:{ep(b3)}",
                                    "weight": 2, "ttl": 30, "heartbeat": False}
    assert E.wait_until(n.backends, lambda v: b3.v4 in v, 1.0).get(b3.v4) == 2
    assert {b["address"] for b in json.loads(fleet.get())["services"][1]["backends"]} == \
        addrs([b1, b2, b3])
    for args, needle in [
            (("register", "nope", ep(b3)), 'no service "nope"'),
            (("register", "web", f"[{b3.v6}]:{BE_PORT}"), "IPv6 address for service \"web\""),
            (("register", "web", b3.v4), "expected ADDR:PORT"),
            (("register", "we:b", ep(b3)), "service \"we:b\""),
            (("deregister", "web", ep(b4)), "no instance"),
            (("register", "web", ep(b3), "--heartbeat", "--ttl", "0"), "--ttl")]:
        p = fleet.ctl(*args)
        assert p.returncode != 0 and needle in p.stderr, (args, p.returncode, p.stderr)
    p = fleet.ctl("deregister", "web", ep(b3))
    assert p.returncode == 0 and "deregistered" in p.stdout, p.stderr
    assert b3.v4 not in E.wait_until(n.backends, lambda v: b3.v4 not in v, 1.0)

    # Put again with fewer backends: persistent instances not listed go, TTL'd ones stay.
    assert fleet.ctl("register", "web", ep(b4), "--ttl", "60").returncode == 0
    p = fleet.put(doc(service(topo, [b1])))
    assert "removed 1 persistent instances" in p.stdout, p.stdout
    got = E.wait_until(n.backends, lambda v: set(v) == addrs([b1, b4]), 1.0)
    assert set(got) == addrs([b1, b4]), got
    assert n.backends("six") == {b4.v6: 1}, "put without --replace removed a service"
    # --replace: services the document lacks go, with their instances.
    p = fleet.put(doc(service(topo, [b1])), "--replace")
    assert "and 1 services" in p.stdout, p.stdout
    assert E.wait_until(lambda: n.backends("six"), lambda v: v == {}, 1.0) == {}
    assert fleet.redis.call("KEYS", "sluice:instance*:six*") == []

    # An invalid document writes nothing and names the field.
    before = fleet.get()
    bad = doc(service(topo, [b1]))
    bad["services"][0]["backends"][0]["port"] = 0
    p = fleet.ctl("registry", "put", fleet.write_doc(bad))
    assert p.returncode == 1 and 'service "web": backends[0].port' in p.stderr, p.stderr
    p = fleet.ctl("registry", "put", fleet.write_doc({"global": {"xdp": {}}, "services": []}))
    assert p.returncode == 1 and "global" in p.stderr, p.stderr
    assert fleet.get() == before


# --- the API ------------------------------------------------------------------------------

def test_api_writes_to_redis(fleet, topo):
    """Registration and deregistration through the API: the token first, then the body;
    clear errors for everything Redis would not make sense of."""
    b1, b2, b3, _ = topo.backends
    fleet.redis.start()
    fleet.put(doc(service(topo, [b1]), svc("six", VIP6, PORT, [], "random")))
    n = fleet.node()
    reg = {"service": "web", "address": b2.v4, "port": BE_PORT}
    for tok in (None, "wrong"):
        r = n.agent.request("POST", "/v1/services/register", body=reg, token=tok)
        assert r.status == 401 and set(r.json()) == {"error"}, r
        r = n.agent.request("DELETE", f"/v1/services/web/{ep(b1)}", token=tok)
        assert r.status == 401, r
    for body, status, needle in [
            ("{not json", 400, "invalid JSON"),
            ([1], 400, "JSON object"),
            ({**reg, "zone": "a"}, 400, "zone: unknown field"),
            ({**reg, "port": 0}, 400, "port"),
            ({**reg, "weight": 70000}, 400, "weight"),
            ({**reg, "ttl": -1}, 400, "ttl"),
            ({**reg, "address": "10.200.0.300"}, 400, "address"),
            ({**reg, "service": "x y"}, 400, "service"),
            ({**reg, "service": "nope"}, 404, 'no service "nope"'),
            ({**reg, "service": "six"}, 400, "IPv4 address for service \"six\"")]:
        r = n.agent.request("POST", "/v1/services/register", body=body, token=TOKEN)
        assert r.status == status and needle in r.json()["error"], (body, r)
    for path, status in [(f"/v1/services/web/{ep(b3)}", 404),
                         ("/v1/services/web/10.0.0.1", 400),
                         ("/v1/services/w%20b/10.0.0.1:80", 400)]:
        r = n.agent.request("DELETE", path, token=TOKEN)
        assert r.status == status and set(r.json()) == {"error"}, (path, r)
    assert n.backends() == {b1.v4: 1}

    r = n.agent.request("POST", "/v1/services/register", token=TOKEN, body={**reg, "weight": 4})
    assert r.status == 200 and r.json()["ttl"] == 0, r
    assert fleet.redis.call("TTL", f"sluice:instance:web:{ep(b2)}") == -1
    assert E.wait_until(n.backends, lambda v: len(v) == 2, 1.0) == {b1.v4: 1, b2.v4: 4}
    r = n.agent.request("DELETE", f"/v1/services/web/{ep(b2)}", token=TOKEN)
    assert r.status == 200, r
    assert E.wait_until(n.backends, lambda v: len(v) == 1, 1.0) == {b1.v4: 1}

    # Redis away: a write is refused at once with 503, nothing hangs.
    fleet.redis.stop()
    E.wait_until(lambda: readyz(n), lambda v: v[1]["stale"], 2.0)
    r = n.agent.request("POST", "/v1/services/register", body=reg, token=TOKEN)
    assert r.status == 503 and "unreachable" in r.json()["error"], r


# --- configuration ------------------------------------------------------------------------

def test_rediss_and_bad_urls_are_refused(fleet):
    def sluiced(*args):
        return subprocess.run([E.SLUICED, *args], capture_output=True, text=True, timeout=10)

    p = sluiced("--registry", "rediss://127.0.0.1:6380")
    assert p.returncode == 2 and "rediss://" in p.stderr and "TLS" in p.stderr, p
    for url, needle in [("redis://", "no host"), ("redis://h:99999", "port"),
                        ("redis://fd00::1:6379", "brackets"), ("redis://h/x", "database"),
                        ("memcache://h", "unsupported source")]:
        p = sluiced("--registry", url)
        assert p.returncode == 2 and needle in p.stderr, (url, p.stderr)
    p = sluiced("--registry", "redis://h", "--redis-prefix", "a b")
    assert p.returncode == 2 and "--redis-prefix" in p.stderr, p.stderr
    p = sluiced("--registry", "redis://h", "--redis-empty-grace", "-1")
    assert p.returncode == 2 and "--redis-empty-grace" in p.stderr, p.stderr
    p = fleet.ctl("registry", "get", "--registry", "rediss://127.0.0.1:6380")
    assert p.returncode == 2 and "TLS" in p.stderr, p.stderr
    p = fleet.ctl("services", "--registry", "redis://h")
    assert p.returncode == 2, p.stderr
    help_text = sluiced("--help").stdout
    for flag in ("--redis-prefix", "--redis-password-file", "--redis-empty-grace",
                 "--redis-resync-interval", "SLUICE_REDIS_PASSWORD"):
        assert flag in help_text, flag


def test_auth_password_and_prefix(fleet, topo, unloaded_sluice):
    """A Redis with a password: the agent reads it from a file, sluicectl from the
    environment; a wrong one leaves the agent stale with the reason. Another key prefix
    is another registry."""
    b1, b2, _, _ = topo.backends
    fleet.redis = RedisServer(fleet.ns, fleet.dir, extra=["--requirepass", "s3cret"])
    fleet.redis.start()
    env = {"SLUICE_REDIS_PASSWORD": "s3cret"}
    p = fleet.ctl("registry", "put", fleet.write_doc(doc(service(topo, [b1]))), env=env)
    assert p.returncode == 0, p.stderr
    p = fleet.ctl("registry", "put", fleet.write_doc(doc(service(topo, [b2]))),
                  "--redis-prefix", "other:", env=env)
    assert p.returncode == 0, p.stderr
    p = fleet.ctl("registry", "get")
    assert p.returncode == 1 and "NOAUTH" in p.stderr, p.stderr
    pw = os.path.join(fleet.dir, "redis-password")
    with open(pw, "w") as f:
        f.write("s3cret\n")
    good = fleet.node("--redis-password-file", pw)
    assert good.backends() == {b1.v4: 1}
    # The prefix and a number from a config file, the password from the environment.
    cfg = os.path.join(fleet.dir, "sluiced.json")
    with open(cfg, "w") as f:
        json.dump({"redis_prefix": "other:", "redis_empty_grace": 2.5,
                   "redis_resync_interval": 30}, f)
    other = fleet.node("--config", cfg, env={"SLUICE_REDIS_PASSWORD": "s3cret"})
    assert other.backends() == {b2.v4: 1}
    bad = fleet.node(env={"SLUICE_REDIS_PASSWORD": "wrong"}, ready=False)
    st, body = E.wait_until(lambda: readyz(bad), lambda v: "AUTH" in v[1]["last_error"], 3.0)
    assert st == 503 and body["registry"] == "stale" and "AUTH refused" in body["last_error"], \
        body
    assert "s3cret" not in bad.agent.log() and "wrong" not in body["last_error"]
