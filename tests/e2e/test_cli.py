# SPDX-License-Identifier: MIT
"""sluicectl end to end: apply (bad documents, removal, dry run), status,
the JSON contract of services/backends/status, bpftool's view of the maps,
and load/unload. docs/cli-contract.md is the reference."""
import datetime
import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

import sluice_e2e as E
from sluice_e2e import BACKEND_KEYS, SERVICE_KEYS, be, doc, svc

VIP4 = "10.96.0.10"
VIP_API = "10.96.0.11"
VIP_DNS = "10.96.0.53"
PORT = 80

STATUS_KEYS = {"pin_root", "loaded", "conn_tracking", "programs", "maps", "xdp", "generation"}
PROGRAM_KEYS = {"name", "id", "attach_type", "cgroup", "link_id", "run_cnt", "run_time_ns"}
MAP_KEYS = {"name", "id", "type", "max_entries"}
GENERATION_KEYS = {"generation", "applied_at", "applied_unix_ns", "sha256", "service_count",
                   "backend_count"}
APPLY_KEYS = {"dry_run", "generation", "sha256", "changes"}
PROGRAMS = {f"sl_{hook}{v}" for hook in ("connect", "sendmsg", "recvmsg", "getpeername")
            for v in (4, 6)} | {"sl_sockops", "sl_sock_release"}


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def web(topo, hosts=None, algorithm="round_robin", name="web", vip=VIP4):
    hosts = topo.backends[:3] if hosts is None else hosts
    return svc(name, vip, PORT, [be(h.v4) for h in hosts], algorithm)


def backend_set(sluice, service=None):
    """What the maps say about backends, without the counters."""
    return sorted((b["service"], b["address"], b["port"], b["weight"])
                  for b in sluice.backends(service))


def service_set(sluice):
    return sorted((s["name"], s["vip"], s["port"], s["protocol"], s["algorithm"],
                   s["backend_count"]) for s in sluice.services())


def served_by(sluice, topo, n=60, vip=VIP4):
    out = sluice.client(topo.client.ns, "tcp", vip, PORT, "--count", n)
    assert out["ok"] == n, f"connections to {vip}:{PORT} failed: {out['errors']}"
    return set(out["backends"])


# --- apply: invalid documents ------------------------------------------------------------

def bad_service(topo):
    return svc("checkout", VIP_API, PORT, [be(h.v4) for h in topo.backends], "round_robin")


def mutate(fn):
    def build(topo):
        s = bad_service(topo)
        fn(s)
        # web gains be4 as well: had the bad document been applied in part, it would show.
        return doc(web(topo, topo.backends), s)
    return build


def dup_vip(topo):
    dup = bad_service(topo)
    dup["name"] = "checkout-dup"
    return doc(web(topo, topo.backends), bad_service(topo), dup)


def too_many(topo):
    s = bad_service(topo)
    s["backends"] = [be(f"10.201.{i // 250}.{i % 250 + 1}") for i in range(1025)]
    return doc(web(topo, topo.backends), s)


def malformed(topo):
    return json.dumps(doc(web(topo, topo.backends), bad_service(topo)))[:-7]


BAD_DOCUMENTS = [
    # (id, document builder, words the message must contain)
    ("invalid-vip", mutate(lambda s: s.update(vip="10.96.0.300")), ["checkout", "vip"]),
    ("invalid-backend-address",
     mutate(lambda s: s["backends"][1].update(address="10.200.0.999")), ["checkout", "address"]),
    ("service-port-0", mutate(lambda s: s.update(port=0)), ["checkout", "port"]),
    ("service-port-65536", mutate(lambda s: s.update(port=65536)), ["checkout", "port"]),
    ("backend-port-0", mutate(lambda s: s["backends"][0].update(port=0)), ["checkout", "port"]),
    ("unknown-algorithm", mutate(lambda s: s["lb"].update(algorithm="fastest")),
     ["checkout", "algorithm"]),
    ("duplicate-vip", dup_vip, ["checkout-dup", "vip"]),
    ("weight-0", mutate(lambda s: s["backends"][2].update(weight=0)), ["checkout", "weight"]),
    ("too-many-backends", too_many, ["checkout", "backends"]),
    ("malformed-json", malformed, ["JSON"]),
]


@pytest.mark.parametrize("build,words", [(b, w) for _, b, w in BAD_DOCUMENTS],
                         ids=[i for i, _, _ in BAD_DOCUMENTS])
def test_bad_apply_changes_nothing(sluice, topo, build, words):
    good_path, _ = sluice.apply(doc(web(topo)))
    status = sluice.status()["generation"]
    backends, services = backend_set(sluice), service_set(sluice)
    assert served_by(sluice, topo) == {h.identity for h in topo.backends[:3]}

    path = sluice.write_doc(build(topo))
    p = sluice.ctl("apply", path)
    assert p.returncode == 1, f"apply of a bad document exited {p.returncode}: {p.stderr}"
    msg = p.stderr.strip()
    assert msg.startswith("sluicectl:"), f"error message: {msg!r}"
    for w in words:
        assert w in msg, f"the error must name {w!r}: {msg!r}"

    pj = sluice.ctl("-j", "apply", path)
    assert pj.returncode == 1
    err = json.loads(pj.stdout)
    assert set(err) == {"error"} and isinstance(err["error"], str), pj.stdout
    for w in words:
        assert w in err["error"], f"the JSON error must name {w!r}: {err}"

    assert sluice.status()["generation"] == status, "a rejected apply changed the generation"
    assert backend_set(sluice) == backends, "a rejected apply changed the backends"
    assert service_set(sluice) == services, "a rejected apply changed the services"
    assert served_by(sluice, topo) == {h.identity for h in topo.backends[:3]}
    out = sluice.client(topo.client.ns, "tcp", VIP_API, PORT, "--count", 2, "--timeout", 1)
    assert out["errors"] == {"ENETUNREACH": 2}, f"the rejected service is live: {out}"


# --- apply: replacing, removing, dry run -------------------------------------------------

def slots_table(sluice, svc_id):
    """The id of the inner map sl_svc_slots holds for service id svc_id."""
    e = E.bpftool_json("map", "lookup", "pinned", os.path.join(sluice.pin_root, "sl_svc_slots"),
                       "key", *(str(b) for b in svc_id.to_bytes(4, "little")))
    if "inner_map_id" in e:
        return e["inner_map_id"]
    return int.from_bytes(bytes(int(x, 16) for x in e["value"]), "little")


def map_info(map_id):
    """bpftool's view of a map by id, or None once the kernel has freed it."""
    try:
        return E.bpftool_json("map", "show", "id", str(map_id))
    except RuntimeError:
        return None


def be_health(sluice, backend_id):
    """sl_be_health[backend_id], as bpftool formats it."""
    return E.bpftool_json("map", "lookup", "pinned", os.path.join(sluice.pin_root, "sl_be_health"),
                          "key", *map(str, backend_id.to_bytes(4, "little")))["formatted"]["value"]


def test_apply_removes_what_is_gone(sluice, topo):
    dns = svc("dns", VIP_DNS, 53, [be(h.v4, 5353) for h in topo.backends[:2]], "random",
              protocol="udp")
    sluice.apply(doc(web(topo, topo.backends), dns))
    assert {s["name"] for s in sluice.services()} == {"web", "dns"}
    assert served_by(sluice, topo) == {h.identity for h in topo.backends}
    out = sluice.client(topo.client.ns, "udp", VIP_DNS, 53, "--count", 4)
    assert out["ok"] == 4, out

    dns_id = next(s["id"] for s in sluice.services() if s["name"] == "dns")
    dns_table = slots_table(sluice, dns_id)
    assert map_info(dns_table)["max_entries"] > 1
    ids = {b["address"]: b["id"] for b in sluice.backends("web")}
    ids = {h: ids[h.v4] for h in topo.backends}
    web_id = next(s["id"] for s in sluice.services() if s["name"] == "web")
    assert {be_health(sluice, i)["svc_id"] for i in ids.values()} == {web_id}

    keep = topo.backends[:2]
    _, res = sluice.apply(doc(web(topo, keep)))
    ops = {(c["op"], c["object"], c["service"], c.get("backend")) for c in res["changes"]}
    assert ("remove", "service", "dns", None) in ops, res["changes"]
    # The removed service's table is freed: its id now names the shared empty table (n = 0).
    empty = slots_table(sluice, dns_id)
    assert empty != dns_table and map_info(empty)["max_entries"] == 1
    assert E.bpftool_json("map", "lookup", "id", str(empty), "key", "0", "0", "0", "0")[
        "value"] == ["0x00"] * 4
    deadline = time.monotonic() + 5
    while map_info(dns_table) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel frees a replaced inner map after an RCU grace period
    assert map_info(dns_table) is None, f"the removed service's table {dns_table} is still there"
    for h in topo.backends[2:]:
        assert ("remove", "backend", "web", f"{h.v4}:8080") in ops, res["changes"]
        assert be_health(sluice, ids[h]) == {"svc_id": 0, "health": 0, "pad": [0, 0, 0]}
    for h in keep:
        assert be_health(sluice, ids[h])["svc_id"] == web_id

    assert [s["name"] for s in sluice.services()] == ["web"]
    assert backend_set(sluice) == sorted(("web", h.v4, 8080, 1) for h in keep)
    assert served_by(sluice, topo, n=40) == {h.identity for h in keep}
    out = sluice.client(topo.client.ns, "udp", VIP_DNS, 53, "--count", 1, "--timeout", 1)
    assert out["errors"] == {"ENETUNREACH": 1}, f"the removed UDP service still answers: {out}"


def test_service_added_under_a_removed_ones_id(sluice, topo):
    """An apply that removes one service and adds another may hand the new one the removed
    one's id (the id cursor comes round to it): the new service gets its own table, not the
    empty one the removed id is given, and serves."""
    sluice.apply(doc(web(topo), web(topo, topo.backends[:1], name="gone", vip=VIP_DNS)))
    gone_id = next(s["id"] for s in sluice.services() if s["name"] == "gone")
    # Point the id cursor (sl_generation.next_service_id, bytes 56..59) at the id to remove.
    pin = os.path.join(sluice.pin_root, "sl_generation")
    key = ["0", "0", "0", "0"]
    value = [int(x, 16) for x in E.bpftool_json("map", "lookup", "pinned", pin, "key",
                                                 *key)["value"]]
    value[56:60] = list(gone_id.to_bytes(4, "little"))
    E.bpftool_json("map", "update", "pinned", pin, "key", *key, "value", *map(str, value))

    sluice.apply(doc(web(topo), web(topo, topo.backends, name="new", vip=VIP_API)))
    new_id = next(s["id"] for s in sluice.services() if s["name"] == "new")
    assert new_id == gone_id, "the scenario needs the removed id handed out again"
    assert map_info(slots_table(sluice, new_id))["max_entries"] > 1
    assert served_by(sluice, topo, vip=VIP_API) == {h.identity for h in topo.backends}


def test_backend_added_under_a_removed_ones_id(sluice, topo):
    """An apply that removes a backend (with its service, which goes first) and adds another
    may hand the new one the removed one's id (the id cursor comes round to it): the record
    written for the new backend is not deleted with the old one's after the table swaps, nor
    its copy in sl_be_health cleared."""
    b0, b1, b2 = topo.backends[:3]
    sluice.apply(doc(web(topo, [b0]), web(topo, [b1], name="gone", vip=VIP_DNS)))
    gone_id = next(b["id"] for b in sluice.backends("gone"))
    # Point the id cursor (sl_generation.next_backend_id, bytes 60..63) at the id to remove.
    pin = os.path.join(sluice.pin_root, "sl_generation")
    key = ["0", "0", "0", "0"]
    value = [int(x, 16) for x in E.bpftool_json("map", "lookup", "pinned", pin, "key",
                                                 *key)["value"]]
    value[60:64] = list(gone_id.to_bytes(4, "little"))
    E.bpftool_json("map", "update", "pinned", pin, "key", *key, "value", *map(str, value))

    sluice.apply(doc(web(topo, [b0, b2])))
    assert "gone" not in {s["name"] for s in sluice.services()}
    web_ids = {b["address"]: b["id"] for b in sluice.backends("web")}
    assert b2.v4 in web_ids, f"the new backend's record was deleted: {web_ids}"
    new_id = web_ids[b2.v4]
    assert new_id == gone_id, "the scenario needs the removed id handed out again"
    svc_id = next(s["id"] for s in sluice.services() if s["name"] == "web")
    assert be_health(sluice, new_id)["svc_id"] == svc_id
    assert served_by(sluice, topo) == {b0.identity, b2.identity}


def test_load_rebuilds_what_derives_from_the_records(sluice, topo):
    """A load over the pins of an older version: sl_be_health, missing (its pin removed
    here), is created and filled from the backend records in force, and sl_vip_filter, laid
    out otherwise but of the same size (zeroed here), is rewritten from the services in
    force, as the reconciler wrote it; so XDP neither takes every backend for removed nor
    passes a VIP's packets by until the next apply; and the pins of the maps that version had
    and this one replaced (sl_xdp_be_stats, sl_xdp_nexthop: now sl_xdp_backend) go; a flow
    table of that version's layout (ways of 5-tuples, 256-byte buckets) is replaced by a fresh
    one of this version's, with a fresh seed."""
    sluice.apply(doc(web(topo), web(topo, topo.backends[:1], name="api", vip=VIP_API)))
    web_id = next(s["id"] for s in sluice.services() if s["name"] == "web")
    ids = [b["id"] for b in sluice.backends("web")]
    assert len(sluice.backends()) == len(ids) + 1
    filt = os.path.join(sluice.pin_root, "sl_vip_filter")
    written = E.bpftool_json("map", "lookup", "pinned", filt, "key", "0", "0", "0", "0")["value"]
    assert any(int(x, 16) for x in written)
    E.bpftool_json("map", "update", "pinned", filt, "key", "0", "0", "0", "0",
                   "value", *(["0"] * len(written)))
    os.unlink(os.path.join(sluice.pin_root, "sl_be_health"))
    retired = {"sl_xdp_be_stats": 24, "sl_xdp_nexthop": 32}
    for name, size in retired.items():
        subprocess.run(["bpftool", "map", "create", os.path.join(sluice.pin_root, name), "type",
                        "array", "key", "4", "value", str(size), "entries", "1", "name", name],
                       check=True, capture_output=True, timeout=10)

    seed_pin = os.path.join(sluice.pin_root, "sl_xdp_fp_seed")
    seed = E.bpftool_json("map", "lookup", "pinned", seed_pin, "key", "0", "0", "0", "0")["value"]
    assert any(int(x, 16) for x in seed), seed
    flows = os.path.join(sluice.pin_root, "sl_xdp_flows")
    os.unlink(flows)
    subprocess.run(["bpftool", "map", "create", flows, "type", "array", "key", "4", "value",
                    "256", "entries", "65536", "name", "sl_xdp_flows"],
                   check=True, capture_output=True, timeout=10)

    p = sluice.load()
    assert "sl_xdp_flows: laid out by an earlier version; replaced" in p.stderr, p.stderr
    assert E.bpftool_json("map", "show", "pinned", flows)["bytes_value"] == 64
    fresh = E.bpftool_json("map", "lookup", "pinned", seed_pin, "key", "0", "0", "0",
                           "0")["value"]
    assert any(int(x, 16) for x in fresh) and fresh != seed, (seed, fresh)
    for name in retired:
        assert not os.path.exists(os.path.join(sluice.pin_root, name)), name
    assert f"filled from the {len(ids) + 1} backend records in force" in p.stderr, p.stderr
    assert [be_health(sluice, i)["svc_id"] for i in ids] == [web_id] * len(ids)
    assert E.bpftool_json("map", "lookup", "pinned", filt, "key", "0", "0", "0",
                          "0")["value"] == written
    assert served_by(sluice, topo) == {h.identity for h in topo.backends[:3]}


def xdp_vip(sluice, vip, port):
    """The slot of sl_xdp_vips for an IPv4 VIP:port, as bpftool formats it (sl_vip_filter_bit
    and sl_xdp_vip_slot of include/sluice/xdp.h, redone here)."""
    x = int.from_bytes(socket.inet_aton(vip), "little")
    port_be = int.from_bytes(port.to_bytes(2, "big"), "little")
    x = ((x ^ (port_be << 16 | port_be)) * 0x9e3779b1) & 0xffffffff
    slot = (x ^ x >> 15) & 0xffff
    pin = os.path.join(sluice.pin_root, "sl_xdp_vips")
    key = [str(b) for b in slot.to_bytes(4, "little")]
    return key, E.bpftool_json("map", "lookup", "pinned", pin, "key", *key)["formatted"]["value"]


def test_xdp_vips_follow_the_services(sluice, topo):
    """sl_xdp_vips, what XDP's new flows read of each service: an apply writes a VIP's slot
    with its service's id, empties the slot of a service it removes, and a load rewrites a
    slot zeroed here (a map new to the pins, or stale) from the services in force."""
    sluice.apply(doc(web(topo), web(topo, topo.backends[:1], name="api", vip=VIP_API)))
    ids = {s["name"]: s["id"] for s in sluice.services()}
    _, web_slot = xdp_vip(sluice, VIP4, PORT)
    _, api_slot = xdp_vip(sluice, VIP_API, PORT)
    assert web_slot["svc_id"] == ids["web"] and api_slot["svc_id"] == ids["api"], (web_slot,
                                                                                    api_slot)
    assert web_slot["key"]["port"] == socket.htons(PORT) and web_slot["check"] != 0, web_slot

    sluice.apply(doc(web(topo)))
    _, api_slot = xdp_vip(sluice, VIP_API, PORT)
    assert api_slot["svc_id"] == 0 and api_slot["check"] == 0, api_slot

    key, web_slot = xdp_vip(sluice, VIP4, PORT)
    E.bpftool_json("map", "update", "pinned", os.path.join(sluice.pin_root, "sl_xdp_vips"),
                   "key", *key, "value", *(["0"] * 40))
    assert xdp_vip(sluice, VIP4, PORT)[1]["svc_id"] == 0
    sluice.load()
    assert xdp_vip(sluice, VIP4, PORT)[1] == web_slot
    assert served_by(sluice, topo) == {h.identity for h in topo.backends[:3]}


def test_dry_run_changes_nothing(sluice, topo):
    sluice.apply(doc(web(topo)))
    status = sluice.status()["generation"]
    backends, services = backend_set(sluice), service_set(sluice)

    new = doc(web(topo, topo.backends), bad_service(topo))
    path = sluice.write_doc(new)
    res = sluice.ctl_json("apply", path, "--dry-run")
    assert set(res) == APPLY_KEYS
    assert res["dry_run"] is True and res["generation"] is None
    assert res["sha256"] == sha256_file(path)
    ops = {(c["op"], c["object"], c["service"], c.get("backend")) for c in res["changes"]}
    assert ("add", "service", "checkout", None) in ops, res["changes"]
    assert ("add", "backend", "web", f"{topo.backends[3].v4}:8080") in ops, res["changes"]

    human = sluice.ctl("apply", path, "--dry-run")
    assert human.returncode == 0, human.stderr
    assert any(line.startswith("+") for line in human.stdout.splitlines()), human.stdout

    assert sluice.status()["generation"] == status
    assert backend_set(sluice) == backends
    assert service_set(sluice) == services
    assert served_by(sluice, topo) == {h.identity for h in topo.backends[:3]}


def test_apply_output_lists_changes(sluice, topo):
    sluice.apply(doc(web(topo)))
    changed = web(topo)
    changed["backends"][0]["weight"] = 5
    changed["lb"]["algorithm"] = "weighted"
    _, res = sluice.apply(doc(changed))
    assert set(res) == APPLY_KEYS
    assert res["dry_run"] is False and isinstance(res["generation"], int)
    for c in res["changes"]:
        expect = {"op", "object", "service", "detail"} | ({"backend"} if
                                                           c["object"] == "backend" else set())
        assert set(c) == expect, c
        assert c["op"] in ("add", "remove", "update") and c["object"] in ("service", "backend")
    assert any(c["op"] == "update" for c in res["changes"]), res["changes"]
    # The same document again changes nothing.
    _, res2 = sluice.apply(doc(changed))
    assert res2["changes"] == [], res2


# --- status ----------------------------------------------------------------------------

def test_status_generation_and_checksum(sluice, topo):
    path1, res1 = sluice.apply(doc(web(topo)))
    st1 = sluice.status()
    g1 = st1["generation"]
    assert set(g1) == GENERATION_KEYS
    assert g1["generation"] == res1["generation"]
    assert g1["sha256"] == sha256_file(path1) == res1["sha256"]
    assert (g1["service_count"], g1["backend_count"]) == (1, 3)

    path2, res2 = sluice.apply(doc(web(topo, topo.backends), bad_service(topo)))
    g2 = sluice.status()["generation"]
    assert g2["generation"] == g1["generation"] + 1 == res2["generation"]
    assert g2["sha256"] == sha256_file(path2) != g1["sha256"]
    assert (g2["service_count"], g2["backend_count"]) == (2, 8)
    assert g2["applied_unix_ns"] >= g1["applied_unix_ns"]
    assert abs(g2["applied_unix_ns"] - time.time_ns()) < 120 * 10**9
    at = datetime.datetime.fromisoformat(g2["applied_at"].replace("Z", "+00:00"))
    assert at.utcoffset() == datetime.timedelta(0), g2["applied_at"]
    assert abs(at.timestamp() - g2["applied_unix_ns"] / 1e9) < 1.0


def test_status_shows_what_is_loaded(sluice):
    st = sluice.status()
    assert set(st) == STATUS_KEYS
    assert st["loaded"] is True
    assert os.path.realpath(st["pin_root"]) == os.path.realpath(sluice.pin_root)
    for p in st["programs"]:
        assert set(p) == PROGRAM_KEYS, p
        assert os.path.realpath(p["cgroup"]) == os.path.realpath(sluice.cgroup), p
        assert isinstance(p["id"], int) and isinstance(p["link_id"], int)
    assert {p["name"] for p in st["programs"]} == PROGRAMS
    for m in st["maps"]:
        assert set(m) == MAP_KEYS, m
    assert {"sl_services", "sl_backends", "sl_generation"} <= {m["name"] for m in st["maps"]}
    attached = E.bpftool_json("cgroup", "show", sluice.cgroup) or []
    assert {a["name"] for a in attached} == PROGRAMS, attached


# --- services / backends JSON contract ----------------------------------------------------

def test_services_and_backends_json_contract(sluice, topo):
    dns = svc("dns", VIP_DNS, 53, [be(h.v6, 5353, 2) for h in topo.backends[:2]], "maglev",
              protocol="udp")
    dns["vip"] = "fd00:96::53"
    sluice.apply(doc(web(topo), dns))

    services = sluice.services()
    assert isinstance(services, list) and len(services) == 2
    for s in services:
        assert set(s) == SERVICE_KEYS, s
        assert isinstance(s["refused"], dict) and "no_backend" in s["refused"], s
        assert all(isinstance(v, int) for v in s["refused"].values())
        for k in ("id", "port", "backend_count", "selected", "panic_selected"):
            assert isinstance(s[k], int), (k, s)
    by = {s["name"]: s for s in services}
    assert (by["web"]["vip"], by["web"]["port"], by["web"]["protocol"], by["web"]["family"],
            by["web"]["algorithm"], by["web"]["backend_count"]) == \
        (VIP4, PORT, "tcp", "ipv4", "round_robin", 3)
    assert (by["dns"]["vip"], by["dns"]["port"], by["dns"]["protocol"], by["dns"]["family"],
            by["dns"]["algorithm"], by["dns"]["backend_count"]) == \
        ("fd00:96::53", 53, "udp", "ipv6", "maglev", 2)

    backends = sluice.backends()
    assert len(backends) == 5
    for b in backends:
        assert set(b) == BACKEND_KEYS, b
        assert b["health"] in ("unknown", "up", "down")
        for k in ("id", "port", "weight", "selected", "established", "connect_failed",
                  "closed"):
            assert isinstance(b[k], int), (k, b)
    assert sorted((b["address"], b["port"], b["weight"]) for b in sluice.backends("dns")) == \
        sorted((h.v6, 5353, 2) for h in topo.backends[:2])
    assert {b["service"] for b in sluice.backends("web")} == {"web"}

    p = sluice.ctl("backends", "no-such-service")
    assert p.returncode == 1, f"unknown service: exit {p.returncode}"
    assert p.stderr.startswith("sluicectl:"), p.stderr
    pj = sluice.ctl("-j", "backends", "no-such-service")
    assert pj.returncode == 1 and set(json.loads(pj.stdout)) == {"error"}, pj.stdout

    human = sluice.ctl("services")
    assert human.returncode == 0
    assert sum(1 for line in human.stdout.splitlines() if "web" in line) == 1, human.stdout


# --- bpftool -------------------------------------------------------------------------

def test_bpftool_dump_has_named_fields(sluice, topo):
    sluice.apply(doc(web(topo)))
    entries = E.bpftool_json("map", "dump", "pinned", os.path.join(sluice.pin_root,
                                                                   "sl_services"))
    assert len(entries) == 1, entries
    f = entries[0].get("formatted")
    assert f is not None, f"no 'formatted' (BTF) in bpftool's dump: {entries[0]}"
    assert {"vip", "port", "proto", "family"} <= set(f["key"]), f["key"]
    assert {"id", "backend_count", "algorithm", "name"} <= set(f["value"]), f["value"]
    assert "web" in json.dumps(f["value"]["name"]), f["value"]["name"]
    for name in ("sl_backends", "sl_generation"):
        entries = E.bpftool_json("map", "dump", "pinned", os.path.join(sluice.pin_root, name))
        assert entries and all("formatted" in e for e in entries), (name, entries[:1])


# --- load / unload -------------------------------------------------------------------------

def test_load_twice_then_unload_leaves_nothing(private_sluice, topo):
    s = private_sluice()
    again = s.load()
    assert again.returncode == 0
    st = s.status()
    assert st["loaded"] is True and st["generation"] is None, "nothing applied yet: " + str(st)
    assert {p["name"] for p in st["programs"]} == PROGRAMS
    assert s.ctl_json("services") in (None, []), "nothing applied yet"
    prog_ids = [p["id"] for p in st["programs"]]
    attached = E.bpftool_json("cgroup", "show", s.cgroup) or []
    assert sorted(a["name"] for a in attached) == sorted(PROGRAMS), \
        f"after loading twice, {s.cgroup} has: {attached}"

    s.apply(doc(web(topo)))
    assert served_by(s, topo, n=12) == {h.identity for h in topo.backends[:3]}

    p = s.unload()
    assert p.returncode == 0, f"unload: exit {p.returncode}: {p.stderr}"
    assert not os.path.exists(s.pin_root), f"pins left: {E.list_pins(s.pin_root)}"
    assert (E.bpftool_json("cgroup", "show", s.cgroup) or []) == []
    deadline = time.monotonic() + 3
    alive = prog_ids
    while alive and time.monotonic() < deadline:
        alive = [i for i in prog_ids
                 if subprocess.run(["bpftool", "prog", "show", "id", str(i)],
                                     capture_output=True).returncode == 0]
        time.sleep(0.05 if alive else 0)
    assert not alive, f"programs still exist after unload: ids {alive}"
    out = s.client(topo.client.ns, "tcp", VIP4, PORT, "--count", 2, "--timeout", 1)
    assert out["errors"] == {"ENETUNREACH": 2}, f"VIP still balanced after unload: {out}"
    out = s.client(topo.client.ns, "tcp", topo.backends[0].v4, 8080, "--count", 2)
    assert out["backends"] == {topo.backends[0].identity: 2}
