// SPDX-License-Identifier: MIT
/*
 * What the Redis source reads into its cache, and when: everything at a
 * resync (HGETALL of the services, then each service's members and their
 * values, a TTL only for what is new or changed); one service or one instance
 * when a change message or an expired-key event names it; an instance again
 * when its TTL deadline passes (a heartbeat may have renewed it). All replies
 * come back in the order the commands went out on the one connection, so the
 * latest reply about a key is always the freshest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "redis_source_int.h"

/* Values per MGET: keeps a reply (and the time Redis spends on it) bounded. */
#define MGET_CHUNK 256

/* Removes a member whose key is gone, unless it came back meanwhile (atomic, in Redis). */
static const char srem_if_gone[] =
	"if redis.call('exists', KEYS[1]) == 0 then "
	"return redis.call('srem', KEYS[2], ARGV[1]) end return 0";

/* One read's context, shared by the commands it sent (refs) and freed with the last reply. */
struct rop {
	enum rs_kind kind;
	int refs;
	int gone;	/* GET said the key does not exist */
	int failed;	/* GET answered an error */
	char svc[SL_NAME_MAX];
	char id[SL_ENDPOINT_STRLEN];
	char *raw;
	size_t rawlen;
	size_t nids; /* MGET: the instances asked for, in order */
	char (*ids)[SL_ENDPOINT_STRLEN];
};

static struct rop *rop_new(enum rs_kind kind, const char *svc, const char *id)
{
	struct rop *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->kind = kind;
	if (svc)
		snprintf(op->svc, sizeof(op->svc), "%s", svc);
	if (id)
		snprintf(op->id, sizeof(op->id), "%s", id);
	return op;
}

static void rop_put(struct rop *op)
{
	if (--op->refs > 0)
		return;
	free(op->raw);
	free(op->ids);
	free(op);
}

/* An op that sent nothing is freed at once. */
static void rop_settle(struct rop *op)
{
	if (!op->refs) {
		op->refs = 1;
		rop_put(op);
	}
}

static int rop_send(struct source_redis *s, struct rop *op, redisCallbackFn *fn,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int rop_sent(struct source_redis *s, struct rop *op, int ret)
{
	if (ret)
		return ret;
	op->refs++;
	s->pending[op->kind]++;
	return 0;
}

static int rop_send(struct source_redis *s, struct rop *op, redisCallbackFn *fn,
		    const char *fmt, ...)
{
	va_list ap;
	int ret = -EIO;

	if (s->cmd) {
		va_start(ap, fmt);
		ret = redisvAsyncCommand(s->cmd, fn, op, fmt, ap) == REDIS_OK ? 0 : -EIO;
		va_end(ap);
		if (!ret && !s->inflight++)
			s->last_reply_ms = rs_now();
	}
	return rop_sent(s, op, ret);
}

/*
 * At the top of every read callback: the source if the reply is live (the
 * op's accounting settled), else NULL after dropping the op's reference.
 */
static struct source_redis *rop_reply(redisAsyncContext *ac, void *reply, struct rop *op)
{
	struct source_redis *s = rs_reply(ac, reply);

	if (!s) {
		rop_put(op);
		return NULL;
	}
	if (s->pending[op->kind])
		s->pending[op->kind]--;
	return s;
}

/* After a callback's work: the resync may be complete, the cache may want applying. */
static void rop_done(struct source_redis *s, struct rop *op)
{
	enum rs_kind kind = op->kind;

	rop_put(op);
	if (sl_rcache_changed(s->cache))
		rs_request_apply(s);
	if (kind == RS_RESYNC && !s->pending[RS_RESYNC] && s->state == RS_SYNCING)
		rs_resync_done(s);
	rs_rearm(s);
}

static int reply_is(const redisReply *r, int type, const char *what, struct source_redis *s)
{
	if (r->type == type)
		return 1;
	if (r->type == REDIS_REPLY_ERROR)
		log_warn("redis %s: %s: %s", s->display, what, r->str);
	return 0;
}

static void on_ignore(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	rs_reply(ac, reply);
}

static void cleanup_member(struct source_redis *s, const char *svc, const char *id)
{
	char key[SL_REDIS_KEY_MAX], set[SL_REDIS_KEY_MAX];

	sl_rkey_instance(s->prefix, svc, id, key, sizeof(key));
	sl_rkey_instances(s->prefix, svc, set, sizeof(set));
	rs_cmd(s, on_ignore, NULL, "EVAL %s 2 %s %s %s", srem_if_gone, key, set, id);
}

static void instance_gone(struct source_redis *s, const char *svc, const char *id)
{
	if (!rs_may_delete(s))
		return;
	sl_rcache_del_instance(s->cache, svc, id);
	cleanup_member(s, svc, id);
}

/* PTTL of an instance whose value op->raw holds (or op->gone: its GET found nothing). */
static void on_ttl(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	redisReply *r = reply;

	if (!s)
		return;
	if (op->gone || (r->type == REDIS_REPLY_INTEGER && r->integer == -2)) {
		instance_gone(s, op->svc, op->id);
	} else if (!op->failed && op->raw && reply_is(r, REDIS_REPLY_INTEGER, "PTTL", s)) {
		if (sl_rcache_put_instance(s->cache, op->svc, op->id, op->raw, op->rawlen,
					   r->integer, rs_now()) < 0)
			log_err("redis %s: out of memory caching instance %s of %s", s->display,
				op->id, op->svc);
	}
	rop_done(s, op);
}

static void on_get(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	redisReply *r = reply;

	if (!s)
		return;
	if (r->type == REDIS_REPLY_NIL) {
		op->gone = 1;
	} else if (reply_is(r, REDIS_REPLY_STRING, "GET", s)) {
		op->raw = malloc(r->len + 1);
		if (op->raw) {
			memcpy(op->raw, r->str, r->len);
			op->rawlen = r->len;
		}
		op->failed = !op->raw;
	} else {
		op->failed = 1;
	}
	rop_done(s, op);
}

void rs_read_instance(struct source_redis *s, const char *svc, const char *id)
{
	char key[SL_REDIS_KEY_MAX];
	struct rop *op = rop_new(RS_READ, svc, id);

	if (!op)
		return;
	sl_rkey_instance(s->prefix, svc, id, key, sizeof(key));
	/* GET then PTTL of the same key: the value and how long it has to live. */
	if (!rop_send(s, op, on_get, "GET %s", key))
		rop_send(s, op, on_ttl, "PTTL %s", key);
	rop_settle(op);
}

static void on_mget(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	char key[SL_REDIS_KEY_MAX];
	redisReply *r = reply;

	if (!s)
		return;
	if (reply_is(r, REDIS_REPLY_ARRAY, "MGET", s)) {
		for (size_t i = 0; i < r->elements && i < op->nids; i++) {
			redisReply *v = r->element[i];
			struct rop *t;

			if (v->type == REDIS_REPLY_NIL) {
				instance_gone(s, op->svc, op->ids[i]);
				continue;
			}
			if (v->type != REDIS_REPLY_STRING ||
			    !sl_rcache_instance_needs_ttl(s->cache, op->svc, op->ids[i], v->str,
							  v->len))
				continue;
			t = rop_new(op->kind, op->svc, op->ids[i]);
			if (!t)
				continue;
			t->raw = malloc(v->len + 1);
			if (t->raw) {
				memcpy(t->raw, v->str, v->len);
				t->rawlen = v->len;
				sl_rkey_instance(s->prefix, op->svc, op->ids[i], key, sizeof(key));
				rop_send(s, t, on_ttl, "PTTL %s", key);
			}
			rop_settle(t);
		}
	}
	rop_done(s, op);
}

/* MGET of ids[0..n) of svc, in chunks. */
static void read_values(struct source_redis *s, enum rs_kind kind, const char *svc,
			char (*ids)[SL_ENDPOINT_STRLEN], size_t n)
{
	const char **argv = malloc((MGET_CHUNK + 1) * sizeof(*argv));
	char (*keys)[SL_REDIS_KEY_MAX] = malloc(MGET_CHUNK * sizeof(*keys));

	for (size_t off = 0; argv && keys && off < n; off += MGET_CHUNK) {
		size_t k = n - off < MGET_CHUNK ? n - off : MGET_CHUNK;
		struct rop *op = rop_new(kind, svc, NULL);

		if (!op || !(op->ids = malloc(k * sizeof(*op->ids)))) {
			if (op)
				rop_settle(op);
			break;
		}
		memcpy(op->ids, ids + off, k * sizeof(*op->ids));
		op->nids = k;
		argv[0] = "MGET";
		for (size_t i = 0; i < k; i++) {
			sl_rkey_instance(s->prefix, svc, op->ids[i], keys[i], sizeof(keys[i]));
			argv[i + 1] = keys[i];
		}
		rop_sent(s, op, rs_cmd_argv(s, on_mget, op, k + 1, argv, NULL));
		rop_settle(op);
	}
	free(argv);
	free(keys);
}

static void on_smembers(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	char (*ids)[SL_ENDPOINT_STRLEN] = NULL;
	char **names = NULL;
	redisReply *r = reply;
	size_t n = 0;

	if (!s)
		return;
	if (!reply_is(r, REDIS_REPLY_ARRAY, "SMEMBERS", s))
		goto out;
	ids = malloc((r->elements ? r->elements : 1) * sizeof(*ids));
	names = malloc((r->elements ? r->elements : 1) * sizeof(*names));
	if (!ids || !names)
		goto out;
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *m = r->element[i];

		/* A member that is no canonical instance id has no key we would write. */
		if (m->type != REDIS_REPLY_STRING || sl_rinst_id(m->str, ids[n], sizeof(ids[n])) ||
		    strcmp(ids[n], m->str)) {
			log_debug("redis %s: member \"%s\" of %sinstances:%s is not an instance id",
				  s->display, m->type == REDIS_REPLY_STRING ? m->str : "?",
				  s->prefix, op->svc);
			continue;
		}
		names[n] = ids[n];
		n++;
	}
	/* The set is the index: an instance no longer in it is gone. */
	if (rs_may_delete(s))
		sl_rcache_retain_instances(s->cache, op->svc, names, n);
	read_values(s, op->kind, op->svc, ids, n);
out:
	free(ids);
	free(names);
	rop_done(s, op);
}

static void read_members(struct source_redis *s, enum rs_kind kind, const char *svc)
{
	char key[SL_REDIS_KEY_MAX];
	struct rop *op = rop_new(kind, svc, NULL);

	if (!op)
		return;
	sl_rkey_instances(s->prefix, svc, key, sizeof(key));
	rop_send(s, op, on_smembers, "SMEMBERS %s", key);
	rop_settle(op);
}

static void on_hget(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	redisReply *r = reply;

	if (!s)
		return;
	if (r->type == REDIS_REPLY_NIL) {
		if (rs_may_delete(s))
			sl_rcache_del_service(s->cache, op->svc);
	} else if (reply_is(r, REDIS_REPLY_STRING, "HGET", s)) {
		if (sl_rcache_put_service(s->cache, op->svc, r->str, r->len) < 0)
			log_err("redis %s: out of memory caching service %s", s->display, op->svc);
		/* Redis holds services again: it is not empty any more, and a full resync
		 * brings the cache to exactly what it holds. */
		if (s->grace_until) {
			log_info("redis %s holds services again: the empty-registry grace ends",
				 s->display);
			s->grace_until = 0;
			if (s->state == RS_LIVE)
				rs_start_resync(s);
		}
	}
	rop_done(s, op);
}

void rs_read_service(struct source_redis *s, const char *name)
{
	struct rop *op = rop_new(RS_READ, name, NULL);

	if (!op)
		return;
	rop_send(s, op, on_hget, "HGET %s %s", s->k_services, name);
	rop_settle(op);
	read_members(s, RS_READ, name);
}

/*
 * Starts or ends the grace an empty Redis gets: while it runs nothing is removed from
 * the cache and nothing is applied, so the maps keep what they had.
 */
static void check_empty(struct source_redis *s, size_t n)
{
	__u64 now = rs_now();
	size_t in_force;

	if (s->grace_until && (n || now >= s->grace_until)) {
		s->grace_until = 0;
		if (!n)
			log_warn("redis %s still holds no services after %u ms: removing them all",
				 s->display, s->grace_ms);
		else
			log_info("redis %s holds services again: the empty-registry grace ends",
				 s->display);
		return;
	}
	in_force = rs_services_in_force(s);
	if (n || s->grace_until || !s->grace_ms || !in_force)
		return;
	s->grace_until = now + s->grace_ms;
	log_warn("redis %s holds no services (restarted without persistence?): the %zu in force "
		 "stay, and nothing is removed, for %u ms (--redis-empty-grace)", s->display,
		 in_force, s->grace_ms);
}

static void on_hgetall(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rop *op = priv;
	struct source_redis *s = rop_reply(ac, reply, op);
	redisReply *r = reply;
	char **names = NULL;
	size_t n;

	if (!s)
		return;
	if (!reply_is(r, REDIS_REPLY_ARRAY, "HGETALL", s)) {
		rop_put(op);
		rs_fail(s, "HGETALL %s failed", s->k_services);
		return;
	}
	n = r->elements / 2;
	check_empty(s, n);
	names = malloc((n ? n : 1) * sizeof(*names));
	if (!names) {
		rop_put(op);
		rs_fail(s, "out of memory reading %s", s->k_services);
		return;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = r->element[2 * i]->str;
	if (rs_may_delete(s))
		sl_rcache_retain_services(s->cache, names, n);
	for (size_t i = 0; i < n; i++) {
		redisReply *v = r->element[2 * i + 1];

		if (!sl_redis_name_valid(names[i], r->element[2 * i]->len)) {
			log_debug("redis %s: field \"%s\" of %s is no service name", s->display,
				  names[i], s->k_services);
			continue;
		}
		if (sl_rcache_put_service(s->cache, names[i], v->str, v->len) < 0)
			log_err("redis %s: out of memory caching service %s", s->display, names[i]);
		read_members(s, RS_RESYNC, names[i]);
	}
	free(names);
	rop_done(s, op);
}

void rs_start_resync(struct source_redis *s)
{
	struct rop *op = rop_new(RS_RESYNC, NULL, NULL);

	s->state = RS_SYNCING;
	s->resync_started_ms = rs_now();
	s->at_resync = 0;
	if (!op || rop_send(s, op, on_hgetall, "HGETALL %s", s->k_services)) {
		if (op)
			rop_settle(op);
		rs_fail(s, "cannot send HGETALL");
		return;
	}
	rop_settle(op);
}

void rs_on_message(struct source_redis *s, const char *channel, const char *payload,
		   size_t len)
{
	char svc[SL_NAME_MAX], id[SL_ENDPOINT_STRLEN];

	/* Before the command connection is up, the resync to come covers everything. */
	if (!s->cmd_ready)
		return;
	if (!strcmp(channel, s->k_channel)) {
		if (sl_rmsg_parse(payload, len, svc, id)) {
			log_debug("redis %s: ignoring change message \"%.*s\"", s->display, (int)len,
				  payload);
			return;
		}
		if (!id[0])
			rs_read_service(s, svc);
		else if (sl_rcache_has_service(s->cache, svc))
			rs_read_instance(s, svc, id);
	} else if (!strcmp(channel, s->k_expired)) {
		if (!sl_rkey_parse_instance(s->prefix, payload, len, svc, id) &&
		    sl_rcache_has_service(s->cache, svc))
			rs_read_instance(s, svc, id);
	}
}

static void read_due(const char *svc, const char *id, void *ctx)
{
	rs_read_instance(ctx, svc, id);
}

void rs_expire_due(struct source_redis *s)
{
	sl_rcache_pop_expired(s->cache, rs_now(), read_due, s);
}
