/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters per service and per backend, and the reasons they count. */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include "types.h"

/* Why a connection was refused; the CLI and metrics name them from sl_reason_names. */
enum sl_reason {
	SL_REASON_NO_BACKEND = 0,	/* the service has no backend at all */
	SL_REASON_NONE_USABLE = 1,	/* every backend down, open or at its limit */
	SL_REASON_BREAKER_OPEN = 2,
	SL_REASON_MAX_CONNECTIONS = 3,
	SL_REASON_RATE_SERVICE = 4,
	SL_REASON_RATE_CLIENT = 5,
	SL_REASON_UNHEALTHY = 6,	/* marked down by the health checker */
	SL_REASON_COUNT = 8,
};

/* Value of sl_svc_stats (PERCPU_ARRAY indexed by service id). */
struct sl_svc_stats {
	__u64 selected; /* connects and datagrams sent to a backend */
	__u64 panic_selected;
	__u64 refused[SL_REASON_COUNT];
};
_Static_assert(sizeof(struct sl_svc_stats) == 80, "ABI: sl_svc_stats");

/* Value of sl_be_stats (PERCPU_ARRAY indexed by backend id). */
struct sl_be_stats {
	__u64 selected;	      /* connects and datagrams sent to it */
	__u64 established;    /* TCP handshakes completed */
	__u64 connect_failed; /* refused, reset, timed out, unreachable or given up */
	__u64 closed;	      /* live TCP connections that ended */
	__u64 panic_selected; /* selected while its service was in panic */
	__u64 probes;	      /* half-open probe connections admitted */
	__u64 ejections;      /* times its breaker opened (a failed probe reopens it) */
	__u64 skipped[SL_REASON_COUNT]; /* passed over at selection, by reason */
};
_Static_assert(sizeof(struct sl_be_stats) == 120, "ABI: sl_be_stats");

#endif
