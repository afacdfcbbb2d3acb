// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

static int __attribute__((format(printf, 4, 5)))
bad(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes src[0..len) into dst; -EINVAL on a bad escape, a NUL, or no room. */
static int decode(const char *src, size_t len, char *dst, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)src[i];

		if (c == '%') {
			int hi = i + 2 < len ? hexval(src[i + 1]) : -1;
			int lo = i + 2 < len ? hexval(src[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = hi * 16 + lo;
			i += 2;
		}
		if (!c || o + 1 >= size)
			return -EINVAL;
		dst[o++] = c;
	}
	dst[o] = '\0';
	return 0;
}

static int parse_number(const char *s, size_t len, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!len || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_userinfo(const char *s, size_t len, struct sl_redis_url *u, char *err,
			  size_t errlen)
{
	const char *colon = memchr(s, ':', len);

	if (!colon)
		return bad(err, errlen, -EINVAL,
			   "\"%.*s@\": a user needs a password (user:password@, or :password@)",
			   (int)len, s);
	if (decode(s, colon - s, u->user, sizeof(u->user)))
		return bad(err, errlen, -EINVAL, "bad user name (a %% escape, or too long)");
	if (decode(colon + 1, len - (colon + 1 - s), u->password, sizeof(u->password)))
		return bad(err, errlen, -EINVAL, "bad password (a %% escape, or too long)");
	if (!u->password[0])
		return bad(err, errlen, -EINVAL, "empty password after ':'");
	return 0;
}

/* host, [v6] or host:port, [v6]:port in s[0..len). */
static int parse_hostport(const char *s, size_t len, struct sl_redis_url *u, char *err,
			  size_t errlen)
{
	const char *host = s, *port = NULL;
	size_t hlen = len;
	unsigned long p;

	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close)
			return bad(err, errlen, -EINVAL, "missing ']' after the IPv6 address");
		host = s + 1;
		hlen = close - host;
		if (close + 1 < s + len) {
			if (close[1] != ':')
				return bad(err, errlen, -EINVAL, "expected ':PORT' after ']'");
			port = close + 2;
		}
	} else {
		const char *colon = memchr(s, ':', len);

		if (colon) {
			if (memchr(colon + 1, ':', len - (colon + 1 - s)))
				return bad(err, errlen, -EINVAL,
					   "an IPv6 address must be in brackets: redis://[ADDR]:PORT");
			hlen = colon - s;
			port = colon + 1;
		}
	}
	if (!hlen)
		return bad(err, errlen, -EINVAL, "no host");
	if (hlen >= sizeof(u->host))
		return bad(err, errlen, -EINVAL, "host name too long");
	for (size_t i = 0; i < hlen; i++)
		if ((unsigned char)host[i] <= ' ' || host[i] == '%' || host[i] == '/' ||
		    host[i] == '@' || host[i] == '?' || host[i] == '#')
			return bad(err, errlen, -EINVAL, "invalid character in host \"%.*s\"",
				   (int)hlen, host);
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	if (port) {
		size_t plen = s + len - port;

		if (parse_number(port, plen, 65535, &p) || !p)
			return bad(err, errlen, -EINVAL, "port \"%.*s\": expected 1..65535",
				   (int)plen, port);
		u->port = p;
	}
	return 0;
}

int sl_redis_url_parse(const char *s, struct sl_redis_url *u, char *err, size_t errlen)
{
	const char *rest, *end, *slash, *at;
	unsigned long db;
	int ret;

	memset(u, 0, sizeof(*u));
	u->port = SL_REDIS_PORT_DEFAULT;
	if (!strncmp(s, "rediss://", 9))
		return bad(err, errlen, -ENOTSUP,
			   "rediss:// (TLS) is not supported: this build's hiredis (Debian 12, "
			   "0.14) has no TLS; use redis:// on a trusted network or through a TLS "
			   "tunnel");
	if (strncmp(s, "redis://", 8))
		return bad(err, errlen, -EINVAL, "expected redis://[user:password@]host[:port][/db]");
	rest = s + 8;
	end = rest + strlen(rest);
	if (strpbrk(rest, "?#"))
		return bad(err, errlen, -EINVAL, "query strings and fragments are not supported");
	slash = memchr(rest, '/', end - rest);
	/* The password may hold '@' percent-encoded only; the last '@' ends the user part. */
	at = NULL;
	for (const char *p = rest; p < (slash ? slash : end); p++)
		if (*p == '@')
			at = p;
	if (at) {
		ret = parse_userinfo(rest, at - rest, u, err, errlen);
		if (ret)
			return ret;
		rest = at + 1;
	}
	ret = parse_hostport(rest, (slash ? slash : end) - rest, u, err, errlen);
	if (ret)
		return ret;
	if (slash && slash + 1 < end) {
		if (parse_number(slash + 1, end - slash - 1, SL_REDIS_DB_MAX, &db))
			return bad(err, errlen, -EINVAL, "database \"%s\": expected 0..%d", slash + 1,
				   SL_REDIS_DB_MAX);
		u->db = db;
	}
	return 0;
}

const char *sl_redis_url_display(const struct sl_redis_url *u, char *buf, size_t size)
{
	int v6 = strchr(u->host, ':') != NULL;

	snprintf(buf, size, "redis://%s%s%s%s%s:%u/%u", u->user, u->user[0] ? "@" : "",
		 v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
	return buf;
}
