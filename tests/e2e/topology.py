# SPDX-License-Identifier: MIT
"""Network namespace topology for the end-to-end tests.

One hub namespace holds a bridge; every other namespace (one client, the
backends, and a set of extra clients) hangs off it with a veth pair, its end
named eth0. Addresses are 10.200.0.0/24 and fd00:200::/64, on the namespace
interfaces only; no namespace has a default route, so traffic can only reach
these addresses (and VIPs that sluice rewrites into them).

    hub   (bridge br0, ports c0 b1.. x01..)
    c0    10.200.0.2     fd00:200::2      the client
    bN    10.200.0.1N    fd00:200::1N     backends be1.. (N = 1..)
    xNN   10.200.0.1NN   fd00:200::1NN    extra clients, one namespace each

Every namespace name starts with a per-run prefix (slt<pid>-), and teardown()
removes everything that build() made, whatever state it got to. Run by hand:

    /usr/bin/python3 tests/e2e/topology.py up [BACKENDS] [EXTRA]   # prints the names
    /usr/bin/python3 tests/e2e/topology.py down PREFIX
"""
import os
import subprocess
import sys

NETNS_DIR = "/var/run/netns"
V4_NET = "10.200.0"
V6_NET = "fd00:200:"


def sh(cmd, timeout=30, check=True, input=None):
    """Runs cmd (a list); raises with its stderr on failure when check."""
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def ns_path(ns):
    return os.path.join(NETNS_DIR, ns)


def in_ns(ns, *cmd):
    """The command line that runs cmd in namespace ns without remounting /sys."""
    return ["nsenter", f"--net={ns_path(ns)}", *cmd]


class Host:
    def __init__(self, ns, port, host_no, identity=None):
        self.ns = ns
        self.port = port  # the veth end's name in the hub
        self.v4 = f"{V4_NET}.{host_no}"
        self.v6 = f"{V6_NET}:{host_no}"
        self.identity = identity

    def __repr__(self):
        return f"Host({self.ns}, {self.v4}, {self.v6}, {self.identity})"


class Topology:
    def __init__(self, prefix, backends=4, extra_clients=0):
        if backends > 9 or extra_clients > 99:
            raise ValueError("address plan allows 9 backends and 99 extra clients")
        self.prefix = prefix
        self.hub = f"{prefix}-hub"
        self.client = Host(f"{prefix}-c0", "c0", 2)
        self.backends = [Host(f"{prefix}-b{i}", f"b{i}", 10 + i, f"be{i}")
                         for i in range(1, backends + 1)]
        self.extra = [Host(f"{prefix}-x{i:02d}", f"x{i:02d}", 100 + i)
                      for i in range(1, extra_clients + 1)]
        self.created = []  # namespaces that exist, in creation order

    def leaves(self):
        return [self.client, *self.backends, *self.extra]

    def backend(self, identity):
        return next(b for b in self.backends if b.identity == identity)

    def identity_of(self, address):
        for b in self.backends:
            if address in (b.v4, b.v6):
                return b.identity
        return None

    def build(self):
        for ns in [self.hub, *(h.ns for h in self.leaves())]:
            sh(["ip", "netns", "add", ns])
            self.created.append(ns)
        hub = ["link add br0 type bridge stp_state 0", "link set br0 up", "link set lo up"]
        for h in self.leaves():
            hub.append(f"link add {h.port} type veth peer name eth0 netns {h.ns}")
            hub.append(f"link set {h.port} master br0 up")
        sh(in_ns(self.hub, "ip", "-batch", "-"), input="\n".join(hub) + "\n")
        for h in self.leaves():
            # accept_dad=0 as well as nodad: the link-local address must not wait either.
            sh(in_ns(h.ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                     "net.ipv6.conf.default.accept_dad=0"))
            leaf = [
                "link set lo up",
                f"addr add {h.v4}/24 dev eth0",
                f"addr add {h.v6}/64 dev eth0 nodad",
                "link set eth0 up",
            ]
            sh(in_ns(h.ns, "ip", "-batch", "-"), input="\n".join(leaf) + "\n")

    def teardown(self):
        """Deletes every namespace build() created; deleting a leaf removes its veth pair."""
        errors = []
        for ns in reversed(self.created):
            p = sh(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0 and os.path.exists(ns_path(ns)):
                errors.append(f"{ns}: {p.stderr.strip()}")
        self.created = []
        return errors


def remove_prefix(prefix):
    """Deletes every namespace named PREFIX-*, for cleaning up after a killed run."""
    errors = []
    if not os.path.isdir(NETNS_DIR):
        return errors
    for ns in sorted(os.listdir(NETNS_DIR), key=lambda n: n.endswith("-hub")):
        if ns.startswith(prefix + "-"):
            p = sh(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0:
                errors.append(f"{ns}: {p.stderr.strip()}")
    return errors


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "up":
        n_be = int(sys.argv[2]) if len(sys.argv) > 2 else 4
        n_x = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        t = Topology(f"slt{os.getpid()}", n_be, n_x)
        try:
            t.build()
        except Exception:
            t.teardown()
            raise
        for h in t.leaves():
            print(h.ns, h.v4, h.v6, h.identity or "")
        print(f"prefix {t.prefix}")
    elif len(sys.argv) == 3 and sys.argv[1] == "down":
        errs = remove_prefix(sys.argv[2])
        for e in errs:
            print(e, file=sys.stderr)
        sys.exit(1 if errs else 0)
    else:
        sys.exit(__doc__)
