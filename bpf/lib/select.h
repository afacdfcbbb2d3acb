/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Backend selection: the algorithm's first choice from the service's table,
 * then, if that backend may not take the connection (down, breaker open, at
 * max_connections), a scan of the service's backend list. In panic (fewer
 * than panic_threshold_percent of backends un-ejected) health and breakers
 * are ignored, as in Envoy; max_connections never is.
 */
#ifndef SL_BPF_SELECT_H
#define SL_BPF_SELECT_H

#include "maps.h"
#include "sluice/hash.h"
#include "breaker.h"

/* What select_backend decided. */
struct choice {
	__u32 id;     /* 0: refused */
	__u32 reason; /* enum sl_reason, when refused */
	int probe;    /* admitted as a half-open probe */
	int panic;
};

/* What a candidate check needs, by value: bpf_loop callbacks get it through the stack. */
struct pick_ctx {
	__u32 svc_id;
	__u32 max_connections;
	__u32 half_open_max;
	__u32 list_base; /* index of the first backend id of the list in the table */
	__u32 list_len;
	__u32 start;
	__u32 skipped_mask; /* 1 << reason for every candidate passed over */
	int panic;
	struct choice out;
};

/* Next round-robin position of a service; shared by all CPUs, hence atomic. */
static __always_inline __u32 rr_next(__u32 svc_id)
{
	__u32 *pos = bpf_map_lookup_elem(&sl_rr, &svc_id);

	if (!pos)
		return bpf_get_prandom_u32();
	return __sync_fetch_and_add(pos, 1);
}

static __always_inline __u32 slot_at(void *slots, __u32 idx)
{
	__u32 *id = bpf_map_lookup_elem(slots, &idx);

	return id ? *id : 0;
}

/*
 * Whether backend id may take a new connection. Returns 1, or 0 with the
 * reason in *reason. The breaker check goes last: admitting a probe counts.
 */
static __always_inline int backend_usable(struct pick_ctx *p, __u32 id, int *probe, __u32 *reason)
{
	struct sl_backend *be = bpf_map_lookup_elem(&sl_backends, &id);

	*probe = 0;
	if (!be || be->svc_id != p->svc_id) {
		*reason = SL_REASON_NONE_USABLE;
		return 0;
	}
	if (p->max_connections && live_count(id) >= p->max_connections) {
		*reason = SL_REASON_MAX_CONNECTIONS;
		return 0;
	}
	if (!p->panic && be->health == SL_HEALTH_DOWN) {
		*reason = SL_REASON_UNHEALTHY;
		return 0;
	}
	/*
	 * In panic an open backend is used anyway, but its breaker still runs:
	 * it turns HALF_OPEN on time and admits probes, so it can close again and
	 * end the panic.
	 */
	if (!breaker_admit(id, p->half_open_max, probe) && !p->panic) {
		*reason = SL_REASON_BREAKER_OPEN;
		return 0;
	}
	return 1;
}

/* Tries one candidate; on success fills p->out. Returns 1 when taken. */
static __always_inline int try_candidate(struct pick_ctx *p, __u32 id)
{
	struct sl_be_stats *bs;
	__u32 reason = 0;
	int probe;

	if (!id)
		return 0;
	if (backend_usable(p, id, &probe, &reason)) {
		p->out.id = id;
		p->out.probe = probe;
		return 1;
	}
	p->skipped_mask |= 1U << (reason & 31);
	bs = be_stats(id);
	if (bs && reason < SL_REASON_COUNT)
		bs->skipped[reason]++;
	return 0;
}

static long scan_one(__u32 i, void *data)
{
	struct pick_ctx *p = data;
	__u32 svc_id = p->svc_id, idx;
	void *slots;

	if (!p->list_len)
		return 1;
	slots = bpf_map_lookup_elem(&sl_svc_slots, &svc_id);
	if (!slots)
		return 1;
	idx = p->list_base + (p->start + i) % p->list_len;
	return try_candidate(p, slot_at(slots, idx));
}

/* least_conn: two random backends of the list, the one with fewer live connections first. */
static __always_inline int try_two_choices(struct pick_ctx *p, void *slots)
{
	__u32 a, b, tmp;

	if (!p->list_len)
		return 0;
	a = slot_at(slots, p->list_base + bpf_get_prandom_u32() % p->list_len);
	b = slot_at(slots, p->list_base + bpf_get_prandom_u32() % p->list_len);
	if (live_count(b) < live_count(a)) {
		tmp = a;
		a = b;
		b = tmp;
	}
	return try_candidate(p, a) || (b != a && try_candidate(p, b));
}

/* Panic: fewer than panic_threshold_pct of the backends are neither ejected nor down. */
static __always_inline int svc_in_panic(const struct sl_service *svc)
{
	__u32 svc_id = svc->id, usable = svc->backend_count, out = svc->unhealthy_count;
	struct sl_svc_state *st = bpf_map_lookup_elem(&sl_svc_state, &svc_id);

	if (st)
		out += st->ejected;
	usable = out < usable ? usable - out : 0;
	return (__u64)usable * 100 < (__u64)svc->panic_threshold_pct * svc->backend_count;
}

/* Session affinity: the backend this client got last, if recent and still usable. */
static __always_inline int try_affinity(struct pick_ctx *p, const struct sl_service *svc,
					__u64 client, __u64 now)
{
	struct sl_affinity_key key = { .client = client, .svc_id = svc->id };
	struct sl_affinity *a = bpf_map_lookup_elem(&sl_affinity, &key);

	if (!a || now - a->last_used_ns > (__u64)svc->affinity_timeout_s * 1000000000ULL)
		return 0;
	return try_candidate(p, a->backend_id);
}

static __always_inline void remember_affinity(const struct sl_service *svc, __u64 client,
					      __u32 id, __u64 now)
{
	struct sl_affinity_key key = { .client = client, .svc_id = svc->id };
	struct sl_affinity val = { .last_used_ns = now, .backend_id = id };

	bpf_map_update_elem(&sl_affinity, &key, &val, BPF_ANY);
}

/* The algorithm's first choice from the table of T slots. */
static __always_inline __u32 first_choice(const struct sl_service *svc, void *slots, __u32 n,
					  __u64 client)
{
	__u32 pick;

	switch (svc->algorithm) {
	case SL_ALG_ROUND_ROBIN:
	case SL_ALG_WEIGHTED: /* a weighted table is already interleaved by weight */
		pick = rr_next(svc->id);
		break;
	case SL_ALG_MAGLEV:
		pick = (__u32)client;
		break;
	default:
		pick = bpf_get_prandom_u32();
		break;
	}
	return slot_at(slots, 1 + pick % n);
}

/*
 * Picks a backend for svc. client (a hash of the client identity) matters to
 * maglev and affinity. Fills out; out->id == 0 means refuse, for out->reason.
 */
static __always_inline void select_backend(const struct sl_service *svc, __u64 client,
					   struct choice *out)
{
	struct pick_ctx p = {
		.svc_id = svc->id,
		.max_connections = svc->max_connections,
		.half_open_max = svc->half_open_max,
		.out.reason = SL_REASON_NO_BACKEND,
	};
	__u32 zero = 0, svc_id = svc->id, n, *count;
	__u64 now = 0;
	void *slots;

	slots = bpf_map_lookup_elem(&sl_svc_slots, &svc_id);
	count = slots ? bpf_map_lookup_elem(slots, &zero) : NULL;
	if (!count || *count == 0)
		goto out;
	n = *count;
	p.list_base = n + 2;
	p.panic = svc_in_panic(svc);
	p.out.panic = p.panic;

	if (svc->affinity_timeout_s) {
		now = bpf_ktime_get_ns();
		if (try_affinity(&p, svc, client, now))
			goto chosen;
	}
	/* The backend list is read only when the first choice is not enough. */
	if (svc->algorithm == SL_ALG_LEAST_CONN) {
		p.list_len = slot_at(slots, n + 1);
		if (try_two_choices(&p, slots))
			goto chosen;
	} else if (try_candidate(&p, first_choice(svc, slots, n, client))) {
		goto chosen;
	}
	/* Fallback: every backend once, from a start that spreads (or, for maglev, keeps) clients. */
	p.list_len = slot_at(slots, n + 1);
	p.start = svc->algorithm == SL_ALG_MAGLEV ? (__u32)(client >> 32) : bpf_get_prandom_u32();
	if (p.list_len && p.list_len <= SL_MAX_BACKENDS_PER_SVC)
		bpf_loop(p.list_len, scan_one, &p, 0);
	if (p.out.id)
		goto chosen;

	if (p.skipped_mask == 1U << SL_REASON_MAX_CONNECTIONS)
		p.out.reason = SL_REASON_MAX_CONNECTIONS;
	else if (p.skipped_mask == 1U << SL_REASON_BREAKER_OPEN)
		p.out.reason = SL_REASON_BREAKER_OPEN;
	else
		p.out.reason = SL_REASON_NONE_USABLE;
	goto out;
chosen:
	if (svc->affinity_timeout_s)
		remember_affinity(svc, client, p.out.id, now);
out:
	*out = p.out;
}

static __always_inline void count_selected(__u32 svc_id, const struct choice *c)
{
	struct sl_svc_stats *ss = bpf_map_lookup_elem(&sl_svc_stats, &svc_id);
	struct sl_be_stats *bs = be_stats(c->id);

	if (ss) {
		ss->selected++;
		if (c->panic)
			ss->panic_selected++;
	}
	if (bs) {
		bs->selected++;
		if (c->panic)
			bs->panic_selected++;
		if (c->probe)
			bs->probes++;
	}
}

static __always_inline void count_refused(__u32 svc_id, __u32 reason)
{
	struct sl_svc_stats *ss = bpf_map_lookup_elem(&sl_svc_stats, &svc_id);

	if (ss && reason < SL_REASON_COUNT)
		ss->refused[reason]++;
}

#endif
