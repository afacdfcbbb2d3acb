// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int sl_addr_parse(const char *s, struct sl_addr *addr, __u8 *family)
{
	memset(addr, 0, sizeof(*addr));
	if (inet_pton(AF_INET, s, &addr->words[0]) == 1) {
		*family = SL_FAMILY_IPV4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, addr->words) == 1) {
		*family = SL_FAMILY_IPV6;
		return 0;
	}
	return -EINVAL;
}

const char *sl_addr_format(const struct sl_addr *addr, __u8 family, char *buf, size_t size)
{
	int af = family == SL_FAMILY_IPV6 ? AF_INET6 : AF_INET;

	if (!inet_ntop(af, addr->words, buf, size))
		snprintf(buf, size, "?");
	return buf;
}

const char *sl_endpoint_format(const struct sl_addr *addr, __u8 family, __u16 port, char *buf,
			       size_t size)
{
	char a[SL_ADDR_STRLEN];

	sl_addr_format(addr, family, a, sizeof(a));
	if (family == SL_FAMILY_IPV6)
		snprintf(buf, size, "[%s]:%u", a, port);
	else
		snprintf(buf, size, "%s:%u", a, port);
	return buf;
}

int sl_endpoint_parse(const char *s, struct sl_addr *addr, __u8 *family, __u16 *port)
{
	char host[SL_ADDR_STRLEN + 2];
	const char *colon, *start = s;
	size_t hlen;
	unsigned long p;
	char *end;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		start = s + 1;
		hlen = close - start;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = colon - s;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, start, hlen);
	host[hlen] = '\0';
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p == 0 || p > 65535)
		return -EINVAL;
	if (sl_addr_parse(host, addr, family))
		return -EINVAL;
	/* "fd00::1:80" without brackets is ambiguous; insist on brackets for IPv6. */
	if (*family == SL_FAMILY_IPV6 && *s != '[')
		return -EINVAL;
	*port = p;
	return 0;
}
