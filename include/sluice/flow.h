/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP flow table: which backend each flow to a VIP was given, so that an
 * established flow keeps it while the service's backend set changes.
 *
 * sl_xdp_flows is an ARRAY of buckets of SL_FLOW_WAYS flows each; a flow
 * lives in the bucket its hash picks. A lookup is an inlined array access
 * and a few compares within one bucket; an LRU hash map costs a bucket walk
 * per lookup and, per new flow, an allocation from its LRU lists under their
 * locks, about 200 ns here.
 *
 * A way holds the flow's 64-bit fingerprint, not its 5-tuple: 16 bytes, so a
 * bucket is one cache line and the default table 4 MB instead of 16. A new
 * flow writes a random line of it, and the store waits for a page walk
 * whose page-table entries are more often cached in a smaller table: about
 * 35 ns less per new flow here (paired runs). The fingerprint is a seeded hash of the
 * whole 5-tuple (sl_flow_fp; the seed is the table's, sl_xdp_fp_seed), so
 * two flows share one by chance once in 2^64 lookups, and nobody without
 * the seed can make one share another's.
 *
 * sl_xdp_flow_idx holds one word per bucket, 16 to an entry (struct
 * sl_flow_index): a tag of each way's flow and the ways' recency, so that a
 * new flow chooses its way without reading the bucket. A random line of the
 * table costs a memory access the CPU waits for, while a store alone is not
 * waited for: writing the way unread measured about 120 ns less per new
 * flow here, and 50-70 ns less with the index read in its place. A new flow
 * takes the way tagged as its own (the same flow starting again), else a
 * free way, else the least recently used one as a 4-way tree pseudo-LRU
 * reckons it (never the most recently used way).
 */
#ifndef SLUICE_FLOW_H
#define SLUICE_FLOW_H

#include "types.h"
#include "hash.h"
#include "service.h"

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

/* One way of a bucket. */
struct sl_flow {
	/*
	 * sl_flow_fp() of the flow xor sl_flow_bind(backend_id, svc_id). Ways
	 * are written without a lock; one that two CPUs wrote at once may mix
	 * their flows, and then matches neither: it counts as a miss and is
	 * rewritten whole.
	 */
	__u64 fp;
	__u32 backend_id; /* 0: a free way */
	__u16 svc_id;	  /* the backend must still belong to it, or the flow is chosen anew */
	__u16 seen;	  /* jiffies (low 16 bits) at the flow's last packet */
};
_Static_assert(sizeof(struct sl_flow) == 16, "ABI: sl_flow");
_Static_assert(SL_MAX_SERVICES <= 65536, "sl_flow.svc_id holds every service id");

/* Value of sl_xdp_flows, indexed by sl_flow_bucket_of(): one cache line. */
struct sl_flow_bucket {
	struct sl_flow way[SL_FLOW_WAYS];
};
_Static_assert(sizeof(struct sl_flow_bucket) == 64, "ABI: sl_flow_bucket");

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

/*
 * A flow's fingerprint: its whole 5-tuple (five 64-bit words, key zeroed
 * first) hashed with the table's seed, each word through a multiply so that
 * every bit reaches the result. Not 0 for a real flow but by a 2^-64 chance.
 */
static inline __u64 sl_flow_fp(const struct sl_flow_key *k, __u64 seed)
{
	const __u64 *w = (const __u64 *)k;
	__u64 x = seed;

	x = (x ^ w[0]) * 0x9e3779b97f4a7c15ULL;
	x = (x ^ x >> 29 ^ w[1]) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ x >> 29 ^ w[2]) * 0x94d049bb133111ebULL;
	x = (x ^ x >> 29 ^ w[3]) * 0x9e3779b97f4a7c15ULL;
	x = (x ^ x >> 29 ^ w[4]) * 0xbf58476d1ce4e5b9ULL;
	return x ^ x >> 31;
}

/* What a way's fp carries of its backend and service: distinct for every pair. */
static inline __u64 sl_flow_bind(__u32 backend_id, __u32 svc_id)
{
	return ((__u64)svc_id << 32 | backend_id) * 0xff51afd7ed558ccdULL;
}

/* Whether a way read as (way_fp, backend_id, svc_id) holds the flow of fingerprint fp. */
static inline int sl_flow_holds(__u64 way_fp, __u32 backend_id, __u32 svc_id, __u64 fp)
{
	return backend_id && (way_fp ^ fp) == sl_flow_bind(backend_id, svc_id);
}

/*
 * A bucket's index word: bits 7w..7w+6 the tag of way w
 * (0: the way holds no flow), bits 28..30 the pseudo-LRU tree: bit 28 picks
 * the half a victim comes from (0: ways 0-1, 1: ways 2-3), bit 29 the way of
 * the first half (0: way 0), bit 30 that of the second (0: way 2). Read and
 * written as one word; a packet that only marks its way as used flips tree
 * bits alone (an atomic xor), so it never undoes a concurrent new flow's tag.
 */
#define SL_FLOW_TAG_BITS 7
#define SL_FLOW_TAG_MASK ((1U << SL_FLOW_TAG_BITS) - 1)
#define SL_FLOW_PLRU_SHIFT 28
#define SL_FLOW_PLRU_MASK (7U << SL_FLOW_PLRU_SHIFT)

/*
 * Value of sl_xdp_flow_idx: the words of 16 buckets, one cache line (an
 * array map would pad a lone 4-byte value to 8 bytes).
 */
#define SL_FLOW_INDEX_WORDS 16
struct sl_flow_index {
	__u32 word[SL_FLOW_INDEX_WORDS];
};
_Static_assert(sizeof(struct sl_flow_index) == 64, "ABI: sl_flow_index");

/* The entries of sl_xdp_flow_idx for a table of `buckets` buckets (a power of two). */
static inline __u32 sl_flow_index_entries(__u32 buckets)
{
	return buckets < SL_FLOW_INDEX_WORDS ? 1 : buckets / SL_FLOW_INDEX_WORDS;
}

/* A flow's tag: hash bits the bucket index does not use, never 0. */
static inline __u32 sl_flow_tag(__u64 h)
{
	__u32 t = (__u32)h & SL_FLOW_TAG_MASK;

	return t ? t : 1;
}

static inline __u32 sl_flow_index_tag(__u32 word, unsigned int way)
{
	return (__u32)(word >> (way * SL_FLOW_TAG_BITS)) & SL_FLOW_TAG_MASK;
}

/* The tree bits that make way the most recently used one. */
static inline __u32 sl_flow_plru_used(unsigned int way)
{
	__u32 bits = way < 2 ? 1U | (__u32)(way == 0) << 1 : (__u32)(way == 2) << 2;

	return bits << SL_FLOW_PLRU_SHIFT;
}

/* Which of the tree bits sl_flow_plru_used(way) sets or clears. */
static inline __u32 sl_flow_plru_mask(unsigned int way)
{
	return (way < 2 ? 3U : 5U) << SL_FLOW_PLRU_SHIFT;
}

/* The tree's least recently used way. */
static inline unsigned int sl_flow_plru_victim(__u32 word)
{
	__u32 t = word >> SL_FLOW_PLRU_SHIFT;

	return t & 1 ? 2 + (t >> 2 & 1) : t >> 1 & 1;
}

/* The way a new flow of tag takes: its own, else a free one, else the victim. */
static inline unsigned int sl_flow_way_for(__u32 word, __u32 tag)
{
	unsigned int free = SL_FLOW_WAYS;

	for (unsigned int w = 0; w < SL_FLOW_WAYS; w++) {
		__u32 t = sl_flow_index_tag(word, w);

		if (t == tag)
			return w;
		if (!t && free == SL_FLOW_WAYS)
			free = w;
	}
	return free < SL_FLOW_WAYS ? free : sl_flow_plru_victim(word);
}

/* word after a new flow of tag took way: its tag set, the way the most recently used. */
static inline __u32 sl_flow_index_took(__u32 word, unsigned int way, __u32 tag)
{
	word &= ~(SL_FLOW_TAG_MASK << (way * SL_FLOW_TAG_BITS)) & ~sl_flow_plru_mask(way);
	return word | tag << (way * SL_FLOW_TAG_BITS) | sl_flow_plru_used(way);
}

#endif
