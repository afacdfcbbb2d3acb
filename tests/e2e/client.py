# SPDX-License-Identifier: MIT
"""A small client for the end-to-end tests; prints one JSON document on stdout.

Run it inside the sluice cgroup and a client network namespace with Debian's
/usr/bin/python3.

    client.py tcp HOST PORT [--count N] [--bind ADDR] [--bind-ports P1,P2,..]
                            [--timeout S] [--sequence]
    client.py udp HOST PORT [--count N] [--connected] [--bind ADDR] [--timeout S]
                            [--sequence]

tcp: N times: connect, send "GET / HTTP/1.0", read the reply to EOF, close.
With --bind the socket is bound to ADDR (port 0 unless --bind-ports) first;
with --bind-ports it makes N connections from each listed port, bound with
SO_REUSEADDR and closed with SO_LINGER 0 (an RST, so no TIME_WAIT keeps the
same 4-tuple from being used again).

udp: N times: sendto(HOST:PORT) (or connect() once, then send, with
--connected), then recvfrom; reports each reply's source address.

Output keys: mode, target, count, ok, backends {identity: n}, peers
{getpeername: n} (tcp, connected udp), sources {recvfrom source: n} (udp),
errors {errno name: n}, error_max_s (slowest failed attempt), elapsed_s,
per_bind {"addr:port": {identity: n}} (with --bind-ports), sequence (with
--sequence: one identity or "!ERRNO" per attempt).

HOST containing ':' uses an AF_INET6 socket (also for ::ffff:a.b.c.d).
"""
import argparse
import errno
import json
import socket
import struct
import sys
import time


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def err_name(exc):
    if isinstance(exc, socket.timeout):
        return "TIMEOUT"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def bump(d, k, n=1):
    d[k] = d.get(k, 0) + n


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_identity(reply):
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        raise OSError(errno.EPROTO, "no HTTP header end in reply")
    if not head.startswith(b"HTTP/"):
        raise OSError(errno.EPROTO, "not an HTTP reply")
    return body.decode(errors="replace").strip()


def tcp_once(host, port, timeout, bind_addr, bind_port, reset):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if bind_addr is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind_addr, bind_port))
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.connect((host, port))
        peer = fmt(s.getpeername())
        s.sendall(b"GET / HTTP/1.0\r\nHost: sluice-e2e\r\nUser-Agent: sluice-e2e\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < 65536:
            if time.monotonic() > deadline:
                raise socket.timeout("reply")
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return parse_identity(data), peer
    finally:
        s.close()


def run_tcp(a, out):
    ports = [int(p) for p in a.bind_ports.split(",")] if a.bind_ports else [None]
    if a.bind_ports and a.bind is None:
        sys.exit("client.py: --bind-ports needs --bind")
    out["peers"] = {}
    per_bind = {}
    for p in ports:
        key = fmt((a.bind, p)) if p is not None else None
        counts = {}
        for _ in range(a.count):
            t0 = time.monotonic()
            try:
                ident, peer = tcp_once(a.host, a.port, a.timeout, a.bind,
                                       p if p is not None else 0, reset=p is not None)
            except (OSError, ValueError) as e:
                name = err_name(e)
                bump(out["errors"], name)
                out["error_max_s"] = max(out["error_max_s"], time.monotonic() - t0)
                out["sequence"].append("!" + name)
                continue
            out["ok"] += 1
            bump(out["backends"], ident)
            bump(out["peers"], peer)
            bump(counts, ident)
            out["sequence"].append(ident)
        if key is not None:
            per_bind[key] = counts
    if a.bind_ports:
        out["per_bind"] = per_bind


def run_udp(a, out):
    out["sources"] = {}
    s = socket.socket(family_of(a.host), socket.SOCK_DGRAM)
    s.settimeout(a.timeout)
    try:
        if a.bind is not None:
            s.bind((a.bind, 0))
        if a.connected:
            s.connect((a.host, a.port))
            out["peers"] = {fmt(s.getpeername()): 1}
        for i in range(a.count):
            t0 = time.monotonic()
            try:
                msg = f"ping {i}\n".encode()
                if a.connected:
                    s.send(msg)
                    data = s.recv(65535)
                    src = s.getpeername()
                else:
                    s.sendto(msg, (a.host, a.port))
                    data, src = s.recvfrom(65535)
            except OSError as e:
                name = err_name(e)
                bump(out["errors"], name)
                out["error_max_s"] = max(out["error_max_s"], time.monotonic() - t0)
                out["sequence"].append("!" + name)
                continue
            ident = data.decode(errors="replace").strip()
            out["ok"] += 1
            bump(out["backends"], ident)
            bump(out["sources"], fmt(src))
            out["sequence"].append(ident)
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["tcp", "udp"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--bind")
    ap.add_argument("--bind-ports")
    ap.add_argument("--connected", action="store_true")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--sequence", action="store_true")
    a = ap.parse_args()

    out = {"mode": a.mode, "target": fmt((a.host, a.port)), "count": a.count, "ok": 0,
           "backends": {}, "errors": {}, "error_max_s": 0.0, "sequence": []}
    t0 = time.monotonic()
    (run_tcp if a.mode == "tcp" else run_udp)(a, out)
    out["elapsed_s"] = round(time.monotonic() - t0, 4)
    out["error_max_s"] = round(out["error_max_s"], 4)
    if not a.sequence:
        del out["sequence"]
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
