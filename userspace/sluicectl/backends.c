// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "lib/state.h"
#include "lib/views.h"
#include "sluicectl.h"

int do_backends(struct ctl *c)
{
	const char *only = NULL;
	struct sl_state st;
	struct sl_maps m;
	json_t *arr = NULL;
	int err;

	if (ctl_take_show_verb(c) || c->argc > 1) {
		usage();
		return CTL_EUSAGE;
	}
	if (c->argc == 1)
		only = c->argv[0];
	err = ctl_read_state(c, &m, &st);
	if (err)
		return err;
	err = ctl_check_service(c, &st, only);
	if (err)
		goto out;
	if (c->json)
		arr = json_array();
	else
		printf("%-24s %-8s %-46s %-7s %-8s %-12s %-12s %s\n", "SERVICE", "ID", "BACKEND",
		       "WEIGHT", "HEALTH", "SELECTED", "ESTABLISHED", "CONNECT_FAILED");
	for (size_t i = 0; i < st.count; i++) {
		const struct sl_state_service *s = &st.services[i];

		if (only && strcmp(only, s->v.name))
			continue;
		for (size_t k = 0; k < s->backend_count; k++) {
			const struct sl_state_backend *b = &s->backends[k];
			struct sl_be_stats stats;
			char ep[SL_ENDPOINT_STRLEN];

			if (c->json) {
				json_array_append_new(arr, sl_json_backend(&m, s, b));
				continue;
			}
			if (sl_stats_read_backend(&m, b->id, &stats))
				memset(&stats, 0, sizeof(stats));
			printf("%-24s %-8u %-46s %-7u %-8s %-12llu %-12llu %llu\n", s->v.name, b->id,
			       sl_endpoint_format(&b->v.addr, b->v.family, ntohs(b->v.port), ep,
						  sizeof(ep)),
			       b->v.weight, sl_health_name(b->v.health),
			       (unsigned long long)stats.selected,
			       (unsigned long long)stats.established,
			       (unsigned long long)stats.connect_failed);
		}
	}
	if (c->json)
		ctl_print_json(c, arr);
out:
	ctl_release_state(&m, &st);
	return err;
}
