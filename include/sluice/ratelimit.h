/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Token buckets for new connections, per service and per client of a service. */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include "types.h"

/* Default size of sl_rl_client; `sluicectl load --rl-clients N` changes it. */
#define SL_RL_CLIENTS_DEFAULT 65536

/*
 * A token bucket kept as one word, the GCRA way: tat_ns is the theoretical
 * arrival time of the next connection (CLOCK_MONOTONIC). A connection is
 * admitted when tat_ns - now stays within burst emission intervals
 * (1e9 / rate ns each); admitting it moves tat_ns one interval on. Tokens
 * available at now: (now + burst * interval - tat_ns) / interval, clamped to
 * 0..burst; tat_ns = 0 is a full bucket.
 */
struct sl_rl_bucket {
	__u64 tat_ns;
};
_Static_assert(sizeof(struct sl_rl_bucket) == 8, "ABI: sl_rl_bucket");

/* Key of sl_rl_client (LRU): one bucket per client of each service. */
struct sl_rl_client_key {
	__u64 client; /* hash of the bound source, else the netns cookie (as maglev's key) */
	__u32 svc_id;
	__u32 pad;
};
_Static_assert(sizeof(struct sl_rl_client_key) == 16, "ABI: sl_rl_client_key");

#endif
