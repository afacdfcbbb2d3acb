#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make demo: four real nginx backends in network namespaces, sluice loaded on
# a cgroup of its own, the embedded default registry applied, and real curl
# requests through the VIP showing which backend answered each. Everything it
# creates is removed on exit, also when a step fails.
#
#   sld-client  the client's namespace; holds the bridge br0 (10.200.0.1/24)
#   sld-be1..4  nginx on 10.200.0.11..14:8080 answering "beN"
set -euo pipefail

BUILD=$(realpath -m "${1:-build}")
CTL=$BUILD/sluicectl
P=sld
PIN=/sys/fs/bpf/sluice-demo
WORK=$(mktemp -d /tmp/sluice-demo.XXXXXX)
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=$CGROOT/sluice-demo
NBE=4

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { local ns=$1; shift; nsenter --net=/var/run/netns/"$ns" "$@"; }
# Runs a command as a client: in the demo cgroup (where sluice is attached) and namespace.
as_client() { sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" nsenter --net=/var/run/netns/$P-client "$@"; }

cleanup() {
	set +e
	for f in "$WORK"/nginx-*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	[ -x "$CTL" ] && "$CTL" unload --pin-root "$PIN" >/dev/null 2>&1
	if [ -d "$CG" ]; then
		while read -r pid; do echo "$pid" >"$CGROOT/cgroup.procs"; done <"$CG/cgroup.procs"
		rmdir "$CG"
	fi
	for ns in $P-client $(seq -f "$P-be%g" 1 $NBE); do
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "demo: needs root" >&2; exit 1; }
[ -n "$CGROOT" ] || { echo "demo: cgroup v2 is not mounted" >&2; exit 1; }
cleanup 2>/dev/null # leftovers of an interrupted run
WORK=$(mktemp -d /tmp/sluice-demo.XXXXXX)

say "topology: a client and $NBE nginx backends in network namespaces"
ip netns add $P-client
in_ns $P-client ip link set lo up
in_ns $P-client ip link add br0 type bridge
in_ns $P-client ip addr add 10.200.0.1/24 dev br0
in_ns $P-client ip link set br0 up
for i in $(seq 1 $NBE); do
	ns=$P-be$i
	ip netns add "$ns"
	ip link add "$P-v$i" type veth peer name eth0 netns "$ns"
	ip link set "$P-v$i" netns $P-client
	in_ns $P-client ip link set "$P-v$i" master br0 up
	in_ns "$ns" ip addr add "10.200.0.1$i/24" dev eth0
	in_ns "$ns" ip link set eth0 up
	in_ns "$ns" ip link set lo up
	cat >"$WORK/nginx-$i.conf" <<CONF
worker_processes 1;
pid $WORK/nginx-$i.pid;
error_log stderr error;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $WORK/body-$i;
	proxy_temp_path $WORK/proxy-$i;
	fastcgi_temp_path $WORK/fcgi-$i;
	uwsgi_temp_path $WORK/uwsgi-$i;
	scgi_temp_path $WORK/scgi-$i;
	server { listen 8080; location / { return 200 "be$i (10.200.0.1$i)\n"; } }
}
CONF
	in_ns "$ns" nginx -c "$WORK/nginx-$i.conf"
	echo "  $ns: nginx on 10.200.0.1$i:8080"
done
for i in $(seq 1 $NBE); do
	for _ in $(seq 1 50); do
		in_ns $P-client curl -s -m 1 -o /dev/null "http://10.200.0.1$i:8080/" && break
		sleep 0.1
	done
done

say "sluicectl load: programs attached to $CG, pinned under $PIN"
mkdir -p "$CG"
"$CTL" load --cgroup "$CG" --pin-root "$PIN"

cat >"$WORK/registry.json" <<'JSON'
{
  "services": [
    {
      "name": "web", "vip": "10.96.0.10", "port": 80, "protocol": "tcp",
      "lb": {"algorithm": "round_robin"},
      "backends": [
        {"address": "10.200.0.11", "port": 8080}, {"address": "10.200.0.12", "port": 8080},
        {"address": "10.200.0.13", "port": 8080}, {"address": "10.200.0.14", "port": 8080}
      ]
    },
    {
      "name": "web-weighted", "vip": "10.96.0.11", "port": 80,
      "lb": {"algorithm": "weighted"},
      "backends": [
        {"address": "10.200.0.11", "port": 8080, "weight": 3},
        {"address": "10.200.0.12", "port": 8080, "weight": 1}
      ]
    },
    {
      "name": "web-maglev", "vip": "10.96.0.12", "port": 80,
      "lb": {"algorithm": "maglev"},
      "backends": [
        {"address": "10.200.0.11", "port": 8080}, {"address": "10.200.0.12", "port": 8080},
        {"address": "10.200.0.13", "port": 8080}, {"address": "10.200.0.14", "port": 8080}
      ]
    }
  ]
}
JSON
say "sluicectl apply: the embedded default registry"
"$CTL" apply "$WORK/registry.json" --pin-root "$PIN"
"$CTL" services --pin-root "$PIN"

say "8 requests to http://10.96.0.10/ (round_robin); curl's peer address is the VIP"
for _ in $(seq 1 8); do
	as_client curl -s -m 2 -w '  peer %{remote_ip}:%{remote_port}\n' http://10.96.0.10/ | paste -sd ' '
done

say "8 requests to http://10.96.0.11/ (weighted 3:1)"
for _ in $(seq 1 8); do
	as_client curl -s -m 2 http://10.96.0.11/
done

say "maglev (10.96.0.12): a client bound to one source port keeps its backend"
for port in 40001 40001 40001 40002 40002 40002; do
	printf '  from port %s: %s' "$port" "$(as_client curl -s -m 2 -H "Connection: close" --local-port "$port" \
		http://10.96.0.12/)"
	echo
	sleep 0.05
done

say "backend be2 removed from 'web' (apply by difference), 4 more requests"
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
d["services"][0]["backends"] = [b for b in d["services"][0]["backends"] if b["address"] != "10.200.0.12"]
json.dump(d, open(sys.argv[1], "w"), indent=1)' "$WORK/registry.json"
"$CTL" apply "$WORK/registry.json" --pin-root "$PIN"
for _ in $(seq 1 4); do
	as_client curl -s -m 2 http://10.96.0.10/
done

say "sluicectl backends: per-backend counters from the per-CPU maps"
"$CTL" backends --pin-root "$PIN"
say "sluicectl status"
"$CTL" status --pin-root "$PIN"
say "done: cleaning up"
