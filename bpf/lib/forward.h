/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Direct server return at L2: the frame keeps its IP header (destination:
 * the VIP) and its L4 header untouched; only the Ethernet addresses change to
 * reach the backend's MAC, as the kernel's FIB says, and the TTL or hop limit
 * drops by one, as a router's would. The backend holds the VIP on its
 * loopback and answers the client directly (scripts/xdp-backend-setup.sh).
 *
 * The FIB's answer for a backend (egress, MACs, route MTU) is kept per CPU in
 * sl_xdp_backend for NEXTHOP_TTL_JIFFIES: with cold caches bpf_fib_lookup
 * costs more than the rest of the packet's path, and a route or neighbour
 * change is followed within that time.
 */
#ifndef SL_BPF_FORWARD_H
#define SL_BPF_FORWARD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "parse.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_ALEN 6
/* 0.25 to 1 s, as CONFIG_HZ is 1000 or 250; jiffies cost a load, a clock read does not. */
#define NEXTHOP_TTL_JIFFIES 256
#define FIB_PROBE_LEN 0xffff /* longer than any MTU: the lookup answers with the route's MTU */

/*
 * RFC 1624 incremental update for a TTL decrement: the TTL is the high byte
 * of its 16-bit header word, so the one's-complement sum drops by 0x0100 and
 * the checksum (its complement) rises by as much, with the carry folded.
 */
static __always_inline void ipv4_ttl_decrement(struct iphdr *iph)
{
	__u32 check = (__u32)iph->check + (__u32)bpf_htons(0x0100);

	iph->check = (__sum16)(check + (check >= 0xffff));
	iph->ttl--;
}

static __always_inline __u32 fib_pass_reason(long rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return SL_XDP_PASS_NO_NEIGHBOR;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return SL_XDP_PASS_FORWARDING_OFF;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return SL_XDP_PASS_FRAG_NEEDED;
	default:
		return SL_XDP_PASS_NO_ROUTE;
	}
}

/*
 * Asks the FIB how to reach backend be from the ingress interface: first
 * with an oversized length, which stops at the MTU check and reports the
 * route's MTU, then for the egress and MACs. Returns 0, or a pass reason.
 */
static __always_inline __u32 nexthop_fill(struct xdp_md *ctx, const struct packet *p,
					  const struct sl_backend *be, struct sl_xdp_nexthop *nh,
					  __u64 now)
{
	struct bpf_fib_lookup fib = {
		.ifindex = ctx->ingress_ifindex,
		.l4_protocol = p->proto,
		.tot_len = FIB_PROBE_LEN,
	};
	long rc;

	if (p->family == SL_FAMILY_IPV4) {
		fib.family = AF_INET;
		fib.ipv4_src = p->src.words[0];
		fib.ipv4_dst = be->addr.words[0];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, &p->src, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, &be->addr, sizeof(fib.ipv6_dst));
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return fib_pass_reason(rc);
	nh->mtu = fib.mtu_result;
	fib.ifindex = ctx->ingress_ifindex;
	fib.tot_len = 0;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return fib_pass_reason(rc);
	nh->ifindex = fib.ifindex;
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	nh->expires = now + NEXTHOP_TTL_JIFFIES;
	return 0;
}

/* nexthop_get's "why" when the backend no longer serves the service. */
#define NEXTHOP_GONE 0xffff

/*
 * How to reach backend id of service svc_id at now (jiffies): the cached
 * route while it is fresh, else the FIB's, if the backend still serves the
 * service. NULL with *why a pass reason, or NEXTHOP_GONE.
 */
static __always_inline struct sl_xdp_nexthop *nexthop_get(struct xdp_md *ctx,
							  const struct packet *p, __u32 svc_id,
							  __u32 id, __u64 now, __u32 *why)
{
	struct sl_xdp_nexthop *nh = xdp_nexthop_of(id);
	struct sl_backend *be;

	if (!nh) {
		*why = NEXTHOP_GONE;
		return NULL;
	}
	if (nh->expires > now)
		return nh;
	nh->expires = 0;
	be = bpf_map_lookup_elem(&sl_backends, &id);
	if (!be || be->svc_id != svc_id) {
		*why = NEXTHOP_GONE;
		return NULL;
	}
	*why = nexthop_fill(ctx, p, be, nh, now);
	return *why ? NULL : nh;
}

/*
 * Sends the frame along nh. Returns XDP_TX or XDP_REDIRECT, or XDP_PASS with
 * the reason (enum sl_xdp_pass) in *why when the stack must handle it.
 */
static __always_inline int dsr_forward(struct xdp_md *ctx, const struct packet *p,
				       const struct sl_xdp_nexthop *nh, __u32 *why)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (p->ip_len > nh->mtu) {
		*why = SL_XDP_PASS_FRAG_NEEDED;
		return XDP_PASS;
	}
	if (p->family == SL_FAMILY_IPV4) {
		struct iphdr *iph = data + sizeof(*eth);

		if ((void *)(iph + 1) > data_end)
			goto no_route;
		if (iph->ttl <= 1)
			goto ttl;
		ipv4_ttl_decrement(iph);
	} else {
		struct ipv6hdr *ip6h = data + sizeof(*eth);

		if ((void *)(ip6h + 1) > data_end)
			goto no_route;
		if (ip6h->hop_limit <= 1)
			goto ttl;
		ip6h->hop_limit--;
	}
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	if (nh->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(nh->ifindex, 0);
ttl:
	*why = SL_XDP_PASS_TTL;
	return XDP_PASS;
no_route:
	*why = SL_XDP_PASS_NO_ROUTE;
	return XDP_PASS;
}

#endif
