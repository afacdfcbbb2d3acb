#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what sluice needs from Debian, quietly and only when missing, then
# makes sure bpffs is mounted. Safe to run any number of times.
set -euo pipefail

packages=(
	# build
	make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
	libjansson-dev libmnl-dev libssl-dev libmicrohttpd-dev linux-libc-dev libhiredis-dev
	# tests
	libcmocka-dev libfuzzer-14-dev libclang-rt-14-dev prometheus python3-pytest iproute2
	nginx-light curl wrk iptables
	nftables ethtool iputils-ping netcat-openbsd procps util-linux python3 python3-yaml systemd
	redis-server
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# nginx-light's package enables a default site on port 80; we never want it running.
	if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then
		systemctl stop nginx || true
	fi
	# redis-server's package starts and enables a system Redis on 6379. The tests and the
	# bench start their own on free ports; one we just installed is stopped and disabled.
	if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null &&
	   systemctl is-enabled -q redis-server 2>/dev/null; then
		systemctl disable --now redis-server >/dev/null 2>&1 || true
	fi
fi

if ! mount -t bpf | grep -q ' /sys/fs/bpf '; then
	mount -t bpf bpf /sys/fs/bpf
fi
