/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP flow table: which backend each flow to a VIP was given, so that an
 * established flow keeps it while the service's backend set changes.
 *
 * sl_xdp_flows is an ARRAY of buckets of SL_FLOW_WAYS flows each; a flow
 * lives in the bucket its hash picks, and a new flow takes a free way of it
 * or else the way seen longest ago (least recently used, per bucket). A
 * lookup is an inlined array access and a few compares within one bucket;
 * an LRU hash map costs a bucket walk per lookup and, per new flow, an
 * allocation from its LRU lists under their locks, about 200 ns here.
 */
#ifndef SLUICE_FLOW_H
#define SLUICE_FLOW_H

#include "types.h"
#include "hash.h"

#define SL_XDP_FLOWS_DEFAULT 262144 /* flows; `sluicectl load --xdp-flows N` */
#define SL_FLOW_WAYS 4

/* A flow: the packet's 5-tuple as it arrives. Zero it whole first. */
struct sl_flow_key {
	struct sl_addr src;
	struct sl_addr dst; /* the VIP */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};
_Static_assert(sizeof(struct sl_flow_key) == 40, "ABI: sl_flow_key");

/* One way of a bucket: a cache line. */
struct sl_flow {
	struct sl_flow_key key;
	__u32 backend_id; /* 0: a free way */
	__u32 svc_id;	  /* the backend must still belong to it, or the flow is chosen anew */
	/*
	 * sl_flow_check() of the flow's hash, backend_id and svc_id. Ways are
	 * written without a lock; one that two CPUs wrote at once may mix
	 * their flows, and fails this check: it counts as a miss and is
	 * rewritten whole.
	 */
	__u32 check;
	__u32 seen; /* jiffies (low 32 bits) at the flow's last packet */
	__u64 reserved;
};
_Static_assert(sizeof(struct sl_flow) == 64, "ABI: sl_flow");

/* Value of sl_xdp_flows, indexed by sl_flow_bucket_of(). */
struct sl_flow_bucket {
	struct sl_flow way[SL_FLOW_WAYS];
};
_Static_assert(sizeof(struct sl_flow_bucket) == 256, "ABI: sl_flow_bucket");

/*
 * A flow's hash: the same on every CPU and every node (no seed), so nodes
 * agree on a new flow's backend (its low word picks the Maglev slot).
 */
static inline __u64 sl_flow_hash(const struct sl_flow_key *k)
{
	__u32 s = k->src.words[0] ^ k->src.words[1] ^ k->src.words[2] ^ k->src.words[3];
	__u32 d = k->dst.words[0] ^ k->dst.words[1] ^ k->dst.words[2] ^ k->dst.words[3];
	__u64 ports = (__u64)k->sport << 32 | (__u64)k->dport << 16 | k->proto;

	return sl_mix64(((__u64)s << 32 | d) ^ sl_mix64(ports));
}

/* The bucket of a flow of hash h in a table of `buckets` buckets (a power of two). */
static inline __u32 sl_flow_bucket_of(__u64 h, __u32 buckets)
{
	return (__u32)(h >> 32) & (buckets - 1);
}

static inline __u32 sl_flow_check(__u64 h, __u32 backend_id, __u32 svc_id)
{
	return (__u32)h ^ backend_id ^ (svc_id * 0x9e3779b1U);
}

#endif
