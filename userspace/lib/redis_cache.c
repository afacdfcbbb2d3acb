// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <openssl/evp.h>

#include "addr.h"
#include "redis_cache.h"
#include "redis_doc.h"
#include "redis_keys.h"
#include "strmap.h"

#define NOT_IN_HEAP SIZE_MAX

struct rc_svc;

struct rc_inst {
	struct rc_svc *svc;
	char id[SL_ENDPOINT_STRLEN];
	char *raw;
	size_t rawlen;
	struct sl_reg_backend be;
	int parsed;	    /* raw is a valid instance value */
	char *err;	    /* why it is skipped (parse or family), NULL if it is not */
	int err_reported;
	int ttl_known;	    /* persistent, or a deadline is on the heap */
	__u64 deadline_ms;
	size_t heap_idx;
};

struct rc_svc {
	char name[SL_NAME_MAX];
	char *raw;
	size_t rawlen;
	char *err; /* the current definition is invalid; NULL if not */
	int err_reported;
	int have_good; /* good/good_def: the last valid definition, in force */
	struct sl_reg_service good;
	json_t *good_def;
	struct sl_strmap inst;
	int dirty; /* bes and text must be rebuilt */
	struct sl_reg_backend *bes;
	size_t nbes;
	char *text;
	size_t textlen;
	char *over_err; /* more than SL_MAX_BACKENDS_PER_SVC instances */
	int over_err_reported;
	char *clash_err; /* left out at assembly: a duplicate VIP, or the limits */
	int clash_err_reported;
};

struct sl_rcache {
	char prefix[SL_REDIS_PREFIX_MAX + 1];
	struct sl_strmap svcs;
	struct rc_inst **heap;
	size_t heap_len;
	size_t heap_cap;
	size_t ninst;
	int changed;
};

/* --- the deadline heap ------------------------------------------------------------------ */

static void heap_set(struct sl_rcache *c, size_t i, struct rc_inst *in)
{
	c->heap[i] = in;
	in->heap_idx = i;
}

static void heap_up(struct sl_rcache *c, size_t i)
{
	struct rc_inst *in = c->heap[i];

	while (i) {
		size_t parent = (i - 1) / 2;

		if (c->heap[parent]->deadline_ms <= in->deadline_ms)
			break;
		heap_set(c, i, c->heap[parent]);
		i = parent;
	}
	heap_set(c, i, in);
}

static void heap_down(struct sl_rcache *c, size_t i)
{
	struct rc_inst *in = c->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		__u64 best = in->deadline_ms;

		if (l < c->heap_len && c->heap[l]->deadline_ms < best) {
			m = l;
			best = c->heap[l]->deadline_ms;
		}
		if (r < c->heap_len && c->heap[r]->deadline_ms < best)
			m = r;
		if (m == i)
			break;
		heap_set(c, i, c->heap[m]);
		i = m;
	}
	heap_set(c, i, in);
}

static void heap_remove(struct sl_rcache *c, struct rc_inst *in)
{
	size_t i = in->heap_idx;
	struct rc_inst *last;

	if (i == NOT_IN_HEAP)
		return;
	in->heap_idx = NOT_IN_HEAP;
	last = c->heap[--c->heap_len];
	if (i == c->heap_len)
		return;
	heap_set(c, i, last);
	heap_up(c, i);
	heap_down(c, last->heap_idx);
}

static int heap_arm(struct sl_rcache *c, struct rc_inst *in, __u64 deadline_ms)
{
	if (in->heap_idx != NOT_IN_HEAP) {
		in->deadline_ms = deadline_ms;
		heap_up(c, in->heap_idx);
		heap_down(c, in->heap_idx);
		return 0;
	}
	if (c->heap_len == c->heap_cap) {
		size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
		struct rc_inst **h = realloc(c->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		c->heap = h;
		c->heap_cap = cap;
	}
	in->deadline_ms = deadline_ms;
	heap_set(c, c->heap_len++, in);
	heap_up(c, c->heap_len - 1);
	return 0;
}

/* --- services and instances ------------------------------------------------------------- */

struct sl_rcache *sl_rcache_new(const char *prefix)
{
	struct sl_rcache *c = calloc(1, sizeof(*c));

	if (c)
		snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
	return c;
}

static void inst_free(struct sl_rcache *c, struct rc_inst *in)
{
	heap_remove(c, in);
	free(in->raw);
	free(in->err);
	free(in);
	c->ninst--;
}

static void free_inst_cb(const char *key, void *val, void *ctx)
{
	(void)key;
	inst_free(ctx, val);
}

static void svc_free(struct sl_rcache *c, struct rc_svc *s)
{
	sl_strmap_each(&s->inst, free_inst_cb, c);
	sl_strmap_clear(&s->inst);
	json_decref(s->good_def);
	free(s->raw);
	free(s->err);
	free(s->bes);
	free(s->text);
	free(s->over_err);
	free(s->clash_err);
	free(s);
}

static void free_svc_cb(const char *key, void *val, void *ctx)
{
	(void)key;
	svc_free(ctx, val);
}

void sl_rcache_free(struct sl_rcache *c)
{
	if (!c)
		return;
	sl_strmap_each(&c->svcs, free_svc_cb, c);
	sl_strmap_clear(&c->svcs);
	free(c->heap);
	free(c);
}

static int same_raw(const char *a, size_t alen, const char *b, size_t blen)
{
	return a && alen == blen && !memcmp(a, b, blen);
}

static char *dup_raw(const char *raw, size_t len)
{
	char *p = malloc(len + 1);

	if (p) {
		memcpy(p, raw, len);
		p[len] = '\0';
	}
	return p;
}

/* Replaces *slot with a copy of msg (NULL clears it); reported goes back to 0 on a new text. */
static void set_err(char **slot, int *reported, const char *msg)
{
	if (msg && *slot && !strcmp(*slot, msg))
		return;
	free(*slot);
	*slot = msg ? strdup(msg) : NULL;
	*reported = 0;
}

int sl_rcache_put_service(struct sl_rcache *c, const char *name, const char *raw, size_t len)
{
	struct rc_svc *s = sl_strmap_get(&c->svcs, name);
	char key[SL_REDIS_KEY_MAX], err[SL_ERR_MAX];
	struct sl_reg_service parsed;
	json_t *def;
	char *copy;

	if (s && same_raw(s->raw, s->rawlen, raw, len))
		return 0;
	copy = dup_raw(raw, len);
	if (!copy)
		return -ENOMEM;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || sl_strmap_put(&c->svcs, name, s, NULL)) {
			free(s);
			free(copy);
			return -ENOMEM;
		}
		snprintf(s->name, sizeof(s->name), "%s", name);
	}
	free(s->raw);
	s->raw = copy;
	s->rawlen = len;
	sl_rkey_services(c->prefix, key, sizeof(key));
	/* A new error changes no document, but the report of skipped keys. */
	c->changed = 1;
	if (sl_rsvc_parse(key, name, raw, len, &parsed, &def, err, sizeof(err))) {
		set_err(&s->err, &s->err_reported, err);
		/* A definition never valid is not in the document; the last good one stays. */
		return 0;
	}
	set_err(&s->err, &s->err_reported, NULL);
	json_decref(s->good_def);
	s->good_def = def;
	s->good = parsed;
	s->have_good = 1;
	s->dirty = 1;
	c->changed = 1;
	return 1;
}

int sl_rcache_del_service(struct sl_rcache *c, const char *name)
{
	struct rc_svc *s = sl_strmap_del(&c->svcs, name);

	if (!s)
		return 0;
	svc_free(c, s);
	c->changed = 1;
	return 1;
}

struct names_ctx {
	struct sl_strmap keep;
	char **gone;
	size_t ngone;
	size_t cap;
	int oom;
};

static void collect_gone(const char *key, void *val, void *ctx)
{
	struct names_ctx *n = ctx;

	(void)val;
	if (sl_strmap_get(&n->keep, key))
		return;
	if (n->ngone == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 16;
		char **g = realloc(n->gone, cap * sizeof(*g));

		if (!g) {
			n->oom = 1;
			return;
		}
		n->gone = g;
		n->cap = cap;
	}
	n->gone[n->ngone] = strdup(key);
	if (n->gone[n->ngone])
		n->ngone++;
	else
		n->oom = 1;
}

/* The keys of m that are not in names[0..n), as malloc'd copies in nc->gone. */
static int keys_not_in(const struct sl_strmap *m, char *const *names, size_t n,
		       struct names_ctx *nc)
{
	static char present;

	memset(nc, 0, sizeof(*nc));
	for (size_t i = 0; i < n; i++)
		if (sl_strmap_put(&nc->keep, names[i], &present, NULL))
			nc->oom = 1;
	if (!nc->oom)
		sl_strmap_each(m, collect_gone, nc);
	sl_strmap_clear(&nc->keep);
	return nc->oom ? -ENOMEM : 0;
}

static void names_free(struct names_ctx *nc)
{
	for (size_t i = 0; i < nc->ngone; i++)
		free(nc->gone[i]);
	free(nc->gone);
}

size_t sl_rcache_retain_services(struct sl_rcache *c, char *const *names, size_t n)
{
	struct names_ctx nc;
	size_t removed = 0;

	/* Out of memory: nothing is removed, which a later read repairs. */
	if (keys_not_in(&c->svcs, names, n, &nc) == 0)
		for (size_t i = 0; i < nc.ngone; i++)
			removed += sl_rcache_del_service(c, nc.gone[i]);
	names_free(&nc);
	return removed;
}

int sl_rcache_has_service(const struct sl_rcache *c, const char *name)
{
	return sl_strmap_get(&c->svcs, name) != NULL;
}

int sl_rcache_service_family(const struct sl_rcache *c, const char *name, __u8 *family)
{
	const struct rc_svc *s = sl_strmap_get(&c->svcs, name);

	if (!s || !s->have_good)
		return -ENOENT;
	*family = s->good.key.family;
	return 0;
}

size_t sl_rcache_service_count(const struct sl_rcache *c)
{
	return c->svcs.count;
}

size_t sl_rcache_instance_count(const struct sl_rcache *c)
{
	return c->ninst;
}

struct each_ctx {
	void (*fn)(const char *name, void *ctx);
	void *ctx;
};

static void each_svc_cb(const char *key, void *val, void *ctx)
{
	struct each_ctx *e = ctx;

	(void)val;
	e->fn(key, e->ctx);
}

void sl_rcache_each_service(const struct sl_rcache *c, void (*fn)(const char *name, void *ctx),
			    void *ctx)
{
	struct each_ctx e = { fn, ctx };

	sl_strmap_each(&c->svcs, each_svc_cb, &e);
}

/* A parsed instance counts only if it is there and usable, which the assembly decides. */
static int inst_in_doc(const struct rc_inst *in)
{
	return in->parsed;
}

int sl_rcache_put_instance(struct sl_rcache *c, const char *svc, const char *id,
			   const char *raw, size_t len, long long pttl_ms, __u64 now_ms)
{
	struct rc_svc *s = sl_strmap_get(&c->svcs, svc);
	char key[SL_REDIS_KEY_MAX], err[SL_ERR_MAX];
	struct rc_inst *in;
	int changed = 0;

	if (!s)
		return 0;
	if (pttl_ms == -2)
		return sl_rcache_del_instance(c, svc, id);
	in = sl_strmap_get(&s->inst, id);
	if (!in) {
		in = calloc(1, sizeof(*in));
		if (!in || sl_strmap_put(&s->inst, id, in, NULL)) {
			free(in);
			return -ENOMEM;
		}
		in->svc = s;
		in->heap_idx = NOT_IN_HEAP;
		snprintf(in->id, sizeof(in->id), "%s", id);
		c->ninst++;
	}
	if (!same_raw(in->raw, in->rawlen, raw, len)) {
		char *copy = dup_raw(raw, len);

		if (!copy)
			return -ENOMEM;
		free(in->raw);
		in->raw = copy;
		in->rawlen = len;
		changed = inst_in_doc(in);
		sl_rkey_instance(c->prefix, svc, id, key, sizeof(key));
		in->parsed = !sl_rinst_parse(key, id, raw, len, &in->be, err, sizeof(err));
		set_err(&in->err, &in->err_reported, in->parsed ? NULL : err);
		changed |= inst_in_doc(in);
		s->dirty = 1;
		c->changed = 1;
	}
	if (pttl_ms >= 0) {
		/* One millisecond late, so the read at the deadline finds the key expired. */
		if (heap_arm(c, in, now_ms + (__u64)pttl_ms + 1))
			return -ENOMEM;
		in->ttl_known = 1;
	} else {
		heap_remove(c, in);
		in->ttl_known = 1;
	}
	if (changed) {
		s->dirty = 1;
		c->changed = 1;
	}
	return changed;
}

int sl_rcache_del_instance(struct sl_rcache *c, const char *svc, const char *id)
{
	struct rc_svc *s = sl_strmap_get(&c->svcs, svc);
	struct rc_inst *in = s ? sl_strmap_del(&s->inst, id) : NULL;
	int changed;

	if (!in)
		return 0;
	changed = inst_in_doc(in) || in->err;
	inst_free(c, in);
	if (changed) {
		s->dirty = 1;
		c->changed = 1;
	}
	return changed;
}

size_t sl_rcache_retain_instances(struct sl_rcache *c, const char *svc, char *const *ids,
				  size_t n)
{
	struct rc_svc *s = sl_strmap_get(&c->svcs, svc);
	struct names_ctx nc;
	size_t removed = 0;

	if (!s)
		return 0;
	if (keys_not_in(&s->inst, ids, n, &nc) == 0)
		for (size_t i = 0; i < nc.ngone; i++) {
			sl_rcache_del_instance(c, svc, nc.gone[i]);
			removed++;
		}
	names_free(&nc);
	return removed;
}

int sl_rcache_instance_needs_ttl(const struct sl_rcache *c, const char *svc, const char *id,
				 const char *raw, size_t len)
{
	const struct rc_svc *s = sl_strmap_get(&c->svcs, svc);
	const struct rc_inst *in = s ? sl_strmap_get(&s->inst, id) : NULL;

	return !in || !in->ttl_known || !same_raw(in->raw, in->rawlen, raw, len);
}

__u64 sl_rcache_next_expiry(const struct sl_rcache *c)
{
	return c->heap_len ? c->heap[0]->deadline_ms : 0;
}

size_t sl_rcache_pop_expired(struct sl_rcache *c, __u64 now_ms,
			     void (*fn)(const char *svc, const char *id, void *ctx), void *ctx)
{
	size_t n = 0;

	while (c->heap_len && c->heap[0]->deadline_ms <= now_ms) {
		struct rc_inst *in = c->heap[0];

		heap_remove(c, in);
		in->ttl_known = 0;
		in->deadline_ms = 0;
		fn(in->svc->name, in->id, ctx);
		n++;
	}
	return n;
}

int sl_rcache_changed(const struct sl_rcache *c)
{
	return c->changed;
}

/* --- assembly --------------------------------------------------------------------------- */

struct collect {
	struct rc_svc **v;
	size_t n;
	struct rc_inst **inst; /* scratch for one service */
	size_t ninst;
	size_t cap_inst;
	int oom;
};

static void collect_svc(const char *key, void *val, void *ctx)
{
	struct collect *cl = ctx;

	(void)key;
	cl->v[cl->n++] = val;
}

static void collect_inst(const char *key, void *val, void *ctx)
{
	struct collect *cl = ctx;

	(void)key;
	if (cl->ninst == cl->cap_inst) {
		size_t cap = cl->cap_inst ? cl->cap_inst * 2 : 64;
		struct rc_inst **v = realloc(cl->inst, cap * sizeof(*v));

		if (!v) {
			cl->oom = 1;
			return;
		}
		cl->inst = v;
		cl->cap_inst = cap;
	}
	cl->inst[cl->ninst++] = val;
}

static int cmp_svc(const void *a, const void *b)
{
	return strcmp((*(struct rc_svc *const *)a)->name, (*(struct rc_svc *const *)b)->name);
}

static int cmp_inst(const void *a, const void *b)
{
	const struct rc_inst *x = *(struct rc_inst *const *)a, *y = *(struct rc_inst *const *)b;

	return sl_rbackend_cmp(&x->be, &y->be);
}

static const char *family_name(__u8 family)
{
	return family == SL_FAMILY_IPV6 ? "IPv6" : "IPv4";
}

/* The service's backends and text, from its valid definition and parsed instances. */
static int rebuild(struct sl_rcache *c, struct rc_svc *s, struct collect *cl)
{
	char key[SL_REDIS_KEY_MAX], msg[SL_ERR_MAX];
	size_t n = 0, over = 0;

	cl->ninst = 0;
	sl_strmap_each(&s->inst, collect_inst, cl);
	if (cl->oom)
		return -ENOMEM;
	if (cl->ninst)
		qsort(cl->inst, cl->ninst, sizeof(*cl->inst), cmp_inst);
	free(s->bes);
	s->bes = calloc(cl->ninst ? cl->ninst : 1, sizeof(*s->bes));
	if (!s->bes)
		return -ENOMEM;
	for (size_t i = 0; i < cl->ninst; i++) {
		struct rc_inst *in = cl->inst[i];

		if (!in->parsed)
			continue;
		if (in->be.family != s->good.key.family) {
			sl_rkey_instance(c->prefix, s->name, in->id, key, sizeof(key));
			snprintf(msg, sizeof(msg), "%s: address: %s address for an %s VIP", key,
				 family_name(in->be.family), family_name(s->good.key.family));
			set_err(&in->err, &in->err_reported, msg);
			continue;
		}
		set_err(&in->err, &in->err_reported, NULL);
		if (n == SL_MAX_BACKENDS_PER_SVC) {
			over++;
			continue;
		}
		s->bes[n++] = in->be;
	}
	s->nbes = n;
	if (over) {
		sl_rkey_instances(c->prefix, s->name, key, sizeof(key));
		snprintf(msg, sizeof(msg), "%s: more than %d instances: the last %zu (in address "
			 "order) are left out", key, SL_MAX_BACKENDS_PER_SVC, over);
		set_err(&s->over_err, &s->over_err_reported, msg);
	} else {
		set_err(&s->over_err, &s->over_err_reported, NULL);
	}
	free(s->text);
	s->text = sl_rdoc_service_text(s->good_def, s->bes, s->nbes);
	if (!s->text)
		return -ENOMEM;
	s->textlen = strlen(s->text);
	s->dirty = 0;
	return 0;
}

struct report_ctx {
	struct sl_rcache_report *rep;
	void (*problem)(const char *msg, void *ctx);
	void *ctx;
};

static void note(struct report_ctx *r, const char *msg, int *reported)
{
	if (!r->rep->invalid++)
		snprintf(r->rep->first_error, sizeof(r->rep->first_error), "%s", msg);
	if (!*reported && r->problem)
		r->problem(msg, r->ctx);
	*reported = 1;
}

static void note_inst(const char *key, void *val, void *ctx)
{
	struct rc_inst *in = val;

	(void)key;
	if (in->err)
		note(ctx, in->err, &in->err_reported);
}

/* A service whose VIP another service (earlier by name) has, or beyond the limits. */
static int svc_excluded(struct sl_rcache *c, struct rc_svc *s, struct sl_strmap *vips,
			size_t nsvc, size_t nbe)
{
	char ep[SL_ENDPOINT_STRLEN], vip[SL_ENDPOINT_STRLEN + 8], key[SL_REDIS_KEY_MAX];
	char msg[SL_ERR_MAX];
	struct rc_svc *other;

	sl_rkey_services(c->prefix, key, sizeof(key));
	sl_endpoint_format(&s->good.key.vip, s->good.key.family, ntohs(s->good.key.port), ep,
			   sizeof(ep));
	snprintf(vip, sizeof(vip), "%s/%s", ep, sl_proto_name(s->good.key.proto));
	other = sl_strmap_get(vips, vip);
	if (other) {
		snprintf(msg, sizeof(msg), "%s field \"%s\": vip: duplicate VIP %s (also service "
			 "\"%s\"): left out", key, s->name, vip, other->name);
	} else if (nsvc >= SL_SERVICES_LIMIT || nbe + s->nbes > SL_BACKENDS_LIMIT) {
		snprintf(msg, sizeof(msg), "%s field \"%s\": left out: the registry would exceed "
			 "%d services or %d backends", key, s->name, SL_SERVICES_LIMIT,
			 SL_BACKENDS_LIMIT);
	} else {
		set_err(&s->clash_err, &s->clash_err_reported, NULL);
		return sl_strmap_put(vips, vip, s, NULL) ? -ENOMEM : 0;
	}
	set_err(&s->clash_err, &s->clash_err_reported, msg);
	return 1;
}

int sl_rcache_build(struct sl_rcache *c, struct sl_registry *out, char **text,
		    struct sl_rcache_report *rep,
		    void (*problem)(const char *msg, void *ctx), void *ctx)
{
	struct collect cl = { 0 };
	struct report_ctx rc = { rep, problem, ctx };
	struct sl_strmap vips = { 0 };
	struct sl_registry reg = { 0 };
	EVP_MD_CTX *md = NULL;
	size_t textlen = 0, nbe = 0;
	char *doc = NULL;
	int err = -ENOMEM;

	memset(rep, 0, sizeof(*rep));
	if (text)
		*text = NULL;
	cl.v = calloc(c->svcs.count ? c->svcs.count : 1, sizeof(*cl.v));
	reg.services = calloc(c->svcs.count ? c->svcs.count : 1, sizeof(*reg.services));
	md = EVP_MD_CTX_new();
	if (!cl.v || !reg.services || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	sl_strmap_each(&c->svcs, collect_svc, &cl);
	if (cl.n)
		qsort(cl.v, cl.n, sizeof(*cl.v), cmp_svc);

	EVP_DigestUpdate(md, SL_RDOC_HEAD, strlen(SL_RDOC_HEAD));
	textlen = strlen(SL_RDOC_HEAD) + strlen(SL_RDOC_TAIL);
	for (size_t i = 0; i < cl.n; i++) {
		struct rc_svc *s = cl.v[i];
		struct sl_reg_service *rs;
		int ex;

		if (s->err)
			note(&rc, s->err, &s->err_reported);
		if (!s->have_good)
			continue;
		if (s->dirty && (err = rebuild(c, s, &cl)))
			goto out;
		err = -ENOMEM;
		sl_strmap_each(&s->inst, note_inst, &rc);
		ex = svc_excluded(c, s, &vips, reg.count, nbe);
		if (ex < 0)
			goto out;
		if (s->over_err)
			note(&rc, s->over_err, &s->over_err_reported);
		if (ex) {
			note(&rc, s->clash_err, &s->clash_err_reported);
			continue;
		}
		rs = &reg.services[reg.count];
		*rs = s->good;
		rs->backend_count = s->nbes;
		if (s->nbes) {
			rs->backends = malloc(s->nbes * sizeof(*rs->backends));
			if (!rs->backends)
				goto out;
			memcpy(rs->backends, s->bes, s->nbes * sizeof(*rs->backends));
		}
		if (reg.count)
			EVP_DigestUpdate(md, ",", 1);
		EVP_DigestUpdate(md, s->text, s->textlen);
		textlen += s->textlen + (reg.count ? 1 : 0);
		reg.count++;
		nbe += s->nbes;
	}
	EVP_DigestUpdate(md, SL_RDOC_TAIL, strlen(SL_RDOC_TAIL));
	if (EVP_DigestFinal_ex(md, reg.sha256, NULL) != 1)
		goto out;
	if (text) {
		size_t off = 0;

		doc = malloc(textlen + 1);
		if (!doc)
			goto out;
		off += sprintf(doc, "%s", SL_RDOC_HEAD);
		for (size_t i = 0, k = 0; i < cl.n; i++) {
			struct rc_svc *s = cl.v[i];

			if (k == reg.count || !s->have_good ||
			    strcmp(s->name, reg.services[k].settings.name))
				continue;
			if (k++)
				doc[off++] = ',';
			memcpy(doc + off, s->text, s->textlen);
			off += s->textlen;
		}
		memcpy(doc + off, SL_RDOC_TAIL, strlen(SL_RDOC_TAIL) + 1);
		*text = doc;
		doc = NULL;
	}
	rep->services = reg.count;
	rep->backends = nbe;
	c->changed = 0;
	*out = reg;
	memset(&reg, 0, sizeof(reg));
	err = 0;
out:
	if (err)
		sl_registry_free(&reg);
	free(reg.services);
	free(doc);
	EVP_MD_CTX_free(md);
	sl_strmap_clear(&vips);
	free(cl.inst);
	free(cl.v);
	return err;
}
