// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "redis_keys.h"

int sl_redis_prefix_check(const char *prefix, char *err, size_t errlen)
{
	size_t len = strlen(prefix);

	if (len > SL_REDIS_PREFIX_MAX) {
		snprintf(err, errlen, "key prefix \"%.16s...\" is longer than %d characters", prefix,
			 SL_REDIS_PREFIX_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = prefix[i];

		/* Keys travel in change messages split at spaces. */
		if (c <= ' ' || c >= 0x7f) {
			snprintf(err, errlen, "key prefix \"%s\": byte 0x%02x is not allowed "
				 "(printable ASCII without spaces)", prefix, c);
			return -EINVAL;
		}
	}
	return 0;
}

int sl_redis_name_valid(const char *name, size_t len)
{
	if (!len || len >= SL_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void sl_rkey_services(const char *prefix, char *buf, size_t size)
{
	snprintf(buf, size, "%sservices", prefix);
}

void sl_rkey_instances(const char *prefix, const char *svc, char *buf, size_t size)
{
	snprintf(buf, size, "%sinstances:%s", prefix, svc);
}

void sl_rkey_instance(const char *prefix, const char *svc, const char *id, char *buf,
		      size_t size)
{
	snprintf(buf, size, "%sinstance:%s:%s", prefix, svc, id);
}

void sl_rkey_channel(const char *prefix, char *buf, size_t size)
{
	snprintf(buf, size, "%schanges", prefix);
}

int sl_rinst_id(const char *endpoint, char *id, size_t size)
{
	struct sl_addr addr;
	__u8 family;
	__u16 port;

	if (sl_endpoint_parse(endpoint, &addr, &family, &port))
		return -EINVAL;
	sl_endpoint_format(&addr, family, port, id, size);
	return 0;
}

/* svc: s[0..n) must be a valid name; id: the rest, a canonical instance id. */
static int split_name_id(const char *s, size_t n, const char *rest, size_t rlen,
			 char svc[SL_NAME_MAX], char id[SL_ENDPOINT_STRLEN])
{
	char ep[SL_ENDPOINT_STRLEN], canon[SL_ENDPOINT_STRLEN];

	if (!sl_redis_name_valid(s, n))
		return -EINVAL;
	memcpy(svc, s, n);
	svc[n] = '\0';
	id[0] = '\0';
	if (!rest)
		return 0;
	if (!rlen || rlen >= sizeof(ep))
		return -EINVAL;
	memcpy(ep, rest, rlen);
	ep[rlen] = '\0';
	if (sl_rinst_id(ep, canon, sizeof(canon)) || strcmp(ep, canon))
		return -EINVAL;
	memcpy(id, canon, strlen(canon) + 1);
	return 0;
}

int sl_rkey_parse_instance(const char *prefix, const char *key, size_t len,
			   char svc[SL_NAME_MAX], char id[SL_ENDPOINT_STRLEN])
{
	size_t plen = strlen(prefix), tlen = strlen("instance:");
	const char *name, *colon;

	if (len < plen + tlen || memcmp(key, prefix, plen) || memcmp(key + plen, "instance:", tlen))
		return -EINVAL;
	name = key + plen + tlen;
	colon = memchr(name, ':', key + len - name);
	if (!colon)
		return -EINVAL;
	return split_name_id(name, colon - name, colon + 1, key + len - colon - 1, svc, id);
}

int sl_rmsg_parse(const char *msg, size_t len, char svc[SL_NAME_MAX], char id[SL_ENDPOINT_STRLEN])
{
	const char *space = memchr(msg, ' ', len);

	if (!space)
		return split_name_id(msg, len, NULL, 0, svc, id);
	return split_name_id(msg, space - msg, space + 1, msg + len - space - 1, svc, id);
}
