/* SPDX-License-Identifier: MIT */
/* What the agent knows about itself, for /readyz, /metrics and the API. */
#ifndef SLUICED_STATUS_H
#define SLUICED_STATUS_H

#include <linux/types.h>

#define RECONCILE_BUCKETS 12
/* Upper bounds of the reconcile duration histogram, in seconds (the last is +Inf). */
extern const double reconcile_bucket_le[RECONCILE_BUCKETS];

struct agent_status {
	const char *registry_source; /* "file:/etc/sluice/registry.json" */
	int degraded;		     /* the last document was rejected: the previous one is in force */
	char last_error[512];
	__u64 registry_errors_total;
	__u64 last_sync_unix_ns;	/* last successful apply (0: none yet) */
	__u64 last_error_unix_ns;
	__u64 reconcile_count;
	double reconcile_seconds_sum;
	__u64 reconcile_buckets[RECONCILE_BUCKETS]; /* cumulative, as Prometheus wants them */
	__u64 start_unix_ns;
	/* A source that follows a server (Redis): out of step since then, and why. */
	int stale;
	__u64 stale_since_unix_ns;
	char stale_reason[256];
};

void status_observe_reconcile(struct agent_status *st, double seconds);

#endif
