/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP at the node's edge: per-source packet limits, per-VIP SYN limits,
 * load balancing of VIP traffic by direct server return, and counters per
 * VIP and per backend.
 */
#ifndef SLUICE_XDP_H
#define SLUICE_XDP_H

#include "types.h"
#include "service.h"
#include "backend.h"

#define SL_XDP_SOURCES_DEFAULT 262144

/* The registry's "global": {"xdp": {...}}: one entry of sl_xdp_cfg. 0 = unlimited. */
struct sl_xdp_cfg {
	__u32 source_packets_per_second;
	__u32 source_burst;
};
_Static_assert(sizeof(struct sl_xdp_cfg) == 8, "ABI: sl_xdp_cfg");

/* Key of sl_xdp_src (LRU): one packet bucket (struct sl_rl_bucket) per source address. */
struct sl_xdp_src_key {
	struct sl_addr addr;
	__u8 family;
	__u8 pad[3];
};
_Static_assert(sizeof(struct sl_xdp_src_key) == 20, "ABI: sl_xdp_src_key");

/* Why XDP dropped a packet; named by sl_xdp_drop_name(). */
enum sl_xdp_drop {
	SL_XDP_DROP_SOURCE_RATE = 0, /* its source sent over source_packets_per_second */
	SL_XDP_DROP_SYN_RATE = 1,    /* a SYN over its VIP's syn_per_second */
	SL_XDP_DROP_NO_BACKEND = 2,  /* a new flow to a VIP with no usable backend */
	SL_XDP_DROP_MALFORMED = 3,   /* to a VIP, but shorter than its IP header says */
	SL_XDP_DROP_COUNT = 4,
};

/*
 * Why a packet to a VIP was handed to the kernel's stack instead of being
 * forwarded; named by sl_xdp_pass_name(). The stack then does what it would
 * have done without sluice (send ICMP, resolve, route or drop).
 */
enum sl_xdp_pass {
	SL_XDP_PASS_TTL = 0,		/* TTL / hop limit would expire: the stack answers ICMP */
	SL_XDP_PASS_NO_ROUTE = 1,	/* no route from this node to the backend */
	SL_XDP_PASS_NO_NEIGHBOR = 2,	/* the backend's MAC is not resolved yet */
	SL_XDP_PASS_FRAG_NEEDED = 3,	/* larger than the egress MTU */
	SL_XDP_PASS_NOT_FORWARDING = 4, /* attached with --no-forward (limits only) */
	SL_XDP_PASS_VLAN = 5,		/* VLAN-tagged: the tag's network is not known here */
	SL_XDP_PASS_FORWARDING_OFF = 6, /* IP forwarding is off on the interface */
	SL_XDP_PASS_COUNT = 8,
};

/*
 * sl_xdp's per-CPU state (sl_xdp_stats, sl_xdp_backend) is
 * kept in plain ARRAYs of one block per possible CPU, sized at load: the
 * entry of id on CPU cpu is key cpu * stride + id, stride being the id space
 * (SL_MAX_SERVICES or SL_MAX_BACKENDS). A CPU writes only its own block, so
 * plain increments stay race-free, as in a PERCPU_ARRAY; but a PERCPU_ARRAY's
 * values live in the per-CPU area, a region of its own, and the first touch
 * of it cost a packet about 27 ns here (a page walk through cold page-table
 * levels: README, "Cost per packet"), a quarter of a flow-table hit.
 */
#define SL_XDP_STATS_STRIDE SL_MAX_SERVICES
#define SL_XDP_BE_STRIDE SL_MAX_BACKENDS

static inline __u32 sl_xdp_cpu_key(__u32 cpu, __u32 id, __u32 stride)
{
	return cpu * stride + id;
}

/* The maps of CPU blocks and their strides: what the loader (and the tests) size. */
struct sl_xdp_cpu_map {
	const char *name;
	__u32 stride;
};
#define SL_XDP_CPU_MAPS                                                                      \
	{                                                                                    \
		{ "sl_xdp_stats", SL_XDP_STATS_STRIDE }, { "sl_xdp_backend", SL_XDP_BE_STRIDE }, \
	}

/*
 * Value of sl_xdp_stats (per CPU, above; by service id, 0 counting packets
 * to no VIP). Packets that reach XDP, by VIP. Flow-table hits and
 * misses count lookups: a TCP SYN opens a new flow without one.
 */
struct sl_xdp_stats {
	__u64 packets;
	__u64 bytes;
	__u64 syns;
	__u64 dropped[SL_XDP_DROP_COUNT];
	__u64 forwarded;     /* sent to a backend */
	__u64 forwarded_bytes;
	__u64 new_flows;     /* flows given a backend (then written to sl_xdp_flows) */
	__u64 flow_hits;
	__u64 flow_misses;
	__u64 passed[SL_XDP_PASS_COUNT];
};
_Static_assert(sizeof(struct sl_xdp_stats) == 160, "ABI: sl_xdp_stats");

/* What XDP sent a backend, per CPU: the counters of its sl_xdp_backend entry (below). */
struct sl_xdp_be_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};
_Static_assert(sizeof(struct sl_xdp_be_stats) == 24, "ABI: sl_xdp_be_stats");

/*
 * Value of sl_vip_filter (ARRAY, one entry): a bit per hashed destination
 * (address, port) that some VIP uses. A packet whose bit is clear is no
 * VIP's, and sl_xdp skips the service and flow lookups for it; a set bit may
 * be a false positive (about one in 131,072 / the number of VIP:ports),
 * never a false negative (the reconciler writes the union of the old and
 * new sets first, then the new one). One bit, so a packet reads one word:
 * a page of its own costs a page walk per packet here ("Cost per packet" in
 * the README); separate address and port sets cost two.
 */
#define SL_VIP_FILTER_WORDS 2048 /* 131,072 bits */

struct sl_vip_filter {
	__u64 bits[SL_VIP_FILTER_WORDS];
};

/* The bit of destination (address, port in network order): the same hash on both sides of the ABI. */
static inline __u32 sl_vip_filter_bit(const struct sl_addr *a, __u16 port_be)
{
	__u32 x = a->words[0] ^ a->words[1] ^ a->words[2] ^ a->words[3];

	x = (x ^ ((__u32)port_be << 16 | port_be)) * 0x9e3779b1U;
	return (x ^ x >> 15) & (SL_VIP_FILTER_WORDS * 64 - 1);
}

static inline int sl_vip_filter_has(const struct sl_vip_filter *f, __u32 bit)
{
	return f->bits[(bit >> 6) & (SL_VIP_FILTER_WORDS - 1)] >> (bit & 63) & 1;
}

/* Marks a VIP (address, port in network order) in the filter; the reconciler's and the tests' one way. */
static inline void sl_vip_filter_mark(struct sl_vip_filter *f, const struct sl_addr *vip,
				      __u16 port_be)
{
	__u32 bit = sl_vip_filter_bit(vip, port_be);

	f->bits[(bit >> 6) & (SL_VIP_FILTER_WORDS - 1)] |= 1ULL << (bit & 63);
}

/*
 * Value of sl_xdp_vips (ARRAY of SL_XDP_VIP_SLOTS, slot sl_xdp_vip_slot()):
 * what a new flow at XDP needs of its service, found by an inlined array
 * read instead of a hash lookup in sl_services, which measured about 50 ns
 * more per SYN here (a helper call, jhash and a page walk for its bucket
 * array). The reconciler writes it from sl_services around each apply, a
 * load rewrites it; sl_services stays the truth: a packet whose slot does
 * not name its VIP whole (an empty slot, one two VIP:ports share, a VIP
 * just added, an entry caught mid-write, whose check fails) is looked up
 * there.
 */
#define SL_XDP_VIP_SLOTS 65536

struct sl_xdp_vip {
	struct sl_svc_key key;
	__u32 svc_id; /* 0: the slot names no VIP */
	__u32 syn_per_second;
	__u32 syn_burst;
	__u32 check; /* sl_xdp_vip_check() of the fields above */
	__u32 pad;
};
_Static_assert(sizeof(struct sl_xdp_vip) == 40, "ABI: sl_xdp_vip");

/* A VIP's slot, from its filter bit: one hash for both. */
static inline __u32 sl_xdp_vip_slot(__u32 filter_bit)
{
	return filter_bit & (SL_XDP_VIP_SLOTS - 1);
}

/*
 * A check over the entry's first 32 bytes. Slots are written without a lock;
 * a read that catches one mid-write mixes two entries and fails it (but for
 * one chance in 2^32). Each word has its own odd multiplier and the products
 * are summed, so the CPU computes them side by side: a chained hash measured
 * ~15 ns more per SYN.
 */
static inline __u32 sl_xdp_vip_check(const struct sl_xdp_vip *v)
{
	const __u32 *w = (const __u32 *)v;
	__u32 x = (w[0] * 0x9e3779b1U + w[1] * 0x85ebca77U) + (w[2] * 0xc2b2ae3dU + w[3] * 0x27d4eb2fU) +
		  (w[4] * 0x165667b1U + w[5] * 0xd3a2646dU) + (w[6] * 0xfd7046c5U + w[7] * 0xb55a4f09U);

	return x ^ x >> 16;
}

/* The entry of service svc at VIP key, its check made. */
static inline struct sl_xdp_vip sl_xdp_vip_of(const struct sl_svc_key *key,
					      const struct sl_service *svc)
{
	struct sl_xdp_vip v = {
		.key = *key,
		.svc_id = svc->id,
		.syn_per_second = svc->syn_per_second,
		.syn_burst = svc->syn_burst,
	};

	v.check = sl_xdp_vip_check(&v);
	return v;
}

/*
 * What the kernel's FIB said about reaching a backend, kept for a while so
 * that a packet does not pay for a FIB and neighbour lookup (a few hundred
 * ns with cold caches). Per CPU, so a refill never races a reader.
 */
struct sl_xdp_nexthop {
	__u64 expires; /* jiffies; 0: empty */
	__u32 ifindex; /* egress interface */
	__u32 mtu;     /* of the route to the backend */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 pad[4];
};
_Static_assert(sizeof(struct sl_xdp_nexthop) == 32, "ABI: sl_xdp_nexthop");

/*
 * Value of sl_xdp_backend (per CPU, above; by backend id): the CPU's
 * counters of what it sent the backend and its cached route, in one 64-byte
 * entry, so that a forwarded packet touches one page for both (a page is a
 * page walk per packet here: README, "Cost per packet").
 */
struct sl_xdp_backend {
	struct sl_xdp_be_stats stats;
	__u64 pad;
	struct sl_xdp_nexthop route;
};
_Static_assert(sizeof(struct sl_xdp_backend) == 64, "ABI: sl_xdp_backend");

#endif
