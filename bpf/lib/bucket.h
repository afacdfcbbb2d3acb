/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Token buckets for connection rates (include/sluice/ratelimit.h). Each is a
 * single u64, taken with compare-and-swap rather than a bpf_spin_lock: the
 * per-client buckets live in an LRU hash, which cannot hold a spin lock, and
 * one CAS is cheaper than lock + update + unlock. A CPU that loses the race
 * rereads and retries, so no token is spent twice or lost.
 */
#ifndef SL_BPF_BUCKET_H
#define SL_BPF_BUCKET_H

#include "maps.h"

#define BUCKET_CAS_TRIES 8
#define NS_PER_SEC 1000000000ULL

/*
 * Takes one token from the bucket at *tat for rate per second with burst.
 * Returns 1 when admitted, 0 when the bucket is empty (or the CAS kept
 * losing, which only sustained contention on one bucket causes).
 */
static __always_inline int bucket_take(__u64 *tat, __u32 rate, __u32 burst, __u64 now)
{
	__u64 interval, old, base, next;

	if (!rate)
		return 1;
	interval = NS_PER_SEC / rate;
	if (!interval)
		interval = 1;
	if (!burst)
		burst = 1;
	for (int i = 0; i < BUCKET_CAS_TRIES; i++) {
		old = *(volatile __u64 *)tat;
		base = old > now ? old : now;
		next = base + interval;
		if (next > now + (__u64)burst * interval)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, next) == old)
			return 1;
	}
	return 0;
}

static __always_inline int service_bucket_take(const struct sl_service *svc, __u64 now)
{
	__u32 svc_id = svc->id;
	struct sl_rl_bucket *b = bpf_map_lookup_elem(&sl_rl_svc, &svc_id);

	return !b || bucket_take(&b->tat_ns, svc->connections_per_second, svc->burst, now);
}

static __always_inline int client_bucket_take(const struct sl_service *svc, __u64 client,
					      __u64 now)
{
	struct sl_rl_client_key key = { .client = client, .svc_id = svc->id };
	__u32 rate = svc->per_client_connections_per_second;
	struct sl_rl_bucket *b, fresh = {};

	b = bpf_map_lookup_elem(&sl_rl_client, &key);
	if (!b) {
		/* A new client starts with a full bucket less the token it takes now. */
		fresh.tat_ns = now + NS_PER_SEC / rate;
		if (!bpf_map_update_elem(&sl_rl_client, &key, &fresh, BPF_NOEXIST))
			return 1;
		/* Another CPU inserted it first: take from that one. */
		b = bpf_map_lookup_elem(&sl_rl_client, &key);
		if (!b)
			return 1;
	}
	return bucket_take(&b->tat_ns, rate, svc->per_client_burst, now);
}

/*
 * Whether a new connection (or UDP flow) to svc is within its rates: the
 * client's bucket first, so a noisy client is refused before it drains the
 * service's bucket for everyone. Returns 0, or the refusal reason.
 */
static __always_inline __u32 rate_limit(const struct sl_service *svc, __u64 client)
{
	__u64 now = bpf_ktime_get_ns();

	if (svc->per_client_connections_per_second && !client_bucket_take(svc, client, now))
		return SL_REASON_RATE_CLIENT;
	if (svc->connections_per_second && !service_bucket_take(svc, now))
		return SL_REASON_RATE_SERVICE;
	return 0;
}

#endif
