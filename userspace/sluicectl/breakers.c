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
#include "sluicectl.h"

/* Milliseconds until an OPEN breaker turns HALF_OPEN (0 when not open or due). */
static __u64 open_remaining_ms(const struct sl_breaker *b)
{
	struct timespec now;
	__u64 now_ns;

	if (b->state != SL_BREAKER_OPEN)
		return 0;
	/* The kernel stamps open_until_ns with bpf_ktime_get_ns(): CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ns = (__u64)now.tv_sec * 1000000000ULL + now.tv_nsec;
	return b->open_until_ns > now_ns ? (b->open_until_ns - now_ns + 999999) / 1000000 : 0;
}

static void show_breaker(const struct ctl *c, json_t *arr, const struct sl_maps *m,
			 const struct sl_state_service *s, const struct sl_state_backend *be)
{
	char ep[SL_ENDPOINT_STRLEN];
	struct sl_breaker b = { 0 };
	__u32 live = sl_live_read(m, be->id);

	sl_breaker_read(m, be->id, &b);
	sl_endpoint_format(&be->v.addr, be->v.family, ntohs(be->v.port), ep, sizeof(ep));
	if (c->json) {
		json_array_append_new(
			arr, json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "service", s->v.name,
				       "backend", ep, "id", (json_int_t)be->id, "state",
				       sl_breaker_state_name(b.state), "consecutive_failures",
				       (json_int_t)b.consecutive_failures, "times_ejected",
				       (json_int_t)b.times_ejected, "open_remaining_ms",
				       (json_int_t)open_remaining_ms(&b), "half_open_inflight",
				       (json_int_t)b.half_open_inflight, "live_connections",
				       (json_int_t)live));
		return;
	}
	printf("%-24s %-46s %-10s %-13u %-14u %-13llu %u\n", s->v.name, ep,
	       sl_breaker_state_name(b.state), b.consecutive_failures, b.times_ejected,
	       (unsigned long long)open_remaining_ms(&b), live);
}

static int breakers_show(struct ctl *c, struct sl_maps *m, const struct sl_state *st)
{
	const char *only = c->argc ? c->argv[0] : NULL;
	json_t *arr = c->json ? json_array() : NULL;

	if (only && !sl_state_find(st, only)) {
		json_decref(arr);
		log_err("no service named \"%s\" in %s/sl_services", only, c->pin_root);
		return -ENOENT;
	}
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

static const struct sl_state_backend *find_backend(const struct sl_state_service *s,
						   const char *endpoint)
{
	struct sl_addr addr;
	__u8 family;
	__u16 port;

	if (sl_endpoint_parse(endpoint, &addr, &family, &port))
		return NULL;
	for (size_t k = 0; k < s->backend_count; k++) {
		const struct sl_backend *b = &s->backends[k].v;

		if (b->family == family && ntohs(b->port) == port &&
		    !memcmp(&b->addr, &addr, sizeof(addr)))
			return &s->backends[k];
	}
	return NULL;
}

static int breakers_reset(struct ctl *c, struct sl_maps *m, const struct sl_state *st)
{
	const struct sl_state_service *s;
	const struct sl_state_backend *be;
	__u32 ids[SL_MAX_BACKENDS_PER_SVC];
	struct sl_breaker before = { 0 };
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
	be = find_backend(s, c->argv[2]);
	if (!be) {
		log_err("service \"%s\" has no backend %s (write ADDR:PORT, or [ADDR6]:PORT)",
			s->v.name, c->argv[2]);
		return -ENOENT;
	}
	lock_fd = sl_lock_pin_root(c->pin_root);
	if (lock_fd < 0)
		return lock_fd;
	sl_breaker_read(m, be->id, &before);
	err = sl_breaker_reset(m, be->id);
	if (err) {
		log_err("cannot reset the breaker of %s in sl_breakers: %s", c->argv[2],
			strerror(-err));
		goto out;
	}
	for (size_t k = 0; k < s->backend_count && k < SL_MAX_BACKENDS_PER_SVC; k++)
		ids[k] = s->backends[k].id;
	sl_svc_state_recount(m, s->v.id, ids, s->backend_count);
	if (c->json)
		ctl_print_json(c, json_pack("{s:s,s:s,s:s,s:s}", "service", s->v.name, "backend",
					    c->argv[2], "previous_state",
					    sl_breaker_state_name(before.state), "state", "closed"));
	else
		printf("breaker of %s in %s: %s -> closed\n", c->argv[2], s->v.name,
		       sl_breaker_state_name(before.state));
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
