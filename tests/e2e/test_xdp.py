# SPDX-License-Identifier: MIT
"""Rate limiting at XDP end to end (issue 5, the XDP half): sluice's sl_xdp
attached in native mode to the receiving veth ends of a small topology of its
own, then bounded floods from xdp_sender.py:

    s1 (10.201.1.2) eth0 ── eth1 (10.201.1.1) ┐
                                               rx   VIPs 10.96.8.10, 10.96.8.20 on lo
    s2 (10.201.2.2) eth0 ── eth2 (10.201.2.1) ┘      sl_xdp on eth1 and eth2

Every address and route is inside these namespaces (no default route; IPv6 off,
static neighbours, so nothing but the generator's packets reaches the VIPs).
The VIPs are addresses of rx, so the generator only ever sends to the
receiver's own namespace addresses. Counted at the receiver: UDP datagrams
read from a socket bound in rx, TCP segments by rx's `Tcp: InSegs` (no
listener: rx answers with RSTs, which s1/s2 ignore). What a limiter must admit
is computed from what the generator really did (test_ratelimit's
expected_admitted: window between first and last packet, less tokens a full
bucket wasted while no sender ran).

The VIPs are rx's own addresses (rx serves them itself), so sl_xdp_edge is attached
(`attach-xdp --no-forward`: limits and counters, no load balancing): every admitted
packet to a VIP goes up rx's stack, counted passed[not_forwarding], never forwarded.

Then the CLI: attaching twice, the mode reported, detach-xdp and unload
removing the link, against a second sluice (own pin root) and a veth pair of
its own. Known bugs are xfail(strict=True) with the bug in the reason."""
import json
import os
import socket
import subprocess
import time

import pytest

import sluice_e2e as E
from conftest import make_sluice
from sluice_e2e import XDP_DROPS, XDP_KEYS, XDP_PASSES, be, doc, svc
from test_ratelimit import expected_admitted
from topology import in_ns, sh

SENDER = os.path.join(E.HERE, "xdp_sender.py")
VIP_UDP = "10.96.8.10"
VIP_TCP = "10.96.8.20"
UDP_PORT = 5353
TCP_PORT = 80
PAYLOAD = 32
UDP_FRAME = 14 + 20 + 8 + PAYLOAD  # what XDP sees of one datagram (no FCS)
TCP_FRAME = 14 + 20 + 20

SRC_RATE, SRC_BURST = 1000, 200
SYN_RATE, SYN_BURST = 200, 50
ACCURACY = 0.10
START_DELAY = 0.4

# What sl_xdp_edge never does: forward, or keep flows.
XDP_FORWARDING = ("forwarded", "forwarded_bytes", "new_flows", "flow_hits", "flow_misses")
STATUS_XDP_KEYS = {"interface", "netns", "ifindex", "link_id", "prog_id", "program", "forward"}
IP_XDP_MODES = {1: "native", 2: "generic", 3: "offload"}

# --- topology ------------------------------------------------------------------------------

class XdpTopo:
    """Three namespaces: senders s1 and s2, each on its own veth pair to receiver rx."""

    def __init__(self, prefix):
        self.rx = f"{prefix}-rx"
        self.senders = [
            # (namespace, its address, rx's address on that link, rx's device, MACs)
            (f"{prefix}-s1", "10.201.1.2", "10.201.1.1", "eth1",
             "02:5a:00:01:00:02", "02:5a:00:01:00:01"),
            (f"{prefix}-s2", "10.201.2.2", "10.201.2.1", "eth2",
             "02:5a:00:02:00:02", "02:5a:00:02:00:01"),
        ]
        self.created = []

    @property
    def s1(self):
        return self.senders[0][0]

    @property
    def s2(self):
        return self.senders[1][0]

    def build(self):
        for ns in [self.rx, *(s[0] for s in self.senders)]:
            sh(["ip", "netns", "add", ns])
            self.created.append(ns)
            sh(in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"))
        rx = ["link set lo up", f"addr add {VIP_UDP}/32 dev lo", f"addr add {VIP_TCP}/32 dev lo"]
        for ns, addr, gw, dev, mac, rx_mac in self.senders:
            sh(["ip", "link", "add", dev, "netns", self.rx, "address", rx_mac, "type", "veth",
                "peer", "name", "eth0", "netns", ns, "address", mac])
            rx += [f"addr add {gw}/24 dev {dev}", f"link set {dev} up",
                   f"neigh replace {addr} lladdr {mac} dev {dev} nud permanent"]
            sh(in_ns(ns, "ip", "-batch", "-"), input="\n".join([
                "link set lo up", f"addr add {addr}/24 dev eth0", "link set eth0 up",
                f"neigh replace {gw} lladdr {rx_mac} dev eth0 nud permanent",
                f"route add 10.96.8.0/24 via {gw} dev eth0"]) + "\n")
        sh(in_ns(self.rx, "ip", "-batch", "-"), input="\n".join(rx) + "\n")

    def teardown(self):
        errors = []
        for ns in reversed(self.created):
            p = sh(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0 and os.path.exists(E.ns_path(ns)):
                errors.append(f"{ns}: {p.stderr.strip()}")
        self.created = []
        if errors:
            raise RuntimeError("could not delete namespaces: " + "; ".join(errors))


def veth_pair(ns, a, b):
    """A veth pair a <-> b inside namespace ns, both up; removed with the namespace."""
    sh(in_ns(ns, "ip", "link", "add", a, "type", "veth", "peer", "name", b))
    sh(in_ns(ns, "ip", "link", "set", a, "up"))
    sh(in_ns(ns, "ip", "link", "set", b, "up"))


def xdp_on(ns, dev):
    """(mode, prog id) of the XDP program the kernel has on dev, or None."""
    out = json.loads(sh(in_ns(ns, "ip", "-j", "-d", "link", "show", "dev", dev)).stdout)[0]
    x = out.get("xdp")
    if not x:
        return None
    return IP_XDP_MODES.get(x.get("mode"), str(x.get("mode"))), x.get("prog", {}).get("id")


def wait_xdp_gone(ns, dev, timeout=3.0):
    """Unpinning the last reference frees the link from a workqueue: poll, bounded."""
    deadline = time.monotonic() + timeout
    while xdp_on(ns, dev) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return xdp_on(ns, dev)


def ifindex(ns, dev):
    return json.loads(sh(in_ns(ns, "ip", "-j", "link", "show", "dev", dev)).stdout)[0]["ifindex"]


def snmp(ns):
    """{"Tcp": {...}, "Udp": {...}, ...} of namespace ns (/proc/net/snmp as seen from it)."""
    lines = sh(in_ns(ns, "cat", "/proc/net/snmp")).stdout.splitlines()
    out = {}
    for head, vals in zip(lines[::2], lines[1::2]):
        proto, names = head.split(":", 1)
        out[proto] = dict(zip(names.split(), map(int, vals.split(":", 1)[1].split())))
    return out


# --- sluice with XDP ------------------------------------------------------------------------

class Ctx:
    def __init__(self, topo, sluice):
        self.topo = topo
        self.sluice = sluice
        self.attached = {}  # device -> attach-xdp -j output

    def ctl_in(self, ns, *args, pin_root=None):
        """sluicectl inside namespace ns (nsenter: the pins stay visible)."""
        cmd = in_ns(ns, E.SLUICECTL, "--pin-root", pin_root or self.sluice.pin_root, *args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def ctl_json_in(self, ns, *args, pin_root=None):
        p = self.ctl_in(ns, "-j", *args, pin_root=pin_root)
        assert p.returncode == 0, (f"sluicectl -j {' '.join(args)} in {ns} exited "
                                   f"{p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
        return json.loads(p.stdout)

    def xdp_stats(self, name):
        """The "xdp" object of `stats NAME -j`, its key set checked."""
        out = self.sluice.ctl_json("stats", name)
        assert isinstance(out, list) and len(out) == 1, f"stats {name} -j: {out}"
        x = out[0]["xdp"]
        assert set(x) == XDP_KEYS and set(x["dropped"]) == XDP_DROPS \
            and set(x["passed"]) == XDP_PASSES, f"stats -j xdp: {x}"
        return x

    def senders(self, jobs, duration):
        """jobs: [(namespace, kind, host, port, rate, count, [extra args])]: one
        xdp_sender.py each, all starting at one CLOCK_MONOTONIC instant; their outputs."""
        start_at = time.monotonic() + START_DELAY
        procs = []
        try:
            for ns, kind, host, port, rate, count, extra in jobs:
                cmd = in_ns(ns, E.PY, SENDER, kind, host, str(port), "--rate", str(rate),
                            "--count", str(count), "--duration", str(duration),
                            "--start-at", f"{start_at:.6f}", *map(str, extra))
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
            outs = []
            for job, p in zip(jobs, procs):
                out, err = p.communicate(timeout=START_DELAY + duration + 30)
                assert p.returncode == 0, f"xdp_sender.py {job}: exit {p.returncode}: {err}"
                o = json.loads(out)
                assert not o["errors"], f"xdp_sender.py {job}: send errors {o['errors']}"
                outs.append(o)
            return outs
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def apply_fresh(sluice, document):
    """An empty document first: every service gets a new id, zeroed XDP counters and a
    full SYN bucket."""
    sluice.apply(doc())
    sluice.apply(document)


def services(global_xdp=None, syn=True):
    d = doc(svc("xdp-udp", VIP_UDP, UDP_PORT, [be("10.201.1.1", UDP_PORT)], protocol="udp"),
            svc("xdp-syn", VIP_TCP, TCP_PORT, [be("10.201.1.1", 8080)],
                **({"rate_limit": {"syn_per_second": SYN_RATE, "syn_burst": SYN_BURST}}
                   if syn else {})))
    if global_xdp:
        d["global"] = {"xdp": global_xdp}
    return d


@pytest.fixture(scope="module")
def xdp(prereqs, tmp_path_factory):
    """The topology, a sluice of its own, and sl_xdp_edge (--no-forward: rx serves the
    VIPs itself) attached natively to rx's eth1 and eth2 (run inside rx). Detached,
    unloaded and deleted afterwards, or by the janitor."""
    topo = XdpTopo(f"slx{os.getpid()}")
    token = E.JANITOR.add("xdp topology", topo.teardown)
    try:
        topo.build()
        sluice, s_token = make_sluice("xdp", str(tmp_path_factory.mktemp("xdp-registry")))
    except BaseException:
        E.JANITOR.run(token)
        raise
    ctx = Ctx(topo, sluice)
    try:
        for _, _, _, dev, _, _ in topo.senders:
            ctx.attached[dev] = ctx.ctl_json_in(topo.rx, "attach-xdp", dev, "--mode", "native",
                                                "--no-forward")
        yield ctx
    finally:
        errors = [e for e in (E.JANITOR.run(s_token), E.JANITOR.run(token)) if e]
        if errors:
            raise errors[0]


@pytest.fixture
def udp_receiver(xdp):
    """A UDP socket of rx bound to VIP_UDP:UDP_PORT, with room for every admitted datagram."""
    s = E.socket_in_ns(xdp.topo.rx, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
        s.bind((VIP_UDP, UDP_PORT))
        yield s
    finally:
        s.close()


def drain(s, quiet=0.3):
    """Datagrams waiting on s, by source address, until quiet seconds pass without one."""
    got = {}
    s.settimeout(quiet)
    while True:
        try:
            _, (addr, _) = s.recvfrom(2048)
        except socket.timeout:
            return got
        got[addr] = got.get(addr, 0) + 1


# --- tests ------------------------------------------------------------------------------------

def test_attached_native_and_status(xdp):
    """attach-xdp --mode native --no-forward on veth: native, not forwarding, and
    `status -j` names each link as the kernel has it (ifindex, link and program id) with
    the program in it (sl_xdp_edge)."""
    for dev, out in xdp.attached.items():
        assert out == {"interface": dev, "mode": "native", "forward": False}, \
            f"attach-xdp {dev} -j: {out}"
    st = xdp.sluice.status()
    assert isinstance(st["xdp"], list), st
    by_if = {x["interface"]: x for x in st["xdp"]}
    assert set(by_if) == {"eth1", "eth2"}, f"status -j xdp: {st['xdp']}"
    for dev, x in by_if.items():
        assert set(x) == STATUS_XDP_KEYS, f"status -j xdp keys: {x}"
        assert x["ifindex"] == ifindex(xdp.topo.rx, dev), x
        assert x["link_id"] > 0, x
        assert (x["program"], x["forward"]) == ("sl_xdp_edge", False), x
        assert xdp_on(xdp.topo.rx, dev) == ("native", x["prog_id"]), \
            f"{dev}: ip link says {xdp_on(xdp.topo.rx, dev)}, status -j {x}"


def test_source_rate_flood(xdp, udp_receiver):
    """One source flooding a UDP VIP is held to source_packets_per_second (burst + rate ×
    window, ±10%), a second source at less than the rate loses nothing, and sl_xdp's
    counters are exactly what the generators sent; then removing the global block
    lifts the limit."""
    apply_fresh(xdp.sluice, services({"source_packets_per_second": SRC_RATE,
                                      "source_burst": SRC_BURST}))
    t = xdp.topo
    before, snmp0 = xdp.xdp_stats("xdp-udp"), snmp(t.rx)
    flood, quiet = xdp.senders([
        (t.s1, "udp", VIP_UDP, UDP_PORT, 20000, 20000, ["--size", PAYLOAD]),
        (t.s2, "udp", VIP_UDP, UDP_PORT, SRC_RATE * 0.4, 400, ["--size", PAYLOAD]),
    ], duration=1.0)
    got = drain(udp_receiver)
    after, snmp1 = xdp.xdp_stats("xdp-udp"), snmp(t.rx)
    assert snmp1["Udp"]["RcvbufErrors"] == snmp0["Udp"]["RcvbufErrors"], \
        "the receiving socket dropped datagrams: counts below are not XDP's"

    want, window, detail = expected_admitted([flood], SRC_RATE, SRC_BURST)
    got1, got2 = got.get("10.201.1.2", 0), got.get("10.201.2.2", 0)
    print(f"source 1: {got1} of {flood['sent']} admitted, want {want:.0f} ({detail}); "
          f"source 2: {got2} of {quiet['sent']}")
    assert flood["sent"] > 5 * want, f"not a flood: {flood['sent']} sent, {want:.0f} allowed"
    assert abs(got1 - want) <= ACCURACY * want, \
        f"source 1: {got1} of {flood['sent']} admitted, want {want:.0f} ±10% ({detail})"
    assert got2 == quiet["sent"], f"source 2 lost {quiet['sent'] - got2} of {quiet['sent']}"
    assert set(got) <= {"10.201.1.2", "10.201.2.2"}, got

    sent = flood["sent"] + quiet["sent"]
    delta = {k: after[k] - before[k] for k in ("packets", "bytes", "syns", *XDP_FORWARDING)}
    dropped = {k: after["dropped"][k] - before["dropped"][k] for k in XDP_DROPS}
    passed = {k: after["passed"][k] - before["passed"][k] for k in XDP_PASSES}
    assert delta == {"packets": sent, "bytes": sent * UDP_FRAME, "syns": 0,
                     **{k: 0 for k in XDP_FORWARDING}}, \
        f"xdp counters {delta}, generators sent {sent} datagrams of {UDP_FRAME} bytes"
    assert dropped == {**{k: 0 for k in XDP_DROPS}, "source_rate": sent - got1 - got2}, \
        f"dropped {dropped}; received {got1 + got2} of {sent}"
    assert passed == {**{k: 0 for k in XDP_PASSES}, "not_forwarding": got1 + got2}, \
        f"passed {passed}; received {got1 + got2} of {sent}"

    # No global block: no per-source limit (the same flood source, nothing dropped).
    xdp.sluice.apply(services())
    before = xdp.xdp_stats("xdp-udp")
    (again,) = xdp.senders([(t.s1, "udp", VIP_UDP, UDP_PORT, 20000, 2000, ["--size", PAYLOAD])],
                           duration=1.0)
    got = drain(udp_receiver)
    after = xdp.xdp_stats("xdp-udp")
    assert got.get("10.201.1.2", 0) == again["sent"] == 2000, got
    assert after["packets"] - before["packets"] == 2000
    assert after["dropped"] == before["dropped"], f"{before} -> {after}"
    assert after["passed"]["not_forwarding"] - before["passed"]["not_forwarding"] == 2000
    assert all(after[k] == before[k] for k in XDP_FORWARDING), f"{before} -> {after}"


def test_syn_rate(xdp):
    """SYNs to a VIP from two sources are held together to its syn_per_second (burst +
    rate × window, ±10%); ACK and SYN+ACK segments to it are not limited; counters exact."""
    apply_fresh(xdp.sluice, services())
    t = xdp.topo
    before, snmp0 = xdp.xdp_stats("xdp-syn"), snmp(t.rx)
    floods = xdp.senders([
        (t.s1, "tcp", VIP_TCP, TCP_PORT, 3000, 3000, ["--flags", "syn"]),
        (t.s2, "tcp", VIP_TCP, TCP_PORT, 3000, 3000, ["--flags", "syn"]),
    ], duration=1.0)
    time.sleep(0.1)
    mid, snmp1 = xdp.xdp_stats("xdp-syn"), snmp(t.rx)
    syns = sum(f["sent"] for f in floods)
    admitted = snmp1["Tcp"]["InSegs"] - snmp0["Tcp"]["InSegs"]
    want, window, detail = expected_admitted(floods, SYN_RATE, SYN_BURST)
    print(f"{admitted} of {syns} SYNs admitted, want {want:.0f} ({detail})")
    assert syns > 5 * want, f"not a flood: {syns} SYNs sent, {want:.0f} allowed"
    assert abs(admitted - want) <= ACCURACY * want, \
        f"{admitted} of {syns} SYNs reached rx, want {want:.0f} ±10% ({detail})"
    assert mid["packets"] - before["packets"] == syns
    assert mid["bytes"] - before["bytes"] == syns * TCP_FRAME
    assert mid["syns"] - before["syns"] == syns
    assert mid["dropped"]["syn_rate"] - before["dropped"]["syn_rate"] == syns - admitted, \
        f"dropped {mid['dropped']} (before {before['dropped']}), {admitted} of {syns} admitted"
    assert mid["dropped"]["source_rate"] == before["dropped"]["source_rate"]
    assert all(mid["dropped"][k] == before["dropped"][k] for k in XDP_DROPS - {"syn_rate"}), \
        f"dropped {mid['dropped']} (before {before['dropped']})"
    assert mid["passed"]["not_forwarding"] - before["passed"]["not_forwarding"] == admitted, \
        f"passed {mid['passed']} (before {before['passed']}), {admitted} of {syns} admitted"
    assert all(mid[k] == before[k] for k in XDP_FORWARDING), f"{before} -> {mid}"

    # The bucket is empty now; segments that are not a SYN without ACK all pass.
    others = xdp.senders([
        (t.s1, "tcp", VIP_TCP, TCP_PORT, 3000, 300, ["--flags", "ack"]),
        (t.s2, "tcp", VIP_TCP, TCP_PORT, 3000, 300, ["--flags", "synack"]),
    ], duration=1.0)
    time.sleep(0.1)
    after, snmp2 = xdp.xdp_stats("xdp-syn"), snmp(t.rx)
    n = sum(f["sent"] for f in others)
    assert n == 600
    assert snmp2["Tcp"]["InSegs"] - snmp1["Tcp"]["InSegs"] == n
    assert after["packets"] - mid["packets"] == n
    assert after["syns"] == mid["syns"] and after["dropped"] == mid["dropped"], \
        f"{mid} -> {after}"
    assert after["passed"]["not_forwarding"] - mid["passed"]["not_forwarding"] == n
    assert all(after[k] == mid[k] for k in XDP_FORWARDING), f"{mid} -> {after}"


def test_attach_twice_is_harmless(xdp, udp_receiver):
    """attach-xdp again keeps the one link (same link id, one status entry) with a fresh
    program in it, and the datapath keeps counting."""
    t = xdp.topo
    old = {x["interface"]: x for x in xdp.sluice.status()["xdp"]}
    out = xdp.ctl_json_in(t.rx, "attach-xdp", "eth1", "--mode", "native", "--no-forward")
    assert out == {"interface": "eth1", "mode": "native", "forward": False}, out
    new = {x["interface"]: x for x in xdp.sluice.status()["xdp"]}
    assert set(new) == {"eth1", "eth2"}, new
    assert new["eth1"]["link_id"] == old["eth1"]["link_id"], f"{old} -> {new}"
    assert new["eth2"] == old["eth2"], f"{old} -> {new}"
    assert xdp_on(t.rx, "eth1") == ("native", new["eth1"]["prog_id"])
    assert (new["eth1"]["program"], new["eth1"]["forward"]) == ("sl_xdp_edge", False), new

    apply_fresh(xdp.sluice, services())
    (s,) = xdp.senders([(t.s1, "udp", VIP_UDP, UDP_PORT, 5000, 100, ["--size", PAYLOAD])],
                       duration=1.0)
    assert drain(udp_receiver).get("10.201.1.2") == s["sent"] == 100
    x = xdp.xdp_stats("xdp-udp")
    assert (x["packets"], x["passed"]["not_forwarding"], x["forwarded"]) == (100, 100, 0), x


@pytest.fixture
def own_sluice(xdp, tmp_path):
    """A second sluice (own cgroup and pin root), for tests that detach and unload; and
    a veth pair lc0/lc1 in rx (and another lc0/lc1 in s2) to attach to."""
    s, token = make_sluice("xdpu", str(tmp_path))
    try:
        veth_pair(xdp.topo.rx, "lc0", "lc1")
        veth_pair(xdp.topo.s2, "lc0", "lc1")
        yield s
    finally:
        for ns in (xdp.topo.rx, xdp.topo.s2):
            sh(in_ns(ns, "ip", "link", "del", "lc0"), check=False)
        err = E.JANITOR.run(token)
        if err:
            raise err


def test_detach_and_unload(xdp, own_sluice):
    """generic and native mode as asked; detach-xdp removes the link (status -j "xdp"
    empty, nothing on the device); unload removes an attached link too."""
    rx, pin = xdp.topo.rx, own_sluice.pin_root
    out = xdp.ctl_json_in(rx, "attach-xdp", "lc0", "--mode", "generic", pin_root=pin)
    assert out == {"interface": "lc0", "mode": "generic", "forward": True}, out
    (x,) = own_sluice.status()["xdp"]
    assert xdp_on(rx, "lc0") == ("generic", x["prog_id"])
    assert (x["program"], x["forward"]) == ("sl_xdp", True), x
    out = xdp.ctl_json_in(rx, "detach-xdp", "lc0", pin_root=pin)
    assert out == {"interface": "lc0", "detached": True}, out
    assert own_sluice.status()["xdp"] == []
    assert wait_xdp_gone(rx, "lc0") is None

    out = xdp.ctl_json_in(rx, "attach-xdp", "lc0", pin_root=pin)  # no --mode: native first
    assert out == {"interface": "lc0", "mode": "native", "forward": True}, out
    (x,) = own_sluice.status()["xdp"]
    assert x["interface"] == "lc0" and x["ifindex"] == ifindex(rx, "lc0"), x
    assert xdp_on(rx, "lc0") == ("native", x["prog_id"])
    p = xdp.ctl_in(rx, "detach-xdp", "lc1", pin_root=pin)
    assert p.returncode != 0 and "lc1" in p.stderr, (p.returncode, p.stderr)
    assert xdp_on(rx, "lc0") is not None, "detach-xdp lc1 touched lc0"

    # The module's sluice is unaffected throughout.
    assert {x["interface"] for x in xdp.sluice.status()["xdp"]} == {"eth1", "eth2"}

    p = own_sluice.unload()
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(pin), E.list_pins(pin)
    assert wait_xdp_gone(rx, "lc0") is None, "unload left sl_xdp on lc0"
    assert xdp_on(rx, "eth1") is not None, "unloading another pin root detached ours"


def test_reattach_reports_the_links_mode(xdp, own_sluice):
    rx, pin = xdp.topo.rx, own_sluice.pin_root
    xdp.ctl_json_in(rx, "attach-xdp", "lc0", "--mode", "native", pin_root=pin)
    out = xdp.ctl_json_in(rx, "attach-xdp", "lc0", "--mode", "generic", pin_root=pin)
    real = xdp_on(rx, "lc0")[0]
    assert out["mode"] == real, f"attach-xdp -j says {out['mode']}, the kernel has {real}"


def test_same_name_in_another_namespace(xdp, own_sluice):
    t, pin = xdp.topo, own_sluice.pin_root
    xdp.ctl_json_in(t.rx, "attach-xdp", "lc0", "--mode", "native", pin_root=pin)
    out = xdp.ctl_json_in(t.s2, "attach-xdp", "lc0", "--mode", "native", pin_root=pin)
    assert out == {"interface": "lc0", "mode": "native", "forward": True}, out
    assert xdp_on(t.s2, "lc0") is not None, "attach-xdp lc0 in s2 exited 0, s2's lc0 has no XDP"
