# SPDX-License-Identifier: MIT
"""Helpers shared by the end-to-end tests: a handle on one loaded sluice
(sluicectl with its pin root, the cgroup its programs are attached to),
registry document builders, backend servers and cleanup bookkeeping."""
import atexit
import json
import os
import select
import signal
import subprocess
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
BPFFS = "/sys/fs/bpf"

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
    """One backend_server.py per backend namespace, outside the sluice cgroup."""

    def __init__(self, topo, logdir):
        self.topo = topo
        self.logdir = logdir
        self.procs = []

    def start(self, timeout=10.0):
        for b in self.topo.backends:
            log = open(os.path.join(self.logdir, f"{b.identity}.log"), "w")
            p = subprocess.Popen(in_ns(b.ns, PY, SERVER, "--id", b.identity),
                                 stdout=subprocess.PIPE, stderr=log, text=True)
            log.close()
            self.procs.append(p)
        deadline = time.monotonic() + timeout
        for b, p in zip(self.topo.backends, self.procs):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(left, 0))
            line = p.stdout.readline() if ready else ""
            if line.strip() != f"READY {b.identity}":
                raise RuntimeError(f"backend {b.identity} in {b.ns} did not start "
                                   f"(exit {p.poll()}), see {self.logdir}/{b.identity}.log")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            if p.stdout:
                p.stdout.close()
        self.procs = []


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


def direct_client(ns, *args, timeout=60):
    """client.py in namespace ns, outside any sluice cgroup."""
    p = subprocess.run(in_ns(ns, PY, CLIENT, *map(str, args)), capture_output=True, text=True,
                       timeout=timeout, env=CLEAN_ENV)
    assert p.returncode == 0, f"client.py {args} in {ns}: {p.stderr}"
    return json.loads(p.stdout)
