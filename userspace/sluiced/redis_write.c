// SPDX-License-Identifier: MIT
/*
 * The API's writes into the Redis registry (POST /v1/services/register,
 * DELETE /v1/services/{name}/{instance}): validated against what the cache
 * knows, then one MULTI/EXEC on the command connection, announced on the
 * change channel like every writer does. The HTTP reply waits for EXEC.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/redis_doc.h"
#include "redis_source_int.h"

#define TTL_MAX_S (30 * 86400)

struct rs_write {
	struct rs_write *next;
	source_redis_done done;
	void *ctx; /* NULL once answered */
	int deregister;
	unsigned int ttl;
	unsigned int weight;
	char svc[SL_NAME_MAX];
	char id[SL_ENDPOINT_STRLEN];
	char key[SL_REDIS_KEY_MAX];
};

static json_t *error_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *error_body(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", msg);
}

static void answer(struct rs_write *w, unsigned int status, json_t *body)
{
	if (!w->ctx) {
		json_decref(body);
		return;
	}
	w->done(w->ctx, status, body);
	w->ctx = NULL;
}

static void unlink_write(struct source_redis *s, struct rs_write *w)
{
	for (struct rs_write **p = &s->writes; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			return;
		}
}

void rs_fail_writes(struct source_redis *s, const char *why)
{
	for (struct rs_write *w = s->writes; w; w = w->next)
		answer(w, 503, error_body("registry %s: %s", s->display, why));
}

void source_redis_cancel_writes(struct source_redis *s)
{
	if (s)
		rs_fail_writes(s, "the agent is stopping");
}

static void on_queued(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	rs_reply(ac, reply);
}

static json_t *success(const struct rs_write *w)
{
	if (w->deregister)
		return json_pack("{s:s,s:s,s:b}", "service", w->svc, "instance", w->id,
				 "deregistered", 1);
	return json_pack("{s:s,s:s,s:s,s:i,s:i}", "service", w->svc, "instance", w->id, "key",
			 w->key, "weight", (int)w->weight, "ttl", (int)w->ttl);
}

static void on_exec(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rs_write *w = priv;
	struct source_redis *s = ac->data;
	redisReply *r = reply;

	unlink_write(s, w);
	if (!rs_reply(ac, reply)) {
		answer(w, 503, error_body("registry %s: connection lost before the write was "
					  "confirmed", s->display));
	} else if (r->type != REDIS_REPLY_ARRAY) {
		answer(w, 503, error_body("registry %s: the write failed: %s", s->display,
					  r->type == REDIS_REPLY_ERROR ? r->str : "EXEC aborted"));
	} else if (w->deregister && r->elements >= 1 &&
		   r->element[0]->type == REDIS_REPLY_INTEGER && !r->element[0]->integer) {
		answer(w, 404, error_body("service \"%s\" has no instance %s in the registry %s",
					  w->svc, w->id, s->display));
	} else {
		log_info("api: %s service=%s instance=%s%s", w->deregister ? "deregistered" :
			 "registered", w->svc, w->id, w->deregister ? "" :
			 w->ttl ? " (with a TTL)" : " (no TTL)");
		answer(w, 200, success(w));
	}
	free(w);
}

/* MULTI, the write, SADD or SREM, PUBLISH, EXEC; 0 once EXEC is queued. */
static int send_write(struct source_redis *s, struct rs_write *w, const char *value)
{
	char set[SL_REDIS_KEY_MAX], msg[SL_REDIS_MSG_MAX];
	int err;

	sl_rkey_instances(s->prefix, w->svc, set, sizeof(set));
	snprintf(msg, sizeof(msg), "%s %s", w->svc, w->id);
	err = rs_cmd(s, on_queued, NULL, "MULTI");
	if (!err && w->deregister)
		err = rs_cmd(s, on_queued, NULL, "DEL %s", w->key);
	else if (!err && w->ttl)
		err = rs_cmd(s, on_queued, NULL, "SET %s %s EX %u", w->key, value, w->ttl);
	else if (!err)
		err = rs_cmd(s, on_queued, NULL, "SET %s %s", w->key, value);
	if (!err)
		err = rs_cmd(s, on_queued, NULL, "%s %s %s", w->deregister ? "SREM" : "SADD", set,
			     w->id);
	if (!err)
		err = rs_cmd(s, on_queued, NULL, "PUBLISH %s %s", s->k_channel, msg);
	if (!err)
		err = rs_cmd(s, on_exec, w, "EXEC");
	return err;
}

/* 503 while Redis is away (or, for a write checked against the cache, not in step yet). */
static unsigned int unavailable(struct source_redis *s, int need_sync, json_t **now)
{
	if (!s->cmd_ready) {
		*now = error_body("registry %s is unreachable (%s); nothing was written",
				  s->display, s->why);
		return 503;
	}
	if (need_sync && !s->session_synced) {
		*now = error_body("registry %s: resyncing after a reconnection; try again",
				  s->display);
		return 503;
	}
	return 0;
}

static unsigned int queue(struct source_redis *s, struct rs_write *w, const char *value,
			  source_redis_done done, void *ctx, json_t **now)
{
	if (unavailable(s, 0, now)) {
		free(w);
		return 503;
	}
	w->done = done;
	w->ctx = ctx;
	if (send_write(s, w, value)) {
		*now = error_body("registry %s: the connection is going down; nothing was written",
				  s->display);
		free(w);
		return 503;
	}
	w->next = s->writes;
	s->writes = w;
	return 0;
}

static int get_int(json_t *req, const char *field, long long min, long long max, long long def,
		   long long *out, json_t **now)
{
	json_t *v = json_object_get(req, field);

	*out = def;
	if (!v) {
		if (def >= 0)
			return 0;
		*now = error_body("%s: required field is missing", field);
		return -EINVAL;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		*now = error_body("%s: must be an integer %lld..%lld", field, min, max);
		return -EINVAL;
	}
	*out = json_integer_value(v);
	return 0;
}

unsigned int source_redis_register(struct source_redis *s, json_t *req, source_redis_done done,
				   void *ctx, json_t **now)
{
	struct sl_reg_backend be = { 0 };
	long long port, weight, ttl;
	const char *field, *svc, *addr;
	struct rs_write *w;
	unsigned int status;
	json_t *v;
	char *value;
	__u8 family;

	if (!json_is_object(req)) {
		*now = error_body("the body must be a JSON object {service, address, port, "
				  "weight, ttl}");
		return 400;
	}
	json_object_foreach(req, field, v) {
		if (strcmp(field, "service") && strcmp(field, "address") && strcmp(field, "port") &&
		    strcmp(field, "weight") && strcmp(field, "ttl")) {
			*now = error_body("%s: unknown field (service, address, port, weight, ttl)",
					  field);
			return 400;
		}
	}
	svc = json_string_value(json_object_get(req, "service"));
	addr = json_string_value(json_object_get(req, "address"));
	if (!svc || !sl_redis_name_valid(svc, strlen(svc))) {
		*now = error_body("service: required, 1 to %d characters of A-Z a-z 0-9 . _ -",
				  SL_NAME_MAX - 1);
		return 400;
	}
	if (!addr || sl_addr_parse(addr, &be.addr, &be.family)) {
		*now = error_body("address: required, a literal IPv4 or IPv6 address");
		return 400;
	}
	if (get_int(req, "port", 1, 65535, -1, &port, now) ||
	    get_int(req, "weight", 1, SL_WEIGHT_MAX, 1, &weight, now) ||
	    get_int(req, "ttl", 0, TTL_MAX_S, 0, &ttl, now))
		return 400;
	/* Services are checked against the cache, which must be in step for that. */
	if ((status = unavailable(s, 1, now)))
		return status;
	if (sl_rcache_service_family(s->cache, svc, &family)) {
		*now = error_body("no service \"%s\" in the registry %s", svc, s->display);
		return 404;
	}
	if (family != be.family) {
		*now = error_body("address: an IPv%d address for service \"%s\", whose VIP is IPv%d",
				  be.family, svc, family);
		return 400;
	}
	be.port = port;
	be.weight = weight;
	w = calloc(1, sizeof(*w));
	value = sl_rinst_value(&be);
	if (!w || !value) {
		free(w);
		free(value);
		*now = error_body("out of memory");
		return 500;
	}
	w->ttl = ttl;
	w->weight = weight;
	snprintf(w->svc, sizeof(w->svc), "%s", svc);
	sl_endpoint_format(&be.addr, be.family, be.port, w->id, sizeof(w->id));
	sl_rkey_instance(s->prefix, w->svc, w->id, w->key, sizeof(w->key));
	status = queue(s, w, value, done, ctx, now);
	free(value);
	return status;
}

unsigned int source_redis_deregister(struct source_redis *s, const char *service,
				     const char *instance, source_redis_done done, void *ctx,
				     json_t **now)
{
	struct rs_write *w;

	if (!sl_redis_name_valid(service, strlen(service))) {
		*now = error_body("service \"%.64s\": not a service name", service);
		return 400;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		*now = error_body("out of memory");
		return 500;
	}
	if (sl_rinst_id(instance, w->id, sizeof(w->id))) {
		free(w);
		*now = error_body("instance \"%.64s\": expected ADDR:PORT or [ADDR6]:PORT",
				  instance);
		return 400;
	}
	w->deregister = 1;
	snprintf(w->svc, sizeof(w->svc), "%s", service);
	sl_rkey_instance(s->prefix, w->svc, w->id, w->key, sizeof(w->key));
	return queue(s, w, NULL, done, ctx, now);
}
