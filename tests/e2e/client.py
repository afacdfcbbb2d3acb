# SPDX-License-Identifier: MIT
"""A small client for the end-to-end tests; prints one JSON document on stdout.

Run it inside the sluice cgroup and a client network namespace with Debian's
/usr/bin/python3.

    client.py tcp HOST PORT [--count N] [--bind ADDR] [--bind-ports P1,P2,..]
                            [--timeout S] [--sequence] [--interval S]
                            [--user-timeout-ms MS] [--connect-times]
    client.py udp HOST PORT [--count N] [--connected] [--bind ADDR] [--timeout S]
                            [--sequence]
    client.py hold HOST PORT [--count N] [--pending] [--bind ADDR] [--timeout S]
    client.py loop HOST PORT [--interval S] [--timeout S]
    client.py flood HOST PORT --duration S [--start-at T] [--interval S] [--udp]
                              [--timeout S]

tcp: N times: connect, send "GET / HTTP/1.0", read the reply to EOF, close.
With --bind the socket is bound to ADDR (port 0 unless --bind-ports) first;
with --bind-ports it makes N connections from each listed port, bound with
SO_REUSEADDR and closed with SO_LINGER 0 (an RST, so no TIME_WAIT keeps the
same 4-tuple from being used again).

--interval sleeps S seconds between attempts; --user-timeout-ms sets
TCP_USER_TIMEOUT, so an unanswered SYN fails in the kernel (ETIMEDOUT, at the
first retransmission timer, ~1 s) rather than by the client giving up
(TIMEOUT: the socket is then closed with the connect in progress);
--connect-times reports how long each connect() call took.

hold: opens N connections one after the other, sends "HOLD" on each and reads
the backend's identity line, prints the JSON document (and flushes), then
keeps every connection open until stdin reaches EOF (or the process is
killed), closes them all and exits. With --pending the connects are
non-blocking and not waited for: the sockets stay in SYN_SENT (or fail), and
the output counts them under "pending".

loop: prints {"started": T} (and flushes), then makes tcp attempts one after
the other (sleeping --interval S between them) until stdin reaches EOF, then
prints the JSON document, with "events": [[T, identity or "!ERRNO"], ...],
T being time.monotonic() just before each connect() (CLOCK_MONOTONIC: the
same clock as the test's), so a test can tell when a change became visible.

flood: from CLOCK_MONOTONIC time T (--start-at; default now) for S seconds,
one new socket after the other (sleeping --interval S between them, else
flat out): TCP connect() and close at once (SO_LINGER 0: an RST, no
TIME_WAIT; nothing is sent), or with --udp one sendto(HOST:PORT) of a new
unconnected UDP socket, then close (no reply awaited). Counts admitted
attempts (ok, with their start times in ok_t), ECONNREFUSED (refused, with
the connect()/sendto() call's duration summarised in refused_call_s
{n, median, p90, max}) and other errors; first/last are the start times of
the first and last attempt (monotonic), gaps lists the [start, end] of
every pause longer than 20 ms between two attempts (the process was not
running), so a test can tell what the limiter was really offered.

udp: N times: sendto(HOST:PORT) (or connect() once, then send, with
--connected), then recvfrom; reports each reply's source address.

Output keys: mode, target, count, ok, backends {identity: n}, peers
{getpeername: n} (tcp, connected udp), sources {recvfrom source: n} (udp),
errors {errno name: n}, error_max_s (slowest failed attempt), elapsed_s,
per_bind {"addr:port": {identity: n}} (with --bind-ports), sequence (with
--sequence: one identity or "!ERRNO" per attempt), connect_s (with
--connect-times: seconds each connect() call took, per attempt), pending (hold
--pending), events (loop); flood: count (attempts made), refused, ok_t,
refused_call_s, first, last, gaps (with --interval, every pause is listed).

HOST containing ':' uses an AF_INET6 socket (also for ::ffff:a.b.c.d).
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys
import threading
import time


def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def err_name(exc):
    """TIMEOUT: the client gave up (its own timeout); else the errno's name
    (ETIMEDOUT: the kernel timed the connect out; Python raises both as TimeoutError)."""
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    if isinstance(exc, socket.timeout):
        return "TIMEOUT"
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


def tcp_once(host, port, timeout, bind_addr, bind_port, reset, user_timeout_ms=None,
             times=None):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if bind_addr is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind_addr, bind_port))
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if user_timeout_ms is not None:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        t0 = time.perf_counter()
        try:
            s.connect((host, port))
        finally:
            if times is not None:
                times.append(round(time.perf_counter() - t0, 6))
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
    times = [] if a.connect_times else None
    attempt = 0
    for p in ports:
        key = fmt((a.bind, p)) if p is not None else None
        counts = {}
        for _ in range(a.count):
            if attempt and a.interval:
                time.sleep(a.interval)
            attempt += 1
            t0 = time.monotonic()
            try:
                ident, peer = tcp_once(a.host, a.port, a.timeout, a.bind,
                                       p if p is not None else 0, reset=p is not None,
                                       user_timeout_ms=a.user_timeout_ms, times=times)
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
    if times is not None:
        out["connect_s"] = times


def hold_one(a, out, socks):
    """One long-lived connection (or, with --pending, one connect left in progress)."""
    s = socket.socket(family_of(a.host), socket.SOCK_STREAM)
    socks.append(s)
    if a.bind is not None:
        s.bind((a.bind, 0))
    if a.pending:
        s.setblocking(False)
        rc = s.connect_ex((a.host, a.port))
        if rc == errno.EINPROGRESS:
            out["pending"] += 1
            return "pending"
        if rc:
            raise OSError(rc, os.strerror(rc))
        return "connected"
    s.settimeout(a.timeout)
    s.connect((a.host, a.port))
    s.sendall(b"HOLD\r\n\r\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            raise OSError(errno.ECONNRESET, "closed before the identity line")
        data += chunk
    return data.decode(errors="replace").strip()


def run_hold(a, out):
    out["pending"] = 0
    socks = []
    for _ in range(a.count):
        try:
            ident = hold_one(a, out, socks)
        except OSError as e:
            name = err_name(e)
            bump(out["errors"], name)
            out["sequence"].append("!" + name)
            continue
        if ident != "pending":
            out["ok"] += 1
            bump(out["backends"], ident)
        out["sequence"].append(ident)
    return socks


def run_loop(a, out):
    """tcp attempts until stdin's EOF; each recorded with its start time."""
    stop = threading.Event()

    def wait_eof():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_eof, daemon=True).start()
    out["events"] = events = []
    json.dump({"started": time.monotonic()}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            ident, _ = tcp_once(a.host, a.port, a.timeout, a.bind, 0, reset=False)
        except (OSError, ValueError) as e:
            name = err_name(e)
            bump(out["errors"], name)
            out["error_max_s"] = max(out["error_max_s"], time.monotonic() - t0)
            events.append([round(t0, 6), "!" + name])
        else:
            out["ok"] += 1
            bump(out["backends"], ident)
            events.append([round(t0, 6), ident])
        if a.interval:
            stop.wait(a.interval)
    out["count"] = len(events)


def flood_once(a, addr, kind):
    """One attempt of the flood: returns if admitted, raises OSError if not."""
    s = socket.socket(family_of(a.host), kind)
    try:
        if kind == socket.SOCK_DGRAM:
            s.sendto(b"flood\n", addr)
        else:
            s.settimeout(a.timeout)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.connect(addr)
    finally:
        s.close()


def run_flood(a, out):
    """New sockets one after the other for --duration seconds (see the docstring)."""
    if a.duration is None:
        sys.exit("client.py: flood needs --duration")
    kind = socket.SOCK_DGRAM if a.udp else socket.SOCK_STREAM
    addr = (a.host, a.port)
    start = a.start_at if a.start_at is not None else time.monotonic()
    while True:
        left = start - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.005))
    ok_t, refused_s, gaps = [], [], []
    attempts = 0
    first = prev = time.monotonic()
    end = first + a.duration
    now = first
    while now < end:
        if now - prev > 0.02:
            gaps.append([round(prev, 6), round(now, 6)])
        prev = now
        attempts += 1
        c0 = time.perf_counter()
        try:
            flood_once(a, addr, kind)
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                refused_s.append(time.perf_counter() - c0)
            else:
                bump(out["errors"], err_name(e))
        else:
            ok_t.append(round(now, 6))
        if a.interval:
            time.sleep(a.interval)
        now = time.monotonic()
    refused_s.sort()
    n = len(refused_s)
    out.update(count=attempts, ok=len(ok_t), ok_t=ok_t, refused=n,
               first=round(first, 6), last=round(prev, 6), gaps=gaps,
               refused_call_s={"n": n,
                               "median": round(refused_s[n // 2], 6) if n else None,
                               "p90": round(refused_s[n * 9 // 10], 6) if n else None,
                               "max": round(refused_s[-1], 6) if n else None})


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
    ap.add_argument("mode", choices=["tcp", "udp", "hold", "loop", "flood"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--bind")
    ap.add_argument("--bind-ports")
    ap.add_argument("--connected", action="store_true")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--sequence", action="store_true")
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--user-timeout-ms", type=int)
    ap.add_argument("--connect-times", action="store_true")
    ap.add_argument("--pending", action="store_true")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--start-at", type=float)
    ap.add_argument("--udp", action="store_true")
    a = ap.parse_args()

    out = {"mode": a.mode, "target": fmt((a.host, a.port)), "count": a.count, "ok": 0,
           "backends": {}, "errors": {}, "error_max_s": 0.0, "sequence": []}
    t0 = time.monotonic()
    socks = []
    if a.mode == "hold":
        socks = run_hold(a, out)
    elif a.mode == "loop":
        run_loop(a, out)
    elif a.mode == "flood":
        run_flood(a, out)
    else:
        (run_tcp if a.mode == "tcp" else run_udp)(a, out)
    out["elapsed_s"] = round(time.monotonic() - t0, 4)
    out["error_max_s"] = round(out["error_max_s"], 4)
    if a.mode in ("loop", "flood") or (not a.sequence and a.mode != "hold"):
        del out["sequence"]
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if a.mode == "hold":
        sys.stdin.read()  # until the test closes our stdin
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
