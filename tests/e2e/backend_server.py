# SPDX-License-Identifier: MIT
"""A backend for the end-to-end tests: answers with its own identity.

Run inside a backend network namespace with Debian's /usr/bin/python3:

    backend_server.py --id be1 [--tcp-port 8080] [--udp-port 5353] [--status-file F]

TCP: every request (read up to the end of the HTTP header, or 2 s of silence)
gets an HTTP/1.0 200 reply whose body is "<id>\\n"; the connection is closed
after the reply. The header X-Sluice-Peer carries the client address the
server saw. A request whose first line starts with "HOLD" gets just "<id>\\n"
and the connection stays open until the client closes it (long-lived
connections for the circuit-breaker tests). UDP: every datagram is answered
with "<id>\\n" from the same socket; --udp-port 0 runs no UDP socket. Both
sockets are dual-stack ([::], IPV6_V6ONLY off), so the server answers on the
namespace's IPv4 and IPv6 addresses alike. The listen backlog is large (1024)
so that bursts of connects never time out on the server's side.

Prints "READY <id>" on stdout once its sockets listen; exits on SIGTERM.
"""
import argparse
import http
import signal
import socket
import sys
import threading


def dual_stack(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s


def show_addr(addr):
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def current_status(status_file):
    """The status code to answer with: the number in status_file, else 200."""
    if not status_file:
        return 200
    try:
        with open(status_file) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 200
    return int(text) if text else 200


def serve_one(conn, addr, ident, status_file=None):
    try:
        conn.settimeout(2.0)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HOLD"):
            hold(conn, ident)
            return
        body = (ident + "\n").encode()
        code = current_status(status_file)
        try:
            reason = http.HTTPStatus(code).phrase
        except ValueError:
            reason = "Status"
        head = (
            f"HTTP/1.0 {code} {reason}\r\n"
            "Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Sluice-Backend: {ident}\r\n"
            f"X-Sluice-Peer: {show_addr(addr)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        conn.sendall(head + body)
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def hold(conn, ident):
    """Answers with the identity, then keeps the connection until the client's EOF."""
    conn.sendall((ident + "\n").encode())
    conn.settimeout(None)
    while conn.recv(4096):
        pass


def tcp_loop(sock, ident, status_file):
    while True:
        try:
            conn, addr = sock.accept()
        except OSError:
            return
        threading.Thread(target=serve_one, args=(conn, addr, ident, status_file),
                         daemon=True).start()


def udp_loop(sock, ident):
    reply = (ident + "\n").encode()
    while True:
        try:
            _, addr = sock.recvfrom(65535)
            sock.sendto(reply, addr)
        except OSError:
            continue


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--tcp-port", type=int, default=8080)
    ap.add_argument("--udp-port", type=int, default=5353)
    ap.add_argument("--status-file")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tcp = dual_stack(socket.SOCK_STREAM, args.tcp_port)
    tcp.listen(1024)
    threading.Thread(target=tcp_loop, args=(tcp, args.id, args.status_file), daemon=True).start()
    if args.udp_port:
        udp = dual_stack(socket.SOCK_DGRAM, args.udp_port)
        threading.Thread(target=udp_loop, args=(udp, args.id), daemon=True).start()
    print(f"READY {args.id}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
