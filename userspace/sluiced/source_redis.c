// SPDX-License-Identifier: MIT
/*
 * The Redis source's connections: one for commands, one subscribed to the
 * change channel and to expired-key events. Both are set up (AUTH, SELECT,
 * SUBSCRIBE), then a full resync brings the cache in step; only then is the
 * source "live". Any failure tears both down and reconnects with backoff;
 * what the cache holds, and so the maps, stays meanwhile.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/backoff.h"
#include "lib/log.h"
#include "redis_source_int.h"

#define CONNECT_TIMEOUT_MS 3000
#define REPLY_TIMEOUT_MS 5000
#define PING_MS 1000
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 5000
/* Changes landing within this window are applied together... */
#define APPLY_COALESCE_MS 1
/* ...but reads still in flight hold an apply back at most this long. */
#define APPLY_MAX_WAIT_MS 20

__u64 rs_now(void)
{
	return now_ms();
}

static uint32_t jitter(void)
{
	static uint32_t x;

	if (!x)
		x = (uint32_t)(wall_ns() ^ ((__u64)getpid() << 16)) | 1;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

/* --- the timer ------------------------------------------------------------------------- */

static __u64 earliest(__u64 a, __u64 b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

void rs_rearm(struct source_redis *s)
{
	struct itimerspec its = { 0 };
	__u64 t = 0;

	t = earliest(t, s->at_reconnect);
	t = earliest(t, s->at_connect_timeout);
	t = earliest(t, s->at_ping);
	t = earliest(t, s->at_resync);
	t = earliest(t, s->at_apply);
	if (s->cmd_ready)
		t = earliest(t, sl_rcache_next_expiry(s->cache));
	if (t == s->armed_ms)
		return;
	s->armed_ms = t;
	its.it_value.tv_sec = t / 1000;
	its.it_value.tv_nsec = (t % 1000) * 1000000L;
	/* 0 disarms, and an absolute time already past fires at once. */
	if (t && !its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* --- status ---------------------------------------------------------------------------- */

static void go_stale(struct source_redis *s, const char *why)
{
	snprintf(s->st->stale_reason, sizeof(s->st->stale_reason), "%s", why);
	if (s->st->stale)
		return;
	s->st->stale = 1;
	s->st->stale_since_unix_ns = wall_ns();
}

static void go_fresh(struct source_redis *s)
{
	s->st->stale = 0;
	s->st->stale_since_unix_ns = 0;
	s->st->stale_reason[0] = '\0';
}

/* --- connections ----------------------------------------------------------------------- */

static void drop(redisAsyncContext **pp)
{
	redisAsyncContext *ac = *pp;

	/* Cleared first: the callbacks hiredis runs while freeing it must not find it live. */
	*pp = NULL;
	if (ac)
		redisAsyncFree(ac);
}

void rs_fail(struct source_redis *s, const char *fmt, ...)
{
	unsigned int delay;
	char why[256];
	va_list ap;
	int was_up = s->state == RS_SYNCING || s->state == RS_LIVE;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (s->state == RS_WAIT)
		return;
	s->state = RS_WAIT;
	s->cmd_ready = s->sub_ready = 0;
	drop(&s->cmd);
	drop(&s->sub);
	s->inflight = 0;
	s->pending[RS_READ] = s->pending[RS_RESYNC] = 0;
	s->at_connect_timeout = s->at_ping = s->at_resync = 0;
	snprintf(s->why, sizeof(s->why), "%s", why);
	rs_fail_writes(s, why);
	go_stale(s, why);
	delay = sl_backoff_ms(s->attempt++, BACKOFF_BASE_MS, BACKOFF_CAP_MS, jitter());
	s->at_reconnect = rs_now() + delay;
	if (was_up || s->attempt == 1)
		log_warn("redis %s: %s; the maps stay as they are, reconnecting in %u ms",
			 s->display, why, delay);
	else
		log_info("redis %s: %s; reconnecting in %u ms (attempt %u)", s->display, why, delay,
			 s->attempt);
	rs_rearm(s);
}

struct source_redis *rs_reply(redisAsyncContext *ac, void *reply)
{
	struct source_redis *s = ac->data;

	if (!reply || !s || (ac != s->cmd && ac != s->sub))
		return NULL;
	if (ac == s->cmd) {
		if (s->inflight)
			s->inflight--;
		s->last_reply_ms = rs_now();
	}
	return s;
}

static void count_sent(struct source_redis *s)
{
	if (!s->inflight++)
		s->last_reply_ms = rs_now(); /* the reply clock starts with the first one awaited */
}

int rs_cmd(struct source_redis *s, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
	va_list ap;
	int ret;

	if (!s->cmd)
		return -EIO;
	va_start(ap, fmt);
	ret = redisvAsyncCommand(s->cmd, fn, priv, fmt, ap);
	va_end(ap);
	if (ret != REDIS_OK)
		return -EIO;
	count_sent(s);
	return 0;
}

int rs_cmd_argv(struct source_redis *s, redisCallbackFn *fn, void *priv, int argc,
		const char **argv, const size_t *lens)
{
	if (!s->cmd || redisAsyncCommandArgv(s->cmd, fn, priv, argc, argv, lens) != REDIS_OK)
		return -EIO;
	count_sent(s);
	return 0;
}

static void maybe_synced_start(struct source_redis *s)
{
	if (!s->cmd_ready || !s->sub_ready || s->state != RS_CONNECTING)
		return;
	s->at_connect_timeout = 0;
	s->at_ping = rs_now() + PING_MS;
	log_info("redis %s: connected and subscribed to %s; resyncing", s->display, s->k_channel);
	rs_start_resync(s);
}

static const char *reply_error(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR ? r->str : NULL;
}

/* AUTH and SELECT on either connection: a refusal is fatal for this attempt. */
static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
	struct source_redis *s = rs_reply(ac, reply);
	const char *e;

	if (!s || !(e = reply_error(reply)))
		return;
	rs_fail(s, "%s refused: %s", (const char *)priv, e);
}

static void on_cmd_ready(redisAsyncContext *ac, void *reply, void *priv)
{
	struct source_redis *s = rs_reply(ac, reply);
	const char *e;

	(void)priv;
	if (!s)
		return;
	if ((e = reply_error(reply))) {
		rs_fail(s, "PING refused: %s", e);
		return;
	}
	s->cmd_ready = 1;
	maybe_synced_start(s);
	rs_rearm(s);
}

static void on_config_set(redisAsyncContext *ac, void *reply, void *priv)
{
	struct source_redis *s = rs_reply(ac, reply);
	const char *e;

	(void)priv;
	if (s && (e = reply_error(reply)))
		log_info("redis %s: expired-key events stay off (CONFIG SET refused: %s); "
			 "expiries are found by the agent's own TTL deadlines", s->display, e);
}

/*
 * Expired-key events ("Ex") make an instance that stopped heartbeating go at
 * once even if the agent missed its deadline; the flags already set are kept.
 * Managed Redis may refuse CONFIG: the deadlines and the resync cover it.
 */
static void on_config_get(redisAsyncContext *ac, void *reply, void *priv)
{
	struct source_redis *s = rs_reply(ac, reply);
	redisReply *r = reply;
	char flags[64];
	const char *have;

	(void)priv;
	if (!s)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		log_info("redis %s: cannot read notify-keyspace-events (%s); expiries are found by "
			 "the agent's own TTL deadlines", s->display,
			 reply_error(r) ? reply_error(r) : "unexpected reply");
		return;
	}
	have = r->element[1]->str;
	if (strchr(have, 'E') && (strchr(have, 'x') || strchr(have, 'A')))
		return;
	snprintf(flags, sizeof(flags), "%s%s%s", have, strchr(have, 'E') ? "" : "E",
		 strchr(have, 'x') ? "" : "x");
	rs_cmd(s, on_config_set, NULL, "CONFIG SET notify-keyspace-events %s", flags);
}

static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
	struct source_redis *s = rs_reply(ac, reply);
	redisReply *r = reply, **el;
	const char *e;

	(void)priv;
	if (!s)
		return;
	if ((e = reply_error(r))) {
		rs_fail(s, "SUBSCRIBE refused: %s", e);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	el = r->element;
	if (!strcmp(el[0]->str, "subscribe")) {
		/* Two channels: ready once both are confirmed. */
		if (el[2]->type == REDIS_REPLY_INTEGER && el[2]->integer >= 2) {
			s->sub_ready = 1;
			maybe_synced_start(s);
			rs_rearm(s);
		}
	} else if (!strcmp(el[0]->str, "message") && el[1]->type == REDIS_REPLY_STRING &&
		   el[2]->type == REDIS_REPLY_STRING) {
		rs_on_message(s, el[1]->str, el[2]->str, el[2]->len);
		rs_rearm(s);
	}
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct source_redis *s = ac->data;

	if (status == REDIS_OK || (ac != s->cmd && ac != s->sub))
		return;
	/* hiredis frees ac after this returns: it must not be freed here too. */
	if (ac == s->cmd)
		s->cmd = NULL;
	else
		s->sub = NULL;
	rs_fail(s, "cannot connect: %s", ac->errstr[0] ? ac->errstr : "connection failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct source_redis *s = ac->data;

	(void)status;
	if (ac != s->cmd && ac != s->sub)
		return; /* one we dropped ourselves */
	if (ac == s->cmd)
		s->cmd = NULL;
	else
		s->sub = NULL;
	rs_fail(s, "connection lost: %s", ac->err && ac->errstr[0] ? ac->errstr :
		"closed by the server");
}

/* Dead peers that never answer (no RST) show within about 10 s even on an idle connection. */
static void tune_socket(int fd)
{
	int on = 1, idle = 5, intvl = 2, cnt = 3;
	unsigned int user_timeout = 10000;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static redisAsyncContext *open_one(struct source_redis *s, struct redis_adapter *ad,
				   char *why, size_t whylen)
{
	/* A host name is resolved here, blocking the loop briefly (hiredis 0.14). */
	redisAsyncContext *ac = redisAsyncConnect(s->url.host, s->url.port);

	if (!ac) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (ac->err) {
		snprintf(why, whylen, "cannot connect: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = s;
	tune_socket(ac->c.fd);
	redis_adapter_attach(ad, s->loop, ac);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

static char what_auth[] = "AUTH", what_select[] = "SELECT";

/* AUTH on the subscriber; the command connection's goes through rs_cmd (counted). */
static int sub_auth(struct source_redis *s)
{
	if (!s->url.password[0])
		return REDIS_OK;
	if (s->url.user[0])
		return redisAsyncCommand(s->sub, on_setup, what_auth, "AUTH %s %s", s->url.user,
					 s->url.password);
	return redisAsyncCommand(s->sub, on_setup, what_auth, "AUTH %s", s->url.password);
}

static int cmd_auth(struct source_redis *s)
{
	if (!s->url.password[0])
		return 0;
	if (s->url.user[0])
		return rs_cmd(s, on_setup, what_auth, "AUTH %s %s", s->url.user, s->url.password);
	return rs_cmd(s, on_setup, what_auth, "AUTH %s", s->url.password);
}

static void connect_both(struct source_redis *s)
{
	char why[256];

	s->state = RS_CONNECTING;
	s->session_synced = 0;
	s->cmd_ready = s->sub_ready = 0;
	s->inflight = 0;
	s->cmd = open_one(s, &s->cmd_ad, why, sizeof(why));
	if (s->cmd)
		s->sub = open_one(s, &s->sub_ad, why, sizeof(why));
	if (!s->cmd || !s->sub) {
		rs_fail(s, "%s", why);
		return;
	}
	s->at_connect_timeout = rs_now() + CONNECT_TIMEOUT_MS;
	/* Queued now, sent once connected: replies come back in this order. */
	if (cmd_auth(s) ||
	    (s->url.db && rs_cmd(s, on_setup, what_select, "SELECT %u", s->url.db)) ||
	    rs_cmd(s, on_config_get, NULL, "CONFIG GET notify-keyspace-events") ||
	    rs_cmd(s, on_cmd_ready, NULL, "PING") || sub_auth(s) != REDIS_OK ||
	    redisAsyncCommand(s->sub, on_sub, NULL, "SUBSCRIBE %s %s", s->k_channel,
			      s->k_expired) != REDIS_OK)
		rs_fail(s, "cannot queue the connection's set-up commands");
}

/* --- timers ---------------------------------------------------------------------------- */

static void on_ping(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	rs_reply(ac, reply);
}

static void on_timer(struct loop_watch *w, uint32_t events)
{
	struct source_redis *s = (struct source_redis *)((char *)w -
		offsetof(struct source_redis, timer_watch));
	uint64_t expirations;
	__u64 now = rs_now();

	(void)events;
	if (read(s->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_debug("redis: timerfd read: %s", strerror(errno));
	s->armed_ms = 0;
	if (s->at_reconnect && now >= s->at_reconnect) {
		s->at_reconnect = 0;
		connect_both(s);
	}
	if (s->at_connect_timeout && now >= s->at_connect_timeout)
		rs_fail(s, "no answer within %d ms", CONNECT_TIMEOUT_MS);
	if (s->at_ping && now >= s->at_ping) {
		s->at_ping = now + PING_MS;
		if (s->inflight && now - s->last_reply_ms >= REPLY_TIMEOUT_MS)
			rs_fail(s, "no reply for %llu ms",
				(unsigned long long)(now - s->last_reply_ms));
		else if (!s->inflight)
			rs_cmd(s, on_ping, NULL, "PING");
	}
	if (s->at_resync && now >= s->at_resync) {
		s->at_resync = 0;
		if (s->state == RS_LIVE)
			rs_start_resync(s);
	}
	if (s->cmd_ready) {
		__u64 next = sl_rcache_next_expiry(s->cache);

		if (next && next <= now)
			rs_expire_due(s);
	}
	if (s->at_apply && now >= s->at_apply) {
		if (s->pending[RS_READ] && now - s->first_dirty_ms < APPLY_MAX_WAIT_MS) {
			s->at_apply = now + APPLY_COALESCE_MS;
		} else {
			s->at_apply = 0;
			s->changed(s->ctx);
		}
	}
	rs_rearm(s);
}

void rs_request_apply(struct source_redis *s)
{
	__u64 now;

	/*
	 * The first resync of a connection applies once, when it is complete: until then the
	 * cache may lack what Redis holds. Later ones need not hold changes back: every reply
	 * leaves the cache with the latest state of what it read.
	 */
	if ((s->state == RS_SYNCING && !s->session_synced) || s->at_apply)
		return;
	now = rs_now();
	s->first_dirty_ms = now;
	s->at_apply = now + APPLY_COALESCE_MS;
	rs_rearm(s);
}

int rs_may_delete(const struct source_redis *s)
{
	return !s->grace_until;
}

void rs_resync_done(struct source_redis *s)
{
	__u64 now = rs_now();

	s->state = RS_LIVE;
	s->attempt = 0;
	/* The first resync of a connection is worth a line; the periodic ones are not. */
	log_msg(s->session_synced ? SL_LOG_DEBUG : SL_LOG_INFO,
		"redis %s: in step: %zu services, %zu instances (resync %llu ms)", s->display,
		sl_rcache_service_count(s->cache), sl_rcache_instance_count(s->cache),
		(unsigned long long)(now - s->resync_started_ms));
	/* After a (re)connection the maps are reconciled even if the document is the same:
	 * that repairs drift. A periodic resync applies only what changed. */
	if (!s->session_synced)
		s->force_apply = 1;
	s->session_synced = 1;
	go_fresh(s);
	/* While an empty Redis is on probation, the next resync is the one that ends it. */
	s->at_resync = s->grace_until ? s->grace_until : now + s->resync_ms;
	rs_request_apply(s);
}

void source_redis_resync(struct source_redis *s)
{
	if (s->state == RS_LIVE) {
		rs_start_resync(s);
	} else if (s->state == RS_WAIT) {
		s->attempt = 0;
		s->at_reconnect = rs_now();
	}
	rs_rearm(s);
}

/* --- the agent's side ------------------------------------------------------------------ */

static void on_problem(const char *msg, void *ctx)
{
	struct source_redis *s = ctx;

	log_err("registry: skipped %s", msg);
	s->st->registry_errors_total++;
	s->st->last_error_unix_ns = wall_ns();
}

static void set_status(struct source_redis *s, const struct sl_rcache_report *rep)
{
	struct agent_status *st = s->st;

	if (s->grace_until) {
		st->degraded = 1;
		snprintf(st->last_error, sizeof(st->last_error),
			 "redis %s holds no services (restarted without persistence?): the services "
			 "in force stay for up to %u ms more (--redis-empty-grace)", s->display,
			 (unsigned int)(s->grace_until > rs_now() ? s->grace_until - rs_now() : 0));
	} else if (rep->invalid) {
		st->degraded = 1;
		/* The first skipped key's error, whole where it fits; then how many there are. */
		int n = snprintf(st->last_error, sizeof(st->last_error), "%.400s",
				 rep->first_error);

		if (rep->invalid > 1 && n > 0 && (size_t)n < sizeof(st->last_error))
			snprintf(st->last_error + n, sizeof(st->last_error) - n,
				 " (and %zu more skipped keys)", rep->invalid - 1);
	} else {
		st->degraded = 0;
		st->last_error[0] = '\0';
	}
}

int source_redis_read(struct source_redis *s, struct sl_registry *out, int *skip, char *err,
		      size_t errlen)
{
	int ret = sl_rcache_build(s->cache, out, NULL, &s->report, on_problem, s);

	*skip = 0;
	if (ret) {
		snprintf(err, errlen, "redis %s: cannot assemble the registry: %s", s->display,
			 strerror(-ret));
		return ret;
	}
	set_status(s, &s->report);
	/* An empty Redis on probation changes nothing in the maps, whatever the cache holds. */
	*skip = s->grace_until || (s->applied_once && !s->force_apply &&
				   !memcmp(out->sha256, s->applied_sha, sizeof(s->applied_sha)));
	return 0;
}

void source_redis_applied(struct source_redis *s, const struct sl_registry *reg)
{
	s->applied_once = 1;
	s->force_apply = 0;
	memcpy(s->applied_sha, reg->sha256, sizeof(s->applied_sha));
	set_status(s, &s->report);
}

const char *source_redis_display(const struct source_redis *s)
{
	return s->display;
}

struct source_redis *source_redis_open(const struct source_redis_opts *o, struct loop *loop,
				       struct agent_status *st, void (*changed)(void *ctx),
				       void *ctx, char *err, size_t errlen)
{
	struct source_redis *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->timer_fd = -1;
	if (sl_redis_url_parse(o->url, &s->url, err, errlen) ||
	    sl_redis_prefix_check(o->prefix, err, errlen))
		goto fail;
	if (o->password && o->password[0])
		snprintf(s->url.password, sizeof(s->url.password), "%s", o->password);
	sl_redis_url_display(&s->url, s->display, sizeof(s->display));
	snprintf(s->prefix, sizeof(s->prefix), "%s", o->prefix);
	sl_rkey_services(s->prefix, s->k_services, sizeof(s->k_services));
	sl_rkey_channel(s->prefix, s->k_channel, sizeof(s->k_channel));
	snprintf(s->k_expired, sizeof(s->k_expired), "__keyevent@%u__:expired", s->url.db);
	s->loop = loop;
	s->st = st;
	s->changed = changed;
	s->ctx = ctx;
	s->resync_ms = o->resync_ms;
	s->grace_ms = o->empty_grace_ms;
	s->maps_services = o->maps_services;
	s->cache = sl_rcache_new(s->prefix);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!s->cache || s->timer_fd < 0) {
		snprintf(err, errlen, "cannot set up: %s", strerror(s->cache ? errno : ENOMEM));
		goto fail;
	}
	s->timer_watch = (struct loop_watch){ s->timer_fd, on_timer };
	if (loop_add(loop, &s->timer_watch, EPOLLIN)) {
		snprintf(err, errlen, "cannot watch the timer: %s", strerror(errno));
		goto fail;
	}
	snprintf(s->why, sizeof(s->why), "not connected yet");
	st->stale = 1;
	st->stale_since_unix_ns = wall_ns();
	snprintf(st->stale_reason, sizeof(st->stale_reason), "not connected yet");
	s->state = RS_WAIT;
	s->at_reconnect = rs_now();
	rs_rearm(s);
	return s;
fail:
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	sl_rcache_free(s->cache);
	free(s);
	return NULL;
}

void source_redis_close(struct source_redis *s)
{
	if (!s)
		return;
	s->state = RS_WAIT;
	rs_fail_writes(s, "the agent is stopping");
	drop(&s->cmd);
	drop(&s->sub);
	loop_del(s->loop, &s->timer_watch);
	close(s->timer_fd);
	sl_rcache_free(s->cache);
	free(s);
}

/* The grace for an empty Redis (redis_read.c starts it): how many services are in force. */
size_t rs_services_in_force(const struct source_redis *s)
{
	size_t n = sl_rcache_service_count(s->cache);

	return n || s->applied_once ? n : s->maps_services;
}
