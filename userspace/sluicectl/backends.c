// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "lib/state.h"
#include "sluicectl.h"

static json_t *backend_json(const char *service, const struct sl_state_backend *b,
			    const struct sl_be_stats *st)
{
	char addr[SL_ADDR_STRLEN];

	return json_pack("{s:s,s:I,s:s,s:i,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "service",
			 service, "id", (json_int_t)b->id, "address",
			 sl_addr_format(&b->v.addr, b->v.family, addr, sizeof(addr)), "port",
			 ntohs(b->v.port), "weight", (json_int_t)b->v.weight, "health",
			 sl_health_name(b->v.health), "selected", (json_int_t)st->selected,
			 "established", (json_int_t)st->established, "connect_failed",
			 (json_int_t)st->connect_failed, "closed", (json_int_t)st->closed,
			 "panic_selected", (json_int_t)st->panic_selected, "probes",
			 (json_int_t)st->probes, "ejections", (json_int_t)st->ejections, "skipped",
			 ctl_reason_counts_json(st->skipped));
}

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
	if (only && !sl_state_find(&st, only)) {
		log_err("no service named \"%s\" in %s/sl_services", only, c->pin_root);
		err = -ENOENT;
		goto out;
	}
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

			if (sl_stats_read_backend(&m, b->id, &stats))
				memset(&stats, 0, sizeof(stats));
			if (c->json) {
				json_array_append_new(arr, backend_json(s->v.name, b, &stats));
				continue;
			}
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
