/* SPDX-License-Identifier: MIT */
#ifndef SLUICECTL_REDIS_H
#define SLUICECTL_REDIS_H

#include <hiredis/hiredis.h>

#include "lib/redis_keys.h"
#include "lib/redis_url.h"
#include "sluicectl.h"

struct sl_rcache;

struct ctl_redis {
	redisContext *c;
	struct sl_redis_url url;
	char display[300]; /* without the password */
	char prefix[SL_REDIS_PREFIX_MAX + 1];
};

/*
 * Connects to --registry (or SLUICE_REGISTRY) with --redis-prefix and the
 * password from --redis-password-file, SLUICE_REDIS_PASSWORD_FILE or
 * SLUICE_REDIS_PASSWORD (over the URL's); AUTH, SELECT. Logs why not.
 */
int ctl_redis_open(const struct ctl *c, struct ctl_redis *r);
void ctl_redis_close(struct ctl_redis *r);
/* One command; NULL with the failure logged (an error reply included). */
redisReply *ctl_redis_cmd(struct ctl_redis *r, const char *fmt, ...);
/* Pipelining: queue commands, then take their replies in order. */
int ctl_redis_append(struct ctl_redis *r, const char *fmt, ...);
redisReply *ctl_redis_next(struct ctl_redis *r, const char *what);
/* Takes n replies, failing (having logged them) if any was an error. */
int ctl_redis_drain(struct ctl_redis *r, size_t n, const char *what);
/* Reads the whole registry into cache (instances without their TTLs). */
int ctl_redis_load(struct ctl_redis *r, struct sl_rcache *cache);

#endif
