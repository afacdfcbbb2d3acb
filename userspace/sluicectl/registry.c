// SPDX-License-Identifier: MIT
/*
 * sluicectl registry put FILE [--replace] | get: a registry document into a
 * Redis registry and back (README, "Redis registry").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/redis_cache.h"
#include "lib/redis_doc.h"
#include "lib/registry.h"
#include "redis.h"
#include "sluicectl.h"

static void warn_skipped(const char *msg, void *ctx)
{
	(void)ctx;
	log_warn("skipped %s", msg);
}

static int do_get(struct ctl *c, struct ctl_redis *r)
{
	struct sl_rcache *cache = sl_rcache_new(r->prefix);
	struct sl_rcache_report rep;
	struct sl_registry reg = { 0 };
	char *text = NULL;
	int err;

	if (!cache)
		return -ENOMEM;
	err = ctl_redis_load(r, cache);
	if (!err)
		err = sl_rcache_build(cache, &reg, &text, &rep, warn_skipped, NULL);
	if (err) {
		if (err == -ENOMEM)
			log_err("out of memory reading the registry %s", r->display);
		goto out;
	}
	if (c->pretty) {
		json_t *doc = json_loads(text, 0, NULL);

		ctl_print_json(c, doc);
	} else {
		/* The canonical bytes: `| sha256sum` gives the agent's generation SHA-256. */
		fputs(text, stdout);
	}
out:
	free(text);
	sl_registry_free(&reg);
	sl_rcache_free(cache);
	return err;
}

/*
 * The writes of a put, collected while reading what is there and sent as one
 * MULTI/EXEC afterwards (a read inside MULTI would only be queued).
 */
struct plan {
	char **cmds;
	size_t *lens;
	size_t n;
	size_t cap;
	size_t instances;
	size_t removed_instances;
	json_t *removed_services;
};

static int plan_add(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int plan_add(struct plan *p, const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int len;

	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		char **c = realloc(p->cmds, cap * sizeof(*c));
		size_t *l = c ? realloc(p->lens, cap * sizeof(*l)) : NULL;

		if (c)
			p->cmds = c;
		if (!c || !l)
			return -ENOMEM;
		p->lens = l;
		p->cap = cap;
	}
	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -ENOMEM;
	p->cmds[p->n] = cmd;
	p->lens[p->n++] = len;
	return 0;
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		redisFreeCommand(p->cmds[i]);
	free(p->cmds);
	free(p->lens);
	json_decref(p->removed_services);
}

/* svc's members and their PTTLs (-1: persistent), read before any write. */
static int read_members(struct ctl_redis *r, const char *svc, redisReply **members,
			long long **ttls)
{
	char key[SL_REDIS_KEY_MAX];
	redisReply *m;
	int err = 0;

	*ttls = NULL;
	*members = NULL;
	sl_rkey_instances(r->prefix, svc, key, sizeof(key));
	m = ctl_redis_cmd(r, "SMEMBERS %s", key);
	if (!m)
		return -EIO;
	*members = m;
	*ttls = calloc(m->elements ? m->elements : 1, sizeof(**ttls));
	if (!*ttls)
		return -ENOMEM;
	for (size_t i = 0; i < m->elements && !err; i++) {
		sl_rkey_instance(r->prefix, svc, m->element[i]->str, key, sizeof(key));
		err = ctl_redis_append(r, "PTTL %s", key);
	}
	for (size_t i = 0; i < m->elements && !err; i++) {
		redisReply *t = ctl_redis_next(r, "PTTL");

		if (!t)
			return -EIO;
		(*ttls)[i] = t->integer;
		freeReplyObject(t);
	}
	return err;
}

static int in_backends(const struct sl_reg_service *s, const char *id)
{
	char ep[SL_ENDPOINT_STRLEN];

	for (size_t i = 0; i < s->backend_count; i++) {
		const struct sl_reg_backend *b = &s->backends[i];

		if (!strcmp(sl_endpoint_format(&b->addr, b->family, b->port, ep, sizeof(ep)), id))
			return 1;
	}
	return 0;
}

/* One service of the document: its definition; its persistent instances if it lists backends. */
static int plan_service(struct ctl_redis *r, json_t *jsvc, const struct sl_reg_service *s,
			struct plan *p)
{
	char key[SL_REDIS_KEY_MAX], set[SL_REDIS_KEY_MAX], hkey[SL_REDIS_KEY_MAX];
	char ep[SL_ENDPOINT_STRLEN];
	redisReply *members = NULL;
	long long *ttls = NULL;
	json_t *def = json_deep_copy(jsvc);
	char *text;
	int err = 0;

	if (!def)
		return -ENOMEM;
	json_object_del(def, "backends");
	text = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(def);
	if (!text)
		return -ENOMEM;
	sl_rkey_services(r->prefix, hkey, sizeof(hkey));
	sl_rkey_instances(r->prefix, s->settings.name, set, sizeof(set));
	err = plan_add(p, "HSET %s %s %s", hkey, s->settings.name, text);
	free(text);
	/* "backends" given: the persistent instances become exactly these; TTL'd ones stay. */
	if (!err && json_object_get(jsvc, "backends")) {
		err = read_members(r, s->settings.name, &members, &ttls);
		for (size_t i = 0; !err && i < members->elements; i++) {
			const char *id = members->element[i]->str;

			if (ttls[i] != -1 || in_backends(s, id))
				continue;
			sl_rkey_instance(r->prefix, s->settings.name, id, key, sizeof(key));
			err = plan_add(p, "DEL %s", key);
			if (!err)
				err = plan_add(p, "SREM %s %s", set, id);
			p->removed_instances++;
		}
		for (size_t i = 0; !err && i < s->backend_count; i++) {
			const struct sl_reg_backend *b = &s->backends[i];
			char *value = sl_rinst_value(b);

			sl_endpoint_format(&b->addr, b->family, b->port, ep, sizeof(ep));
			sl_rkey_instance(r->prefix, s->settings.name, ep, key, sizeof(key));
			err = value ? plan_add(p, "SET %s %s", key, value) : -ENOMEM;
			if (!err)
				err = plan_add(p, "SADD %s %s", set, ep);
			free(value);
			p->instances++;
		}
	}
	if (members)
		freeReplyObject(members);
	free(ttls);
	return err;
}

/* --replace: services in Redis that the document does not have go, with their instances. */
static int plan_removals(struct ctl_redis *r, const struct sl_registry *reg, struct plan *p)
{
	char hkey[SL_REDIS_KEY_MAX], key[SL_REDIS_KEY_MAX], set[SL_REDIS_KEY_MAX];
	redisReply *names, *m;
	int err = 0;

	sl_rkey_services(r->prefix, hkey, sizeof(hkey));
	names = ctl_redis_cmd(r, "HKEYS %s", hkey);
	if (!names)
		return -EIO;
	for (size_t i = 0; i < names->elements && !err; i++) {
		const char *name = names->element[i]->str;
		int keep = 0;

		for (size_t k = 0; k < reg->count && !keep; k++)
			keep = !strcmp(reg->services[k].settings.name, name);
		if (keep)
			continue;
		sl_rkey_instances(r->prefix, name, set, sizeof(set));
		m = ctl_redis_cmd(r, "SMEMBERS %s", set);
		if (!m) {
			err = -EIO;
			break;
		}
		for (size_t k = 0; k < m->elements && !err; k++) {
			sl_rkey_instance(r->prefix, name, m->element[k]->str, key, sizeof(key));
			err = plan_add(p, "DEL %s", key);
		}
		freeReplyObject(m);
		if (!err)
			err = plan_add(p, "DEL %s", set);
		if (!err)
			err = plan_add(p, "HDEL %s %s", hkey, name);
		json_array_append_new(p->removed_services, json_string(name));
	}
	freeReplyObject(names);
	return err;
}

static int plan_publish(struct ctl_redis *r, const struct sl_registry *reg, struct plan *p)
{
	char chan[SL_REDIS_KEY_MAX];
	size_t i;
	json_t *v;
	int err = 0;

	sl_rkey_channel(r->prefix, chan, sizeof(chan));
	for (size_t k = 0; k < reg->count && !err; k++)
		err = plan_add(p, "PUBLISH %s %s", chan, reg->services[k].settings.name);
	json_array_foreach(p->removed_services, i, v)
		if (!err)
			err = plan_add(p, "PUBLISH %s %s", chan, json_string_value(v));
	return err;
}

/* MULTI, the plan, EXEC; 0 once EXEC has run it. */
static int run_plan(struct ctl_redis *r, struct plan *p)
{
	redisReply *exec;
	int err = ctl_redis_append(r, "MULTI");

	for (size_t i = 0; i < p->n && !err; i++)
		if (redisAppendFormattedCommand(r->c, p->cmds[i], p->lens[i]) != REDIS_OK)
			err = -ENOMEM;
	if (!err)
		err = ctl_redis_append(r, "EXEC");
	if (!err)
		err = ctl_redis_drain(r, 1 + p->n, "MULTI");
	if (err && r->c->err)
		return err;
	exec = ctl_redis_next(r, "EXEC");
	if (!exec)
		return -EIO;
	if (exec->type != REDIS_REPLY_ARRAY) {
		log_err("registry %s: the transaction was aborted; nothing written", r->display);
		err = -EIO;
	}
	freeReplyObject(exec);
	return err;
}

static int do_put(struct ctl *c, struct ctl_redis *r, const char *path)
{
	struct plan p = { .removed_services = json_array() };
	struct sl_registry reg = { 0 };
	char err_text[SL_ERR_MAX];
	json_error_t jerr;
	json_t *doc = NULL, *svcs;
	int err;

	err = sl_registry_load_file(path, &reg, err_text, sizeof(err_text));
	if (err) {
		log_err("registry rejected, nothing written: %s", err_text);
		goto out;
	}
	doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		log_err("%s: changed while being read", path);
		err = -EIO;
		goto out;
	}
	if (json_object_get(doc, "global")) {
		log_err("%s: global: the Redis registry does not hold global settings; nothing "
			"written (remove the block, or keep a file registry for it)", path);
		err = -EINVAL;
		goto out;
	}
	svcs = json_object_get(doc, "services");
	if (c->replace)
		err = plan_removals(r, &reg, &p);
	for (size_t i = 0; i < reg.count && !err; i++)
		err = plan_service(r, json_array_get(svcs, i), &reg.services[i], &p);
	if (!err)
		err = plan_publish(r, &reg, &p);
	if (!err)
		err = run_plan(r, &p);
	if (err) {
		if (err == -ENOMEM)
			log_err("out of memory");
		goto out;
	}
	if (c->json)
		ctl_print_json(c, json_pack("{s:s,s:I,s:I,s:I,s:O}", "registry", r->display,
					    "services", (json_int_t)reg.count, "instances",
					    (json_int_t)p.instances, "removed_instances",
					    (json_int_t)p.removed_instances, "removed_services",
					    p.removed_services));
	else
		printf("put %zu services (%zu persistent instances) into %s; removed %zu "
		       "persistent instances and %zu services\n", reg.count, p.instances,
		       r->display, p.removed_instances, json_array_size(p.removed_services));
out:
	plan_free(&p);
	json_decref(doc);
	sl_registry_free(&reg);
	return err;
}

int do_registry(struct ctl *c)
{
	struct ctl_redis r;
	const char *verb = c->argc ? c->argv[0] : "";
	int put = !strcmp(verb, "put"), get = !strcmp(verb, "get"), err;

	if (!(put && c->argc == 2) && !(get && c->argc == 1)) {
		fprintf(stderr, "sluicectl: registry put FILE [--replace] | registry get "
			"(with --registry redis://HOST:PORT)\n");
		usage();
		return CTL_EUSAGE;
	}
	if (c->replace && !put) {
		fprintf(stderr, "sluicectl: --replace applies to 'registry put' only\n");
		return CTL_EUSAGE;
	}
	err = ctl_redis_open(c, &r);
	if (err)
		return err;
	err = put ? do_put(c, &r, c->argv[1]) : do_get(c, &r);
	ctl_redis_close(&r);
	return err;
}
