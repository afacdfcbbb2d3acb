#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Prepares a backend (a network namespace) for sluice's XDP load balancer,
# which forwards by direct server return: the frame reaches the backend with
# its IP header unchanged (destination: the VIP), and the backend answers the
# client directly from the VIP.
#
# Usage: scripts/xdp-backend-setup.sh NETNS VIP [IFACE]
#   NETNS  the backend's network namespace (a name under /var/run/netns)
#   VIP    the service's VIP, IPv4 or IPv6; run once per VIP
#   IFACE  the interface facing the sluice node (default: the namespace's only
#          interface other than lo)
#
# What it does, in NETNS, and why:
#   - adds VIP/32 (or /128) to lo, so the stack accepts packets sent to the VIP
#     and answers from it;
#   - arp_ignore=1 and arp_announce=2 on IFACE (and all), so the backend never
#     answers ARP for the VIP or announces it: only the node may draw VIP
#     traffic (for IPv6 the address is added nodad on lo, which never answers
#     neighbour solicitations on IFACE);
#   - rp_filter=0 on IFACE (and all): a client's source is reached through the
#     node, which strict reverse-path filtering can reject;
#   - GRO on IFACE: a veth receives frames another interface's XDP program
#     redirects to it only if it has GRO on or an XDP program of its own
#     (they are dropped silently otherwise).
# The backend's service must listen on the VIP's port (0.0.0.0 or the VIP):
# DSR cannot rewrite ports, the reply does not pass the node.
# Idempotent: running it again changes nothing.
set -euo pipefail

die() { echo "xdp-backend-setup: $*" >&2; exit 1; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 NETNS VIP [IFACE]"
NETNS=$1 VIP=$2 IFACE=${3:-}
[ -e "/var/run/netns/$NETNS" ] || die "no network namespace '$NETNS' (ip netns list)"
in_ns() { nsenter --net="/var/run/netns/$NETNS" "$@"; }

# Strict forms: ip(8) would take "10.96.9" for 10.96.9.0.
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
if [[ $VIP =~ ^$octet\.$octet\.$octet\.$octet$ ]]; then
	FAMILY=4 PREFIX=32
elif [[ $VIP == *:* && $VIP =~ ^[0-9A-Fa-f:.]+$ ]]; then
	FAMILY=6 PREFIX=128
else
	die "VIP '$VIP' is not an IPv4 or IPv6 address"
fi
command -v ethtool >/dev/null || die "ethtool is missing (apt-get install ethtool)"

if [ -z "$IFACE" ]; then
	mapfile -t ifs < <(in_ns ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); if ($2 != "lo") print $2 }')
	[ ${#ifs[@]} -eq 1 ] || die "'$NETNS' has ${#ifs[@]} interfaces besides lo (${ifs[*]:-none}): name IFACE"
	IFACE=${ifs[0]}
fi
in_ns ip link show dev "$IFACE" >/dev/null 2>&1 || die "no interface '$IFACE' in '$NETNS'"

in_ns ip link set dev lo up
# ip(8) matches the address itself ("to"), so a VIP written another way is still found.
if [ -z "$(in_ns ip -o -"$FAMILY" addr show dev lo to "$VIP/$PREFIX")" ]; then
	if [ "$FAMILY" = 6 ]; then
		in_ns ip -6 addr add "$VIP/$PREFIX" dev lo nodad || die "cannot add $VIP to lo"
	else
		in_ns ip addr add "$VIP/$PREFIX" dev lo || die "cannot add $VIP to lo"
	fi
fi
for dev in all "$IFACE"; do
	in_ns sysctl -qw "net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2" \
		"net.ipv4.conf.$dev.rp_filter=0"
done
in_ns ethtool -K "$IFACE" gro on >/dev/null 2>&1 ||
	die "cannot turn GRO on for $IFACE (ethtool -K $IFACE gro on): redirected frames would be lost"
echo "xdp-backend-setup: $NETNS ready for VIP $VIP on $IFACE (VIP on lo, ARP quiet, rp_filter off, GRO on)"
