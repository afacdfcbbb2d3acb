// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include "addr.h"
#include "batch.h"
#include "state.h"

int sl_backend_cmp(__u8 fa, const struct sl_addr *a, __u16 pa, __u8 fb, const struct sl_addr *b,
		   __u16 pb)
{
	int c;

	if (fa != fb)
		return fa < fb ? -1 : 1;
	c = memcmp(a, b, sizeof(*a));
	if (c)
		return c;
	return pa == pb ? 0 : (pa < pb ? -1 : 1);
}

static int cmp_state_backend(const void *x, const void *y)
{
	const struct sl_state_backend *a = x, *b = y;

	return sl_backend_cmp(a->v.family, &a->v.addr, ntohs(a->v.port), b->v.family, &b->v.addr,
			      ntohs(b->v.port));
}

static int cmp_state_service(const void *x, const void *y)
{
	const struct sl_state_service *a = x, *b = y;

	return strncmp(a->v.name, b->v.name, SL_NAME_MAX);
}

static int grow(void **items, size_t *cap, size_t need, size_t size)
{
	size_t ncap = *cap ? *cap : 8;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*items, ncap * size);
	if (!p)
		return -ENOMEM;
	*items = p;
	*cap = ncap;
	return 0;
}

static int read_services(const struct sl_maps *m, struct sl_state *st)
{
	struct sl_batch all;
	int err;

	sl_batch_init(&all, sizeof(struct sl_svc_key), sizeof(struct sl_service));
	err = sl_batch_dump(m->services, &all);
	if (!err && all.count) {
		st->services = calloc(all.count, sizeof(*st->services));
		err = st->services ? 0 : -ENOMEM;
	}
	for (size_t i = 0; !err && i < all.count; i++) {
		struct sl_state_service *s = &st->services[st->count++];

		memcpy(&s->key, all.keys + i * all.key_size, sizeof(s->key));
		memcpy(&s->v, all.values + i * all.value_size, sizeof(s->v));
		s->v.name[SL_NAME_MAX - 1] = '\0';
	}
	sl_batch_free(&all);
	return err;
}

static int add_backend(struct sl_state *st, struct sl_state_service **by_id, size_t *orphan_cap,
		       const struct sl_state_backend *b)
{
	struct sl_state_service *s = b->v.svc_id < SL_MAX_SERVICES ? by_id[b->v.svc_id] : NULL;
	int err;

	if (!s) {
		err = grow((void **)&st->orphans, orphan_cap, st->orphan_count + 1, sizeof(*b));
		if (err)
			return err;
		st->orphans[st->orphan_count++] = *b;
		return 0;
	}
	err = grow((void **)&s->backends, &s->backend_cap, s->backend_count + 1, sizeof(*b));
	if (err)
		return err;
	s->backends[s->backend_count++] = *b;
	return 0;
}

int sl_state_read(const struct sl_maps *m, struct sl_state *st)
{
	struct sl_state_service **by_id = NULL;
	struct sl_batch backends;
	size_t orphan_cap = 0;
	int err;

	memset(st, 0, sizeof(*st));
	sl_batch_init(&backends, sizeof(__u32), sizeof(struct sl_backend));
	err = read_services(m, st);
	if (err)
		goto out;
	qsort(st->services, st->count, sizeof(st->services[0]), cmp_state_service);

	by_id = calloc(SL_MAX_SERVICES, sizeof(*by_id));
	if (!by_id) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < st->count; i++)
		if (st->services[i].v.id < SL_MAX_SERVICES)
			by_id[st->services[i].v.id] = &st->services[i];

	err = sl_batch_dump(m->backends, &backends);
	for (size_t i = 0; !err && i < backends.count; i++) {
		struct sl_state_backend b;

		memcpy(&b.id, backends.keys + i * backends.key_size, sizeof(b.id));
		memcpy(&b.v, backends.values + i * backends.value_size, sizeof(b.v));
		err = add_backend(st, by_id, &orphan_cap, &b);
	}
	if (err)
		goto out;
	for (size_t i = 0; i < st->count; i++)
		qsort(st->services[i].backends, st->services[i].backend_count,
		      sizeof(struct sl_state_backend), cmp_state_backend);
out:
	sl_batch_free(&backends);
	free(by_id);
	if (err)
		sl_state_free(st);
	return err;
}

void sl_state_free(struct sl_state *st)
{
	for (size_t i = 0; i < st->count; i++)
		free(st->services[i].backends);
	free(st->services);
	free(st->orphans);
	memset(st, 0, sizeof(*st));
}

struct sl_state_service *sl_state_find(const struct sl_state *st, const char *name)
{
	struct sl_state_service probe;

	memset(&probe, 0, sizeof(probe));
	snprintf(probe.v.name, sizeof(probe.v.name), "%s", name);
	return bsearch(&probe, st->services, st->count, sizeof(probe), cmp_state_service);
}

const struct sl_state_backend *sl_state_find_backend(const struct sl_state_service *s,
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

int sl_state_reset_breaker(const struct sl_maps *m, const struct sl_state_service *s,
			   const struct sl_state_backend *b, __u32 *prev)
{
	struct sl_breaker before = { 0 };
	__u32 *ids;
	int err;

	sl_breaker_read(m, b->id, &before);
	*prev = before.state;
	err = sl_breaker_reset(m, b->id);
	if (err)
		return err;
	ids = calloc(s->backend_count + 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t k = 0; k < s->backend_count; k++)
		ids[k] = s->backends[k].id;
	err = sl_svc_state_recount(m, s->v.id, ids, s->backend_count);
	free(ids);
	return err;
}
