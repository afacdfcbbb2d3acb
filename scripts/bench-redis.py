#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make bench, redis part: sluiced following a Redis registry (issue 7).

Measures, with one redis-server (Debian's, started here on the namespace's 127.0.0.1 and a
free port, --save '' --appendonly no) and one sluiced following it:
  - registration to effect, one at a time: BENCH_REDIS_REGS registrations of distinct
    instances into one service, then as many deregistrations, each written straight to Redis
    as a writer does it (MULTI, SET, SADD, PUBLISH, EXEC on an open connection: no process
    start in the figure), and timed from just before the write to the agent's "registry
    applied" line reaching our pipe, which it prints after the maps are written;
  - the same to a real connection, BENCH_REDIS_CONN times: a client in the datapath's cgroup
    connects to the VIP of a service over a TCP server in a namespace made here every
    PROBE_MS and reports the first connection to reach a backend just registered, or the
    second in a row not to reach one just deregistered (round_robin);
  - the sustained rate one agent follows: instance changes (a registration or a deregistration,
    each SET/DEL + SADD/SREM + PUBLISH, pipelined on one connection) at a fixed
    BENCH_REDIS_RATE per second for BENCH_REDIS_SECONDS, toggling a pool of
    BENCH_REDIS_SERVICES x BENCH_REDIS_POOL instances; from the agent's log lines (each says
    how many changes it applied) the lag: how long after a change was written the agent's maps
    held it (p50, p99, max over the applies), and how long after the last write the maps were
    complete (checked with sluicectl status against the expected backend count).

Everything is made here and removed on exit, on failure too: a network namespace, a cgroup,
the pin root /sys/fs/bpf/sluice-bench-redis-<pid> (loaded by the agent), temporary files;
redis-server, the agent, the probe server and client are stopped by PID, then sluicectl
unload. Every loop is bounded in count and time.
Usage: bench-redis.py --build BUILD [--out FILE]; settings from the environment:
  BENCH_REDIS_REGS=1000 BENCH_REDIS_CONN=50 BENCH_REDIS_RATE=10000 BENCH_REDIS_SECONDS=5
  BENCH_REDIS_SERVICES=100 BENCH_REDIS_POOL=100 BENCH_REDIS_PROBE_MS=1
  BENCH_REDIS_BULK=0 (that many more services x 10 persistent backends in the registry, map
  contents only, put before the agent starts: every figure then includes them)
Exits 1 when a step fails or the maps do not end as the writes say (a missed target is
reported, not a failure).
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from benchlib import (APPLIED_RE, CLIENT, PROBE_A, PROBE_ADDR, PROBE_B, PROBE_PORT, PROBE_VIP,
                      SERVER, Agent, Failure, env_float, env_int)

TARGET_RATE = 10000
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    print("bench: redis: %s" % msg, file=sys.stderr, flush=True)


def socket_in_ns(ns):
    """A TCP socket of namespace ns (made by a thread that entered it; the socket keeps it)."""
    out = {}

    def make():
        try:
            fd = os.open("/var/run/netns/" + ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns(%s): %s" % (ns, os.strerror(e)))
            finally:
                os.close(fd)
            out["s"] = socket.socket()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["e"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


def encode(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class Resp:
    """A RESP connection that only counts replies (and remembers the first error)."""

    def __init__(self, ns, port):
        self.sock = socket_in_ns(ns)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise Failure("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        k = line[:1]
        if k == b"$":
            n = int(line[1:])
            if n >= 0:
                while len(self.buf) < n + 2:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        raise Failure("redis closed the connection")
                    self.buf += chunk
                v, self.buf = self.buf[:n], self.buf[n + 2:]
                return v.decode()
            return None
        if k == b"*":
            n = int(line[1:])
            return None if n < 0 else [self.read() for _ in range(n)]
        if k == b"-":
            raise Failure("redis: %s" % line[1:].decode())
        if k == b":":
            return int(line[1:])
        return line[1:].decode()

    def call(self, *args):
        self.sock.sendall(encode(*args))
        return self.read()

    def close(self):
        self.sock.close()


def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class Bench:
    def __init__(self, build, out):
        self.build = os.path.realpath(build)
        self.out = out
        self.ctl = os.path.join(self.build, "sluicectl")
        self.agentd = os.path.join(self.build, "sluiced")
        self.regs = env_int("BENCH_REDIS_REGS", 1000, 1, 1000)
        self.conns = env_int("BENCH_REDIS_CONN", 50, 1, 1000)
        self.rate = env_int("BENCH_REDIS_RATE", TARGET_RATE, 1, 200000)
        self.seconds = env_float("BENCH_REDIS_SECONDS", 5.0, 0.5, 60.0)
        self.nsvc = env_int("BENCH_REDIS_SERVICES", 100, 1, 1000)
        self.pool = env_int("BENCH_REDIS_POOL", 100, 1, 1000)
        self.probe_ms = env_float("BENCH_REDIS_PROBE_MS", 1.0, 0.0, 100.0)
        self.bulk = env_int("BENCH_REDIS_BULK", 0, 0, 12000)
        if self.rate * self.seconds > 2000000:
            raise Failure("BENCH_REDIS_RATE x BENCH_REDIS_SECONDS must stay <= 2,000,000")
        self.tag = "sluice-bench-redis-%d" % os.getpid()
        self.pin = "/sys/fs/bpf/" + self.tag
        self.tmp = self.cg = self.ns = None
        self.agent = self.redis = self.server = self.client = None
        self.loaded = False
        self.res = {}
        self.problems = []

    # ---- setup and cleanup -------------------------------------------------------------

    def run_cmd(self, cmd, what=None, check=True, timeout=60):
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise Failure("%s failed (exit %d): %s" % (what or " ".join(cmd), p.returncode,
                                                       (p.stderr or p.stdout).strip()))
        return p

    def in_ns(self, *cmd):
        return ["nsenter", "--net=/var/run/netns/" + self.ns, *cmd]

    def setup(self):
        if os.geteuid() != 0:
            raise Failure("needs root (BPF, cgroups, network namespaces)")
        for b in (self.ctl, self.agentd):
            if not os.access(b, os.X_OK):
                raise Failure("missing %s (run make)" % b)
        for t in ("ip", "nsenter", "redis-server"):
            if not shutil.which(t):
                raise Failure("missing %s (run scripts/install-deps.sh)" % t)
        cgroot = None
        with open("/proc/mounts") as f:
            for line in f:
                p = line.split()
                if p[2] == "cgroup2":
                    cgroot = p[1]
                    break
        if not cgroot:
            raise Failure("no cgroup2 mount in /proc/mounts")
        if os.path.exists(self.pin):
            raise Failure("%s exists already" % self.pin)
        self.tmp = tempfile.mkdtemp(prefix="sluice-bench-redis.")
        self.cg = os.path.join(cgroot, self.tag)
        os.mkdir(self.cg)
        self.ns = "sbr%d" % os.getpid()
        self.run_cmd(["ip", "netns", "add", self.ns])
        self.run_cmd(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.run_cmd(["ip", "-n", self.ns, "addr", "add", PROBE_ADDR + "/32", "dev", "lo"])
        s = socket_in_ns(self.ns)
        s.bind(("127.0.0.1", 0))
        self.redis_port = s.getsockname()[1]
        s2 = socket_in_ns(self.ns)  # taken while the first is held: two different ports
        s2.bind(("127.0.0.1", 0))
        self.api_port = s2.getsockname()[1]
        s.close()
        s2.close()
        self.url = "redis://127.0.0.1:%d" % self.redis_port

    def cleanup(self):
        problems = []

        def attempt(what, fn):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup goes on whatever happens
                problems.append("%s: %s" % (what, e))

        if self.agent:
            attempt("stopping the agent", self.agent.stop)
        for p in (self.client, self.server, self.redis):
            if p and p.poll() is None:
                def kill(p=p):
                    p.kill()
                    p.wait(5)
                attempt("stopping pid %d" % p.pid, kill)
        if self.loaded or os.path.exists(self.pin):
            def unload():
                p = self.run_cmd([self.ctl, "unload", "--pin-root", self.pin], check=False)
                if p.returncode != 0:
                    raise Failure((p.stderr or p.stdout).strip())
            attempt("sluicectl unload --pin-root " + self.pin, unload)
        if self.cg and os.path.isdir(self.cg):
            attempt("rmdir " + self.cg, lambda: os.rmdir(self.cg))
        if self.ns:
            def delns():
                p = self.run_cmd(["ip", "netns", "del", self.ns], check=False)
                if p.returncode != 0 and os.path.exists("/var/run/netns/" + self.ns):
                    raise Failure(p.stderr.strip())
            attempt("ip netns del " + self.ns, delns)
        if self.tmp:
            attempt("rm -r " + self.tmp, lambda: shutil.rmtree(self.tmp))
        for p in problems:
            log("warning: cleanup: %s" % p)
        return not problems

    def start_redis(self):
        self.redis = subprocess.Popen(
            self.in_ns("redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--daemonize", "no",
                       "--dir", self.tmp, "--logfile", os.path.join(self.tmp, "redis.log")),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                r = Resp(self.ns, self.redis_port)
                pong = r.call("PING")
                r.close()
                if pong == "PONG":
                    return
            except (OSError, Failure):
                pass
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise Failure("redis-server did not start (see %s/redis.log)" % self.tmp)
            time.sleep(0.02)

    def start_probe(self):
        self.server = subprocess.Popen(
            self.in_ns(sys.executable, "-c", SERVER, PROBE_ADDR, str(PROBE_A), str(PROBE_B)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if self.server.stdout.readline().strip() != "ready":
            raise Failure("the probe server did not start")
        self.client = subprocess.Popen(
            ["bash", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cg,
             *self.in_ns(sys.executable, "-c", CLIENT, PROBE_VIP, str(PROBE_PORT),
                         str(self.probe_ms), "10")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if self.client.stdout.readline().strip() != "ready":
            raise Failure("the probe client did not start")

    def put(self, services):
        path = os.path.join(self.tmp, "doc-%d.json" % len(services))
        with open(path, "w") as f:
            json.dump({"services": services}, f)
        self.run_cmd(self.in_ns(self.ctl, "registry", "put", path, "--registry", self.url),
                     "sluicectl registry put")

    def status_backends(self):
        p = self.run_cmd([self.ctl, "--pin-root", self.pin, "status", "-j"])
        g = json.loads(p.stdout).get("generation") or {}
        return g.get("backend_count")

    # ---- writes as a writer makes them -----------------------------------------------

    @staticmethod
    def inst(svc, addr, port):
        ident = "%s:%d" % (addr, port)
        return ("sluice:instance:%s:%s" % (svc, ident), "sluice:instances:%s" % svc, ident,
                json.dumps({"address": addr, "port": port, "weight": 1},
                           separators=(",", ":"), sort_keys=True))

    def register_tx(self, r, svc, addr, port, add=True):
        key, sset, ident, value = self.inst(svc, addr, port)
        r.sock.sendall(b"".join([
            encode("MULTI"),
            encode("SET", key, value) if add else encode("DEL", key),
            encode("SADD" if add else "SREM", sset, ident),
            encode("PUBLISH", "sluice:changes", "%s %s" % (svc, ident)),
            encode("EXEC")]))
        for _ in range(5):
            r.read()

    # ---- the measurements --------------------------------------------------------------

    def phase_latency(self, r):
        """One registration (then one deregistration) at a time, to the agent's log line."""
        svc = "lat"
        for add in (True, False):
            key = "reg_ms" if add else "dereg_ms"
            for i in range(self.regs):
                addr = "10.129.%d.%d" % (i // 250, i % 250 + 1)
                self.agent.drain()
                t0 = time.monotonic()
                self.register_tx(r, svc, addr, 8080, add)
                t, m = self.agent.wait_for(APPLIED_RE, 10)
                if int(m.group(3)) != 1:
                    self.problems.append("%s %s: the agent applied %s changes, expected 1" %
                                         ("registration" if add else "deregistration", addr,
                                          m.group(3)))
                self.res.setdefault(key, []).append((t - t0) * 1e3)
                self.res.setdefault(key + "_apply", []).append(float(m.group(4)))

    def phase_conn(self, r):
        """Registration and deregistration of a real backend, to a real connection."""
        for _ in range(self.conns):
            self.client.stdin.write("new %d\n" % PROBE_B)
            self.client.stdin.flush()
            t0 = time.monotonic()
            self.register_tx(r, "probe", PROBE_ADDR, PROBE_B, True)
            t, err = self.client_wait_answer()
            self.res.setdefault("reg_conn_ms", []).append((t - t0) * 1e3)
            self.res.setdefault("conn_errors", []).append(err)
            self.client.stdin.write("gone %d\n" % PROBE_B)
            self.client.stdin.flush()
            t0 = time.monotonic()
            self.register_tx(r, "probe", PROBE_ADDR, PROBE_B, False)
            t, err = self.client_wait_answer()
            self.res.setdefault("dereg_conn_ms", []).append((t - t0) * 1e3)
            self.res.setdefault("conn_errors", []).append(err)

    def client_wait_answer(self):
        line = self.client.stdout.readline().split()
        if not line or line[0] != "ok":
            raise Failure("probe client: %s" % (" ".join(line) or "exited"))
        return float(line[1]), int(line[3])

    def phase_rate(self):
        """Instance changes at a fixed rate for a bounded time, pipelined; then the lag."""
        total = int(self.rate * self.seconds)
        # Pre-encoded, so the writer's pace is not Python's encoding speed.
        present = set()
        chunks = []
        backends0 = self.status_backends()
        delta = 0
        for k in range(total):
            slot = k % (self.nsvc * self.pool)
            svc, j = "b-%03d" % (slot % self.nsvc), slot // self.nsvc
            addr = "10.130.%d.%d" % (j // 250, j % 250 + 1)
            key, sset, ident, value = self.inst(svc, addr, 8080)
            add = (svc, j) not in present
            if add:
                present.add((svc, j))
                delta += 1
            else:
                present.discard((svc, j))
                delta -= 1
            chunks.append(b"".join([
                encode("SET", key, value) if add else encode("DEL", key),
                encode("SADD" if add else "SREM", sset, ident),
                encode("PUBLISH", "sluice:changes", "%s %s" % (svc, ident))]))
        expect = backends0 + delta
        w = Resp(self.ns, self.redis_port)
        replies = {"n": 0, "err": None}

        def reader():
            try:
                while replies["n"] < 3 * total:
                    w.read()
                    replies["n"] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                replies["err"] = e

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        self.agent.drain()
        written_t = []  # (monotonic time, changes written so far)
        sent = 0
        t_start = time.monotonic()
        while sent < total:
            now = time.monotonic()
            due = min(total, int((now - t_start) * self.rate) + 1)
            if due > sent:
                w.sock.sendall(b"".join(chunks[sent:due]))
                sent = due
                written_t.append((time.monotonic(), sent))
            else:
                time.sleep(0.0005)
            if now - t_start > self.seconds * 3 + 10:
                raise Failure("the writer could not keep its pace")
        t_end = time.monotonic()
        # The agent's applies, until the maps hold what was written (bounded).
        applied = []  # (time, cumulative changes)
        cum = 0
        deadline = t_end + 30
        converged = None
        last_line = t_end
        while time.monotonic() < deadline:
            got = self.agent.next_line(time.monotonic() + 0.02)
            if got:
                m = APPLIED_RE.search(got[1])
                if m:
                    cum += int(m.group(3))
                    applied.append((got[0], cum, float(m.group(4))))
                    last_line = got[0]
                continue
            # Every change counted, or (should two toggles of one instance have landed in
            # one apply and cancelled out) the maps right and the agent quiet for 0.5 s.
            quiet = time.monotonic() - last_line > 0.5
            if (cum >= total or quiet) and self.status_backends() == expect:
                converged = applied[-1][0] if applied else time.monotonic()
                break
        rt.join(5)
        w.close()
        if replies["err"]:
            raise Failure("writer: %s" % replies["err"])
        if converged is None:
            self.problems.append("after %d changes at %d/s the maps hold %s backends, expected "
                                 "%d (the agent counted %d changes)" %
                                 (total, self.rate, self.status_backends(), expect, cum))
            return
        # Lag of each apply: its time minus when the writer had written that many changes.
        lags = []
        i = 0
        for t, c, _ in applied:
            while i < len(written_t) - 1 and written_t[i][1] < c:
                i += 1
            lags.append(max(0.0, t - written_t[i][0]) * 1e3)
        self.res["rate"] = {
            "changes": total, "target_per_s": self.rate,
            "written_per_s": total / (t_end - t_start),
            "applies": len(applied),
            "changes_per_apply_median": statistics.median(
                [b[1] - a[1] for a, b in zip([(0, 0, 0)] + applied, applied)]),
            "apply_ms_median": statistics.median([a[2] for a in applied]),
            "apply_ms_max": max(a[2] for a in applied),
            "lag_ms_p50": pct(lags, 50), "lag_ms_p99": pct(lags, 99), "lag_ms_max": max(lags),
            "converged_after_last_write_ms": (converged - t_end) * 1e3,
            "applied_per_s": total / (converged - t_start),
        }

    def run(self):
        self.setup()
        log("redis-server on 127.0.0.1:%d in %s" % (self.redis_port, self.ns))
        self.start_redis()
        services = [{"name": "lat", "vip": "10.97.255.1", "port": 80,
                     "lb": {"algorithm": "random"}},
                    {"name": "probe", "vip": PROBE_VIP, "port": PROBE_PORT,
                     "lb": {"algorithm": "round_robin"},
                     "backends": [{"address": PROBE_ADDR, "port": PROBE_A}]}]
        services += [{"name": "b-%03d" % i, "vip": "10.97.%d.%d" % (i // 250, i % 250 + 1),
                      "port": 80, "lb": {"algorithm": "random"}} for i in range(self.nsvc)]
        for i in range(self.bulk):
            k = i * 10
            services.append({"name": "bulk-%05d" % i, "port": 80,
                             "vip": "10.98.%d.%d" % (i // 250, i % 250 + 1),
                             "lb": {"algorithm": "random"},
                             "backends": [{"address": "10.%d.%d.%d" %
                                           (140 + (k + j) // 65536, ((k + j) // 256) % 256,
                                            (k + j) % 256), "port": 8080}
                                          for j in range(10)]})
        if self.bulk:
            log("putting %d more services x 10 backends" % self.bulk)
        t0 = time.monotonic()
        self.put(services)
        self.res["put_s"] = time.monotonic() - t0
        # In the namespace, beside Redis (nsenter execs the agent: the PID is its own).
        self.agent = Agent(self.in_ns(self.agentd, "--registry", self.url, "--pin-root",
                                      self.pin, "--cgroup", self.cg, "--listen",
                                      "127.0.0.1:%d" % self.api_port, "--log-level", "info"),
                           os.path.join(self.tmp, "agent.log"))
        self.loaded = True
        t, m = self.agent.wait_for(APPLIED_RE, 120)
        self.res["start_apply_ms"] = float(m.group(4))
        with open(os.path.join(self.tmp, "agent.log")) as f:
            m = re.search(r"in step: (\d+) services, (\d+) instances \(resync (\d+) ms\)",
                          f.read())
        if m:
            self.res["start_resync_ms"] = int(m.group(3))
            self.res["start_instances"] = int(m.group(2))
        self.start_probe()
        r = Resp(self.ns, self.redis_port)
        log("registration to effect: %d registrations, then %d deregistrations" %
            (self.regs, self.regs))
        self.phase_latency(r)
        log("registration to a connection: %d times each way" % self.conns)
        self.phase_conn(r)
        r.close()
        log("sustained: %d instance changes/s for %g s over %d services x %d instances" %
            (self.rate, self.seconds, self.nsvc, self.pool))
        self.phase_rate()
        if self.agent.stop() != 0:
            self.problems.append("the agent exited with status %s on SIGTERM" %
                                 self.agent.proc.returncode)
        self.agent = None
        self.report()
        if self.out:
            with open(self.out, "w") as f:
                json.dump({"results": self.res, "problems": self.problems}, f, indent=1)
        return 0 if not self.problems else 1

    def report(self):
        print()
        print("redis: one sluiced following one redis-server (7.0, loopback in a netns), "
              "%d CPUs, kernel %s" % (os.cpu_count(), os.uname().release))
        print("       writes straight to Redis as a writer makes them (MULTI SET SADD PUBLISH "
              "EXEC);")
        print("       effect = the agent's \"registry applied\" line on our pipe (after the "
              "maps are written), or a connection")
        print("       registry: %d services + %d bulk services x 10 backends; `registry put` of "
              "it %.2f s; agent start: resync of %s instances %s ms, first apply %.0f ms" %
              (self.nsvc + 2, self.bulk, self.res.get("put_s", 0),
               self.res.get("start_instances", "?"), self.res.get("start_resync_ms", "?"),
               self.res.get("start_apply_ms", 0)))
        print()
        fmt = "%-58s | %5s | %8s | %8s | %8s"
        print(fmt % ("measure", "n", "p50", "p99", "max"))
        print("-" * 98)

        def row(label, key):
            v = self.res.get(key, [])
            if v:
                print(fmt % (label, len(v), "%.2f" % pct(v, 50), "%.2f" % pct(v, 99),
                             "%.2f" % max(v)) + " ms")

        row("registration -> applied (log line)", "reg_ms")
        row("  of which the agent's apply (duration_ms)", "reg_ms_apply")
        row("deregistration -> applied (log line)", "dereg_ms")
        row("registration -> 1st connection reaching it", "reg_conn_ms")
        row("deregistration -> 2nd connection in a row not to it", "dereg_conn_ms")
        errs = sum(self.res.get("conn_errors", []))
        print("  failed connections during those: %d" % errs)
        if errs:
            self.problems.append("%d failed connections in the connection phase" % errs)
        rt = self.res.get("rate")
        if rt:
            print()
            print("sustained: %d instance changes at %d/s (written at %.0f/s), %d services x %d "
                  "instances toggled" % (rt["changes"], rt["target_per_s"],
                                          rt["written_per_s"], self.nsvc, self.pool))
            print("  agent: %d applies, median %d changes each, apply duration median %.1f ms, "
                  "max %.1f ms" % (rt["applies"], rt["changes_per_apply_median"],
                                   rt["apply_ms_median"], rt["apply_ms_max"]))
            print("  lag (apply time - when its last change was written): p50 %.1f ms, p99 %.1f "
                  "ms, max %.1f ms" % (rt["lag_ms_p50"], rt["lag_ms_p99"], rt["lag_ms_max"]))
            # Kept up: the lag stayed bounded (under a second) instead of growing with time.
            kept = rt["lag_ms_max"] < 1000 and rt["converged_after_last_write_ms"] < 1000
            print("  maps complete %.1f ms after the last write (%.0f changes/s first write to "
                  "complete maps)" % (rt["converged_after_last_write_ms"], rt["applied_per_s"]))
            print("  target: follow >= %d changes/s without falling behind: %s" %
                  (TARGET_RATE, ("MET" if kept else "NOT MET (the lag grew)")
                   if self.rate >= TARGET_RATE else "not measured (BENCH_REDIS_RATE < %d)" %
                   TARGET_RATE))
        for p in self.problems:
            print("PROBLEM: %s" % p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", help="write the raw results here (JSON)")
    args = ap.parse_args()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    b = None
    rc = 1
    try:
        b = Bench(args.build, args.out)
        rc = b.run()
    except Failure as e:
        log("FAILED: %s" % e)
        if b and b.tmp and os.path.exists(os.path.join(b.tmp, "agent.log")):
            with open(os.path.join(b.tmp, "agent.log")) as f:
                for line in f.readlines()[-5:]:
                    log("agent log: %s" % line.rstrip())
    except KeyboardInterrupt as e:
        log("interrupted (%s)" % (str(e) or "SIGINT"))
        rc = 130
    except Exception:  # noqa: BLE001 - reported, then everything is cleaned up
        log("FAILED: %s" % traceback.format_exc().rstrip())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if b and not b.cleanup():
            rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
