// SPDX-License-Identifier: MIT
/*
 * Registry documents (shared/DESIGN.md, "Registry"): every field is checked and
 * the result is handed over only when the whole document is valid.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "addr.h"
#include "bigmem.h"
#include "registry.h"

#define U32_MAX 4294967295LL
#define NO_DEFAULT (-1LL)
#define RATE_MAX 10000000LL
#define AFFINITY_MAX_S 86400LL
#define HC_PATH_MAX ((long long)sizeof(((struct sl_health_check *)0)->path))
#define FILE_MAX (256UL << 20)

/* Duplicate backends are found by comparing addr, port and family as one byte string. */
_Static_assert(offsetof(struct sl_reg_backend, addr) == 0 &&
		       offsetof(struct sl_reg_backend, port) == sizeof(struct sl_addr) &&
		       offsetof(struct sl_reg_backend, family) == sizeof(struct sl_addr) + 2,
	       "registry: sl_reg_backend key layout");
#define BACKEND_KEY_LEN (offsetof(struct sl_reg_backend, family) + 1)

static const char *const alg_names[SL_ALG_COUNT] = {
	[SL_ALG_RANDOM] = "random",
	[SL_ALG_ROUND_ROBIN] = "round_robin",
	[SL_ALG_WEIGHTED] = "weighted",
	[SL_ALG_MAGLEV] = "maglev",
	[SL_ALG_LEAST_CONN] = "least_conn",
};

static const char *const top_fields[] = { "services", "global", NULL };
static const char *const global_fields[] = { "xdp", NULL };
static const char *const global_xdp_fields[] = { "source_packets_per_second", "source_burst",
						  NULL };
static const char *const service_fields[] = {
	"name", "vip", "port", "protocol", "lb", "rate_limit", "circuit_breaker", "health_check",
	"backends", NULL,
};
static const char *const lb_fields[] = {
	"algorithm", "affinity_timeout_s", "panic_threshold_percent", NULL,
};
static const char *const rate_limit_fields[] = {
	"connections_per_second", "burst", "per_client_connections_per_second",
	"per_client_burst", "syn_per_second", "syn_burst", NULL,
};
static const char *const breaker_fields[] = {
	"max_connections", "consecutive_failures", "base_ejection_ms", "max_ejection_ms",
	"half_open_max", "max_ejection_percent", NULL,
};
static const char *const hc_fields[] = {
	"type", "path", "interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold",
	NULL,
};
static const char *const backend_fields[] = { "address", "port", "weight", NULL };

struct parser {
	char *err;
	size_t errlen;
	/* 'service "NAME"' once the name is valid, "services[i]" before, "" at the top. */
	char where[SL_NAME_MAX + 16];
	size_t total_backends;
};

/*
 * Open-addressing set of entry indices over fixed-size byte keys at
 * base + index * stride, so duplicates are reported in document order
 * without comparing every pair.
 */
struct dupset {
	size_t *slots; /* index + 1; 0 is empty */
	size_t mask;
	const char *base;
	size_t stride;
	size_t keylen;
};

const char *sl_algorithm_name(__u8 alg)
{
	if (alg >= SL_ALG_COUNT || !alg_names[alg])
		return "?";
	return alg_names[alg];
}

int sl_algorithm_parse(const char *name)
{
	int alg;

	if (!name)
		return -1;
	for (alg = 0; alg < SL_ALG_COUNT; alg++)
		if (!strcmp(name, alg_names[alg]))
			return alg;
	return -1;
}

const char *sl_proto_name(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	default:
		return "?";
	}
}

/* After vsnprintf returned n into buf: end a truncated string with "...". */
static void mark_truncated(char *buf, size_t size, int n)
{
	if (n < 0)
		buf[0] = '\0';
	else if ((size_t)n >= size && size >= 4)
		memcpy(buf + size - 4, "...", 4);
}

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	n = vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	mark_truncated(err, errlen, n);
}

/* Writes "WHERE: PREFIX.FIELD: PROBLEM" and returns -EINVAL; prefix and field may be NULL. */
static int __attribute__((format(printf, 4, 5)))
fail(struct parser *p, const char *prefix, const char *field, const char *fmt, ...)
{
	char msg[SL_ERR_MAX], path[128] = "";
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mark_truncated(msg, sizeof(msg), n);
	if (field) {
		n = snprintf(path, sizeof(path), "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
			     field);
		mark_truncated(path, sizeof(path), n);
	}
	set_err(p->err, p->errlen, "%s%s%s%s%s", p->where, p->where[0] && path[0] ? ": " : "",
		path, p->where[0] || path[0] ? ": " : "", msg);
	return -EINVAL;
}

static int nomem(struct parser *p)
{
	set_err(p->err, p->errlen, "out of memory");
	return -ENOMEM;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a non-integer number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

static size_t fnv1a(const void *data, size_t len)
{
	const unsigned char *b = data;
	__u64 h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return (size_t)(h ^ (h >> 32));
}

static int dupset_init(struct dupset *s, const void *base, size_t stride, size_t keylen,
		       size_t n)
{
	size_t size = 16;

	while (size < 2 * n)
		size <<= 1;
	s->slots = calloc(size, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	s->mask = size - 1;
	s->base = base;
	s->stride = stride;
	s->keylen = keylen;
	return 0;
}

static void dupset_free(struct dupset *s)
{
	free(s->slots);
	s->slots = NULL;
}

static const void *dupset_key(const struct dupset *s, size_t idx)
{
	return s->base + idx * s->stride;
}

/* Adds entry idx. Returns true, with the earlier entry in *prev, if its key is already there. */
static bool dupset_add(struct dupset *s, size_t idx, size_t *prev)
{
	const void *key = dupset_key(s, idx);
	size_t i;

	for (i = fnv1a(key, s->keylen) & s->mask; s->slots[i]; i = (i + 1) & s->mask) {
		if (!memcmp(dupset_key(s, s->slots[i] - 1), key, s->keylen)) {
			*prev = s->slots[i] - 1;
			return true;
		}
	}
	s->slots[i] = idx + 1;
	return false;
}

static int check_fields(struct parser *p, json_t *obj, const char *prefix,
			const char *const *known)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach(obj, key, v) {
		for (i = 0; known[i]; i++)
			if (!strcmp(key, known[i]))
				break;
		if (!known[i])
			return fail(p, prefix, key, "unknown field");
	}
	return 0;
}

/* Looks up an optional sub-object; *sub is NULL when it is absent. */
static int get_object(struct parser *p, json_t *obj, const char *key, json_t **sub)
{
	json_t *v = json_object_get(obj, key);

	*sub = NULL;
	if (v && !json_is_object(v))
		return fail(p, NULL, key, "must be an object (got %s)", json_kind(v));
	*sub = v;
	return 0;
}

/* *val is NULL when the field is absent and not required. */
static int get_string(struct parser *p, json_t *obj, const char *prefix, const char *key,
		      bool required, const char **val)
{
	json_t *v = json_object_get(obj, key);

	*val = NULL;
	if (!v)
		return required ? fail(p, prefix, key, "required field is missing") : 0;
	if (!json_is_string(v))
		return fail(p, prefix, key, "must be a string (got %s)", json_kind(v));
	*val = json_string_value(v);
	return 0;
}

/* An integer in [min, max]; def when absent, or an error when def is NO_DEFAULT. */
static int get_int(struct parser *p, json_t *obj, const char *prefix, const char *key,
		   long long min, long long max, long long def, long long *val)
{
	json_t *v = json_object_get(obj, key);
	long long x;

	if (!v) {
		if (def == NO_DEFAULT)
			return fail(p, prefix, key, "required field is missing");
		*val = def;
		return 0;
	}
	if (!json_is_integer(v))
		return fail(p, prefix, key, "must be an integer (got %s)", json_kind(v));
	x = json_integer_value(v);
	if (x < min)
		return fail(p, prefix, key, "must be >= %lld (got %lld)", min, x);
	if (x > max)
		return fail(p, prefix, key, "must be <= %lld (got %lld)", max, x);
	*val = x;
	return 0;
}

static int get_u32(struct parser *p, json_t *obj, const char *prefix, const char *key,
		   long long min, long long max, long long def, __u32 *val)
{
	long long x;
	int err;

	err = get_int(p, obj, prefix, key, min, max, def, &x);
	if (!err)
		*val = x;
	return err;
}

static int parse_address(struct parser *p, json_t *obj, const char *prefix, const char *key,
			 struct sl_addr *addr, __u8 *family)
{
	const char *s;
	int err;

	err = get_string(p, obj, prefix, key, true, &s);
	if (err)
		return err;
	if (sl_addr_parse(s, addr, family))
		return fail(p, prefix, key, "invalid address \"%.64s\" (%s)", s,
			    "expected a literal IPv4 or IPv6 address");
	return 0;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static int parse_name(struct parser *p, json_t *jsvc, struct sl_reg_service *s)
{
	const char *name;
	size_t len, i;
	json_t *v;
	int err;

	err = get_string(p, jsvc, NULL, "name", true, &name);
	if (err)
		return err;
	v = json_object_get(jsvc, "name");
	len = json_string_length(v);
	if (len == 0 || len >= SL_NAME_MAX)
		return fail(p, NULL, "name", "must be 1 to %d characters long (got %zu)",
			    SL_NAME_MAX - 1, len);
	for (i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (is_name_char(c))
			continue;
		if (c > 0x20 && c < 0x7f)
			return fail(p, NULL, "name",
				    "invalid character '%c' (allowed: A-Z a-z 0-9 . _ -)", c);
		return fail(p, NULL, "name", "invalid byte 0x%02x (allowed: A-Z a-z 0-9 . _ -)",
			    c);
	}
	memcpy(s->settings.name, name, len);
	return 0;
}

static int parse_key(struct parser *p, json_t *jsvc, struct sl_reg_service *s)
{
	struct sl_addr vip;
	const char *proto;
	long long port;
	__u8 family;
	int err;

	memset(&vip, 0, sizeof(vip));
	err = parse_address(p, jsvc, NULL, "vip", &vip, &family);
	if (err)
		return err;
	err = get_int(p, jsvc, NULL, "port", 1, 65535, NO_DEFAULT, &port);
	if (err)
		return err;
	err = get_string(p, jsvc, NULL, "protocol", false, &proto);
	if (err)
		return err;

	memset(&s->key, 0, sizeof(s->key));
	s->key.vip = vip;
	s->key.family = family;
	s->key.port = htons(port);
	if (!proto || !strcmp(proto, "tcp"))
		s->key.proto = IPPROTO_TCP;
	else if (!strcmp(proto, "udp"))
		s->key.proto = IPPROTO_UDP;
	else
		return fail(p, NULL, "protocol", "unknown protocol \"%.32s\" (tcp, udp)", proto);
	return 0;
}

static void list_algorithms(char *buf, size_t size)
{
	size_t off = 0;
	int alg, n;

	buf[0] = '\0';
	for (alg = 0; alg < SL_ALG_COUNT; alg++) {
		n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", alg_names[alg]);
		if (n < 0 || (size_t)n >= size - off)
			return;
		off += n;
	}
}

static int parse_lb(struct parser *p, json_t *jsvc, struct sl_service *set)
{
	const char *name;
	char algs[128];
	long long x;
	json_t *lb;
	int err, alg = SL_ALG_RANDOM;

	err = get_object(p, jsvc, "lb", &lb);
	if (!err && lb)
		err = check_fields(p, lb, "lb", lb_fields);
	if (!err)
		err = get_string(p, lb, "lb", "algorithm", false, &name);
	if (err)
		return err;
	if (name) {
		alg = sl_algorithm_parse(name);
		if (alg < 0) {
			list_algorithms(algs, sizeof(algs));
			return fail(p, "lb", "algorithm", "unknown algorithm \"%.32s\" (%s)", name,
				    algs);
		}
	}
	set->algorithm = alg;

	err = get_u32(p, lb, "lb", "affinity_timeout_s", 0, AFFINITY_MAX_S, 0,
		      &set->affinity_timeout_s);
	if (!err)
		err = get_int(p, lb, "lb", "panic_threshold_percent", 0, 100, 50, &x);
	if (err)
		return err;
	set->panic_threshold_pct = x;
	return 0;
}

static int parse_rate_limit(struct parser *p, json_t *jsvc, struct sl_service *set)
{
	const char *pre = "rate_limit";
	json_t *rl;
	int err;

	err = get_object(p, jsvc, pre, &rl);
	if (!err && rl)
		err = check_fields(p, rl, pre, rate_limit_fields);
	if (!err)
		err = get_u32(p, rl, pre, "connections_per_second", 0, RATE_MAX, 0,
			      &set->connections_per_second);
	if (!err)
		err = get_u32(p, rl, pre, "burst", 0, RATE_MAX, 0, &set->burst);
	if (!err)
		err = get_u32(p, rl, pre, "per_client_connections_per_second", 0, RATE_MAX, 0,
			      &set->per_client_connections_per_second);
	if (!err)
		err = get_u32(p, rl, pre, "per_client_burst", 0, RATE_MAX, 0,
			      &set->per_client_burst);
	if (!err)
		err = get_u32(p, rl, pre, "syn_per_second", 0, RATE_MAX, 0, &set->syn_per_second);
	if (!err)
		err = get_u32(p, rl, pre, "syn_burst", 0, RATE_MAX, 0, &set->syn_burst);
	if (err)
		return err;

	/* A bucket of depth 0 would refuse everything; a limited rate without a burst means
	 * one second's worth. */
	if (set->connections_per_second && !set->burst)
		set->burst = set->connections_per_second;
	if (set->per_client_connections_per_second && !set->per_client_burst)
		set->per_client_burst = set->per_client_connections_per_second;
	if (set->syn_per_second && !set->syn_burst)
		set->syn_burst = set->syn_per_second;
	return 0;
}

/* "global": {"xdp": {"source_packets_per_second", "source_burst"}}, all optional. */
static int parse_global(struct parser *p, json_t *root, struct sl_registry *reg)
{
	const char *pre = "global.xdp";
	json_t *global, *xdp = NULL;
	int err;

	err = get_object(p, root, "global", &global);
	if (!err && global)
		err = check_fields(p, global, "global", global_fields);
	if (!err && global)
		err = get_object(p, global, "xdp", &xdp);
	if (!err && xdp)
		err = check_fields(p, xdp, pre, global_xdp_fields);
	if (!err)
		err = get_u32(p, xdp, pre, "source_packets_per_second", 0, RATE_MAX, 0,
			      &reg->xdp.source_packets_per_second);
	if (!err)
		err = get_u32(p, xdp, pre, "source_burst", 0, RATE_MAX, 0, &reg->xdp.source_burst);
	if (!err && reg->xdp.source_packets_per_second && !reg->xdp.source_burst)
		reg->xdp.source_burst = reg->xdp.source_packets_per_second;
	return err;
}

static int parse_breaker(struct parser *p, json_t *jsvc, struct sl_service *set)
{
	const char *pre = "circuit_breaker";
	long long base, max, pct;
	json_t *cb;
	int err;

	err = get_object(p, jsvc, pre, &cb);
	if (!err && cb)
		err = check_fields(p, cb, pre, breaker_fields);
	if (!err)
		err = get_u32(p, cb, pre, "max_connections", 0, U32_MAX, 0, &set->max_connections);
	if (!err)
		err = get_u32(p, cb, pre, "consecutive_failures", 1, U32_MAX, 5,
			      &set->consecutive_failures);
	if (!err)
		err = get_int(p, cb, pre, "base_ejection_ms", 1, U32_MAX, 30000, &base);
	/* The default maximum never undercuts an explicit base. */
	if (!err)
		err = get_int(p, cb, pre, "max_ejection_ms", 1, U32_MAX,
			      base > 300000 ? base : 300000, &max);
	if (!err && max < base)
		err = fail(p, pre, "max_ejection_ms", "must be >= base_ejection_ms (%lld < %lld)",
			   max, base);
	if (!err)
		err = get_u32(p, cb, pre, "half_open_max", 1, U32_MAX, 1, &set->half_open_max);
	if (!err)
		err = get_int(p, cb, pre, "max_ejection_percent", 0, 100, 10, &pct);
	if (err)
		return err;
	set->base_ejection_ms = base;
	set->max_ejection_ms = max;
	set->max_ejection_pct = pct;
	return 0;
}

static int parse_hc_path(struct parser *p, json_t *hc, struct sl_health_check *out)
{
	const char *path;
	size_t len, i;
	int err;

	err = get_string(p, hc, "health_check", "path", false, &path);
	if (err)
		return err;
	if (out->type != SL_HC_HTTP) {
		if (path)
			return fail(p, "health_check", "path", "only valid with type \"http\"");
		return 0;
	}
	if (!path)
		path = "/";
	len = strlen(path);
	if (path[0] != '/')
		return fail(p, "health_check", "path", "must start with '/'");
	if (len >= (size_t)HC_PATH_MAX)
		return fail(p, "health_check", "path",
			    "must be shorter than %lld characters (got %zu)", HC_PATH_MAX, len);
	/* The path goes into an HTTP request line as it is. */
	for (i = 0; i < len; i++) {
		unsigned char c = path[i];

		if (c <= 0x20 || c == 0x7f)
			return fail(p, "health_check", "path", "invalid byte 0x%02x (%s)", c,
				    "spaces and control characters are not allowed");
	}
	memcpy(out->path, path, len);
	return 0;
}

static int parse_health_check(struct parser *p, json_t *jsvc, struct sl_health_check *out)
{
	const char *pre = "health_check";
	long long interval, timeout;
	const char *type;
	json_t *hc;
	int err;

	memset(out, 0, sizeof(*out));
	err = get_object(p, jsvc, pre, &hc);
	if (err || !hc) {
		out->type = SL_HC_NONE;
		return err;
	}
	err = check_fields(p, hc, pre, hc_fields);
	if (!err)
		err = get_string(p, hc, pre, "type", true, &type);
	if (err)
		return err;
	if (!strcmp(type, "tcp"))
		out->type = SL_HC_TCP;
	else if (!strcmp(type, "http"))
		out->type = SL_HC_HTTP;
	else
		return fail(p, pre, "type", "unknown type \"%.32s\" (tcp, http)", type);

	err = parse_hc_path(p, hc, out);
	if (!err)
		err = get_int(p, hc, pre, "interval_ms", 10, U32_MAX, 1000, &interval);
	/* The default timeout never exceeds an explicit, shorter interval. */
	if (!err)
		err = get_int(p, hc, pre, "timeout_ms", 1, U32_MAX, interval < 500 ? interval : 500,
			      &timeout);
	if (!err && timeout > interval)
		err = fail(p, pre, "timeout_ms", "must be <= interval_ms (%lld > %lld)", timeout,
			   interval);
	if (!err)
		err = get_u32(p, hc, pre, "healthy_threshold", 1, U32_MAX, 2,
			      &out->healthy_threshold);
	if (!err)
		err = get_u32(p, hc, pre, "unhealthy_threshold", 1, U32_MAX, 3,
			      &out->unhealthy_threshold);
	if (err)
		return err;
	out->interval_ms = interval;
	out->timeout_ms = timeout;
	return 0;
}

static const char *family_name(__u8 family)
{
	return family == SL_FAMILY_IPV6 ? "IPv6" : "IPv4";
}

static int parse_backend(struct parser *p, json_t *jb, size_t idx, struct sl_reg_service *s,
			 struct dupset *seen)
{
	struct sl_reg_backend *b = &s->backends[idx];
	char pre[32], ep[SL_ENDPOINT_STRLEN];
	long long port, weight;
	size_t prev;
	int err;

	snprintf(pre, sizeof(pre), "backends[%zu]", idx);
	if (!json_is_object(jb))
		return fail(p, NULL, pre, "must be an object (got %s)", json_kind(jb));
	err = check_fields(p, jb, pre, backend_fields);
	if (!err)
		err = parse_address(p, jb, pre, "address", &b->addr, &b->family);
	if (err)
		return err;
	if (b->family != s->key.family)
		return fail(p, pre, "address", "%s address for an %s VIP", family_name(b->family),
			    family_name(s->key.family));
	err = get_int(p, jb, pre, "port", 1, 65535, NO_DEFAULT, &port);
	if (!err)
		err = get_int(p, jb, pre, "weight", 1, SL_WEIGHT_MAX, 1, &weight);
	if (err)
		return err;
	b->port = port;
	b->weight = weight;

	if (dupset_add(seen, idx, &prev))
		return fail(p, NULL, pre, "duplicate backend %s (also backends[%zu])",
			    sl_endpoint_format(&b->addr, b->family, b->port, ep, sizeof(ep)), prev);
	return 0;
}

static int parse_backends(struct parser *p, json_t *jsvc, struct sl_reg_service *s)
{
	struct dupset seen = {};
	json_t *arr;
	size_t n, i;
	int err = 0;

	arr = json_object_get(jsvc, "backends");
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return fail(p, NULL, "backends", "must be an array (got %s)", json_kind(arr));
	n = json_array_size(arr);
	if (n > SL_MAX_BACKENDS_PER_SVC)
		return fail(p, NULL, "backends", "too many backends (%zu > %d)", n,
			    SL_MAX_BACKENDS_PER_SVC);
	if (n > SL_BACKENDS_LIMIT - p->total_backends)
		return fail(p, NULL, "backends", "too many backends in total (%zu > %d)",
			    p->total_backends + n, SL_BACKENDS_LIMIT);
	p->total_backends += n;
	if (!n)
		return 0;

	s->backends = calloc(n, sizeof(*s->backends));
	if (!s->backends)
		return nomem(p);
	s->backend_count = n;
	if (dupset_init(&seen, s->backends, sizeof(*s->backends), BACKEND_KEY_LEN, n))
		return nomem(p);
	for (i = 0; i < n; i++) {
		err = parse_backend(p, json_array_get(arr, i), i, s, &seen);
		if (err)
			goto out;
	}
out:
	dupset_free(&seen);
	return err;
}

static int parse_service(struct parser *p, json_t *jsvc, size_t idx, struct sl_registry *reg,
			 struct dupset *names, struct dupset *vips)
{
	struct sl_reg_service *s = &reg->services[idx];
	char ep[SL_ENDPOINT_STRLEN];
	size_t prev;
	int err;

	snprintf(p->where, sizeof(p->where), "services[%zu]", idx);
	if (!json_is_object(jsvc))
		return fail(p, NULL, NULL, "must be an object (got %s)", json_kind(jsvc));
	err = parse_name(p, jsvc, s);
	if (err)
		return err;
	snprintf(p->where, sizeof(p->where), "service \"%s\"", s->settings.name);
	if (dupset_add(names, idx, &prev))
		return fail(p, NULL, "name",
			    "duplicate service name (services[%zu] and services[%zu])", prev, idx);

	err = check_fields(p, jsvc, NULL, service_fields);
	if (!err)
		err = parse_key(p, jsvc, s);
	if (err)
		return err;
	if (dupset_add(vips, idx, &prev)) {
		sl_endpoint_format(&s->key.vip, s->key.family, ntohs(s->key.port), ep, sizeof(ep));
		return fail(p, NULL, "vip", "duplicate VIP %s/%s (also service \"%s\")", ep,
			    sl_proto_name(s->key.proto), reg->services[prev].settings.name);
	}

	err = parse_lb(p, jsvc, &s->settings);
	if (!err)
		err = parse_rate_limit(p, jsvc, &s->settings);
	if (!err)
		err = parse_breaker(p, jsvc, &s->settings);
	if (!err)
		err = parse_health_check(p, jsvc, &s->health_check);
	if (!err)
		err = parse_backends(p, jsvc, s);
	return err;
}

static int parse_document(struct parser *p, json_t *root, struct sl_registry *reg)
{
	struct dupset names = {}, vips = {};
	json_t *svcs;
	size_t n, i;
	int err;

	if (!json_is_object(root))
		return fail(p, NULL, "document", "must be a JSON object (got %s)", json_kind(root));
	err = check_fields(p, root, NULL, top_fields);
	if (!err)
		err = parse_global(p, root, reg);
	if (err)
		return err;
	svcs = json_object_get(root, "services");
	if (!svcs)
		return fail(p, NULL, "services", "required field is missing");
	if (!json_is_array(svcs))
		return fail(p, NULL, "services", "must be an array (got %s)", json_kind(svcs));
	n = json_array_size(svcs);
	if (n > SL_SERVICES_LIMIT)
		return fail(p, NULL, "services", "too many services (%zu > %d)", n,
			    SL_SERVICES_LIMIT);
	if (!n)
		return 0;

	reg->services = calloc(n, sizeof(*reg->services));
	if (!reg->services)
		return nomem(p);
	reg->count = n;
	if (dupset_init(&names, reg->services[0].settings.name, sizeof(*reg->services),
			sizeof(reg->services[0].settings.name), n) ||
	    dupset_init(&vips, &reg->services[0].key, sizeof(*reg->services),
			sizeof(reg->services[0].key), n)) {
		err = nomem(p);
		goto out;
	}
	for (i = 0; i < n; i++) {
		err = parse_service(p, json_array_get(svcs, i), i, reg, &names, &vips);
		if (err)
			goto out;
	}
out:
	dupset_free(&vips);
	dupset_free(&names);
	return err;
}

/*
 * jansson mallocs every node of the tree: a 100,000-backend document is over
 * a million small allocations, most of its parse time. During one parse its
 * nodes come from an arena of large chunks instead, all released together
 * once the tree (which never leaves sl_registry_parse) is gone.
 */
#define ARENA_CHUNK_MIN (64u << 10)
#define ARENA_CHUNK_MAX (4u << 20)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used;
	size_t size;
	char data[];
};

static struct arena_chunk *arena_head;
static size_t arena_chunk_size; /* sized to the document: small ones stay cheap */

static void *arena_malloc(size_t n)
{
	struct arena_chunk *c = arena_head;

	n = (n + 15) & ~(size_t)15;
	if (!c || c->size - c->used < n) {
		size_t size = n > arena_chunk_size ? n : arena_chunk_size;

		c = sl_big_realloc(NULL, 0, sizeof(*c) + size);
		if (!c)
			return NULL;
		c->next = arena_head;
		c->used = 0;
		c->size = size;
		arena_head = c;
	}
	c->used += n;
	return c->data + c->used - n;
}

static void arena_free(void *p)
{
	(void)p; /* everything goes at once, in arena_release */
}

static void arena_release(void)
{
	while (arena_head) {
		struct arena_chunk *next = arena_head->next;

		sl_big_free(arena_head, sizeof(*arena_head) + arena_head->size);
		arena_head = next;
	}
}

/* The tree in an arena: the caller must json_decref it before parse_end. */
static json_t *parse_begin(const char *text, size_t len, json_error_t *jerr,
			   json_malloc_t *saved_malloc, json_free_t *saved_free)
{
	/* A parsed tree takes roughly 10-20 times the text's size. */
	arena_chunk_size = len < ARENA_CHUNK_MAX / 16 ? len * 16 : ARENA_CHUNK_MAX;
	if (arena_chunk_size < ARENA_CHUNK_MIN)
		arena_chunk_size = ARENA_CHUNK_MIN;
	json_get_alloc_funcs(saved_malloc, saved_free);
	json_set_alloc_funcs(arena_malloc, arena_free);
	return json_loadb(text, len, JSON_REJECT_DUPLICATES, jerr);
}

static void parse_end(json_malloc_t saved_malloc, json_free_t saved_free)
{
	json_set_alloc_funcs(saved_malloc, saved_free);
	arena_release();
}

int sl_registry_parse(const char *text, size_t len, struct sl_registry *out, char *err,
		      size_t errlen)
{
	struct parser p = { .err = err, .errlen = errlen };
	struct sl_registry reg = {};
	json_malloc_t saved_malloc;
	json_free_t saved_free;
	json_error_t jerr;
	json_t *root;
	int ret;

	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		set_err(err, errlen, "no document");
		return -EINVAL;
	}
	root = parse_begin(text, len, &jerr, &saved_malloc, &saved_free);
	if (!root) {
		parse_end(saved_malloc, saved_free);
		/* jansson leaves the error text empty when an allocation fails mid-parse. */
		if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
			return nomem(&p);
		set_err(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line,
			jerr.column, jerr.text);
		return -EINVAL;
	}
	ret = parse_document(&p, root, &reg);
	json_decref(root);
	parse_end(saved_malloc, saved_free);
	if (!ret && EVP_Digest(text, len, reg.sha256, NULL, EVP_sha256(), NULL) != 1) {
		set_err(err, errlen, "cannot compute the SHA-256 of the document");
		ret = -ENOMEM;
	}
	if (ret) {
		sl_registry_free(&reg);
		return ret;
	}
	*out = reg;
	return 0;
}

/* Reads the whole file, which need not be regular (a pipe, /dev/stdin). */
/* *capp: the buffer's size, for sl_big_free. */
static int read_file(const char *path, char **bufp, size_t *lenp, size_t *capp)
{
	size_t cap = 0, len = 0;
	char *buf = NULL, *nbuf;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (len == cap) {
			if (cap >= FILE_MAX) {
				err = -EFBIG;
				goto out;
			}
			size_t ncap = cap ? cap * 2 : 65536;

			nbuf = sl_big_realloc(buf, cap, ncap);
			if (!nbuf) {
				err = -ENOMEM;
				goto out;
			}
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out;
		}
		if (!n)
			break;
		len += n;
	}
	*bufp = buf;
	*lenp = len;
	*capp = cap;
	buf = NULL;
out:
	sl_big_free(buf, cap);
	close(fd);
	return err;
}

int sl_registry_load_file(const char *path, struct sl_registry *out, char *err, size_t errlen)
{
	char msg[SL_ERR_MAX];
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = read_file(path, &buf, &len, &cap);
	if (ret) {
		set_err(err, errlen, "cannot read %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = sl_registry_parse(buf, len, out, msg, sizeof(msg));
	if (ret)
		set_err(err, errlen, "%s: %s", path, msg);
	sl_big_free(buf, cap);
	return ret;
}

void sl_registry_free(struct sl_registry *reg)
{
	size_t i;

	if (!reg)
		return;
	for (i = 0; reg->services && i < reg->count; i++)
		free(reg->services[i].backends);
	free(reg->services);
	memset(reg, 0, sizeof(*reg));
}
