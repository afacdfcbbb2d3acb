/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sl_xdp_flows, the flow table, and sl_xdp_flow_idx, its ways' tags and
 * recency (their layout and why: sluice/flow.h). Ways and index words are
 * read and written without a lock: a way that two CPUs wrote at once
 * matches neither flow and counts as a miss, and the packet's flow is
 * chosen again and rewritten whole; an index word two new flows wrote at
 * once keeps one of their tags, and the other flow's way may then be taken
 * early by a later new flow of that bucket (an early eviction).
 */
#ifndef SL_BPF_FLOWTABLE_H
#define SL_BPF_FLOWTABLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

/* The table's buckets: set by the loader to the size of the pinned map. */
const volatile __u32 flow_buckets = SL_XDP_FLOWS_DEFAULT / SL_FLOW_WAYS;
/* The table's fingerprint seed: set by the loader from sl_xdp_fp_seed. */
const volatile __u64 flow_seed;

#define READ_ONCE_U32(x) (*(const volatile __u32 *)&(x))

static __always_inline __u32 flow_bucket_index(__u64 h)
{
	return sl_flow_bucket_of(h, flow_buckets);
}

static __always_inline struct sl_flow_bucket *flow_bucket(__u32 i)
{
	return bpf_map_lookup_elem(&sl_xdp_flows, &i);
}

/* The index word of bucket i, or NULL. */
static __always_inline __u32 *flow_index_word(__u32 i)
{
	__u32 entry = i / SL_FLOW_INDEX_WORDS;
	struct sl_flow_index *ix = bpf_map_lookup_elem(&sl_xdp_flow_idx, &entry);

	return ix ? &ix->word[i & (SL_FLOW_INDEX_WORDS - 1)] : NULL;
}

static __always_inline __u64 flow_fp(const struct sl_flow_key *key)
{
	return sl_flow_fp(key, flow_seed);
}

/* A flow found: its way, and its backend and service as one consistent read of it. */
struct flow_hit {
	struct sl_flow *way;
	__u32 bucket;
	__u32 way_no;
	__u32 backend_id;
	__u32 svc_id;
};

/* Whether bucket b (number i) holds the flow key of fingerprint fp; fills *hit. */
static __always_inline int flow_find(struct sl_flow_bucket *b, __u32 i, __u64 fp,
				     struct flow_hit *hit)
{
#pragma unroll
	for (int w = 0; w < SL_FLOW_WAYS; w++) {
		struct sl_flow *f = &b->way[w];
		__u32 id = READ_ONCE_U32(f->backend_id), svc_id = *(volatile __u16 *)&f->svc_id;

		if (!sl_flow_holds(*(volatile __u64 *)&f->fp, id, svc_id, fp))
			continue;
		hit->way = f;
		hit->bucket = i;
		hit->way_no = w;
		hit->backend_id = id;
		hit->svc_id = svc_id;
		return 1;
	}
	return 0;
}

/*
 * A packet of the flow found: its way becomes the bucket's most recently
 * used, once per jiffy (the line stays clean while the jiffy lasts).
 */
static __always_inline void flow_seen(const struct flow_hit *hit, __u32 now)
{
	__u32 *ix, word, flip;

	if (hit->way->seen == (__u16)now)
		return;
	hit->way->seen = now;
	ix = flow_index_word(hit->bucket);
	if (!ix)
		return;
	word = READ_ONCE_U32(*ix);
	flip = (word ^ sl_flow_plru_used(hit->way_no)) & sl_flow_plru_mask(hit->way_no);
	if (flip)
		__sync_fetch_and_xor(ix, flip);
}

/*
 * Gives flow key (hash h) backend id of service svc_id: the way the index
 * names for it (sl_flow_way_for) is written whole, without reading the
 * bucket. word is the bucket's index word *ix, read by the caller before it
 * chose the backend, so that the index line's likely cache miss overlaps
 * the Maglev slot's (about 13 ns less per new flow than reading it here).
 */
static __always_inline void flow_remember(const struct sl_flow_key *key, __u64 h, __u32 svc_id,
					  __u32 id, __u32 now, __u32 *ix, __u32 word)
{
	__u32 i = flow_bucket_index(h), tag = sl_flow_tag(h), w;
	struct sl_flow_bucket *b = flow_bucket(i);
	struct sl_flow *f;

	if (!b || !ix)
		return;
	w = sl_flow_way_for(word, tag);
	f = &b->way[w & (SL_FLOW_WAYS - 1)];
	f->fp = flow_fp(key) ^ sl_flow_bind(id, svc_id);
	f->backend_id = id;
	f->svc_id = svc_id;
	f->seen = now;
	*ix = sl_flow_index_took(word, w, tag);
}

#endif
