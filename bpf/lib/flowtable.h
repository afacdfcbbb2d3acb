/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sl_xdp_flows, the flow table (its layout and why: sluice/flow.h). Ways are
 * read and written without a lock or an atomic: a way that two CPUs wrote at
 * once fails its check and counts as a miss, and the packet's flow is chosen
 * again and rewritten whole.
 */
#ifndef SL_BPF_FLOWTABLE_H
#define SL_BPF_FLOWTABLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

/* The table's buckets: set by the loader to the size of the pinned map. */
const volatile __u32 flow_buckets = SL_XDP_FLOWS_DEFAULT / SL_FLOW_WAYS;

#define READ_ONCE_U32(x) (*(const volatile __u32 *)&(x))

static __always_inline struct sl_flow_bucket *flow_bucket(__u64 h)
{
	__u32 i = sl_flow_bucket_of(h, flow_buckets);

	return bpf_map_lookup_elem(&sl_xdp_flows, &i);
}

/* Both keys 8-byte aligned (ways are; callers align theirs): five 64-bit compares. */
static __always_inline int flow_key_equal(const struct sl_flow_key *a, const struct sl_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]));
}

/* A flow found: its backend and service as one consistent read of its way. */
struct flow_hit {
	struct sl_flow *way;
	__u32 backend_id;
	__u32 svc_id;
};

/* Whether bucket b holds the flow key of hash h, whole; fills *hit. */
static __always_inline int flow_find(struct sl_flow_bucket *b, const struct sl_flow_key *key,
				     __u64 h, struct flow_hit *hit)
{
#pragma unroll
	for (int w = 0; w < SL_FLOW_WAYS; w++) {
		struct sl_flow *f = &b->way[w];
		__u32 id, svc_id;

		if (!flow_key_equal(&f->key, key))
			continue;
		id = READ_ONCE_U32(f->backend_id);
		svc_id = READ_ONCE_U32(f->svc_id);
		if (!id || READ_ONCE_U32(f->check) != sl_flow_check(h, id, svc_id))
			return 0;
		hit->way = f;
		hit->backend_id = id;
		hit->svc_id = svc_id;
		return 1;
	}
	return 0;
}

/* A packet of the flow in way f: it is the least likely to be evicted next. */
static __always_inline void flow_seen(struct sl_flow *f, __u32 now)
{
	if (f->seen != now) /* keeps the line clean while the jiffy lasts */
		f->seen = now;
}

/*
 * Gives flow key (hash h) backend id of service svc_id in bucket b: over the
 * flow's own way, or else a free one, or else the one seen longest ago.
 */
static __always_inline void flow_remember(struct sl_flow_bucket *b, const struct sl_flow_key *key,
					  __u64 h, __u32 svc_id, __u32 id, __u32 now)
{
	struct sl_flow *victim = &b->way[0];
	__u32 oldest = 0;

#pragma unroll
	for (int w = 0; w < SL_FLOW_WAYS; w++) {
		struct sl_flow *f = &b->way[w];
		__s32 seen_ago = (__s32)(now - f->seen); /* < 0: seen on a CPU whose jiffy came later */
		__u32 age = !f->backend_id ? 0xffffffff : seen_ago > 0 ? (__u32)seen_ago : 0;

		if (flow_key_equal(&f->key, key)) {
			victim = f;
			break;
		}
		if (age >= oldest) {
			oldest = age;
			victim = f;
		}
	}
	victim->key = *key;
	victim->backend_id = id;
	victim->svc_id = svc_id;
	victim->check = sl_flow_check(h, id, svc_id);
	victim->seen = now;
}

#endif
