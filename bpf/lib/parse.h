/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing for XDP: Ethernet, up to two VLAN tags (802.1Q, 802.1ad),
 * IPv4 or IPv6, and the TCP/UDP ports. Every header is bounds-checked right
 * where its pointer is formed.
 */
#ifndef SL_BPF_PARSE_H
#define SL_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "sluice/types.h"

#define VLAN_MAX_DEPTH 2
#define IPV4_FRAG_MASK 0x3fff /* MF and the offset: any fragment */
#define IPV6_NEXTHDR_FRAGMENT 44
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct packet {
	struct sl_addr src;
	struct sl_addr dst;
	__u32 len;	   /* the whole frame */
	__u16 l3_off;	   /* where the IP header starts in the frame */
	__u32 ip_len;	   /* the IP packet's length by its header (IPv6: 40 + payload length) */
	__be16 sport;	   /* valid when l4 is set */
	__be16 dport;
	__u8 family;	   /* SL_FAMILY_IPV4 or SL_FAMILY_IPV6 */
	__u8 proto;	   /* IPPROTO_*, the IPv6 next header when there is no L4 */
	__u8 fragment;	   /* part of a fragmented datagram: no ports to trust */
	__u8 l4;	   /* the TCP or UDP header is in the frame */
	__u8 tcp_flags;
	__u8 pad;
};

/*
 * Fills p from the frame. Returns 0 for an IP packet (with or without a
 * readable L4 header), or -1 for anything else (ARP, other ethertypes,
 * frames cut short), which callers pass on untouched.
 */
static __always_inline int parse_packet(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l4 = NULL;
	__be16 proto;

	p->len = data_end - data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	data = eth + 1;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_hdr *vh = data;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->encapsulated_proto;
		data = vh + 1;
	}

	p->l3_off = data - (void *)(long)ctx->data;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data;

		if ((void *)(iph + 1) > data_end || iph->ihl < 5)
			return -1;
		p->family = SL_FAMILY_IPV4;
		p->src.words[0] = iph->saddr;
		p->dst.words[0] = iph->daddr;
		p->proto = iph->protocol;
		p->ip_len = bpf_ntohs(iph->tot_len);
		p->fragment = (iph->frag_off & bpf_htons(IPV4_FRAG_MASK)) != 0;
		l4 = (void *)iph + iph->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data;

		if ((void *)(ip6h + 1) > data_end)
			return -1;
		p->family = SL_FAMILY_IPV6;
		__builtin_memcpy(&p->src, &ip6h->saddr, sizeof(p->src));
		__builtin_memcpy(&p->dst, &ip6h->daddr, sizeof(p->dst));
		p->proto = ip6h->nexthdr;
		p->ip_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		/* Extension headers are not walked: only TCP or UDP right after the header has ports. */
		p->fragment = ip6h->nexthdr == IPV6_NEXTHDR_FRAGMENT;
		l4 = ip6h + 1;
	} else {
		return -1;
	}

	if (p->fragment)
		return 0;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return 0;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4 = 1;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return 0;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->l4 = 1;
	}
	return 0;
}

#endif
