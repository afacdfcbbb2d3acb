/* SPDX-License-Identifier: MIT */
/*
 * Inside the Redis source: shared by source_redis.c (connections, timers,
 * staleness), redis_read.c (what is read into the cache, and when) and
 * redis_write.c (the API's writes). Everything runs on the agent's loop.
 */
#ifndef SLUICED_REDIS_SOURCE_INT_H
#define SLUICED_REDIS_SOURCE_INT_H

#include <hiredis/async.h>

#include "lib/redis_cache.h"
#include "lib/redis_keys.h"
#include "lib/redis_url.h"
#include "redis_adapter.h"
#include "source_redis.h"

enum rs_state {
	RS_WAIT,       /* disconnected; a reconnect is due at at_reconnect */
	RS_CONNECTING, /* both connections set up: AUTH, SELECT, SUBSCRIBE */
	RS_SYNCING,    /* full resync in flight */
	RS_LIVE,       /* in step: following changes */
};

/* Which accounting an outstanding read belongs to. */
enum rs_kind { RS_READ, RS_RESYNC };

struct rs_write;

struct source_redis {
	struct loop *loop;
	struct agent_status *st;
	void (*changed)(void *ctx);
	void *ctx;

	struct sl_redis_url url;
	char display[300];
	char prefix[SL_REDIS_PREFIX_MAX + 1];
	char k_services[SL_REDIS_KEY_MAX];
	char k_channel[SL_REDIS_KEY_MAX];
	char k_expired[64]; /* __keyevent@DB__:expired */
	unsigned int resync_ms;
	unsigned int grace_ms;
	size_t maps_services;
	struct sl_rcache *cache;

	redisAsyncContext *cmd; /* commands; NULL when down */
	redisAsyncContext *sub; /* SUBSCRIBE */
	struct redis_adapter cmd_ad;
	struct redis_adapter sub_ad;
	enum rs_state state;
	int cmd_ready;
	int sub_ready;
	unsigned int attempt; /* reconnects since the last success */
	char why[256];	      /* why the last connection went, for /readyz */

	unsigned int inflight; /* replies awaited on cmd */
	__u64 last_reply_ms;
	unsigned int pending[2]; /* reads in flight, by enum rs_kind */
	__u64 resync_started_ms;
	int force_apply; /* the first resync of a connection: reconcile even if unchanged */
	int session_synced;
	int applied_once;
	__u8 applied_sha[32];

	/* Deadlines, CLOCK_MONOTONIC ms; 0 = none. One timerfd is armed for the earliest. */
	__u64 at_reconnect;
	__u64 at_connect_timeout;
	__u64 at_ping;
	__u64 at_resync;
	__u64 at_apply;
	__u64 first_dirty_ms;
	__u64 grace_until;
	__u64 armed_ms;
	int timer_fd;
	struct loop_watch timer_watch;

	struct rs_write *writes; /* the API's writes awaiting EXEC */
	struct sl_rcache_report report; /* of the last assembly */
};

/* source_redis.c */
/* The connection is unusable: tear both down, go stale, reconnect later. */
void rs_fail(struct source_redis *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends a command on the command connection; 0, or -EIO when it is going down. */
int rs_cmd(struct source_redis *s, redisCallbackFn *fn, void *priv, const char *fmt, ...);
int rs_cmd_argv(struct source_redis *s, redisCallbackFn *fn, void *priv, int argc,
		const char **argv, const size_t *lens);
/*
 * At the top of every reply callback: NULL when the reply belongs to a
 * connection already torn down (or is hiredis's NULL on teardown), else the
 * source, with the reply counted.
 */
struct source_redis *rs_reply(redisAsyncContext *ac, void *reply);
/* Something in the cache changed: an apply is due once the reads in flight land. */
void rs_request_apply(struct source_redis *s);
/* Re-arms the timer for the earliest deadline (cheap when it did not move). */
void rs_rearm(struct source_redis *s);
/* Deletions found by reads wait while an empty Redis is not believed yet. */
int rs_may_delete(const struct source_redis *s);
/* Services in force: the cache's, or before the first apply those the maps had at start. */
size_t rs_services_in_force(const struct source_redis *s);
__u64 rs_now(void);

/* redis_read.c */
void rs_start_resync(struct source_redis *s);
void rs_read_service(struct source_redis *s, const char *name);
void rs_read_instance(struct source_redis *s, const char *svc, const char *id);
/* A message on the subscribed connection ("message", channel, payload). */
void rs_on_message(struct source_redis *s, const char *channel, const char *payload,
		   size_t len);
/* Reads due instance deadlines back (they may have been renewed). */
void rs_expire_due(struct source_redis *s);
/* The resync's last read landed. */
void rs_resync_done(struct source_redis *s);

/* redis_write.c */
/* Answers pending writes with 503 (the connection went, or the API stops). */
void rs_fail_writes(struct source_redis *s, const char *why);

#endif
