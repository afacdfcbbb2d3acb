/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef SL_BPF_SELECT_H
#define SL_BPF_SELECT_H

#include "maps.h"
#include "hash.h"

/* Next round-robin position of a service; shared by all CPUs, hence atomic. */
static __always_inline __u32 rr_next(__u32 svc_id)
{
	__u32 *pos = bpf_map_lookup_elem(&sl_rr, &svc_id);

	if (!pos)
		return bpf_get_prandom_u32();
	return __sync_fetch_and_add(pos, 1);
}

/*
 * Picks a backend id for svc from its selection table. client_hash matters
 * only to maglev. Returns the backend id, or 0 when the service has no
 * backend (no table, or an empty one).
 */
static __always_inline __u32 select_backend(const struct sl_service *svc, __u64 client_hash)
{
	__u32 zero = 0, svc_id = svc->id, n, pick, idx;
	__u32 *count, *id;
	void *slots;

	slots = bpf_map_lookup_elem(&sl_svc_slots, &svc_id);
	if (!slots)
		return 0;
	count = bpf_map_lookup_elem(slots, &zero);
	if (!count)
		return 0;
	/* Read once: the table is immutable, but the verifier wants one value. */
	n = *count;
	if (n == 0)
		return 0;

	switch (svc->algorithm) {
	case SL_ALG_ROUND_ROBIN:
	case SL_ALG_WEIGHTED: /* a weighted table is already interleaved by weight */
		pick = rr_next(svc_id);
		break;
	case SL_ALG_MAGLEV:
		pick = (__u32)client_hash;
		break;
	default:
		pick = bpf_get_prandom_u32();
		break;
	}
	idx = 1 + pick % n;
	id = bpf_map_lookup_elem(slots, &idx);
	return id ? *id : 0;
}

static __always_inline void count_selected(__u32 svc_id, __u32 backend_id)
{
	struct sl_svc_stats *ss = bpf_map_lookup_elem(&sl_svc_stats, &svc_id);
	struct sl_be_stats *bs = bpf_map_lookup_elem(&sl_be_stats, &backend_id);

	/* Per-CPU values: plain increments are race-free. */
	if (ss)
		ss->selected++;
	if (bs)
		bs->selected++;
}

static __always_inline void count_refused(__u32 svc_id, __u32 reason)
{
	struct sl_svc_stats *ss = bpf_map_lookup_elem(&sl_svc_stats, &svc_id);

	if (ss && reason < SL_REASON_COUNT)
		ss->refused[reason]++;
}

#endif
