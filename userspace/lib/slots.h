/* SPDX-License-Identifier: MIT */
/* Builds a service's selection table, the value of one sl_svc_slots inner map. */
#ifndef SL_SLOTS_H
#define SL_SLOTS_H

#include <stddef.h>
#include "registry.h"

struct sl_slots {
	__u32 *slots; /* slots[0] = n, slots[1..n] = backend ids */
	__u32 len;    /* n + 1 */
};

/*
 * ids[i] is the backend id of svc->backends[i]. random and round_robin list
 * each backend once; weighted interleaves backends by weight (smooth weighted
 * round robin, weights divided by their gcd, scaled down to at most
 * SL_WEIGHTED_SLOTS_MAX); maglev is the Maglev table. A service without
 * backends gets a table with n = 0. Returns 0 or -ENOMEM.
 * Also -EINVAL for a zero weight (weighted, maglev), an unknown algorithm or
 * address family, or a table longer than SL_SLOTS_MAX. On error out is empty.
 */
int sl_slots_build(const struct sl_reg_service *svc, const __u32 *ids, struct sl_slots *out);
/*
 * The same, keeping a maglev table at maglev_m entries while that still gives
 * every backend SL_MAGLEV_MIN_SHARE entries: a change of table size would
 * move nearly every client, so removing backends never shrinks the table.
 * maglev_m = 0 picks sl_maglev_size().
 */
int sl_slots_build_keep(const struct sl_reg_service *svc, const __u32 *ids, __u32 maglev_m,
			struct sl_slots *out);
void sl_slots_free(struct sl_slots *s);

#endif
