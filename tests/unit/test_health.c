// SPDX-License-Identifier: MIT
/*
 * The health check engine against servers this test runs on loopback, in the
 * same event loop: HTTP with a chosen status, a listener that never answers,
 * a port that refuses, a full accept queue. Last, health_sync() against
 * maps made for the test (skipped without CAP_BPF).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <cmocka.h>

#include "lib/log.h"
#include "sluiced/health.h"
#include "sluiced/health_check.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define MAX_RESULTS 32
#define MAX_CONNS 1024

/* A checked target and what the engine reported for it. */
struct tt {
	struct hc_target hc;
	int results;
	int transitions;
	__u8 state[MAX_RESULTS];
	__u32 ok[MAX_RESULTS]; /* consecutive_ok after the result */
	__u32 fail[MAX_RESULTS];
	__u64 at_ms[MAX_RESULTS];
	char err[MAX_RESULTS][HC_ERR_MAX];
};

struct tctx {
	struct loop loop;
	struct hc_engine *e;
	int total;
	size_t max_inflight_seen;
	void (*hook)(struct tctx *c, struct tt *t);
	struct tt **group; /* for hooks */
	size_t group_len;
};

struct conn;

struct server {
	struct loop_watch w;
	struct loop *loop;
	int status; /* HTTP status to answer */
	__u16 port;
	int accepted;
	char last_request[1024];
	struct conn *conns[MAX_CONNS];
};

struct conn {
	struct loop_watch w;
	struct server *s;
	size_t slot;
	size_t len;
	char buf[1024];
};

static void record_result(struct hc_target *hc, __u8 prev, void *ctx)
{
	struct tt *t = container_of(hc, struct tt, hc);
	struct tctx *c = ctx;
	int i = t->results;

	if (i < MAX_RESULTS) {
		t->state[i] = hc->state;
		t->ok[i] = hc->consecutive_ok;
		t->fail[i] = hc->consecutive_fail;
		t->at_ms[i] = now_ms();
		snprintf(t->err[i], HC_ERR_MAX, "%s", hc->last_error);
	}
	t->results++;
	if (hc->state != prev)
		t->transitions++;
	c->total++;
	if (c->hook)
		c->hook(c, t);
}

static void conn_close(struct conn *cn)
{
	loop_del(cn->s->loop, &cn->w);
	close(cn->w.fd);
	cn->s->conns[cn->slot] = NULL;
	free(cn);
}

static void conn_event(struct loop_watch *w, uint32_t events)
{
	struct conn *cn = container_of(w, struct conn, w);
	char resp[128];
	ssize_t n;

	(void)events;
	for (;;) {
		n = read(w->fd, cn->buf + cn->len, sizeof(cn->buf) - 1 - cn->len);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_close(cn);
			return;
		}
		cn->len += n;
		cn->buf[cn->len] = '\0';
		if (strstr(cn->buf, "\r\n\r\n"))
			break;
		if (cn->len == sizeof(cn->buf) - 1) {
			conn_close(cn);
			return;
		}
	}
	snprintf(cn->s->last_request, sizeof(cn->s->last_request), "%s", cn->buf);
	n = snprintf(resp, sizeof(resp), "HTTP/1.0 %d Test\r\nContent-Length: 0\r\n\r\n",
		     cn->s->status);
	assert_int_equal(write(w->fd, resp, n), n);
	conn_close(cn);
}

static void server_accept(struct loop_watch *w, uint32_t events)
{
	struct server *s = container_of(w, struct server, w);
	int fd;

	(void)events;
	while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct conn *cn = calloc(1, sizeof(*cn));
		size_t slot = 0;

		assert_non_null(cn);
		while (slot < MAX_CONNS && s->conns[slot])
			slot++;
		assert_true(slot < MAX_CONNS);
		cn->s = s;
		cn->slot = slot;
		cn->w.fd = fd;
		cn->w.fn = conn_event;
		s->conns[slot] = cn;
		s->accepted++;
		assert_int_equal(loop_add(s->loop, &cn->w, EPOLLIN), 0);
	}
}

/* A listener on loopback. serve: answer HTTP from the loop; else never accept. */
static int server_open(struct server *s, struct loop *l, int family, int backlog, int serve)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd;

	memset(s, 0, sizeof(*s));
	s->loop = l;
	s->status = 200;
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s4);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, backlog) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len)) {
		close(fd);
		return -errno;
	}
	s->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
					     ((struct sockaddr_in *)&ss)->sin_port);
	s->w.fd = fd;
	s->w.fn = server_accept;
	if (serve)
		assert_int_equal(loop_add(l, &s->w, EPOLLIN), 0);
	return 0;
}

static void server_close(struct server *s)
{
	for (size_t i = 0; i < MAX_CONNS; i++)
		if (s->conns[i])
			conn_close(s->conns[i]);
	loop_del(s->loop, &s->w);
	close(s->w.fd);
}

/* A port bound on 127.0.0.1 that nothing listens on: connects are refused. */
static int refused_port(__u16 *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static struct sl_health_check hc_cfg(__u8 type, __u32 interval, __u32 timeout, __u32 healthy,
				     __u32 unhealthy)
{
	struct sl_health_check c = {
		.type = type,
		.interval_ms = interval,
		.timeout_ms = timeout,
		.healthy_threshold = healthy,
		.unhealthy_threshold = unhealthy,
	};

	snprintf(c.path, sizeof(c.path), "/health");
	return c;
}

static struct tt *tt_new(int family, __u16 port, const struct sl_health_check *cfg)
{
	struct tt *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->hc.family = family == AF_INET6 ? SL_FAMILY_IPV6 : SL_FAMILY_IPV4;
	if (family == AF_INET6)
		memcpy(t->hc.addr.words, &in6addr_loopback, 16);
	else
		t->hc.addr.words[0] = htonl(INADDR_LOOPBACK);
	t->hc.port = port;
	t->hc.cfg = *cfg;
	t->hc.state = SL_HEALTH_UNKNOWN;
	return t;
}

static void tt_start(struct tctx *c, struct tt *t, __u32 delay)
{
	assert_int_equal(hc_target_start(c->e, &t->hc, delay), 0);
}

static void tt_free(struct tt *t)
{
	hc_target_stop(&t->hc);
	free(t);
}

static void ctx_init(struct tctx *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(loop_init(&c->loop), 0);
	c->e = hc_engine_new(&c->loop, record_result, c);
	assert_non_null(c->e);
}

static void ctx_fini(struct tctx *c)
{
	hc_engine_free(c->e);
	loop_close(&c->loop);
}

/* Runs the loop until done(arg) or max_ms; returns done(arg). */
static int run_until(struct tctx *c, int (*done)(struct tctx *c, void *arg), void *arg, int max_ms)
{
	__u64 end = now_ms() + max_ms;

	while (!done(c, arg) && now_ms() < end) {
		size_t n;

		assert_true(loop_run_once(&c->loop, 5) >= 0);
		n = hc_engine_inflight(c->e);
		if (n > c->max_inflight_seen)
			c->max_inflight_seen = n;
	}
	return done(c, arg);
}

static int never(struct tctx *c, void *arg)
{
	(void)c;
	(void)arg;
	return 0;
}

static void run_for(struct tctx *c, int ms)
{
	run_until(c, never, NULL, ms);
}

struct want {
	struct tt *t;
	int results;
};

static int has_results(struct tctx *c, void *arg)
{
	struct want *w = arg;

	(void)c;
	return w->t->results >= w->results;
}

static void wait_results(struct tctx *c, struct tt *t, int n, int max_ms)
{
	struct want w = { t, n };

	assert_true(run_until(c, has_results, &w, max_ms));
}

static int total_at_least(struct tctx *c, void *arg)
{
	return c->total >= *(int *)arg;
}

static void test_http_status_parse(void **state)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\n", 200 },
		{ "HTTP/1.0 503 Service Unavailable\r\n", 503 },
		{ "HTTP/1.1 204\r\n", 204 },
		{ "HTTP/2 301 \r\n", 301 },
		{ "HTTP/1.1 200\n", 200 },
		{ "", 0 },
		{ "HTT", 0 },
		{ "HTTP/1.1", 0 },
		{ "HTTP/1.1 ", 0 },
		{ "HTTP/1.1 20", 0 },
		{ "HTTP/1.1 200", 0 },
		{ "SSH-2.0-OpenSSH\r\n", -EINVAL },
		{ "HTTP/1.1 2x0 OK\r\n", -EINVAL },
		{ "HTTP/1.1 2000 OK\r\n", -EINVAL },
		{ "HTTP/1.1 099 OK\r\n", -EINVAL },
		{ "HTTP/ 200 OK\r\n", -EINVAL },
		{ "HTTP/1.1x 200 OK\r\n", -EINVAL },
		{ "HTTP/1.1111111111 200 OK\r\n", -EINVAL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = hc_http_status(cases[i].in, strlen(cases[i].in));

		if (got != cases[i].want)
			fail_msg("hc_http_status(\"%s\") = %d, want %d", cases[i].in, got,
				 cases[i].want);
	}
	assert_string_equal(hc_type_name(SL_HC_TCP), "tcp");
	assert_string_equal(hc_type_name(SL_HC_HTTP), "http");
}

/* TCP connect to a listener: healthy_threshold 2 means UP at exactly the second success. */
static void test_tcp_up(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_TCP, 20, 100, 2, 3);
	struct server s;
	struct tctx c;
	struct tt *t;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 16, 1), 0);
	t = tt_new(AF_INET, s.port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 3, 1000);
	assert_int_equal(t->state[0], SL_HEALTH_UNKNOWN);
	assert_int_equal(t->state[1], SL_HEALTH_UP);
	assert_int_equal(t->state[2], SL_HEALTH_UP);
	assert_int_equal(t->ok[1], 2);
	assert_int_equal(t->transitions, 1);
	assert_string_equal(t->err[0], "");
	assert_true(t->hc.last_check_unix_ms > 0);
	/* Interval honoured: the checks are 20 ms apart (less 2 for reading the clock twice). */
	assert_true(t->at_ms[1] - t->at_ms[0] >= 18);
	assert_true(t->at_ms[2] - t->at_ms[1] >= 18);
	assert_true(s.accepted >= 3);
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

/* HTTP 200: the exact request, and UP after one success with healthy_threshold 1. */
static void test_http_request(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_HTTP, 20, 100, 1, 1);
	char want[256];
	struct server s;
	struct tctx c;
	struct tt *t;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 16, 1), 0);
	t = tt_new(AF_INET, s.port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 1, 1000);
	assert_int_equal(t->state[0], SL_HEALTH_UP);
	assert_string_equal(t->err[0], "");
	snprintf(want, sizeof(want),
		 "GET /health HTTP/1.0\r\nHost: 127.0.0.1:%u\r\nUser-Agent: sluiced\r\n"
		 "Connection: close\r\n\r\n",
		 s.port);
	assert_string_equal(s.last_request, want);
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

/*
 * HTTP 500 with unhealthy_threshold 3: exactly three failures before DOWN.
 * Then the server recovers; healthy_threshold 2: exactly two successes before UP.
 */
static void test_http_thresholds(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_HTTP, 20, 100, 2, 3);
	struct server s;
	struct tctx c;
	struct tt *t;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 16, 1), 0);
	s.status = 500;
	t = tt_new(AF_INET, s.port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 3, 1000);
	assert_int_equal(t->results, 3);
	assert_int_equal(t->state[0], SL_HEALTH_UNKNOWN);
	assert_int_equal(t->state[1], SL_HEALTH_UNKNOWN);
	assert_int_equal(t->state[2], SL_HEALTH_DOWN);
	assert_int_equal(t->fail[2], 3);
	assert_string_equal(t->err[2], "http status 500");
	assert_string_equal(t->hc.last_error, "http status 500");

	s.status = 302; /* 3xx is healthy */
	wait_results(&c, t, 5, 1000);
	assert_int_equal(t->state[3], SL_HEALTH_DOWN);
	assert_int_equal(t->ok[3], 1);
	assert_int_equal(t->fail[3], 0);
	assert_int_equal(t->state[4], SL_HEALTH_UP);
	assert_int_equal(t->ok[4], 2);
	assert_string_equal(t->err[4], "");
	assert_int_equal(t->transitions, 2);

	/* One failure does not take an UP target down. */
	s.status = 404;
	wait_results(&c, t, 6, 1000);
	assert_int_equal(t->state[5], SL_HEALTH_UP);
	assert_string_equal(t->err[5], "http status 404");
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

static void test_refused(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_TCP, 20, 100, 1, 2);
	struct tctx c;
	struct tt *t;
	__u16 port;
	int fd;

	(void)state;
	ctx_init(&c);
	fd = refused_port(&port);
	t = tt_new(AF_INET, port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 2, 1000);
	assert_string_equal(t->err[0], "connect: Connection refused");
	assert_int_equal(t->state[0], SL_HEALTH_UNKNOWN);
	assert_int_equal(t->state[1], SL_HEALTH_DOWN);
	tt_free(t);

	/* The same for HTTP. */
	cfg.type = SL_HC_HTTP;
	cfg.unhealthy_threshold = 1;
	t = tt_new(AF_INET, port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 1, 1000);
	assert_string_equal(t->err[0], "connect: Connection refused");
	assert_int_equal(t->state[0], SL_HEALTH_DOWN);
	tt_free(t);
	close(fd);
	ctx_fini(&c);
}

/* Accepted by the kernel, never answered: an HTTP check times out after timeout_ms. */
static void test_http_timeout(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_HTTP, 150, 100, 1, 1);
	struct server s;
	struct tctx c;
	struct tt *t;
	__u64 start;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 16, 0), 0);
	t = tt_new(AF_INET, s.port, &cfg);
	start = now_ms();
	tt_start(&c, t, 0);
	wait_results(&c, t, 2, 1000);
	assert_string_equal(t->err[0], "timeout");
	assert_int_equal(t->state[0], SL_HEALTH_DOWN);
	assert_true(t->at_ms[0] - start >= 100);
	assert_true(t->at_ms[0] - start < 200);
	/* Next check one interval after the timeout, timing out again. */
	assert_true(t->at_ms[1] - t->at_ms[0] >= 150 + 100 - 2);
	assert_true(t->at_ms[1] - t->at_ms[0] < 150 + 100 + 100);
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

/* A full accept queue drops SYNs: the connect itself times out. */
static void test_connect_timeout(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_TCP, 200, 80, 1, 1);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fill[4];
	struct server s;
	struct tctx c;
	struct tt *t;
	__u64 start;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 0, 0), 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(s.port);
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fill[i] >= 0);
		connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(20000);
	t = tt_new(AF_INET, s.port, &cfg);
	start = now_ms();
	tt_start(&c, t, 0);
	wait_results(&c, t, 1, 1000);
	assert_string_equal(t->err[0], "timeout");
	assert_int_equal(t->state[0], SL_HEALTH_DOWN);
	assert_true(t->at_ms[0] - start >= 80);
	assert_true(t->at_ms[0] - start < 180);
	tt_free(t);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	server_close(&s);
	ctx_fini(&c);
}

/* 200 checks that each wait 200 ms finish together: they run concurrently. */
static void test_concurrent(void **state)
{
	enum { N = 200 };
	struct sl_health_check slow = hc_cfg(SL_HC_HTTP, 60000, 200, 1, 1);
	struct sl_health_check fast = hc_cfg(SL_HC_HTTP, 60000, 1000, 1, 1);
	struct server silent, ok;
	struct tt *ts[2 * N];
	struct tctx c;
	int want = 2 * N;
	__u64 start;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&silent, &c.loop, AF_INET, 1024, 0), 0);
	assert_int_equal(server_open(&ok, &c.loop, AF_INET, 1024, 1), 0);
	start = now_ms();
	for (int i = 0; i < N; i++) {
		ts[i] = tt_new(AF_INET, silent.port, &slow);
		ts[N + i] = tt_new(AF_INET, ok.port, &fast);
		tt_start(&c, ts[i], 0);
		tt_start(&c, ts[N + i], 0);
	}
	assert_true(run_until(&c, total_at_least, &want, 3000));
	/* One after the other they would take 40 s. */
	assert_true(now_ms() - start < 3000);
	assert_true(c.max_inflight_seen >= N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(ts[i]->results, 1);
		assert_string_equal(ts[i]->err[0], "timeout");
		assert_int_equal(ts[i]->state[0], SL_HEALTH_DOWN);
		assert_int_equal(ts[N + i]->results, 1);
		assert_int_equal(ts[N + i]->state[0], SL_HEALTH_UP);
	}
	assert_int_equal(hc_engine_inflight(c.e), 0);
	for (int i = 0; i < 2 * N; i++)
		tt_free(ts[i]);
	server_close(&silent);
	server_close(&ok);
	ctx_fini(&c);
}

/* With a cap of 4 checks in flight, 20 slow checks go 4 at a time. */
static void test_max_inflight(void **state)
{
	enum { N = 20 };
	struct sl_health_check cfg = hc_cfg(SL_HC_HTTP, 60000, 30, 1, 1);
	struct server silent;
	struct tt *ts[N];
	struct tctx c;
	int want = N;
	__u64 start;

	(void)state;
	ctx_init(&c);
	hc_engine_set_max_inflight(c.e, 4);
	assert_int_equal(server_open(&silent, &c.loop, AF_INET, 1024, 0), 0);
	start = now_ms();
	for (int i = 0; i < N; i++) {
		ts[i] = tt_new(AF_INET, silent.port, &cfg);
		tt_start(&c, ts[i], 0);
	}
	assert_true(run_until(&c, total_at_least, &want, 2000));
	assert_int_equal(c.max_inflight_seen, 4);
	assert_true(now_ms() - start >= (N / 4) * 30);
	for (int i = 0; i < N; i++) {
		assert_int_equal(ts[i]->results, 1);
		assert_string_equal(ts[i]->err[0], "timeout");
	}
	for (int i = 0; i < N; i++)
		tt_free(ts[i]);
	server_close(&silent);
	ctx_fini(&c);
}

/* From the first result, stop and free every other target: their events are still pending. */
static void stop_others(struct tctx *c, struct tt *t)
{
	for (size_t i = 0; i < c->group_len; i++) {
		if (c->group[i] && c->group[i] != t) {
			tt_free(c->group[i]);
			c->group[i] = NULL;
		}
	}
	c->hook = NULL;
}

static void test_stop_with_pending_events(void **state)
{
	enum { N = 16 };
	struct sl_health_check cfg = hc_cfg(SL_HC_TCP, 20, 100, 1, 1);
	struct tt *ts[N];
	struct tctx c;
	__u16 port;
	int fd;

	(void)state;
	ctx_init(&c);
	fd = refused_port(&port);
	/* Due at once: the first timer tick starts them all. */
	for (int i = 0; i < N; i++) {
		ts[i] = tt_new(AF_INET, port, &cfg);
		tt_start(&c, ts[i], 0);
	}
	c.group = ts;
	c.group_len = N;
	c.hook = stop_others;
	/* Let every connect be refused before the loop looks, so all events share one batch. */
	while (hc_engine_inflight(c.e) < N && !c.total)
		assert_true(loop_run_once(&c.loop, 5) >= 0);
	assert_int_equal(c.total, 0);
	usleep(20000);
	run_for(&c, 150);
	for (int i = 0; i < N; i++) {
		if (ts[i]) {
			/* The survivor keeps being checked. */
			assert_true(ts[i]->results >= 2);
			tt_free(ts[i]);
		}
	}
	assert_int_equal(hc_engine_inflight(c.e), 0);
	close(fd);
	ctx_fini(&c);
}

/* Stopped mid-check: no result ever comes, and the engine carries on with others. */
static void test_stop_in_flight(void **state)
{
	struct sl_health_check slow = hc_cfg(SL_HC_HTTP, 20, 100, 1, 1);
	struct sl_health_check fast = hc_cfg(SL_HC_TCP, 20, 100, 1, 1);
	struct server silent, ok;
	struct tt *a, *b;
	struct tctx c;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&silent, &c.loop, AF_INET, 16, 0), 0);
	assert_int_equal(server_open(&ok, &c.loop, AF_INET, 16, 1), 0);
	a = tt_new(AF_INET, silent.port, &slow);
	b = tt_new(AF_INET, ok.port, &fast);
	tt_start(&c, a, 0);
	tt_start(&c, b, 0);
	while (hc_engine_inflight(c.e) < 1 || !a->hc.probe)
		assert_true(loop_run_once(&c.loop, 5) >= 0);
	run_for(&c, 30);
	tt_free(a);
	run_for(&c, 200);
	assert_true(b->results >= 3);
	assert_int_equal(c.total, b->results);
	tt_free(b);
	server_close(&silent);
	server_close(&ok);
	ctx_fini(&c);
}

/* A long interval shortened by hc_target_configure brings the next check forward. */
static void test_configure(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_TCP, 60000, 100, 1, 1);
	struct server s;
	struct tctx c;
	struct tt *t;

	(void)state;
	ctx_init(&c);
	assert_int_equal(server_open(&s, &c.loop, AF_INET, 16, 1), 0);
	t = tt_new(AF_INET, s.port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 1, 1000);
	run_for(&c, 50);
	assert_int_equal(t->results, 1);
	cfg.interval_ms = 20;
	cfg.type = SL_HC_HTTP;
	hc_target_configure(&t->hc, &cfg);
	wait_results(&c, t, 3, 500);
	assert_non_null(strstr(s.last_request, "GET /health HTTP/1.0\r\n"));
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

static void test_ipv6(void **state)
{
	struct sl_health_check cfg = hc_cfg(SL_HC_HTTP, 20, 100, 1, 1);
	char want[64];
	struct server s;
	struct tctx c;
	struct tt *t;

	(void)state;
	ctx_init(&c);
	if (server_open(&s, &c.loop, AF_INET6, 16, 1)) {
		ctx_fini(&c);
		skip();
	}
	t = tt_new(AF_INET6, s.port, &cfg);
	tt_start(&c, t, 0);
	wait_results(&c, t, 1, 1000);
	assert_int_equal(t->state[0], SL_HEALTH_UP);
	snprintf(want, sizeof(want), "Host: [::1]:%u\r\n", s.port);
	assert_non_null(strstr(s.last_request, want));
	tt_free(t);
	server_close(&s);
	ctx_fini(&c);
}

/* health_sync against hash maps shaped like sl_services and sl_backends. */

struct mapfix {
	struct sl_maps m;
	struct sl_svc_key web_key, plain_key;
};

static int maps_create(struct mapfix *f)
{
	memset(f, 0xff, sizeof(f->m));
	f->m.services = bpf_map_create(BPF_MAP_TYPE_HASH, "sl_services", sizeof(struct sl_svc_key),
				       sizeof(struct sl_service), 64, NULL);
	if (f->m.services < 0)
		return -errno;
	f->m.backends = bpf_map_create(BPF_MAP_TYPE_HASH, "sl_backends", sizeof(__u32),
				       sizeof(struct sl_backend), 64, NULL);
	if (f->m.backends < 0) {
		close(f->m.services);
		return -errno;
	}
	return 0;
}

static void put_service(struct mapfix *f, struct sl_svc_key *key, __u32 vip, const char *name,
			__u32 id, __u32 n, __u32 unhealthy)
{
	struct sl_service v = { .id = id, .backend_count = n, .unhealthy_count = unhealthy };

	memset(key, 0, sizeof(*key));
	key->vip.words[0] = htonl(vip);
	key->port = htons(80);
	key->proto = IPPROTO_TCP;
	key->family = SL_FAMILY_IPV4;
	snprintf(v.name, sizeof(v.name), "%s", name);
	assert_int_equal(bpf_map_update_elem(f->m.services, key, &v, BPF_ANY), 0);
}

static void put_backend(struct mapfix *f, __u32 id, __u32 svc_id, __u16 port, __u8 health)
{
	struct sl_backend b = { .svc_id = svc_id, .weight = 1, .family = SL_FAMILY_IPV4 };

	b.addr.words[0] = htonl(INADDR_LOOPBACK);
	b.port = htons(port);
	b.health = health;
	assert_int_equal(bpf_map_update_elem(f->m.backends, &id, &b, BPF_ANY), 0);
}

static __u8 backend_health(struct mapfix *f, __u32 id)
{
	struct sl_backend b;

	assert_int_equal(bpf_map_lookup_elem(f->m.backends, &id, &b), 0);
	return b.health;
}

static __u32 unhealthy_count(struct mapfix *f, struct sl_svc_key *key)
{
	struct sl_service v;

	assert_int_equal(bpf_map_lookup_elem(f->m.services, key, &v), 0);
	return v.unhealthy_count;
}

static void reg_backend(struct sl_reg_backend *b, __u16 port)
{
	memset(b, 0, sizeof(*b));
	b->addr.words[0] = htonl(INADDR_LOOPBACK);
	b->family = SL_FAMILY_IPV4;
	b->port = port;
	b->weight = 1;
}

/* The status entry of backend port, or NULL. */
static json_t *status_of(json_t *js, __u16 port)
{
	char ep[32];
	size_t i;
	json_t *e;

	snprintf(ep, sizeof(ep), "127.0.0.1:%u", port);
	json_array_foreach(js, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "backend")), ep))
			return e;
	return NULL;
}

struct sync_want {
	struct mapfix *f;
	__u32 id;
	__u8 health;
};

static int map_health_is(struct tctx *c, void *arg)
{
	struct sync_want *w = arg;

	(void)c;
	return backend_health(w->f, w->id) == w->health;
}

static void test_sync_maps(void **state)
{
	struct sl_reg_backend web_backends[2], plain_backends[1];
	struct sl_reg_service svcs[2];
	struct sl_registry reg = { .services = svcs, .count = 2 };
	struct sync_want w;
	struct server ok;
	struct mapfix f;
	struct health *h;
	struct tctx c;
	json_t *js, *e;
	__u16 bad;
	int fd, err;

	(void)state;
	err = maps_create(&f);
	if (err == -EPERM) {
		print_message("no CAP_BPF: health_sync not tested\n");
		skip();
	}
	assert_int_equal(err, 0);
	ctx_init(&c);
	assert_int_equal(server_open(&ok, &c.loop, AF_INET, 16, 1), 0);
	fd = refused_port(&bad);

	/* web: checked, backends ok (id 1) and bad (id 2); plain: unchecked, stale DOWN (id 3). */
	put_service(&f, &f.web_key, 0x0a600001, "web", 1, 2, 0);
	put_service(&f, &f.plain_key, 0x0a600002, "plain", 2, 1, 1);
	put_backend(&f, 1, 1, ok.port, SL_HEALTH_UNKNOWN);
	put_backend(&f, 2, 1, bad, SL_HEALTH_UNKNOWN);
	put_backend(&f, 3, 2, 9, SL_HEALTH_DOWN);
	memset(svcs, 0, sizeof(svcs));
	snprintf(svcs[0].settings.name, SL_NAME_MAX, "web");
	svcs[0].key = f.web_key;
	svcs[0].health_check = hc_cfg(SL_HC_HTTP, 20, 100, 2, 2);
	reg_backend(&web_backends[0], ok.port);
	reg_backend(&web_backends[1], bad);
	svcs[0].backends = web_backends;
	svcs[0].backend_count = 2;
	snprintf(svcs[1].settings.name, SL_NAME_MAX, "plain");
	svcs[1].key = f.plain_key;
	reg_backend(&plain_backends[0], 9);
	svcs[1].backends = plain_backends;
	svcs[1].backend_count = 1;

	h = health_new(&c.loop, &f.m);
	assert_non_null(h);
	assert_int_equal(health_sync(h, &reg), 0);
	assert_int_equal(backend_health(&f, 3), SL_HEALTH_UNKNOWN);
	assert_int_equal(unhealthy_count(&f, &f.plain_key), 0);

	w = (struct sync_want){ &f, 2, SL_HEALTH_DOWN };
	assert_true(run_until(&c, map_health_is, &w, 1000));
	w = (struct sync_want){ &f, 1, SL_HEALTH_UP };
	assert_true(run_until(&c, map_health_is, &w, 1000));
	assert_int_equal(unhealthy_count(&f, &f.web_key), 1);

	js = health_status_json(h);
	assert_non_null(js);
	assert_int_equal(json_array_size(js), 2);
	e = status_of(js, bad);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "service")), "web");
	assert_int_equal(json_integer_value(json_object_get(e, "id")), 2);
	assert_string_equal(json_string_value(json_object_get(e, "type")), "http");
	assert_string_equal(json_string_value(json_object_get(e, "state")), "down");
	assert_string_equal(json_string_value(json_object_get(e, "last_error")),
			    "connect: Connection refused");
	assert_true(json_integer_value(json_object_get(e, "consecutive_fail")) >= 2);
	assert_int_equal(json_integer_value(json_object_get(e, "consecutive_ok")), 0);
	assert_true(json_is_integer(json_object_get(e, "last_check_unix_ms")));
	e = status_of(js, ok.port);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "state")), "up");
	assert_true(json_is_null(json_object_get(e, "last_error")));
	assert_int_equal(json_object_size(e), 9);
	json_decref(js);

	/* A new apply gave the bad backend id 7: the state follows it, the new record gets DOWN. */
	assert_int_equal(bpf_map_delete_elem(f.m.backends, &(__u32){ 2 }), 0);
	put_backend(&f, 7, 1, bad, SL_HEALTH_UNKNOWN);
	assert_int_equal(health_sync(h, &reg), 0);
	assert_int_equal(backend_health(&f, 7), SL_HEALTH_DOWN);
	assert_int_equal(unhealthy_count(&f, &f.web_key), 1);
	js = health_status_json(h);
	assert_int_equal(json_integer_value(json_object_get(status_of(js, bad), "id")), 7);
	assert_string_equal(json_string_value(json_object_get(status_of(js, bad), "state")),
			    "down");
	json_decref(js);

	/* The health_check block removed: back to UNKNOWN, nothing unhealthy, nothing checked. */
	svcs[0].health_check.type = SL_HC_NONE;
	assert_int_equal(health_sync(h, &reg), 0);
	assert_int_equal(backend_health(&f, 1), SL_HEALTH_UNKNOWN);
	assert_int_equal(backend_health(&f, 7), SL_HEALTH_UNKNOWN);
	assert_int_equal(unhealthy_count(&f, &f.web_key), 0);
	js = health_status_json(h);
	assert_int_equal(json_array_size(js), 0);
	json_decref(js);
	run_for(&c, 50);
	assert_int_equal(backend_health(&f, 7), SL_HEALTH_UNKNOWN);

	/* Back again: a restarted checker adopts what the maps say. */
	put_backend(&f, 7, 1, bad, SL_HEALTH_DOWN);
	svcs[0].health_check.type = SL_HC_TCP;
	assert_int_equal(health_sync(h, &reg), 0);
	js = health_status_json(h);
	assert_string_equal(json_string_value(json_object_get(status_of(js, bad), "state")),
			    "down");
	json_decref(js);
	assert_int_equal(unhealthy_count(&f, &f.web_key), 1);

	health_free(h);
	close(fd);
	server_close(&ok);
	ctx_fini(&c);
	close(f.m.services);
	close(f.m.backends);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_status_parse),
		cmocka_unit_test(test_tcp_up),
		cmocka_unit_test(test_http_request),
		cmocka_unit_test(test_http_thresholds),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_http_timeout),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_max_inflight),
		cmocka_unit_test(test_stop_with_pending_events),
		cmocka_unit_test(test_stop_in_flight),
		cmocka_unit_test(test_configure),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_sync_maps),
	};

	log_init("test_health", SL_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
