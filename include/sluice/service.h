/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services (VIP:port/protocol) and their selection tables. */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include "types.h"

#define SL_MAX_SERVICES 16384
/* Service ids run from 1; the map slot of id 0 stays unused. */
#define SL_SERVICES_LIMIT (SL_MAX_SERVICES - 1)
#define SL_MAX_BACKENDS_PER_SVC 1024
#define SL_NAME_MAX 64

/*
 * Selection tables. Slot 0 of every table holds the number of slots that
 * follow; slots 1..n hold backend ids. A table is written whole into a new
 * inner map and swapped in with one update of sl_svc_slots, so a connect
 * sees either the old or the new table, never a mix.
 */
#define SL_SLOTS_MAX (131071 + 1)
/* weighted tables repeat each backend weight/gcd times, capped to this. */
#define SL_WEIGHTED_SLOTS_MAX 65536

enum sl_algorithm {
	SL_ALG_RANDOM = 0,
	SL_ALG_ROUND_ROBIN = 1,
	SL_ALG_WEIGHTED = 2,
	SL_ALG_MAGLEV = 3,
	SL_ALG_LEAST_CONN = 4,
	SL_ALG_COUNT,
};

/* Key of sl_services: zero the whole struct before filling it. */
struct sl_svc_key {
	struct sl_addr vip;
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family; /* SL_FAMILY_IPV4 or SL_FAMILY_IPV6 */
};
_Static_assert(sizeof(struct sl_svc_key) == 20, "ABI: sl_svc_key");

/* Value of sl_services: identity plus every per-service setting of the registry. */
struct sl_service {
	__u32 id;		/* key of sl_svc_slots, index of sl_svc_stats */
	__u32 backend_count;
	__u32 affinity_timeout_s;
	__u32 max_connections;	/* per backend; 0 = unlimited */
	__u32 consecutive_failures;
	__u32 base_ejection_ms;
	__u32 max_ejection_ms;
	__u32 half_open_max;
	__u32 connections_per_second; /* 0 = unlimited */
	__u32 burst;
	__u32 per_client_connections_per_second;
	__u32 per_client_burst;
	__u32 unhealthy_count;	 /* backends the agent's health checks hold down */
	__u32 syn_per_second;	 /* TCP SYNs to the VIP admitted at XDP; 0 = unlimited */
	__u32 syn_burst;
	__u8 algorithm;		 /* enum sl_algorithm */
	__u8 panic_threshold_pct;
	__u8 max_ejection_pct;
	__u8 pad;
	char name[SL_NAME_MAX];
};
_Static_assert(sizeof(struct sl_service) == 128, "ABI: sl_service");

#endif
