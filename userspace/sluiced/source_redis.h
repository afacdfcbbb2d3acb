/* SPDX-License-Identifier: MIT */
/*
 * The "redis" registry source (README, "Redis registry"): a cache of the
 * services and instances a Redis holds, kept current from the change channel
 * (and expired-key events), from the instances' own TTL deadlines, and by a
 * full resync at every (re)connection and periodically. While Redis is away
 * the cache, and so the maps, stay as they were: the source says it is stale
 * and reconnects with backoff.
 */
#ifndef SLUICED_SOURCE_REDIS_H
#define SLUICED_SOURCE_REDIS_H

#include <stddef.h>
#include <jansson.h>

#include "lib/registry.h"
#include "loop.h"
#include "status.h"

struct source_redis_opts {
	const char *url;      /* redis://[user:password@]host[:port][/db] */
	const char *password; /* overrides the URL's when not empty */
	const char *prefix;
	unsigned int resync_ms;	     /* periodic full resync */
	unsigned int empty_grace_ms; /* an empty Redis is believed after this long */
	size_t maps_services;	     /* services in the maps at start */
};

struct source_redis;

/*
 * Starts connecting (in the background: an unreachable Redis is not an
 * error). changed(ctx) runs on the loop whenever the cache holds something new
 * for agent_apply_registry. st gets the staleness. NULL on a bad option, with err.
 */
struct source_redis *source_redis_open(const struct source_redis_opts *o, struct loop *loop,
				       struct agent_status *st, void (*changed)(void *ctx),
				       void *ctx, char *err, size_t errlen);
void source_redis_close(struct source_redis *s);
/* "redis://host:port/db", without the password. */
const char *source_redis_display(const struct source_redis *s);

/*
 * The registry the cache holds. *skip is set when it is what was applied last
 * and no resync asked for a repair, so the reconciler can be spared. Keys the
 * cache skips are logged once, counted, and make the status degraded.
 */
int source_redis_read(struct source_redis *s, struct sl_registry *out, int *skip, char *err,
		      size_t errlen);
/* After a successful apply of out (from source_redis_read): the status it leaves. */
void source_redis_applied(struct source_redis *s, const struct sl_registry *reg);
/* SIGHUP: a full resync now. */
void source_redis_resync(struct source_redis *s);

/*
 * The API's writes. Each returns an HTTP status with *now set to the reply
 * body (a validation error, or Redis away), or 0 when the write went out: then
 * done(ctx, status, body) runs later, exactly once (body is a new reference).
 */
typedef void (*source_redis_done)(void *ctx, unsigned int status, json_t *body);
unsigned int source_redis_register(struct source_redis *s, json_t *req, source_redis_done done,
				   void *ctx, json_t **now);
unsigned int source_redis_deregister(struct source_redis *s, const char *service,
				     const char *instance, source_redis_done done, void *ctx,
				     json_t **now);
/* Answers every write still waiting (503), so the API can stop. */
void source_redis_cancel_writes(struct source_redis *s);

#endif
