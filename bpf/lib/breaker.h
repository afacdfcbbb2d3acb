/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-backend circuit breaker and live connection accounting, shared by
 * the socket programs (admission at connect) and sockops (outcomes).
 *
 * CLOSED --consecutive_failures--> OPEN --ejection time--> HALF_OPEN
 * HALF_OPEN --probe succeeds--> CLOSED, --probe fails--> OPEN (longer)
 *
 * OPEN turns HALF_OPEN lazily, at the first connect that finds its time up;
 * there is no timer. Every transition happens under the breaker's spin lock,
 * so two CPUs reporting at once cannot both trip it or both admit the last
 * probe. No helper may run under the lock: callers pass the time in.
 */
#ifndef SL_BPF_BREAKER_H
#define SL_BPF_BREAKER_H

#include "maps.h"

#define NS_PER_MS 1000000ULL

/* Live connections of a backend; a transiently negative count reads as 0. */
static __always_inline __u32 live_count(__u32 id)
{
	__s32 *live = bpf_map_lookup_elem(&sl_live, &id);

	if (!live)
		return 0;
	return *live > 0 ? *live : 0;
}

static __always_inline void live_add(__u32 id, __s32 delta)
{
	__s32 *live = bpf_map_lookup_elem(&sl_live, &id);

	if (live)
		__sync_fetch_and_add(live, delta);
}

/* This CPU's counters of a backend: plain increments are race-free. */
static __always_inline struct sl_be_stats *be_stats(__u32 id)
{
	return bpf_map_lookup_elem(&sl_be_stats, &id);
}

/*
 * Whether backend id's breaker lets a new connection through now. Returns 1
 * to pass (with *probe = 1 when admitted as a half-open probe), 0 to refuse.
 */
static __always_inline int breaker_admit(__u32 id, __u32 half_open_max, int *probe)
{
	struct sl_breaker *br = bpf_map_lookup_elem(&sl_breakers, &id);
	int pass = 0, admitted_probe = 0;
	__u64 now;

	*probe = 0;
	if (!br)
		return 1;
	/* The common case, CLOSED, takes no lock; a stale read only delays by one connect. */
	if (br->state == SL_BREAKER_CLOSED)
		return 1;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&br->lock);
	if (br->state == SL_BREAKER_OPEN && now >= br->open_until_ns) {
		br->state = SL_BREAKER_HALF_OPEN;
		br->half_open_inflight = 0;
	}
	if (br->state == SL_BREAKER_CLOSED) {
		pass = 1;
	} else if (br->state == SL_BREAKER_HALF_OPEN && br->half_open_inflight < half_open_max) {
		br->half_open_inflight++;
		pass = 1;
		admitted_probe = 1;
	}
	bpf_spin_unlock(&br->lock);
	*probe = admitted_probe;
	return pass;
}

static __always_inline __u64 ejection_ns(const struct sl_service *svc, __u32 times_ejected)
{
	__u64 ms = (__u64)svc->base_ejection_ms * times_ejected;

	if (ms > svc->max_ejection_ms)
		ms = svc->max_ejection_ms;
	return ms * NS_PER_MS;
}

/*
 * Reserves one ejection of the service's max_ejection_percent (at least one
 * backend may always be ejected, as in Envoy). Returns 1 when reserved.
 */
static __always_inline int ejection_reserve(const struct sl_service *svc)
{
	__u32 svc_id = svc->id, allowed, ejected;
	struct sl_svc_state *st = bpf_map_lookup_elem(&sl_svc_state, &svc_id);

	if (!st)
		return 0;
	allowed = (__u32)svc->max_ejection_pct * svc->backend_count / 100;
	if (allowed < 1)
		allowed = 1;
	ejected = __sync_add_and_fetch(&st->ejected, 1);
	if (ejected > allowed) {
		__sync_fetch_and_sub(&st->ejected, 1);
		return 0;
	}
	return 1;
}

static __always_inline void ejection_release(__u32 svc_id)
{
	struct sl_svc_state *st = bpf_map_lookup_elem(&sl_svc_state, &svc_id);

	if (st && st->ejected > 0)
		__sync_fetch_and_sub(&st->ejected, 1);
}

/* A connect to backend id succeeded: closes a half-open breaker. */
static __always_inline void breaker_success(const struct sl_service *svc, __u32 id)
{
	struct sl_breaker *br = bpf_map_lookup_elem(&sl_breakers, &id);
	int recovered = 0;

	if (!br)
		return;
	bpf_spin_lock(&br->lock);
	br->consecutive_failures = 0;
	if (br->state == SL_BREAKER_HALF_OPEN) {
		br->state = SL_BREAKER_CLOSED;
		br->half_open_inflight = 0;
		if (br->times_ejected > 0)
			br->times_ejected--;
		recovered = 1;
	}
	bpf_spin_unlock(&br->lock);
	if (recovered)
		ejection_release(svc->id);
}

/*
 * A connect to backend id failed. A failed probe reopens the breaker for
 * longer; the consecutive_failures-th failure in a row opens a closed one if
 * the service's ejection budget allows.
 */
static __always_inline void breaker_failure(const struct sl_service *svc, __u32 id)
{
	struct sl_breaker *br = bpf_map_lookup_elem(&sl_breakers, &id);
	__u64 now = bpf_ktime_get_ns();
	int trip = 0, tripped = 0;
	struct sl_be_stats *bs;
	__u32 times;

	if (!br)
		return;
	bpf_spin_lock(&br->lock);
	br->consecutive_failures++;
	if (br->state == SL_BREAKER_HALF_OPEN) {
		br->state = SL_BREAKER_OPEN;
		br->half_open_inflight = 0;
		times = ++br->times_ejected;
		br->open_until_ns = now + ejection_ns(svc, times);
		tripped = 1;
	} else if (br->state == SL_BREAKER_CLOSED &&
		   br->consecutive_failures >= svc->consecutive_failures) {
		trip = 1;
	}
	bpf_spin_unlock(&br->lock);
	if (!trip)
		goto out;

	/* The budget is an atomic counter outside the lock: reserve, then trip, or give back. */
	if (!ejection_reserve(svc))
		return;
	bpf_spin_lock(&br->lock);
	if (br->state == SL_BREAKER_CLOSED) {
		br->state = SL_BREAKER_OPEN;
		times = ++br->times_ejected;
		br->open_until_ns = now + ejection_ns(svc, times);
		tripped = 1;
	}
	bpf_spin_unlock(&br->lock);
	if (!tripped)
		ejection_release(svc->id);
out:
	bs = tripped ? be_stats(id) : NULL;
	if (bs)
		bs->ejections++;
}

/*
 * Settles a balanced socket's connect outcome, once: whichever of sockops
 * (established, SYN_SENT -> CLOSE) or sock_release sees it first.
 */
static __always_inline void sock_settle(struct sl_sock_state *st, int success)
{
	__u32 old = __sync_fetch_and_and(&st->flags, ~SL_SOCK_PENDING);
	__u32 id = st->backend_id;
	struct sl_be_stats *bs;
	struct sl_service *svc;
	struct sl_backend *be;

	if (!(old & SL_SOCK_PENDING))
		return;
	if (success)
		__sync_fetch_and_or(&st->flags, SL_SOCK_ESTABLISHED);
	bs = be_stats(id);
	if (bs && success)
		bs->established++;
	else if (bs)
		bs->connect_failed++;
	/* A backend removed (or its id reused) since the connect has no breaker to tell. */
	svc = bpf_map_lookup_elem(&sl_services, &st->svc);
	be = bpf_map_lookup_elem(&sl_backends, &id);
	if (!svc || !be || be->svc_id != svc->id)
		return;
	if (success)
		breaker_success(svc, id);
	else
		breaker_failure(svc, id);
}

/* Gives back the socket's live count, once. */
static __always_inline void sock_release_live(struct sl_sock_state *st)
{
	__u32 old = __sync_fetch_and_and(&st->flags, ~SL_SOCK_LIVE);
	struct sl_be_stats *bs;

	if (!(old & SL_SOCK_LIVE))
		return;
	live_add(st->backend_id, -1);
	bs = be_stats(st->backend_id);
	if (bs && (old & SL_SOCK_ESTABLISHED))
		bs->closed++;
}

#endif
