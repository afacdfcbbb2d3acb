# SPDX-License-Identifier: MIT
"""Helpers shared by the end-to-end tests: a handle on one loaded sluice
(sluicectl with its pin root, the cgroup its programs are attached to),
registry document builders, backend servers and cleanup bookkeeping."""
import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

from topology import in_ns, ns_path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
CLIENT = os.path.join(HERE, "client.py")
SERVER = os.path.join(HERE, "backend_server.py")
# SLUICECTL names the binary; else SLUICE_BUILD (set by scripts/run-tests.sh) or build/.
SLUICECTL = os.environ.get("SLUICECTL") or os.path.join(
    os.environ.get("SLUICE_BUILD") or os.path.join(REPO, "build"), "sluicectl")
# SLUICED names the agent binary; else next to sluicectl.
SLUICED = os.environ.get("SLUICED") or os.path.join(
    os.environ.get("SLUICE_BUILD") or os.path.join(REPO, "build"), "sluiced")
BPFFS = "/sys/fs/bpf"

# The JSON views sluicectl and the agent's API share (userspace/lib/views.c): their key sets
# are contracts.
SERVICE_KEYS = {"name", "id", "vip", "port", "protocol", "family", "algorithm", "backend_count",
                "selected", "panic_selected", "refused", "affinity_timeout_s",
                "panic_threshold_percent"}
BACKEND_KEYS = {"service", "id", "address", "port", "weight", "health", "selected",
                "established", "connect_failed", "closed", "panic_selected", "probes",
                "ejections", "skipped", "xdp"}
# `stats -j` → "xdp": what sl_xdp saw and did for a VIP.
XDP_KEYS = {"packets", "bytes", "syns", "dropped", "forwarded", "forwarded_bytes", "new_flows",
            "flow_hits", "flow_misses", "passed"}
XDP_DROPS = {"source_rate", "syn_rate", "no_backend", "malformed"}
XDP_PASSES = {"ttl", "no_route", "no_neighbor", "frag_needed", "not_forwarding", "vlan",
              "forwarding_off"}

# Environment for clients: no proxy may catch the test's HTTP requests.
CLEAN_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


class Janitor:
    """Cleanup actions, run last-in first-out by the fixtures' finalizers, or
    at interpreter exit (atexit, SIGTERM) for whatever a finalizer never reached."""

    def __init__(self):
        self.actions = []
        atexit.register(self.run_all)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.run_all()
        os._exit(128 + signum)

    def add(self, name, fn):
        token = (name, fn)
        self.actions.append(token)
        return token

    def run(self, token):
        """Runs one action (if still pending); returns its exception, if any."""
        if token not in self.actions:
            return None
        self.actions.remove(token)
        try:
            token[1]()
        except Exception as e:  # reported by the caller
            return e
        return None

    def run_all(self):
        while self.actions:
            name, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:
                print(f"sluice-e2e: cleanup {name} failed: {e}", flush=True)


JANITOR = Janitor()


def cgroup2_mount():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return parts[1]
    return None


def bpffs_mounted():
    with open("/proc/mounts") as f:
        return any(line.split()[1:3] == [BPFFS, "bpf"] for line in f if line.strip())


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cgroup_pids(cg):
    try:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def remove_cgroup(cg, timeout=5.0):
    """Kills the processes left in our throwaway cgroup (only tests' clients
    run there), then removes it; a cgroup disappears once its tasks are reaped."""
    if not os.path.isdir(cg):
        return
    deadline = time.monotonic() + timeout
    while True:
        kill_pids(cgroup_pids(cg))
        try:
            os.rmdir(cg)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def force_remove_pins(root):
    """Unlinks every pinned object under root, deepest first (links before the
    programs and maps they hold), then the directories."""
    if not os.path.isdir(root):
        return
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for f in filenames:
            try:
                os.unlink(os.path.join(dirpath, f))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass


def list_pins(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return sorted(out)


def bpftool_json(*args, timeout=30):
    p = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"bpftool {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return json.loads(p.stdout) if p.stdout.strip() else None


# --- registry documents -------------------------------------------------------

def be(address, port=8080, weight=1):
    return {"address": address, "port": port, "weight": weight}


def svc(name, vip, port, backends, algorithm="round_robin", protocol="tcp", **extra):
    s = {"name": name, "vip": vip, "port": port, "protocol": protocol,
         "lb": {"algorithm": algorithm}, "backends": list(backends)}
    s.update(extra)
    return s


def doc(*services):
    return {"services": list(services)}


# --- backend servers ----------------------------------------------------------

class Servers:
    """One backend_server.py per backend namespace, outside the sluice cgroup.
    tcp_port/udp_port choose the ports (udp_port 0: no UDP socket); stop_one
    and start_one stop and restart one backend's server, so its port refuses
    connects (RST) in between. With status_files, set_status(identity, code)
    makes one server answer HTTP with another status (500 for health checks)."""

    def __init__(self, topo, logdir, tcp_port=8080, udp_port=5353, status_files=False):
        self.topo = topo
        self.logdir = logdir
        self.tcp_port = tcp_port
        self.udp_port = udp_port
        self.status_files = status_files
        self.procs = {}  # identity -> Popen

    def status_file(self, identity):
        return os.path.join(self.logdir, f"{identity}-{self.tcp_port}.status")

    def set_status(self, identity, code):
        """With status_files: identity's server answers HTTP requests with code from now on."""
        path = self.status_file(identity)
        with open(path + ".tmp", "w") as f:
            f.write(f"{code}\n")
        os.rename(path + ".tmp", path)

    def _spawn(self, b):
        log = open(os.path.join(self.logdir, f"{b.identity}-{self.tcp_port}.log"), "a")
        extra = ["--status-file", self.status_file(b.identity)] if self.status_files else []
        p = subprocess.Popen(in_ns(b.ns, PY, SERVER, "--id", b.identity,
                                   "--tcp-port", str(self.tcp_port),
                                   "--udp-port", str(self.udp_port), *extra),
                             stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        self.procs[b.identity] = p
        return p

    def _wait_ready(self, b, p, deadline):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([p.stdout], [], [], max(left, 0))
        line = p.stdout.readline() if ready else ""
        if line.strip() != f"READY {b.identity}":
            raise RuntimeError(f"backend {b.identity} in {b.ns} did not start on port "
                               f"{self.tcp_port} (exit {p.poll()}), see "
                               f"{self.logdir}/{b.identity}-{self.tcp_port}.log")

    def start(self, timeout=10.0):
        started = [(b, self._spawn(b)) for b in self.topo.backends]
        deadline = time.monotonic() + timeout
        for b, p in started:
            self._wait_ready(b, p, deadline)

    def start_one(self, identity, timeout=10.0):
        """Starts (again) the server of one backend; returns once it listens."""
        b = self.topo.backend(identity)
        if identity in self.procs and self.procs[identity].poll() is None:
            raise RuntimeError(f"the server of {identity} is already running")
        self._wait_ready(b, self._spawn(b), time.monotonic() + timeout)

    @staticmethod
    def _stop(p):
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        if p.stdout:
            p.stdout.close()

    def stop_one(self, identity):
        """Stops one backend's server: once this returns, its port refuses connects."""
        p = self.procs.pop(identity)
        self._stop(p)

    def running(self):
        return {i for i, p in self.procs.items() if p.poll() is None}

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            self._stop(p)
        self.procs = {}


# --- nftables in a namespace --------------------------------------------------

def wait_until(get, ok, timeout, step=0.01):
    """Polls get() until ok(value) or timeout (bounded); returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = get()
        if ok(v) or time.monotonic() > deadline:
            return v
        time.sleep(step)


@contextlib.contextmanager
def servers_running(topo, workdir, what, **kwargs):
    """Servers(topo, workdir, **kwargs) started for the with-block and stopped after it,
    or by the janitor if the run dies first."""
    s = Servers(topo, workdir, **kwargs)
    token = JANITOR.add(what, s.stop)
    try:
        s.start()
    except BaseException:
        JANITOR.run(token)
        raise
    yield s
    err = JANITOR.run(token)
    if err:
        raise err


NFT_TABLE = "sluice_e2e"


def drop_syns(ns, port):
    """Makes namespace ns silently drop TCP SYNs to port (an nftables table of
    its own); returns a function that removes the table, idempotent and also
    registered with the janitor."""
    rules = (f"table inet {NFT_TABLE} {{\n"
             f"  chain input {{\n"
             f"    type filter hook input priority 0; policy accept;\n"
             f"    tcp dport {port} tcp flags & (syn | ack) == syn drop\n"
             f"  }}\n"
             f"}}\n")
    p = subprocess.run(in_ns(ns, "nft", "-f", "-"), input=rules, capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"nft in {ns}: {p.stderr.strip()}")

    def remove():
        q = subprocess.run(in_ns(ns, "nft", "list", "tables"), capture_output=True, text=True,
                           timeout=30)
        if q.returncode == 0 and f"inet {NFT_TABLE}" not in q.stdout:
            return
        q = subprocess.run(in_ns(ns, "nft", "delete", "table", "inet", NFT_TABLE),
                           capture_output=True, text=True, timeout=30)
        if q.returncode != 0:
            raise RuntimeError(f"nft delete table in {ns}: {q.stderr.strip()}")

    token = JANITOR.add(f"nft table in {ns}", remove)
    return lambda: _raise(JANITOR.run(token))


def _raise(err):
    if err:
        raise err


# --- long-lived client connections --------------------------------------------

class Holder:
    """A `client.py hold` process in the sluice cgroup: it opened its
    connections and keeps them until release() (closes its stdin: the client
    closes them and exits) or kill() (SIGKILL: the kernel closes them)."""

    def __init__(self, proc, args, token):
        self.proc = proc
        self.pid = proc.pid  # the client itself: sh and nsenter exec into it
        self.args = args
        self.token = token
        self.out = None

    def read_output(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            err = ""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            raise AssertionError(f"client.py {' '.join(self.args)}: no output within "
                                 f"{timeout} s (exit {self.proc.poll()}): {err}")
        self.out = json.loads(line)
        return self.out

    def release(self, timeout=10):
        """Lets the client close its connections itself; waits for it to exit."""
        try:
            self.proc.stdin.close()
            rc = self.proc.wait(timeout=timeout)
            assert rc == 0, f"client.py {' '.join(self.args)} exited {rc}: " \
                            f"{self.proc.stderr.read()}"
        finally:
            JANITOR.run(self.token)

    def kill(self, timeout=10):
        """SIGKILL, by pid, with every connection still open."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        finally:
            JANITOR.run(self.token)


class Looper(Holder):
    """A `client.py loop` process in the sluice cgroup: connects until stop()."""

    def stop(self, timeout=10):
        """Closes its stdin: the client finishes the attempt in progress and prints its
        document (events: [[monotonic time, identity or "!ERRNO"], ...]); returns it."""
        try:
            self.proc.stdin.close()
            out = self.read_output(timeout)
            rc = self.proc.wait(timeout=timeout)
            assert rc == 0, f"client.py {' '.join(self.args)} exited {rc}: " \
                            f"{self.proc.stderr.read()}"
            return out
        finally:
            JANITOR.run(self.token)


# --- one loaded sluice ----------------------------------------------------------

class Sluice:
    def __init__(self, cgroup, pin_root, workdir):
        self.cgroup = cgroup
        self.pin_root = pin_root
        self.workdir = workdir
        self.doc_no = 0

    # sluicectl

    def ctl(self, *args, timeout=60):
        """Runs sluicectl with this pin root; returns the CompletedProcess."""
        cmd = [SLUICECTL, "--pin-root", self.pin_root, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def ctl_json(self, *args):
        p = self.ctl("-j", *args)
        assert p.returncode == 0, (f"sluicectl -j {' '.join(args)} exited {p.returncode}: "
                                   f"{p.stderr.strip()} {p.stdout.strip()}")
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError(f"sluicectl -j {' '.join(args)}: stdout is not one JSON "
                                 f"document ({e}): {p.stdout!r}")

    def load(self):
        p = subprocess.run([SLUICECTL, "load", "--cgroup", self.cgroup, "--pin-root",
                            self.pin_root], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"sluicectl load --cgroup {self.cgroup} --pin-root "
                               f"{self.pin_root} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def unload(self):
        return subprocess.run([SLUICECTL, "unload", "--pin-root", self.pin_root],
                              capture_output=True, text=True, timeout=60)

    def write_doc(self, document):
        """Writes a document (dict, or str/bytes verbatim) to a new file; returns its path."""
        self.doc_no += 1
        path = os.path.join(self.workdir, f"registry-{self.doc_no:03d}.json")
        if isinstance(document, (dict, list)):
            data = json.dumps(document, indent=2).encode()
        elif isinstance(document, str):
            data = document.encode()
        else:
            data = document
        with open(path, "wb") as f:
            f.write(data)
        return path

    def apply(self, document, *extra):
        """Applies a document that must be accepted; returns (path, apply -j output)."""
        path = self.write_doc(document)
        return path, self.ctl_json("apply", path, *extra)

    def status(self):
        return self.ctl_json("status")

    def services(self):
        return self.ctl_json("services") or []

    def backends(self, service=None):
        return self.ctl_json("backends", *([service] if service else [])) or []

    # processes inside the cgroup

    def wrap(self, ns, cmd):
        """Command line that joins our cgroup, then the namespace ns, then runs cmd."""
        procs = os.path.join(self.cgroup, "cgroup.procs")
        script = 'cg=$0; n=$1; shift; echo $$ > "$cg" && exec nsenter --net="$n" "$@"'
        return ["sh", "-c", script, procs, ns_path(ns), *cmd]

    def run_in(self, ns, cmd, timeout=60):
        return subprocess.run(self.wrap(ns, cmd), capture_output=True, text=True,
                              timeout=timeout, env=CLEAN_ENV)

    def client(self, ns, *args, timeout=60):
        p = self.run_in(ns, [PY, CLIENT, *map(str, args)], timeout=timeout)
        assert p.returncode == 0, f"client.py {' '.join(map(str, args))} in {ns}: {p.stderr}"
        return json.loads(p.stdout)

    def hold(self, ns, *args, timeout=30):
        """Starts `client.py hold ARGS` in namespace ns and waits for its output
        (every connection opened); returns the Holder (output in .out)."""
        args = ["hold", *map(str, args)]
        proc = subprocess.Popen(self.wrap(ns, [PY, CLIENT, *args]), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=CLEAN_ENV)
        h = Holder(proc, args, JANITOR.add(f"holding client {proc.pid}",
                                            lambda: _end_holder(proc)))
        try:
            h.read_output(timeout)
        except BaseException:
            JANITOR.run(h.token)
            raise
        return h

    def loop(self, ns, host, port, *args, timeout=10):
        """Starts `client.py loop HOST PORT ARGS` in namespace ns (connections one after
        the other until stop()); returns the Looper once the loop has started."""
        args = ["loop", host, *map(str, (port, *args))]
        proc = subprocess.Popen(self.wrap(ns, [PY, CLIENT, *args]), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=CLEAN_ENV)
        lp = Looper(proc, args, JANITOR.add(f"looping client {proc.pid}",
                                            lambda: _end_holder(proc)))
        try:
            lp.started = lp.read_output(timeout)["started"]
        except BaseException:
            JANITOR.run(lp.token)
            raise
        return lp

    def breakers(self, service=None):
        return self.ctl_json("breakers", *([service] if service else [])) or []

    def breaker_reset(self, service, endpoint):
        return self.ctl("-j", "breakers", "reset", service, endpoint)

    def live_raw(self, backend_id):
        """sl_live[backend_id] as the kernel holds it (signed; the CLI shows < 0 as 0)."""
        e = bpftool_json("map", "lookup", "pinned", os.path.join(self.pin_root, "sl_live"),
                         "key", *(str(b) for b in backend_id.to_bytes(4, "little")))
        return e["formatted"]["value"]

    def clients_parallel(self, jobs, timeout=60):
        """jobs: [(ns, args)]; runs them all at once, returns their outputs in order."""
        procs = [subprocess.Popen(self.wrap(ns, [PY, CLIENT, *map(str, args)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=CLEAN_ENV) for ns, args in jobs]
        outs = []
        deadline = time.monotonic() + timeout
        try:
            for (ns, args), p in zip(jobs, procs):
                out, err = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
                assert p.returncode == 0, f"client.py {args} in {ns}: {err}"
                outs.append(json.loads(out))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return outs


def _end_holder(proc):
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f:
            f.close()


def direct_client(ns, *args, timeout=60):
    """client.py in namespace ns, outside any sluice cgroup."""
    p = subprocess.run(in_ns(ns, PY, CLIENT, *map(str, args)), capture_output=True, text=True,
                       timeout=timeout, env=CLEAN_ENV)
    assert p.returncode == 0, f"client.py {args} in {ns}: {p.stderr}"
    return json.loads(p.stdout)


# --- the agent ------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def socket_in_ns(ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket of network namespace ns, made by a short-lived thread that enters ns
    (setns changes only the calling thread's namespace; the socket keeps its own)."""
    result = {}

    def make():
        try:
            fd = os.open(ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(family, kind)
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


class _NsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, ns, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self):
        s = socket_in_ns(self._ns)
        s.settimeout(self.timeout)
        try:
            s.connect((self.host, self.port))
        except BaseException:
            s.close()
            raise
        self.sock = s


class Reply:
    def __init__(self, status, content_type, body):
        self.status = status
        self.content_type = content_type
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"reply ({self.status}) is not JSON ({e}): {self.body!r}")

    def __repr__(self):
        return f"Reply({self.status}, {self.content_type!r}, {self.body[:300]!r})"


class Agent:
    """One sluiced process in network namespace ns (outside every sluice cgroup): there
    its health checks reach the backends and its API listens on 127.0.0.1:port. Its
    stdout and stderr go to log_path. Killed by PID at the latest by the janitor."""

    def __init__(self, ns, port, args, log_path, env=None):
        self.ns = ns
        self.port = port
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self.env = env
        self.proc = None
        self.pid = None
        self.token = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(in_ns(self.ns, SLUICED, *self.args),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env)
        self.pid = self.proc.pid  # nsenter execs sluiced
        self.token = JANITOR.add(f"sluiced {self.pid}", self._end)
        return self

    def _end(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=30.0):
        """Waits (bounded) until the API answers /healthz, which it serves once the
        datapath is loaded or adopted and the registry was read."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise AssertionError(f"sluiced exited {self.proc.returncode} before "
                                     f"serving:\n{self.log()[-3000:]}")
            try:
                if self.request("GET", "/healthz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"sluiced does not serve /healthz on port {self.port} "
                                     f"after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=10):
        """Waits for the agent to exit; returns its exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None:
                JANITOR.run(self.token)

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def request(self, method, path, body=None, token=None, headers=None, timeout=5):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c = _NsHTTPConnection(self.ns, "127.0.0.1", self.port, timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return Reply(r.status, r.getheader("Content-Type"), r.read())
        finally:
            c.close()

    def get_json(self, path, status=200):
        r = self.request("GET", path)
        assert r.status == status, f"GET {path}: {r}"
        return r.json()

    def metrics_text(self):
        r = self.request("GET", "/metrics")
        assert r.status == 200, f"GET /metrics: {r}"
        return r.body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, ((label, value), ...) sorted): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a sample line: {line!r}")
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples, name, **labels):
    """One sample's value (None if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))))
