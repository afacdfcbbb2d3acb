# SPDX-License-Identifier: MIT
"""Checks of the deployment files in deploy/ (issue 8), as far as a machine without a
container engine or a cluster allows.

Run as root with Debian's interpreter, from the repository root, after `make`:

    /usr/bin/python3 -m pytest tests/deploy

Static checks (manifests, Dockerfile, systemd unit, dashboard, rules) need no privileges.
The others run the real binaries ($SLUICE_BUILD, else build/): an agent in a private
network namespace (loopback only) with its own pin root and cgroup, `sluicectl apply
--dry-run` of the ConfigMap's document, the DaemonSet's own command lines, the systemd
unit's capability set, and `make install` trees. Every pin root, cgroup, namespace and
process made here is removed by PID or name (through the e2e janitor), even on failure; a
missing prerequisite (root, cgroup v2, bpffs) is a skip with the reason.

The image cannot be built here. Instead its package lists are checked against this host
(the same Debian release): every tool, header, pkg-config file and library `make all`
uses belongs to a package the build stage installs (or to what those depend on, or to the
base image's required packages), every library `ldd` shows for the binaries to one the
runtime stage installs, and every package listed is needed by one of those.
"""
import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import sluice_e2e as E  # noqa: E402
from topology import in_ns, ns_path  # noqa: E402

DEPLOY = os.path.join(REPO, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
DOCKERFILE = os.path.join(DEPLOY, "container", "Dockerfile")
HEALTHCHECK = os.path.join(DEPLOY, "container", "sluice-healthcheck")
IMAGE_FILE = os.path.join(DEPLOY, "container", "IMAGE")
UNIT = os.path.join(DEPLOY, "systemd", "sluiced.service")
ENV_FILE = os.path.join(DEPLOY, "systemd", "sluiced.env")
DASHBOARD = os.path.join(DEPLOY, "grafana", "sluice.json")
RULES = os.path.join(DEPLOY, "prometheus", "sluice-rules.yml")
RULES_TEST = os.path.join(HERE, "sluice-rules.test.yml")
BUILD = os.environ.get("SLUICE_BUILD") or os.path.join(REPO, "build")
SLUICECTL = E.SLUICECTL
SLUICED = E.SLUICED
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Loopback-only services for the agents started here, so that per-service and per-backend
# series exist; their health checks stay inside a private network namespace.
AGENT_DOC = {"services": [
    {"name": "web", "vip": "10.96.200.10", "port": 80, "protocol": "tcp",
     "lb": {"algorithm": "round_robin"},
     "health_check": {"type": "tcp", "interval_ms": 200, "timeout_ms": 100},
     "backends": [{"address": "127.0.0.1", "port": 18081},
                  {"address": "127.0.0.2", "port": 18081}]},
    {"name": "dns", "vip": "10.96.200.53", "port": 53, "protocol": "udp",
     "rate_limit": {"connections_per_second": 100},
     "backends": [{"address": "127.0.0.1", "port": 15353}]},
]}


# --- helpers --------------------------------------------------------------------------

def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n"
                             f"{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


def read(path):
    with open(path) as f:
        return f.read()


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifests():
    """{(kind, name): object} of every manifest in deploy/kubernetes (kustomization aside)."""
    out = {}
    for f in sorted(os.listdir(K8S)):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml":
            for d in load_yaml_docs(os.path.join(K8S, f)):
                out[(d["kind"], d["metadata"]["name"])] = d
    return out


def daemonset():
    ds = [o for (kind, _), o in manifests().items() if kind == "DaemonSet"]
    assert len(ds) == 1, f"expected one DaemonSet in {K8S}, found {len(ds)}"
    return ds[0]


def configmap_document():
    """(mount directory, file name, document text) of the registry ConfigMap the agent uses."""
    ds = daemonset()
    spec = ds["spec"]["template"]["spec"]
    agent = spec["containers"][0]
    reg = flag_value(agent["command"] + agent.get("args", []), "--registry")
    assert reg.startswith("file:"), f"--registry {reg}: expected file:PATH"
    path = reg[len("file:"):]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for name, mount_path in mounts.items():
        vol = volumes[name]
        if "configMap" in vol and os.path.dirname(path) == mount_path:
            cm = manifests()[("ConfigMap", vol["configMap"]["name"])]
            key = os.path.basename(path)
            assert key in cm["data"], f"ConfigMap {cm['metadata']['name']} has no key {key}"
            return mount_path, key, cm["data"][key]
    raise AssertionError(f"no ConfigMap volume is mounted at {os.path.dirname(path)}")


def flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def help_flags(binary, *args):
    """Long options a binary's --help shows."""
    p = run([binary, *args, "--help"], check=False)
    return set(re.findall(r"(--[a-z][a-z-]+)", p.stdout + p.stderr))


def image_ref():
    ref = read(IMAGE_FILE).strip()
    assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+:[A-Za-z0-9._-]+", ref), \
        f"{IMAGE_FILE}: {ref!r} is not registry/name:tag"
    assert not ref.endswith(":latest"), "pin a version, not latest"
    return ref


# Dockerfile

def dockerfile_instructions(path):
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in read(path).splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        instr, _, args = cur.partition(" ")
        out.append((instr.upper(), args.strip()))
        cur = ""
    assert not cur, f"{path}: ends inside a continued line"
    return out


def dockerfile_stages(path):
    """[{"from": image, "name": alias or None, "instructions": [...]}]"""
    stages = []
    for instr, args in dockerfile_instructions(path):
        if instr == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "instructions": []})
        else:
            assert stages, f"{path}: {instr} before FROM"
            stages[-1]["instructions"].append((instr, args))
    return stages


def apt_packages(stage):
    """Packages the stage's RUN lines give to apt-get install."""
    pkgs = []
    for instr, args in stage["instructions"]:
        if instr != "RUN":
            continue
        for part in re.split(r"&&|;|\|\|", args):
            words = shlex.split(part)
            while words and "=" in words[0]:
                words.pop(0)  # VAR=value prefixes
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def exec_form(args):
    assert args.startswith("["), f"use the exec form: {args}"
    return json.loads(args)


# Debian packages on this host (the same release as the image's base)

_DPKG = None


def dpkg_db():
    """{package: {"depends": [[alternatives]], "provides": [...], "base": bool}}"""
    global _DPKG
    if _DPKG is None:
        fmt = "${Package}\t${Status}\t${Depends}\t${Pre-Depends}\t${Provides}\t" \
              "${Essential}\t${Priority}\n"
        p = run(["dpkg-query", "-W", "-f", fmt])
        db = {}
        for line in p.stdout.splitlines():
            pkg, status, dep, predep, prov, essential, prio = line.split("\t")
            if not status.endswith(" installed"):
                continue
            deps = []
            for group in filter(None, (dep + ("," if dep and predep else "") + predep)
                                .split(",")):
                deps.append([re.sub(r"\s*\(.*\)|:any|:native|\s*\[.*\]", "", a).strip()
                             for a in group.split("|")])
            db[pkg] = {"depends": deps,
                       "provides": [re.sub(r"\s*\(.*\)", "", x).strip()
                                    for x in prov.split(",") if x.strip()],
                       "base": essential == "yes" or prio == "required"}
        _DPKG = db
    return _DPKG


def dpkg_closure(pkgs):
    """The packages apt installs for pkgs (Depends and Pre-Depends, recursively; for an
    alternative, the one installed on this host)."""
    db = dpkg_db()
    providers = {}
    for name, info in db.items():
        for v in info["provides"]:
            providers.setdefault(v, []).append(name)
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        if p not in db:
            cands = providers.get(p, [])
            assert cands, f"package {p} is not installed on this host: cannot check it"
            p = cands[0]
            if p in seen:
                continue
        seen.add(p)
        for alts in db[p]["depends"]:
            pick = next((a for a in alts if a in db or a in providers), None)
            assert pick, f"{p} depends on {' | '.join(alts)}, none installed here"
            todo.append(pick)
    return seen


def base_image_packages():
    """Approximation of debian:bookworm-slim: the Essential and Priority: required packages
    (what debootstrap's minbase installs), with apt, and their dependencies."""
    db = dpkg_db()
    return dpkg_closure([p for p, i in db.items() if i["base"]] + ["apt"])


def _path_variants(path):
    """path, each hop of its symlink chain (/usr/bin/cc -> /etc/alternatives/cc ->
    /usr/bin/gcc: the first a package owns names the package), its real path, and each of
    those with and without /usr (merged /usr: dpkg knows some files under /lib only)."""
    chain = [os.path.normpath(path)]
    while os.path.islink(chain[-1]) and len(chain) < 10:
        chain.append(os.path.normpath(os.path.join(os.path.dirname(chain[-1]),
                                                   os.readlink(chain[-1]))))
    chain.append(os.path.realpath(path))
    out = []
    for q in chain:
        out.append(q)
        if q.startswith("/usr/"):
            out.append(q[4:])
        elif q.startswith(("/lib", "/bin/", "/sbin/")):
            out.append("/usr" + q)
    return list(dict.fromkeys(out))


def dpkg_owners(paths):
    """{path: package owning it}; paths no package owns are left out."""
    cands = {p: _path_variants(p) for p in paths}
    every = sorted({c for v in cands.values() for c in v})
    owner = {}
    for i in range(0, len(every), 200):
        p = run(["dpkg-query", "-S", *every[i:i + 200]], check=False)
        for line in p.stdout.splitlines():
            if line.startswith("diversion "):
                continue
            pkgs, _, path = line.partition(": ")
            owner.setdefault(path, pkgs.split(",")[0].strip().split(":")[0])
    out = {}
    for path, variants in cands.items():
        for v in variants:
            if v in owner:
                out[path] = owner[v]
                break
    return out


def ldd_libs(binary):
    """{soname: path} of every shared library ldd resolves for binary."""
    p = run(["ldd", binary])
    libs = {}
    for line in p.stdout.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+(\S+)", line)
        if m:
            assert m.group(2) != "not", f"{binary}: {line.strip()}"
            libs[m.group(1)] = m.group(2)
        else:
            m = re.match(r"\s*(/\S+)\s+\(", line)
            if m:
                libs[os.path.basename(m.group(1))] = m.group(1)
    return libs


def needed_libs(binary):
    p = run(["readelf", "-d", binary])
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", p.stdout)


# PromQL

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def promql_metric_names(expr):
    """Metric names an expression selects: identifiers outside strings, label matchers,
    ranges and grouping clauses that are not functions or keywords."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if m.start() and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # the unit of a number or duration
        if s[m.end():].lstrip().startswith("("):
            continue  # a function
        if m.group(0).lower() not in PROMQL_WORDS:
            names.add(m.group(0))
    return names


def exported_names(metrics_text):
    """Sample names and family names (histograms: the base name with _bucket/_sum/_count)."""
    names = set()
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p, t))
            walk(p.get("panels", []))
    walk(dash["panels"])
    return out


def promtool_check_exprs(exprs, tmp_path):
    """promtool check rules on exprs as recording rules: a PromQL syntax check."""
    rules = {"groups": [{"name": "exprs", "rules": [
        {"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    return run([PROMTOOL, "check", "rules", str(path)], check=False)


# privileged fixtures

def missing_prerequisite():
    if os.geteuid() != 0:
        return "needs root (BPF, cgroups, network namespaces)"
    if E.cgroup2_mount() is None:
        return "no cgroup v2 hierarchy mounted (see /proc/mounts)"
    if not E.bpffs_mounted():
        return f"bpffs is not mounted at {E.BPFFS}"
    for tool in ("ip", "nsenter", "setpriv", "prlimit"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="module")
def privileged():
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)
    for b in (SLUICECTL, SLUICED):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is not built: run `make` first", pytrace=False)


@contextlib.contextmanager
def throwaway_sluice(tag, workdir, load=True):
    """A cgroup and a pin root named for this run (loaded with sluicectl unless load is
    False); unloaded and removed afterwards, whatever is pinned."""
    cg = os.path.join(E.cgroup2_mount(), f"sluice-dep{tag}-{os.getpid()}")
    pin_root = os.path.join(E.BPFFS, f"sluice-dep{tag}-{os.getpid()}")
    if os.path.exists(pin_root):
        raise RuntimeError(f"{pin_root} already exists; remove it first")
    s = E.Sluice(cg, pin_root, str(workdir))

    def teardown():
        problems = []
        if os.path.exists(pin_root):
            p = s.unload()
            if p.returncode != 0:
                problems.append(f"sluicectl unload exited {p.returncode}: {p.stderr.strip()}")
            E.force_remove_pins(pin_root)
        E.remove_cgroup(cg)
        if problems:
            raise RuntimeError("; ".join(problems))

    os.mkdir(cg)
    token = E.JANITOR.add(f"sluice {tag}", teardown)
    try:
        if load:
            s.load()
        yield s
    except BaseException:
        E.JANITOR.run(token)
        raise
    err = E.JANITOR.run(token)
    if err:
        raise err


@contextlib.contextmanager
def private_netns(tag):
    """A network namespace of this run with only loopback, up; deleted afterwards."""
    name = f"sluice-dep{tag}-{os.getpid()}"

    def teardown():
        if os.path.exists(ns_path(name)):
            run(["ip", "netns", "del", name])

    token = E.JANITOR.add(f"netns {name}", teardown)
    try:
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    except BaseException:
        E.JANITOR.run(token)
        raise
    err = E.JANITOR.run(token)
    if err:
        raise err


@pytest.fixture(scope="module")
def netns(privileged):
    with private_netns("") as name:
        yield name


def stop_agent(a):
    """SIGTERM (the agent leaves the datapath); SIGKILL by PID if it does not exit."""
    if a.running():
        a.signal(signal.SIGTERM)
        try:
            return a.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    E.JANITOR.run(a.token)
    return a.proc.returncode


def wait_ready(a, timeout=30):
    """Until /readyz answers 200 (a registry document is applied)."""
    a.wait_ready(timeout)
    r = E.wait_until(lambda: a.request("GET", "/readyz"), lambda r: r.status == 200, timeout)
    assert r.status == 200, f"/readyz: {r}\n{a.log()[-3000:]}"
    return r.json()


@pytest.fixture(scope="module")
def agent(netns, tmp_path_factory):
    """A real sluiced on the private namespace's 127.0.0.1:8090 (the default listen address)
    with AGENT_DOC applied."""
    work = tmp_path_factory.mktemp("agent")
    reg = work / "registry.json"
    reg.write_text(json.dumps(AGENT_DOC))
    with throwaway_sluice("agt", work, load=False) as s:
        a = E.Agent(netns, 8090, ["--registry", f"file:{reg}", "--pin-root", s.pin_root,
                                  "--cgroup", s.cgroup, "--listen", "127.0.0.1:8090"],
                    str(work / "sluiced.log"))
        a.start()
        try:
            wait_ready(a)
            yield a
        finally:
            stop_agent(a)


@pytest.fixture(scope="module")
def exported(agent):
    text = agent.metrics_text()
    names = exported_names(text)
    # The registry above must give per-service and per-backend series, or the comparisons
    # below would be against a partial list.
    assert 'sluice_backend_breaker_state{service="web",backend="127.0.0.1:18081"}' in text
    assert 'sluice_xdp_dropped_total{service="dns",reason="source_rate"}' in text
    return names


def make_install(destdir, *extra):
    """make install of the binaries under test (-o: installed as built, never rebuilt)."""
    run(["make", "-C", REPO, "--no-print-directory", f"BUILD={BUILD}",
         "-o", os.path.join(BUILD, "sluicectl"), "-o", os.path.join(BUILD, "sluiced"),
         "install", f"DESTDIR={destdir}", *extra])


@pytest.fixture
def installed(tmp_path):
    if not (os.access(SLUICECTL, os.X_OK) and os.access(SLUICED, os.X_OK)):
        pytest.fail(f"{BUILD}: sluicectl and sluiced are not built: run `make` first",
                    pytrace=False)
    dest = tmp_path / "dest"
    dest.mkdir()
    make_install(str(dest), "PREFIX=/usr/local")
    return dest


# --- Kubernetes manifests ---------------------------------------------------------------

def test_manifests_parse_and_share_the_namespace():
    objs = manifests()
    kinds = {k for k, _ in objs}
    assert {"Namespace", "ConfigMap", "DaemonSet"} <= kinds, kinds
    namespaces = {n for k, n in objs if k == "Namespace"}
    assert len(namespaces) == 1
    for (kind, name), o in objs.items():
        assert o.get("apiVersion"), f"{kind}/{name}: no apiVersion"
        if kind != "Namespace":
            assert o["metadata"].get("namespace") in namespaces, \
                f"{kind}/{name} is not in the namespace {namespaces}"
    ns = objs[("Namespace", next(iter(namespaces)))]
    # Privileged pods need a namespace that Pod Security Admission lets them into.
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    kust = load_yaml_docs(os.path.join(K8S, "kustomization.yaml"))[0]
    files = sorted(f for f in os.listdir(K8S)
                   if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    assert sorted(kust["resources"]) == files


def test_daemonset_runs_privileged_on_the_host_network_of_every_node():
    ds = daemonset()
    assert ds["apiVersion"] == "apps/v1"
    spec = ds["spec"]
    tmpl = spec["template"]
    for k, v in spec["selector"]["matchLabels"].items():
        assert tmpl["metadata"]["labels"].get(k) == v, f"selector {k}={v} misses the pods"
    pod = tmpl["spec"]
    assert pod["hostNetwork"] is True
    # Every node, whatever its taints: one toleration with operator Exists and no key.
    assert any(t.get("operator") == "Exists" and "key" not in t and "effect" not in t
               for t in pod["tolerations"]), pod["tolerations"]
    assert isinstance(pod.get("terminationGracePeriodSeconds"), int)
    assert pod["terminationGracePeriodSeconds"] > 0
    for c in pod["initContainers"] + pod["containers"]:
        assert c["securityContext"]["privileged"] is True, f"{c['name']} is not privileged"


def test_daemonset_update_strategy_keeps_one_agent_per_node():
    spec = daemonset()["spec"]
    us = spec["updateStrategy"]
    assert us["type"] == "RollingUpdate"
    # One node's agent at a time; the datapath stays pinned while it restarts. A surge pod
    # would need the same hostPort as the old one, so it could never start.
    assert us["rollingUpdate"]["maxUnavailable"] == 1
    assert us["rollingUpdate"].get("maxSurge", 0) in (0, "0", "0%")
    assert spec.get("minReadySeconds", 0) > 0


def test_daemonset_mounts_bpffs_and_cgroup2_from_the_host():
    pod = daemonset()["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    bpffs = [n for n, v in vols.items() if v.get("hostPath", {}).get("path") == "/sys/fs/bpf"]
    cgroup = [n for n, v in vols.items()
              if v.get("hostPath", {}).get("path") == "/sys/fs/cgroup"]
    assert len(bpffs) == 1 and len(cgroup) == 1, vols
    for c in pod["initContainers"] + pod["containers"]:
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert bpffs[0] in mounts, f"{c['name']} does not mount bpffs"
        m = mounts[bpffs[0]]
        assert m["mountPath"] == "/sys/fs/bpf"
        assert m.get("mountPropagation") == "Bidirectional", f"{c['name']}: {m}"
        assert cgroup[0] in mounts, f"{c['name']} does not mount the host's cgroup2"


def test_daemonset_commands_agree_with_the_binaries():
    pod = daemonset()["spec"]["template"]["spec"]
    cg_mount = {m["name"]: m["mountPath"] for m in pod["initContainers"][0]["volumeMounts"]}
    cg_vol = next(n for n, v in ((v["name"], v) for v in pod["volumes"])
                  if v.get("hostPath", {}).get("path") == "/sys/fs/cgroup")
    init = [c for c in pod["initContainers"] if "sluicectl" in c["command"][0]]
    assert len(init) == 1, "one init container runs sluicectl"
    argv = init[0]["command"] + init[0].get("args", [])
    assert argv[0] == "/usr/local/sbin/sluicectl"
    assert "load" in argv
    load_flags = {a for a in argv if a.startswith("--")}
    assert load_flags <= help_flags(SLUICECTL), load_flags - help_flags(SLUICECTL)
    assert flag_value(argv, "--cgroup") == cg_mount[cg_vol], \
        "sluicectl load must attach to the mounted cgroup2 root"

    agent = pod["containers"][0]
    aargv = agent["command"] + agent.get("args", [])
    assert aargv[0] == "/usr/local/sbin/sluiced"
    flags = {a.split("=")[0] for a in aargv if a.startswith("--")}
    assert flags <= help_flags(SLUICED), flags - help_flags(SLUICED)
    assert flag_value(aargv, "--pin-root") == flag_value(argv, "--pin-root")
    assert flag_value(aargv, "--cgroup") == flag_value(argv, "--cgroup")
    # $(VAR) in args is expanded by the kubelet only from the container's env.
    env = {e["name"] for e in agent.get("env", [])}
    for ref in re.findall(r"\$\((\w+)\)", " ".join(aargv)):
        assert ref in env, f"$({ref}) is not defined in the container's env"


def test_daemonset_probes_annotations_and_resources():
    tmpl = daemonset()["spec"]["template"]
    pod = tmpl["spec"]
    agent = pod["containers"][0]
    aargv = agent["command"] + agent.get("args", [])
    listen_port = int(flag_value(aargv, "--listen").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}

    def probe_port(probe):
        port = probe["httpGet"]["port"]
        return ports[port] if isinstance(port, str) else port

    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        if name in agent:
            assert probe_port(agent[name]) == listen_port, f"{name} is not on --listen"
    ann = tmpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == str(listen_port)
    assert ann["prometheus.io/path"] == "/metrics"

    def quantity(q):
        m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", str(q))
        assert m, f"unexpected quantity {q}"
        scale = {None: 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[m.group(2)]
        return float(m.group(1)) * scale

    for c in pod["initContainers"] + pod["containers"]:
        res = c["resources"]
        for kind in ("cpu", "memory"):
            req, lim = res["requests"][kind], res["limits"][kind]
            assert quantity(req) <= quantity(lim), f"{c['name']} {kind}: {req} > {lim}"
    # BPF map memory is charged to the loader's memory cgroup: the init container's limit
    # must hold the maps (about 100 MB + 19 MB per possible CPU with the default sizes), at
    # least on this machine.
    init_mem = quantity(pod["initContainers"][0]["resources"]["limits"]["memory"])
    assert init_mem >= 100 * 2**20 + 19 * 2**20 * os.cpu_count()


def test_every_container_uses_the_one_image_reference():
    ref = image_ref()
    seen = []
    for (kind, name), o in manifests().items():
        text = yaml.safe_dump(o)
        for m in re.finditer(r"\bimage: (\S+)", text):
            seen.append((f"{kind}/{name}", m.group(1)))
    assert seen, "no image in the manifests"
    assert all(img == ref for _, img in seen), f"images other than {ref}: {seen}"
    # The Dockerfile's build command tags the image from that file.
    assert '-t "$(cat deploy/container/IMAGE)"' in read(DOCKERFILE)


def test_configmap_document_passes_sluicectl_dry_run(privileged, tmp_path):
    _, key, text = configmap_document()
    doc = json.loads(text)
    assert len(doc["services"]) >= 2
    path = tmp_path / key
    path.write_text(text)
    bad = tmp_path / "bad.json"
    broken = json.loads(text)
    broken["services"][0]["lb"]["algoritm"] = "maglev"  # a typo: unknown fields are errors
    bad.write_text(json.dumps(broken))
    with throwaway_sluice("dry", tmp_path) as s:
        out = s.ctl_json("apply", str(path), "--dry-run")
        assert out["dry_run"] is True and out["generation"] is None
        added = {c["service"] for c in out["changes"]
                 if c["op"] == "add" and c["object"] == "service"}
        assert added == {svc["name"] for svc in doc["services"]}, out
        assert s.services() == [], "a dry run changed the maps"
        p = s.ctl("apply", str(bad), "--dry-run")
        assert p.returncode == 1 and "algoritm" in p.stderr, (p.returncode, p.stderr)


def test_daemonset_command_lines_run(privileged, tmp_path):
    """The init container's and the agent's argv as written in daemonset.yaml, with only the
    node's paths pointed at throwaway ones, load the datapath and serve the ConfigMap's
    document; the probes' paths answer 200."""
    pod = daemonset()["spec"]["template"]["spec"]
    mount_dir, key, text = configmap_document()
    etc = tmp_path / "etc-sluice"
    etc.mkdir()
    (etc / key).write_text(text)
    init = pod["initContainers"][0]
    agent = pod["containers"][0]
    pin_root = flag_value(init["command"] + init.get("args", []), "--pin-root")
    cgroup = flag_value(init["command"] + init.get("args", []), "--cgroup")
    with private_netns("ds") as ns, throwaway_sluice("ds", tmp_path, load=False) as s:
        def node(argv):
            out = []
            for a in argv:
                a = a.replace("/usr/local/sbin/sluicectl", SLUICECTL)
                a = a.replace("/usr/local/sbin/sluiced", SLUICED)
                a = a.replace("$(HOST_IP)", "127.0.0.1")
                if a == pin_root:
                    a = s.pin_root
                elif a == cgroup:
                    a = s.cgroup
                out.append(a.replace(mount_dir, str(etc)))
            return out

        run(node(init["command"] + init.get("args", [])))
        argv = node(agent["command"] + agent.get("args", []))
        port = int(flag_value(argv, "--listen").rsplit(":", 1)[1])
        a = E.Agent(ns, port, argv[1:], str(tmp_path / "sluiced.log"))
        assert argv[0] == SLUICED
        a.start()
        try:
            ready = wait_ready(a)
            assert ready["generation"] == 1 and ready["registry"] == "ok", ready
            names = {x["name"] for x in a.get_json("/v1/services")}
            assert names == {x["name"] for x in json.loads(text)["services"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in agent:
                    r = a.request("GET", agent[probe]["httpGet"]["path"])
                    assert r.status == 200, f"{probe}: {r}"
            assert "adopted" in a.log(), "the agent should adopt what the init container loaded"
        finally:
            assert stop_agent(a) == 0, a.log()[-2000:]
        # SIGTERM left the datapath in place, as the next pod expects.
        assert s.status()["loaded"] is True


def write_atomic(dirpath, files, stamp):
    """Writes files as the kubelet updates a ConfigMap volume: a new timestamped directory,
    `..data` switched to it by rename, per-key symlinks through `..data`."""
    new = os.path.join(dirpath, f"..{stamp}")
    os.mkdir(new)
    for name, text in files.items():
        with open(os.path.join(new, name), "w") as f:
            f.write(text)
    data = os.path.join(dirpath, "..data")
    old = os.readlink(data) if os.path.islink(data) else None
    os.symlink(os.path.basename(new), data + "_tmp")
    os.rename(data + "_tmp", data)
    for name in files:
        link = os.path.join(dirpath, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    if old:
        shutil.rmtree(os.path.join(dirpath, old))


@pytest.fixture
def configmap_agent(netns, tmp_path):
    vol = tmp_path / "volume"
    vol.mkdir()
    write_atomic(str(vol), {"registry.json": json.dumps(AGENT_DOC)}, "2025_01_01_00_00_00.1")
    with throwaway_sluice("cm", tmp_path, load=False) as s:
        a = E.Agent(netns, 8091, ["--registry", f"file:{vol}/registry.json", "--pin-root",
                                  s.pin_root, "--cgroup", s.cgroup, "--listen",
                                  "127.0.0.1:8091"], str(tmp_path / "sluiced.log"))
        a.start()
        try:
            assert wait_ready(a)["generation"] == 1
            one = {"services": AGENT_DOC["services"][:1]}
            write_atomic(str(vol), {"registry.json": json.dumps(one)}, "2025_01_01_00_01_00.2")
            yield a, s
        finally:
            stop_agent(a)


def test_configmap_update_is_applied_without_a_restart(configmap_agent):
    """The kubelet updates a ConfigMap volume by renaming `..data`; the file source watches
    that rename too (source_file.c touches_source)."""
    a, s = configmap_agent
    gen = E.wait_until(lambda: a.get_json("/readyz", status=200)["generation"],
                       lambda g: g == 2, timeout=3)
    assert gen == 2, "the agent did not apply the updated ConfigMap document"


def test_configmap_update_is_applied_on_sighup(configmap_agent):
    """SIGHUP re-reads the registry as well (the watcher may have applied the update
    already: the generation is then 2 or more)."""
    a, s = configmap_agent
    a.signal(signal.SIGHUP)
    gen = E.wait_until(lambda: a.get_json("/readyz", status=200)["generation"],
                       lambda g: g >= 2, timeout=5)
    assert gen >= 2
    assert [x["name"] for x in s.services()] == ["web"]


# --- Dockerfile ---------------------------------------------------------------------------

def test_dockerfile_is_multi_stage_on_bookworm():
    stages = dockerfile_stages(DOCKERFILE)
    assert len(stages) >= 2
    for st in stages:
        assert st["from"] in ("debian:bookworm-slim", "debian:bookworm"), st["from"]
    assert stages[0]["name"], "name the build stage (FROM ... AS build)"
    assert any("make" in args for instr, args in stages[0]["instructions"] if instr == "RUN")
    runtime = stages[-1]
    instrs = [i for i, _ in runtime["instructions"]]
    assert instrs.count("ENTRYPOINT") == 1 and instrs.count("HEALTHCHECK") == 1
    users = [a for i, a in runtime["instructions"] if i == "USER"]
    assert users in ([], ["root"], ["0"]), f"the agent must run as root: USER {users}"


def test_dockerfile_runtime_stage_copies_what_make_install_builds(installed):
    """The runtime stage copies PREFIX/sbin out of the build stage's `make install`: the
    two binaries, where the ENTRYPOINT and the DaemonSet's commands expect them, and no BPF
    object (they are embedded; test_make_install_tree_runs loads from such a tree)."""
    stages = dockerfile_stages(DOCKERFILE)
    build, runtime = stages[0], stages[-1]
    build_run = " ".join(a for i, a in build["instructions"] if i == "RUN")
    m = re.search(r"make\b[^&;]*\binstall\b[^&;]*", build_run)
    assert m, "the build stage should lay the binaries out with `make install`"
    install_vars = dict(re.findall(r"\b(DESTDIR|PREFIX)=(\S+)", m.group(0)))
    assert install_vars.get("PREFIX", "/usr/local") == "/usr/local"
    destdir = install_vars["DESTDIR"]
    copied = {}
    for instr, args in runtime["instructions"]:
        if instr == "COPY" and args.startswith(f"--from={build['name']} "):
            *srcs, dst = args.split()[1:]
            for src in srcs:
                assert src.startswith(destdir + "/"), f"COPY {src}: not from the install tree"
                local = os.path.join(str(installed), src[len(destdir) + 1:])
                assert os.path.isdir(local), f"{src} is not a directory make install makes"
                for f in os.listdir(local):
                    copied[os.path.join(dst, f)] = os.path.join(local, f)
    assert set(copied) == {"/usr/local/sbin/sluicectl", "/usr/local/sbin/sluiced"}, copied
    entry = exec_form(next(a for i, a in runtime["instructions"] if i == "ENTRYPOINT"))
    assert entry[0] == "/usr/local/sbin/sluiced"
    pod = daemonset()["spec"]["template"]["spec"]
    for c in pod["initContainers"] + pod["containers"]:
        assert c["command"][0] in copied, f"{c['name']} runs {c['command'][0]}, not in the image"


def test_dockerfile_healthcheck_gets_healthz():
    runtime = dockerfile_stages(DOCKERFILE)[-1]
    hc = next(a for i, a in runtime["instructions"] if i == "HEALTHCHECK")
    cmd = exec_form(hc[hc.index("CMD") + 3:].strip())
    copies = {}
    for instr, args in runtime["instructions"]:
        if instr == "COPY" and not args.startswith("--from"):
            src, dst = args.split()
            copies[dst] = os.path.join(REPO, src)
    assert copies.get(cmd[0]) == HEALTHCHECK, f"HEALTHCHECK runs {cmd[0]}: not {HEALTHCHECK}"
    assert "/healthz" in read(HEALTHCHECK)
    assert os.access(HEALTHCHECK, os.X_OK)


def healthcheck_in(ns, listen=None):
    env = {k: v for k, v in E.CLEAN_ENV.items() if k != "SLUICE_LISTEN"}
    if listen:
        env["SLUICE_LISTEN"] = listen
    return run(in_ns(ns, HEALTHCHECK), check=False, env=env, timeout=30)


def test_healthcheck_script_against_a_running_agent(agent, netns):
    p = healthcheck_in(netns)  # the default, 127.0.0.1:8090, where the agent listens
    assert p.returncode == 0, p.stderr
    assert healthcheck_in(netns, "127.0.0.1:8090").returncode == 0
    assert healthcheck_in(netns, "0.0.0.0:8090").returncode == 0
    assert healthcheck_in(netns, "127.0.0.1:8099").returncode != 0  # nothing listens


def test_healthcheck_script_needs_a_200(tmp_path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503 if self.path == "/healthz" else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        env = dict(E.CLEAN_ENV, SLUICE_LISTEN=f"127.0.0.1:{srv.server_address[1]}")
        p = run([HEALTHCHECK], check=False, env=env, timeout=30)
        assert p.returncode != 0, "a 503 from /healthz must fail the health check"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


def test_dockerfile_runtime_packages_provide_every_library():
    runtime = dockerfile_stages(DOCKERFILE)[-1]
    pkgs = apt_packages(runtime)
    assert pkgs, "the runtime stage installs no package"
    closure = dpkg_closure(pkgs) | base_image_packages()
    used = set()
    for binary in (SLUICECTL, SLUICED):
        libs = ldd_libs(binary)
        owners = dpkg_owners(libs.values())
        for soname, path in libs.items():
            if soname.startswith(("linux-vdso", "libc.so", "ld-linux")):
                continue
            assert path in owners, f"{binary}: {path} belongs to no Debian package"
            assert owners[path] in closure, \
                f"{binary} needs {soname} from {owners[path]}, which the runtime stage " \
                f"does not install: add it to its apt-get install"
            used.add(owners[path])
        # Libraries the binary links directly: their package is named, not left to chance.
        for soname in needed_libs(binary):
            if soname.startswith("libc.so"):
                continue
            assert owners[libs[soname]] in pkgs, \
                f"{binary} links {soname} ({owners[libs[soname]]}): list it in the runtime stage"
    unused = set(pkgs) - used
    assert not unused, f"runtime packages no binary needs: {sorted(unused)}"


def build_commands():
    """Every command `make all` runs for a fresh build (make -n -B, V=1)."""
    p = run(["make", "-C", REPO, "--no-print-directory", "-n", "-B", "V=1", f"BUILD={BUILD}",
             "all"])
    return [shlex.split(line) for line in p.stdout.splitlines() if line.strip()]


def test_dockerfile_build_stage_has_what_make_needs_and_no_more():
    build = dockerfile_stages(DOCKERFILE)[0]
    pkgs = apt_packages(build)
    closure = dpkg_closure(pkgs) | base_image_packages()
    files = {}  # path -> what uses it

    def use(path, why):
        files.setdefault(path, why)

    def tool(name):
        path = shutil.which(name)
        assert path, f"{name} is not installed here"
        use(path, f"the tool {name}")

    for t in ("make", "pkg-config", "sed"):
        tool(t)
    makefile = read(os.path.join(REPO, "Makefile"))
    modules = re.search(r"^PKGS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    for mod in modules:
        pc = run(["pkg-config", "--path", mod]).stdout.strip()
        use(pc, f"pkg-config {mod}")
    for argv in build_commands():
        if argv[0] in ("[", "echo", "mkdir", "rm", ":"):
            continue
        tool(argv[0])
        if argv[0] in ("cc", "gcc", "clang"):
            for prog in ("cc1", "as", "ld", "collect2"):
                q = run([argv[0], f"-print-prog-name={prog}"], check=False).stdout.strip()
                if q and os.path.isabs(q) and os.path.exists(q):
                    use(q, f"{argv[0]}'s {prog}")
                elif shutil.which(q or prog) and prog in ("as", "ld"):
                    use(shutil.which(q or prog), f"{argv[0]}'s {prog}")
        if "-c" in argv:
            i = argv.index("-c")
            src = argv[i + 1]
            dep = [a for j, a in enumerate(argv) if j not in (i, i + 1)]
            if "-o" in dep:
                k = dep.index("-o")
                del dep[k:k + 2]
            out = run(dep + ["-M", src], cwd=REPO).stdout
            for f in out.replace("\\\n", " ").split(":", 1)[1].split():
                if os.path.isabs(f) and not f.startswith((REPO, BUILD)):
                    use(os.path.normpath(f), f"#include in {src}")
        elif "-o" in argv and argv[0] in ("cc", "gcc"):
            for a in argv:
                if a.startswith("-l"):
                    lib = run([argv[0], f"-print-file-name=lib{a[2:]}.so"]).stdout.strip()
                    assert os.path.isabs(lib), f"{a}: no lib{a[2:]}.so here"
                    use(lib, f"linking {a}")
            for crt in ("crt1.o", "crti.o", "libc.so"):
                use(run([argv[0], f"-print-file-name={crt}"]).stdout.strip(), "linking")
    owners = dpkg_owners(files)
    missing = sorted(f"{f} ({why})" for f, why in files.items() if f not in owners)
    assert not missing, f"files of the build that no package owns: {missing[:10]}"
    lacking = sorted({f"{owners[f]} (for {files[f]})" for f in files
                      if owners[f] not in closure})
    assert not lacking, f"the build stage lacks: {lacking}"
    used = set(owners.values())
    unused = set(pkgs) - used
    assert not unused, f"build packages nothing in `make all` uses: {sorted(unused)}"


# --- systemd ------------------------------------------------------------------------------

def unit_settings(path):
    """[(section, key, value)] of a unit file."""
    out, section = [], None
    for line in read(path).splitlines():
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def unit_get(settings, key):
    return [v for _, k, v in settings if k == key]


def test_make_install_tree_runs(installed, privileged, tmp_path):
    d = installed
    sbin = d / "usr/local/sbin"
    assert sorted(os.listdir(sbin)) == ["sluicectl", "sluiced"]
    for b in os.listdir(sbin):
        assert os.stat(sbin / b).st_mode & 0o777 == 0o755
    unit = d / "usr/local/lib/systemd/system/sluiced.service"
    assert unit.read_text() == read(UNIT), "PREFIX=/usr/local needs no rewriting"
    assert (d / "etc/default/sluiced").read_text() == read(ENV_FILE)
    assert (d / "etc/sluice").is_dir(), "the agent watches the registry's directory"
    assert json.loads((d / "usr/local/share/sluice/grafana/sluice.json").read_text())
    assert (d / "usr/local/share/sluice/prometheus/sluice-rules.yml").read_text() == read(RULES)
    objects = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs if f.endswith(".o")]
    assert not objects, objects
    for b in ("sluicectl", "sluiced"):
        p = run([str(sbin / b), "--help"], check=False)
        assert p.returncode == 0 and "Usage" in p.stdout + p.stderr, (b, p.returncode, p.stderr)
    # The datapath loads from the installed binary alone: the BPF objects are embedded.
    with throwaway_sluice("inst", tmp_path, load=False) as s:
        run([str(sbin / "sluicectl"), "--pin-root", s.pin_root, "load", "--cgroup", s.cgroup])
        assert s.status()["loaded"] is True


def test_make_install_keeps_an_edited_environment_file(installed):
    env = installed / "etc/default/sluiced"
    env.write_text("SLUICE_LOG_LEVEL=debug\n")
    make_install(str(installed), "PREFIX=/usr/local")
    assert env.read_text() == "SLUICE_LOG_LEVEL=debug\n"


def test_make_install_rewrites_the_unit_for_its_prefix(tmp_path):
    make_install(str(tmp_path), "PREFIX=/usr", "SYSCONFDIR=/etc")
    s = unit_settings(tmp_path / "usr/lib/systemd/system/sluiced.service")
    assert unit_get(s, "ExecStart")[0].split()[0] == "/usr/sbin/sluiced"
    assert unit_get(s, "ExecStartPre")[0].split()[0] == "/usr/sbin/sluicectl"
    assert (tmp_path / "usr/sbin/sluiced").exists()
    assert unit_get(s, "EnvironmentFile") == ["-/etc/default/sluiced"]


def test_systemd_unit_verifies_against_the_install_tree(installed, tmp_path):
    """systemd-analyze verify checks that ExecStart*= binaries exist: the installed unit's
    /usr/local and /etc paths are pointed into the DESTDIR tree (systemd 252's --root would
    also need systemd's own units and /bin/kill inside the tree)."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is not installed"
    d = str(installed)
    text = (installed / "usr/local/lib/systemd/system/sluiced.service").read_text()
    for path in re.findall(r"(?<![\w/])(/usr/local/\S+|/etc/default/\S+)", text):
        assert os.path.exists(d + path.rstrip(",")), f"the unit names {path}: not installed"
    check = tmp_path / "check"
    check.mkdir()
    unit = check / "sluiced.service"
    unit.write_text(text.replace("/usr/local/", d + "/usr/local/")
                    .replace("/etc/default/", d + "/etc/default/"))
    p = run(["systemd-analyze", "verify", str(unit)], check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    # The same check fails when the binary is not where the unit says.
    os.unlink(installed / "usr/local/sbin/sluiced")
    p = run(["systemd-analyze", "verify", str(unit)], check=False)
    assert p.returncode != 0 and "sluiced" in p.stdout + p.stderr


def test_systemd_unit_settings():
    s = unit_settings(UNIT)
    assert unit_get(s, "Restart") == ["always"]
    pre = unit_get(s, "ExecStartPre")
    assert len(pre) == 1
    pre_argv = pre[0].split()
    assert pre_argv[0] == "/usr/local/sbin/sluicectl" and "load" in pre_argv
    assert unit_get(s, "ExecStart")[0].split()[0] == "/usr/local/sbin/sluiced"
    assert unit_get(s, "EnvironmentFile") == ["-/etc/default/sluiced"]
    # Every variable the command lines use has a default in the unit, so it runs without
    # the environment file, and the defaults match the file's.
    defaults = dict(kv.split("=", 1) for v in unit_get(s, "Environment") for kv in v.split())
    used = set(re.findall(r"\$\{?(\w+)\}?", " ".join(pre + unit_get(s, "ExecStart"))))
    assert used <= set(defaults), used - set(defaults)
    env = dict(line.split("=", 1) for line in read(ENV_FILE).splitlines()
               if line and not line.startswith("#"))
    for k, v in defaults.items():
        assert env.get(k) == v, f"{k}: unit default {v!r}, environment file {env.get(k)!r}"


def test_systemd_environment_file_names_real_variables():
    p = run([SLUICED, "--help"])
    known = set(re.findall(r"\b(SLUICE_[A-Z_]+)\b", p.stdout))
    assert "SLUICE_REGISTRY" in known
    unit_vars = set(re.findall(r"\$\{?(\w+)\}?", read(UNIT)))
    keys = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", read(ENV_FILE), re.M)
    assert keys
    for k in keys:
        assert k in known or k in unit_vars, f"{k} is read neither by sluiced nor by the unit"
    defaults = {"SLUICE_PIN_ROOT": "/sys/fs/bpf/sluice", "SLUICE_LISTEN": "127.0.0.1:8090"}
    for k, v in defaults.items():
        assert v in p.stdout, f"sluiced --help no longer says {k} defaults to {v}"
        assert re.search(rf"^{k}={re.escape(v)}$", read(ENV_FILE), re.M)


class CappedAgent(E.Agent):
    """An agent started through setpriv with a capability bounding set and a 64 KiB
    RLIMIT_MEMLOCK, as systemd would run the unit's ExecStart."""

    def __init__(self, caps, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.caps = caps

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                in_ns(self.ns, *capped(self.caps, SLUICED, *self.args)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid  # nsenter, prlimit and setpriv exec
        self.token = E.JANITOR.add(f"sluiced {self.pid}", self._end)
        return self


def capped(caps, *cmd):
    bset = ",".join(["-all"] + ["+" + c.lower().replace("cap_", "") for c in caps])
    return ["prlimit", "--memlock=65536:65536", "setpriv", f"--bounding-set={bset}",
            "--inh-caps=-all", "--", *cmd]


def unit_capabilities():
    caps = " ".join(unit_get(unit_settings(UNIT), "CapabilityBoundingSet")).split()
    assert caps, "no CapabilityBoundingSet"
    return caps


def test_systemd_capability_set_suffices(netns, tmp_path):
    """ExecStartPre and ExecStart under exactly the unit's bounding set (and a 64 KiB
    memlock limit that only CAP_SYS_RESOURCE could raise): load, an agent that adopts the
    datapath, applies a registry, attaches sl_xdp to an interface and stops on SIGTERM,
    then unload."""
    caps = unit_capabilities()
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(AGENT_DOC))
    with throwaway_sluice("cap", tmp_path, load=False) as s:
        run(capped(caps, SLUICECTL, "--pin-root", s.pin_root, "load", "--cgroup", s.cgroup))
        a = CappedAgent(caps, netns, 8092, ["--registry", f"file:{reg}", "--pin-root",
                                            s.pin_root, "--cgroup", s.cgroup, "--listen",
                                            "127.0.0.1:8092", "--xdp-interfaces", "lo"],
                        str(tmp_path / "sluiced.log"))
        a.start()
        try:
            assert wait_ready(a)["generation"] == 1
            st = E.wait_until(s.status, lambda st: st.get("xdp"), timeout=5)
            assert [x["interface"] for x in st["xdp"]] == ["lo"], st.get("xdp")
            assert {x["name"] for x in s.services()} == {"web", "dns"}
        finally:
            assert stop_agent(a) == 0, a.log()[-2000:]
        run(capped(caps, SLUICECTL, "--pin-root", s.pin_root, "unload"))
        assert not os.path.exists(s.pin_root)


def test_systemd_capabilities_are_each_needed(privileged, tmp_path):
    caps = unit_capabilities()
    for cap in caps:
        fewer = [c for c in caps if c != cap]
        with throwaway_sluice(f"no{cap.lower()[4:]}", tmp_path, load=False) as s:
            p = run(capped(fewer, SLUICECTL, "--pin-root", s.pin_root, "load", "--cgroup",
                           s.cgroup), check=False)
            assert p.returncode != 0, f"sluicectl load works without {cap}: drop it"


# --- Prometheus rules and the Grafana dashboard ------------------------------------------------

def rule_exprs():
    doc = load_yaml_docs(RULES)[0]
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def test_alerting_rules_pass_promtool():
    p = run([PROMTOOL, "check", "rules", RULES], check=False)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr


def test_alerting_rules_fire_as_intended():
    p = run([PROMTOOL, "test", "rules", os.path.basename(RULES_TEST)], check=False, cwd=HERE)
    assert p.returncode == 0, p.stdout + p.stderr
    # Every alert is shown to fire at least once in the unit tests.
    tests = load_yaml_docs(RULES_TEST)[0]["tests"]
    fired = {t["alertname"] for g in tests for t in g.get("alert_rule_test", [])
             if t.get("exp_alerts")}
    assert fired == {a for a, _ in rule_exprs()}, {a for a, _ in rule_exprs()} - fired


def test_alerting_rules_cover_the_issue():
    used = set().union(*(promql_metric_names(e) for _, e in rule_exprs()))
    for name in ("up", "sluice_backend_breaker_state", "sluice_service_backends",
                 "sluice_service_panic_selections_total", "sluice_service_refused_total",
                 "sluice_registry_degraded", "sluice_xdp_dropped_total"):
        assert name in used, f"no alert uses {name}"


def test_alerting_rules_use_exported_metrics(exported):
    for alert, expr in rule_exprs():
        unknown = promql_metric_names(expr) - exported - {"up"}
        assert not unknown, f"{alert} uses {unknown}, which the agent does not export"
    series = [s["series"] for g in load_yaml_docs(RULES_TEST)[0]["tests"]
              for s in g["input_series"]]
    names = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s).group(0) for s in series}
    assert not names - exported - {"up"}, names - exported - {"up"}


def test_dashboard_structure():
    dash = json.loads(read(DASHBOARD))
    assert 36 <= dash["schemaVersion"] <= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["query"] == "prometheus"
    ref = "${" + ds[0]["name"] + "}"
    ids = []
    for p, t in dashboard_exprs(dash):
        assert t["datasource"]["uid"] == ref, f"panel {p['title']!r} bypasses {ref}"
        assert t["datasource"]["type"] == "prometheus"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == ref

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
            walk(p.get("panels", []))
    walk(dash["panels"])
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_dashboard_covers_the_issue():
    dash = json.loads(read(DASHBOARD))
    exprs = [t["expr"] for _, t in dashboard_exprs(dash)]
    used = set().union(*(promql_metric_names(e) for e in exprs))
    for name in ("sluice_service_connections_selected_total",
                 "sluice_backend_connections_selected_total", "sluice_service_refused_total",
                 "sluice_backend_breaker_state", "sluice_backend_live_connections",
                 "sluice_backend_health", "sluice_xdp_packets_total",
                 "sluice_xdp_dropped_total", "sluice_registry_last_sync_timestamp_seconds"):
        assert name in used, f"no panel shows {name}"
    assert any(re.search(r"time\(\)\s*-\s*sluice_registry_last_sync_timestamp_seconds", e)
               for e in exprs), "no registry staleness panel"
    assert any("rate_limited_" in e for e in exprs), "no rate-limit drops panel"
    assert any("by (service, reason)" in e and "sluice_service_refused_total" in e
               for e in exprs), "no refusals by reason panel"


def test_dashboard_queries_parse_and_use_exported_metrics(exported, tmp_path):
    dash = json.loads(read(DASHBOARD))
    exprs = []
    for p, t in dashboard_exprs(dash):
        unknown = promql_metric_names(t["expr"]) - exported
        assert not unknown, f"panel {p['title']!r} queries {unknown}: not exported"
        exprs.append(t["expr"].replace("$__rate_interval", "5m")
                     .replace("$instance", ".*").replace("$service", ".*"))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+)(\{.*\})?,\s*(\w+)\)", v["definition"])
            assert m and m.group(1) in exported, v["definition"]
    p = promtool_check_exprs(exprs, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_promql_name_extraction():
    """The extraction the metric-name checks rely on."""
    assert promql_metric_names(
        'sum by (service, reason) (rate(sluice_service_refused_total{reason=~"a|b"}[5m])) > 1'
    ) == {"sluice_service_refused_total"}
    assert promql_metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))"
    ) == {"x_bucket"}
    assert promql_metric_names("a > 0 and on (job, instance) b offset 5m or up == 0") == \
        {"a", "b", "up"}
    assert promql_metric_names("time() - c and c > 1e3") == {"c"}
