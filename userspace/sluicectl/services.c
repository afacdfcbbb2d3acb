// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "lib/registry.h"
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

int do_services(struct ctl *c)
{
	struct sl_state st;
	struct sl_maps m;
	json_t *arr = NULL;
	int err;

	if (ctl_take_show_verb(c) || c->argc) {
		usage();
		return CTL_EUSAGE;
	}
	err = ctl_read_state(c, &m, &st);
	if (err)
		return err;
	if (c->json)
		arr = json_array();
	else
		printf("%-24s %-6s %-40s %-11s %-8s %-12s %s\n", "NAME", "ID", "VIP", "ALGORITHM",
		       "BACKENDS", "SELECTED", "REFUSED");
	for (size_t i = 0; i < st.count; i++) {
		const struct sl_state_service *s = &st.services[i];
		struct sl_svc_stats stats;
		char vip[SL_ENDPOINT_STRLEN + 8];

		if (c->json) {
			json_array_append_new(arr, sl_json_service(&m, s));
			continue;
		}
		if (sl_stats_read_service(&m, s->v.id, &stats))
			memset(&stats, 0, sizeof(stats));
		sl_endpoint_format(&s->key.vip, s->key.family, ntohs(s->key.port), vip, sizeof(vip));
		strcat(vip, s->key.proto == 17 ? "/udp" : "/tcp");
		printf("%-24s %-6u %-40s %-11s %-8zu %-12llu %llu\n", s->v.name, s->v.id, vip,
		       sl_algorithm_name(s->v.algorithm), s->backend_count,
		       (unsigned long long)stats.selected,
		       (unsigned long long)refused_total(&stats));
	}
	if (c->json)
		ctl_print_json(c, arr);
	ctl_release_state(&m, &st);
	return 0;
}
