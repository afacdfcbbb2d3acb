# SPDX-License-Identifier: MIT
"""Fixtures of the end-to-end tests.

Run as root with Debian's interpreter, from the repository root:

    /usr/bin/python3 -m pytest tests/e2e

Session fixtures build one topology (topology.py: a hub bridge, a client,
4 backends and 32 extra client namespaces), start a backend server in each
backend namespace, create a throwaway cgroup v2 directory and a fresh pin root,
and `sluicectl load` into them. Every test applies the registry document it
needs (a new document replaces the previous one whole). Everything made here is
removed by the fixtures' finalizers, and by an atexit/SIGTERM fallback if a
finalizer never runs. A missing prerequisite (root, cgroup v2, bpffs, tools)
is a skip with the reason; a missing build/sluicectl is an error.
"""
import os
import shutil

import pytest

import sluice_e2e as E
from topology import Topology

N_BACKENDS = int(os.environ.get("SLUICE_E2E_BACKENDS", "4"))  # some tests assume 4
N_EXTRA_CLIENTS = 32


def missing_prerequisite():
    if os.geteuid() != 0:
        return "needs root (network namespaces, cgroups, BPF)"
    if E.cgroup2_mount() is None:
        return "no cgroup v2 hierarchy mounted (see /proc/mounts)"
    if not E.bpffs_mounted():
        return f"bpffs is not mounted at {E.BPFFS} (mount -t bpf bpf {E.BPFFS})"
    for tool in ("ip", "nsenter", "bpftool", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="session")
def prereqs():
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)
    if not os.access(E.SLUICECTL, os.X_OK):
        pytest.fail(f"{E.SLUICECTL} is not built: run `make` first", pytrace=False)


@pytest.fixture(scope="session")
def topo(prereqs, tmp_path_factory):
    """The namespaces, with a backend server running in each backend namespace."""
    t = Topology(f"slt{os.getpid()}", N_BACKENDS, N_EXTRA_CLIENTS)
    servers = E.Servers(t, str(tmp_path_factory.mktemp("backend-logs")))

    def teardown():
        servers.stop()
        errors = t.teardown()
        if errors:
            raise RuntimeError("could not delete namespaces: " + "; ".join(errors))

    token = E.JANITOR.add("topology", teardown)
    try:
        t.build()
        servers.start()
        check_topology(t)
    except BaseException:
        err = E.JANITOR.run(token)
        if err:
            print(f"sluice-e2e: {err}")
        raise
    yield t
    err = E.JANITOR.run(token)
    if err:
        raise err


def check_topology(t):
    """Every backend answers on both families, straight from the client namespace."""
    for b in t.backends:
        for addr in (b.v4, b.v6):
            out = E.direct_client(t.client.ns, "tcp", addr, 8080, "--count", 1)
            if out["backends"] != {b.identity: 1}:
                raise RuntimeError(f"topology broken: TCP to {addr}:8080 from "
                                   f"{t.client.ns}: {out}")
            out = E.direct_client(t.client.ns, "udp", addr, 5353, "--count", 1)
            if out["backends"] != {b.identity: 1}:
                raise RuntimeError(f"topology broken: UDP to {addr}:5353 from "
                                   f"{t.client.ns}: {out}")


def make_sluice(tag, workdir, load=True):
    """Creates a cgroup and a pin root named for this run and loads sluice there
    (with load=False, leaves loading to the test: sluiced loads an empty pin root).
    Returns (Sluice, janitor token of its teardown)."""
    cgroot = E.cgroup2_mount()
    cg = os.path.join(cgroot, f"sluice-{tag}-{os.getpid()}")
    pin_root = os.path.join(E.BPFFS, f"sluice-{tag}-{os.getpid()}")
    if os.path.exists(pin_root):
        raise RuntimeError(f"{pin_root} already exists; remove it first")
    s = E.Sluice(cg, pin_root, workdir)

    def teardown():
        problems = []
        if os.path.exists(pin_root):
            p = s.unload()
            if p.returncode != 0:
                problems.append(f"sluicectl unload exited {p.returncode}: {p.stderr.strip()}")
            left = E.list_pins(pin_root) if os.path.exists(pin_root) else []
            if left:
                problems.append(f"pins left after unload: {left}")
            E.force_remove_pins(pin_root)
        E.remove_cgroup(cg)
        if problems:
            raise RuntimeError("; ".join(problems))

    os.mkdir(cg)
    token = E.JANITOR.add(f"sluice {tag}", teardown)
    try:
        if load:
            s.load()
    except BaseException:
        E.JANITOR.run(token)
        raise
    return s, token


@pytest.fixture(scope="session")
def sluice(topo, tmp_path_factory):
    """sluice loaded on a throwaway cgroup with a fresh pin root, for the whole session."""
    s, token = make_sluice("test", str(tmp_path_factory.mktemp("registry")))
    yield s
    err = E.JANITOR.run(token)
    if err:
        raise err


@pytest.fixture
def private_sluice(topo, tmp_path):
    """A second, separate sluice (own cgroup and pin root) that a test may unload."""
    made = []

    def factory():
        s, token = make_sluice("unl", str(tmp_path))
        made.append(token)
        return s

    yield factory
    errors = [e for e in (E.JANITOR.run(t) for t in made) if e]
    if errors:
        raise errors[0]


@pytest.fixture
def unloaded_sluice(topo, tmp_path):
    """factory(): a fresh cgroup and pin root with nothing loaded (for sluiced to load);
    each call makes another. Unloaded and removed after the test, whatever is pinned."""
    if not os.access(E.SLUICED, os.X_OK):
        pytest.fail(f"{E.SLUICED} is not built: run `make` first", pytrace=False)
    made = []

    def factory():
        workdir = tmp_path / f"sluice{len(made)}"
        workdir.mkdir()
        s, token = make_sluice(f"agt{len(made)}", str(workdir), load=False)
        made.append(token)
        return s

    yield factory
    errors = [e for e in (E.JANITOR.run(t) for t in reversed(made)) if e]
    if errors:
        raise errors[0]


def pytest_report_header(config):
    return [f"sluicectl: {E.SLUICECTL}", f"cgroup2: {E.cgroup2_mount()}",
            f"run prefix: slt{os.getpid()} / sluice-*-{os.getpid()}"]
