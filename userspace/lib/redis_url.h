/* SPDX-License-Identifier: MIT */
/* redis://[user:password@]host[:port][/db], the Redis registry's address. */
#ifndef SL_REDIS_URL_H
#define SL_REDIS_URL_H

#include <stddef.h>

#define SL_REDIS_PORT_DEFAULT 6379
#define SL_REDIS_DB_MAX 65535

struct sl_redis_url {
	char host[256]; /* a name, an IPv4 address, or an IPv6 address without brackets */
	unsigned int port;
	unsigned int db;
	char user[128];	     /* "" = the default user (AUTH password) */
	char password[512];  /* "" = no AUTH */
};

/*
 * Parses s; user and password are percent-decoded. Returns 0, -ENOTSUP for
 * rediss:// (this build has no TLS: Debian 12's hiredis 0.14 has none), or
 * -EINVAL; err says what is wrong.
 */
int sl_redis_url_parse(const char *s, struct sl_redis_url *u, char *err, size_t errlen);
/* "redis://host:port/db" (user shown, password never): for logs and /readyz. */
const char *sl_redis_url_display(const struct sl_redis_url *u, char *buf, size_t size);

#endif
