#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A bounded packet generator for the XDP tests (test_xdp.py), run in a sender
namespace with nsenter. Sends to one address only, paced to --rate packets per
second from a common CLOCK_MONOTONIC instant (--start-at), and stops at --count
packets or after --duration seconds, whichever comes first. Prints one JSON
document: how many packets the kernel took (sent), send errors by errno name,
the times of the first and last packet sent, and the pauses longer than --gap
seconds between two packets (when the sender did not run at all).

    xdp_sender.py udp HOST PORT [--size N]        UDP datagrams of N payload bytes
    xdp_sender.py tcp HOST PORT [--flags syn]     bare TCP segments from a raw socket
                                                  (syn, ack, synack, rst), a new
                                                  source port each, valid checksum

Options: --rate R --count N --duration S --start-at T --gap S.
"""
import argparse
import errno
import json
import socket
import struct
import sys
import time

FLAGS = {"syn": 0x02, "ack": 0x10, "synack": 0x12, "rst": 0x04}


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def source_for(host):
    """The source address the kernel picks towards host (a UDP connect sends nothing)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    finally:
        s.close()


def tcp_segment(src, dst, sport, dport, flags, seq):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    return hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["udp", "tcp"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--start-at", type=float, default=None)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--flags", choices=sorted(FLAGS), default="syn")
    a = ap.parse_args()
    if a.count > 1_000_000 or a.duration > 10:
        sys.exit("xdp_sender.py: bounded: at most 1,000,000 packets and 10 s")

    if a.kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((a.host, a.port))
        payload = b"x" * a.size

        def send(i):
            s.send(payload)
    else:
        src = source_for(a.host)
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it sees every reply; keep none
        flags = FLAGS[a.flags]
        segs = [tcp_segment(src, a.host, 20000 + i % 40000, a.port, flags, i)
                for i in range(min(a.count, 40000))]

        def send(i):
            s.sendto(segs[i % len(segs)], (a.host, 0))

    start = a.start_at if a.start_at is not None else time.monotonic()
    while True:
        left = start - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.005))
    errors = {}
    gaps = []
    sent = 0
    i = 0
    first = last = None
    begin = time.monotonic()
    end = begin + a.duration
    while i < a.count:
        now = time.monotonic()
        if now >= end:
            break
        due = min(a.count, int((now - begin) * a.rate) + 1)
        if i >= due:
            time.sleep(min((i / a.rate) - (now - begin), 0.001))
            continue
        while i < due:
            i += 1
            try:
                send(i)
            except OSError as e:
                name = errno.errorcode.get(e.errno, str(e.errno))
                errors[name] = errors.get(name, 0) + 1
                continue
            t = time.monotonic()
            if last is not None and t - last > a.gap:
                gaps.append([round(last, 6), round(t, 6)])
            if first is None:
                first = t
            last = t
            sent += 1
    s.close()
    print(json.dumps({"sent": sent, "attempts": i, "errors": errors, "first": first,
                      "last": last, "gaps": gaps}))


if __name__ == "__main__":
    main()
