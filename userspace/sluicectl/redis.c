// SPDX-License-Identifier: MIT
/*
 * sluicectl's connection to a Redis registry: blocking, with timeouts, for
 * `registry put/get`, `register` and `deregister`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "lib/log.h"
#include "lib/redis_cache.h"
#include "lib/redis_keys.h"
#include "redis.h"

#define CONNECT_TIMEOUT_S 3
#define COMMAND_TIMEOUT_S 5

static int read_password_file(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		log_err("cannot read the Redis password file %s: %s", path, strerror(errno));
		return -errno;
	}
	n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = '\0';
	if (!n) {
		log_err("the Redis password file %s is empty", path);
		return -EINVAL;
	}
	return 0;
}

/* --registry, else SLUICE_REGISTRY when it names Redis; the prefix and password likewise. */
static int resolve(const struct ctl *c, struct ctl_redis *r)
{
	const char *url = c->registry, *prefix = c->redis_prefix, *pwfile = c->redis_password_file;
	const char *pw = getenv("SLUICE_REDIS_PASSWORD");
	char err[512];
	int ret;

	if (!url) {
		url = getenv("SLUICE_REGISTRY");
		if (!url || strncmp(url, "redis", 5)) {
			log_err("no Redis registry: give --registry redis://HOST:PORT (or set "
				"SLUICE_REGISTRY)");
			return CTL_EUSAGE;
		}
	}
	if (sl_redis_url_parse(url, &r->url, err, sizeof(err))) {
		log_err("--registry: %s", err);
		return CTL_EUSAGE;
	}
	if (!prefix)
		prefix = getenv("SLUICE_REDIS_PREFIX");
	if (!prefix)
		prefix = SL_REDIS_PREFIX_DEFAULT;
	if (sl_redis_prefix_check(prefix, err, sizeof(err))) {
		log_err("--redis-prefix: %s", err);
		return CTL_EUSAGE;
	}
	snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
	if (!pwfile)
		pwfile = getenv("SLUICE_REDIS_PASSWORD_FILE");
	if (pwfile && *pwfile) {
		ret = read_password_file(pwfile, r->url.password, sizeof(r->url.password));
		if (ret)
			return ret;
	} else if (pw && *pw) {
		snprintf(r->url.password, sizeof(r->url.password), "%s", pw);
	}
	sl_redis_url_display(&r->url, r->display, sizeof(r->display));
	return 0;
}

int ctl_redis_open(const struct ctl *c, struct ctl_redis *r)
{
	struct timeval ct = { CONNECT_TIMEOUT_S, 0 }, rt = { COMMAND_TIMEOUT_S, 0 };
	redisReply *rep;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = resolve(c, r);
	if (ret)
		return ret;
	r->c = redisConnectWithTimeout(r->url.host, r->url.port, ct);
	if (!r->c || r->c->err) {
		log_err("cannot connect to the registry %s: %s", r->display,
			r->c ? r->c->errstr : "out of memory");
		ctl_redis_close(r);
		return -ECONNREFUSED;
	}
	redisSetTimeout(r->c, rt);
	if (r->url.password[0]) {
		if (r->url.user[0])
			rep = ctl_redis_cmd(r, "AUTH %s %s", r->url.user, r->url.password);
		else
			rep = ctl_redis_cmd(r, "AUTH %s", r->url.password);
		if (!rep) {
			ctl_redis_close(r);
			return -EACCES;
		}
		freeReplyObject(rep);
	}
	if (r->url.db) {
		rep = ctl_redis_cmd(r, "SELECT %u", r->url.db);
		if (!rep) {
			ctl_redis_close(r);
			return -EINVAL;
		}
		freeReplyObject(rep);
	}
	return 0;
}

void ctl_redis_close(struct ctl_redis *r)
{
	if (r->c)
		redisFree(r->c);
	r->c = NULL;
}

/* A reply that is not an error, or NULL with the failure logged. */
static redisReply *checked(struct ctl_redis *r, redisReply *rep, const char *what)
{
	if (!rep) {
		log_err("registry %s: %s: %s", r->display, what,
			r->c->errstr[0] ? r->c->errstr : "no reply");
		return NULL;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		log_err("registry %s: %s: %s", r->display, what, rep->str);
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

redisReply *ctl_redis_cmd(struct ctl_redis *r, const char *fmt, ...)
{
	char what[32];
	va_list ap;
	void *rep;

	snprintf(what, sizeof(what), "%.*s", (int)strcspn(fmt, " "), fmt);
	va_start(ap, fmt);
	rep = redisvCommand(r->c, fmt, ap);
	va_end(ap);
	return checked(r, rep, what);
}

int ctl_redis_append(struct ctl_redis *r, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = redisvAppendCommand(r->c, fmt, ap);
	va_end(ap);
	if (ret != REDIS_OK) {
		log_err("registry %s: out of memory queueing a command", r->display);
		return -ENOMEM;
	}
	return 0;
}

redisReply *ctl_redis_next(struct ctl_redis *r, const char *what)
{
	void *rep = NULL;

	if (redisGetReply(r->c, &rep) != REDIS_OK)
		rep = NULL;
	return checked(r, rep, what);
}

int ctl_redis_drain(struct ctl_redis *r, size_t n, const char *what)
{
	int err = 0;

	for (size_t i = 0; i < n; i++) {
		redisReply *rep = ctl_redis_next(r, what);

		if (!rep) {
			err = -EIO;
			if (r->c->err) /* the connection is gone: nothing more will come */
				break;
			continue;
		}
		freeReplyObject(rep);
	}
	return err;
}

/* Everything the registry holds, into cache: HGETALL, then members, then values (pipelined). */
int ctl_redis_load(struct ctl_redis *r, struct sl_rcache *cache)
{
	char key[SL_REDIS_KEY_MAX], **names = NULL;
	redisReply *all, **mem = NULL;
	size_t n;
	int err = 0;

	sl_rkey_services(r->prefix, key, sizeof(key));
	all = ctl_redis_cmd(r, "HGETALL %s", key);
	if (!all)
		return -EIO;
	n = all->type == REDIS_REPLY_ARRAY ? all->elements / 2 : 0;
	names = calloc(n ? n : 1, sizeof(*names));
	mem = calloc(n ? n : 1, sizeof(*mem));
	if (!names || !mem) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		redisReply *f = all->element[2 * i], *v = all->element[2 * i + 1];

		if (!sl_redis_name_valid(f->str, f->len)) {
			log_warn("skipped %s field \"%s\": not a service name", key, f->str);
			continue;
		}
		names[i] = f->str;
		if (sl_rcache_put_service(cache, f->str, v->str, v->len) < 0)
			err = -ENOMEM;
	}
	/* Replies come back in order: all the member lists first, then all the values. */
	for (size_t i = 0; i < n && !err; i++) {
		if (!names[i])
			continue;
		sl_rkey_instances(r->prefix, names[i], key, sizeof(key));
		err = ctl_redis_append(r, "SMEMBERS %s", key);
	}
	for (size_t i = 0; i < n && !err; i++)
		if (names[i] && !(mem[i] = ctl_redis_next(r, "SMEMBERS")))
			err = -EIO;
	for (size_t i = 0; i < n && !err; i++)
		for (size_t k = 0; names[i] && k < mem[i]->elements && !err; k++) {
			sl_rkey_instance(r->prefix, names[i], mem[i]->element[k]->str, key,
					 sizeof(key));
			err = ctl_redis_append(r, "GET %s", key);
		}
	for (size_t i = 0; i < n && !err; i++)
		for (size_t k = 0; names[i] && k < mem[i]->elements && !err; k++) {
			const char *m = mem[i]->element[k]->str;
			char id[SL_ENDPOINT_STRLEN];
			redisReply *v = ctl_redis_next(r, "GET");

			if (!v) {
				err = -EIO;
				break;
			}
			/* Members that are no canonical id are not instances anyone wrote. */
			if (v->type == REDIS_REPLY_STRING && !sl_rinst_id(m, id, sizeof(id)) &&
			    !strcmp(id, m) &&
			    sl_rcache_put_instance(cache, names[i], id, v->str, v->len, -1, 0) < 0)
				err = -ENOMEM;
			freeReplyObject(v);
		}
out:
	for (size_t i = 0; mem && i < n; i++)
		if (mem[i])
			freeReplyObject(mem[i]);
	free(mem);
	free(names);
	freeReplyObject(all);
	return err;
}
