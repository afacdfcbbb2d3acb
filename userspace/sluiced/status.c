// SPDX-License-Identifier: MIT
#include <math.h>

#include "status.h"

const double reconcile_bucket_le[RECONCILE_BUCKETS] = {
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, INFINITY,
};

void status_observe_reconcile(struct agent_status *st, double seconds)
{
	/* A negative or NaN duration can only come from a clock step: count it as 0. */
	if (!(seconds >= 0))
		seconds = 0;
	st->reconcile_count++;
	st->reconcile_seconds_sum += seconds;
	for (int i = 0; i < RECONCILE_BUCKETS; i++)
		if (seconds <= reconcile_bucket_le[i])
			st->reconcile_buckets[i]++;
}
