# SPDX-License-Identifier: MIT
"""What the agent and redis parts of make bench (bench-agent.py, bench-redis.py) share: the
settings from the environment, the probe server and client (their own processes, in a
network namespace; each prints "ready" when it is), and a running sluiced whose stderr
lines are timestamped (CLOCK_MONOTONIC) as they arrive."""
import os
import queue
import re
import signal
import subprocess
import threading
import time

PROBE_VIP = "10.100.0.1"
PROBE_PORT = 80
PROBE_ADDR = "10.202.0.1"
PROBE_A = 8001
PROBE_B = 8002
APPLIED_RE = re.compile(r'registry applied generation=(\d+) services=(\d+) changes=(\d+) '
                        r'duration_ms=([0-9.]+)')
REJECTED_RE = re.compile(r'registry rejected')


class Failure(Exception):
    pass


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if not v:
        return default
    if not re.fullmatch(r"[0-9]+", v) or not lo <= int(v) <= hi:
        raise Failure("%s must be an integer in [%d, %d]" % (name, lo, hi))
    return int(v)


def env_float(name, default, lo, hi):
    v = os.environ.get(name, "")
    if not v:
        return default
    try:
        f = float(v)
    except ValueError:
        f = float("nan")
    if not lo <= f <= hi:
        raise Failure("%s must be a number in [%g, %g]" % (name, lo, hi))
    return f


# argv: ADDR PORT...: answers every connection with its port's number, then closes it.
SERVER = r'''
import selectors, signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # ^C: no traceback
sel = selectors.DefaultSelector()
for port in sys.argv[2:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(port)))
    s.listen(512)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, port.encode())
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        try:
            c, _ = key.fileobj.accept()
        except OSError:
            continue
        try:
            c.sendall(key.data)
        except OSError:
            pass
        c.close()
'''


# argv: VIP PORT INTERVAL_MS [TIMEOUT_S (20)]. Commands on stdin: "check", "new PORT",
# "gone PORT", "quit". Answers one line each: "ok T CONNS ERRORS LAST" (T: CLOCK_MONOTONIC
# when the condition was seen: the first connection to PORT, or the second in a row not
# to it), "timeout ...".
CLIENT = r'''
import signal, socket, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
vip, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000
limit = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
def one():
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((vip, port))
        return s.recv(16).decode() or "eof"
    except OSError as e:
        return "error:%s" % (e.strerror or e)
    finally:
        s.close()
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    if cmd[0] == "check":
        r = one()
        print("ok %.6f 1 %d %s" % (time.monotonic(), r.startswith("error"), r), flush=True)
        continue
    want = cmd[1]
    n = errors = streak = 0
    deadline = time.monotonic() + limit
    while True:
        r = one()
        t = time.monotonic()
        n += 1
        if r.startswith("error") or r == "eof":
            errors += 1
            streak = 0
        elif cmd[0] == "new":
            if r == want:
                print("ok %.6f %d %d %s" % (t, n, errors, r), flush=True)
                break
        else:
            streak = streak + 1 if r != want else 0
            if streak == 2:
                print("ok %.6f %d %d %s" % (t, n, errors, r), flush=True)
                break
        if t > deadline:
            print("timeout %.6f %d %d %s" % (t, n, errors, r), flush=True)
            break
        time.sleep(interval)
'''


class Agent:
    """A running sluiced; its stderr lines are timestamped (CLOCK_MONOTONIC) as they arrive."""

    def __init__(self, cmd, logfile):
        self.lines = queue.Queue()
        self.log = open(logfile, "a")
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            t = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.write("%.6f %s\n" % (t, line))
            self.log.flush()
            self.lines.put((t, line))
        self.lines.put((time.monotonic(), None))

    def next_line(self, deadline):
        """The next line (monotonic time, text) before deadline, or None."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            t, line = self.lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            raise Failure("the agent exited (status %s)" % self.proc.wait())
        return t, line

    def wait_for(self, pattern, timeout=30):
        """The first line matching PATTERN: (monotonic time, match). Fails on a rejection."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.next_line(deadline)
            if got is None:
                raise Failure("no agent log line matching %r within %d s" %
                              (pattern.pattern, timeout))
            if REJECTED_RE.search(got[1]):
                raise Failure("the agent rejected the registry: %s" % got[1])
            m = pattern.search(got[1])
            if m:
                return got[0], m

    def applied(self, timeout=30):
        t, m = self.wait_for(APPLIED_RE, timeout)
        return t, {"generation": int(m.group(1)), "services": int(m.group(2)),
                   "changes": int(m.group(3)), "duration_ms": float(m.group(4))}

    def drain(self):
        """Drops the lines read so far; fails if the agent has exited."""
        while True:
            try:
                _, line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                raise Failure("the agent exited (status %s)" % self.proc.wait())

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(2)
        self.log.close()
        return self.proc.returncode
