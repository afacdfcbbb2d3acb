# SPDX-License-Identifier: MIT
"""Redis for the end-to-end tests: a real redis-server (Debian's) started by the
test in a network namespace on 127.0.0.1 and a free port, without persistence
(--save '' --appendonly no), stopped by PID (at the latest by the janitor); and
a minimal RESP client over a socket made in that namespace, for the writes the
tests make behind sluice's back (bad data, pipelined load)."""
import os
import shutil
import signal
import socket
import subprocess
import time

import sluice_e2e as E
from topology import in_ns

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port(ns):
    """A TCP port free on the namespace's loopback now (bound, then released)."""
    s = E.socket_in_ns(ns)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class RespError(Exception):
    pass


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    """One connection to a redis-server in a namespace; replies decoded to str/int/list/None
    (an error reply comes back as a RespError instance, raised by call())."""

    def __init__(self, ns, port, timeout=5.0):
        self.sock = E.socket_in_ns(ns)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(encode(*args))
        r = self.read()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, commands):
        """Sends every command at once, then reads every reply (errors returned, not raised)."""
        self.sock.sendall(b"".join(encode(*c) for c in commands))
        return [self.read() for _ in commands]


class RedisServer:
    """redis-server in namespace ns on 127.0.0.1:port (a free one by default)."""

    def __init__(self, ns, workdir, port=None, extra=()):
        self.ns = ns
        self.workdir = workdir
        self.port = port or free_port(ns)
        self.extra = list(extra)
        self.proc = None
        self.token = None
        self.starts = 0

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout=10.0):
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RuntimeError("redis-server is not installed (scripts/install-deps.sh)")
        self.starts += 1
        log = os.path.join(self.workdir, f"redis-{self.port}-{self.starts}.log")
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.workdir, "--logfile", log, *self.extra]
        self.proc = subprocess.Popen(in_ns(self.ns, *args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.token = E.JANITOR.add(f"redis-server {self.proc.pid}", self._kill)
        deadline = time.monotonic() + timeout
        while True:
            try:
                c = Resp(self.ns, self.port, timeout=1)
                try:
                    pw = self._password()
                    if pw:
                        c.call("AUTH", pw)
                    if c.call("PING") == "PONG":
                        return self
                finally:
                    c.close()
            except (OSError, ConnectionError, RespError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start "
                                   f"(exit {self.proc.poll()}), see {log}")
            time.sleep(0.02)

    def _password(self):
        if "--requirepass" in self.extra:
            return self.extra[self.extra.index("--requirepass") + 1]
        return None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM by PID; returns once the port refuses connections."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        E.JANITOR.run(self.token)

    def client(self):
        c = Resp(self.ns, self.port)
        pw = self._password()
        if pw:
            c.call("AUTH", pw)
        return c

    def call(self, *args):
        c = self.client()
        try:
            return c.call(*args)
        finally:
            c.close()
