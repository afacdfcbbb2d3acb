// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "batch.h"
#include "reconcile.h"
#include "vipfilter.h"
#include "vipindex.h"
#include "slots.h"
#include "state.h"

/* Ids in use, so new services and backends get ids nothing else holds. */
struct id_pool {
	__u8 *used;
	__u32 size;
	__u32 next;
};

/* A service whose ejected-backend count is recounted once its removed backends are gone. */
struct recount {
	__u32 svc_id;
	__u32 *ids;
	size_t n;
};

/*
 * Planning fills these; sl_reconcile then writes them in an order that
 * keeps every service consistent (see flush_plan).
 */
struct plan {
	struct sl_batch svc_del;	  /* sl_services keys to delete first */
	struct sl_batch be_fresh_stats;	  /* new backend ids: zeroed counters... */
	struct sl_batch be_fresh_breaker; /* ...closed breakers... */
	struct sl_batch be_fresh_live;	  /* ...no live connections... */
	struct sl_batch be_fresh_xdp;	  /* ...and zeroed XDP counters and cached routes */
	struct sl_batch be_put;		  /* sl_backends records */
	struct sl_batch be_health_put;	  /* and their copies in sl_be_health */
	struct sl_batch svc_fresh_stats;  /* new service ids: zeroed counters, rr, state */
	struct sl_batch svc_fresh_rr;
	struct sl_batch svc_fresh_state;
	struct sl_batch svc_fresh_rl;	  /* and a full connection bucket */
	struct sl_batch svc_fresh_syn;	  /* a full SYN bucket and zeroed XDP counters */
	struct sl_batch svc_fresh_xdp;
	struct sl_batch tables;		  /* sl_svc_slots: service id -> new inner map fd */
	struct sl_batch slots_emptied;	  /* removed service ids -> empty_table */
	int empty_table;		  /* an inner map of T = 0, or -1 */
	struct sl_batch svc_put;	  /* sl_services values */
	struct sl_batch be_del;		  /* sl_backends ids, after the swaps... */
	struct sl_batch be_gone_xdp;	  /* ...and then their XDP counters and cached routes,
					   * which sl_xdp's flow-table hits take as "still a
					   * backend"... */
	struct sl_batch be_gone_health;	  /* ...and their copies in sl_be_health */
	struct recount *recounts;
	size_t recount_count;
	int ncpus; /* blocks of sl_xdp's per-CPU maps (sluice/xdp.h) */
};

struct reconciler {
	const struct sl_maps *m;
	int dry_run;
	struct sl_apply_result *res;
	struct id_pool svc_ids;
	struct id_pool be_ids;
	struct plan plan;
	__u32 *table_ids; /* inner map id of each service's table in force, 0: none */
	struct sl_xdp_cfg global_xdp;
	int write_global;
	char *err;
	size_t errlen;
};

static void plan_init(struct plan *p)
{
	int ncpus = libbpf_num_possible_cpus();

	if (ncpus < 1)
		ncpus = 1;
	memset(p, 0, sizeof(*p));
	p->ncpus = ncpus;
	sl_batch_init(&p->svc_del, sizeof(struct sl_svc_key), 0);
	sl_batch_init_zeroes(&p->be_fresh_stats, sizeof(__u32), ncpus * sizeof(struct sl_be_stats));
	sl_batch_init_zeroes(&p->be_fresh_breaker, sizeof(__u32), sizeof(struct sl_breaker));
	sl_batch_init_zeroes(&p->be_fresh_live, sizeof(__u32), sizeof(__s32));
	sl_batch_init_zeroes(&p->be_fresh_xdp, sizeof(__u32), sizeof(struct sl_xdp_backend));
	sl_batch_init(&p->be_put, sizeof(__u32), sizeof(struct sl_backend));
	sl_batch_init(&p->be_health_put, sizeof(__u32), sizeof(struct sl_be_health));
	sl_batch_init_zeroes(&p->svc_fresh_stats, sizeof(__u32), ncpus * sizeof(struct sl_svc_stats));
	sl_batch_init_zeroes(&p->svc_fresh_rr, sizeof(__u32), sizeof(__u32));
	sl_batch_init_zeroes(&p->svc_fresh_state, sizeof(__u32), sizeof(struct sl_svc_state));
	sl_batch_init_zeroes(&p->svc_fresh_rl, sizeof(__u32), sizeof(struct sl_rl_bucket));
	sl_batch_init_zeroes(&p->svc_fresh_syn, sizeof(__u32), sizeof(struct sl_rl_bucket));
	sl_batch_init_zeroes(&p->svc_fresh_xdp, sizeof(__u32), sizeof(struct sl_xdp_stats));
	sl_batch_init(&p->tables, sizeof(__u32), sizeof(__u32));
	sl_batch_init(&p->slots_emptied, sizeof(__u32), sizeof(__u32));
	p->empty_table = -1;
	sl_batch_init(&p->svc_put, sizeof(struct sl_svc_key), sizeof(struct sl_service));
	sl_batch_init(&p->be_del, sizeof(__u32), 0);
	sl_batch_init_zeroes(&p->be_gone_xdp, sizeof(__u32), sizeof(struct sl_xdp_backend));
	sl_batch_init_zeroes(&p->be_gone_health, sizeof(__u32), sizeof(struct sl_be_health));
}

static void plan_free(struct plan *p)
{
	struct sl_batch *all[] = { &p->svc_del, &p->be_fresh_stats, &p->be_fresh_breaker,
				   &p->be_fresh_live, &p->be_fresh_xdp,
				   &p->be_put, &p->be_health_put, &p->svc_fresh_stats,
				   &p->svc_fresh_rr, &p->svc_fresh_state, &p->svc_fresh_rl,
				   &p->svc_fresh_syn, &p->svc_fresh_xdp, &p->tables,
				   &p->slots_emptied, &p->svc_put, &p->be_del, &p->be_gone_xdp,
				   &p->be_gone_health };

	/* The inner maps staged in tables are held by their fds until here. */
	for (size_t i = 0; i < p->tables.count; i++)
		close(((__u32 *)p->tables.values)[i]);
	if (p->empty_table >= 0)
		close(p->empty_table);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		sl_batch_free(all[i]);
	for (size_t i = 0; i < p->recount_count; i++)
		free(p->recounts[i].ids);
	free(p->recounts);
}

static int pool_init(struct id_pool *p, __u32 size, __u32 first)
{
	p->used = calloc(size, 1);
	p->size = size;
	p->next = first && first < size ? first : 1;
	return p->used ? 0 : -ENOMEM;
}

static void pool_mark(struct id_pool *p, __u32 id)
{
	if (id < p->size)
		p->used[id] = 1;
}

static void pool_release(struct id_pool *p, __u32 id)
{
	if (id < p->size)
		p->used[id] = 0;
}

/* Returns a free id, or 0 when the pool is exhausted (0 is never handed out). */
static __u32 pool_take(struct id_pool *p)
{
	for (__u32 n = 0; n < p->size; n++) {
		__u32 id = p->next;

		p->next = p->next + 1 < p->size ? p->next + 1 : 1;
		if (id && !p->used[id]) {
			p->used[id] = 1;
			return id;
		}
	}
	return 0;
}

const char *sl_change_object_name(__u8 object)
{
	switch (object) {
	case SL_OBJ_SERVICE:
		return "service";
	case SL_OBJ_BACKEND:
		return "backend";
	default:
		return "global";
	}
}

const char *sl_change_op_name(__u8 op)
{
	switch (op) {
	case SL_CHANGE_ADD:
		return "add";
	case SL_CHANGE_REMOVE:
		return "remove";
	default:
		return "update";
	}
}

__attribute__((format(printf, 6, 7))) static int
record(struct reconciler *r, __u8 op, __u8 object, const char *service, const char *backend,
       const char *fmt, ...)
{
	struct sl_apply_result *res = r->res;
	struct sl_change *c;
	va_list ap;

	if (res->change_count == res->change_cap) {
		size_t cap = res->change_cap ? res->change_cap * 2 : 16;
		void *p = realloc(res->changes, cap * sizeof(*c));

		if (!p)
			return -ENOMEM;
		res->changes = p;
		res->change_cap = cap;
	}
	c = &res->changes[res->change_count++];
	memset(c, 0, sizeof(*c));
	c->op = op;
	c->object = object;
	snprintf(c->service, sizeof(c->service), "%s", service);
	if (backend)
		snprintf(c->backend, sizeof(c->backend), "%s", backend);
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	return 0;
}

__attribute__((format(printf, 2, 3))) static int fail(struct reconciler *r, const char *fmt, ...)
{
	int err = -errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	return err ? err : -EIO;
}

static const char *backend_name(const struct sl_backend *b, char *buf, size_t size)
{
	return sl_endpoint_format(&b->addr, b->family, ntohs(b->port), buf, size);
}

static const char *reg_backend_name(const struct sl_reg_backend *b, char *buf, size_t size)
{
	return sl_endpoint_format(&b->addr, b->family, b->port, buf, size);
}

static const char *svc_key_name(const struct sl_svc_key *k, char *buf, size_t size)
{
	char ep[SL_ENDPOINT_STRLEN];

	sl_endpoint_format(&k->vip, k->family, ntohs(k->port), ep, sizeof(ep));
	snprintf(buf, size, "%s/%s", ep, sl_proto_name(k->proto));
	return buf;
}

/* Settings the document controls, by the name an operator writes them with. */
#define SVC_FIELD(name, f) { name, offsetof(struct sl_service, f), sizeof(((struct sl_service *)0)->f) }
static const struct {
	const char *name;
	size_t off;
	size_t size;
} svc_fields[] = {
	SVC_FIELD("lb.algorithm", algorithm),
	SVC_FIELD("lb.affinity_timeout_s", affinity_timeout_s),
	SVC_FIELD("lb.panic_threshold_percent", panic_threshold_pct),
	SVC_FIELD("rate_limit.connections_per_second", connections_per_second),
	SVC_FIELD("rate_limit.burst", burst),
	SVC_FIELD("rate_limit.per_client_connections_per_second", per_client_connections_per_second),
	SVC_FIELD("rate_limit.per_client_burst", per_client_burst),
	SVC_FIELD("rate_limit.syn_per_second", syn_per_second),
	SVC_FIELD("rate_limit.syn_burst", syn_burst),
	SVC_FIELD("circuit_breaker.max_connections", max_connections),
	SVC_FIELD("circuit_breaker.consecutive_failures", consecutive_failures),
	SVC_FIELD("circuit_breaker.base_ejection_ms", base_ejection_ms),
	SVC_FIELD("circuit_breaker.max_ejection_ms", max_ejection_ms),
	SVC_FIELD("circuit_breaker.half_open_max", half_open_max),
	SVC_FIELD("circuit_breaker.max_ejection_percent", max_ejection_pct),
};

/* Lists changed settings into buf ("" when none). */
static void diff_settings(const struct sl_state_service *cur, const struct sl_reg_service *want,
			  char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	if (memcmp(&cur->key, &want->key, sizeof(cur->key))) {
		char a[80], b[80];

		used += snprintf(buf, size, "vip %s -> %s", svc_key_name(&cur->key, a, sizeof(a)),
				 svc_key_name(&want->key, b, sizeof(b)));
	}
	for (size_t i = 0; i < sizeof(svc_fields) / sizeof(svc_fields[0]) && used < size; i++) {
		const char *x = (const char *)&cur->v + svc_fields[i].off;
		const char *y = (const char *)&want->settings + svc_fields[i].off;

		if (memcmp(x, y, svc_fields[i].size))
			used += snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
					 svc_fields[i].name);
	}
}

/* A new inner map of len slots, zeroed; an fd, or -1 with errno. */
static int create_table(__u32 len)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);

	return bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_slots", sizeof(__u32), sizeof(__u32), len,
			      &opts);
}

/*
 * Writes the selection table and then the backend list (slot T+1 = B, then B
 * ids: bpf/lib/maps.h) into a new inner map and stages it for the swap.
 */
static int write_table(struct reconciler *r, const char *name, __u32 svc_id,
		       const struct sl_slots *t, const __u32 *ids, __u32 nids)
{
	__u32 len = t->len + 1 + nids, count = len, *keys = NULL, *values = NULL, ufd;
	int fd, err = 0;

	fd = create_table(len);
	if (fd < 0)
		return fail(r, "service \"%s\": cannot create its selection table (%u slots): %s",
			    name, len, strerror(errno));
	keys = malloc(len * sizeof(*keys));
	values = malloc(len * sizeof(*values));
	if (!keys || !values) {
		err = -ENOMEM;
		goto out;
	}
	for (__u32 i = 0; i < len; i++)
		keys[i] = i;
	memcpy(values, t->slots, t->len * sizeof(*values));
	values[t->len] = nids;
	memcpy(values + t->len + 1, ids, nids * sizeof(*values));
	if (bpf_map_update_batch(fd, keys, values, &count, NULL)) {
		err = fail(r, "service \"%s\": cannot fill its selection table: %s", name,
			   strerror(errno));
		goto out;
	}
	ufd = fd;
	err = sl_batch_add(&r->plan.tables, &svc_id, &ufd);
	if (!err)
		fd = -1; /* closed by plan_free, after the swap */
out:
	free(keys);
	free(values);
	if (fd >= 0)
		close(fd);
	return err;
}

/*
 * Stages the shared empty table (T = 0: no backend) for a removed service's
 * id. sl_svc_slots is an ARRAY_OF_MAPS, which has no batch delete, and each
 * delete on its own waits for an RCU grace period; one batch update waits
 * once, and drops the old table all the same.
 */
static int empty_table(struct reconciler *r, __u32 svc_id)
{
	struct plan *p = &r->plan;
	__u32 ufd;

	if (p->empty_table < 0) {
		p->empty_table = create_table(1);
		if (p->empty_table < 0)
			return fail(r, "cannot create an empty selection table: %s",
				    strerror(errno));
	}
	ufd = p->empty_table;
	return sl_batch_add(&p->slots_emptied, &svc_id, &ufd);
}

/* Zeroes id in every CPU's block of one of sl_xdp's per-CPU maps (sluice/xdp.h). */
static int add_cpu_blocks(const struct plan *p, struct sl_batch *b, __u32 id, __u32 stride)
{
	int err = 0;

	for (int cpu = 0; cpu < p->ncpus && !err; cpu++) {
		__u32 key = sl_xdp_cpu_key(cpu, id, stride);

		err = sl_batch_add(b, &key, NULL);
	}
	return err;
}

/* A new backend id starts with zero counters, a closed breaker and no live connections. */
static int reset_backend_state(struct reconciler *r, __u32 id)
{
	struct plan *p = &r->plan;
	int err;

	if ((err = sl_batch_add(&p->be_fresh_stats, &id, NULL)) ||
	    (err = sl_batch_add(&p->be_fresh_breaker, &id, NULL)) ||
	    (err = add_cpu_blocks(p, &p->be_fresh_xdp, id, SL_XDP_BE_STRIDE)))
		return err;
	return sl_batch_add(&p->be_fresh_live, &id, NULL);
}

static int write_backend(struct reconciler *r, __u32 id, const struct sl_backend *b)
{
	struct sl_be_health h = sl_be_health_of(b);
	int err = sl_batch_add(&r->plan.be_put, &id, b);

	return err ? err : sl_batch_add(&r->plan.be_health_put, &id, &h);
}

static int delete_backend(struct reconciler *r, __u32 id)
{
	int err;

	pool_release(&r->be_ids, id);
	if ((err = sl_batch_add(&r->plan.be_del, &id, NULL)) ||
	    (err = sl_batch_add(&r->plan.be_gone_health, &id, NULL)))
		return err;
	return add_cpu_blocks(&r->plan, &r->plan.be_gone_xdp, id, SL_XDP_BE_STRIDE);
}

/* unhealthy: the health checker's count, kept from the value in force. */
static int write_service(struct reconciler *r, const struct sl_reg_service *want, __u32 id,
			 __u32 backend_count, __u32 unhealthy)
{
	struct sl_service v = want->settings;

	v.id = id;
	v.backend_count = backend_count;
	v.unhealthy_count = unhealthy;
	snprintf(v.name, sizeof(v.name), "%s", want->settings.name);
	return sl_batch_add(&r->plan.svc_put, &want->key, &v);
}

static void fill_backend(struct sl_backend *b, const struct sl_reg_backend *rb, __u32 svc_id)
{
	memset(b, 0, sizeof(*b));
	b->addr = rb->addr;
	b->port = htons(rb->port);
	b->family = rb->family;
	b->weight = rb->weight;
	b->svc_id = svc_id;
	b->health = SL_HEALTH_UNKNOWN;
}

/* maglev_m: the size of the table in force, kept when it still fits (slots.h). */
static int install_table(struct reconciler *r, const struct sl_reg_service *want, __u32 svc_id,
			 const __u32 *ids, __u32 maglev_m)
{
	struct sl_slots t = { 0 };
	int err;

	err = sl_slots_build_keep(want, ids, maglev_m, &t);
	if (err)
		return fail(r, "service \"%s\": cannot build its selection table: %s",
			    want->settings.name, strerror(-err));
	err = write_table(r, want->settings.name, svc_id, &t, ids, want->backend_count);
	sl_slots_free(&t);
	return err;
}

static int add_service(struct reconciler *r, const struct sl_reg_service *want)
{
	const char *name = want->settings.name;
	char key[80];
	__u32 *ids = NULL, svc_id;
	int err = 0;

	err = record(r, SL_CHANGE_ADD, SL_OBJ_SERVICE, name, NULL, "%s %s, %zu backends",
		     svc_key_name(&want->key, key, sizeof(key)),
		     sl_algorithm_name(want->settings.algorithm), want->backend_count);
	if (err || r->dry_run)
		return err;

	svc_id = pool_take(&r->svc_ids);
	if (!svc_id) {
		errno = ENOSPC;
		return fail(r, "service \"%s\": no free service id (limit %d)", name, SL_MAX_SERVICES);
	}
	ids = calloc(want->backend_count + 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	if ((err = sl_batch_add(&r->plan.svc_fresh_stats, &svc_id, NULL)) ||
	    (err = sl_batch_add(&r->plan.svc_fresh_rr, &svc_id, NULL)) ||
	    (err = sl_batch_add(&r->plan.svc_fresh_state, &svc_id, NULL)) ||
	    (err = sl_batch_add(&r->plan.svc_fresh_rl, &svc_id, NULL)) ||
	    (err = sl_batch_add(&r->plan.svc_fresh_syn, &svc_id, NULL)) ||
	    (err = add_cpu_blocks(&r->plan, &r->plan.svc_fresh_xdp, svc_id, SL_XDP_STATS_STRIDE)))
		goto out;
	for (size_t i = 0; i < want->backend_count; i++) {
		struct sl_backend b;

		ids[i] = pool_take(&r->be_ids);
		if (!ids[i]) {
			errno = ENOSPC;
			err = fail(r, "service \"%s\": no free backend id (limit %d)", name,
				   SL_MAX_BACKENDS);
			goto out;
		}
		fill_backend(&b, &want->backends[i], svc_id);
		err = reset_backend_state(r, ids[i]);
		if (!err)
			err = write_backend(r, ids[i], &b);
		if (err)
			goto out;
	}
	err = install_table(r, want, svc_id, ids, 0);
	if (!err)
		err = write_service(r, want, svc_id, want->backend_count, 0);
out:
	free(ids);
	return err;
}

static int remove_service(struct reconciler *r, const struct sl_state_service *cur)
{
	char key[80];
	__u32 id = cur->v.id;
	int err;

	err = record(r, SL_CHANGE_REMOVE, SL_OBJ_SERVICE, cur->v.name, NULL, "%s, %zu backends",
		     svc_key_name(&cur->key, key, sizeof(key)), cur->backend_count);
	if (err || r->dry_run)
		return err;
	/* Key first (flush_plan): once it is gone no connect reaches the table or backends. */
	pool_release(&r->svc_ids, id);
	if ((err = sl_batch_add(&r->plan.svc_del, &cur->key, NULL)) ||
	    (err = empty_table(r, id)))
		return err;
	for (size_t i = 0; i < cur->backend_count && !err; i++)
		err = delete_backend(r, cur->backends[i].id);
	return err;
}

struct want_index {
	const struct sl_reg_backend *b;
	size_t pos; /* index in the document's list */
};

static int cmp_want_index(const void *x, const void *y)
{
	const struct sl_reg_backend *a = ((const struct want_index *)x)->b;
	const struct sl_reg_backend *b = ((const struct want_index *)y)->b;

	return sl_backend_cmp(a->family, &a->addr, a->port, b->family, &b->addr, b->port);
}

/*
 * Walks the current (sorted) and wanted backends side by side. Fills ids[]
 * in document order, records changes, and writes new and changed backend
 * records unless this is a dry run. Returns > 0 when the table must change.
 */
static int merge_backends(struct reconciler *r, const struct sl_state_service *cur,
			  const struct sl_reg_service *want, __u32 *ids, int *removed)
{
	const char *name = want->settings.name;
	struct want_index *wi;
	size_t i = 0, j = 0;
	int changed = 0, err = 0;
	char ep[SL_ENDPOINT_STRLEN];

	*removed = 0;
	wi = calloc(want->backend_count + 1, sizeof(*wi));
	if (!wi)
		return -ENOMEM;
	for (size_t k = 0; k < want->backend_count; k++)
		wi[k] = (struct want_index){ &want->backends[k], k };
	qsort(wi, want->backend_count, sizeof(*wi), cmp_want_index);

	while (i < cur->backend_count || j < want->backend_count) {
		const struct sl_state_backend *cb = i < cur->backend_count ? &cur->backends[i] : NULL;
		const struct sl_reg_backend *wb = j < want->backend_count ? wi[j].b : NULL;
		int c = !cb ? 1 : !wb ? -1 :
			sl_backend_cmp(cb->v.family, &cb->v.addr, ntohs(cb->v.port),
				       wb->family, &wb->addr, wb->port);
		struct sl_backend b;

		if (c < 0) { /* only in the maps: goes after the swap */
			err = record(r, SL_CHANGE_REMOVE, SL_OBJ_BACKEND, name,
				     backend_name(&cb->v, ep, sizeof(ep)), "weight %u", cb->v.weight);
			(*removed)++;
			changed = 1;
			i++;
		} else if (c > 0) { /* only in the document: a new id */
			err = record(r, SL_CHANGE_ADD, SL_OBJ_BACKEND, name,
				     reg_backend_name(wb, ep, sizeof(ep)), "weight %u", wb->weight);
			changed = 1;
			if (!err && !r->dry_run) {
				ids[wi[j].pos] = pool_take(&r->be_ids);
				if (!ids[wi[j].pos]) {
					errno = ENOSPC;
					err = fail(r, "service \"%s\": no free backend id (limit %d)",
						   name, SL_MAX_BACKENDS);
					break;
				}
				fill_backend(&b, wb, cur->v.id);
				err = reset_backend_state(r, ids[wi[j].pos]);
				if (!err)
					err = write_backend(r, ids[wi[j].pos], &b);
			}
			j++;
		} else {
			ids[wi[j].pos] = cb->id;
			if (cb->v.weight != wb->weight) {
				err = record(r, SL_CHANGE_UPDATE, SL_OBJ_BACKEND, name,
					     reg_backend_name(wb, ep, sizeof(ep)), "weight %u -> %u",
					     cb->v.weight, wb->weight);
				changed = 1;
				b = cb->v; /* keeps the health the agent set */
				b.weight = wb->weight;
				if (!err && !r->dry_run)
					err = write_backend(r, cb->id, &b);
			}
			i++;
			j++;
		}
		if (err)
			break;
	}
	free(wi);
	return err ? err : changed;
}

/*
 * Removes backends of cur that the document no longer lists (after the swap),
 * and has the service's ejections recounted without them.
 */
static int drop_unlisted(struct reconciler *r, const struct sl_state_service *cur, const __u32 *ids,
			 size_t n)
{
	struct plan *p = &r->plan;
	struct recount *rc;
	int err = 0;

	for (size_t i = 0; i < cur->backend_count && !err; i++) {
		int listed = 0;

		for (size_t k = 0; k < n && !listed; k++)
			listed = ids[k] == cur->backends[i].id;
		if (!listed)
			err = delete_backend(r, cur->backends[i].id);
	}
	if (err)
		return err;
	rc = realloc(p->recounts, (p->recount_count + 1) * sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	p->recounts = rc;
	rc = &p->recounts[p->recount_count];
	rc->svc_id = cur->v.id;
	rc->n = n;
	rc->ids = malloc((n + 1) * sizeof(*ids));
	if (!rc->ids)
		return -ENOMEM;
	memcpy(rc->ids, ids, n * sizeof(*ids));
	p->recount_count++;
	return 0;
}

/*
 * Which services have a table in force: inner map ids by service id (a
 * service without one is repaired by the next apply). A batch read of an
 * array of maps walks all SL_MAX_SERVICES slots, 0.33-0.4 ms here, and one
 * lookup costs about 1.5 us, so up to a few hundred services are looked up
 * one by one.
 */
static int read_table_ids(struct reconciler *r, const struct sl_state *cur)
{
	struct sl_batch all;
	int err;

	r->table_ids = calloc(SL_MAX_SERVICES, sizeof(*r->table_ids));
	if (!r->table_ids)
		return -ENOMEM;
	if (cur->count < SL_MAX_SERVICES / 64) {
		for (size_t i = 0; i < cur->count; i++) {
			__u32 id = cur->services[i].v.id;

			if (id < SL_MAX_SERVICES &&
			    bpf_map_lookup_elem(r->m->svc_slots, &id, &r->table_ids[id]) &&
			    errno != ENOENT)
				return -errno;
		}
		return 0;
	}
	sl_batch_init(&all, sizeof(__u32), sizeof(__u32));
	err = sl_batch_dump(r->m->svc_slots, &all);
	for (size_t i = 0; !err && i < all.count; i++) {
		__u32 id = ((__u32 *)all.keys)[i];

		if (id < SL_MAX_SERVICES)
			r->table_ids[id] = ((__u32 *)all.values)[i];
	}
	sl_batch_free(&all);
	return err;
}

/* Slot count of the table in force for svc_id; -ENOENT when there is none. */
static int table_len(struct reconciler *r, __u32 svc_id, __u32 *len)
{
	__u32 inner_id = svc_id < SL_MAX_SERVICES ? r->table_ids[svc_id] : 0, zero = 0;
	int fd, err = 0;

	if (!inner_id)
		return -ENOENT;
	fd = bpf_map_get_fd_by_id(inner_id);
	if (fd < 0)
		return -errno;
	if (bpf_map_lookup_elem(fd, &zero, len))
		err = -errno;
	close(fd);
	return err;
}

static int update_service(struct reconciler *r, const struct sl_state_service *cur,
			  const struct sl_reg_service *want)
{
	const char *name = want->settings.name;
	int table_changed, removed, err = 0, has_table;
	__u32 *ids, svc_id = cur->v.id, len = 0;
	char detail[192];

	ids = calloc(want->backend_count + 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	diff_settings(cur, want, detail, sizeof(detail));
	if (detail[0]) {
		err = record(r, SL_CHANGE_UPDATE, SL_OBJ_SERVICE, name, NULL, "%s", detail);
		if (err)
			goto out;
	}
	table_changed = merge_backends(r, cur, want, ids, &removed);
	if (table_changed < 0) {
		err = table_changed;
		goto out;
	}
	/* The size in force matters to maglev only; the others just need one to exist. */
	has_table = svc_id < SL_MAX_SERVICES && r->table_ids[svc_id];
	if (has_table && cur->v.algorithm == SL_ALG_MAGLEV)
		has_table = !table_len(r, svc_id, &len) && (len || !want->backend_count);
	if (!has_table) {
		err = record(r, SL_CHANGE_UPDATE, SL_OBJ_SERVICE, name, NULL,
			     "selection table missing: rebuilt");
		if (err)
			goto out;
	}
	if (r->dry_run)
		goto out;
	if (table_changed || !has_table || cur->v.algorithm != want->settings.algorithm)
		err = install_table(r, want, svc_id, ids,
				    cur->v.algorithm == SL_ALG_MAGLEV ? len : 0);
	if (!err && (detail[0] || cur->v.backend_count != want->backend_count))
		err = write_service(r, want, svc_id, want->backend_count, cur->v.unhealthy_count);
	if (!err && removed)
		err = drop_unlisted(r, cur, ids, want->backend_count);
out:
	free(ids);
	return err;
}

static int cmp_reg_ptr(const void *x, const void *y)
{
	const struct sl_reg_service *a = *(const struct sl_reg_service *const *)x;
	const struct sl_reg_service *b = *(const struct sl_reg_service *const *)y;

	return strncmp(a->settings.name, b->settings.name, SL_NAME_MAX);
}

static const struct sl_reg_service *find_wanted(const struct sl_reg_service **sorted, size_t n,
						const char *name)
{
	struct sl_reg_service probe;
	const struct sl_reg_service *p = &probe, **hit;

	memset(&probe, 0, sizeof(probe));
	snprintf(probe.settings.name, sizeof(probe.settings.name), "%s", name);
	hit = bsearch(&p, sorted, n, sizeof(*sorted), cmp_reg_ptr);
	return hit ? *hit : NULL;
}

static int write_generation(struct reconciler *r, const struct sl_registry *want)
{
	struct sl_generation g = { 0 };
	struct timespec now;
	__u32 zero = 0;

	sl_generation_read(r->m, &g);
	clock_gettime(CLOCK_REALTIME, &now);
	g.generation++;
	g.applied_unix_ns = (__u64)now.tv_sec * 1000000000ULL + now.tv_nsec;
	g.next_service_id = r->svc_ids.next;
	g.next_backend_id = r->be_ids.next;
	g.service_count = want->count;
	g.backend_count = 0;
	for (size_t i = 0; i < want->count; i++)
		g.backend_count += want->services[i].backend_count;
	memcpy(g.sha256, want->sha256, sizeof(g.sha256));
	if (bpf_map_update_elem(r->m->generation, &zero, &g, BPF_ANY))
		return fail(r, "cannot record the generation in sl_generation: %s", strerror(errno));
	r->res->generation = g.generation;
	return 0;
}

/*
 * Drops from a batch keyed by backend id the ids this apply released and
 * then took again (the id cursor came round to them): each now names a new
 * record, written before the swaps, which the removals after them must leave.
 */
static void keep_retaken(struct sl_batch *b, const struct id_pool *pool, __u32 stride)
{
	size_t n = 0;

	for (size_t i = 0; i < b->count; i++) {
		__u32 id;

		memcpy(&id, b->keys + i * b->key_size, sizeof(id));
		id %= stride; /* a key of a CPU block: cpu * stride + id */
		if (id < pool->size && pool->used[id])
			continue;
		memmove(b->keys + n * b->key_size, b->keys + i * b->key_size, b->key_size);
		if (b->values)
			memmove(b->values + n * b->value_size, b->values + i * b->value_size,
				b->value_size);
		n++;
	}
	b->count = n;
}

static int flush_step(struct reconciler *r, int err, const char *what, const char *map)
{
	if (err)
		snprintf(r->err, r->errlen, "cannot %s in %s: %s", what, map, strerror(-err));
	return err;
}

/*
 * Writes the plan. Order: keys of removed and moved services go first (no
 * connect reaches them any more), and then their tables are emptied: before
 * any new table is installed, as a service added in the same apply may get
 * a removed one's id; then backend records and fresh per-id state, so every
 * id a new table names resolves; then the tables, swapped in one batch (one
 * RCU wait for all); then the service values; last the backends no table
 * names any more.
 */
static int flush_plan(struct reconciler *r)
{
	const struct sl_maps *m = r->m;
	struct plan *p = &r->plan;
	int err;

	keep_retaken(&p->be_del, &r->be_ids, SL_MAX_BACKENDS);
	keep_retaken(&p->be_gone_health, &r->be_ids, SL_MAX_BACKENDS);
	keep_retaken(&p->be_gone_xdp, &r->be_ids, SL_XDP_BE_STRIDE);
	if ((err = flush_step(r, sl_batch_delete(m->services, &p->svc_del), "remove services",
			      "sl_services")) ||
	    (err = flush_step(r, sl_batch_update(m->svc_slots, &p->slots_emptied, 0),
			      "empty removed services' selection tables", "sl_svc_slots")) ||
	    (err = flush_step(r, sl_batch_update(m->be_stats, &p->be_fresh_stats, 0),
			      "zero backend counters", "sl_be_stats")) ||
	    (err = flush_step(r, sl_batch_update(m->breakers, &p->be_fresh_breaker, BPF_F_LOCK),
			      "close new breakers", "sl_breakers")) ||
	    (err = flush_step(r, sl_batch_update(m->live, &p->be_fresh_live, 0),
			      "zero live counts", "sl_live")) ||
	    (err = flush_step(r, sl_batch_update(m->xdp_backend, &p->be_fresh_xdp, 0),
			      "zero backend XDP counters and routes", "sl_xdp_backend")) ||
	    (err = flush_step(r, sl_batch_update(m->backends, &p->be_put, 0), "write backends",
			      "sl_backends")) ||
	    (err = flush_step(r, sl_batch_update(m->be_health, &p->be_health_put, 0),
			      "copy backends' service and health", "sl_be_health")) ||
	    (err = flush_step(r, sl_batch_update(m->svc_stats, &p->svc_fresh_stats, 0),
			      "zero service counters", "sl_svc_stats")) ||
	    (err = flush_step(r, sl_batch_update(m->rr, &p->svc_fresh_rr, 0),
			      "reset round-robin positions", "sl_rr")) ||
	    (err = flush_step(r, sl_batch_update(m->svc_state, &p->svc_fresh_state, 0),
			      "reset service state", "sl_svc_state")) ||
	    (err = flush_step(r, sl_batch_update(m->rl_svc, &p->svc_fresh_rl, 0),
			      "fill connection buckets", "sl_rl_svc")) ||
	    (err = flush_step(r, sl_batch_update(m->xdp_syn, &p->svc_fresh_syn, 0),
			      "fill SYN buckets", "sl_xdp_syn")) ||
	    (err = flush_step(r, sl_batch_update(m->xdp_stats, &p->svc_fresh_xdp, 0),
			      "zero XDP counters", "sl_xdp_stats")) ||
	    (err = flush_step(r, sl_batch_update(m->svc_slots, &p->tables, 0),
			      "install selection tables", "sl_svc_slots")) ||
	    (err = flush_step(r, sl_batch_update(m->services, &p->svc_put, 0), "write services",
			      "sl_services")) ||
	    (err = flush_step(r, sl_batch_delete(m->backends, &p->be_del), "remove backends",
			      "sl_backends")) ||
	    (err = flush_step(r, sl_batch_update(m->xdp_backend, &p->be_gone_xdp, 0),
			      "forget removed backends' routes", "sl_xdp_backend")) ||
	    (err = flush_step(r, sl_batch_update(m->be_health, &p->be_gone_health, 0),
			      "clear removed backends' copies", "sl_be_health")))
		return err;
	for (size_t i = 0; i < p->recount_count; i++)
		sl_svc_state_recount(m, p->recounts[i].svc_id, p->recounts[i].ids, p->recounts[i].n);
	if (r->write_global) {
		__u32 zero = 0;

		if (bpf_map_update_elem(m->xdp_cfg, &zero, &r->global_xdp, BPF_ANY))
			return flush_step(r, -errno, "write the global XDP limits", "sl_xdp_cfg");
	}
	return 0;
}

/* The document's global block: the XDP per-source limits, one map entry. */
static int plan_global(struct reconciler *r, const struct sl_registry *want)
{
	struct sl_xdp_cfg cur = { 0 };
	__u32 zero = 0;
	int err;

	bpf_map_lookup_elem(r->m->xdp_cfg, &zero, &cur);
	if (!memcmp(&cur, &want->xdp, sizeof(cur)))
		return 0;
	err = record(r, SL_CHANGE_UPDATE, SL_OBJ_GLOBAL, "", NULL,
		     "xdp source limit %u/s burst %u -> %u/s burst %u",
		     cur.source_packets_per_second, cur.source_burst,
		     want->xdp.source_packets_per_second, want->xdp.source_burst);
	if (err || r->dry_run)
		return err;
	r->global_xdp = want->xdp;
	r->write_global = 1;
	return 0;
}

static void mark_used(struct reconciler *r, const struct sl_state *cur)
{
	for (size_t i = 0; i < cur->count; i++) {
		pool_mark(&r->svc_ids, cur->services[i].v.id);
		for (size_t k = 0; k < cur->services[i].backend_count; k++)
			pool_mark(&r->be_ids, cur->services[i].backends[k].id);
	}
	for (size_t i = 0; i < cur->orphan_count; i++)
		pool_mark(&r->be_ids, cur->orphans[i].id);
}

/*
 * sl_xdp_vips after an apply's writes: every wanted service under its key,
 * with the id it had (a service keeps its id by name) or the one the plan
 * gave it, without reading sl_services back.
 */
static int index_after(struct reconciler *r, struct sl_xdp_vip *index, const struct sl_state *cur,
		       const struct sl_registry *want)
{
	struct sl_svc_key *keys = want->count ? calloc(want->count, sizeof(*keys)) : NULL;
	struct sl_service *svcs = want->count ? calloc(want->count, sizeof(*svcs)) : NULL;
	const struct sl_batch *put = &r->plan.svc_put;
	struct sl_vip_pass p = { .keys = keys, .svcs = svcs, .key_stride = sizeof(*keys),
				 .svc_stride = sizeof(*svcs) };
	int err = -ENOMEM;

	if (want->count && (!keys || !svcs))
		goto out;
	for (size_t i = 0; i < want->count; i++) {
		const struct sl_state_service *c = sl_state_find(cur, want->services[i].settings.name);

		if (!c)
			continue;
		keys[p.n] = want->services[i].key;
		svcs[p.n] = want->services[i].settings;
		svcs[p.n++].id = c->v.id;
	}
	for (size_t i = 0; i < put->count && p.n < want->count; i++) {
		const struct sl_service *v = (const void *)(put->values + i * put->value_size);

		if (sl_state_find(cur, v->name))
			continue; /* kept its id: above */
		memcpy(&keys[p.n], put->keys + i * put->key_size, sizeof(keys[p.n]));
		svcs[p.n++] = *v;
	}
	err = sl_vip_index_write(index, &p, 0);
out:
	free(keys);
	free(svcs);
	return err;
}

int sl_reconcile(const struct sl_maps *m, const struct sl_registry *want, int dry_run,
		 struct sl_apply_result *res, char *err, size_t errlen)
{
	struct reconciler r = { .m = m, .dry_run = dry_run, .res = res, .err = err,
				.errlen = errlen };

	plan_init(&r.plan);
	const struct sl_reg_service **sorted = NULL;
	struct sl_xdp_vip *index = NULL; /* sl_xdp_vips, mapped for both its writes */
	struct sl_generation g = { 0 };
	struct sl_state cur;
	int ret;

	memset(res, 0, sizeof(*res));
	err[0] = '\0';
	ret = sl_state_read(m, &cur);
	if (ret) {
		snprintf(err, errlen, "cannot read the current maps: %s", strerror(-ret));
		return ret;
	}
	/* Ids continue where the last apply stopped (struct sl_generation). */
	sl_generation_read(m, &g);
	sorted = calloc(want->count + 1, sizeof(*sorted));
	ret = -ENOMEM;
	if (!sorted || pool_init(&r.svc_ids, SL_MAX_SERVICES, g.next_service_id) ||
	    pool_init(&r.be_ids, SL_MAX_BACKENDS, g.next_backend_id))
		goto out;
	mark_used(&r, &cur);
	ret = read_table_ids(&r, &cur);
	if (ret) {
		snprintf(err, errlen, "cannot read sl_svc_slots: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < want->count; i++)
		sorted[i] = &want->services[i];
	qsort(sorted, want->count, sizeof(*sorted), cmp_reg_ptr);

	/*
	 * Removals and VIP moves first, so a VIP that changes hands within one
	 * document is free before its new owner is written.
	 */
	ret = 0;
	for (size_t i = 0; i < cur.count && !ret; i++) {
		const struct sl_state_service *c = &cur.services[i];
		const struct sl_reg_service *w = find_wanted(sorted, want->count, c->v.name);

		if (!w)
			ret = remove_service(&r, c);
		else if (!dry_run && memcmp(&c->key, &w->key, sizeof(c->key)))
			ret = sl_batch_add(&r.plan.svc_del, &c->key, NULL);
	}
	for (size_t i = 0; i < cur.orphan_count && !ret; i++) {
		char ep[SL_ENDPOINT_STRLEN];

		ret = record(&r, SL_CHANGE_REMOVE, SL_OBJ_BACKEND, "",
			     backend_name(&cur.orphans[i].v, ep, sizeof(ep)),
			     "left over from an interrupted apply");
		if (!ret && !dry_run)
			ret = delete_backend(&r, cur.orphans[i].id);
	}
	for (size_t i = 0; i < want->count && !ret; i++) {
		const struct sl_reg_service *w = &want->services[i];
		const struct sl_state_service *c = sl_state_find(&cur, w->settings.name);

		ret = c ? update_service(&r, c, w) : add_service(&r, w);
	}
	if (!ret)
		ret = plan_global(&r, want);
	if (ret)
		goto out;
	if (dry_run) {
		res->generation = g.generation;
	} else {
		/*
		 * Widened first, so sl_xdp never takes a VIP in force for none;
		 * the index narrowed first, so it never names a service a VIP
		 * loses (sluice/xdp.h, struct sl_xdp_vip).
		 */
		ret = sl_vip_filter_widen(m, want);
		if (ret)
			snprintf(err, errlen, "cannot write sl_vip_filter: %s", strerror(-ret));
		if (!ret && !(index = sl_vip_index_map(m->xdp_vips)))
			ret = -errno;
		if (!ret)
			ret = sl_vip_index_narrow(index, &cur, want);
		if (ret && !err[0])
			snprintf(err, errlen, "cannot write sl_xdp_vips: %s", strerror(-ret));
		if (!ret)
			ret = flush_plan(&r);
		if (!ret)
			ret = write_generation(&r, want);
		if (!ret && (ret = sl_vip_filter_set(m, want)))
			snprintf(err, errlen, "cannot write sl_vip_filter: %s", strerror(-ret));
		if (!ret && (ret = index_after(&r, index, &cur, want)))
			snprintf(err, errlen, "cannot write sl_xdp_vips: %s", strerror(-ret));
	}
out:
	if (ret && !err[0])
		snprintf(err, errlen, "%s", strerror(-ret));
	plan_free(&r.plan);
	free(r.table_ids);
	free(r.svc_ids.used);
	free(r.be_ids.used);
	free(sorted);
	sl_vip_index_unmap(index);
	sl_state_free(&cur);
	return ret;
}

void sl_apply_result_free(struct sl_apply_result *res)
{
	free(res->changes);
	memset(res, 0, sizeof(*res));
}
