#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print an iptables-restore document with kube-proxy's nat rules (iptables mode).

The layout follows kube-proxy's proxier: OUTPUT and PREROUTING jump to KUBE-SERVICES,
which holds one rule per service port (matched linearly); each KUBE-SVC-* chain picks an
endpoint with `-m statistic --mode random --probability 1/(n-i)` and each KUBE-SEP-*
chain DNATs. Chain names are kube-proxy's: a prefix and the first 16 base32 characters
of a SHA-256. Only the nat table is written (the filter table holds nothing for
services that have endpoints).

The measured service comes last in KUBE-SERVICES, after SERVICES-1 filler services, so
a new connection to it pays the full linear match. Filler services point at addresses
that no client ever connects to.
"""
import argparse
import base64
import hashlib
import sys


def chain(prefix, *parts):
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def filler_vip(i):
    # 10.100.0.0/16 lies in the 10.96.0.0/12 service range and away from 10.96.0.10.
    return "10.100.%d.%d" % (i // 250, i % 250 + 1)


def filler_endpoints(i, n):
    return ["10.%d.%d.%d:8080" % (244 + j, i // 250, i % 250 + 1) for j in range(n)]


def service_rules(name, vip, port, endpoints, cluster_cidr):
    svc_port = "bench/%s:http" % name
    svc = chain("KUBE-SVC-", svc_port, "tcp")
    chains = [svc]
    rules = [
        '-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment "%s cluster IP" '
        '-m tcp --dport %d -j %s' % (vip, svc_port, port, svc),
        '-A %s ! -s %s -d %s/32 -p tcp -m comment --comment "%s cluster IP" '
        '-m tcp --dport %d -j KUBE-MARK-MASQ' % (svc, cluster_cidr, vip, svc_port, port),
    ]
    n = len(endpoints)
    seps = []
    for i, ep in enumerate(endpoints):
        sep = chain("KUBE-SEP-", svc_port, "tcp", ep)
        seps.append(sep)
        chains.append(sep)
        if i < n - 1:
            rules.append('-A %s -m comment --comment "%s -> %s" -m statistic --mode random '
                         '--probability %0.11f -j %s' % (svc, svc_port, ep, 1.0 / (n - i), sep))
        else:
            rules.append('-A %s -m comment --comment "%s -> %s" -j %s' % (svc, svc_port, ep, sep))
    for sep, ep in zip(seps, endpoints):
        addr = ep.rsplit(":", 1)[0]
        rules.append('-A %s -s %s/32 -m comment --comment "%s" -j KUBE-MARK-MASQ'
                     % (sep, addr, svc_port))
        rules.append('-A %s -p tcp -m comment --comment "%s" -m tcp -j DNAT --to-destination %s'
                     % (sep, svc_port, ep))
    return chains, rules


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, required=True, help="total services, >= 1")
    ap.add_argument("--vip", required=True, help="the measured service's cluster IP")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--cluster-cidr", default="10.201.0.0/24",
                    help="pod CIDR: clients in it are not masqueraded")
    ap.add_argument("endpoints", nargs="+", help="ADDR:PORT of the measured service")
    args = ap.parse_args()
    if args.services < 1:
        ap.error("--services must be >= 1")

    chains, rules = [], []
    for i in range(args.services - 1):
        c, r = service_rules("filler-%d" % i, filler_vip(i), args.port,
                             filler_endpoints(i, len(args.endpoints)), args.cluster_cidr)
        chains += c
        rules += r
    c, r = service_rules("measured", args.vip, args.port, args.endpoints, args.cluster_cidr)
    chains += c
    rules += r

    out = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
           ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    out += [":%s - [0:0]" % c for c in chains]
    out += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
        '-j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    out += rules
    out.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this '
               'must be the last rule in this chain" -m addrtype --dst-type LOCAL '
               "-j KUBE-NODEPORTS")
    out.append("COMMIT")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
