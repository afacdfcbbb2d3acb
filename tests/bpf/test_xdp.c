// SPDX-License-Identifier: MIT
/*
 * The XDP rate limiters of bpf/xdp.bpf.c under BPF_PROG_TEST_RUN, selftests
 * style: the real skeleton, opened with a fresh pin root
 * (/sys/fs/bpf/sluice-test-<pid>, removed at the end whatever happens), maps
 * filled through skel->maps, and one table of cases {name, frame built in C,
 * verdicts, counter deltas} run in order, one cmocka test each.
 *
 * The program run is sl_xdp_edge, the limits-only entry point (attach-xdp
 * --no-forward): the same parser, counters and limiter code as sl_xdp, which
 * also forwards VIP packets to backends (tested in test_xdp_lb.c). No service
 * here has a backend table, and sl_xdp_edge must never need one.
 *
 * Every case checks, for every run of its frame: the verdict (the first
 * runs - drops runs XDP_PASS, the rest XDP_DROP), that the frame comes back
 * untouched (sl_xdp_edge never rewrites), and afterwards the sl_xdp_stats
 * deltas of every service id the table uses: packets = runs and bytes = runs x
 * frame length on `counted`, the given syns and drops there, and, on a VIP
 * (counted > 0), passed.not_forwarding = the runs passed; nothing anywhere
 * else, and never a forwarding counter (NOT_COUNTED: no id moves, for what
 * the parser refuses).
 *
 * Buckets run at 1 token per second, so nothing refills while a case runs;
 * SYN buckets are set full or empty before a case that depends on them, and
 * sl_xdp_cfg (the per-source limit) is written before every case.
 *
 * Needs root (CAP_BPF, bpffs at /sys/fs/bpf); every case is skipped otherwise.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cmocka.h>

#include "sluice/service.h"
#include "sluice/ratelimit.h"
#include "sluice/xdp.h"
#include "../lib/vip_filter.h"
#include "../lib/xdp_assert.h"

#define TEST_NAME "test_xdp"
#include "../lib/xdp_test.h"

#define NOT_COUNTED (-1)
#define NS_PER_SEC 1000000000ULL

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10


/* --- frames ----------------------------------------------------------------------------- */

struct frame {
	__u8 d[1600];
	__u32 len;
	int l3;	    /* offset of the IP header, -1: none */
	int family; /* 4 or 6 */
	int no_fix; /* leave the IP length fields as written (truncated frames) */
};

static void put(struct frame *f, const void *p, size_t n)
{
	memcpy(f->d + f->len, p, n);
	f->len += n;
}

static void put16(struct frame *f, __u16 v)
{
	__be16 b = htons(v);

	put(f, &b, 2);
}

static void fill(struct frame *f, __u8 byte, size_t n)
{
	memset(f->d + f->len, byte, n);
	f->len += n;
}

/* Ethernet with ethertype proto, after the given VLAN tags (outermost first: TPIDs). */
static void eth_tagged(struct frame *f, __u16 proto, const __u16 *tpids, int ntags)
{
	static const __u8 macs[12] = { 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01 };

	memset(f, 0, sizeof(*f));
	f->l3 = -1;
	put(f, macs, sizeof(macs));
	for (int i = 0; i < ntags; i++) {
		put16(f, tpids[i]);
		put16(f, 100 + i); /* TCI: VLAN id */
	}
	put16(f, proto);
}

static void eth(struct frame *f, __u16 proto)
{
	eth_tagged(f, proto, NULL, 0);
}

static __be32 v4(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		abort();
	return a.s_addr;
}

static struct in6_addr v6(const char *s)
{
	struct in6_addr a;

	if (inet_pton(AF_INET6, s, &a) != 1)
		abort();
	return a;
}

/* An IPv4 header of ihl words (options are NOPs); frag_off in host order (flags | offset). */
static void ipv4_ihl(struct frame *f, const char *src, const char *dst, __u8 proto, __u16 frag_off,
		     int ihl)
{
	struct iphdr h = {
		.version = 4, .ihl = ihl, .ttl = 64, .protocol = proto,
		.frag_off = htons(frag_off), .saddr = v4(src), .daddr = v4(dst),
	};

	f->l3 = f->len;
	f->family = 4;
	put(f, &h, sizeof(h));
	if (ihl > 5)
		fill(f, 0x01, (ihl - 5) * 4);
}

static void ipv4(struct frame *f, const char *src, const char *dst, __u8 proto)
{
	ipv4_ihl(f, src, dst, proto, 0, 5);
}

static void ipv6(struct frame *f, const char *src, const char *dst, __u8 nexthdr)
{
	struct ipv6hdr h = { .version = 6, .nexthdr = nexthdr, .hop_limit = 64 };

	h.saddr = v6(src);
	h.daddr = v6(dst);
	f->l3 = f->len;
	f->family = 6;
	put(f, &h, sizeof(h));
}

/* An IPv6 extension header of 8 bytes (fragment or hop-by-hop) saying next comes nexthdr. */
static void ipv6_ext8(struct frame *f, __u8 nexthdr, __u16 frag_field)
{
	put(f, &nexthdr, 1);
	fill(f, 0, 1);
	put16(f, frag_field);
	put16(f, 0x1234); /* identification (fragment) or padding */
	put16(f, 0x5678);
}

static void tcp(struct frame *f, __u16 sport, __u16 dport, __u8 flags)
{
	put16(f, sport);
	put16(f, dport);
	put16(f, 0x0100); /* seq */
	put16(f, 0x0001);
	fill(f, 0, 4); /* ack_seq */
	fill(f, 0x50, 1); /* doff 5 */
	put(f, &flags, 1);
	put16(f, 64240); /* window */
	fill(f, 0, 4);	 /* check, urg_ptr */
}

static void udp(struct frame *f, __u16 sport, __u16 dport, size_t payload)
{
	put16(f, sport);
	put16(f, dport);
	put16(f, 8 + payload);
	put16(f, 0);
	fill(f, 0xab, payload);
}

static void icmp_echo(struct frame *f, __u8 type)
{
	__u8 h[8] = { type, 0, 0, 0, 0, 1, 0, 1 };

	put(f, h, sizeof(h));
	fill(f, 0xcd, 32);
}

static __u16 csum16(const void *p, size_t n)
{
	const __u8 *b = p;
	__u32 s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (b[i] << 8) | b[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

/* Sets the IP length fields (and the IPv4 checksum) from what follows the header. */
static void finish(struct frame *f)
{
	__u8 *h = f->d + f->l3;
	__be16 v;

	if (f->l3 < 0 || f->no_fix)
		return;
	/* Headers sit at any offset of the frame: written through memcpy, not casts. */
	if (f->family == 4) {
		v = htons(f->len - f->l3);
		memcpy(h + offsetof(struct iphdr, tot_len), &v, 2);
		memset(h + offsetof(struct iphdr, check), 0, 2);
		v = htons(csum16(h, (h[0] & 0xf) * 4));
		memcpy(h + offsetof(struct iphdr, check), &v, 2);
	} else {
		v = htons(f->len - f->l3 - sizeof(struct ipv6hdr));
		memcpy(h + offsetof(struct ipv6hdr, payload_len), &v, 2);
	}
}

/* Cuts the frame to n bytes, keeping the length fields of the whole packet. */
static void cut(struct frame *f, __u32 n)
{
	finish(f);
	f->no_fix = 1;
	f->len = n;
}

/* --- the services and addresses of the table -------------------------------------------- */

enum {
	SVC_UDP4 = 1, /* 10.96.0.10:53/udp */
	SVC_SYN4 = 2, /* 10.96.0.20:80/tcp, syn_per_second 1, burst 3 */
	SVC_SYN6 = 3, /* [fd00::20]:80/tcp, syn_per_second 1, burst 2 */
	SVC_TCP4 = 4, /* 10.96.0.30:443/tcp, no SYN limit */
	SVC_UDP6 = 5, /* [fd00::53]:53/udp */
	SVC_LAST = SVC_UDP6,
};

#define CLIENT4 "192.0.2.1"
#define CLIENT6 "2001:db8::1"
#define VIP_UDP4 "10.96.0.10"
#define VIP_SYN4 "10.96.0.20"
#define VIP_SYN6 "fd00::20"
#define VIP_TCP4 "10.96.0.30"
#define VIP_UDP6 "fd00::53"
#define SYN4_BURST 3
#define SYN6_BURST 2

static const struct {
	__u32 id;
	const char *name, *vip;
	__u16 port;
	__u8 proto;
	__u32 syn_rate, syn_burst;
} services[] = {
	{ SVC_UDP4, "udp4", VIP_UDP4, 53, IPPROTO_UDP, 0, 0 },
	{ SVC_SYN4, "syn4", VIP_SYN4, 80, IPPROTO_TCP, 1, SYN4_BURST },
	{ SVC_SYN6, "syn6", VIP_SYN6, 80, IPPROTO_TCP, 1, SYN6_BURST },
	{ SVC_TCP4, "tcp4", VIP_TCP4, 443, IPPROTO_TCP, 0, 0 },
	{ SVC_UDP6, "udp6", VIP_UDP6, 53, IPPROTO_UDP, 0, 0 },
};

/* --- frames of the cases ------------------------------------------------------------------ */

static void f_arp(struct frame *f)
{
	static const __u8 arp[28] = {
		0, 1, 8, 0, 6, 4, 0, 1,		    /* Ethernet, IPv4, request */
		0x02, 0, 0, 0, 0, 0x01, 192, 0, 2, 1, /* sender */
		0, 0, 0, 0, 0, 0, 10, 96, 0, 10,	    /* target: the VIP */
	};

	eth(f, ETH_P_ARP);
	put(f, arp, sizeof(arp));
}

static void f_lldp(struct frame *f)
{
	eth(f, 0x88cc);
	fill(f, 0, 46);
}

static void f_udp4_vip(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_udp4_vip_big(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 1472);
	finish(f);
}

static void f_udp4_other_port(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 54, 32);
	finish(f);
}

static void f_udp4_to_tcp_vip(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_SYN4, IPPROTO_UDP);
	udp(f, 40000, 80, 32);
	finish(f);
}

static void tcp4_frame(struct frame *f, const char *src, const char *vip, __u16 port, __u8 flags)
{
	eth(f, ETH_P_IP);
	ipv4(f, src, vip, IPPROTO_TCP);
	tcp(f, 40000, port, flags);
	finish(f);
}

static void f_syn4(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_SYN4, 80, TCP_SYN);
}

static void f_synack4(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_SYN4, 80, TCP_SYN | TCP_ACK);
}

static void f_ack4(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_SYN4, 80, TCP_ACK);
}

static void f_rst4(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_SYN4, 80, TCP_RST);
}

static void f_syn_ece_cwr4(struct frame *f)
{
	/* ECN setup SYN: SYN with ECE and CWR is still a SYN without ACK. */
	tcp4_frame(f, CLIENT4, VIP_SYN4, 80, TCP_SYN | 0x40 | 0x80);
}

static void f_syn4_unlimited_vip(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_TCP4, 443, TCP_SYN);
}

static void f_syn4_other_port(struct frame *f)
{
	tcp4_frame(f, CLIENT4, VIP_SYN4, 81, TCP_SYN);
}

static void f_syn4_options(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_SYN4, IPPROTO_TCP, 0, 6);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_syn4_df(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_SYN4, IPPROTO_TCP, 0x4000 /* DF */, 5);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_syn4_frag_mf(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_SYN4, IPPROTO_TCP, 0x2000 /* MF, offset 0 */, 5);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_syn4_frag_offset(struct frame *f)
{
	/* A later fragment whose payload happens to look like a SYN to the VIP. */
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_SYN4, IPPROTO_TCP, 185 /* offset 1480 bytes, last */, 5);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_udp4_frag_offset(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_UDP4, IPPROTO_UDP, 0x2000 | 185, 5);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_ihl4(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_UDP4, IPPROTO_UDP, 0, 5);
	udp(f, 40000, 53, 32);
	finish(f);
	f->d[f->l3] = 0x44; /* version 4, ihl 4 */
}

static void f_eth_only(struct frame *f)
{
	eth(f, ETH_P_IP); /* 14 bytes: BPF_PROG_TEST_RUN takes no less */
}

static void f_ipv4_cut(struct frame *f)
{
	f_udp4_vip(f);
	cut(f, ETH_HLEN + 19);
}

static void f_ipv4_options_cut(struct frame *f)
{
	/* ihl 15 says 60 bytes of header; the frame ends in the options. */
	eth(f, ETH_P_IP);
	ipv4_ihl(f, CLIENT4, VIP_SYN4, IPPROTO_TCP, 0, 15);
	cut(f, ETH_HLEN + 40);
}

static void f_tcp4_cut(struct frame *f)
{
	f_syn4(f);
	cut(f, ETH_HLEN + 20 + 19);
}

static void f_udp4_cut(struct frame *f)
{
	f_udp4_vip(f);
	cut(f, ETH_HLEN + 20 + 7);
}

static void f_vlan_cut(struct frame *f)
{
	eth(f, ETH_P_8021Q);
	fill(f, 0, 2); /* half a tag */
}

static void f_ipv6_cut(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	fill(f, 0x60, 1);
	fill(f, 0, 38);
}

static void f_tcp6_cut(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, CLIENT6, VIP_SYN6, IPPROTO_TCP);
	tcp(f, 40000, 80, TCP_SYN);
	cut(f, ETH_HLEN + 40 + 12);
}

static void syn6_frame(struct frame *f, const char *src, __u8 flags)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, src, VIP_SYN6, IPPROTO_TCP);
	tcp(f, 40000, 80, flags);
	finish(f);
}

static void f_syn6(struct frame *f)
{
	syn6_frame(f, CLIENT6, TCP_SYN);
}

static void f_synack6(struct frame *f)
{
	syn6_frame(f, CLIENT6, TCP_SYN | TCP_ACK);
}

static void f_udp6_vip(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, CLIENT6, VIP_UDP6, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_syn6_frag(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, CLIENT6, VIP_SYN6, 44 /* fragment header */);
	ipv6_ext8(f, IPPROTO_TCP, 0x0001 /* offset 0, M */);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_syn6_hopopts(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, CLIENT6, VIP_SYN6, 0 /* hop-by-hop options */);
	ipv6_ext8(f, IPPROTO_TCP, 0x0104 /* PadN */);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_icmp6(struct frame *f)
{
	eth(f, ETH_P_IPV6);
	ipv6(f, CLIENT6, VIP_SYN6, 58 /* ICMPv6 */);
	icmp_echo(f, 128);
	finish(f);
}

static const __u16 tags_1q[] = { ETH_P_8021Q };
static const __u16 tags_qinq[] = { ETH_P_8021AD, ETH_P_8021Q };
static const __u16 tags_1q1q[] = { ETH_P_8021Q, ETH_P_8021Q };
static const __u16 tags_three[] = { ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q };

static void f_udp4_vlan(struct frame *f)
{
	eth_tagged(f, ETH_P_IP, tags_1q, 1);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_udp4_qinq(struct frame *f)
{
	eth_tagged(f, ETH_P_IP, tags_qinq, 2);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_udp4_1q1q(struct frame *f)
{
	eth_tagged(f, ETH_P_IP, tags_1q1q, 2);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_syn4_qinq(struct frame *f)
{
	eth_tagged(f, ETH_P_IP, tags_qinq, 2);
	ipv4(f, CLIENT4, VIP_SYN4, IPPROTO_TCP);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_syn6_vlan(struct frame *f)
{
	eth_tagged(f, ETH_P_IPV6, tags_1q, 1);
	ipv6(f, CLIENT6, VIP_SYN6, IPPROTO_TCP);
	tcp(f, 40000, 80, TCP_SYN);
	finish(f);
}

static void f_udp4_three_tags(struct frame *f)
{
	eth_tagged(f, ETH_P_IP, tags_three, 3);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_icmp4(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_UDP4, IPPROTO_ICMP);
	icmp_echo(f, 8);
	finish(f);
}

static void f_sctp4(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP_SYN4, 132 /* SCTP */);
	put16(f, 40000);
	put16(f, 80);
	fill(f, 0, 8);
	finish(f);
}

/* Per-source limit: each case its own source, so each starts with a full bucket. */
static void f_udp4_from_50(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, "192.0.2.50", VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_udp4_from_51(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, "192.0.2.51", VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_syn4_from_52(struct frame *f)
{
	tcp4_frame(f, "192.0.2.52", VIP_TCP4, 443, TCP_SYN);
}

static void f_icmp4_from_53(struct frame *f)
{
	eth(f, ETH_P_IP);
	ipv4(f, "192.0.2.53", "10.1.1.1", IPPROTO_ICMP);
	icmp_echo(f, 8);
	finish(f);
}

static void f_arp_while_limited(struct frame *f)
{
	f_arp(f);
}

static void f_udp6_from_db8(struct frame *f)
{
	/* 2001:db8:: : word 0 is 0x20010db8, words 1..3 are 0 */
	eth(f, ETH_P_IPV6);
	ipv6(f, "2001:db8::", VIP_UDP6, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_udp4_from_32_1_13_184(struct frame *f)
{
	/* 32.1.13.184 = 0x20010db8: the same key words as 2001:db8::, another family */
	eth(f, ETH_P_IP);
	ipv4(f, "32.1.13.184", VIP_UDP4, IPPROTO_UDP);
	udp(f, 40000, 53, 32);
	finish(f);
}

static void f_syn4_from_54(struct frame *f)
{
	tcp4_frame(f, "192.0.2.54", VIP_SYN4, 80, TCP_SYN);
}

/* --- the table ------------------------------------------------------------------------------ */

enum syn_bucket { SYN_KEEP, SYN_FULL, SYN_EMPTY };

struct xdp_case {
	const char *name;
	void (*build)(struct frame *f);
	int runs;		/* the frame is run this many times (1 if 0) */
	int drops;		/* the last `drops` runs must be XDP_DROP, the others XDP_PASS */
	int counted;		/* service id whose counters move (0: no VIP), or NOT_COUNTED */
	__u64 syns, drop_source, drop_syn; /* deltas on `counted` */
	struct sl_xdp_cfg cfg;	/* written to sl_xdp_cfg before the case (0: no source limit) */
	enum syn_bucket syn;	/* the SYN buckets of SVC_SYN4 and SVC_SYN6 before the case */
};

#define SRC_LIMIT(rate, burst) { .source_packets_per_second = (rate), .source_burst = (burst) }

static const struct xdp_case cases[] = {
	/* Not IP: passed untouched, counted nowhere. */
	{ "arp passes untouched", f_arp, .counted = NOT_COUNTED },
	{ "lldp (other ethertype) passes", f_lldp, .counted = NOT_COUNTED },

	/* Counting per VIP. */
	{ "ipv4 udp to a vip: counted on its service", f_udp4_vip, 3, .counted = SVC_UDP4 },
	{ "ipv4 udp 1500-byte frame: bytes", f_udp4_vip_big, .counted = SVC_UDP4 },
	{ "ipv4 udp to a vip's address, other port: id 0", f_udp4_other_port, .counted = 0 },
	{ "ipv4 udp to a tcp-only vip port: id 0", f_udp4_to_tcp_vip, .counted = 0 },
	{ "ipv6 udp to an ipv6 vip", f_udp6_vip, 2, .counted = SVC_UDP6 },

	/* SYN limit per VIP. */
	{ "ipv4 syn, burst 3: 3 pass then drop", f_syn4, 5, 2, SVC_SYN4, .syns = 5, .drop_syn = 2,
	  .syn = SYN_FULL },
	{ "ipv4 syn+ack not limited", f_synack4, 4, .counted = SVC_SYN4, .syn = SYN_EMPTY },
	{ "ipv4 ack not limited", f_ack4, 4, .counted = SVC_SYN4, .syn = SYN_EMPTY },
	{ "ipv4 rst not limited", f_rst4, 2, .counted = SVC_SYN4, .syn = SYN_EMPTY },
	{ "ipv4 syn with ece+cwr is a syn", f_syn_ece_cwr4, 2, 2, SVC_SYN4, .syns = 2, .drop_syn = 2,
	  .syn = SYN_EMPTY },
	{ "ipv4 syn to another port of the vip's address: id 0", f_syn4_other_port, 2, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "ipv4 syn to a vip without syn limit: counted", f_syn4_unlimited_vip, 5, .counted = SVC_TCP4,
	  .syns = 5 },
	{ "ipv4 syn with ip options (ihl 6), burst 3", f_syn4_options, 4, 1, SVC_SYN4, .syns = 4,
	  .drop_syn = 1, .syn = SYN_FULL },
	{ "ipv4 syn with DF (not a fragment), burst 3", f_syn4_df, 4, 1, SVC_SYN4, .syns = 4,
	  .drop_syn = 1, .syn = SYN_FULL },
	{ "ipv6 syn to an ipv6 vip, burst 2", f_syn6, 4, 2, SVC_SYN6, .syns = 4, .drop_syn = 2,
	  .syn = SYN_FULL },
	{ "ipv6 syn+ack not limited", f_synack6, 3, .counted = SVC_SYN6, .syn = SYN_EMPTY },

	/* Per-source limit (global). */
	{ "source burst 4: 4 pass then drop", f_udp4_from_50, 6, 2, SVC_UDP4, .drop_source = 2,
	  .cfg = SRC_LIMIT(1, 4) },
	{ "second source still passes", f_udp4_from_51, 4, .counted = SVC_UDP4, .cfg = SRC_LIMIT(1, 4) },
	{ "first source still dropped", f_udp4_from_50, 2, 2, SVC_UDP4, .drop_source = 2,
	  .cfg = SRC_LIMIT(1, 4) },
	{ "source limit off: first source passes", f_udp4_from_50, 3, .counted = SVC_UDP4 },
	{ "syn over the source limit: source_rate, not a syn", f_syn4_from_52, 3, 2, SVC_TCP4, .syns = 1,
	  .drop_source = 2, .cfg = SRC_LIMIT(1, 1) },
	{ "source limit holds non-vip traffic (id 0)", f_icmp4_from_53, 3, 1, 0, .drop_source = 1,
	  .cfg = SRC_LIMIT(1, 2) },
	{ "source limit passes arp", f_arp_while_limited, 5, .counted = NOT_COUNTED,
	  .cfg = SRC_LIMIT(1, 1) },
	{ "ipv6 source burst 2", f_udp6_from_db8, 3, 1, SVC_UDP6, .drop_source = 1,
	  .cfg = SRC_LIMIT(1, 2) },
	{ "ipv4 source with the same key words: own bucket", f_udp4_from_32_1_13_184, 2,
	  .counted = SVC_UDP4, .cfg = SRC_LIMIT(1, 2) },
	{ "syn within the source limit, over the syn limit", f_syn4_from_54, 2, 2, SVC_SYN4,
	  .syns = 2, .drop_syn = 2, .cfg = SRC_LIMIT(1, 5), .syn = SYN_EMPTY },

	/* Frames cut short: passed, no crash. */
	{ "eth header only", f_eth_only, .counted = NOT_COUNTED },
	{ "vlan tag cut", f_vlan_cut, .counted = NOT_COUNTED },
	{ "ipv4 header cut", f_ipv4_cut, .counted = NOT_COUNTED },
	{ "ipv4 options cut (header read, no l4): id 0", f_ipv4_options_cut, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "ipv4 ihl 4", f_ihl4, .counted = NOT_COUNTED },
	{ "tcp header cut (syn to a vip): id 0, no syn", f_tcp4_cut, 2, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "udp header cut: id 0", f_udp4_cut, .counted = 0 },
	{ "ipv6 header cut", f_ipv6_cut, .counted = NOT_COUNTED },
	{ "ipv6 tcp header cut: id 0", f_tcp6_cut, .counted = 0, .syn = SYN_EMPTY },

	/* Fragments and IPv6 extension headers: no ports to trust, never SYN-limited. */
	{ "ipv4 first fragment (MF) syn: id 0, not limited", f_syn4_frag_mf, 3, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "ipv4 later fragment (offset): id 0, not limited", f_syn4_frag_offset, 3, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "ipv4 udp fragment (MF + offset): id 0", f_udp4_frag_offset, .counted = 0 },
	{ "ipv6 fragment header syn: id 0, not limited", f_syn6_frag, 3, .counted = 0,
	  .syn = SYN_EMPTY },
	{ "ipv6 hop-by-hop then syn: not walked, id 0", f_syn6_hopopts, 3, .counted = 0,
	  .syn = SYN_EMPTY },

	/* VLAN tags: up to two parsed. */
	{ "802.1Q ipv4 udp to a vip", f_udp4_vlan, 2, .counted = SVC_UDP4 },
	{ "802.1ad+802.1Q ipv4 udp to a vip", f_udp4_qinq, 2, .counted = SVC_UDP4 },
	{ "802.1Q+802.1Q ipv4 udp to a vip", f_udp4_1q1q, 2, .counted = SVC_UDP4 },
	{ "802.1ad+802.1Q syn, burst 3", f_syn4_qinq, 4, 1, SVC_SYN4, .syns = 4, .drop_syn = 1,
	  .syn = SYN_FULL },
	{ "802.1Q ipv6 syn, burst 2", f_syn6_vlan, 3, 1, SVC_SYN6, .syns = 3, .drop_syn = 1,
	  .syn = SYN_FULL },
	{ "three tags: passed, not parsed", f_udp4_three_tags, 2, .counted = NOT_COUNTED },

	/* Other protocols. */
	{ "icmp: id 0", f_icmp4, 2, .counted = 0 },
	{ "icmpv6: id 0", f_icmp6, 2, .counted = 0, .syn = SYN_EMPTY },
	{ "sctp to a vip address: id 0", f_sctp4, .counted = 0, .syn = SYN_EMPTY },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* --- the skeleton and its pin root ------------------------------------------------------- */

static int put_service(int fd, int i)
{
	struct sl_svc_key key;
	struct sl_service val;

	memset(&key, 0, sizeof(key));
	memset(&val, 0, sizeof(val));
	if (strchr(services[i].vip, ':')) {
		key.family = SL_FAMILY_IPV6;
		inet_pton(AF_INET6, services[i].vip, &key.vip);
	} else {
		key.family = SL_FAMILY_IPV4;
		inet_pton(AF_INET, services[i].vip, &key.vip.words[0]);
	}
	key.port = htons(services[i].port);
	key.proto = services[i].proto;
	val.id = services[i].id;
	val.syn_per_second = services[i].syn_rate;
	val.syn_burst = services[i].syn_burst;
	snprintf(val.name, sizeof(val.name), "%s", services[i].name);
	if (bpf_map_update_elem(fd, &key, &val, BPF_NOEXIST))
		return -1;
	return vip_filter_add(bpf_map__fd(skel->maps.sl_vip_filter), &key) ? -1 : 0;
}

static int group_setup(void **state)
{
	struct statfs fs;

	(void)state;
	if (geteuid() != 0) {
		snprintf(skip_reason, sizeof(skip_reason), "needs root (CAP_BPF)");
		return 0;
	}
	if (statfs(BPFFS, &fs) || fs.f_type != BPF_FS_MAGIC) {
		snprintf(skip_reason, sizeof(skip_reason), "bpffs is not mounted at %s", BPFFS);
		return 0;
	}
	if (xdp_test_load("test"))
		return 0;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		if (put_service(bpf_map__fd(skel->maps.sl_services), i)) {
			snprintf(load_error, sizeof(load_error), "sl_services update: %s",
				 strerror(errno));
			return 0;
		}
	}
	return 0;
}

static int group_teardown(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s", pin_root);
	cleanup();
	if (path[0] && !access(path, F_OK)) {
		print_error("test_xdp: %s is still there\n", path);
		return -1;
	}
	return 0;
}

/* --- running a case ------------------------------------------------------------------------ */

static bool read_stats(__u32 id, struct sl_xdp_stats *sum)
{
	struct sl_xdp_stats per[ncpus];

	memset(sum, 0, sizeof(*sum));
	if (xdp_cpu_read(bpf_map__fd(skel->maps.sl_xdp_stats), SL_XDP_STATS_STRIDE, id, per,
			 sizeof(per[0]))) {
		print_message("  %s: sl_xdp_stats[%u]: %s\n", cur_case, id, strerror(errno));
		return false;
	}
	for (int c = 0; c < ncpus; c++) {
		sum->packets += per[c].packets;
		sum->bytes += per[c].bytes;
		sum->syns += per[c].syns;
		for (int r = 0; r < SL_XDP_DROP_COUNT; r++)
			sum->dropped[r] += per[c].dropped[r];
		sum->forwarded += per[c].forwarded;
		sum->forwarded_bytes += per[c].forwarded_bytes;
		sum->new_flows += per[c].new_flows;
		sum->flow_hits += per[c].flow_hits;
		sum->flow_misses += per[c].flow_misses;
		for (int r = 0; r < SL_XDP_PASS_COUNT; r++)
			sum->passed[r] += per[c].passed[r];
	}
	return true;
}

static bool set_syn_buckets(enum syn_bucket s)
{
	static const __u32 ids[] = { SVC_SYN4, SVC_SYN6 };
	struct sl_rl_bucket b = { 0 }; /* tat 0: full */
	struct timespec ts;

	if (s == SYN_KEEP)
		return true;
	if (s == SYN_EMPTY) {
		/* An hour of debt: empty whatever the rate, for the whole run. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		b.tat_ns = ts.tv_sec * NS_PER_SEC + ts.tv_nsec + 3600 * NS_PER_SEC;
	}
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_xdp_syn), &ids[i], &b, BPF_ANY)) {
			print_message("  %s: sl_xdp_syn: %s\n", cur_case, strerror(errno));
			return false;
		}
	return true;
}

static void run_case(void **state)
{
	const struct xdp_case *c = *state;
	struct sl_xdp_stats before[SVC_LAST + 1], after[SVC_LAST + 1];
	int runs = c->runs ? c->runs : 1;
	struct frame f;
	__u32 zero = 0;
	bool ok = true;

	cur_case = c->name;
	if (skip_reason[0]) {
		print_message("  skipped: %s\n", skip_reason);
		skip();
	}
	if (load_error[0])
		fail_msg("%s", load_error);
	c->build(&f);
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_xdp_cfg), &zero, &c->cfg, BPF_ANY))
		fail_msg("sl_xdp_cfg: %s", strerror(errno));
	if (!set_syn_buckets(c->syn))
		fail();
	for (__u32 id = 0; id <= SVC_LAST; id++)
		if (!read_stats(id, &before[id]))
			fail();

	for (int run = 1; run <= runs; run++) {
		__u8 out[sizeof(f.d) + 256];
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f.d, .data_size_in = f.len,
			    .data_out = out, .data_size_out = sizeof(out), .repeat = 1);
		int want = run > runs - c->drops ? XDP_DROP : XDP_PASS;
		char what[16];
		int err;

		memset(out, 0x5a, sizeof(out));
		err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.sl_xdp_edge), &opts);
		if (!ASSERT_EQ(err, 0, "bpf_prog_test_run_opts")) {
			print_message("  %s: %s\n", cur_case, strerror(errno));
			fail();
		}
		snprintf(what, sizeof(what), "run %d", run);
		ok &= ASSERT_VERDICT(opts.retval, want, what);
		ok &= ASSERT_EQ(opts.data_size_out, f.len, "data_size_out");
		if (opts.data_size_out == f.len && memcmp(out, f.d, f.len)) {
			print_message("  %s: run %d: data_out differs from data_in\n", cur_case, run);
			ok = false;
		}
	}

	for (__u32 id = 0; id <= SVC_LAST; id++) {
		const struct sl_xdp_stats *b = &before[id], *a = &after[id];
		bool here = c->counted != NOT_COUNTED && id == (__u32)c->counted;
		char what[64];

		if (!read_stats(id, &after[id]))
			fail();
#define DELTA(field, want)                                                                  \
	do {                                                                                \
		snprintf(what, sizeof(what), "sl_xdp_stats[%u]." #field " delta", id);      \
		ok &= ASSERT_EQ(a->field - b->field, here ? (want) : 0, what);              \
	} while (0)
		DELTA(packets, (__u64)runs);
		DELTA(bytes, (__u64)runs * f.len);
		DELTA(syns, c->syns);
		DELTA(dropped[SL_XDP_DROP_SOURCE_RATE], c->drop_source);
		DELTA(dropped[SL_XDP_DROP_SYN_RATE], c->drop_syn);
		DELTA(dropped[SL_XDP_DROP_NO_BACKEND], 0);
		/* Every run passed on a VIP is passed for not forwarding; none on id 0. */
		DELTA(passed[SL_XDP_PASS_NOT_FORWARDING], c->counted > 0 ? runs - c->drops : 0);
		for (int r = 0; r < SL_XDP_PASS_COUNT; r++) {
			if (r == SL_XDP_PASS_NOT_FORWARDING)
				continue;
			snprintf(what, sizeof(what), "sl_xdp_stats[%u].passed[%d] delta", id, r);
			ok &= ASSERT_EQ(a->passed[r] - b->passed[r], 0, what);
		}
		DELTA(forwarded, 0);
		DELTA(forwarded_bytes, 0);
		DELTA(new_flows, 0);
		DELTA(flow_hits, 0);
		DELTA(flow_misses, 0);
#undef DELTA
	}
	if (!ok)
		fail_msg("%s", c->name);
}

static int test_xdp(void)
{
	struct CMUnitTest tests[NCASES];

	for (size_t i = 0; i < NCASES; i++)
		tests[i] = (struct CMUnitTest){ .name = cases[i].name, .test_func = run_case,
						.initial_state = (void *)&cases[i] };
	return _cmocka_run_group_tests("test_xdp", tests, NCASES, group_setup, group_teardown);
}

int main(void)
{
	return test_xdp();
}
