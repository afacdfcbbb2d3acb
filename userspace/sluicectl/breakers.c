// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "lib/state.h"
#include "lib/views.h"
#include "sluicectl.h"

static void show_breaker(const struct ctl *c, json_t *arr, const struct sl_maps *m,
			 const struct sl_state_service *s, const struct sl_state_backend *be)
{
	char ep[SL_ENDPOINT_STRLEN];
	struct sl_breaker b = { 0 };

	if (c->json) {
		json_array_append_new(arr, sl_json_breaker(m, s, be));
		return;
	}
	sl_breaker_read(m, be->id, &b);
	sl_endpoint_format(&be->v.addr, be->v.family, ntohs(be->v.port), ep, sizeof(ep));
	printf("%-24s %-46s %-10s %-13u %-14u %-13llu %u\n", s->v.name, ep,
	       sl_breaker_state_name(b.state), b.consecutive_failures, b.times_ejected,
	       (unsigned long long)sl_breaker_open_remaining_ms(&b), sl_live_read(m, be->id));
}

static int breakers_show(struct ctl *c, struct sl_maps *m, const struct sl_state *st)
{
	const char *only = c->argc ? c->argv[0] : NULL;
	int err = ctl_check_service(c, st, only);
	json_t *arr;

	if (err)
		return err;
	arr = c->json ? json_array() : NULL;
	if (!c->json)
		printf("%-24s %-46s %-10s %-13s %-14s %-13s %s\n", "SERVICE", "BACKEND", "STATE",
		       "CONSEC_FAILS", "TIMES_EJECTED", "OPEN_LEFT_MS", "LIVE_CONNS");
	for (size_t i = 0; i < st->count; i++) {
		const struct sl_state_service *s = &st->services[i];

		if (only && strcmp(only, s->v.name))
			continue;
		for (size_t k = 0; k < s->backend_count; k++)
			show_breaker(c, arr, m, s, &s->backends[k]);
	}
	if (c->json)
		ctl_print_json(c, arr);
	return 0;
}

static int breakers_reset(struct ctl *c, struct sl_maps *m, const struct sl_state *st)
{
	const struct sl_state_service *s;
	const struct sl_state_backend *be;
	__u32 prev = SL_BREAKER_CLOSED;
	int err, lock_fd;

	if (c->argc != 3) {
		fprintf(stderr, "sluicectl: usage: breakers reset SERVICE BACKEND_ADDR:PORT\n");
		return CTL_EUSAGE;
	}
	s = sl_state_find(st, c->argv[1]);
	if (!s) {
		log_err("no service named \"%s\" in %s/sl_services", c->argv[1], c->pin_root);
		return -ENOENT;
	}
	be = sl_state_find_backend(s, c->argv[2]);
	if (!be) {
		log_err("service \"%s\" has no backend %s (write ADDR:PORT, or [ADDR6]:PORT)",
			s->v.name, c->argv[2]);
		return -ENOENT;
	}
	lock_fd = sl_lock_pin_root(c->pin_root);
	if (lock_fd < 0)
		return lock_fd;
	err = sl_state_reset_breaker(m, s, be, &prev);
	if (err) {
		log_err("cannot reset the breaker of %s in sl_breakers: %s", c->argv[2],
			strerror(-err));
		goto out;
	}
	if (c->json)
		ctl_print_json(c, json_pack("{s:s,s:s,s:s,s:s}", "service", s->v.name, "backend",
					    c->argv[2], "previous_state",
					    sl_breaker_state_name(prev), "state", "closed"));
	else
		printf("breaker of %s in %s: %s -> closed\n", c->argv[2], s->v.name,
		       sl_breaker_state_name(prev));
out:
	close(lock_fd);
	return err;
}

int do_breakers(struct ctl *c)
{
	int reset = 0, err;
	struct sl_state st;
	struct sl_maps m;

	if (ctl_take_show_verb(c)) {
		usage();
		return CTL_EUSAGE;
	}
	reset = c->argc && !strcmp(c->argv[0], "reset");
	if (!reset && c->argc > 1) {
		usage();
		return CTL_EUSAGE;
	}
	err = ctl_read_state(c, &m, &st);
	if (err)
		return err;
	err = reset ? breakers_reset(c, &m, &st) : breakers_show(c, &m, &st);
	ctl_release_state(&m, &st);
	return err;
}
