// SPDX-License-Identifier: MIT
/*
 * The agent's HTTP API (README, "sluiced API"): /metrics, /healthz, /readyz
 * and /v1/... as JSON. libmicrohttpd runs without threads of its own: its
 * epoll fd sits in the agent's loop, so handlers read and write the maps on
 * the loop thread like everything else.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <microhttpd.h>

#include "agent.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/state.h"
#include "lib/views.h"
#include "metrics.h"

#define BODY_MAX (1 << 20)

struct request {
	char *body;
	size_t len;
	int too_large;
	/* A registry write awaiting Redis: the connection is suspended until it is answered. */
	struct MHD_Connection *conn;
	int waiting;
	int answered;
	unsigned int answer_status;
	json_t *answer_body;
};

struct reply {
	unsigned int status;
	const char *content_type;
	char *body; /* malloc'd */
	size_t len;
	int fd; /* > 0: the body is this file's first len bytes instead */
};

static void reply_json(struct reply *r, unsigned int status, json_t *doc)
{
	r->status = status;
	r->content_type = "application/json";
	r->body = json_dumps(doc, JSON_COMPACT);
	r->len = r->body ? strlen(r->body) : 0;
	json_decref(doc);
}

static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_json(r, status, json_pack("{s:s}", "error", msg));
}

/* Mutating calls: "Authorization: Bearer <token>", compared in constant time. */
static int authorized(struct agent *a, struct MHD_Connection *conn, struct reply *r)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	const char *want = a->cfg.api_token;
	size_t n = strlen(want), got_len;
	unsigned char diff = 0;

	if (!want[0]) {
		reply_error(r, 401, "no API token is configured (--api-token-file or SLUICE_API_TOKEN)");
		return 0;
	}
	if (!h || strncmp(h, "Bearer ", 7)) {
		reply_error(r, 401, "missing bearer token");
		return 0;
	}
	h += 7;
	got_len = strlen(h);
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < got_len ? h[i] : 0);
	if (diff || got_len != n) {
		reply_error(r, 401, "invalid bearer token");
		return 0;
	}
	return 1;
}

/*
 * A scrape of 100,000 backends is over 100 MB of text: it goes to a memfd and
 * is served from there, which costs far less than growing a heap buffer.
 */
static void get_metrics(struct agent *a, struct reply *r)
{
	int fd = memfd_create("sluice-metrics", MFD_CLOEXEC), err;
	FILE *f = fd >= 0 ? fdopen(dup(fd), "w") : NULL;
	long size;

	if (!f) {
		if (fd >= 0)
			close(fd);
		reply_error(r, 500, "cannot buffer the metrics: %s", strerror(errno));
		return;
	}
	err = metrics_write(f, &a->maps, &a->status);
	size = ftell(f);
	if (fclose(f) && !err)
		err = -errno;
	if (err || size < 0) {
		close(fd);
		reply_error(r, 500, "cannot read the maps: %s", strerror(err ? -err : EIO));
		return;
	}
	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	r->fd = fd;
	r->len = size;
}

static void get_readyz(struct agent *a, struct reply *r)
{
	struct agent_status *st = &a->status;
	int ready = st->last_sync_unix_ns && !st->degraded && !st->stale;
	/* Stale: the source lost its server; the maps hold what was last applied. */
	json_t *since = st->stale ? json_real(st->stale_since_unix_ns / 1e9) : json_null();

	reply_json(r, ready ? 200 : 503,
		   json_pack("{s:b,s:s,s:s,s:s,s:I,s:b,s:o}", "ready", ready, "registry_source",
			     st->registry_source, "registry",
			     st->stale		    ? "stale" :
			     !st->last_sync_unix_ns ? "not_applied" :
			     st->degraded	    ? "degraded" :
						      "ok",
			     "last_error", st->stale ? st->stale_reason : st->last_error,
			     "generation", (json_int_t)a->generation, "stale", st->stale,
			     "stale_since", since));
}

/* /v1/services and /v1/services/{name}: the service views, each with its backends. */
static json_t *service_with_backends(struct agent *a, const struct sl_state_service *s)
{
	json_t *o = sl_json_service(&a->maps, s), *bes = json_array();

	for (size_t k = 0; k < s->backend_count; k++)
		json_array_append_new(bes, sl_json_backend(&a->maps, s, &s->backends[k]));
	json_object_set_new(o, "backends", bes);
	return o;
}

/* Reads what the maps hold; on failure answers 500 and returns non-zero. */
static int read_state(struct agent *a, struct sl_state *st, struct reply *r)
{
	int err = sl_state_read(&a->maps, st);

	if (err)
		reply_error(r, 500, "cannot read the maps: %s", strerror(-err));
	return err;
}

static void get_services(struct agent *a, const char *name, struct reply *r)
{
	struct sl_state st;
	json_t *arr;

	if (read_state(a, &st, r))
		return;
	if (name) {
		const struct sl_state_service *s = sl_state_find(&st, name);

		if (s)
			reply_json(r, 200, service_with_backends(a, s));
		else
			reply_error(r, 404, "no service named \"%s\"", name);
	} else {
		arr = json_array();
		for (size_t i = 0; i < st.count; i++)
			json_array_append_new(arr, service_with_backends(a, &st.services[i]));
		reply_json(r, 200, arr);
	}
	sl_state_free(&st);
}

static void get_breakers(struct agent *a, struct reply *r)
{
	struct sl_state st;
	json_t *arr;

	if (read_state(a, &st, r))
		return;
	arr = json_array();
	for (size_t i = 0; i < st.count; i++)
		for (size_t k = 0; k < st.services[i].backend_count; k++)
			json_array_append_new(arr, sl_json_breaker(&a->maps, &st.services[i],
								   &st.services[i].backends[k]));
	sl_state_free(&st);
	reply_json(r, 200, arr);
}

static void post_breaker_reset(struct agent *a, const char *service, const char *backend,
			       struct reply *r)
{
	const struct sl_state_service *s;
	const struct sl_state_backend *b;
	__u32 prev = 0;
	struct sl_state st;
	int err;

	if (read_state(a, &st, r))
		return;
	s = sl_state_find(&st, service);
	b = s ? sl_state_find_backend(s, backend) : NULL;
	if (!s)
		reply_error(r, 404, "no service named \"%s\"", service);
	else if (!b)
		reply_error(r, 404, "service \"%s\" has no backend %s", service, backend);
	else if ((err = sl_state_reset_breaker(&a->maps, s, b, &prev)))
		reply_error(r, 500, "cannot reset the breaker: %s", strerror(-err));
	else {
		log_info("api: breaker reset service=%s backend=%s previous=%s", service, backend,
			 sl_breaker_state_name(prev));
		reply_json(r, 200, json_pack("{s:s,s:s,s:s,s:s}", "service", service, "backend",
					     backend, "previous_state", sl_breaker_state_name(prev),
					     "state", "closed"));
	}
	sl_state_free(&st);
}

/* Redis answered a registry write: the suspended request resumes with the answer. */
static void on_write_done(void *ctx, unsigned int status, json_t *body)
{
	struct request *req = ctx;

	req->answer_status = status;
	req->answer_body = body;
	req->answered = 1;
	MHD_resume_connection(req->conn);
}

/* Registration writes to the registry source; a file source is not written through the API. */
static void registry_write(struct agent *a, struct request *req, char **seg, int is_post,
			   struct reply *r)
{
	json_t *doc = NULL, *now = NULL;
	unsigned int status;

	if (is_post) {
		json_error_t jerr;

		doc = json_loadb(req->body ? req->body : "", req->len, 0, &jerr);
		if (!doc) {
			reply_error(r, 400, "invalid JSON: %s", jerr.text);
			return;
		}
	}
	if (!a->redis) {
		json_decref(doc);
		reply_error(r, 409, "the registry source %s is read-only through the API: edit the "
			    "file", a->cfg.registry);
		return;
	}
	status = is_post ? source_redis_register(a->redis, doc, on_write_done, req, &now) :
			   source_redis_deregister(a->redis, seg[2], seg[3], on_write_done, req,
						   &now);
	json_decref(doc);
	if (status)
		reply_json(r, status, now);
	else
		req->waiting = 1;
}

/* Splits "/v1/a/b/c" into at most max segments (in place); returns how many. */
static int split_path(char *path, char **seg, int max)
{
	int n = 0;

	for (char *tok = strtok(path, "/"); tok; tok = strtok(NULL, "/")) {
		if (n == max)
			return max + 1;
		seg[n++] = tok;
	}
	return n;
}

static void route(struct agent *a, struct MHD_Connection *conn, const char *url,
		  const char *method, struct request *req, struct reply *r)
{
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	int del = !strcmp(method, "DELETE");
	char path[1024], *seg[6];
	int n;

	if (strlen(url) >= sizeof(path)) {
		reply_error(r, 414, "path too long");
		return;
	}
	strcpy(path, url);
	n = split_path(path, seg, 5);
	if (req->too_large) {
		reply_error(r, 413, "request body over %d bytes", BODY_MAX);
	} else if (n == 1 && (!strcmp(seg[0], "metrics") || !strcmp(seg[0], "healthz") ||
			      !strcmp(seg[0], "readyz"))) {
		if (!get)
			reply_error(r, 405, "%s not allowed on %s (GET)", method, url);
		else if (seg[0][0] == 'm')
			get_metrics(a, r);
		else if (seg[0][0] == 'h')
			reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
		else
			get_readyz(a, r);
	} else if (n >= 2 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "services")) {
		if (n == 2 && get)
			get_services(a, NULL, r);
		else if (n == 3 && get)
			get_services(a, seg[2], r);
		else if ((n == 3 && post && !strcmp(seg[2], "register")) || (n == 4 && del)) {
			if (authorized(a, conn, r))
				registry_write(a, req, seg, post, r);
		} else
			reply_error(r, 405, "%s not allowed on %s", method, url);
	} else if (n == 3 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "health") &&
		   !strcmp(seg[2], "status")) {
		if (get)
			reply_json(r, 200, a->health ? health_status_json(a->health) : json_array());
		else
			reply_error(r, 405, "%s not allowed on %s (GET)", method, url);
	} else if (n == 2 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "circuit-breakers")) {
		if (get)
			get_breakers(a, r);
		else
			reply_error(r, 405, "%s not allowed on %s (GET)", method, url);
	} else if (n == 5 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "circuit-breakers") &&
		   !strcmp(seg[4], "reset")) {
		if (!post)
			reply_error(r, 405, "%s not allowed on %s (POST)", method, url);
		else if (authorized(a, conn, r))
			post_breaker_reset(a, seg[2], seg[3], r);
	} else {
		reply_error(r, 404, "no such endpoint: %s %s", method, url);
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct agent *a = cls;
	struct request *req = *con_cls;
	struct reply r = { 0 };
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void)version;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (req)
			req->conn = conn;
		*con_cls = req;
		return req ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		if (req->len + *upload_size > BODY_MAX) {
			req->too_large = 1;
		} else {
			char *grown = realloc(req->body, req->len + *upload_size + 1);

			if (!grown)
				return MHD_NO;
			req->body = grown;
			memcpy(req->body + req->len, upload, *upload_size);
			req->len += *upload_size;
			req->body[req->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->answered) {
		reply_json(&r, req->answer_status, req->answer_body);
		req->answer_body = NULL;
	} else {
		route(a, conn, url, method, req, &r);
		if (req->waiting) {
			MHD_suspend_connection(conn);
			return MHD_YES;
		}
	}
	if (r.fd > 0) {
		resp = MHD_create_response_from_fd(r.len, r.fd); /* MHD closes it */
		if (!resp)
			close(r.fd);
		goto queue;
	}
	if (!r.body) {
		r.status = 500;
		r.body = strdup("{\"error\":\"out of memory\"}");
		r.len = r.body ? strlen(r.body) : 0;
		r.content_type = "application/json";
	}
	resp = MHD_create_response_from_buffer(r.len, r.body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		free(r.body);
queue:
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", r.content_type);
	ret = MHD_queue_response(conn, r.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode code)
{
	struct request *req = *con_cls;

	(void)cls;
	(void)conn;
	(void)code;
	if (req) {
		json_decref(req->answer_body);
		free(req->body);
		free(req);
	}
	*con_cls = NULL;
}

static void on_http(struct loop_watch *w, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)w - offsetof(struct agent, http_watch));

	(void)events;
	MHD_run(a->http);
}

void api_poll(struct agent *a)
{
	if (a->http)
		MHD_run(a->http);
}

/*
 * How long the loop may sleep: 0 while libmicrohttpd has connections ready
 * to write (its epoll is edge-triggered, so a large response would otherwise
 * advance one chunk per loop timeout).
 */
int api_timeout_ms(struct agent *a, int max_ms)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (a->http && MHD_get_timeout(a->http, &ms) == MHD_YES && ms < (unsigned)max_ms)
		return (int)ms;
	return max_ms;
}

int api_start(struct agent *a)
{
	struct sockaddr_storage ss = { 0 };
	const union MHD_DaemonInfo *info;
	/* Suspend/resume: a registry write answers once Redis has confirmed it. */
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	struct sl_addr addr;
	__u8 family;
	__u16 port;

	if (sl_endpoint_parse(a->cfg.listen, &addr, &family, &port)) {
		log_err("--listen %s: expected ADDR:PORT or [ADDR6]:PORT", a->cfg.listen);
		return -EINVAL;
	}
	if (family == SL_FAMILY_IPV6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		memcpy(&in6->sin6_addr, &addr, 16);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = addr.words[0];
	}
	a->http = MHD_start_daemon(flags, port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR,
				   (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
				   NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
				   MHD_OPTION_END);
	if (!a->http) {
		log_err("cannot listen on %s: %s", a->cfg.listen, strerror(errno));
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(a->http, MHD_DAEMON_INFO_EPOLL_FD);
	a->http_watch = (struct loop_watch){ info->epoll_fd, on_http };
	return loop_add(&a->loop, &a->http_watch, EPOLLIN);
}

void api_stop(struct agent *a)
{
	if (!a->http)
		return;
	loop_del(&a->loop, &a->http_watch);
	MHD_stop_daemon(a->http);
	a->http = NULL;
}
