#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make bench: connections per second and p50/p99 latency of one client workload
# (connect, request, reply, close) straight to the backends (the limit), through a
# sluice VIP with connection tracking (breakers, live counts: the sockops programs)
# and without it (--no-conn-tracking), and through kube-proxy style iptables DNAT
# with 10 and with 5,000 services installed. Why it is built this way:
# shared/BENCHMARKING.md. Then the circuit breaker: how long after a backend dies
# connections still go to it, and how many (scripts/bench-breaker.py).
#
# Topology, all in network namespaces made here and removed on exit:
#   <P>-be1..N  nginx (1 worker) on 10.201.0.1N:8080, tcp_max_tw_buckets=0
#   <P>-sw      a bridge joining everything
#   <P>-cK      client namespaces (10.201.0.(100+K)): every mode gets a fresh one
#               each round, so no TIME_WAIT or conntrack state crosses modes
# In a round every mode runs for BENCH_SECONDS in short slices interleaved with
# the other modes, so that load from elsewhere on the machine (2 shared vCPUs)
# falls on all of them alike. The table shows medians over rounds; ratios are
# medians of same-round ratios to direct. sluice's own cost comes from one extra
# sluice slice per round with kernel.bpf_stats_enabled=1 (the statistics cost two
# clock reads per program run, so they stay off while conn/s is measured).
#
# The breaker part: a service of 4 nginx backends with circuit_breaker
# {consecutive_failures: 5, base_ejection_ms: 30000}, for each algorithm in
# BENCH_BREAKER_ALGS; one client thread (tests/bench/breakerbench.c) connects to
# its VIP at full speed and records every connection (CLOCK_MONOTONIC, outcome,
# the backend of the reply and the backend sluice chose, read from the socket's
# sl_sock storage). After BENCH_BREAKER_BEFORE s the client SIGKILLs one backend's
# nginx (master and worker, by pidfd) and records that instant, T0, then goes on
# for BENCH_BREAKER_AFTER s. Reported: time from T0 to the last connection sent to
# the dead backend, how many reached it (expected: consecutive_failures, all
# refused), conn/s. Between runs the nginx is restarted and its breaker reset;
# the victim rotates over the backends.
#
# The agent part (scripts/bench-agent.py, no nginx or bridge): sluiced and sluicectl
# with 10,000 services x 10 backends (map contents only) plus one service over a real
# server: the time to apply the whole document (sluicectl apply, the agent at start
# and after an edit of the file) against the target of 100,000 backends in under a
# second, one change to effect (log line and a real connection), GET /metrics time
# and size, the agent's resident memory. Own cgroup, pin root (loaded by the agent)
# and namespace, all removed on exit.
#
# The redis part (scripts/bench-redis.py, issue 7): one sluiced following one
# redis-server started here: registration to effect (1,000 registrations and
# deregistrations one at a time, to the agent's log line; 50 to a real connection),
# and the sustained rate of instance changes it follows (10,000/s pipelined to Redis
# for 5 s: the lag of its applies and how long after the last write its maps are
# complete). Own namespace, cgroup, pin root and Redis, all removed on exit.
#
# The ratelimit part (issue 5): (1) ns per packet of the XDP limiters' pass and drop
# paths (sl_xdp_edge, the limits-only entry point, which never rewrites) under
# BPF_PROG_TEST_RUN beside XDP_PASS, XDP_DROP and a parse-only program
# (tests/bench/xdpbench.c, tests/bench/xdpref.bpf.c; own pin root); (2) ns per
# connect() of sl_connect4 (kernel.bpf_stats_enabled) through a VIP without
# rate_limit and one with a limit so high it never refuses, interleaved slices of
# connbench over the nginx backends; (3) a bounded UDP flood (tests/bench/udpflood.c)
# from a sender netns over a veth pair to a receiver netns, dropped by sl_xdp
# (global.xdp per-source limit, attach-xdp on the receiver's veth) or by an nftables
# `limit rate over` rule in the receiver, interleaved rounds.
#
# The xdplb part (tests/bench/xdplbbench.c, no nginx or bridge): ns per packet of
# sl_xdp's load balancing under BPF_PROG_TEST_RUN, one packet per call (it rewrites
# the frame, so never `repeat`), beside XDP_PASS, XDP_DROP and parse-only: a
# flow-table hit (TCP ACK), a new flow (TCP SYN: Maglev slot + flow insert), a
# non-VIP packet; per call and net of XDP_PASS, against the issue's targets. Own
# network namespace (veths, routes, permanent neighbours) and pin root, removed on exit.
#
# Usage: scripts/bench.sh [BUILD_DIR]
# Environment (defaults):
#   BENCH_ROUNDS=7 BENCH_SECONDS=2.5 BENCH_SLICE=0.5 BENCH_THREADS=1 BENCH_BACKENDS=3
#   BENCH_WARMUP=0.3 (before a namespace's first slice) BENCH_SLICE_WARMUP=0.05
#   BENCH_SETTLE=1 (seconds of quiet after making a round's namespaces)
#   BENCH_MODES=direct,sluice,sluice-nct,iptables-10,iptables-5000 (sluice-nct:
#               sluice loaded with --no-conn-tracking; iptables-N for any N services)
#   BENCH_IPTABLES=nft|legacy (iptables-restore variant, default nft)
#   BENCH_PARTS=table,breaker,agent,ratelimit,redis,xdplb (the conn/s table, the breaker
#               measurement, the agent at 10,000 services, the rate limiters, the
#               Redis registry, the XDP load balancer)
#   BENCH_RL_ROUNDS=5 BENCH_RL_SLICE=0.5 (connect() slices) BENCH_RL_PPS=20000 (the
#   per-source limit of the flood) BENCH_RL_COUNT=3000000 BENCH_RL_FLOOD_SECS=1.5
#   BENCH_BREAKER_RUNS=5 (per algorithm) BENCH_BREAKER_ALGS=round_robin,random
#   BENCH_BREAKER_BEFORE=0.5 BENCH_BREAKER_AFTER=1
#   BENCH_AGENT_SERVICES=10000 BENCH_AGENT_BACKENDS=10 BENCH_AGENT_ALG=random
#   BENCH_AGENT_ROUNDS=5 BENCH_AGENT_EDITS=7 BENCH_AGENT_PROBE_MS=1 (bench-agent.py)
#   BENCH_REDIS_REGS=1000 BENCH_REDIS_CONN=50 BENCH_REDIS_RATE=10000
#   BENCH_REDIS_SECONDS=5 BENCH_REDIS_SERVICES=100 BENCH_REDIS_POOL=100 (bench-redis.py)
#   BENCH_XDPLB_ROUNDS=7 BENCH_XDPLB_CALLS=20000 (calls per program and round)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(realpath -m "${1:-build}")
ROUNDS=${BENCH_ROUNDS:-7}
SECS=${BENCH_SECONDS:-2.5}
WARMUP=${BENCH_WARMUP:-0.3}
THREADS=${BENCH_THREADS:-1}
NBACKENDS=${BENCH_BACKENDS:-3}
SETTLE=${BENCH_SETTLE:-1}
SLICE=${BENCH_SLICE:-0.5}
SLICE_WARMUP=${BENCH_SLICE_WARMUP:-0.05}
MODES=${BENCH_MODES:-direct,sluice,sluice-nct,iptables-10,iptables-5000}
PARTS=${BENCH_PARTS:-table,breaker,agent,ratelimit,redis,xdplb}
XDPLB_ROUNDS=${BENCH_XDPLB_ROUNDS:-7}
XDPLB_CALLS=${BENCH_XDPLB_CALLS:-20000}
RL_ROUNDS=${BENCH_RL_ROUNDS:-5}
RL_SLICE=${BENCH_RL_SLICE:-0.5}
RL_PPS=${BENCH_RL_PPS:-20000}
RL_COUNT=${BENCH_RL_COUNT:-3000000}
RL_FLOOD_SECS=${BENCH_RL_FLOOD_SECS:-1.5}
RL_VIP_OFF=10.96.0.40
RL_VIP_ON=10.96.0.41
RL_VIP_UDP=10.96.0.42
RL_UDP_PORT=9
BRK_RUNS=${BENCH_BREAKER_RUNS:-5}
BRK_ALGS=${BENCH_BREAKER_ALGS:-round_robin,random}
BRK_BEFORE=${BENCH_BREAKER_BEFORE:-0.5}
BRK_AFTER=${BENCH_BREAKER_AFTER:-1}
BRK_BACKENDS=4
BRK_FAILURES=5
BRK_EJECTION_MS=30000
BRK_VIP_BASE=10.96.0.2 # + algorithm index: 10.96.0.20, 10.96.0.21, ...
TARGET=0.95

VIP=10.96.0.10
VIP_PORT=80
BE_PORT=8080
CTL=$BUILD/sluicectl
CB=$BUILD/bench/connbench
BB=$BUILD/bench/breakerbench
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, cgroups, BPF)"
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
	die "BENCH_ROUNDS must be a positive integer"
fi
if ! [[ $NBACKENDS =~ ^[1-9]$ ]]; then
	die "BENCH_BACKENDS must be 1..9"
fi
case ${BENCH_IPTABLES:-nft} in
nft) IPT_RESTORE=iptables-nft-restore ;;
legacy) IPT_RESTORE=iptables-legacy-restore ;;
*) die "BENCH_IPTABLES must be nft or legacy" ;;
esac

WANT_TABLE=0
WANT_BREAKER=0
WANT_AGENT=0
WANT_RL=0
WANT_REDIS=0
WANT_XDPLB=0
IFS=, read -r -a PART_LIST <<<"$PARTS"
for p in "${PART_LIST[@]}"; do
	case $p in
	table) WANT_TABLE=1 ;;
	breaker) WANT_BREAKER=1 ;;
	agent) WANT_AGENT=1 ;;
	ratelimit) WANT_RL=1 ;;
	redis) WANT_REDIS=1 ;;
	xdplb) WANT_XDPLB=1 ;;
	*) die "unknown part $p (table, breaker, agent, ratelimit, redis, xdplb)" ;;
	esac
done
MODE_LIST=()
if [ $WANT_TABLE = 1 ]; then
	IFS=, read -r -a MODE_LIST <<<"$MODES"
	[ ${#MODE_LIST[@]} -gt 0 ] || die "BENCH_MODES is empty"
fi
BRK_ALG_LIST=()
if [ $WANT_BREAKER = 1 ]; then
	IFS=, read -r -a BRK_ALG_LIST <<<"$BRK_ALGS"
	[[ $BRK_RUNS =~ ^[1-9][0-9]?$ ]] || die "BENCH_BREAKER_RUNS must be 1..99"
	if [ ${#BRK_ALG_LIST[@]} -lt 1 ] || [ ${#BRK_ALG_LIST[@]} -gt 9 ]; then
		die "BENCH_BREAKER_ALGS needs 1..9 algorithms"
	fi
	for a in "${BRK_ALG_LIST[@]}"; do
		case $a in
		random | round_robin | weighted | least_conn) ;;
		*) die "BENCH_BREAKER_ALGS: $a (random, round_robin, weighted, least_conn)" ;;
		esac
	done
	for v in "$BRK_BEFORE" "$BRK_AFTER"; do
		if ! [[ $v =~ ^[0-9]*\.?[0-9]+$ ]] ||
		   ! awk -v v="$v" 'BEGIN { exit !(v > 0 && v <= 10) }'; then
			die "BENCH_BREAKER_BEFORE and _AFTER must be seconds in (0, 10]"
		fi
	done
fi
WANT_SLUICE=$WANT_BREAKER
if [ $WANT_RL = 1 ]; then
	WANT_SLUICE=1
	[[ $RL_ROUNDS =~ ^[1-9][0-9]?$ ]] || die "BENCH_RL_ROUNDS must be 1..99"
	[[ $RL_PPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RL_PPS must be a positive integer"
	[[ $RL_COUNT =~ ^[1-9][0-9]*$ ]] && [ "$RL_COUNT" -le 20000000 ] ||
		die "BENCH_RL_COUNT must be 1..20000000"
fi
WANT_IPT=0
for m in "${MODE_LIST[@]}"; do
	case $m in
	direct) ;;
	sluice | sluice-nct) WANT_SLUICE=1 ;;
	iptables-*) [[ ${m#iptables-} =~ ^[1-9][0-9]*$ ]] || die "bad mode $m (iptables-N)"
		WANT_IPT=1 ;;
	*) die "unknown mode $m (direct, sluice, sluice-nct, iptables-N)" ;;
	esac
done
SLICES=$(awk -v t="$SECS" -v s="$SLICE" 'BEGIN { n = int(t / s + 0.5); print n < 1 ? 1 : n }')
SLICE_SECS=$(awk -v t="$SECS" -v n="$SLICES" 'BEGIN { printf "%g", t / n }')
[ $((ROUNDS * ${#MODE_LIST[@]} + ${#MODE_LIST[@]} + BRK_RUNS * ${#BRK_ALG_LIST[@]})) -le 150 ] ||
	die "too many runs for the client address pool"

# The table and the breaker part share the nginx backends and the bridge.
WANT_TOPOLOGY=0
if [ $WANT_TABLE = 1 ] || [ $WANT_BREAKER = 1 ] || [ $WANT_RL = 1 ]; then
	WANT_TOPOLOGY=1
fi
tools=(ip nsenter)
if [ $WANT_TOPOLOGY = 1 ]; then
	tools+=(nginx gcc timeout sysctl)
fi
if [ $WANT_IPT = 1 ]; then
	tools+=("$IPT_RESTORE")
fi
if [ $WANT_SLUICE = 1 ]; then
	tools+=(bpftool)
fi
if [ $WANT_RL = 1 ]; then
	tools+=(nft clang pkg-config)
fi
if [ $WANT_XDPLB = 1 ]; then
	[[ $XDPLB_ROUNDS =~ ^[1-9][0-9]?$ ]] || die "BENCH_XDPLB_ROUNDS must be 1..99"
	[[ $XDPLB_CALLS =~ ^[1-9][0-9]*$ ]] && [ "$XDPLB_CALLS" -le 200000 ] ||
		die "BENCH_XDPLB_CALLS must be 1..200000"
	tools+=(gcc clang pkg-config timeout)
fi
for t in "${tools[@]}"; do
	command -v "$t" >/dev/null || die "missing $t (run scripts/install-deps.sh)"
done
if { [ $WANT_SLUICE = 1 ] || [ $WANT_AGENT = 1 ]; } && [ ! -x "$CTL" ]; then
	die "missing $CTL (run make, or BENCH_MODES without sluice and BENCH_PARTS=table)"
fi
if [ $WANT_AGENT = 1 ] && [ ! -x "$BUILD/sluiced" ]; then
	die "missing $BUILD/sluiced (run make, or BENCH_PARTS without agent)"
fi
if [ $WANT_REDIS = 1 ]; then
	command -v redis-server >/dev/null || die "missing redis-server (run scripts/install-deps.sh)"
	[ -x "$BUILD/sluiced" ] && [ -x "$CTL" ] ||
		die "missing $BUILD/sluiced or $CTL (run make, or BENCH_PARTS without redis)"
fi

# A connection holds one descriptor per thread; nginx wants its worker_connections.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 1100 ] ||
		die "ulimit -n is $(ulimit -n); need at least 1100"
fi

ID=$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')
P=slb$ID
TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
RESULTS=$TMP/results.jsonl
BRK_RESULTS=$TMP/breaker.jsonl
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
# Per sluice mode: its cgroup, its pin root and its programs' ids.
declare -A SL_CG=() SL_PR=() SL_IDS=()
STATS_ORIG=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo)
CLIENTS=0
FAILED=0

kill_pidfile() {
	local f=$1 pid i

	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nginx ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? f ns m pid

	trap - EXIT INT TERM
	set +e
	if [ -n "$STATS_ORIG" ] &&
	   [ "$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null)" != "$STATS_ORIG" ]; then
		sysctl -qw kernel.bpf_stats_enabled="$STATS_ORIG"
	fi
	for f in "$TMP"/be*/nginx.pid; do
		kill_pidfile "$f"
	done
	# A worker whose master was killed (the breaker part) outlives it: whatever
	# nginx is left in a backend namespace made here goes by its PID.
	for ns in $(ip netns list | awk -v p="$P-be" 'index($1, p) == 1 { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nginx ] && kill -KILL "$pid"
		done
	done
	for m in "${!SL_PR[@]}"; do
		"$CTL" unload --pin-root "${SL_PR[$m]}" >"$TMP/sluicectl.log" 2>&1 ||
			log "warning: sluicectl unload --pin-root ${SL_PR[$m]} failed:" \
				"$(cat "$TMP/sluicectl.log")"
		[ -e "${SL_PR[$m]}" ] && log "warning: ${SL_PR[$m]} is still there after unload"
	done
	for m in "${!SL_CG[@]}"; do
		[ -d "${SL_CG[$m]}" ] && { rmdir "${SL_CG[$m]}" || log "warning: cannot remove ${SL_CG[$m]}"; }
	done
	for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 { print $1 }'); do
		ip netns del "$ns"
	done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

in_ns() {
	local ns=$1

	shift
	nsenter --net="/var/run/netns/$ns" "$@"
}

# Runs a command as a member of cgroup CG (the shell joins, then execs it).
in_cgroup() {
	local cg=$1

	shift
	bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}

ns_base() {
	local ns=$1

	ip netns add "$ns"
	ip -n "$ns" link set lo up
	in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Adds namespace NS to the bridge as eth0 with ADDR; PORT is the bridge-side name.
ns_attach() {
	local ns=$1 port=$2 addr=$3

	ip link add eth0 netns "$ns" type veth peer name "$port" netns "$P-sw"
	ip -n "$P-sw" link set "$port" master br0 up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
}

build_clients() {
	mkdir -p "$BUILD/bench"
	if [ ! -x "$CB" ] || [ "$ROOT/tests/bench/connbench.c" -nt "$CB" ]; then
		gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread \
			-o "$CB" "$ROOT/tests/bench/connbench.c"
	fi
	# breakerbench reads sl_sock storage: it follows include/sluice/breaker.h.
	if [ ! -x "$BB" ] || [ "$ROOT/tests/bench/breakerbench.c" -nt "$BB" ] ||
	   [ "$ROOT/include/sluice/breaker.h" -nt "$BB" ]; then
		gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -I"$ROOT/include" \
			-o "$BB" "$ROOT/tests/bench/breakerbench.c"
	fi
}

start_backend() {
	local i=$1 ns=$P-be$1 dir=$TMP/be$1 addr=10.201.0.$((10 + $1)) k

	ns_base "$ns"
	ns_attach "$ns" "b$i" "$addr"
	# The server closes first; without TIME_WAIT buckets a reused client 4-tuple
	# cannot meet an old connection (the PAWS trap in BENCHMARKING.md).
	in_ns "$ns" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<-EOF
		worker_processes 1;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events {
			worker_connections 1024;
		}
		http {
			access_log off;
			client_body_temp_path $dir/tmp-body;
			proxy_temp_path $dir/tmp-proxy;
			fastcgi_temp_path $dir/tmp-fastcgi;
			uwsgi_temp_path $dir/tmp-uwsgi;
			scgi_temp_path $dir/tmp-scgi;
			server {
				listen $addr:$BE_PORT backlog=4096;
				location / {
					return 200 "be$i\n";
				}
			}
		}
	EOF
	start_nginx "$i"
	BACKENDS+=("$addr")
}

# Starts backend I's nginx and waits for its master to write its pid file and
# for its worker to be there.
start_nginx() {
	local ns=$P-be$1 dir=$TMP/be$1 k pid=""

	rm -f "$dir/nginx.pid"
	in_ns "$ns" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" ||
		die "nginx in $ns failed to start: $(tail -3 "$dir/error.log" 2>/dev/null)"
	for ((k = 0; k < 50; k++)); do
		if [ -s "$dir/nginx.pid" ]; then
			pid=$(cat "$dir/nginx.pid")
			[ -n "$(nginx_workers "$pid")" ] && return 0
		fi
		sleep 0.1
	done
	[ -n "$pid" ] || die "nginx in $ns wrote no pid file"
	die "nginx in $ns (pid $pid) started no worker"
}

# Whether PID is an nginx that has not exited (a zombie waiting for its parent has).
nginx_alive() {
	local stat

	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = nginx ] || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != [ZX] ]]
}

# The PIDs of nginx master PID's children (its workers), comma-separated.
nginx_workers() {
	local f=/proc/$1/task/$1/children

	if [ -r "$f" ]; then
		tr ' ' '\n' <"$f" | awk 'NF { printf "%s%s", s, $1; s = "," }'
	else
		pgrep -P "$1" -d , || true
	fi
}

setup_topology() {
	local i

	ns_base "$P-sw"
	ip -n "$P-sw" link add br0 type bridge
	ip -n "$P-sw" link set br0 up
	# A plain L2 switch: bridged frames do not visit netfilter (br_netfilter is loaded here).
	# shellcheck disable=SC2016 # expanded by the inner shell
	in_ns "$P-sw" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do
		[ -e "$f" ] && echo 0 > "$f"; done; true'
	BACKENDS=()
	for ((i = 1; i <= NBACKENDS; i++)); do
		start_backend "$i"
	done
}

client_up() {
	local ns=$1 k=$2

	ns_base "$ns"
	ns_attach "$ns" "c$k" "10.201.0.$((100 + k))"
	# The VIP needs a route for netfilter's DNAT (it reroutes after OUTPUT nat);
	# the sluice rewrite happens before routing and does not use it.
	ip -n "$ns" route add 10.96.0.0/12 dev eth0
	in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
}

# Writes the table's registry document (one random service over BACKENDS) to FILE.
bench_registry() {
	local i sep=""

	{
		printf '{"services": [{"name": "bench", "vip": "%s", "port": %d, ' "$VIP" "$VIP_PORT"
		printf '"protocol": "tcp", "lb": {"algorithm": "random"}, "backends": ['
		for i in "${BACKENDS[@]}"; do
			printf '%s{"address": "%s", "port": %d, "weight": 1}' "$sep" "$i" "$BE_PORT"
			sep=", "
		done
		printf ']}]}\n'
	} >"$1"
}

# Loads sluice for MODE on a cgroup and a pin root of its own and applies the
# registry document REGISTRY; sluice-nct loads it with --no-conn-tracking.
setup_sluice() {
	local mode=$1 registry=$2 cg pr id ids=() flags=()

	[ -n "$CGROOT" ] || die "no cgroup2 mount in /proc/mounts"
	cg=$CGROOT/sluice-bench-$ID-$mode
	pr=/sys/fs/bpf/sluice-bench-$ID-$mode
	if [ "$mode" = sluice-nct ]; then
		flags=(--no-conn-tracking)
	fi
	mkdir "$cg"
	SL_CG[$mode]=$cg
	SL_PR[$mode]=$pr
	flags=(load --cgroup "$cg" --pin-root "$pr" "${flags[@]}")
	"$CTL" "${flags[@]}" >"$TMP/sluicectl.log" 2>&1 ||
		die "sluicectl ${flags[*]} failed: $(cat "$TMP/sluicectl.log")"
	"$CTL" --pin-root "$pr" apply "$registry" >"$TMP/sluicectl.log" 2>&1 ||
		die "sluicectl apply $registry failed: $(cat "$TMP/sluicectl.log")"
	while read -r _ id; do
		ids+=("$id")
	done < <("$PYTHON" "$ROOT/scripts/bench-bpfstats.py" ids "$pr" "$CTL")
	if [ ${#ids[@]} = 0 ]; then
		log "warning: cannot find the programs under $pr; no per-program cost"
	fi
	SL_IDS[$mode]=${ids[*]}
}

# Writes the run-time statistics of MODE's programs to FILE.
bpf_snap() {
	local ids

	read -r -a ids <<<"${SL_IDS[$1]}"
	"$PYTHON" "$ROOT/scripts/bench-bpfstats.py" snap "${ids[@]}" >"$2" || echo '{}' >"$2"
}

kube_rules() {
	local n=$1 eps=() a

	for a in "${BACKENDS[@]}"; do
		eps+=("$a:$BE_PORT")
	done
	"$PYTHON" "$ROOT/scripts/bench-kubeproxy.py" --services "$n" --vip "$VIP" \
		--port "$VIP_PORT" "${eps[@]}" >"$TMP/kube-$n.rules"
}

json_field() {
	if [[ $1 =~ \"$2\":\ ?([^,}]+) ]]; then
		echo "${BASH_REMATCH[1]}"
	fi
}

# Makes a fresh client namespace for MODE (with its rules) and prints its name.
mode_client() {
	local mode=$1 ns

	CLIENTS=$((CLIENTS + 1))
	ns=$P-c$CLIENTS
	client_up "$ns" "$CLIENTS"
	if [[ $mode == iptables-* ]]; then
		in_ns "$ns" "$IPT_RESTORE" -w <"$TMP/kube-${mode#iptables-}.rules" ||
			die "$IPT_RESTORE of $TMP/kube-${mode#iptables-}.rules failed"
	fi
	CLIENT_NS=$ns
}

# Runs connbench for MODE in namespace NS for SECS after WARM seconds of warm-up,
# appending latencies to LAT; leaves connbench's JSON, with the mode, round and
# slice added, in LAST_JSON (empty on failure). With STATS=1 (sluice modes only)
# the slice runs with kernel.bpf_stats_enabled=1 and is marked "stats": its
# programs' run time is recorded and its rate and latencies are not used.
run_slice() {
	local mode=$1 ns=$2 round=$3 slice=$4 secs=$5 warm=$6 lat=$7 stats=${8:-0}
	local targets port json extra="" rc=0 cmd

	if [ "$mode" = direct ]; then
		targets=$(IFS=,; echo "${BACKENDS[*]}")
		port=$BE_PORT
	else
		targets=$VIP
		port=$VIP_PORT
	fi
	cmd=(timeout 60 nsenter --net="/var/run/netns/$ns" "$CB" -d "$secs" -w "$warm"
	     -T "$THREADS" -L "$lat" "$targets" "$port")
	if [[ $mode == sluice* ]]; then
		cmd=(in_cgroup "${SL_CG[$mode]}" "${cmd[@]}")
	fi
	if [ "$stats" = 1 ]; then
		sysctl -qw kernel.bpf_stats_enabled=1
		bpf_snap "$mode" "$TMP/bpf0.json"
		json=$("${cmd[@]}") || rc=$?
		bpf_snap "$mode" "$TMP/bpf1.json"
		sysctl -qw kernel.bpf_stats_enabled="${STATS_ORIG:-0}"
		extra="\"stats\": true, \"bpf\": $("$PYTHON" "$ROOT/scripts/bench-bpfstats.py" \
			delta "$TMP/bpf0.json" "$TMP/bpf1.json" || echo '{}'), "
	else
		json=$("${cmd[@]}") || rc=$?
	fi
	LAST_JSON=
	if [ $rc -ne 0 ] || [[ $json != \{* ]]; then
		log "round $round slice $slice $mode: connbench failed (exit $rc)"
		FAILED=1
		return 0
	fi
	LAST_JSON="{\"mode\": \"$mode\", \"round\": $round, \"slice\": $slice, $extra${json#\{}"
}

# One round: a fresh client namespace per mode, then SLICES turns in which every
# mode runs for SECS/SLICES seconds, in an order rotated by round and by turn, so
# that load from elsewhere on the machine falls on all modes alike.
run_round() {
	local r=$1 n=${#MODE_LIST[@]} k s m warm
	local -A ns_of=()

	for m in "${MODE_LIST[@]}"; do
		mode_client "$m"
		ns_of[$m]=$CLIENT_NS
	done
	sleep "$SETTLE"
	for ((s = 1; s <= SLICES; s++)); do
		for ((k = 0; k < n; k++)); do
			m=${MODE_LIST[$(((r + s + k) % n))]}
			warm=$SLICE_WARMUP
			[ "$s" -gt 1 ] || warm=$WARMUP
			run_slice "$m" "${ns_of[$m]}" "$r" "$s" "$SLICE_SECS" "$warm" \
				"$TMP/lat-$r-$m.u32"
			if [ -n "$LAST_JSON" ]; then
				echo "$LAST_JSON" >>"$RESULTS"
			fi
		done
	done
	# The bpf_stats slices, in an order rotated by round as well.
	for ((k = 0; k < n; k++)); do
		m=${MODE_LIST[$(((r + k) % n))]}
		if [[ $m == sluice* ]]; then
			run_slice "$m" "${ns_of[$m]}" "$r" $((SLICES + 1)) "$SLICE_SECS" \
				"$SLICE_WARMUP" /dev/null 1
			if [ -n "$LAST_JSON" ]; then
				echo "$LAST_JSON" >>"$RESULTS"
			fi
		fi
	done
	for m in "${MODE_LIST[@]}"; do
		ip netns del "${ns_of[$m]}"
	done
	"$PYTHON" "$ROOT/scripts/bench-report.py" --modes "$MODES" --lat-dir "$TMP" \
		--progress "$r/$ROUNDS" "$RESULTS" >&2 || true
}

# A short run of MODE that must reach every backend without errors.
probe() {
	local mode=$1

	mode_client "$mode"
	run_slice "$mode" "$CLIENT_NS" 0 0 0.3 0.1 "$TMP/probe.u32"
	ip netns del "$CLIENT_NS"
	printf '%s\n' "$LAST_JSON" | "$PYTHON" -c '
import json, sys
r = json.loads(sys.stdin.read())
n = int(sys.argv[1])
sys.exit(not (r["conns"] > 0 and r["errors"] == 0 and len(r["backends"]) == n
              and all(r["backends"])))' "$NBACKENDS" 2>/dev/null ||
		die "probe of $mode failed: ${LAST_JSON:-no output}"
}

# Writes the breaker part's registry document to FILE: per algorithm of
# BRK_ALG_LIST, a service brk-ALG on VIP BRK_VIP_BASE<index>:VIP_PORT over the
# first BRK_BACKENDS backends.
breaker_registry() {
	local k a i sep sep2=""

	{
		printf '{"services": ['
		for ((k = 0; k < ${#BRK_ALG_LIST[@]}; k++)); do
			a=${BRK_ALG_LIST[$k]}
			printf '%s{"name": "brk-%s", "vip": "%s%d", "port": %d, "protocol": "tcp", ' \
				"$sep2" "$a" "$BRK_VIP_BASE" "$k" "$VIP_PORT"
			printf '"lb": {"algorithm": "%s"}, ' "$a"
			printf '"circuit_breaker": {"consecutive_failures": %d, "base_ejection_ms": %d}, ' \
				"$BRK_FAILURES" "$BRK_EJECTION_MS"
			printf '"backends": ['
			sep=""
			for ((i = 0; i < BRK_BACKENDS; i++)); do
				printf '%s{"address": "%s", "port": %d}' "$sep" "${BACKENDS[$i]}" "$BE_PORT"
				sep=", "
			done
			printf ']}'
			sep2=", "
		done
		printf ']}\n'
	} >"$1"
}

# Writes sluicectl -j OBJECT [ARGS] of the breaker instance to FILE.
breaker_ctl_json() {
	local file=$1

	shift
	"$CTL" --pin-root "${SL_PR[breaker]}" -j "$@" >"$file" 2>"$TMP/sluicectl.log" ||
		die "sluicectl -j $* failed: $(cat "$TMP/sluicectl.log")"
}

# One breaker run: algorithm index K, run number RUN (1-based, over all runs),
# victim backend index V (1-based). Appends bench-breaker.py's JSON to BRK_RESULTS.
# Fails (and leaves the victim as it is, for cleanup) when the run did not complete.
breaker_run() {
	local k=$1 run=$2 v=$3 alg=${BRK_ALG_LIST[$1]} svc vip victim master workers
	local d=$TMP/brk-$2 rc=0 json pid

	svc=brk-$alg
	vip=$BRK_VIP_BASE$k
	victim=${BACKENDS[$((v - 1))]}:$BE_PORT
	mkdir -p "$d"
	master=$(cat "$TMP/be$v/nginx.pid")
	workers=$(nginx_workers "$master")
	[ -n "$workers" ] || die "breaker run $run: nginx $master of be$v has no worker"
	mode_client breaker
	breaker_ctl_json "$d/backends0.json" backends "$svc"
	breaker_ctl_json "$d/services0.json" services
	breaker_ctl_json "$d/breakers0.json" breakers "$svc"
	json=$(in_cgroup "${SL_CG[breaker]}" timeout 30 \
		nsenter --net="/var/run/netns/$CLIENT_NS" "$BB" -w "$BRK_BEFORE" -d "$BRK_AFTER" \
		-K "$master,$workers" -S "${SL_PR[breaker]}/sl_sock" -R "$d/conns.csv" \
		"$vip" "$VIP_PORT") || rc=$?
	breaker_ctl_json "$d/backends1.json" backends "$svc"
	breaker_ctl_json "$d/services1.json" services
	breaker_ctl_json "$d/breakers1.json" breakers "$svc"
	ip netns del "$CLIENT_NS"
	printf '%s\n' "$json" >"$d/meta.json"
	cp -r "$d" "$BUILD/bench/breaker-run$run"
	if [ $rc -ne 0 ] || [[ $json != \{* ]]; then
		log "breaker run $run ($alg, be$v): breakerbench failed (exit $rc)"
		return 1
	fi
	"$PYTHON" "$ROOT/scripts/bench-breaker.py" run --meta "$d/meta.json" \
		--csv "$d/conns.csv" --victim "$victim" --service "$svc" --alg "$alg" \
		--run "$run" --expect "$BRK_FAILURES" \
		--backends-before "$d/backends0.json" --backends-after "$d/backends1.json" \
		--services-before "$d/services0.json" --services-after "$d/services1.json" \
		--breakers-before "$d/breakers0.json" --breakers-after "$d/breakers1.json" \
		>"$d/result.json" || { log "breaker run $run: analysis failed"; return 1; }
	cat "$d/result.json" >>"$BRK_RESULTS"
	# Back to four live backends with closed breakers for the next run.
	for pid in ${workers//,/ } "$master"; do
		nginx_alive "$pid" && die "breaker run $run: nginx $pid of be$v is still alive"
	done
	start_nginx "$v"
	"$CTL" --pin-root "${SL_PR[breaker]}" breakers reset "$svc" "$victim" \
		>"$TMP/sluicectl.log" 2>&1 ||
		die "sluicectl breakers reset $svc $victim failed: $(cat "$TMP/sluicectl.log")"
	"$PYTHON" -c '
import json, sys
r = json.loads(sys.stdin.read())
print("bench: breaker run %d %-11s %s: %d refused, %d sent to it after the kill, the "
      "last %s ms after it; %.0f conn/s%s" % (r["run"], r["alg"], r["victim"],
      r["to_dead_refused"], r["to_dead"], r["last_ms"], r["rate_before"],
      "" if not r["problems"] else " (UNEXPECTED)"))
' <"$d/result.json" >&2 || true
}

breaker_part() {
	local i k r run=0 v brk_rc=0

	for ((i = ${#BACKENDS[@]} + 1; i <= BRK_BACKENDS; i++)); do
		start_backend "$i"
	done
	: >"$BRK_RESULTS"
	breaker_registry "$TMP/breaker.json"
	setup_sluice breaker "$TMP/breaker.json"

	echo
	echo "breaker: $BRK_BACKENDS nginx backends (1 worker) ${BACKENDS[*]:0:$BRK_BACKENDS} :$BE_PORT," \
		"circuit_breaker {consecutive_failures: $BRK_FAILURES,"
	echo "         base_ejection_ms: $BRK_EJECTION_MS}, one service per algorithm" \
		"(${BRK_ALGS}), sluice with connection tracking;"
	echo "         client: 1 thread (tests/bench/breakerbench), serial connect + GET + close" \
		"through the VIP at full speed;"
	echo "         after ${BRK_BEFORE} s it SIGKILLs one backend's nginx (master + worker)," \
		"T0 = CLOCK_MONOTONIC just before,"
	echo "         and runs ${BRK_AFTER} s more; the backend of every connection, failed ones too," \
		"is read from its socket's sl_sock storage;"
	echo "         $BRK_RUNS runs per algorithm, interleaved, the victim rotating;" \
		"nginx restarted and its breaker reset between runs"
	echo
	for ((r = 1; r <= BRK_RUNS; r++)); do
		for ((k = 0; k < ${#BRK_ALG_LIST[@]}; k++)); do
			run=$((run + 1))
			v=$(((run - 1) % BRK_BACKENDS + 1))
			if ! breaker_run "$k" "$run" "$v"; then
				FAILED=1
				break 2
			fi
		done
	done
	"$PYTHON" "$ROOT/scripts/bench-breaker.py" report "$BRK_RESULTS" || brk_rc=$?
	cp "$BRK_RESULTS" "$BUILD/bench/breaker.jsonl"
	log "breaker raw results: $BUILD/bench/breaker.jsonl; per run (connections, sluicectl" \
		"snapshots): $BUILD/bench/breaker-run*/"
	[ $brk_rc = 0 ] || FAILED=1
}

# --- the ratelimit part -------------------------------------------------------------------

# The reference XDP programs of the ratelimit and xdplb parts.
build_xdpref() {
	local arch sys_inc

	arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
	[ -s "$BUILD/skel/xdp.skel.h" ] || die "missing $BUILD/skel/xdp.skel.h (run make)"
	# As the Makefile builds bpf/*.bpf.c.
	read -r -a sys_inc < <(clang -v -E - </dev/null 2>&1 |
		sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }' |
		tr '\n' ' ') || true # no newline at the end: read returns 1
	clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_"$arch" -Wall -Wextra -Werror \
		-Wno-unused-parameter -I"$ROOT/include" -I"$ROOT/bpf" "${sys_inc[@]}" \
		-c "$ROOT/tests/bench/xdpref.bpf.c" -o "$BUILD/bench/xdpref.bpf.o" ||
		die "cannot build tests/bench/xdpref.bpf.c"
}

build_rl_tools() {
	build_xdpref
	# shellcheck disable=SC2046 # pkg-config's flags are words
	gcc -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -I"$ROOT/include" \
		-I"$BUILD/skel" $(pkg-config --cflags libbpf) -o "$BUILD/bench/xdpbench" \
		"$ROOT/tests/bench/xdpbench.c" $(pkg-config --libs libbpf) -lelf -lz ||
		die "cannot build tests/bench/xdpbench.c"
	gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -o "$BUILD/bench/udpflood" \
		"$ROOT/tests/bench/udpflood.c" || die "cannot build tests/bench/udpflood.c"
}

# The part's registry: two TCP services over the backends (RL_VIP_OFF without
# rate_limit, RL_VIP_ON with limits it never reaches), a UDP service on the
# receiver's VIP for the flood, and the per-source XDP limit.
rl_registry() {
	local i sep="" be

	for i in "${BACKENDS[@]}"; do
		be+="$sep{\"address\": \"$i\", \"port\": $BE_PORT}"
		sep=", "
	done
	cat >"$1" <<-EOF
		{"global": {"xdp": {"source_packets_per_second": $RL_PPS, "source_burst": $RL_PPS}},
		 "services": [
		  {"name": "rl-off", "vip": "$RL_VIP_OFF", "port": $VIP_PORT, "protocol": "tcp",
		   "lb": {"algorithm": "random"}, "backends": [$be]},
		  {"name": "rl-on", "vip": "$RL_VIP_ON", "port": $VIP_PORT, "protocol": "tcp",
		   "lb": {"algorithm": "random"}, "backends": [$be],
		   "rate_limit": {"connections_per_second": 10000000, "burst": 10000000,
		                  "per_client_connections_per_second": 10000000,
		                  "per_client_burst": 10000000}},
		  {"name": "rl-udp", "vip": "$RL_VIP_UDP", "port": $RL_UDP_PORT, "protocol": "udp",
		   "lb": {"algorithm": "random"}, "backends": [{"address": "10.203.0.2", "port": $RL_UDP_PORT}]}
		 ]}
	EOF
}

# One connbench slice of VIP from namespace NS in the ratelimit cgroup, with
# bpf_stats on; appends {"part": "conn", "mode", "round", connbench's fields, "bpf"}.
rl_conn_slice() {
	local mode=$1 vip=$2 ns=$3 round=$4 json rc=0 bpf

	bpf_snap ratelimit "$TMP/rl-bpf0.json"
	json=$(in_cgroup "${SL_CG[ratelimit]}" timeout 30 nsenter --net="/var/run/netns/$ns" \
		"$CB" -d "$RL_SLICE" -w 0.05 -T 1 -L /dev/null "$vip" "$VIP_PORT") || rc=$?
	bpf_snap ratelimit "$TMP/rl-bpf1.json"
	if [ $rc -ne 0 ] || [[ $json != \{* ]]; then
		log "ratelimit round $round $mode: connbench failed (exit $rc)"
		FAILED=1
		return 0
	fi
	bpf=$("$PYTHON" "$ROOT/scripts/bench-bpfstats.py" delta "$TMP/rl-bpf0.json" \
		"$TMP/rl-bpf1.json" || echo '{}')
	echo "{\"part\": \"conn\", \"mode\": \"$mode\", \"round\": $round, \"bpf\": $bpf, ${json#\{}" \
		>>"$RL_RESULTS"
}

# UDP datagrams that reached the receiver's UDP layer (delivered, no port, errors).
rl_udp_rx() {
	in_ns "$P-rr" cat /proc/net/snmp | awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ { print $2 + $3 + $4; exit }'
}

rl_sluice_drops() {
	"$CTL" --pin-root "${SL_PR[ratelimit]}" -j stats rl-udp 2>/dev/null | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
d = d[0] if isinstance(d, list) else d
print(d["xdp"]["dropped"]["source_rate"])' || echo -1
}

rl_nft_drops() {
	in_ns "$P-rr" nft -j list table inet benchrl 2>/dev/null | "$PYTHON" -c '
import json, sys
for o in json.load(sys.stdin)["nftables"]:
    for e in (o.get("rule") or {}).get("expr", []):
        if "counter" in e:
            print(e["counter"]["packets"]); sys.exit()
print(-1)' || echo -1
}

# One flood of MODE (sluice-xdp or nft-limit) in round R.
rl_flood() {
	local mode=$1 r=$2 rx0 rx1 d0=0 d1 json rc=0

	if [ "$mode" = sluice-xdp ]; then
		in_ns "$P-rr" "$CTL" --pin-root "${SL_PR[ratelimit]}" attach-xdp eth0 \
			>"$TMP/sluicectl.log" 2>&1 ||
			die "sluicectl attach-xdp failed: $(cat "$TMP/sluicectl.log")"
		[ "$r" != 1 ] || log "ratelimit: attach-xdp: $(tr '\n' ' ' <"$TMP/sluicectl.log")"
		d0=$(rl_sluice_drops)
	else
		in_ns "$P-rr" nft -f - <<-EOF || die "nft -f failed"
			table inet benchrl {
				chain pre {
					type filter hook prerouting priority raw; policy accept;
					ip saddr 10.203.0.1 limit rate over $RL_PPS/second burst $RL_PPS packets counter drop
				}
			}
		EOF
	fi
	sleep 0.2
	rx0=$(rl_udp_rx)
	json=$(timeout 20 nsenter --net="/var/run/netns/$P-rs" "$BUILD/bench/udpflood" \
		"$RL_VIP_UDP" "$RL_UDP_PORT" "$RL_COUNT" "$RL_FLOOD_SECS") || rc=$?
	sleep 0.2
	rx1=$(rl_udp_rx)
	if [ "$mode" = sluice-xdp ]; then
		d1=$(rl_sluice_drops)
		in_ns "$P-rr" "$CTL" --pin-root "${SL_PR[ratelimit]}" detach-xdp eth0 \
			>"$TMP/sluicectl.log" 2>&1 ||
			die "sluicectl detach-xdp failed: $(cat "$TMP/sluicectl.log")"
	else
		d1=$(rl_nft_drops)
		in_ns "$P-rr" nft delete table inet benchrl || die "nft delete table failed"
	fi
	if [ $rc -ne 0 ] || [[ $json != \{* ]]; then
		log "ratelimit round $r $mode: udpflood failed (exit $rc)"
		FAILED=1
		return 0
	fi
	echo "{\"part\": \"flood\", \"mode\": \"$mode\", \"round\": $r, \"received\": $((rx1 - rx0)), \"dropped\": $((d1 - d0)), ${json#\{}" \
		>>"$RL_RESULTS"
	# Both limiters' buckets refill before the next flood.
	sleep 1
}

ratelimit_part() {
	local r k m ns modes=(rl-off rl-on) floods=(sluice-xdp nft-limit) stats_was xdprc=0

	RL_RESULTS=$TMP/ratelimit.jsonl
	: >"$RL_RESULTS"
	build_rl_tools
	echo
	echo "ratelimit: $(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "(1) ns per packet, BPF_PROG_TEST_RUN (tests/bench/xdpbench): one Ethernet+IPv4+UDP frame"
	echo "    (74 bytes) to a VIP, $RL_ROUNDS rounds, programs interleaved, medians;" \
		"repeat = 10^6 runs per call, per call = repeat 1, 20,000 calls."
	echo "    sl_xdp_edge (the limits-only entry point: sl_xdp's limiters, no forwarding) leaves" \
		"the frame unchanged (checked),"
	echo "    so repeat mode is valid for it (shared/BENCHMARKING.md);"
	echo "    'per call' is the kernel's duration at repeat 1 (includes ~50-65 ns of timer overhead)," \
		"'syscall' the wall clock per bpf() call."
	timeout 120 "$BUILD/bench/xdpbench" -r "$RL_ROUNDS" -n 1000000 -c 20000 \
		"$BUILD/bench/xdpref.bpf.o" || xdprc=$?
	[ $xdprc = 0 ] || { log "xdpbench failed (exit $xdprc)"; FAILED=1; }

	rl_registry "$TMP/ratelimit.json"
	setup_sluice ratelimit "$TMP/ratelimit.json"

	# (2) ns per connect().
	stats_was=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1
	for ((r = 1; r <= RL_ROUNDS; r++)); do
		for ((k = 0; k < 2; k++)); do
			m=${modes[$(((r + k) % 2))]}
			mode_client "$m"
			ns=$CLIENT_NS
			if [ "$m" = rl-off ]; then
				rl_conn_slice "$m" "$RL_VIP_OFF" "$ns" "$r"
			else
				rl_conn_slice "$m" "$RL_VIP_ON" "$ns" "$r"
			fi
			ip netns del "$ns"
		done
	done
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"

	# (3) the flood: sender netns -> veth -> receiver netns.
	ns_base "$P-rs"
	ns_base "$P-rr"
	ip link add eth0 netns "$P-rs" type veth peer name eth0 netns "$P-rr"
	ip -n "$P-rs" addr add 10.203.0.1/24 dev eth0
	ip -n "$P-rr" addr add 10.203.0.2/24 dev eth0
	ip -n "$P-rr" addr add "$RL_VIP_UDP/32" dev lo
	ip -n "$P-rs" link set eth0 up
	ip -n "$P-rr" link set eth0 up
	ip -n "$P-rs" route add "$RL_VIP_UDP/32" via 10.203.0.2
	# Fill the neighbour entry before the first flood.
	in_ns "$P-rs" ping -c 1 -W 1 10.203.0.2 >/dev/null 2>&1 || true
	for ((r = 1; r <= RL_ROUNDS; r++)); do
		for ((k = 0; k < 2; k++)); do
			rl_flood "${floods[$(((r + k) % 2))]}" "$r"
		done
	done

	echo
	"$PYTHON" "$ROOT/scripts/bench-ratelimit.py" --pps "$RL_PPS" --count "$RL_COUNT" \
		--secs "$RL_FLOOD_SECS" --slice "$RL_SLICE" "$RL_RESULTS" || FAILED=1
	cp "$RL_RESULTS" "$BUILD/bench/ratelimit.jsonl"
	log "ratelimit raw results: $BUILD/bench/ratelimit.jsonl"
}

# --- the xdplb part ----------------------------------------------------------------------

xdplb_part() {
	local rc=0

	build_xdpref
	# shellcheck disable=SC2046 # pkg-config's flags are words
	gcc -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -I"$ROOT/include" \
		-I"$BUILD/skel" $(pkg-config --cflags libbpf) -o "$BUILD/bench/xdplbbench" \
		"$ROOT/tests/bench/xdplbbench.c" $(pkg-config --libs libbpf) -lelf -lz ||
		die "cannot build tests/bench/xdplbbench.c"
	echo
	echo "xdplb: $(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "  ns per packet of sl_xdp's load balancing, BPF_PROG_TEST_RUN (tests/bench/xdplbbench):"
	echo "  Ethernet+IPv4+TCP frames (54 bytes), $XDPLB_ROUNDS rounds, programs interleaved," \
		"medians; ONE packet per call"
	echo "  (repeat = 1, $XDPLB_CALLS calls per program and round, the pristine frame each call):" \
		"sl_xdp rewrites what it forwards,"
	echo "  so repeat mode would rerun it on its own output (shared/BENCHMARKING.md)." \
		"'per call' = the kernel's duration"
	echo "  at repeat 1 (includes ~50-65 ns of timer overhead), 'syscall' = wall clock per bpf()" \
		"call; targets judged on per call"
	echo "  net of XDP_PASS. 'repeat' (10^6 runs) only for programs that leave the frame unchanged."
	timeout 60 "$BUILD/bench/xdplbbench" -r "$XDPLB_ROUNDS" -c "$XDPLB_CALLS" -n 1000000 \
		"$BUILD/bench/xdpref.bpf.o" || rc=$?
	[ $rc = 0 ] || { log "xdplbbench failed (exit $rc)"; FAILED=1; }
}

mkdir -p "$BUILD/bench"
if [ $WANT_TOPOLOGY = 1 ]; then
	build_clients
fi
own_cg=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
if [ -n "$CGROOT" ] && command -v bpftool >/dev/null &&
   bpftool cgroup show "$CGROOT$own_cg" effective 2>/dev/null | grep -qw connect4; then
	log "warning: a connect4 program already applies to this shell's cgroup ($own_cg);"
	log "warning: the direct and iptables modes may go through it"
fi

T0=$(date +%s)
rm -rf "$BUILD"/bench/breaker-run*
if [ $WANT_TOPOLOGY = 1 ]; then
	setup_topology
fi
report_rc=0
if [ $WANT_TABLE = 1 ]; then
	bench_registry "$TMP/registry.json"
	probe direct
	for m in "${MODE_LIST[@]}"; do
		if [[ $m == sluice* ]]; then
			setup_sluice "$m" "$TMP/registry.json"
			probe "$m"
		fi
	done
	for m in "${MODE_LIST[@]}"; do
		if [[ $m == iptables-* ]]; then
			kube_rules "${m#iptables-}"
		fi
	done

	ipt_version=$(${IPT_RESTORE%-restore} -V 2>/dev/null || echo "?")
	echo
	echo "sluice bench: $(nproc) CPUs, kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "  client: $THREADS thread(s), each a serial loop of connect + GET + read to EOF + close"
	echo "  $ROUNDS rounds; per round every mode gets a fresh client netns and ${SECS} s measured," \
		"as $SLICES slices of ${SLICE_SECS} s"
	echo "          interleaved with the other modes (order rotated), after ${SETTLE} s of quiet;"
	echo "          warm-up ${WARMUP} s before a netns's first slice, ${SLICE_WARMUP} s before others"
	echo "  backends: $NBACKENDS nginx (1 worker, access_log off) on ${BACKENDS[*]} :$BE_PORT,"
	echo "          tcp_max_tw_buckets=0, one bridge; direct = client round-robins them"
	if [[ ,$MODES, == *,sluice,* || ,$MODES, == *,sluice-nct,* ]]; then
		echo "  sluice: VIP $VIP:$VIP_PORT, algorithm random, sluicectl load --cgroup" \
			"(client's cgroup); sluice-nct: load --no-conn-tracking"
		echo "          (no sockops: no breakers, no live counts);" \
			"each on its own cgroup and pin root"
		echo "          BPF cost from one more ${SLICE_SECS} s slice per sluice mode and round" \
			"with bpf_stats on"
	fi
	if [ $WANT_IPT = 1 ]; then
		echo "  iptables: $ipt_version, kube-proxy nat rules in the client netns," \
			"measured service last"
	fi
	echo "  table: medians over rounds; ratio = median of same-round ratios to direct"
	echo

	for ((r = 1; r <= ROUNDS; r++)); do
		run_round "$r"
	done

	echo
	"$PYTHON" "$ROOT/scripts/bench-report.py" --modes "$MODES" --target "$TARGET" \
		--lat-dir "$TMP" --rounds-detail "$RESULTS" || report_rc=$?
	cp "$RESULTS" "$BUILD/bench/results.jsonl"
	log "raw results: $BUILD/bench/results.jsonl"
fi
if [ $WANT_BREAKER = 1 ]; then
	breaker_part
fi
if [ $WANT_RL = 1 ]; then
	ratelimit_part
fi
if [ $WANT_XDPLB = 1 ]; then
	xdplb_part
fi
if [ $WANT_AGENT = 1 ]; then
	# Its own cgroup, pin root, namespace and files, removed by itself on exit.
	"$PYTHON" "$ROOT/scripts/bench-agent.py" --build "$BUILD" --out "$BUILD/bench/agent.json" ||
		FAILED=1
	log "agent raw results: $BUILD/bench/agent.json"
fi
if [ $WANT_REDIS = 1 ]; then
	# Its own namespace, cgroup, pin root, Redis and files, removed by itself on exit.
	"$PYTHON" "$ROOT/scripts/bench-redis.py" --build "$BUILD" --out "$BUILD/bench/redis.json" ||
		FAILED=1
	log "redis raw results: $BUILD/bench/redis.json"
fi
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
log "took $(($(date +%s) - T0)) s"
if [ $FAILED != 0 ] || [ $report_rc != 0 ]; then
	exit 1
fi
