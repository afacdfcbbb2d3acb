// SPDX-License-Identifier: MIT
/*
 * sl_xdp's load balancing (bpf/xdp.bpf.c, lib/flow.h, lib/forward.h) under
 * BPF_PROG_TEST_RUN, selftests style: the real skeleton with a fresh pin root
 * (/sys/fs/bpf/sluice-test-lb-<pid>, removed at the end whatever happens),
 * maps filled through skel->maps, frames built in C, one cmocka test per case.
 *
 * bpf_fib_lookup needs routes and neighbours, so the process first moves to a
 * private network namespace (unshare(CLONE_NEWNET): it dies with the process;
 * bpffs pins stay visible, the mount namespace is unchanged) and builds there,
 * with ip(8):
 *   lbin  (02:10:00:00:00:01) 10.210.0.1/24 fd00:210::1/64  the ingress
 *   lbout (02:11:00:00:00:01) 10.211.0.1/24 fd00:211::1/64  mtu 1280
 * each a veth with its peer up, forwarding on (the FIB helper refuses
 * otherwise), IPv6 DAD off, and permanent neighbours for the backends. Frames
 * are run with ctx_in = struct xdp_md { .ingress_ifindex = lbin, .data = 0,
 * .data_end = the frame's length }: on 6.18 a data_end of 0 is accepted and
 * gives the program an empty frame, so it must be set.
 *
 * With test_run a forwarded frame comes back as rewritten, so every forwarded
 * case checks the whole frame: MACs from the neighbour entry and the egress
 * device, TTL/hop limit - 1 with a valid IPv4 header checksum (recomputed from
 * scratch), every other byte unchanged (DSR: addresses, L4 header, payload),
 * and the L4 checksum still valid with the pseudo-header. Every case also
 * compares every counter of sl_xdp_stats (all service ids) and sl_xdp_backend
 * (all backend ids) before and after against the deltas it expects: what it
 * does not name must not move.
 *
 * Needs root (CAP_BPF, CAP_NET_ADMIN), bpffs at /sys/fs/bpf and ip(8); every
 * case is skipped otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
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
#include "sluice/backend.h"
#include "sluice/breaker.h"
#include "sluice/flow.h"
#include "sluice/ratelimit.h"
#include "sluice/xdp.h"
#include "../lib/vip_filter.h"
#include "../lib/xdp_assert.h"

#define TEST_NAME "test_xdp_lb"
#include "../lib/xdp_test.h"

#define NS_PER_SEC 1000000000ULL

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10


static bool assert_mac(const __u8 *actual, const __u8 *expected, const char *what)
{
	if (!memcmp(actual, expected, ETH_ALEN))
		return true;
	print_message("  %s: %s: actual %02x:%02x:%02x:%02x:%02x:%02x, expected "
		      "%02x:%02x:%02x:%02x:%02x:%02x\n",
		      cur_case, what, actual[0], actual[1], actual[2], actual[3], actual[4],
		      actual[5], expected[0], expected[1], expected[2], expected[3], expected[4],
		      expected[5]);
	return false;
}

/* --- the topology ------------------------------------------------------------------------ */

static const __u8 lbin_mac[ETH_ALEN] = { 0x02, 0x10, 0, 0, 0, 0x01 };
static const __u8 lbout_mac[ETH_ALEN] = { 0x02, 0x11, 0, 0, 0, 0x01 };
#define LBOUT_MTU 1280

/* Backend addresses with a permanent neighbour entry, and their MACs. */
static const struct {
	const char *addr, *mac, *dev;
} neighbours[] = {
	{ "10.211.0.10", "02:11:00:00:00:10", "lbout" },
	{ "10.211.0.11", "02:11:00:00:00:11", "lbout" },
	{ "10.211.0.13", "02:11:00:00:00:13", "lbout" },
	{ "fd00:211::10", "02:11:00:00:06:10", "lbout" },
	{ "fd00:211::11", "02:11:00:00:06:11", "lbout" },
	{ "10.210.0.20", "02:10:00:00:00:20", "lbin" },
};

static int if_lbin, if_lbout, if_lo;

/* --- frames ----------------------------------------------------------------------------- */

struct frame {
	__u8 d[1600];
	__u32 len;
	int l3;	    /* offset of the IP header, -1: none */
	int l4;	    /* offset of the TCP/UDP header, -1: none */
	int family; /* 4 or 6 */
	int no_fix; /* leave length fields and checksums as written */
	/* The 5-tuple as sl_xdp keys it (network order). */
	struct sl_addr src, dst;
	__be16 sport, dport;
	__u8 proto;
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

/* The client's router sends to us: dst = lbin's MAC. */
static void eth_tagged(struct frame *f, __u16 proto, int vlan)
{
	static const __u8 client_mac[ETH_ALEN] = { 0x02, 0x10, 0, 0, 0, 0x02 };

	memset(f, 0, sizeof(*f));
	f->l3 = f->l4 = -1;
	put(f, lbin_mac, ETH_ALEN);
	put(f, client_mac, ETH_ALEN);
	if (vlan) {
		put16(f, ETH_P_8021Q);
		put16(f, vlan);
	}
	put16(f, proto);
}

static void eth(struct frame *f, __u16 proto)
{
	eth_tagged(f, proto, 0);
}

static void addr_of(const char *s, struct sl_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, a) != 1)
			abort();
	} else if (inet_pton(AF_INET, s, &a->words[0]) != 1) {
		abort();
	}
}

/* frag_off in host order (flags | offset); ttl 64 unless changed afterwards. */
static void ipv4_full(struct frame *f, const char *src, const char *dst, __u8 proto,
		      __u16 frag_off, int ihl)
{
	struct iphdr h = {
		.version = 4, .ihl = ihl, .tos = 0x10, .ttl = 64, .protocol = proto,
		.frag_off = htons(frag_off), .id = htons(0x4242),
	};

	addr_of(src, &f->src);
	addr_of(dst, &f->dst);
	h.saddr = f->src.words[0];
	h.daddr = f->dst.words[0];
	f->proto = proto;
	f->l3 = f->len;
	f->family = 4;
	put(f, &h, sizeof(h));
	if (ihl > 5)
		fill(f, 0x01, (ihl - 5) * 4);
}

static void ipv4(struct frame *f, const char *src, const char *dst, __u8 proto)
{
	ipv4_full(f, src, dst, proto, 0x4000 /* DF */, 5);
}

static void ipv6(struct frame *f, const char *src, const char *dst, __u8 nexthdr)
{
	struct ipv6hdr h = { .version = 6, .priority = 1, .nexthdr = nexthdr, .hop_limit = 64 };

	h.flow_lbl[0] = 0x0a;
	h.flow_lbl[1] = 0xbc;
	h.flow_lbl[2] = 0xde;
	addr_of(src, &f->src);
	addr_of(dst, &f->dst);
	memcpy(&h.saddr, &f->src, 16);
	memcpy(&h.daddr, &f->dst, 16);
	f->proto = nexthdr;
	f->l3 = f->len;
	f->family = 6;
	put(f, &h, sizeof(h));
}

/* A TCP header (doff 5 + optlen/4) and payload bytes 0xc0, 0xc1, ... */
static void tcp_opts(struct frame *f, __u16 sport, __u16 dport, __u8 flags, size_t optlen,
		     size_t payload)
{
	f->l4 = f->len;
	f->sport = htons(sport);
	f->dport = htons(dport);
	put16(f, sport);
	put16(f, dport);
	put16(f, 0x0100); /* seq */
	put16(f, 0x0001);
	put16(f, flags & TCP_ACK ? 0x2000 : 0); /* ack_seq */
	put16(f, 0x0002);
	fill(f, (5 + optlen / 4) << 4, 1);
	put(f, &flags, 1);
	put16(f, 64240); /* window */
	fill(f, 0, 4);	 /* check (set by finish), urg_ptr */
	fill(f, 0x01, optlen); /* NOPs */
	for (size_t i = 0; i < payload; i++)
		fill(f, 0xc0 + (i & 0x3f), 1);
}

static void tcp(struct frame *f, __u16 sport, __u16 dport, __u8 flags, size_t payload)
{
	tcp_opts(f, sport, dport, flags, 0, payload);
}

static void udp(struct frame *f, __u16 sport, __u16 dport, size_t payload)
{
	f->l4 = f->len;
	f->sport = htons(sport);
	f->dport = htons(dport);
	put16(f, sport);
	put16(f, dport);
	put16(f, 8 + payload);
	put16(f, 0);
	for (size_t i = 0; i < payload; i++)
		fill(f, 0x80 + (i & 0x7f), 1);
}

static __u32 sum16(const __u8 *b, size_t n, __u32 s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (b[i] << 8) | b[i + 1];
	if (n & 1)
		s += b[n - 1] << 8;
	return s;
}

static __u16 fold(__u32 s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

/* The one's-complement sum of the L4 segment at l4 (len bytes) with its pseudo-header. */
static __u16 l4_sum(const __u8 *d, int l3, int family, int l4, __u32 len, __u8 proto)
{
	__u32 s = 0;

	if (family == 4)
		s = sum16(d + l3 + 12, 8, 0);
	else
		s = sum16(d + l3 + 8, 32, 0);
	s += proto + (len & 0xffff) + (len >> 16);
	return fold(sum16(d + l4, len, s));
}

/* The L4 length the IP header says. */
static __u32 l4_len(const __u8 *d, int l3, int family, int l4)
{
	if (family == 4)
		return ((d[l3 + 2] << 8) | d[l3 + 3]) - (l4 - l3);
	return ((d[l3 + 4] << 8) | d[l3 + 5]) - (l4 - l3 - 40);
}

/* Sets the IP length fields, the IPv4 header checksum and the TCP/UDP checksum. */
static void finish(struct frame *f)
{
	__u8 *h = f->d + f->l3;
	int csum_off;
	__be16 v;

	if (f->l3 < 0 || f->no_fix)
		return;
	if (f->family == 4) {
		v = htons(f->len - f->l3);
		memcpy(h + offsetof(struct iphdr, tot_len), &v, 2);
		memset(h + offsetof(struct iphdr, check), 0, 2);
		v = htons(~fold(sum16(h, (h[0] & 0xf) * 4, 0)) & 0xffff);
		memcpy(h + offsetof(struct iphdr, check), &v, 2);
	} else {
		v = htons(f->len - f->l3 - sizeof(struct ipv6hdr));
		memcpy(h + offsetof(struct ipv6hdr, payload_len), &v, 2);
	}
	if (f->l4 < 0)
		return;
	csum_off = f->l4 + (f->proto == IPPROTO_TCP ? 16 : 6);
	memset(f->d + csum_off, 0, 2);
	v = ~l4_sum(f->d, f->l3, f->family, f->l4, f->len - f->l4, f->proto) & 0xffff;
	if (f->proto == IPPROTO_UDP && !v)
		v = 0xffff;
	v = htons(v);
	memcpy(f->d + csum_off, &v, 2);
}

static void set_ttl(struct frame *f, __u8 ttl)
{
	f->d[f->l3 + (f->family == 4 ? 8 : 7)] = ttl;
	finish(f);
}

/* --- services and backends ---------------------------------------------------------------- */

#define CLIENT4 "192.0.2.1"
#define CLIENT6 "2001:db8::1"
#define VIP4 "10.96.1.10"
#define VIP6 "fd00:96::10"

enum {
	SVC_T4 = 1,	  /* 10.96.1.10:80/tcp -> 11 (10.211.0.10), 12 (.11); 7 slots */
	SVC_U4 = 2,	  /* 10.96.1.10:53/udp -> 21, 22 (same addresses) */
	SVC_T6 = 3,	  /* [fd00:96::10]:80/tcp -> 31 (fd00:211::10), 32 (::11) */
	SVC_U6 = 4,	  /* [fd00:96::10]:53/udp -> 41, 42 */
	SVC_FLOW = 5,	  /* 10.96.1.11:80/tcp -> 51, 52: flow table cases */
	SVC_PICK = 6,	  /* 10.96.1.12:80/tcp -> 61, 62, 63: health and breaker cases */
	SVC_TX = 7,	  /* 10.96.1.13:80/tcp -> 71 (10.210.0.20, through lbin) */
	SVC_NONEIGH = 8,  /* 10.96.1.14:80/tcp -> 81 (10.211.0.12, no neighbour entry) */
	SVC_NOROUTE = 9,  /* 10.96.1.15:80/tcp -> 91 (10.250.0.1, no route) */
	SVC_EMPTY = 10,	  /* 10.96.1.16:80/tcp, a table of 0 slots */
	SVC_NOTABLE = 11, /* 10.96.1.17:80/tcp, no sl_svc_slots entry */
	SVC_NONEIGH6 = 12, /* [fd00:96::14]:80/tcp -> 121 (fd00:211::12, no neighbour) */
	SVC_NOROUTE6 = 13, /* [fd00:96::15]:80/tcp -> 131 (fd00:250::1, no route) */
	SVC_MAX = SVC_NOROUTE6,
};
#define BE_MAX 131

static const struct {
	__u32 id;
	const char *vip;
	__u16 port;
	__u8 proto;
} services[] = {
	{ SVC_T4, VIP4, 80, IPPROTO_TCP },	    { SVC_U4, VIP4, 53, IPPROTO_UDP },
	{ SVC_T6, VIP6, 80, IPPROTO_TCP },	    { SVC_U6, VIP6, 53, IPPROTO_UDP },
	{ SVC_FLOW, "10.96.1.11", 80, IPPROTO_TCP }, { SVC_PICK, "10.96.1.12", 80, IPPROTO_TCP },
	{ SVC_TX, "10.96.1.13", 80, IPPROTO_TCP },   { SVC_NONEIGH, "10.96.1.14", 80, IPPROTO_TCP },
	{ SVC_NOROUTE, "10.96.1.15", 80, IPPROTO_TCP }, { SVC_EMPTY, "10.96.1.16", 80, IPPROTO_TCP },
	{ SVC_NOTABLE, "10.96.1.17", 80, IPPROTO_TCP }, { SVC_NONEIGH6, "fd00:96::14", 80, IPPROTO_TCP },
	{ SVC_NOROUTE6, "fd00:96::15", 80, IPPROTO_TCP },
};

static const struct {
	__u32 id, svc;
	const char *addr;
} backends[] = {
	{ 11, SVC_T4, "10.211.0.10" },	   { 12, SVC_T4, "10.211.0.11" },
	{ 21, SVC_U4, "10.211.0.10" },	   { 22, SVC_U4, "10.211.0.11" },
	{ 31, SVC_T6, "fd00:211::10" },	   { 32, SVC_T6, "fd00:211::11" },
	{ 41, SVC_U6, "fd00:211::10" },	   { 42, SVC_U6, "fd00:211::11" },
	{ 51, SVC_FLOW, "10.211.0.10" },   { 52, SVC_FLOW, "10.211.0.11" },
	{ 61, SVC_PICK, "10.211.0.10" },   { 62, SVC_PICK, "10.211.0.11" },
	{ 63, SVC_PICK, "10.211.0.13" },   { 71, SVC_TX, "10.210.0.20" },
	{ 81, SVC_NONEIGH, "10.211.0.12" }, { 91, SVC_NOROUTE, "10.250.0.1" },
	{ 121, SVC_NONEIGH6, "fd00:211::12" }, { 131, SVC_NOROUTE6, "fd00:250::1" },
};

#define NSERVICES (sizeof(services) / sizeof(services[0]))
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

/* The 7-slot tables of the four basic services: both backends, unevenly. */
#define T4_SLOTS 7
static const __u32 tab_t4[T4_SLOTS] = { 11, 12, 12, 11, 12, 11, 11 };
static const __u32 tab_u4[T4_SLOTS] = { 21, 22, 22, 21, 22, 21, 21 };
static const __u32 tab_t6[T4_SLOTS] = { 31, 32, 32, 31, 32, 31, 31 };
static const __u32 tab_u6[T4_SLOTS] = { 41, 42, 42, 41, 42, 41, 41 };

static const char *backend_addr(__u32 id)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (backends[i].id == id)
			return backends[i].addr;
	return NULL;
}

/* The MAC of backend id's neighbour entry (false: none). */
static bool backend_mac(__u32 id, __u8 *mac)
{
	const char *a = backend_addr(id);

	for (size_t i = 0; a && i < sizeof(neighbours) / sizeof(neighbours[0]); i++)
		if (!strcmp(neighbours[i].addr, a))
			return sscanf(neighbours[i].mac, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0],
				      &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) == 6;
	return false;
}

static void flow_key(const struct frame *f, struct sl_flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->src = f->src;
	k->dst = f->dst;
	k->sport = f->sport;
	k->dport = f->dport;
	k->proto = f->proto;
	k->family = f->family == 4 ? SL_FAMILY_IPV4 : SL_FAMILY_IPV6;
}

/* The ABI's flow hash: the same on every node, so a test can say which slot a flow lands in. */
static __u64 flow_hash(const struct frame *f)
{
	struct sl_flow_key k;

	flow_key(f, &k);
	return sl_flow_hash(&k);
}

/* The first choice of a table of n slots for frame f. */
static __u32 first_choice(const __u32 *table, __u32 n, const struct frame *f)
{
	return table[(__u32)flow_hash(f) % n];
}

/* The fallback scan's order: list[(start + i) % len], start = the hash's high word. */
static __u32 scan_at(const __u32 *list, __u32 len, const struct frame *f, __u32 i)
{
	return list[((__u32)(flow_hash(f) >> 32) + i) % len];
}

/* --- the skeleton, its pin root, the maps --------------------------------------------------- */

static int map_fd(const struct bpf_map *m)
{
	return bpf_map__fd(m);
}

/* As the reconciler writes a backend: the record, and its copy in sl_be_health. */
static int put_backend(__u32 id, __u32 svc, const char *addr, __u8 health)
{
	struct sl_be_health h;
	struct sl_backend b;

	memset(&b, 0, sizeof(b));
	addr_of(addr, &b.addr);
	b.family = strchr(addr, ':') ? SL_FAMILY_IPV6 : SL_FAMILY_IPV4;
	b.port = htons(8080);
	b.weight = 1;
	b.svc_id = svc;
	b.health = health;
	h = sl_be_health_of(&b);
	if (bpf_map_update_elem(map_fd(skel->maps.sl_backends), &id, &b, BPF_ANY))
		return -1;
	return bpf_map_update_elem(map_fd(skel->maps.sl_be_health), &id, &h, BPF_ANY);
}

static bool set_health(__u32 id, __u8 health)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (backends[i].id == id) {
			if (!put_backend(id, backends[i].svc, backends[i].addr, health))
				return true;
			print_message("  %s: sl_backends[%u]: %s\n", cur_case, id, strerror(errno));
			return false;
		}
	return false;
}

/*
 * Installs svc's selection table as the reconciler does (userspace/lib/reconcile.c,
 * write_table): a new inner array of T + 2 + B u32 slots (slot 0 = T, 1..T = the
 * table, T+1 = B, then the list), filled, then swapped into sl_svc_slots.
 */
static int put_table(__u32 svc, const __u32 *table, __u32 t, const __u32 *list, __u32 b)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);
	__u32 len = t + 2 + b;
	int fd, err = 0;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_slots", sizeof(__u32), sizeof(__u32), len,
			    &opts);
	if (fd < 0)
		return -errno;
	for (__u32 i = 0; i < len && !err; i++) {
		__u32 v = i == 0 ? t : i <= t ? table[i - 1] : i == t + 1 ? b : list[i - t - 2];

		if (bpf_map_update_elem(fd, &i, &v, BPF_ANY))
			err = -errno;
	}
	if (!err && bpf_map_update_elem(map_fd(skel->maps.sl_svc_slots), &svc, &fd, BPF_ANY))
		err = -errno;
	close(fd);
	return err;
}

#define PUT_TABLE(svc, table, list)                                                          \
	({                                                                                   \
		int _e = put_table(svc, table, sizeof(table) / sizeof(table[0]), list,       \
				   sizeof(list) / sizeof(list[0]));                          \
		if (_e)                                                                      \
			print_message("  %s: table of service %u: %s\n", cur_case, svc,      \
				      strerror(-_e));                                        \
		!_e;                                                                         \
	})

static __u64 mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* Writes backend id's breaker (as sluicectl does, under the value's lock). */
static bool set_breaker(__u32 id, __u32 state, __u64 open_until_ns)
{
	struct sl_breaker br;

	memset(&br, 0, sizeof(br));
	br.state = state;
	br.open_until_ns = open_until_ns;
	if (!bpf_map_update_elem(map_fd(skel->maps.sl_breakers), &id, &br, BPF_F_LOCK))
		return true;
	print_message("  %s: sl_breakers[%u]: %s\n", cur_case, id, strerror(errno));
	return false;
}

static bool set_cfg(__u32 rate, __u32 burst)
{
	struct sl_xdp_cfg cfg = { .source_packets_per_second = rate, .source_burst = burst };
	__u32 zero = 0;

	if (!bpf_map_update_elem(map_fd(skel->maps.sl_xdp_cfg), &zero, &cfg, BPF_ANY))
		return true;
	print_message("  %s: sl_xdp_cfg: %s\n", cur_case, strerror(errno));
	return false;
}

/* The fingerprint of f's flow, its source port replaced by sport (host order) unless 0. */
static __u64 frame_fp(const struct frame *f, __u16 sport)
{
	struct sl_flow_key k;

	flow_key(f, &k);
	if (sport)
		k.sport = htons(sport);
	return sl_flow_fp(&k, skel->rodata->flow_seed);
}

/* Whether way w holds f's flow with source port sport (0: f's own). */
static bool way_holds(const struct sl_flow *w, const struct frame *f, __u16 sport)
{
	return sl_flow_holds(w->fp, w->backend_id, w->svc_id, frame_fp(f, sport));
}

/* The way of f's bucket that holds its flow (as the program matches it), or -1. */
static int flow_way(const struct frame *f, struct sl_flow_bucket *b, __u32 *bucket)
{
	*bucket = sl_flow_bucket_of(flow_hash(f), bpf_map__max_entries(skel->maps.sl_xdp_flows));
	if (bpf_map_lookup_elem(map_fd(skel->maps.sl_xdp_flows), bucket, b))
		return -1;
	for (int w = 0; w < SL_FLOW_WAYS; w++)
		if (way_holds(&b->way[w], f, 0))
			return w;
	return -1;
}

/* sl_xdp_flows holds f's flow for backend be of service svc (be 0: holds nothing). */
static bool assert_flow(const struct frame *f, __u32 svc, __u32 be)
{
	struct sl_flow_bucket b;
	__u32 bucket;
	int w = flow_way(f, &b, &bucket);
	bool ok = true;

	if (w < 0) {
		if (!be)
			return true;
		print_message("  %s: no sl_xdp_flows entry for the frame's flow (bucket %u)\n",
			      cur_case, bucket);
		return false;
	}
	ok &= ASSERT_EQ(b.way[w].backend_id, be, "sl_xdp_flows backend_id");
	if (be)
		ok &= ASSERT_EQ(b.way[w].svc_id, svc, "sl_xdp_flows svc_id");
	return ok;
}

/* Frees f's way, as an eviction would. */
static void delete_flow(const struct frame *f)
{
	struct sl_flow_bucket b;
	__u32 bucket;
	int w = flow_way(f, &b, &bucket);

	if (w < 0)
		return;
	memset(&b.way[w], 0, sizeof(b.way[w]));
	bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flows), &bucket, &b, BPF_ANY);
}

/* --- counters ------------------------------------------------------------------------------ */

struct snap {
	struct sl_xdp_stats svc[SVC_MAX + 1];
	struct sl_xdp_be_stats be[BE_MAX + 1];
};

#define STAT(f, n) { n, offsetof(struct sl_xdp_stats, f) }
static const struct {
	const char *name;
	size_t off;
} stat_fields[] = {
	STAT(packets, "packets"),
	STAT(bytes, "bytes"),
	STAT(syns, "syns"),
	STAT(dropped[SL_XDP_DROP_SOURCE_RATE], "dropped[source_rate]"),
	STAT(dropped[SL_XDP_DROP_SYN_RATE], "dropped[syn_rate]"),
	STAT(dropped[SL_XDP_DROP_NO_BACKEND], "dropped[no_backend]"),
	STAT(dropped[SL_XDP_DROP_MALFORMED], "dropped[malformed]"),
	STAT(forwarded, "forwarded"),
	STAT(forwarded_bytes, "forwarded_bytes"),
	STAT(new_flows, "new_flows"),
	STAT(flow_hits, "flow_hits"),
	STAT(flow_misses, "flow_misses"),
	STAT(passed[SL_XDP_PASS_TTL], "passed[ttl]"),
	STAT(passed[SL_XDP_PASS_NO_ROUTE], "passed[no_route]"),
	STAT(passed[SL_XDP_PASS_NO_NEIGHBOR], "passed[no_neighbor]"),
	STAT(passed[SL_XDP_PASS_FRAG_NEEDED], "passed[frag_needed]"),
	STAT(passed[SL_XDP_PASS_NOT_FORWARDING], "passed[not_forwarding]"),
	STAT(passed[SL_XDP_PASS_VLAN], "passed[vlan]"),
	STAT(passed[SL_XDP_PASS_FORWARDING_OFF], "passed[forwarding_off]"),
	STAT(passed[7], "passed[7]"),
};
#undef STAT
/* Every field named above: a new one must be added here. */
_Static_assert(sizeof(stat_fields) / sizeof(stat_fields[0]) * sizeof(__u64) ==
		       sizeof(struct sl_xdp_stats),
	       "test_xdp_lb: stat_fields misses a field of sl_xdp_stats");

static __u64 *stat_at(struct sl_xdp_stats *s, size_t i)
{
	return (__u64 *)((char *)s + stat_fields[i].off);
}

static bool take_snap(struct snap *s)
{
	struct sl_xdp_stats *ps = calloc(ncpus, sizeof(*ps));
	struct sl_xdp_backend *pb = calloc(ncpus, sizeof(*pb));
	bool ok = ps && pb;

	memset(s, 0, sizeof(*s));
	for (__u32 id = 0; ok && id <= SVC_MAX; id++) {
		if (xdp_cpu_read(map_fd(skel->maps.sl_xdp_stats), SL_XDP_STATS_STRIDE, id, ps,
				 sizeof(*ps))) {
			print_message("  %s: sl_xdp_stats[%u]: %s\n", cur_case, id, strerror(errno));
			ok = false;
			break;
		}
		for (int c = 0; c < ncpus; c++)
			for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++)
				*stat_at(&s->svc[id], i) += *stat_at(&ps[c], i);
	}
	for (__u32 id = 0; ok && id <= BE_MAX; id++) {
		if (xdp_cpu_read(map_fd(skel->maps.sl_xdp_backend), SL_XDP_BE_STRIDE, id, pb,
				 sizeof(*pb))) {
			print_message("  %s: sl_xdp_backend[%u]: %s\n", cur_case, id,
				      strerror(errno));
			ok = false;
			break;
		}
		for (int c = 0; c < ncpus; c++) {
			s->be[id].packets += pb[c].stats.packets;
			s->be[id].bytes += pb[c].stats.bytes;
			s->be[id].new_flows += pb[c].stats.new_flows;
		}
	}
	free(ps);
	free(pb);
	return ok;
}

/* after - before == want, for every counter of every service and backend id. */
static bool check_deltas(const struct snap *before, const struct snap *after, struct snap *want)
{
	char what[96];
	bool ok = true;

	for (__u32 id = 0; id <= SVC_MAX; id++)
		for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
			__u64 d = *stat_at((struct sl_xdp_stats *)&after->svc[id], i) -
				  *stat_at((struct sl_xdp_stats *)&before->svc[id], i);

			snprintf(what, sizeof(what), "sl_xdp_stats[%u].%s delta", id,
				 stat_fields[i].name);
			ok &= ASSERT_EQ(d, *stat_at(&want->svc[id], i), what);
		}
	for (__u32 id = 0; id <= BE_MAX; id++) {
#define BE_DELTA(field)                                                                     \
	do {                                                                                \
		snprintf(what, sizeof(what), "sl_xdp_backend[%u].stats." #field " delta", id);   \
		ok &= ASSERT_EQ(after->be[id].field - before->be[id].field, want->be[id].field, \
				what);                                                      \
	} while (0)
		BE_DELTA(packets);
		BE_DELTA(bytes);
		BE_DELTA(new_flows);
#undef BE_DELTA
	}
	return ok;
}

/* How a packet found its backend. */
enum how { NEW_SYN, MISS, HIT };

/* What any packet to svc counts. */
static void want_seen(struct snap *w, __u32 svc, const struct frame *f)
{
	w->svc[svc].packets++;
	w->svc[svc].bytes += f->len;
	if (f->proto == IPPROTO_TCP && f->l4 >= 0 && (f->d[f->l4 + 13] & 0x12) == TCP_SYN)
		w->svc[svc].syns++;
}

/* Choosing backend be (a new flow) or finding it (a hit). */
static void want_chosen(struct snap *w, __u32 svc, __u32 be, enum how how)
{
	if (how == HIT) {
		w->svc[svc].flow_hits++;
		return;
	}
	if (how == MISS)
		w->svc[svc].flow_misses++;
	w->svc[svc].new_flows++;
	w->be[be].new_flows++;
}

static void want_forwarded(struct snap *w, __u32 svc, __u32 be, const struct frame *f,
			   enum how how)
{
	want_seen(w, svc, f);
	want_chosen(w, svc, be, how);
	w->svc[svc].forwarded++;
	w->svc[svc].forwarded_bytes += f->len;
	w->be[be].packets++;
	w->be[be].bytes += f->len;
}

/* --- running ------------------------------------------------------------------------------- */

struct result {
	int err;
	int retval;
	__u32 len;
	__u8 out[sizeof(((struct frame *)0)->d) + 256];
};

/* Runs prog on frame f arriving on ifindex (0: no ctx_in, the kernel's default, lo). */
static bool run_on(struct bpf_program *prog, const struct frame *f, int ifindex,
		   struct result *r)
{
	struct xdp_md ctx = { .data = 0, .data_end = f->len, .ingress_ifindex = ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->d, .data_size_in = f->len,
		    .data_out = r->out, .data_size_out = sizeof(r->out), .repeat = 1);

	if (ifindex) {
		opts.ctx_in = &ctx;
		opts.ctx_size_in = sizeof(ctx);
	}
	memset(r->out, 0x5a, sizeof(r->out));
	r->err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts) ? -errno : 0;
	r->retval = opts.retval;
	r->len = opts.data_size_out;
	if (r->err && f->len >= ETH_HLEN) { /* shorter: refused, as expect_untouched_any knows */
		print_message("  %s: bpf_prog_test_run_opts (%u bytes): %s\n", cur_case, f->len,
			      strerror(-r->err));
		return false;
	}
	return true;
}

static bool run(const struct frame *f, struct result *r)
{
	return run_on(skel->progs.sl_xdp, f, if_lbin, r);
}

static bool assert_unchanged(const struct frame *f, const struct result *r)
{
	bool ok = ASSERT_EQ(r->len, f->len, "data_size_out");

	for (__u32 i = 0; ok && i < f->len; i++)
		if (r->out[i] != f->d[i]) {
			print_message("  %s: byte %u of the frame changed: 0x%02x, was 0x%02x\n",
				      cur_case, i, r->out[i], f->d[i]);
			ok = false;
		}
	return ok;
}

/*
 * A frame forwarded by DSR: MACs rewritten to dmac/smac, the TTL or hop limit
 * one less (IPv4 header checksum valid, recomputed from scratch), every other
 * byte as it came, and the L4 checksum valid with the pseudo-header.
 */
static bool assert_forwarded(const struct frame *f, const struct result *r, const __u8 *dmac,
			     const __u8 *smac)
{
	const __u8 *o = r->out;
	int hop = f->l3 + (f->family == 4 ? 8 : 7);
	bool ok = true;

	if (!ASSERT_EQ(r->len, f->len, "data_size_out"))
		return false;
	ok &= assert_mac(o, dmac, "destination MAC (the backend's neighbour entry)");
	ok &= assert_mac(o + ETH_ALEN, smac, "source MAC (the egress device's)");
	ok &= ASSERT_EQ(o[hop], f->d[hop] - 1, f->family == 4 ? "ttl" : "hop limit");
	for (__u32 i = 2 * ETH_ALEN; i < f->len; i++) {
		if (i == (__u32)hop)
			continue;
		if (f->family == 4 && (i == (__u32)f->l3 + 10 || i == (__u32)f->l3 + 11))
			continue; /* the header checksum, checked below */
		if (o[i] != f->d[i]) {
			print_message("  %s: byte %u changed: 0x%02x, was 0x%02x (DSR changes only "
				      "MACs, TTL and IPv4 checksum)\n", cur_case, i, o[i], f->d[i]);
			ok = false;
			break;
		}
	}
	if (f->family == 4)
		ok &= ASSERT_EQ(fold(sum16(o + f->l3, (o[f->l3] & 0xf) * 4, 0)), 0xffff,
				"IPv4 header checksum (sum over the header, recomputed)");
	if (f->l4 >= 0)
		ok &= ASSERT_EQ(l4_sum(o, f->l3, f->family, f->l4,
				       l4_len(o, f->l3, f->family, f->l4), f->proto),
				0xffff, "L4 checksum with the pseudo-header (recomputed)");
	return ok;
}

/* Opens a case: cur_case from its cmocka state, a snapshot of every counter. */
#define BEGIN()                                                                              \
	struct snap before, after, want;                                                     \
	struct result r;                                                                     \
	bool ok = true;                                                                      \
	cur_case = *state;                                                                   \
	memset(&want, 0, sizeof(want));                                                      \
	if (skip_reason[0]) {                                                                \
		print_message("  skipped: %s\n", skip_reason);                               \
		skip();                                                                      \
	}                                                                                    \
	if (load_error[0])                                                                   \
		fail_msg("%s", load_error);                                                  \
	(void)r;                                                                             \
	if (!take_snap(&before))                                                             \
		fail();

#define END()                                                                                \
	do {                                                                                 \
		if (!take_snap(&after))                                                      \
			fail();                                                              \
		ok &= check_deltas(&before, &after, &want);                                  \
		if (!ok)                                                                     \
			fail_msg("%s", cur_case);                                            \
	} while (0)

/* Runs f, expects it forwarded with verdict v to backend be (MAC from its neighbour). */
static bool expect_forward(const struct frame *f, int v, __u32 svc, __u32 be, enum how how,
			   const __u8 *smac, struct snap *want)
{
	__u8 dmac[ETH_ALEN];
	struct result r;
	bool ok;

	if (!run(f, &r))
		return false;
	ok = ASSERT_VERDICT(r.retval, v, "sl_xdp");
	if (!backend_mac(be, dmac)) {
		print_message("  %s: backend %u has no neighbour in the test's table\n", cur_case,
			      be);
		return false;
	}
	if (ok)
		ok &= assert_forwarded(f, &r, dmac, smac);
	ok &= assert_flow(f, svc, be);
	want_forwarded(want, svc, be, f, how);
	return ok;
}

/* --- cases: forwarding ----------------------------------------------------------------------- */

static void t_tcp4_syn(void **state)
{
	struct frame f;
	__u32 be;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 40001, 80, TCP_SYN, 24);
	finish(&f);
	be = first_choice(tab_t4, T4_SLOTS, &f);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, be, NEW_SYN, lbout_mac, &want);
	END();
}

static void t_udp4(void **state)
{
	struct frame f;
	__u32 be;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_UDP);
	udp(&f, 40002, 53, 40);
	finish(&f);
	be = first_choice(tab_u4, T4_SLOTS, &f);
	/* Not a SYN: the first datagram looks the flow up and misses. */
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_U4, be, MISS, lbout_mac, &want);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_U4, be, HIT, lbout_mac, &want);
	END();
}

static void t_tcp6_syn(void **state)
{
	struct frame f;
	__u32 be;

	BEGIN();
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, VIP6, IPPROTO_TCP);
	tcp(&f, 40003, 80, TCP_SYN, 24);
	finish(&f);
	be = first_choice(tab_t6, T4_SLOTS, &f);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T6, be, NEW_SYN, lbout_mac, &want);
	END();
}

static void t_udp6(void **state)
{
	struct frame f;
	__u32 be;

	BEGIN();
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, VIP6, IPPROTO_UDP);
	udp(&f, 40004, 53, 40);
	finish(&f);
	be = first_choice(tab_u6, T4_SLOTS, &f);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_U6, be, MISS, lbout_mac, &want);
	END();
}

static void t_spread(void **state)
{
	int seen[2] = { 0, 0 };
	struct frame f;

	BEGIN();
	for (int i = 0; i < 64; i++) {
		__u32 be;

		eth(&f, ETH_P_IP);
		ipv4(&f, "192.0.2.7", VIP4, IPPROTO_TCP);
		tcp(&f, 41000 + i, 80, TCP_SYN, 0);
		finish(&f);
		be = first_choice(tab_t4, T4_SLOTS, &f);
		seen[be == 12]++;
		ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, be, NEW_SYN, lbout_mac, &want);
	}
	ok &= ASSERT_EQ(seen[0] > 0 && seen[1] > 0, 1, "both backends chosen by the mirrored hash");
	END();
}

/* --- cases: the flow table -------------------------------------------------------------------- */

static const __u32 flow_all51[5] = { 51, 51, 51, 51, 51 };
static const __u32 flow_all52[5] = { 52, 52, 52, 52, 52 };
static const __u32 flow_list[2] = { 51, 52 };
static const __u32 flow_list52[1] = { 52 };

static void flow_frame(struct frame *f, __u16 sport, __u8 flags)
{
	eth(f, ETH_P_IP);
	ipv4(f, "192.0.2.20", "10.96.1.11", IPPROTO_TCP);
	tcp(f, sport, 80, flags, 16);
	finish(f);
}

static void t_flow_hit(void **state)
{
	struct frame syn, ack;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42001, TCP_SYN);
	flow_frame(&ack, 42001, TCP_ACK);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, HIT, lbout_mac, &want);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, HIT, lbout_mac, &want);
	END();
}

static void t_flow_table_swap(void **state)
{
	struct frame syn, ack, other;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42002, TCP_SYN);
	flow_frame(&ack, 42002, TCP_ACK | TCP_PSH);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	/* Every slot now names 52; 51 is still a backend of the service. */
	ok &= PUT_TABLE(SVC_FLOW, flow_all52, flow_list);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, HIT, lbout_mac, &want);
	/* A SYN on the same 4-tuple is a new connection: chosen from the new table. */
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 52, NEW_SYN, lbout_mac, &want);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 52, HIT, lbout_mac, &want);
	/* A mid-flow packet the table never saw: a miss, then a new flow. */
	flow_frame(&other, 42003, TCP_ACK);
	delete_flow(&other);
	ok &= expect_forward(&other, XDP_REDIRECT, SVC_FLOW, 52, MISS, lbout_mac, &want);
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	END();
}

/* A way two CPUs wrote at once (matching neither flow) is a miss, and the flow is written whole again. */
static void t_flow_torn_way(void **state)
{
	struct frame syn, ack;
	struct sl_flow_bucket b;
	__u32 bucket;
	int w;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42010, TCP_SYN);
	flow_frame(&ack, 42010, TCP_ACK);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	w = flow_way(&syn, &b, &bucket);
	ok &= ASSERT_EQ(w >= 0, 1, "the syn's flow is in the table");
	if (w >= 0) {
		b.way[w].backend_id = 52; /* another flow's backend, the fingerprint left as it was */
		ok &= ASSERT_EQ(!bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flows), &bucket,
						       &b, BPF_ANY), 1, "writing the torn way");
		ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, MISS, lbout_mac, &want);
		ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, HIT, lbout_mac, &want);
	}
	END();
}

/* The index word of a bucket (sluice/flow.h). */
static __u32 index_word(__u32 bucket)
{
	__u32 entry = bucket / SL_FLOW_INDEX_WORDS;
	struct sl_flow_index ix = { 0 };

	bpf_map_lookup_elem(map_fd(skel->maps.sl_xdp_flow_idx), &entry, &ix);
	return ix.word[bucket % SL_FLOW_INDEX_WORDS];
}

static bool index_write(__u32 bucket, __u32 word)
{
	__u32 entry = bucket / SL_FLOW_INDEX_WORDS;
	struct sl_flow_index ix = { 0 };

	if (!bpf_map_lookup_elem(map_fd(skel->maps.sl_xdp_flow_idx), &entry, &ix)) {
		ix.word[bucket % SL_FLOW_INDEX_WORDS] = word;
		if (!bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flow_idx), &entry, &ix, BPF_ANY))
			return true;
	}
	print_message("  %s: sl_xdp_flow_idx: %s\n", cur_case, strerror(errno));
	return false;
}

/* f's tag in the index. */
static __u32 frame_tag(const struct frame *f)
{
	struct sl_flow_key k;

	flow_key(f, &k);
	return sl_flow_tag(sl_flow_hash(&k));
}

/*
 * Fills syn's bucket with four other flows (sports 1000..1003) whose index
 * tags are not syn's, the pseudo-LRU tree set to tree. Returns the bucket.
 */
static bool fill_bucket(const struct frame *syn, __u32 tree, __u32 *bucket)
{
	__u32 tag = frame_tag(syn), word = 0, t = 1;
	struct sl_flow_bucket b;
	bool ok = true;
	int w = flow_way(syn, &b, bucket);

	ok &= ASSERT_EQ(w >= 0, 1, "the syn's flow is in the table");
	if (w < 0)
		return false;
	for (int i = 0; i < SL_FLOW_WAYS; i++, t++) {
		b.way[i] = b.way[w];
		b.way[i].fp = frame_fp(syn, 1000 + i) ^ sl_flow_bind(b.way[w].backend_id,
								  b.way[w].svc_id);
		t += t == tag;
		word |= t << (i * SL_FLOW_TAG_BITS);
	}
	word |= tree << SL_FLOW_PLRU_SHIFT;
	ok &= ASSERT_EQ(!bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flows), bucket, &b, BPF_ANY),
			1, "filling the bucket");
	return ok && index_write(*bucket, word);
}

static void empty_bucket(__u32 bucket)
{
	struct sl_flow_bucket b;

	memset(&b, 0, sizeof(b));
	bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flows), &bucket, &b, BPF_ANY);
	index_write(bucket, 0);
}

/*
 * A new flow in a full bucket takes the way the index's pseudo-LRU tree
 * names (tree 1: the second half, its first way: way 2), without reading
 * the bucket; the other ways stay, and the index gets the flow's tag.
 */
static void t_flow_bucket_full(void **state)
{
	struct sl_flow_bucket b;
	struct frame syn;
	__u32 bucket, word;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42011, TCP_SYN);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	if (fill_bucket(&syn, 1, &bucket)) {
		ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
		ok &= ASSERT_EQ(flow_way(&syn, &b, &bucket), 2, "the way the syn took");
		for (int i = 0; i < SL_FLOW_WAYS; i++)
			if (i != 2)
				ok &= ASSERT_EQ(way_holds(&b.way[i], &syn, 1000 + i), 1, "a way kept");
		word = index_word(bucket);
		ok &= ASSERT_EQ(sl_flow_index_tag(word, 2), frame_tag(&syn), "the syn's tag, way 2");
		ok &= ASSERT_EQ(sl_flow_plru_victim(word) != 2, 1, "way 2 no longer the victim");
	}
	empty_bucket(bucket);
	END();
}

/*
 * A flow that starts again (a retransmitted SYN, a reused port) takes back
 * the way its tag names, even with a free way and another victim in the
 * bucket: the table does not hold the flow twice.
 */
static void t_flow_own_way(void **state)
{
	struct sl_flow_bucket b;
	struct frame syn;
	__u32 bucket, word;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42012, TCP_SYN);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	if (fill_bucket(&syn, 0, &bucket)) { /* tree 0: the victim is way 0 */
		word = index_word(bucket);
		word &= ~(SL_FLOW_TAG_MASK << (1 * SL_FLOW_TAG_BITS)); /* way 1 free */
		word &= ~(SL_FLOW_TAG_MASK << (3 * SL_FLOW_TAG_BITS));
		word |= frame_tag(&syn) << (3 * SL_FLOW_TAG_BITS);
		ok &= index_write(bucket, word);
		ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
		ok &= ASSERT_EQ(flow_way(&syn, &b, &bucket), 3, "the way the syn's tag names");
		for (int i = 0; i < 3; i++)
			ok &= ASSERT_EQ(way_holds(&b.way[i], &syn, 1000 + i), 1, "a way kept");
	}
	empty_bucket(bucket);
	END();
}

/* A packet of a known flow in a later jiffy makes its way the most recently used. */
static void t_flow_hit_marks_way_used(void **state)
{
	struct frame syn, ack;
	struct sl_flow_bucket b;
	__u32 bucket, word;
	int w;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42013, TCP_SYN);
	flow_frame(&ack, 42013, TCP_ACK);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	w = flow_way(&syn, &b, &bucket);
	ok &= ASSERT_EQ(w >= 0, 1, "the syn's flow is in the table");
	if (w >= 0) {
		/* The tree made to name the flow's way, and its last packet a jiffy ago. */
		word = index_word(bucket) & ~SL_FLOW_PLRU_MASK;
		word |= (w < 2 ? (__u32)w << 1 : 1U | (__u32)(w - 2) << 2) << SL_FLOW_PLRU_SHIFT;
		ok &= index_write(bucket, word);
		ok &= ASSERT_EQ(sl_flow_plru_victim(word), w, "the flow's way made the victim");
		b.way[w].seen--;
		bpf_map_update_elem(map_fd(skel->maps.sl_xdp_flows), &bucket, &b, BPF_ANY);
		ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 51, HIT, lbout_mac, &want);
		word = index_word(bucket);
		ok &= ASSERT_EQ(sl_flow_plru_victim(word) != (unsigned int)w, 1,
				"the way is no longer the victim");
		ok &= ASSERT_EQ(sl_flow_index_tag(word, w), frame_tag(&syn), "its tag kept");
	}
	empty_bucket(bucket);
	END();
}

static bool nexthop_write(__u32 id, bool expires_only);

static void t_flow_backend_gone(void **state)
{
	struct frame syn, ack;
	__u32 id = 51;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42004, TCP_SYN);
	flow_frame(&ack, 42004, TCP_ACK);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	/*
	 * As the reconciler removes a backend: new table first, then the record,
	 * then its cached route (a fresh one is what a flow-table hit trusts).
	 */
	ok &= PUT_TABLE(SVC_FLOW, flow_all52, flow_list52);
	if (bpf_map_delete_elem(map_fd(skel->maps.sl_backends), &id) ||
	    bpf_map_update_elem(map_fd(skel->maps.sl_be_health), &id,
				&(struct sl_be_health){ 0 }, BPF_ANY)) {
		print_message("  %s: sl_backends delete: %s\n", cur_case, strerror(errno));
		ok = false;
	}
	ok &= nexthop_write(id, false);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 52, MISS, lbout_mac, &want);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 52, HIT, lbout_mac, &want);
	ok &= set_health(51, SL_HEALTH_UNKNOWN);
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	END();
}

static void t_flow_backend_moved(void **state)
{
	struct frame syn, ack;

	BEGIN();
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	flow_frame(&syn, 42005, TCP_SYN);
	flow_frame(&ack, 42005, TCP_ACK);
	ok &= expect_forward(&syn, XDP_REDIRECT, SVC_FLOW, 51, NEW_SYN, lbout_mac, &want);
	ok &= PUT_TABLE(SVC_FLOW, flow_all52, flow_list52);
	/* The reconciler hands an id out again only after removing it, route cache included. */
	if (put_backend(51, SVC_PICK, "10.211.0.10", SL_HEALTH_UNKNOWN)) {
		print_message("  %s: sl_backends update: %s\n", cur_case, strerror(errno));
		ok = false;
	}
	ok &= nexthop_write(51, false);
	ok &= expect_forward(&ack, XDP_REDIRECT, SVC_FLOW, 52, MISS, lbout_mac, &want);
	ok &= set_health(51, SL_HEALTH_UNKNOWN);
	ok &= PUT_TABLE(SVC_FLOW, flow_all51, flow_list);
	END();
}

/* --- cases: health and breakers --------------------------------------------------------- */

static const __u32 pick_all61[5] = { 61, 61, 61, 61, 61 };
static const __u32 pick_list[3] = { 61, 62, 63 };

static void pick_frame(struct frame *f, __u16 sport)
{
	eth(f, ETH_P_IP);
	ipv4(f, "192.0.2.30", "10.96.1.12", IPPROTO_TCP);
	tcp(f, sport, 80, TCP_SYN, 0);
	finish(f);
}

/* The first backend of the fallback scan for f that the predicate allows. */
static __u32 scan_expect(const struct frame *f, bool (*usable)(__u32 id))
{
	for (__u32 i = 0; i < 3; i++) {
		__u32 id = scan_at(pick_list, 3, f, i);

		if (usable(id))
			return id;
	}
	return 0;
}

static bool not61(__u32 id)
{
	return id != 61;
}

static bool only63(__u32 id)
{
	return id == 63;
}

static bool reset_pick(void)
{
	bool ok = PUT_TABLE(SVC_PICK, pick_all61, pick_list);

	for (__u32 id = 61; id <= 63; id++) {
		ok &= set_health(id, SL_HEALTH_UNKNOWN);
		ok &= set_breaker(id, SL_BREAKER_CLOSED, 0);
	}
	return ok;
}

static void t_first_down(void **state)
{
	struct frame f;
	int sides[2] = { 0, 0 };

	BEGIN();
	ok &= reset_pick();
	pick_frame(&f, 43000);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, 61, NEW_SYN, lbout_mac, &want);
	ok &= set_health(61, SL_HEALTH_DOWN);
	/* Several flows, so that the scan starts at every position of the list. */
	for (int i = 1; i <= 12; i++) {
		__u32 be;

		pick_frame(&f, 43000 + i);
		be = scan_expect(&f, not61);
		sides[be == 63]++;
		ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, be, NEW_SYN, lbout_mac, &want);
	}
	ok &= ASSERT_EQ(sides[0] > 0 && sides[1] > 0, 1, "both remaining backends chosen");
	/* SL_HEALTH_UP is as usable as UNKNOWN. */
	ok &= set_health(61, SL_HEALTH_UP);
	pick_frame(&f, 43020);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, 61, NEW_SYN, lbout_mac, &want);
	ok &= reset_pick();
	END();
}

static void t_breaker_open(void **state)
{
	struct frame f;

	BEGIN();
	ok &= reset_pick();
	ok &= set_breaker(61, SL_BREAKER_OPEN, mono_ns() + 3600 * NS_PER_SEC);
	for (int i = 0; i < 6; i++) {
		pick_frame(&f, 43100 + i);
		ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, scan_expect(&f, not61), NEW_SYN,
				     lbout_mac, &want);
	}
	ok &= set_breaker(61, SL_BREAKER_HALF_OPEN, 0);
	for (int i = 0; i < 6; i++) {
		pick_frame(&f, 43110 + i);
		ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, scan_expect(&f, not61), NEW_SYN,
				     lbout_mac, &want);
	}
	/* Open, down and half-open together: only 63 is left. */
	ok &= set_breaker(61, SL_BREAKER_OPEN, mono_ns() + 3600 * NS_PER_SEC);
	ok &= set_health(62, SL_HEALTH_DOWN);
	for (int i = 0; i < 4; i++) {
		pick_frame(&f, 43120 + i);
		ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, scan_expect(&f, only63), NEW_SYN,
				     lbout_mac, &want);
	}
	ok &= reset_pick();
	END();
}

static void t_breaker_expired(void **state)
{
	struct frame f;

	BEGIN();
	ok &= reset_pick();
	ok &= set_breaker(61, SL_BREAKER_OPEN, mono_ns() - NS_PER_SEC);
	pick_frame(&f, 43200);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, 61, NEW_SYN, lbout_mac, &want);
	ok &= set_breaker(61, SL_BREAKER_OPEN, 1);
	pick_frame(&f, 43201);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_PICK, 61, NEW_SYN, lbout_mac, &want);
	ok &= reset_pick();
	END();
}

static void t_none_usable(void **state)
{
	struct frame f, ack;

	BEGIN();
	ok &= reset_pick();
	ok &= set_health(61, SL_HEALTH_DOWN);
	ok &= set_breaker(62, SL_BREAKER_OPEN, mono_ns() + 3600 * NS_PER_SEC);
	ok &= set_breaker(63, SL_BREAKER_HALF_OPEN, 0);
	pick_frame(&f, 43300);
	if (run(&f, &r)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_DROP, "sl_xdp");
		ok &= assert_unchanged(&f, &r);
	} else {
		ok = false;
	}
	ok &= assert_flow(&f, SVC_PICK, 0);
	want_seen(&want, SVC_PICK, &f);
	want.svc[SVC_PICK].dropped[SL_XDP_DROP_NO_BACKEND]++;
	/* A non-SYN: looked up (miss), still none. */
	eth(&ack, ETH_P_IP);
	ipv4(&ack, "192.0.2.30", "10.96.1.12", IPPROTO_TCP);
	tcp(&ack, 43301, 80, TCP_ACK, 0);
	finish(&ack);
	if (run(&ack, &r)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_DROP, "sl_xdp (ack)");
		ok &= assert_unchanged(&ack, &r);
	} else {
		ok = false;
	}
	want_seen(&want, SVC_PICK, &ack);
	want.svc[SVC_PICK].flow_misses++;
	want.svc[SVC_PICK].dropped[SL_XDP_DROP_NO_BACKEND]++;
	ok &= reset_pick();
	END();
}

static void t_empty_table(void **state)
{
	static const __u32 none[1] = { 0 };
	struct frame f;
	__u32 svc_ids[2] = { SVC_EMPTY, SVC_NOTABLE };
	int err;

	BEGIN();
	err = put_table(SVC_EMPTY, none, 0, none, 0);
	if (err) {
		print_message("  %s: empty table: %s\n", cur_case, strerror(-err));
		ok = false;
	}
	for (int i = 0; i < 2; i++) {
		char vip[16];

		snprintf(vip, sizeof(vip), "10.96.1.%d", svc_ids[i] == SVC_EMPTY ? 16 : 17);
		eth(&f, ETH_P_IP);
		ipv4(&f, CLIENT4, vip, IPPROTO_TCP);
		tcp(&f, 43400, 80, TCP_SYN, 0);
		finish(&f);
		if (run(&f, &r)) {
			ok &= ASSERT_VERDICT(r.retval, XDP_DROP, vip);
			ok &= assert_unchanged(&f, &r);
		} else {
			ok = false;
		}
		want_seen(&want, svc_ids[i], &f);
		want.svc[svc_ids[i]].dropped[SL_XDP_DROP_NO_BACKEND]++;
	}
	END();
}

/* --- cases: the FIB's answers ---------------------------------------------------------------- */

static void t_xdp_tx(void **state)
{
	struct frame f, g;
	__u8 dmac[ETH_ALEN];

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.13", IPPROTO_TCP);
	tcp(&f, 44000, 80, TCP_SYN, 8);
	finish(&f);
	ok &= expect_forward(&f, XDP_TX, SVC_TX, 71, NEW_SYN, lbin_mac, &want);
	/*
	 * The same frame with no ctx_in arrives on lo: the FIB's egress (lbin) is
	 * not the ingress, so redirected. Shows ingress_ifindex is honoured.
	 */
	eth(&g, ETH_P_IP);
	ipv4(&g, CLIENT4, "10.96.1.13", IPPROTO_TCP);
	tcp(&g, 44001, 80, TCP_SYN, 8);
	finish(&g);
	if (run_on(skel->progs.sl_xdp, &g, 0, &r) && backend_mac(71, dmac)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_REDIRECT, "sl_xdp, ingress lo");
		ok &= assert_forwarded(&g, &r, dmac, lbin_mac);
	} else {
		ok = false;
	}
	want_forwarded(&want, SVC_TX, 71, &g, NEW_SYN);
	END();
}

/* Runs f, expects XDP_PASS with the frame unchanged, a new flow to be, and passed[why]. */
static bool expect_pass(const struct frame *f, __u32 svc, __u32 be, enum how how, int why,
			struct snap *want)
{
	struct result r;
	bool ok;

	if (!run(f, &r))
		return false;
	ok = ASSERT_VERDICT(r.retval, XDP_PASS, "sl_xdp");
	ok &= assert_unchanged(f, &r);
	want_seen(want, svc, f);
	/* The backend is chosen (and the flow written) before the FIB is asked. */
	want_chosen(want, svc, be, how);
	ok &= assert_flow(f, svc, be);
	want->svc[svc].passed[why]++;
	return ok;
}

static void t_ttl(void **state)
{
	struct frame f;

	BEGIN();
	for (int ttl = 0; ttl <= 1; ttl++) {
		eth(&f, ETH_P_IP);
		ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
		tcp(&f, 44100 + ttl, 80, TCP_SYN, 0);
		set_ttl(&f, ttl);
		ok &= expect_pass(&f, SVC_T4, first_choice(tab_t4, T4_SLOTS, &f), NEW_SYN,
				  SL_XDP_PASS_TTL, &want);
	}
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, VIP6, IPPROTO_UDP);
	udp(&f, 44102, 53, 8);
	set_ttl(&f, 1);
	ok &= expect_pass(&f, SVC_U6, first_choice(tab_u6, T4_SLOTS, &f), MISS, SL_XDP_PASS_TTL,
			  &want);
	/* TTL 2 leaves as 1: forwarded. */
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 44103, 80, TCP_SYN, 0);
	set_ttl(&f, 2);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, first_choice(tab_t4, T4_SLOTS, &f), NEW_SYN,
			     lbout_mac, &want);
	END();
}

static void t_no_route(void **state)
{
	struct frame f;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.15", IPPROTO_TCP);
	tcp(&f, 44200, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_pass(&f, SVC_NOROUTE, 91, NEW_SYN, SL_XDP_PASS_NO_ROUTE, &want);
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, "fd00:96::15", IPPROTO_TCP);
	tcp(&f, 44201, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_pass(&f, SVC_NOROUTE6, 131, NEW_SYN, SL_XDP_PASS_NO_ROUTE, &want);
	END();
}

static void t_no_neighbor(void **state)
{
	struct frame f;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.14", IPPROTO_TCP);
	tcp(&f, 44300, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_pass(&f, SVC_NONEIGH, 81, NEW_SYN, SL_XDP_PASS_NO_NEIGHBOR, &want);
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, "fd00:96::14", IPPROTO_TCP);
	tcp(&f, 44301, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_pass(&f, SVC_NONEIGH6, 121, NEW_SYN, SL_XDP_PASS_NO_NEIGHBOR, &want);
	END();
}

static void udp4_sized(struct frame *f, __u16 sport, __u32 ip_len)
{
	eth(f, ETH_P_IP);
	ipv4(f, CLIENT4, VIP4, IPPROTO_UDP);
	udp(f, sport, 53, ip_len - 28);
	finish(f);
}

static void t_mtu(void **state)
{
	struct frame f;

	BEGIN();
	udp4_sized(&f, 44400, LBOUT_MTU);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_U4, first_choice(tab_u4, T4_SLOTS, &f), MISS,
			     lbout_mac, &want);
	udp4_sized(&f, 44401, LBOUT_MTU + 1);
	ok &= expect_pass(&f, SVC_U4, first_choice(tab_u4, T4_SLOTS, &f), MISS,
			  SL_XDP_PASS_FRAG_NEEDED, &want);
	udp4_sized(&f, 44402, 1400);
	ok &= expect_pass(&f, SVC_U4, first_choice(tab_u4, T4_SLOTS, &f), MISS,
			  SL_XDP_PASS_FRAG_NEEDED, &want);
	END();
}

static void t_vlan(void **state)
{
	struct frame f;

	BEGIN();
	eth_tagged(&f, ETH_P_IP, 100);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 44500, 80, TCP_SYN, 0);
	finish(&f);
	/* Passed before a backend is chosen: no flow, no new_flows. */
	if (!run(&f, &r))
		fail();
	ok &= ASSERT_VERDICT(r.retval, XDP_PASS, "sl_xdp");
	ok &= assert_unchanged(&f, &r);
	want_seen(&want, SVC_T4, &f);
	want.svc[SVC_T4].passed[SL_XDP_PASS_VLAN]++;
	END();
}

/* --- cases: the route cache (sl_xdp_backend's route) -------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int write_sysctl(const char *path, const char *v);


/*
 * Empties every CPU's cached route for backend id (its counters kept); with
 * expires_only, only sets expires to 1 (stale).
 */
static bool nexthop_write(__u32 id, bool expires_only)
{
	struct sl_xdp_backend *v = calloc(ncpus, sizeof(*v));
	int fd = bpf_map__fd(skel->maps.sl_xdp_backend);
	bool ok = v != NULL;

	if (ok)
		ok = !xdp_cpu_read(fd, SL_XDP_BE_STRIDE, id, v, sizeof(*v));
	for (int c = 0; ok && c < ncpus; c++) {
		if (expires_only)
			v[c].route.expires = 1;
		else
			memset(&v[c].route, 0, sizeof(v[c].route));
	}
	if (ok)
		ok = !xdp_cpu_write(fd, SL_XDP_BE_STRIDE, id, v, sizeof(*v));
	if (!ok)
		print_message("  %s: sl_xdp_backend[%u]: %s\n", cur_case, id, strerror(errno));
	free(v);
	return ok;
}

/* The one CPU entry of backend id that is filled (test_run ran on one CPU). */
static bool nexthop_read(__u32 id, struct sl_xdp_nexthop *out)
{
	struct sl_xdp_backend *v = calloc(ncpus, sizeof(*v));
	int filled = 0;

	if (!v || xdp_cpu_read(bpf_map__fd(skel->maps.sl_xdp_backend), SL_XDP_BE_STRIDE, id, v,
				 sizeof(*v))) {
		free(v);
		return false;
	}
	for (int c = 0; c < ncpus; c++)
		if (v[c].route.expires > 1) {
			*out = v[c].route;
			filled++;
		}
	free(v);
	return filled == 1;
}

static void t_nexthop_cache(void **state)
{
	static const __u8 new_mac[ETH_ALEN] = { 0x02, 0x11, 0, 0, 0, 0x99 };
	struct sl_xdp_nexthop nh;
	__u8 old_mac[ETH_ALEN];
	struct frame f;
	__u32 be;

	cpu_set_t one, all;

	BEGIN();
	/* The cache is per CPU: every run of this case on the same one. */
	if (sched_getaffinity(0, sizeof(all), &all))
		fail_msg("%s: sched_getaffinity: %s", cur_case, strerror(errno));
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		fail_msg("%s: sched_setaffinity: %s", cur_case, strerror(errno));
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 45001, 80, TCP_SYN, 0);
	finish(&f);
	be = first_choice(tab_t4, T4_SLOTS, &f);
	if (!backend_mac(be, old_mac) || !nexthop_write(be, false))
		fail();
	/* An empty entry: the FIB is asked, and its answer kept with the route's MTU. */
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, be, NEW_SYN, lbout_mac, &want);
	if (!nexthop_read(be, &nh))
		fail_msg("%s: no CPU holds a cached route for backend %u", cur_case, be);
	ok &= ASSERT_EQ(nh.ifindex, if_lbout, "cached ifindex");
	ok &= ASSERT_EQ(nh.mtu, LBOUT_MTU, "cached mtu");
	ok &= ASSERT_EQ(memcmp(nh.dmac, old_mac, ETH_ALEN), 0, "cached dmac = the neighbour's");
	ok &= ASSERT_EQ(memcmp(nh.smac, lbout_mac, ETH_ALEN), 0, "cached smac = lbout's");
	/* The neighbour changes: the cached answer stands until it expires... */
	if (sh("ip neigh replace %s lladdr 02:11:00:00:00:99 nud permanent dev lbout",
	       backend_addr(be)))
		fail_msg("%s", load_error);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, be, NEW_SYN, lbout_mac, &want);
	/* ...then the FIB is asked again and the new MAC used. */
	if (!nexthop_write(be, true) || !run(&f, &r))
		fail();
	ok &= ASSERT_VERDICT(r.retval, XDP_REDIRECT, "after expiry");
	ok &= ASSERT_EQ(memcmp(r.out, new_mac, ETH_ALEN), 0, "dst MAC after expiry = the new one");
	want_forwarded(&want, SVC_T4, be, &f, NEW_SYN);
	if (sh("ip neigh replace %s lladdr %02x:%02x:%02x:%02x:%02x:%02x nud permanent dev lbout",
	       backend_addr(be), old_mac[0], old_mac[1], old_mac[2], old_mac[3], old_mac[4],
	       old_mac[5]) ||
	    !nexthop_write(be, false))
		fail_msg("%s: cannot restore the neighbour", cur_case);
	sched_setaffinity(0, sizeof(all), &all);
	END();
}

static void t_forwarding_off(void **state)
{
	struct frame f;
	__u32 be;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 45002, 80, TCP_SYN, 0);
	finish(&f);
	be = first_choice(tab_t4, T4_SLOTS, &f);
	if (!nexthop_write(be, false) ||
	    write_sysctl("/proc/sys/net/ipv4/conf/lbin/forwarding", "0"))
		fail();
	ok &= expect_pass(&f, SVC_T4, be, NEW_SYN, SL_XDP_PASS_FORWARDING_OFF, &want);
	if (write_sysctl("/proc/sys/net/ipv4/conf/lbin/forwarding", "1"))
		fail_msg("%s: cannot turn forwarding back on: %s", cur_case, load_error);
	END();
}

/* --- cases: what is not forwarded ------------------------------------------------------- */

static void t_non_vip(void **state)
{
	static const __u8 arp[28] = {
		0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0x10, 0, 0, 0, 0x02, 192, 0, 2, 1,
		0, 0, 0, 0, 0, 0, 10, 96, 1, 10,
	};
	struct frame f[7];
	const char *what[7] = {
		"tcp syn to another port of the vip", "tcp syn to another address",
		"udp to the tcp vip port",	       "icmp echo to the vip",
		"ipv6 tcp syn to another address",     "ipv6 tcp syn to another port",
		"arp for the vip",
	};

	BEGIN();
	eth(&f[0], ETH_P_IP);
	ipv4(&f[0], CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f[0], 44600, 81, TCP_SYN, 0);
	eth(&f[1], ETH_P_IP);
	ipv4(&f[1], CLIENT4, "10.96.1.99", IPPROTO_TCP);
	tcp(&f[1], 44601, 80, TCP_SYN, 0);
	eth(&f[2], ETH_P_IP);
	ipv4(&f[2], CLIENT4, VIP4, IPPROTO_UDP);
	udp(&f[2], 44602, 80, 16);
	eth(&f[3], ETH_P_IP);
	ipv4(&f[3], CLIENT4, VIP4, IPPROTO_ICMP);
	fill(&f[3], 8, 1);
	fill(&f[3], 0, 7);
	fill(&f[3], 0xcd, 32);
	eth(&f[4], ETH_P_IPV6);
	ipv6(&f[4], CLIENT6, "fd00:96::99", IPPROTO_TCP);
	tcp(&f[4], 44604, 80, TCP_SYN, 0);
	eth(&f[5], ETH_P_IPV6);
	ipv6(&f[5], CLIENT6, VIP6, IPPROTO_TCP);
	tcp(&f[5], 44605, 8080, TCP_SYN, 0);
	eth(&f[6], ETH_P_ARP);
	put(&f[6], arp, sizeof(arp));
	for (int i = 0; i < 7; i++) {
		finish(&f[i]);
		if (!run(&f[i], &r)) {
			ok = false;
			continue;
		}
		ok &= ASSERT_VERDICT(r.retval, XDP_PASS, what[i]);
		if (!assert_unchanged(&f[i], &r)) {
			print_message("  %s: (%s)\n", cur_case, what[i]);
			ok = false;
		}
		if (i < 6) { /* ARP is not IP: counted nowhere */
			want.svc[0].packets++;
			want.svc[0].bytes += f[i].len;
		}
	}
	END();
}

/* Runs f (any length, 0 too); true if the verdict is neither TX nor REDIRECT and f is intact. */
static bool expect_untouched_any(const struct frame *f, const char *what, int *ran)
{
	struct result r;
	bool ok = true;

	run_on(skel->progs.sl_xdp, f, if_lbin, &r);
	if (f->len < ETH_HLEN) /* the kernel refuses less than an Ethernet header */
		return ASSERT_EQ(r.err, -EINVAL, what);
	if (r.err)
		return false;
	(*ran)++;
	if (r.retval == XDP_TX || r.retval == XDP_REDIRECT || r.retval == XDP_ABORTED) {
		print_message("  %s: %s (%u bytes): verdict %s\n", cur_case, what, f->len,
			      verdict_name(r.retval));
		ok = false;
	}
	if (!assert_unchanged(f, &r)) {
		print_message("  %s: %s (%u bytes)\n", cur_case, what, f->len);
		ok = false;
	}
	return ok;
}

static void t_truncated(void **state)
{
	struct frame full[3], f;
	int ran = 0;

	BEGIN();
	eth(&full[0], ETH_P_IP);
	ipv4(&full[0], CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&full[0], 44700, 80, TCP_SYN, 0);
	eth(&full[1], ETH_P_IPV6);
	ipv6(&full[1], CLIENT6, VIP6, IPPROTO_TCP);
	tcp(&full[1], 44701, 80, TCP_SYN, 0);
	eth_tagged(&full[2], ETH_P_IP, 7);
	ipv4(&full[2], CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&full[2], 44702, 80, TCP_SYN, 0);
	for (int k = 0; k < 3; k++) {
		finish(&full[k]);
		for (__u32 n = 0; n < full[k].len; n++) {
			f = full[k];
			f.no_fix = 1;
			f.len = n;
			ok &= expect_untouched_any(&f, k == 1 ? "ipv6 syn cut" : "ipv4 syn cut",
						   &ran);
		}
	}
	/*
	 * Counted as what the parser makes of them: a frame holding the IP header
	 * but not the whole TCP header is non-VIP traffic (id 0); shorter, nothing.
	 */
	for (int k = 0; k < 3; k++) {
		int l3 = full[k].l3, iph = k == 1 ? 40 : 20;

		for (__u32 n = l3 + iph; n < full[k].len; n++) {
			want.svc[0].packets++;
			want.svc[0].bytes += n;
		}
	}
	ok &= ASSERT_EQ(ran, (full[0].len - ETH_HLEN) + (full[1].len - ETH_HLEN) +
				     (full[2].len - ETH_HLEN), "runs");
	END();
}

static void t_short_of_ip_length(void **state)
{
	static const __u32 svcs[3] = { SVC_U4, SVC_T6, SVC_T4 };
	struct frame full[3], f;

	BEGIN();
	/*
	 * The whole L4 header is there; the IP header says more follows than the
	 * frame has. Dropped as malformed, counted on the VIP, no flow remembered.
	 */
	eth(&full[0], ETH_P_IP);
	ipv4(&full[0], "192.0.2.40", VIP4, IPPROTO_UDP);
	udp(&full[0], 44800, 53, 32);
	eth(&full[1], ETH_P_IPV6);
	ipv6(&full[1], "2001:db8::40", VIP6, IPPROTO_TCP);
	tcp(&full[1], 44801, 80, TCP_SYN, 32);
	eth(&full[2], ETH_P_IP);
	ipv4(&full[2], "192.0.2.40", VIP4, IPPROTO_TCP);
	tcp_opts(&full[2], 44802, 80, TCP_SYN, 20, 0);
	for (int k = 0; k < 3; k++) {
		finish(&full[k]);
		for (__u32 n = full[k].l4 + (k == 0 ? 8 : 20); n < full[k].len; n++) {
			f = full[k];
			f.no_fix = 1;
			f.len = n;
			if (!run(&f, &r))
				fail();
			if (!ASSERT_VERDICT(r.retval, XDP_DROP, "cut") || !assert_unchanged(&f, &r)) {
				print_message("  %s: cut at %u bytes\n", cur_case, n);
				ok = false;
				break; /* one report per frame is enough */
			}
			want_seen(&want, svcs[k], &f);
			want.svc[svcs[k]].dropped[SL_XDP_DROP_MALFORMED]++;
		}
	}
	END();
}

static void t_malformed(void **state)
{
	struct frame f;
	int ran = 0;
	unsigned int seed = 12345;

	BEGIN();
	for (int ihl = 0; ihl < 5; ihl++) {
		eth(&f, ETH_P_IP);
		ipv4_full(&f, CLIENT4, VIP4, IPPROTO_TCP, 0, 5);
		tcp(&f, 44900, 80, TCP_SYN, 0);
		finish(&f);
		f.d[f.l3] = 0x40 | ihl;
		ok &= expect_untouched_any(&f, "ihl < 5", &ran);
	}
	/* First fragment (MF), a later one (offset), both: no ports to trust. */
	{
		static const __u16 frags[] = { 0x2000, 185, 0x2000 | 185 };

		for (int i = 0; i < 3; i++) {
			eth(&f, ETH_P_IP);
			ipv4_full(&f, CLIENT4, VIP4, IPPROTO_TCP, frags[i], 5);
			tcp(&f, 44901, 80, TCP_SYN, 0);
			finish(&f);
			ok &= expect_untouched_any(&f, "ipv4 fragment", &ran);
			want.svc[0].packets++;
			want.svc[0].bytes += f.len;
			eth(&f, ETH_P_IP);
			ipv4_full(&f, CLIENT4, VIP4, IPPROTO_UDP, frags[i], 5);
			udp(&f, 44902, 53, 16);
			finish(&f);
			ok &= expect_untouched_any(&f, "ipv4 udp fragment", &ran);
			want.svc[0].packets++;
			want.svc[0].bytes += f.len;
		}
	}
	/* IPv6 with a fragment header before TCP. */
	eth(&f, ETH_P_IPV6);
	ipv6(&f, CLIENT6, VIP6, 44);
	fill(&f, IPPROTO_TCP, 1);
	fill(&f, 0, 1);
	put16(&f, 0x0001);
	put16(&f, 0x1234);
	put16(&f, 0x5678);
	tcp(&f, 44903, 80, TCP_SYN, 0);
	f.l4 = -1;
	finish(&f);
	ok &= expect_untouched_any(&f, "ipv6 fragment", &ran);
	want.svc[0].packets++;
	want.svc[0].bytes += f.len;
	/*
	 * Garbage: random bytes, and random bytes behind an IPv4 or IPv6
	 * ethertype. Whatever they count as, none may be forwarded; the counters
	 * are not checked here (random addresses land on id 0 or nowhere).
	 */
	END();
	if (!take_snap(&before))
		fail();
	for (int i = 0; i < 3000; i++) {
		__u32 n = 14 + rand_r(&seed) % 200;

		memset(&f, 0, sizeof(f));
		f.l3 = f.l4 = -1;
		f.no_fix = 1;
		for (__u32 j = 0; j < n; j++)
			f.d[j] = rand_r(&seed);
		f.len = n;
		if (i % 3 == 1) {
			f.d[12] = 0x08;
			f.d[13] = 0x00;
			f.d[14] = 0x40 | (f.d[14] & 0xf);
		} else if (i % 3 == 2) {
			f.d[12] = 0x86;
			f.d[13] = 0xdd;
			f.d[14] = 0x60 | (f.d[14] & 0xf);
		}
		if (!expect_untouched_any(&f, "garbage", &ran)) {
			ok = false;
			break;
		}
	}
	if (!take_snap(&after))
		fail();
	for (__u32 id = 1; id <= SVC_MAX; id++)
		ok &= ASSERT_EQ(after.svc[id].forwarded - before.svc[id].forwarded, 0,
				"forwarded on a vip by garbage");
	if (!ok)
		fail_msg("%s", cur_case);
}

/* --- cases: the limits still apply; the limits-only entry point ------------------------- */

static void t_source_limit(void **state)
{
	struct frame f;

	BEGIN();
	ok &= set_cfg(1, 1);
	eth(&f, ETH_P_IP);
	ipv4(&f, "192.0.2.200", VIP4, IPPROTO_TCP);
	tcp(&f, 45000, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_forward(&f, XDP_REDIRECT, SVC_T4, first_choice(tab_t4, T4_SLOTS, &f), NEW_SYN,
			     lbout_mac, &want);
	delete_flow(&f);
	if (run(&f, &r)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_DROP, "second packet");
		ok &= assert_unchanged(&f, &r);
	} else {
		ok = false;
	}
	ok &= assert_flow(&f, SVC_T4, 0);
	want.svc[SVC_T4].packets++;
	want.svc[SVC_T4].bytes += f.len;
	want.svc[SVC_T4].dropped[SL_XDP_DROP_SOURCE_RATE]++;
	ok &= set_cfg(0, 0);
	END();
}

/* SVC_TX's key (10.96.1.13:80, TCP) and its sl_services record. */
static bool tx_service(struct sl_svc_key *key, struct sl_service *svc)
{
	memset(key, 0, sizeof(*key));
	key->family = SL_FAMILY_IPV4;
	addr_of("10.96.1.13", &key->vip);
	key->port = htons(80);
	key->proto = IPPROTO_TCP;
	if (!bpf_map_lookup_elem(map_fd(skel->maps.sl_services), key, svc))
		return true;
	print_message("  %s: sl_services lookup: %s\n", cur_case, strerror(errno));
	return false;
}

static void t_syn_limit(void **state)
{
	struct sl_rl_bucket b = { .tat_ns = 0 };
	struct sl_svc_key key;
	struct sl_service svc;
	struct frame f;
	__u32 id = SVC_TX;
	int fd;

	BEGIN();
	fd = map_fd(skel->maps.sl_services);
	if (!tx_service(&key, &svc))
		fail();
	svc.syn_per_second = 1;
	svc.syn_burst = 1;
	ok &= !bpf_map_update_elem(fd, &key, &svc, BPF_EXIST);
	ok &= !xdp_vips_add(map_fd(skel->maps.sl_xdp_vips), &key, &svc);
	ok &= !bpf_map_update_elem(map_fd(skel->maps.sl_xdp_syn), &id, &b, BPF_ANY);
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.13", IPPROTO_TCP);
	tcp(&f, 45100, 80, TCP_SYN, 0);
	finish(&f);
	ok &= expect_forward(&f, XDP_TX, SVC_TX, 71, NEW_SYN, lbin_mac, &want);
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.13", IPPROTO_TCP);
	tcp(&f, 45101, 80, TCP_SYN, 0);
	finish(&f);
	if (run(&f, &r)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_DROP, "second syn");
		ok &= assert_unchanged(&f, &r);
	} else {
		ok = false;
	}
	ok &= assert_flow(&f, SVC_TX, 0);
	want_seen(&want, SVC_TX, &f);
	want.svc[SVC_TX].dropped[SL_XDP_DROP_SYN_RATE]++;
	svc.syn_per_second = 0;
	svc.syn_burst = 0;
	ok &= !bpf_map_update_elem(fd, &key, &svc, BPF_EXIST);
	ok &= !xdp_vips_add(map_fd(skel->maps.sl_xdp_vips), &key, &svc);
	END();
}

/* A SYN from sport to SVC_TX's VIP: forwarded to 71, or dropped over the SYN limit. */
static bool tx_syn(__u16 sport, bool dropped, struct snap *want)
{
	struct result r;
	struct frame f;
	bool ok = true;

	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, "10.96.1.13", IPPROTO_TCP);
	tcp(&f, sport, 80, TCP_SYN, 0);
	finish(&f);
	if (!dropped)
		return expect_forward(&f, XDP_TX, SVC_TX, 71, NEW_SYN, lbin_mac, want);
	if (!run(&f, &r))
		return false;
	ok &= ASSERT_VERDICT(r.retval, XDP_DROP, "syn over the limit");
	ok &= assert_unchanged(&f, &r);
	ok &= assert_flow(&f, SVC_TX, 0);
	want_seen(want, SVC_TX, &f);
	want->svc[SVC_TX].dropped[SL_XDP_DROP_SYN_RATE]++;
	return ok;
}

/*
 * SVC_TX's slot of sl_xdp_vips says 1 SYN/s while sl_services says no limit:
 * the second SYN is dropped, so the slot is what XDP read. A slot whose check
 * fails (caught mid-write), one naming another VIP, and an empty one are
 * passed over for sl_services: no limit, forwarded.
 */
static void t_vip_index(void **state)
{
	struct sl_rl_bucket b = { .tat_ns = 0 };
	struct sl_xdp_vip v, torn, other;
	struct sl_svc_key key;
	struct sl_service svc;
	__u32 id = SVC_TX, slot;
	int fd;

	BEGIN();
	fd = map_fd(skel->maps.sl_xdp_vips);
	if (!tx_service(&key, &svc))
		fail();
	slot = sl_xdp_vip_slot(sl_vip_filter_bit(&key.vip, key.port));
	ok &= ASSERT_EQ(svc.syn_per_second, 0, "sl_services: no syn limit");
	svc.syn_per_second = 1;
	svc.syn_burst = 1;
	v = sl_xdp_vip_of(&key, &svc);
	ok &= !bpf_map_update_elem(fd, &slot, &v, BPF_ANY);
	ok &= !bpf_map_update_elem(map_fd(skel->maps.sl_xdp_syn), &id, &b, BPF_ANY);
	ok &= tx_syn(45200, false, &want);
	ok &= tx_syn(45201, true, &want);

	torn = v;
	torn.syn_burst = 7; /* the check is of burst 1 */
	ok &= !bpf_map_update_elem(fd, &slot, &torn, BPF_ANY);
	ok &= tx_syn(45202, false, &want);
	other = v;
	other.key.port = htons(81);
	other.check = sl_xdp_vip_check(&other);
	ok &= !bpf_map_update_elem(fd, &slot, &other, BPF_ANY);
	ok &= tx_syn(45203, false, &want);
	memset(&other, 0, sizeof(other));
	ok &= !bpf_map_update_elem(fd, &slot, &other, BPF_ANY);
	ok &= tx_syn(45204, false, &want);

	svc.syn_per_second = 0;
	svc.syn_burst = 0;
	ok &= !xdp_vips_add(fd, &key, &svc);
	END();
}

static void t_edge(void **state)
{
	struct frame f;

	BEGIN();
	eth(&f, ETH_P_IP);
	ipv4(&f, CLIENT4, VIP4, IPPROTO_TCP);
	tcp(&f, 45200, 80, TCP_SYN, 0);
	finish(&f);
	if (run_on(skel->progs.sl_xdp_edge, &f, if_lbin, &r)) {
		ok &= ASSERT_VERDICT(r.retval, XDP_PASS, "sl_xdp_edge");
		ok &= assert_unchanged(&f, &r);
	} else {
		ok = false;
	}
	ok &= assert_flow(&f, SVC_T4, 0);
	want_seen(&want, SVC_T4, &f);
	want.svc[SVC_T4].passed[SL_XDP_PASS_NOT_FORWARDING]++;
	END();
}

/* --- setup ------------------------------------------------------------------------------ */

static int sh(const char *fmt, ...)
{
	char cmd[256];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc)
		snprintf(load_error, sizeof(load_error), "`%s` failed (status %d)", cmd, rc);
	return rc;
}

static int write_sysctl(const char *path, const char *v)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f || fputs(v, f) < 0)
		err = -errno;
	if (f && fclose(f))
		err = -errno;
	if (err)
		snprintf(load_error, sizeof(load_error), "cannot write %s: %s", path,
			 strerror(-err));
	return err;
}

/* The private namespace and its links; see the top of the file. */
static int make_topology(void)
{
	if (unshare(CLONE_NEWNET)) {
		snprintf(load_error, sizeof(load_error), "unshare(CLONE_NEWNET): %s",
			 strerror(errno));
		return -1;
	}
	if (write_sysctl("/proc/sys/net/ipv4/ip_forward", "1") ||
	    write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1") ||
	    write_sysctl("/proc/sys/net/ipv6/conf/default/accept_dad", "0"))
		return -1;
	if (sh("ip link set lo up") ||
	    sh("ip link add lbin address 02:10:00:00:00:01 type veth peer name lbin_p") ||
	    sh("ip link add lbout address 02:11:00:00:00:01 mtu %d type veth peer name lbout_p "
	       "mtu %d", LBOUT_MTU, LBOUT_MTU) ||
	    sh("ip addr add 10.210.0.1/24 dev lbin") ||
	    sh("ip -6 addr add fd00:210::1/64 dev lbin nodad") ||
	    sh("ip addr add 10.211.0.1/24 dev lbout") ||
	    sh("ip -6 addr add fd00:211::1/64 dev lbout nodad") ||
	    sh("ip link set lbin_p up && ip link set lbout_p up") ||
	    sh("ip link set lbin up && ip link set lbout up"))
		return -1;
	for (size_t i = 0; i < sizeof(neighbours) / sizeof(neighbours[0]); i++)
		if (sh("ip neigh replace %s lladdr %s nud permanent dev %s", neighbours[i].addr,
		       neighbours[i].mac, neighbours[i].dev))
			return -1;
	if_lbin = if_nametoindex("lbin");
	if_lbout = if_nametoindex("lbout");
	if_lo = if_nametoindex("lo");
	if (!if_lbin || !if_lbout || !if_lo) {
		snprintf(load_error, sizeof(load_error), "if_nametoindex: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int fill_maps(void)
{
	for (size_t i = 0; i < NSERVICES; i++) {
		struct sl_svc_key key;
		struct sl_service val;
		__u32 count = 0;

		memset(&key, 0, sizeof(key));
		memset(&val, 0, sizeof(val));
		addr_of(services[i].vip, &key.vip);
		key.family = strchr(services[i].vip, ':') ? SL_FAMILY_IPV6 : SL_FAMILY_IPV4;
		key.port = htons(services[i].port);
		key.proto = services[i].proto;
		val.id = services[i].id;
		val.algorithm = SL_ALG_MAGLEV;
		for (size_t j = 0; j < NBACKENDS; j++)
			count += backends[j].svc == services[i].id;
		val.backend_count = count;
		val.panic_threshold_pct = 0; /* never in panic */
		snprintf(val.name, sizeof(val.name), "lb%u", services[i].id);
		if (bpf_map_update_elem(map_fd(skel->maps.sl_services), &key, &val, BPF_NOEXIST) ||
		    vip_filter_add(map_fd(skel->maps.sl_vip_filter), &key) ||
		    xdp_vips_add(map_fd(skel->maps.sl_xdp_vips), &key, &val)) {
			snprintf(load_error, sizeof(load_error), "sl_services update: %s",
				 strerror(errno));
			return -1;
		}
	}
	for (size_t j = 0; j < NBACKENDS; j++)
		if (put_backend(backends[j].id, backends[j].svc, backends[j].addr,
				SL_HEALTH_UNKNOWN)) {
			snprintf(load_error, sizeof(load_error), "sl_backends update: %s",
				 strerror(errno));
			return -1;
		}
	{
		static const __u32 l11[] = { 11, 12 }, l21[] = { 21, 22 }, l31[] = { 31, 32 },
				   l41[] = { 41, 42 }, l71[] = { 71 }, l81[] = { 81 },
				   l91[] = { 91 }, l121[] = { 121 }, l131[] = { 131 };
		bool ok = PUT_TABLE(SVC_T4, tab_t4, l11) && PUT_TABLE(SVC_U4, tab_u4, l21) &&
			  PUT_TABLE(SVC_T6, tab_t6, l31) && PUT_TABLE(SVC_U6, tab_u6, l41) &&
			  PUT_TABLE(SVC_FLOW, flow_all51, flow_list) &&
			  PUT_TABLE(SVC_PICK, pick_all61, pick_list) &&
			  PUT_TABLE(SVC_TX, l71, l71) && PUT_TABLE(SVC_NONEIGH, l81, l81) &&
			  PUT_TABLE(SVC_NOROUTE, l91, l91) && PUT_TABLE(SVC_NONEIGH6, l121, l121) &&
			  PUT_TABLE(SVC_NOROUTE6, l131, l131);

		if (!ok) {
			snprintf(load_error, sizeof(load_error), "cannot install the tables");
			return -1;
		}
	}
	return 0;
}

static int group_setup(void **state)
{
	struct statfs fs;

	(void)state;
	cur_case = "setup";
	if (geteuid() != 0) {
		snprintf(skip_reason, sizeof(skip_reason), "needs root (CAP_BPF, CAP_NET_ADMIN)");
		return 0;
	}
	if (statfs(BPFFS, &fs) || fs.f_type != BPF_FS_MAGIC) {
		snprintf(skip_reason, sizeof(skip_reason), "bpffs is not mounted at %s", BPFFS);
		return 0;
	}
	if (system("command -v ip >/dev/null 2>&1")) {
		snprintf(skip_reason, sizeof(skip_reason), "needs ip(8) (iproute2)");
		return 0;
	}
	if (make_topology())
		return 0;
	if (xdp_test_load("test-lb"))
		return 0;
	fill_maps();
	return 0;
}

static int group_teardown(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s", pin_root);
	cleanup();
	if (path[0] && !access(path, F_OK)) {
		print_error("test_xdp_lb: %s is still there\n", path);
		return -1;
	}
	return 0;
}

/* The cases, in order (they share the maps; each uses its own flows). */
static const struct {
	const char *name;
	CMUnitTestFunction fn;
} lb_cases[] = {
	{ "tcp4 syn to a vip: redirected to the table's backend on lbout", t_tcp4_syn },
	{ "udp4 to a vip: redirected; a second datagram hits the flow", t_udp4 },
	{ "tcp6 syn to a vip: redirected, hop limit - 1", t_tcp6_syn },
	{ "udp6 to a vip: redirected, hop limit - 1", t_udp6 },
	{ "tcp4 syns from 64 source ports: each to its slot's backend, both used", t_spread },
	{ "flow table: the ack of a flow hits it, same backend", t_flow_hit },
	{ "flow table: a new table keeps an existing flow; a syn picks anew", t_flow_table_swap },
	{ "flow table: a way two cpus wrote at once is a miss, then written whole", t_flow_torn_way },
	{ "flow table: a full bucket gives a new flow the index's least recently used way", t_flow_bucket_full },
	{ "flow table: a flow that starts again takes back the way its tag names", t_flow_own_way },
	{ "flow table: a packet in a later jiffy marks its way as recently used", t_flow_hit_marks_way_used },
	{ "flow table: a flow whose backend was deleted is chosen anew", t_flow_backend_gone },
	{ "flow table: a flow whose backend id now serves another service is chosen anew",
	  t_flow_backend_moved },
	{ "health: the first choice down: the scan's next usable backend", t_first_down },
	{ "breaker: first choice open (until later) or half-open: passed over", t_breaker_open },
	{ "breaker: open with open_until in the past: usable", t_breaker_expired },
	{ "no usable backend (down, open, half-open): XDP_DROP, dropped[no_backend]",
	  t_none_usable },
	{ "a service with an empty table, or none: XDP_DROP, dropped[no_backend]", t_empty_table },
	{ "backend reached through the ingress link: XDP_TX", t_xdp_tx },
	{ "ttl 1 or 0, hop limit 1: XDP_PASS, passed[ttl], frame unchanged", t_ttl },
	{ "backend without a route: XDP_PASS, passed[no_route]", t_no_route },
	{ "backend without a neighbour entry: XDP_PASS, passed[no_neighbor]", t_no_neighbor },
	{ "larger than lbout's mtu (1280): XDP_PASS, passed[frag_needed]", t_mtu },
	{ "802.1Q-tagged vip frame: XDP_PASS, passed[vlan], frame unchanged", t_vlan },
	{ "non-vip traffic: XDP_PASS, byte-identical, counted on id 0", t_non_vip },
	{ "syns cut at every length short of the whole: never forwarded, unchanged", t_truncated },
	{ "frames shorter than their IP length (payload or TCP options cut): XDP_DROP, dropped[malformed]",
	  t_short_of_ip_length },
	{ "ihl < 5, ipv4 fragments to the vip, garbage: never forwarded, unchanged", t_malformed },
	{ "source rate limit before forwarding: the second packet is dropped", t_source_limit },
	{ "syn limit before forwarding: over the burst, dropped", t_syn_limit },
	{ "sl_xdp_vips: a slot naming the vip is used; torn, another vip's, empty: sl_services",
	  t_vip_index },
	{ "sl_xdp_edge on a vip syn: XDP_PASS, unchanged, passed[not_forwarding]", t_edge },
	{ "route cache: filled from the FIB with the MTU, kept, asked again after expiry",
	  t_nexthop_cache },
	{ "IP forwarding off on the ingress: XDP_PASS, passed[forwarding_off]", t_forwarding_off },
};

#define NCASES (sizeof(lb_cases) / sizeof(lb_cases[0]))

static int test_xdp_lb(void)
{
	struct CMUnitTest tests[NCASES];

	/* The case's name is also its state: BEGIN() takes cur_case from it. */
	for (size_t i = 0; i < NCASES; i++)
		tests[i] = (struct CMUnitTest){ .name = lb_cases[i].name, .test_func = lb_cases[i].fn,
						.initial_state = (void *)lb_cases[i].name };
	return _cmocka_run_group_tests("test_xdp_lb", tests, NCASES, group_setup, group_teardown);
}

int main(void)
{
	return test_xdp_lb();
}
