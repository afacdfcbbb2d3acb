/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Backends: one record per (service, address, port), keyed by a stable id. */
#ifndef SLUICE_BACKEND_H
#define SLUICE_BACKEND_H

#include "types.h"

/* Ids run from 1; 0 never names a backend, so an empty slot reads as "none". */
#define SL_MAX_BACKENDS 131072
#define SL_BACKENDS_LIMIT (SL_MAX_BACKENDS - 1)

enum sl_backend_health {
	SL_HEALTH_UNKNOWN = 0, /* not checked (no health_check block): usable */
	SL_HEALTH_UP = 1,
	SL_HEALTH_DOWN = 2,
};

/* Value of sl_backends, key __u32 backend id. */
struct sl_backend {
	struct sl_addr addr;
	__u32 svc_id;
	__u32 weight;
	__be16 port;
	__u8 family; /* SL_FAMILY_IPV4 or SL_FAMILY_IPV6 */
	__u8 health; /* enum sl_backend_health, written by the agent */
};
_Static_assert(sizeof(struct sl_backend) == 28, "ABI: sl_backend");

/*
 * Value of sl_be_health, an array keyed by backend id: the record's service
 * and health, copied by every writer of sl_backends (the reconciler with
 * each record it writes, zeroed when it removes one; the health checker with
 * each health it writes). A new XDP flow reads this inlined array entry
 * instead of hashing into sl_backends, which measured ~45 ns more per SYN.
 * svc_id 0: no backend has the id.
 */
struct sl_be_health {
	__u32 svc_id;
	__u8 health; /* enum sl_backend_health */
	__u8 pad[3];
};
_Static_assert(sizeof(struct sl_be_health) == 8, "ABI: sl_be_health");

static inline struct sl_be_health sl_be_health_of(const struct sl_backend *b)
{
	struct sl_be_health h = { .svc_id = b->svc_id, .health = b->health };

	return h;
}

#endif
