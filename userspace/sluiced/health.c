// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/state.h"
#include "health.h"
#include "health_check.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define HC_BUF_SIZE 640
#define HC_NOT_QUEUED ((size_t)-1)
#define HC_NEVER UINT64_MAX
#define HC_INFLIGHT_MAX 4096
/* Dead probes are freed on a later timer tick; this bounds how long they wait. */
#define HC_REAP_MS 100
/* New targets get their first check spread over this window. */
#define HC_FIRST_CHECK_SPREAD_MS 50
#define HC_LOCAL_RETRY_MS 1000

enum hc_phase { HC_CONNECTING, HC_SENDING, HC_RECEIVING };

/*
 * One check attempt: its socket, its loop watch and its buffer. An epoll
 * batch may still hold an event for the socket after the probe ended (it may
 * even have ended in an earlier callback of the same batch), so a finished
 * probe only forgets its target and is freed two timer ticks later: the timer
 * fires at most once per batch, so by then that batch is over.
 */
struct hc_probe {
	struct loop_watch w;
	struct hc_engine *e;
	struct hc_target *t; /* NULL once finished */
	__u8 type;
	__u8 phase;
	int in_loop;
	size_t len, off;
	__u64 dead_tick;
	struct hc_probe *next_dead;
	char buf[HC_BUF_SIZE];
};

/*
 * Every started target sits in a min-heap by deadline_ms: the next check
 * when idle, the timeout when in flight, HC_NEVER while it waits for a free
 * in-flight slot (then it is also on the wait list). One timerfd is armed for
 * the heap's top.
 */
struct hc_engine {
	struct loop *loop;
	struct loop_watch timer;
	hc_result_fn fn;
	void *ctx;
	struct hc_target **heap;
	size_t heap_len, heap_cap;
	struct hc_target *wait_head, *wait_tail;
	size_t inflight, max_inflight;
	__u64 armed_ms; /* 0: not armed */
	__u64 ticks;
	__u64 last_warn_ms;
	struct hc_probe *dead;
};

const char *hc_type_name(__u8 type)
{
	switch (type) {
	case SL_HC_TCP:
		return "tcp";
	case SL_HC_HTTP:
		return "http";
	default:
		return "none";
	}
}

static int heap_less(const struct hc_engine *e, size_t a, size_t b)
{
	return e->heap[a]->deadline_ms < e->heap[b]->deadline_ms;
}

static void heap_swap(struct hc_engine *e, size_t a, size_t b)
{
	struct hc_target *t = e->heap[a];

	e->heap[a] = e->heap[b];
	e->heap[b] = t;
	e->heap[a]->heap_idx = a;
	e->heap[b]->heap_idx = b;
}

static void heap_up(struct hc_engine *e, size_t i)
{
	while (i && heap_less(e, i, (i - 1) / 2)) {
		heap_swap(e, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct hc_engine *e, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;

		if (l < e->heap_len && heap_less(e, l, min))
			min = l;
		if (r < e->heap_len && heap_less(e, r, min))
			min = r;
		if (min == i)
			return;
		heap_swap(e, i, min);
		i = min;
	}
}

static void heap_fix(struct hc_engine *e, struct hc_target *t)
{
	heap_up(e, t->heap_idx);
	heap_down(e, t->heap_idx);
}

static int heap_push(struct hc_engine *e, struct hc_target *t)
{
	if (e->heap_len == e->heap_cap) {
		size_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
		struct hc_target **p = realloc(e->heap, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		e->heap = p;
		e->heap_cap = cap;
	}
	t->heap_idx = e->heap_len;
	e->heap[e->heap_len++] = t;
	heap_up(e, t->heap_idx);
	return 0;
}

static void heap_remove(struct hc_engine *e, struct hc_target *t)
{
	size_t i = t->heap_idx, last = --e->heap_len;
	struct hc_target *moved = e->heap[last];

	t->heap_idx = HC_NOT_QUEUED;
	if (i == last)
		return;
	e->heap[i] = moved;
	moved->heap_idx = i;
	heap_fix(e, moved);
}

static void set_deadline(struct hc_engine *e, struct hc_target *t, __u64 deadline_ms)
{
	t->deadline_ms = deadline_ms;
	heap_fix(e, t);
}

static void wait_push(struct hc_engine *e, struct hc_target *t)
{
	t->waiting = 1;
	t->wait_next = NULL;
	t->wait_prev = e->wait_tail;
	if (e->wait_tail)
		e->wait_tail->wait_next = t;
	else
		e->wait_head = t;
	e->wait_tail = t;
	set_deadline(e, t, HC_NEVER);
}

static void wait_remove(struct hc_engine *e, struct hc_target *t)
{
	if (t->wait_prev)
		t->wait_prev->wait_next = t->wait_next;
	else
		e->wait_head = t->wait_next;
	if (t->wait_next)
		t->wait_next->wait_prev = t->wait_prev;
	else
		e->wait_tail = t->wait_prev;
	t->wait_prev = t->wait_next = NULL;
	t->waiting = 0;
}

static int can_start(const struct hc_engine *e)
{
	return e->wait_head && e->inflight < e->max_inflight;
}

/* Arms the timer for the earliest thing to do, unless it is armed early enough already. */
static void engine_arm(struct hc_engine *e)
{
	struct itimerspec its = { 0 };
	__u64 want = e->heap_len ? e->heap[0]->deadline_ms : HC_NEVER;

	if (can_start(e) || e->dead) {
		__u64 now = now_ms();

		if (can_start(e))
			want = now;
		else if (now + HC_REAP_MS < want)
			want = now + HC_REAP_MS;
	}
	if (want == HC_NEVER || (e->armed_ms && e->armed_ms <= want))
		return;
	if (!want)
		want = 1; /* an all-zero it_value would disarm */
	its.it_value.tv_sec = want / 1000;
	its.it_value.tv_nsec = (want % 1000) * 1000000;
	if (timerfd_settime(e->timer.fd, TFD_TIMER_ABSTIME, &its, NULL)) {
		log_warn("health: cannot arm the check timer: %s", strerror(errno));
		return;
	}
	e->armed_ms = want;
}

static void reap_probes(struct hc_engine *e, int all)
{
	struct hc_probe **pp = &e->dead;

	while (*pp) {
		struct hc_probe *p = *pp;

		if (all || p->dead_tick + 2 <= e->ticks) {
			*pp = p->next_dead;
			free(p);
		} else {
			pp = &p->next_dead;
		}
	}
}

/* Detaches p from its target and closes its socket; the struct waits for reap_probes. */
static void probe_close(struct hc_probe *p)
{
	struct hc_engine *e = p->e;

	if (p->w.fd >= 0) {
		if (p->in_loop)
			loop_del(e->loop, &p->w);
		close(p->w.fd);
		p->w.fd = -1;
	}
	p->t->probe = NULL;
	p->t = NULL;
	e->inflight--;
	if (!p->in_loop) {
		free(p);
		return;
	}
	p->dead_tick = e->ticks;
	p->next_dead = e->dead;
	e->dead = p;
}

static void clamp_config(struct sl_health_check *c)
{
	if (!c->interval_ms)
		c->interval_ms = 1;
	if (!c->timeout_ms)
		c->timeout_ms = 1;
	if (!c->healthy_threshold)
		c->healthy_threshold = 1;
	if (!c->unhealthy_threshold)
		c->unhealthy_threshold = 1;
}

static void target_record(struct hc_target *t, const char *err)
{
	t->checks++;
	t->last_check_unix_ms = wall_ns() / 1000000ULL;
	if (!err) {
		t->last_error[0] = '\0';
		t->consecutive_fail = 0;
		if (t->consecutive_ok < UINT32_MAX)
			t->consecutive_ok++;
		if (t->state != SL_HEALTH_UP && t->consecutive_ok >= t->cfg.healthy_threshold)
			t->state = SL_HEALTH_UP;
	} else {
		snprintf(t->last_error, sizeof(t->last_error), "%s", err);
		t->consecutive_ok = 0;
		if (t->consecutive_fail < UINT32_MAX)
			t->consecutive_fail++;
		if (t->state != SL_HEALTH_DOWN && t->consecutive_fail >= t->cfg.unhealthy_threshold)
			t->state = SL_HEALTH_DOWN;
	}
}

/* Ends p's check with a result (err NULL: healthy) and schedules the next one. */
static void probe_finish(struct hc_probe *p, const char *err)
{
	struct hc_engine *e = p->e;
	struct hc_target *t = p->t;
	__u8 prev = t->state;

	probe_close(p);
	target_record(t, err);
	set_deadline(e, t, now_ms() + t->cfg.interval_ms);
	engine_arm(e);
	e->fn(t, prev, e->ctx);
}

static void probe_fail(struct hc_probe *p, const char *what, int err)
{
	char msg[HC_ERR_MAX];

	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
	probe_finish(p, msg);
}

/*
 * The agent itself is short of sockets or memory: that says nothing about the
 * backend, so the check is neither counted nor reported; it is retried later.
 */
static void probe_abort(struct hc_probe *p, const char *what, int err)
{
	struct hc_engine *e = p->e;
	struct hc_target *t = p->t;
	__u64 now = now_ms();
	__u32 retry = t->cfg.interval_ms < HC_LOCAL_RETRY_MS ? t->cfg.interval_ms :
							      HC_LOCAL_RETRY_MS;

	if (now - e->last_warn_ms >= 1000) {
		log_warn("health: cannot start a check: %s: %s (retrying)", what, strerror(err));
		e->last_warn_ms = now;
	}
	probe_close(p);
	set_deadline(e, t, now + retry);
}

static int local_shortage(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int hc_http_status(const char *buf, size_t len)
{
	static const char prefix[] = "HTTP/";
	size_t n = sizeof(prefix) - 1, i;
	int code = 0, digits;

	if (memcmp(buf, prefix, len < n ? len : n))
		return -EINVAL;
	if (len < n)
		return 0;
	for (i = n; i < len && buf[i] != ' '; i++)
		if ((buf[i] < '0' || buf[i] > '9') && buf[i] != '.')
			return -EINVAL;
	if (i == len)
		return i - n > 8 ? -EINVAL : 0;
	if (i == n || i - n > 8)
		return -EINVAL;
	for (i++, digits = 0; digits < 3; i++, digits++) {
		if (i == len)
			return 0;
		if (buf[i] < '0' || buf[i] > '9')
			return -EINVAL;
		code = code * 10 + buf[i] - '0';
	}
	if (i == len)
		return 0;
	if (code < 100 || (buf[i] != ' ' && buf[i] != '\r' && buf[i] != '\n'))
		return -EINVAL;
	return code;
}

static void probe_recv(struct hc_probe *p)
{
	char msg[HC_ERR_MAX];
	ssize_t n;
	int status;

	for (;;) {
		n = recv(p->w.fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				probe_fail(p, "recv", errno);
			return;
		}
		if (!n) {
			probe_finish(p, p->len ? "http: bad status line" : "http: empty response");
			return;
		}
		p->len += n;
		status = hc_http_status(p->buf, p->len);
		if (status < 0 || (!status && p->len == sizeof(p->buf))) {
			probe_finish(p, "http: bad status line");
			return;
		}
		if (status >= 200 && status < 400) {
			probe_finish(p, NULL);
			return;
		}
		if (status) {
			snprintf(msg, sizeof(msg), "http status %d", status);
			probe_finish(p, msg);
			return;
		}
	}
}

static void probe_send(struct hc_probe *p)
{
	ssize_t n;
	int err;

	while (p->off < p->len) {
		n = send(p->w.fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				probe_fail(p, "send", errno);
			return;
		}
		p->off += n;
	}
	p->phase = HC_RECEIVING;
	p->len = 0;
	err = loop_mod(p->e->loop, &p->w, EPOLLIN);
	if (err)
		probe_fail(p, "epoll", -err);
}

static void probe_connected(struct hc_probe *p, uint32_t events)
{
	socklen_t len = sizeof(int);
	int soerr = 0;

	if (getsockopt(p->w.fd, SOL_SOCKET, SO_ERROR, &soerr, &len))
		soerr = errno;
	if (soerr) {
		probe_fail(p, "connect", soerr);
		return;
	}
	if (!(events & EPOLLOUT)) {
		probe_finish(p, "connect: connection closed");
		return;
	}
	if (p->type != SL_HC_HTTP) {
		probe_finish(p, NULL);
		return;
	}
	p->phase = HC_SENDING;
	probe_send(p);
}

static void probe_event(struct loop_watch *w, uint32_t events)
{
	struct hc_probe *p = container_of(w, struct hc_probe, w);

	if (!p->t) /* finished earlier in this batch */
		return;
	switch (p->phase) {
	case HC_CONNECTING:
		probe_connected(p, events);
		break;
	case HC_SENDING:
		probe_send(p);
		break;
	default:
		probe_recv(p);
		break;
	}
}

static int build_request(struct hc_probe *p, const struct hc_target *t)
{
	char host[SL_ENDPOINT_STRLEN];
	int n;

	sl_endpoint_format(&t->addr, t->family, t->port, host, sizeof(host));
	n = snprintf(p->buf, sizeof(p->buf),
		     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: sluiced\r\n"
		     "Connection: close\r\n\r\n",
		     t->cfg.path[0] ? t->cfg.path : "/", host);
	if (n < 0 || (size_t)n >= sizeof(p->buf))
		return -ENAMETOOLONG;
	p->len = n;
	return 0;
}

static socklen_t target_sockaddr(const struct hc_target *t, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (t->family == SL_FAMILY_IPV6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(t->port);
		memcpy(&s6->sin6_addr, t->addr.words, sizeof(s6->sin6_addr));
		return sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(t->port);
		s4->sin_addr.s_addr = t->addr.words[0];
		return sizeof(*s4);
	}
}

static void probe_start(struct hc_engine *e, struct hc_target *t)
{
	struct sockaddr_storage ss;
	struct hc_probe *p;
	socklen_t slen;
	int fd, err;

	p = malloc(sizeof(*p));
	if (!p) {
		set_deadline(e, t, now_ms() + HC_LOCAL_RETRY_MS);
		return;
	}
	memset(p, 0, offsetof(struct hc_probe, buf));
	p->e = e;
	p->t = t;
	p->type = t->cfg.type;
	p->phase = HC_CONNECTING;
	p->w.fd = -1;
	p->w.fn = probe_event;
	t->probe = p;
	e->inflight++;
	set_deadline(e, t, now_ms() + t->cfg.timeout_ms);

	if (p->type == SL_HC_HTTP && build_request(p, t)) {
		probe_finish(p, "http: request too long");
		return;
	}
	slen = target_sockaddr(t, &ss);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = errno;
		if (local_shortage(err))
			probe_abort(p, "socket", err);
		else
			probe_fail(p, "socket", err);
		return;
	}
	p->w.fd = fd;
	if (connect(fd, (struct sockaddr *)&ss, slen) && errno != EINPROGRESS) {
		err = errno;
		if (err == EAGAIN) /* out of local ports */
			probe_abort(p, "connect", err);
		else
			probe_fail(p, "connect", err);
		return;
	}
	/* Writable once the connect is done, whichever way it went. */
	err = loop_add(e->loop, &p->w, EPOLLOUT);
	if (err) {
		probe_abort(p, "epoll", -err);
		return;
	}
	p->in_loop = 1;
}

static void engine_run(struct hc_engine *e)
{
	__u64 now = now_ms();

	while (e->heap_len && e->heap[0]->deadline_ms <= now) {
		struct hc_target *t = e->heap[0];

		if (t->probe)
			probe_finish(t->probe, "timeout");
		else
			wait_push(e, t);
	}
	while (can_start(e)) {
		struct hc_target *t = e->wait_head;

		wait_remove(e, t);
		probe_start(e, t);
	}
}

static void timer_event(struct loop_watch *w, uint32_t events)
{
	struct hc_engine *e = container_of(w, struct hc_engine, timer);
	__u64 expirations;

	(void)events;
	if (read(w->fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_debug("health: reading the check timer: %s", strerror(errno));
	e->armed_ms = 0;
	e->ticks++;
	reap_probes(e, 0);
	engine_run(e);
	engine_arm(e);
}

static size_t default_max_inflight(void)
{
	struct rlimit rl;
	size_t n = HC_INFLIGHT_MAX;

	/* Leave room for the agent's other descriptors. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY) {
		if (rl.rlim_cur > 256 && rl.rlim_cur - 128 < n)
			n = rl.rlim_cur - 128;
		else if (rl.rlim_cur <= 256)
			n = rl.rlim_cur / 2;
	}
	return n ? n : 1;
}

struct hc_engine *hc_engine_new(struct loop *loop, hc_result_fn fn, void *ctx)
{
	struct hc_engine *e = calloc(1, sizeof(*e));
	int err;

	if (!e)
		return NULL;
	e->loop = loop;
	e->fn = fn;
	e->ctx = ctx;
	e->max_inflight = default_max_inflight();
	e->timer.fn = timer_event;
	e->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (e->timer.fd < 0) {
		err = -errno;
		goto out;
	}
	err = loop_add(loop, &e->timer, EPOLLIN);
out:
	if (err) {
		if (e->timer.fd >= 0)
			close(e->timer.fd);
		free(e);
		errno = -err;
		return NULL;
	}
	return e;
}

void hc_engine_free(struct hc_engine *e)
{
	if (!e)
		return;
	while (e->heap_len)
		hc_target_stop(e->heap[0]);
	reap_probes(e, 1);
	loop_del(e->loop, &e->timer);
	close(e->timer.fd);
	free(e->heap);
	free(e);
}

void hc_engine_set_max_inflight(struct hc_engine *e, size_t n)
{
	e->max_inflight = n ? n : 1;
	engine_arm(e);
}

size_t hc_engine_inflight(const struct hc_engine *e)
{
	return e->inflight;
}

int hc_target_start(struct hc_engine *e, struct hc_target *t, __u32 delay_ms)
{
	int err;

	if (t->engine)
		return -EALREADY;
	clamp_config(&t->cfg);
	t->probe = NULL;
	t->waiting = 0;
	t->wait_prev = t->wait_next = NULL;
	t->deadline_ms = now_ms() + delay_ms;
	err = heap_push(e, t);
	if (err)
		return err;
	t->engine = e;
	engine_arm(e);
	return 0;
}

void hc_target_configure(struct hc_target *t, const struct sl_health_check *cfg)
{
	struct hc_engine *e = t->engine;
	__u64 next;

	t->cfg = *cfg;
	clamp_config(&t->cfg);
	if (!e || t->probe || t->waiting)
		return;
	next = now_ms() + t->cfg.interval_ms;
	if (t->deadline_ms > next) {
		set_deadline(e, t, next);
		engine_arm(e);
	}
}

void hc_target_stop(struct hc_target *t)
{
	struct hc_engine *e = t->engine;

	if (!e)
		return;
	if (t->probe)
		probe_close(t->probe);
	if (t->waiting)
		wait_remove(e, t);
	heap_remove(e, t);
	t->engine = NULL;
	engine_arm(e);
}

/* The agent's side: targets per (service, backend), results written into the maps. */

struct hsvc {
	char name[SL_NAME_MAX];
	struct sl_svc_key key;
	__u32 down; /* its targets held DOWN */
};

struct htarget {
	struct hc_target hc;
	struct hsvc *svc;
	__u32 id; /* key of sl_backends */
};

struct health {
	struct loop *loop;
	const struct sl_maps *maps;
	struct hc_engine *engine;
	struct hsvc **svcs;
	size_t svc_count;
	struct htarget **targets; /* by service name, then family, address, port */
	size_t count;
};

static const char *target_name(const struct htarget *t, char *buf, size_t size)
{
	return sl_endpoint_format(&t->hc.addr, t->hc.family, t->hc.port, buf, size);
}

static int cmp_target(const void *a, const void *b)
{
	const struct htarget *x = *(struct htarget *const *)a, *y = *(struct htarget *const *)b;
	int c = strncmp(x->svc->name, y->svc->name, SL_NAME_MAX);

	if (c)
		return c;
	return sl_backend_cmp(x->hc.family, &x->hc.addr, x->hc.port, y->hc.family, &y->hc.addr,
			      y->hc.port);
}

/* Writes health into backend id's record if it is still the record of t's endpoint. */
static void write_backend_health(struct health *h, const struct htarget *t, __u32 id, __u8 health)
{
	char ep[SL_ENDPOINT_STRLEN];
	struct sl_backend b;
	int err;

	if (bpf_map_lookup_elem(h->maps->backends, &id, &b)) {
		log_warn("health: service %s backend %s: cannot read id %u from sl_backends: %s",
			 t->svc->name, target_name(t, ep, sizeof(ep)), id, strerror(errno));
		return;
	}
	if (b.family != t->hc.family || ntohs(b.port) != t->hc.port ||
	    memcmp(&b.addr, &t->hc.addr, sizeof(b.addr))) {
		log_debug("health: sl_backends[%u] is no longer %s; left alone", id,
			  target_name(t, ep, sizeof(ep)));
		return;
	}
	if (b.health == health)
		return;
	b.health = health;
	if ((err = sl_backend_rewrite(h->maps, id, &b)))
		log_warn("health: service %s backend %s: cannot write id %u to sl_backends and "
			 "sl_be_health: %s", t->svc->name, target_name(t, ep, sizeof(ep)), id,
			 strerror(-err));
}

static void write_unhealthy_count(struct health *h, const char *name, const struct sl_svc_key *key,
				  __u32 count)
{
	struct sl_service v;

	if (bpf_map_lookup_elem(h->maps->services, key, &v)) {
		log_warn("health: service %s: cannot read it from sl_services: %s", name,
			 strerror(errno));
		return;
	}
	if (v.unhealthy_count == count || strncmp(v.name, name, SL_NAME_MAX))
		return;
	v.unhealthy_count = count;
	if (bpf_map_update_elem(h->maps->services, key, &v, BPF_EXIST))
		log_warn("health: service %s: cannot write its unhealthy count to sl_services: %s",
			 name, strerror(errno));
}

static void on_result(struct hc_target *hc, __u8 prev, void *ctx)
{
	struct htarget *t = container_of(hc, struct htarget, hc);
	struct health *h = ctx;
	char ep[SL_ENDPOINT_STRLEN];

	if (hc->state == prev)
		return;
	log_info("health: service=%s backend=%s %s -> %s%s%s%s", t->svc->name,
		 target_name(t, ep, sizeof(ep)), sl_health_name(prev), sl_health_name(hc->state),
		 hc->last_error[0] ? " (" : "", hc->last_error, hc->last_error[0] ? ")" : "");
	if (prev == SL_HEALTH_DOWN)
		t->svc->down--;
	if (hc->state == SL_HEALTH_DOWN)
		t->svc->down++;
	write_backend_health(h, t, t->id, hc->state);
	write_unhealthy_count(h, t->svc->name, &t->svc->key, t->svc->down);
}

struct health *health_new(struct loop *loop, const struct sl_maps *maps)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->loop = loop;
	h->maps = maps;
	h->engine = hc_engine_new(loop, on_result, h);
	if (!h->engine) {
		free(h);
		return NULL;
	}
	return h;
}

static const struct sl_state_backend *find_state_backend(const struct sl_state_service *ss,
							  const struct sl_reg_backend *rb)
{
	size_t lo = 0, hi = ss->backend_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct sl_state_backend *b = &ss->backends[mid];
		int c = sl_backend_cmp(rb->family, &rb->addr, rb->port, b->v.family, &b->v.addr,
				       ntohs(b->v.port));

		if (!c)
			return b;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Index of the target of (service name, backend) in h->targets, or -1. */
static long find_target(const struct health *h, const char *name, const struct sl_reg_backend *rb)
{
	size_t lo = 0, hi = h->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct htarget *t = h->targets[mid];
		int c = strncmp(name, t->svc->name, SL_NAME_MAX);

		if (!c)
			c = sl_backend_cmp(rb->family, &rb->addr, rb->port, t->hc.family,
					   &t->hc.addr, t->hc.port);
		if (!c)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* A service nobody checks: its backends are UNKNOWN and none counts as unhealthy. */
static void reset_service(struct health *h, const struct sl_state_service *ss)
{
	for (size_t i = 0; i < ss->backend_count; i++) {
		struct sl_backend b = ss->backends[i].v;
		__u32 id = ss->backends[i].id;
		int err;

		if (b.health == SL_HEALTH_UNKNOWN)
			continue;
		b.health = SL_HEALTH_UNKNOWN;
		if ((err = sl_backend_rewrite(h->maps, id, &b)))
			log_warn("health: service %s: cannot reset the health of backend id %u: %s",
				 ss->v.name, id, strerror(-err));
	}
	if (ss->v.unhealthy_count)
		write_unhealthy_count(h, ss->v.name, &ss->key, 0);
}

struct sync_ctx {
	struct health *h;
	struct sl_state st;
	char *taken;	 /* per old target: kept */
	char *checked;	 /* per state service: has a health check */
	struct htarget **next;
	size_t count;
	__u8 *map_health; /* per next target: sl_backends' health now */
	struct hsvc **svcs;
	size_t svc_count;
	size_t fresh;
};

static int sync_service(struct sync_ctx *c, const struct sl_reg_service *rs)
{
	const struct sl_state_service *ss = sl_state_find(&c->st, rs->settings.name);
	struct health *h = c->h;
	char ep[SL_ENDPOINT_STRLEN];
	struct hsvc *svc;
	int err = 0;

	if (!ss) {
		log_warn("health: service %s is not in sl_services; not checking it",
			 rs->settings.name);
		return 0;
	}
	svc = calloc(1, sizeof(*svc));
	if (!svc)
		return -ENOMEM;
	c->checked[ss - c->st.services] = 1;
	snprintf(svc->name, sizeof(svc->name), "%s", ss->v.name);
	svc->key = ss->key;
	c->svcs[c->svc_count++] = svc;

	for (size_t i = 0; i < rs->backend_count; i++) {
		const struct sl_reg_backend *rb = &rs->backends[i];
		const struct sl_state_backend *sb = find_state_backend(ss, rb);
		struct htarget *t;
		long old;

		if (!sb) {
			sl_endpoint_format(&rb->addr, rb->family, rb->port, ep, sizeof(ep));
			log_warn("health: service %s backend %s: not in sl_backends, not checked",
				 svc->name, ep);
			continue;
		}
		old = find_target(h, svc->name, rb);
		if (old >= 0) {
			t = h->targets[old];
			c->taken[old] = 1;
			hc_target_configure(&t->hc, &rs->health_check);
		} else {
			t = calloc(1, sizeof(*t));
			if (!t) {
				err = -ENOMEM;
				continue;
			}
			t->hc.addr = rb->addr;
			t->hc.port = rb->port;
			t->hc.family = rb->family;
			t->hc.cfg = rs->health_check;
			/* A restarted agent adopts what the previous one found. */
			t->hc.state = sb->v.health <= SL_HEALTH_DOWN ? sb->v.health :
								       SL_HEALTH_UNKNOWN;
			c->fresh++;
		}
		t->svc = svc;
		t->id = sb->id;
		c->map_health[c->count] = sb->v.health;
		c->next[c->count++] = t;
	}
	return err;
}

int health_sync(struct health *h, const struct sl_registry *reg)
{
	struct sync_ctx c = { .h = h };
	size_t total = 0, k = 0;
	int err, ret = 0;

	err = sl_state_read(h->maps, &c.st);
	if (err) {
		log_warn("health: cannot read the services from the maps: %s", strerror(-err));
		return err;
	}
	for (size_t i = 0; i < reg->count; i++)
		if (reg->services[i].health_check.type != SL_HC_NONE)
			total += reg->services[i].backend_count;
	c.taken = calloc(h->count + 1, 1);
	c.checked = calloc(c.st.count + 1, 1);
	c.next = calloc(total + 1, sizeof(*c.next));
	c.map_health = calloc(total + 1, 1);
	c.svcs = calloc(reg->count + 1, sizeof(*c.svcs));
	if (!c.taken || !c.checked || !c.next || !c.map_health || !c.svcs) {
		ret = -ENOMEM;
		goto out;
	}

	for (size_t i = 0; i < reg->count; i++) {
		if (reg->services[i].health_check.type == SL_HC_NONE)
			continue;
		err = sync_service(&c, &reg->services[i]);
		if (err)
			ret = err;
	}

	for (size_t i = 0; i < h->count; i++) {
		if (c.taken[i])
			continue;
		hc_target_stop(&h->targets[i]->hc);
		free(h->targets[i]);
	}
	for (size_t i = 0; i < h->svc_count; i++)
		free(h->svcs[i]);
	free(h->svcs);
	free(h->targets);
	h->svcs = c.svcs;
	h->svc_count = c.svc_count;
	c.svcs = NULL;

	/* New targets: first checks spread over a short window, then each keeps its own pace. */
	h->count = 0;
	for (size_t i = 0; i < c.count; i++) {
		struct htarget *t = c.next[i];

		if (!t->hc.engine) {
			err = hc_target_start(h->engine, &t->hc,
					      k++ * HC_FIRST_CHECK_SPREAD_MS / c.fresh);
			if (err) {
				free(t);
				ret = err;
				continue;
			}
		}
		c.next[h->count++] = t;
		if (t->hc.state == SL_HEALTH_DOWN)
			t->svc->down++;
		if (c.map_health[i] != t->hc.state)
			write_backend_health(h, t, t->id, t->hc.state);
	}
	h->targets = c.next;
	c.next = NULL;
	qsort(h->targets, h->count, sizeof(*h->targets), cmp_target);

	for (size_t i = 0; i < h->svc_count; i++)
		write_unhealthy_count(h, h->svcs[i]->name, &h->svcs[i]->key, h->svcs[i]->down);
	for (size_t i = 0; i < c.st.count; i++)
		if (!c.checked[i])
			reset_service(h, &c.st.services[i]);
out:
	if (c.svcs) {
		for (size_t i = 0; i < c.svc_count; i++)
			free(c.svcs[i]);
	}
	free(c.svcs);
	free(c.next);
	free(c.map_health);
	free(c.checked);
	free(c.taken);
	sl_state_free(&c.st);
	return ret;
}

static json_t *target_json(const struct htarget *t)
{
	const struct hc_target *hc = &t->hc;
	json_t *last_check, *last_error;
	char ep[SL_ENDPOINT_STRLEN];

	last_check = hc->last_check_unix_ms ? json_integer(hc->last_check_unix_ms) : json_null();
	last_error = hc->last_error[0] ? json_string(hc->last_error) : json_null();

	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:o, s:o}",
			 "service", t->svc->name,
			 "backend", target_name(t, ep, sizeof(ep)),
			 "id", (json_int_t)t->id,
			 "type", hc_type_name(hc->cfg.type),
			 "state", sl_health_name(hc->state),
			 "consecutive_ok", (json_int_t)hc->consecutive_ok,
			 "consecutive_fail", (json_int_t)hc->consecutive_fail,
			 "last_check_unix_ms", last_check,
			 "last_error", last_error);
}

json_t *health_status_json(const struct health *h)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; h && i < h->count; i++) {
		if (json_array_append_new(arr, target_json(h->targets[i]))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

void health_free(struct health *h)
{
	if (!h)
		return;
	hc_engine_free(h->engine);
	for (size_t i = 0; i < h->count; i++)
		free(h->targets[i]);
	for (size_t i = 0; i < h->svc_count; i++)
		free(h->svcs[i]);
	free(h->targets);
	free(h->svcs);
	free(h);
}
