// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "lib/maps.h"
#include "lib/state.h"
#include "lib/views.h"
#include "sluicectl.h"

static __u64 refused_total(const struct sl_svc_stats *s)
{
	__u64 total = 0;

	for (unsigned int r = 0; r < SL_REASON_COUNT; r++)
		total += s->refused[r];
	return total;
}

/* Per service: connections accepted and refused by reason, and the rate buckets. */
int do_stats(struct ctl *c)
{
	const char *only;
	struct sl_state st;
	struct sl_maps m;
	json_t *arr = NULL;
	int err;

	if (ctl_take_show_verb(c) || c->argc > 1) {
		usage();
		return CTL_EUSAGE;
	}
	only = c->argc ? c->argv[0] : NULL;
	err = ctl_read_state(c, &m, &st);
	if (err)
		return err;
	err = ctl_check_service(c, &st, only);
	if (err)
		goto out;
	if (c->json)
		arr = json_array();
	else
		printf("%-24s %-12s %-10s %-12s %-12s %-10s %-14s %s\n", "SERVICE", "ACCEPTED",
		       "REFUSED", "RATE_SVC", "RATE_CLIENT", "CONN/S", "PER_CLIENT/S", "TOKENS");
	for (size_t i = 0; i < st.count; i++) {
		const struct sl_state_service *s = &st.services[i];
		struct sl_svc_stats stats = { 0 };

		if (only && strcmp(only, s->v.name))
			continue;
		sl_stats_read_service(&m, s->v.id, &stats);
		if (c->json) {
			json_array_append_new(arr, sl_json_stats(&m, s));
			continue;
		}
		char tokens[16] = "-";
		__u32 t;

		if (!sl_rl_tokens(&m, &s->v, &t))
			snprintf(tokens, sizeof(tokens), "%u", t);
		printf("%-24s %-12llu %-10llu %-12llu %-12llu %-10u %-14u %s\n", s->v.name,
		       (unsigned long long)stats.selected, (unsigned long long)refused_total(&stats),
		       (unsigned long long)stats.refused[SL_REASON_RATE_SERVICE],
		       (unsigned long long)stats.refused[SL_REASON_RATE_CLIENT],
		       s->v.connections_per_second, s->v.per_client_connections_per_second, tokens);
	}
	if (c->json)
		ctl_print_json(c, arr);
out:
	ctl_release_state(&m, &st);
	return err;
}
