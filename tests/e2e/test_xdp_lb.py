# SPDX-License-Identifier: MIT
"""Load balancing at XDP end to end (issue 6): sl_xdp attached natively to the
client-facing veth of a node namespace forwards VIP traffic to backends by L2
direct server return, in a topology of its own:

    c   c0 10.203.0.2 fd00:203::2 ─── n0 10.203.0.1 fd00:203::1   n (the node)
        routes: VIPs via n0             sl_xdp on n0; ip_forward, rp_filter 0
                                        nbI 10.204.I.1 fd00:204:I::1 ─── eth0 10.204.I.2
                                                                          fd00:204:I::2   bI

Backends b1..b4 (the services use b1-b3; b4 is added by a test) are prepared
only by scripts/xdp-backend-setup.sh (once per VIP), plus their addresses and a
default route via the node. Each runs nginx on port 80 (keep-alive, answering
"bI", an access log of its own) and, in the test process, a UDP socket bound to
each VIP's port 80 answering "bI" (from the VIP). The client's frames leave c0
with TX checksumming off: veth otherwise hands CHECKSUM_PARTIAL frames, whose
checksum an XDP redirect loses (a real NIC delivers complete checksums). The
node has a neighbour entry for every backend (one ping each): sl_xdp cannot
resolve neighbours.

The client (curl, wrk, the test's own sockets in c) is in no sluice cgroup, so
only XDP balances it; connects made in the node from sluice's cgroup go through
the socket datapath (used to open a breaker). Everything is named with a
per-run prefix and removed at the end, processes by PID. Known bugs are
xfail(strict=True) with the bug in the reason."""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

import sluice_e2e as E
from conftest import make_sluice
from sluice_e2e import be, doc, svc

# Blocks of sl_xdp's per-CPU maps (sluice/xdp.h): SL_MAX_SERVICES, SL_MAX_BACKENDS.
XDP_CPU_STRIDE = {"sl_xdp_stats": 16384, "sl_xdp_backend": 131072}


def possible_cpus():
    """The kernel's possible CPUs ("0-1", "0,2-5"): libbpf_num_possible_cpus()."""
    with open("/sys/devices/system/cpu/possible") as f:
        return max(int(part.split("-")[-1]) for part in f.read().strip().split(",")) + 1
from sluice_e2e import XDP_DROPS, XDP_KEYS, XDP_PASSES
from topology import in_ns, sh

SETUP = os.path.join(E.REPO, "scripts", "xdp-backend-setup.sh")
VIP4 = "10.96.9.1"
CLIENT4 = "10.203.0.2"  # the client namespace's address (Topology below)
VIP6 = "fd00:96::1"
VIP_COUNT = "10.96.9.2"  # only the counter test sends to it: no stray packet can reach it
PORT = 80
NODE_PORT = 8080  # a server of the node itself, on its own address (not a VIP)
N_BACKENDS = 4
IN_SERVICE = 3  # b1..b3; b4 joins in test_long_lived_connection_survives_backend_changes

SL_HEALTH_DOWN = 2
SL_BACKEND_HEALTH_BYTE = 27  # struct sl_backend: the last byte (include/sluice/backend.h)

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format lb '$remote_addr $remote_port $server_addr $connection $connection_requests';
    access_log {dir}/access.log lb;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 80;
        listen [::]:80 ipv6only=on;
        location / {{
            default_type text/plain;
            return 200 "{name}\\n";
        }}
    }}
}}
"""


# --- topology ----------------------------------------------------------------------------

class Backend:
    def __init__(self, prefix, i):
        self.name = f"b{i}"
        self.ns = f"{prefix}-b{i}"
        self.node_dev = f"nb{i}"
        self.v4, self.gw4 = f"10.204.{i}.2", f"10.204.{i}.1"
        self.v6, self.gw6 = f"fd00:204:{i}::2", f"fd00:204:{i}::1"

    def __repr__(self):
        return f"Backend({self.name}, {self.ns})"


class LbTopo:
    """Client c, node n, backends b1..bN; each backend on its own veth pair to n."""

    def __init__(self, prefix, n_backends):
        self.prefix = prefix
        self.c = f"{prefix}-c"
        self.n = f"{prefix}-n"
        self.backends = [Backend(prefix, i) for i in range(1, n_backends + 1)]
        self.created = []

    def backend(self, name):
        return next(b for b in self.backends if b.name == name)

    def build(self):
        for ns in [self.c, self.n, *(b.ns for b in self.backends)]:
            sh(["ip", "netns", "add", ns])
            self.created.append(ns)
            sh(in_ns(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                     "net.ipv6.conf.default.accept_dad=0"))
        sh(["ip", "link", "add", "c0", "netns", self.c, "type", "veth",
            "peer", "name", "n0", "netns", self.n])
        sh(in_ns(self.c, "ip", "-batch", "-"), input="\n".join([
            "link set lo up", "addr add 10.203.0.2/24 dev c0",
            "addr add fd00:203::2/64 dev c0 nodad", "link set c0 up",
            "route add 10.96.9.0/24 via 10.203.0.1",
            "route add 10.204.0.0/16 via 10.203.0.1",
            "route add fd00:96::/64 via fd00:203::1",
            "route add fd00:204::/32 via fd00:203::1"]) + "\n")
        # The trap: veth's TX checksum offload, lost by an XDP redirect. A wire's frames
        # carry complete checksums.
        sh(in_ns(self.c, "ethtool", "-K", "c0", "tx", "off"))
        node = ["link set lo up", "addr add 10.203.0.1/24 dev n0",
                "addr add fd00:203::1/64 dev n0 nodad", "link set n0 up"]
        for b in self.backends:
            sh(["ip", "link", "add", b.node_dev, "netns", self.n, "type", "veth",
                "peer", "name", "eth0", "netns", b.ns])
            node += [f"addr add {b.gw4}/24 dev {b.node_dev}",
                     f"addr add {b.gw6}/64 dev {b.node_dev} nodad", f"link set {b.node_dev} up"]
            sh(in_ns(b.ns, "ip", "-batch", "-"), input="\n".join([
                "link set lo up", f"addr add {b.v4}/24 dev eth0",
                f"addr add {b.v6}/64 dev eth0 nodad", "link set eth0 up",
                f"route add default via {b.gw4}", f"route add default via {b.gw6}"]) + "\n")
        sh(in_ns(self.n, "ip", "-batch", "-"), input="\n".join(node) + "\n")
        sysctls = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                   "net.ipv4.conf.n0.rp_filter=0",
                   *(f"net.ipv4.conf.{b.node_dev}.rp_filter=0" for b in self.backends)]
        sh(in_ns(self.n, "sysctl", "-q", "-w", *sysctls))

    def resolve_neighbours(self):
        """One ping from the node to each backend address: the neighbour entries sl_xdp's
        FIB lookups need (it passes a packet it has no neighbour for, to the stack)."""
        for b in self.backends:
            for addr in (b.v4, b.v6):
                sh(in_ns(self.n, "ping", "-c", "1", "-W", "2", addr))

    def teardown(self):
        errors = []
        for ns in reversed(self.created):
            p = sh(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0 and os.path.exists(E.ns_path(ns)):
                errors.append(f"{ns}: {p.stderr.strip()}")
        self.created = []
        if errors:
            raise RuntimeError("could not delete namespaces: " + "; ".join(errors))


def backend_setup(ns, *args):
    return subprocess.run([SETUP, ns, *args], capture_output=True, text=True, timeout=60)


# --- servers ------------------------------------------------------------------------------

class Nginx:
    """nginx in one backend namespace (one process: master_process off), by PID."""

    def __init__(self, backend, workdir):
        self.b = backend
        self.dir = os.path.join(workdir, f"nginx-{backend.name}")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, name=backend.name))
        self.access_log = os.path.join(self.dir, "access.log")
        self.proc = None
        self.token = None

    def start(self, n_ns, timeout=10.0):
        self.proc = subprocess.Popen(in_ns(self.b.ns, "nginx", "-p", self.dir, "-c", self.conf,
                                           "-e", os.path.join(self.dir, "error.log")),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.token = E.JANITOR.add(f"nginx {self.proc.pid}", self._end)
        deadline = time.monotonic() + timeout
        while True:  # listening on both families, seen from the node
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx in {self.b.ns} exited {self.proc.returncode}: "
                                   f"{self.error_log()}")
            try:
                for addr in (self.b.v4, self.b.v6):
                    assert direct_get(n_ns, addr, PORT) == self.b.name
                return
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx in {self.b.ns} does not answer on port {PORT} "
                                       f"after {timeout} s: {self.error_log()}")
                time.sleep(0.02)

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-2000:]
        except FileNotFoundError:
            return ""

    def _end(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # nsenter exec'd nginx: this PID is nginx
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(timeout=5)

    def stop(self):
        """Once this returns, port 80 refuses connects (RST)."""
        err = E.JANITOR.run(self.token)
        if err:
            raise err

    def log_lines(self):
        with open(self.access_log) as f:
            return f.read().splitlines()


class UdpEcho:
    """Sockets of every backend namespace bound to VIP:80 of each family (so a reply
    leaves from the VIP), answering each datagram with the backend's name; served by a
    thread of the test process."""

    def __init__(self, backends, vips):
        self.stop_ev = threading.Event()
        self.socks = []
        for b in backends:
            for vip in vips:
                fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
                s = E.socket_in_ns(b.ns, fam, socket.SOCK_DGRAM)
                s.bind((vip, PORT))
                s.settimeout(0.1)
                self.socks.append((s, b.name.encode() + b"\n"))
        self.threads = [threading.Thread(target=self._serve, args=x, daemon=True)
                        for x in self.socks]
        for t in self.threads:
            t.start()

    def _serve(self, s, reply):
        while not self.stop_ev.is_set():
            try:
                _, addr = s.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                s.sendto(reply, addr)
            except OSError:
                pass

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=2)
        for s, _ in self.socks:
            s.close()


# --- client side (sockets of the client namespace, made by this process) -------------------

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect(ns, host, port, bind_port=None, timeout=2.0):
    s = E.socket_in_ns(ns, family(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if bind_port is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if ":" in host else "0.0.0.0", bind_port))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def http_get(s, close=False):
    """One HTTP/1.1 request on connected socket s; the reply's body (stripped). Raises
    on anything but a complete 200 reply."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: sluice-e2e\r\n" +
              (b"Connection: close\r\n" if close else b"") + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before the reply's header: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200 "):
        raise ConnectionError(f"reply {status!r}")
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if not m:
        raise ConnectionError(f"no Content-Length in {head!r}")
    while len(body) < int(m.group(1)):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the reply's body")
        body += chunk
    return body.decode().strip()


def reset_close(s):
    """Closes s with an RST (SO_LINGER 0): no TIME_WAIT, its 4-tuple is free at once."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def direct_get(ns, host, port, timeout=2.0):
    """One connection, one request: the name of whoever answered."""
    s = connect(ns, host, port, timeout=timeout)
    try:
        return http_get(s, close=True)
    finally:
        s.close()


def answers(ns, host, n, port=PORT):
    """n connections one after the other, each open until all are made (so each has its
    own source port); {answer: count}."""
    got, socks = {}, []
    try:
        for _ in range(n):
            s = connect(ns, host, port)
            socks.append(s)
            a = http_get(s)
            got[a] = got.get(a, 0) + 1
    finally:
        for s in socks:
            s.close()
    return got


def udp_answers(ns, host, n, timeout=1.0):
    """n unconnected UDP sockets (n source ports), one datagram each to host:80; the
    replies by (source address, port) and by answer."""
    socks, sources, got = [], {}, {}
    try:
        for _ in range(n):
            s = E.socket_in_ns(ns, family(host), socket.SOCK_DGRAM)
            socks.append(s)
            s.settimeout(timeout)
            s.sendto(b"who\n", (host, PORT))
            data, src = s.recvfrom(2048)
            sources[src[:2]] = sources.get(src[:2], 0) + 1
            a = data.decode().strip()
            got[a] = got.get(a, 0) + 1
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == n, f"{n} sockets, {len(ports)} source ports"
    finally:
        for s in socks:
            s.close()
    return sources, got


# --- sluice -------------------------------------------------------------------------------

class Ctx:
    def __init__(self, topo, sluice, nginx, workdir):
        self.topo = topo
        self.sluice = sluice
        self.nginx = nginx  # name -> Nginx
        self.workdir = workdir

    def ctl_in(self, ns, *args):
        cmd = in_ns(ns, E.SLUICECTL, "--pin-root", self.sluice.pin_root, *args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def ctl_json_in(self, ns, *args):
        p = self.ctl_in(ns, "-j", *args)
        assert p.returncode == 0, (f"sluicectl -j {' '.join(args)} in {ns} exited "
                                   f"{p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
        return json.loads(p.stdout)

    def attach(self, *extra):
        return self.ctl_json_in(self.topo.n, "attach-xdp", "n0", "--mode", "native", *extra)

    def xdp_link(self):
        links = self.sluice.status()["xdp"]
        assert [x["interface"] for x in links] == ["n0"], f"status -j xdp: {links}"
        return links[0]

    def xdp_stats(self, name):
        out = self.sluice.ctl_json("stats", name)
        assert isinstance(out, list) and len(out) == 1, f"stats {name} -j: {out}"
        x = out[0]["xdp"]
        assert set(x) == XDP_KEYS and set(x["dropped"]) == XDP_DROPS \
            and set(x["passed"]) == XDP_PASSES, f"stats -j xdp: {x}"
        return x

    def be_xdp(self, service):
        """{backend name: its "xdp" counters} of one service (sluicectl backends -j)."""
        out = {}
        for b in self.sluice.backends(service):
            addr = b["address"]
            name = next(x.name for x in self.topo.backends if addr in (x.v4, x.v6))
            out[name] = dict(b["xdp"], id=b["id"], health=b["health"])
        return out

    def pinned_sum(self, map_name, key, part=None):
        """The value of id key in a pinned per-CPU map of sl_xdp (or its member part),
        summed over CPUs (bpftool's BTF view): one block of XDP_CPU_STRIDE[map_name]
        entries per possible CPU, the README's "cpu * stride + id"."""
        stride = XDP_CPU_STRIDE[map_name]
        total = {}
        for cpu in range(possible_cpus()):
            k = cpu * stride + key
            e = E.bpftool_json("map", "lookup", "pinned",
                               os.path.join(self.sluice.pin_root, map_name),
                               "key", *(str(b) for b in k.to_bytes(4, "little")))
            value = e["formatted"]["value"]
            for f, x in (value[part] if part else value).items():
                if isinstance(x, list):
                    total[f] = [a + b for a, b in zip(total.get(f, [0] * len(x)), x)]
                else:
                    total[f] = total.get(f, 0) + x
        return total

    def set_health(self, backend_id, health):
        """Writes the health byte of sl_backends[backend_id] and of its copy in
        sl_be_health (struct sl_be_health: svc_id, then health), as the agent's checks do."""
        pin = os.path.join(self.sluice.pin_root, "sl_backends")
        key = [str(b) for b in backend_id.to_bytes(4, "little")]
        e = E.bpftool_json("map", "lookup", "pinned", pin, "key", *key)
        value = [int(x, 16) for x in e["value"]]
        assert len(value) == 28, e
        value[SL_BACKEND_HEALTH_BYTE] = health
        E.bpftool_json("map", "update", "pinned", pin, "key", *key,
                       "value", *(str(v) for v in value))
        copy = value[16:20] + [health, 0, 0, 0]  # svc_id is bytes 16..19 of sl_backend
        E.bpftool_json("map", "update", "pinned",
                       os.path.join(self.sluice.pin_root, "sl_be_health"), "key", *key,
                       "value", *(str(v) for v in copy))


def _mix64(x):
    """sl_mix64 (include/sluice/hash.h), bit for bit."""
    m = (1 << 64) - 1
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & m
    x ^= x >> 33
    x = (x * 0xc4ceb9fe1a85ec53) & m
    return x ^ (x >> 33)


def _be16(port):
    """A port as the kernel holds it (network order), read as a little-endian u16."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def _flow_fp(words, seed):
    """sl_flow_fp (include/sluice/flow.h) of a key given as its five 64-bit words."""
    m = (1 << 64) - 1
    mults = (0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb, 0x9e3779b97f4a7c15,
             0xbf58476d1ce4e5b9)
    x = ((seed ^ words[0]) * mults[0]) & m
    for w, k in zip(words[1:], mults[1:]):
        x = ((x ^ x >> 29 ^ w) * k) & m
    return x ^ (x >> 31)


def flow_ways(lb, src, dst, sport, dport, proto=6):
    """The ways of sl_xdp_flows that hold the IPv4 flow, from bpftool's view of its bucket
    (sl_flow_hash, sl_flow_bucket_of, sl_flow_fp and sl_flow_holds of include/sluice/flow.h,
    redone here with the table's seed from sl_xdp_fp_seed)."""
    s = int.from_bytes(socket.inet_aton(src), "little")
    d = int.from_bytes(socket.inet_aton(dst), "little")
    ports = (_be16(sport) << 32) | (_be16(dport) << 16) | proto
    h = _mix64(((s << 32) | d) ^ _mix64(ports))
    root = lb.sluice.pin_root
    seed = int.from_bytes(bytes(int(b, 16) for b in E.bpftool_json(
        "map", "lookup", "pinned", os.path.join(root, "sl_xdp_fp_seed"),
        "key", "0", "0", "0", "0")["value"]), "little")
    # The key's words: src, dst (an IPv4 address in the first of four words), then
    # sport, dport, proto and family (4) packed into the fifth.
    fp = _flow_fp([s, 0, d, 0, _be16(sport) | _be16(dport) << 16 | proto << 32 | 4 << 40], seed)
    pin = os.path.join(root, "sl_xdp_flows")
    buckets = E.bpftool_json("map", "show", "pinned", pin)["max_entries"]
    bucket = (h >> 32) & (buckets - 1)
    e = E.bpftool_json("map", "lookup", "pinned", pin,
                       "key", *(str(b) for b in bucket.to_bytes(4, "little")))
    bind = lambda w: ((w["svc_id"] << 32 | w["backend_id"]) * 0xff51afd7ed558ccd) & ((1 << 64) - 1)
    return [w for w in e["formatted"]["value"]["way"]
            if w["backend_id"] and w["fp"] ^ fp == bind(w)]


def backends_of(topo, names, fam=4):
    return [be(topo.backend(n).v4 if fam == 4 else topo.backend(n).v6, PORT) for n in names]


BASE = [f"b{i}" for i in range(1, IN_SERVICE + 1)]


def document(topo, web4=BASE, extra=()):
    """web4/web6 (maglev, TCP), udp4/udp6 (maglev, UDP) and count4 (maglev, TCP, only the
    counter test sends to it)."""
    return doc(svc("web4", VIP4, PORT, backends_of(topo, web4), "maglev"),
               svc("web6", VIP6, PORT, backends_of(topo, BASE, 6), "maglev"),
               svc("udp4", VIP4, PORT, backends_of(topo, BASE), "maglev", protocol="udp"),
               svc("udp6", VIP6, PORT, backends_of(topo, BASE, 6), "maglev", protocol="udp"),
               svc("count4", VIP_COUNT, PORT, backends_of(topo, BASE), "maglev"),
               *extra)


def apply_fresh(sluice, document):
    """An empty document first: every service and backend gets a new id (zero counters,
    closed breakers)."""
    sluice.apply(doc())
    sluice.apply(document)


@pytest.fixture(scope="module")
def lb(prereqs, tmp_path_factory):
    for tool in ("nginx", "wrk", "ethtool", "ping"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    workdir = str(tmp_path_factory.mktemp("xdp-lb"))
    topo = LbTopo(f"sll{os.getpid()}", N_BACKENDS)
    tokens = [E.JANITOR.add("xdp lb topology", topo.teardown)]
    nginx = {}

    def cleanup():
        # Processes first (by PID), then sluice, then the namespaces.
        errors = [E.JANITOR.run(x.token) for x in nginx.values() if x.token]
        errors += [E.JANITOR.run(tk) for tk in reversed(tokens)]
        return [e for e in errors if e]

    try:
        topo.build()
        for b in topo.backends:
            for vip in (VIP4, VIP6, VIP_COUNT):
                p = backend_setup(b.ns, vip)
                assert p.returncode == 0, f"xdp-backend-setup.sh {b.ns} {vip}: {p.stderr}"
        for b in topo.backends:
            nginx[b.name] = Nginx(b, workdir)
            nginx[b.name].start(topo.n)
        udp = UdpEcho(topo.backends, (VIP4, VIP6))
        tokens.append(E.JANITOR.add("udp echo", udp.stop))
        topo.resolve_neighbours()
        sluice, s_token = make_sluice("xlb", workdir)
        tokens.append(s_token)
        ctx = Ctx(topo, sluice, nginx, workdir)
        sluice.apply(document(topo))
        out = ctx.attach()
        assert out == {"interface": "n0", "mode": "native", "forward": True}, out
    except BaseException:
        for e in cleanup():
            print(f"sluice-e2e: {e}")
        raise
    try:
        yield ctx
    finally:
        errors = cleanup()
        if errors:
            raise errors[0]


# --- tests --------------------------------------------------------------------------------

CURL_LINE = re.compile(r"^(?P<body>\S*)\n(?P<port>\d+) (?P<code>\d{3})$", re.M)


def curl_many(ns, url, n, *extra):
    """n curl runs in ns, one after the other (each a new connection); [(answer, local
    port, HTTP code)]."""
    script = ('n=$1; shift; i=0; while [ $i -lt "$n" ]; do i=$((i+1)); '
              'curl -sS --max-time 2 -w "%{local_port} %{http_code}\\n" "$@" || echo "FAIL $?"; '
              'done')
    p = subprocess.run(in_ns(ns, "sh", "-c", script, "curl_many", str(n), *extra, url),
                       capture_output=True, text=True, timeout=60, env=E.CLEAN_ENV)
    assert p.returncode == 0 and "FAIL" not in p.stdout, f"curl {url}: {p.stdout} {p.stderr}"
    got = [(m["body"], int(m["port"]), int(m["code"])) for m in CURL_LINE.finditer(p.stdout)]
    assert len(got) == n, f"{n} curl runs, {len(got)} answers: {p.stdout!r}"
    return got


def test_curl_reaches_every_backend_and_wrk_keepalive(lb):
    """Many curl connections (distinct source ports) to VIP4 get answers from every
    backend; wrk with keep-alive for 3 s: no socket error, no non-2xx, requests spread
    over all backends (their access logs), and the per-backend XDP counters agree."""
    t = lb.topo
    got = curl_many(t.c, f"http://{VIP4}/", 30)
    assert all(code == 200 for _, _, code in got), got
    assert len({port for _, port, _ in got}) == 30, f"source ports reused: {got}"
    by = {}
    for body, _, _ in got:
        by[body] = by.get(body, 0) + 1
    assert set(by) == set(BASE), f"30 connections to {VIP4} answered by {by}"

    before_logs = {n: len(x.log_lines()) for n, x in lb.nginx.items()}
    before_be = lb.be_xdp("web4")
    p = subprocess.run(in_ns(t.c, "wrk", "-t", "2", "-c", "32", "-d", "3s", "--timeout", "2s",
                             f"http://{VIP4}/"),
                       capture_output=True, text=True, timeout=30, env=E.CLEAN_ENV)
    assert p.returncode == 0, f"wrk: {p.stdout} {p.stderr}"
    print(p.stdout)
    m = re.search(r"(\d+) requests in", p.stdout)
    assert m, p.stdout
    requests = int(m.group(1))
    assert "Socket errors" not in p.stdout, f"wrk: {p.stdout}"
    assert "Non-2xx" not in p.stdout, f"wrk: {p.stdout}"
    assert requests > 1000, f"wrk made only {requests} requests: {p.stdout}"
    lines = {n: x.log_lines()[before_logs[n]:] for n, x in lb.nginx.items()}
    served = {n: len(v) for n, v in lines.items()}
    # Access log: client address, port, server address, connection number, its requests.
    conns = {(n, line.split()[3]) for n, v in lines.items() for line in v}
    print(f"wrk: {requests} requests, served by {served} on {len(conns)} connections")
    assert len(conns) == 32, f"keep-alive: wrk's 32 connections, servers saw {len(conns)}"
    assert all(line.split()[2] == VIP4 for v in lines.values() for line in v), \
        "a request reached a server addressed to something else than the VIP"
    # Every reply wrk counted was served; a few may be in flight when wrk stops.
    assert sum(served.values()) >= requests, f"wrk counted {requests}, servers {served}"
    assert sum(served.values()) <= requests + 32, f"wrk counted {requests}, servers {served}"
    assert all(served[n] > 0 for n in BASE) and served["b4"] == 0, served
    after_be = lb.be_xdp("web4")
    flows = {n: after_be[n]["new_flows"] - before_be[n]["new_flows"] for n in BASE}
    pkts = {n: after_be[n]["packets"] - before_be[n]["packets"] for n in BASE}
    # wrk connects once to test the address (and closes), then opens its 32 connections.
    assert sum(flows.values()) == 33 and all(flows[n] > 0 for n in BASE), \
        f"wrk's 1 + 32 connections as new XDP flows: {flows}"
    # Each request is at least one packet from the client (plus ACKs).
    assert all(pkts[n] >= served[n] for n in BASE), f"XDP packets {pkts}, requests {served}"


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_tcp_and_udp_both_families(lb, vip):
    """TCP over curl and UDP from 30 source ports each, to the VIP of either family:
    every backend answers; UDP replies come from VIP:80 (DSR: the backend answers from
    the VIP itself)."""
    t = lb.topo
    host = f"[{vip}]" if ":" in vip else vip
    got = curl_many(t.c, f"http://{host}/", 30, "-g")
    by = {}
    for body, _, code in got:
        assert code == 200, got
        by[body] = by.get(body, 0) + 1
    assert set(by) == set(BASE), f"TCP to {vip}: {by}"

    name = "udp6" if ":" in vip else "udp4"
    before = lb.xdp_stats(name)
    sources, by = udp_answers(t.c, vip, 30)
    after = lb.xdp_stats(name)
    assert sources == {(vip, PORT): 30}, f"UDP replies from {sources}"
    assert set(by) == set(BASE), f"UDP to {vip}: {by}"
    d = {k: after[k] - before[k] for k in ("packets", "forwarded", "new_flows", "flow_misses")}
    assert d == {"packets": 30, "forwarded": 30, "new_flows": 30, "flow_misses": 30}, d


def test_long_lived_connections_survive_backend_changes(lb):
    """24 keep-alive connections, each asking every ~100 ms, while b4 is added to web4
    and then one other backend removed: every answer on a connection comes from the
    backend that answered first, none fails. The flow table did it: reconnecting from
    the same source ports, some connections land elsewhere now. New connections then
    reach b4 and never the removed backend."""
    t = lb.topo
    apply_fresh(lb.sluice, document(t))
    ports = list(range(20000, 20024))  # below the ephemeral range: no TIME_WAIT of others
    conns = {}
    try:
        for port in ports:
            s = connect(t.c, VIP4, PORT, bind_port=port)
            conns[port] = (s, [http_get(s)])
        first = {port: a[0] for port, (_, a) in conns.items()}
        per = {n: sum(1 for a in first.values() if a == n) for n in BASE}
        assert all(per.values()), f"24 connections spread {per}"
        # Remove the backend with fewest connections; its own connections end first
        # (a removed backend's connections are not kept).
        gone = min(BASE, key=lambda n: (per[n], n))
        for port in [p for p, a in first.items() if a == gone]:
            conns.pop(port)[0].close()
        kept = sorted(conns)

        stop = threading.Event()
        errors = {}

        def ask():
            while not stop.is_set():
                t0 = time.monotonic()
                for port in kept:
                    if port in errors:
                        continue
                    s, got = conns[port]
                    try:
                        got.append(http_get(s))
                    except Exception as e:
                        errors[port] = repr(e)
                stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        try:
            time.sleep(0.5)
            lb.sluice.apply(document(t, web4=[*BASE, "b4"]))
            time.sleep(0.7)
            lb.sluice.apply(document(t, web4=[n for n in [*BASE, "b4"] if n != gone]))
            time.sleep(0.7)
        finally:
            stop.set()
            asker.join(timeout=10)
        assert not asker.is_alive()
        assert not errors, f"requests failed on long-lived connections: {errors}"
        for port in kept:
            got = conns[port][1]
            assert len(got) >= 12, f"port {port}: only {len(got)} answers"
            assert set(got) == {first[port]}, f"port {port} changed backend: {got}"

        # Proof that the table, not the hash, kept them: the same 5-tuples as new
        # connections (RST first: no TIME_WAIT) go where the new Maglev table says.
        moved = {}
        for port in kept:
            reset_close(conns.pop(port)[0])
            s = connect(t.c, VIP4, PORT, bind_port=port)
            try:
                a = http_get(s)
            finally:
                reset_close(s)
            assert a != gone, f"port {port}: a new connection reached removed {gone}"
            if a != first[port]:
                moved[port] = (first[port], a)
            # The 5-tuple started again: it took back its own way (its tag in
            # sl_xdp_flow_idx), so the table holds it once, naming the new backend.
            ways = flow_ways(lb, CLIENT4, VIP4, port, PORT)
            ids = {b["address"]: b["id"] for b in lb.sluice.backends("web4")}
            assert [w["backend_id"] for w in ways] == [ids[t.backend(a).v4]], (port, a, ways)
            # sluicectl flow finds the same way from the 5-tuple, and names the backend.
            f = lb.sluice.ctl_json("flow", f"{CLIENT4}:{port}", f"{VIP4}:{PORT}", "tcp")
            assert f["backend_id"] == ids[t.backend(a).v4] and f["service"] == "web4", (port, f)
            assert f["backend"].rsplit(":", 1)[0] == t.backend(a).v4, (port, f)
        print(f"removed {gone}; kept {len(kept)} connections; now elsewhere: {moved}")
        f = lb.sluice.ctl_json("flow", f"{CLIENT4}:9", f"{VIP4}:{PORT}")  # never connected
        assert f["way"] is None and f["backend"] is None and f["protocol"] == "tcp", f
        bad = lb.sluice.ctl("flow", f"{CLIENT4}:9", f"[fd00::1]:{PORT}")
        assert bad.returncode == 1 and "different address families" in bad.stderr, bad.stderr
        assert moved, "no connection's 5-tuple maps elsewhere after the change: the test " \
                      "proved nothing about the flow table (choose other source ports)"
    finally:
        for s, _ in conns.values():
            s.close()

    by = answers(t.c, VIP4, 40)
    assert gone not in by, f"new connections reached removed {gone}: {by}"
    assert by.get("b4", 0) > 0, f"new connections never reach the added b4: {by}"
    assert set(by) == {*BASE, "b4"} - {gone}, by


def test_breaker_open_and_health_down_get_no_new_flows(lb):
    """A backend whose breaker the socket datapath opened gets no new XDP flows (the
    others answer all of them) until `breakers reset`; a backend marked health DOWN in
    sl_backends (as the agent does) neither."""
    t, s = lb.topo, lb.sluice
    cb = svc("web4", VIP4, PORT, backends_of(t, BASE), "round_robin",
             circuit_breaker={"consecutive_failures": 2, "base_ejection_ms": 60000,
                              "max_ejection_ms": 60000})
    d = document(t)
    d["services"][0] = cb
    apply_fresh(s, d)
    assert answers(t.c, VIP4, 30).keys() == set(BASE), "b1-b3 before the breaker opens"

    victim = t.backend("b2")
    lb.nginx["b2"].stop()
    try:
        # The node's own connects, from sluice's cgroup: the socket datapath picks (round
        # robin) and rewrites them to a backend; b2's refuse.
        for _ in range(10):
            out = s.client(t.n, "tcp", VIP4, PORT, "--count", 3, "--timeout", 2)
            brk = {b["backend"]: b for b in s.breakers("web4")}
            if brk[f"{victim.v4}:{PORT}"]["state"] == "open":
                break
        b2 = brk[f"{victim.v4}:{PORT}"]
        assert b2["state"] == "open", f"b2's breaker did not open: {brk}; last run {out}"
    finally:
        lb.nginx["b2"].start(t.n)
    assert direct_get(t.c, victim.v4, PORT) == "b2", "b2 serves again (straight to it)"

    before = lb.be_xdp("web4")
    by = answers(t.c, VIP4, 30)
    after = lb.be_xdp("web4")
    assert by.keys() == {"b1", "b3"}, f"b2's breaker is open, new flows went to {by}"
    assert after["b2"]["new_flows"] == before["b2"]["new_flows"], (before, after)
    b2 = next(b for b in s.breakers("web4") if b["backend"] == f"{victim.v4}:{PORT}")
    assert b2["state"] == "open" and b2["open_remaining_ms"] > 0, b2

    p = s.breaker_reset("web4", f"{victim.v4}:{PORT}")
    assert p.returncode == 0, p.stderr
    by = answers(t.c, VIP4, 30)
    assert by.keys() == set(BASE), f"b2's breaker closed, new flows went to {by}"

    # Health DOWN: b3, as the agent would write it.
    b3_id = after["b3"]["id"]
    lb.set_health(b3_id, SL_HEALTH_DOWN)
    try:
        assert lb.be_xdp("web4")["b3"]["health"] == "down"
        before = lb.be_xdp("web4")
        by = answers(t.c, VIP4, 30)
        after = lb.be_xdp("web4")
        assert by.keys() == {"b1", "b2"}, f"b3 is down, new flows went to {by}"
        assert after["b3"]["new_flows"] == before["b3"]["new_flows"], (before, after)
    finally:
        lb.set_health(b3_id, 0)
    assert answers(t.c, VIP4, 30).keys() == set(BASE)


def test_non_vip_traffic_untouched_and_counters(lb):
    """Traffic to the node's own address and through the node to a backend's own
    address crosses n0's XDP untouched (served, ping answered); N connections to a fresh
    VIP show exactly N new flows and SYNs, every other packet a flow hit, all forwarded,
    per backend as many new flows as connections it answered; bpftool's view of
    sl_xdp_stats agrees with stats -j."""
    t = lb.topo
    srv = subprocess.Popen(in_ns(t.n, E.PY, E.SERVER, "--id", "node", "--tcp-port",
                                 str(NODE_PORT), "--udp-port", "0"),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    token = E.JANITOR.add(f"node server {srv.pid}",
                          lambda: (srv.poll() is None and srv.kill(), srv.wait(timeout=5)))
    try:
        assert srv.stdout.readline().strip() == "READY node"
        non_vip0 = lb.pinned_sum("sl_xdp_stats", 0)
        vip0 = lb.xdp_stats("web4")
        assert [b for b, _, _ in curl_many(t.c, f"http://10.203.0.1:{NODE_PORT}/", 5)] \
            == ["node"] * 5
        assert [b for b, _, _ in curl_many(t.c, f"http://[fd00:203::1]:{NODE_PORT}/", 5, "-g")] \
            == ["node"] * 5
        assert [b for b, _, _ in curl_many(t.c, "http://10.204.1.2/", 5)] == ["b1"] * 5
        for addr in ("10.203.0.1", "fd00:203::1", "10.204.3.2", "fd00:204:3::2"):
            p = sh(in_ns(t.c, "ping", "-c", "2", "-i", "0.2", "-W", "2", addr), check=False)
            assert p.returncode == 0, f"ping {addr} from the client: {p.stdout} {p.stderr}"
        non_vip1 = lb.pinned_sum("sl_xdp_stats", 0)
        assert lb.xdp_stats("web4") == vip0, "non-VIP traffic counted for the VIP"
        # 15 connections (>= 5 packets each) and 8 echo requests crossed n0's XDP.
        assert non_vip1["packets"] - non_vip0["packets"] >= 15 * 5 + 8, (non_vip0, non_vip1)
        assert non_vip1["forwarded"] == non_vip0["forwarded"] == 0, non_vip1
    finally:
        err = E.JANITOR.run(token)
        if err:
            raise err

    apply_fresh(lb.sluice, document(t))
    n = 40
    by = answers(t.c, VIP_COUNT, n)
    assert set(by) == set(BASE), by

    def settled():
        return lb.xdp_stats("count4"), lb.be_xdp("count4")

    x, bes = E.wait_until(settled, lambda v: v[0]["forwarded"] == v[0]["packets"] and
                          sum(b["packets"] for b in v[1].values()) == v[0]["forwarded"], 2.0)
    print(f"count4 xdp: {x}; backends {bes}")
    assert (x["syns"], x["new_flows"], x["flow_misses"]) == (n, n, 0), x
    assert x["forwarded"] == x["packets"] and x["forwarded_bytes"] == x["bytes"], x
    assert x["flow_hits"] == x["packets"] - n and x["flow_hits"] >= 3 * n, x
    assert all(v == 0 for v in x["dropped"].values()), x
    assert all(v == 0 for v in x["passed"].values()), x
    assert {k: v["new_flows"] for k, v in bes.items()} == by, (bes, by)
    assert sum(b["packets"] for b in bes.values()) == x["forwarded"], bes
    assert sum(b["bytes"] for b in bes.values()) == x["forwarded_bytes"], bes
    svc_id = next(v["id"] for v in lb.sluice.services() if v["name"] == "count4")
    raw = lb.pinned_sum("sl_xdp_stats", svc_id)
    assert {k: raw[k] for k in ("packets", "bytes", "syns", "forwarded", "forwarded_bytes",
                                "new_flows", "flow_hits", "flow_misses")} == \
        {k: x[k] for k in ("packets", "bytes", "syns", "forwarded", "forwarded_bytes",
                           "new_flows", "flow_hits", "flow_misses")}, (raw, x)
    for name, b in bes.items():
        assert lb.pinned_sum("sl_xdp_backend", b["id"], "stats") == \
            {k: b[k] for k in ("packets", "bytes", "new_flows")}, (name, b)


def test_no_forward_then_forward_again(lb):
    """attach-xdp --no-forward swaps sl_xdp_edge into the same link: VIP packets go to the
    node's stack (which has no route to the VIP: the connect fails), counted
    passed[not_forwarding], none forwarded; attaching without it swaps sl_xdp back."""
    t = lb.topo
    link = lb.xdp_link()
    assert (link["program"], link["forward"]) == ("sl_xdp", True), link
    try:
        out = lb.attach("--no-forward")
        assert out == {"interface": "n0", "mode": "native", "forward": False}, out
        edge = lb.xdp_link()
        assert (edge["program"], edge["forward"], edge["link_id"]) == \
            ("sl_xdp_edge", False, link["link_id"]), (link, edge)
        before = lb.xdp_stats("web4")
        for _ in range(3):
            with pytest.raises(OSError):
                direct_get(t.c, VIP4, PORT, timeout=1.0)
        after = lb.xdp_stats("web4")
        d = {k: after[k] - before[k] for k in ("packets", "syns", "forwarded", "new_flows")}
        passed = after["passed"]["not_forwarding"] - before["passed"]["not_forwarding"]
        assert d["syns"] >= 3 and d["forwarded"] == 0 and d["new_flows"] == 0, d
        assert passed == d["packets"], (passed, d)
    finally:
        out = lb.attach()
    assert out == {"interface": "n0", "mode": "native", "forward": True}, out
    again = lb.xdp_link()
    assert (again["program"], again["forward"], again["link_id"]) == \
        ("sl_xdp", True, link["link_id"]), (link, again)
    before = lb.xdp_stats("web4")
    assert direct_get(t.c, VIP4, PORT) in BASE
    after = lb.xdp_stats("web4")
    assert after["forwarded"] > before["forwarded"], (before, after)
    assert after["passed"]["not_forwarding"] == before["passed"]["not_forwarding"]


def test_load_swaps_the_fresh_program_into_attached_interfaces(lb):
    """`sluicectl load` (an upgrade's step) swaps a fresh XDP program into each pinned XDP link,
    of the same kind (sl_xdp, or sl_xdp_edge after --no-forward), as it does for the socket
    programs: the interface never runs old code against maps the new version laid out
    otherwise. The link stays; VIP traffic is forwarded right after."""
    t = lb.topo
    link = lb.xdp_link()
    p = lb.sluice.load()
    assert "the fresh XDP program swapped into 1 attached interface(s)" in p.stderr, p.stderr
    fresh = lb.xdp_link()
    assert (fresh["program"], fresh["link_id"]) == ("sl_xdp", link["link_id"]), (link, fresh)
    assert fresh["prog_id"] != link["prog_id"], (link, fresh)
    before = lb.xdp_stats("web4")
    assert direct_get(t.c, VIP4, PORT) in BASE
    assert lb.xdp_stats("web4")["forwarded"] > before["forwarded"]
    try:
        lb.attach("--no-forward")
        edge = lb.xdp_link()
        lb.sluice.load()
        again = lb.xdp_link()
        assert (again["program"], again["link_id"]) == ("sl_xdp_edge", link["link_id"]), again
        assert again["prog_id"] != edge["prog_id"], (edge, again)
    finally:
        lb.attach()
    assert lb.xdp_link()["program"] == "sl_xdp"


def lo_state(ns, dev="eth0"):
    addrs = json.loads(sh(in_ns(ns, "ip", "-j", "addr", "show", "dev", "lo")).stdout)[0]
    keys = [f"net.ipv4.conf.{d}.{k}" for d in ("all", dev)
            for k in ("arp_ignore", "arp_announce", "rp_filter")]
    sysctls = sh(in_ns(ns, "sysctl", *keys)).stdout
    gro = [line for line in sh(in_ns(ns, "ethtool", "-k", dev)).stdout.splitlines()
           if line.startswith("generic-receive-offload")]
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs["addr_info"]), sysctls, gro


def test_backend_setup_script_errors_and_idempotence(lb):
    """xdp-backend-setup.sh: an unknown namespace, a VIP that is no address, a namespace
    with several interfaces and no IFACE, an unknown IFACE: non-zero with a message
    saying what is wrong, nothing changed; run again on a prepared backend: exit 0 and
    the backend exactly as before (and still served through the VIP)."""
    t = lb.topo
    b1 = t.backend("b1")
    state = lo_state(b1.ns)
    assert f"{VIP4}/32" in state[0] and f"{VIP6}/128" in state[0], state

    p = backend_setup(f"{t.prefix}-nope", VIP4)
    assert p.returncode != 0 and f"no network namespace '{t.prefix}-nope'" in p.stderr, p
    for bad in ("not-an-ip", "10.96.9.300", "fd00:96::zz"):
        p = backend_setup(b1.ns, bad)
        assert p.returncode != 0 and bad in p.stderr, (bad, p)
    p = backend_setup(b1.ns, "not-an-ip")
    assert "is not an IPv4 or IPv6 address" in p.stderr, p
    p = backend_setup(t.n, VIP4)  # the node: n0 and nb1..nb4
    assert p.returncode != 0 and "interfaces besides lo" in p.stderr and "name IFACE" in p.stderr \
        and "n0" in p.stderr and "nb1" in p.stderr, p
    p = backend_setup(b1.ns, VIP4, "eth9")
    assert p.returncode != 0 and "no interface 'eth9'" in p.stderr, p
    assert lo_state(b1.ns) == state, "a failed run changed the backend"
    n_lo = json.loads(sh(in_ns(t.n, "ip", "-j", "addr", "show", "dev", "lo")).stdout)[0]
    assert [a["local"] for a in n_lo["addr_info"]] in (["127.0.0.1", "::1"], ["127.0.0.1"]), \
        f"the ambiguous run touched the node's lo: {n_lo['addr_info']}"

    for vip in (VIP4, VIP6, VIP4):
        p = backend_setup(b1.ns, vip)
        assert p.returncode == 0 and "ready" in p.stdout, (vip, p)
        p = backend_setup(b1.ns, vip, "eth0")
        assert p.returncode == 0, (vip, p)
    assert lo_state(b1.ns) == state, "running the script again changed the backend"
    assert answers(t.c, VIP4, 20).keys() == set(BASE)


def test_backend_setup_rejects_a_short_ipv4(lb):
    """`ip addr add 10.96.9/32` would add 10.96.9.0: the script checks the form itself."""
    ns = lb.topo.backend("b4").ns
    before = lo_state(ns)[0]
    p = backend_setup(ns, "10.96.9")
    after = lo_state(ns)[0]
    if after != before:  # undo what the bug did
        for a in set(after) - set(before):
            sh(in_ns(ns, "ip", "addr", "del", a, "dev", "lo"), check=False)
    assert p.returncode != 0 and "10.96.9" in p.stderr, p
    assert after == before, f"lo {before} -> {after}"
