/* SPDX-License-Identifier: MIT */
#ifndef SL_ADDR_H
#define SL_ADDR_H

#include <stddef.h>
#include <sluice/types.h>

#define SL_ADDR_STRLEN 46       /* INET6_ADDRSTRLEN */
#define SL_ENDPOINT_STRLEN 56   /* "[addr]:port" */

/* Parses a literal IPv4 or IPv6 address. Returns 0, or -EINVAL. */
int sl_addr_parse(const char *s, struct sl_addr *addr, __u8 *family);
/* Formats into buf (SL_ADDR_STRLEN); returns buf. */
const char *sl_addr_format(const struct sl_addr *addr, __u8 family, char *buf, size_t size);
/* "10.0.0.1:80" or "[fd00::1]:80" from a port in host order. */
const char *sl_endpoint_format(const struct sl_addr *addr, __u8 family, __u16 port, char *buf,
			       size_t size);
/* Parses "ADDR:PORT" or "[ADDR6]:PORT". Returns 0 or -EINVAL. */
int sl_endpoint_parse(const char *s, struct sl_addr *addr, __u8 *family, __u16 *port);

#endif
