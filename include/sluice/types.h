/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Fixed-width kernel types for the ABI headers, from the right place on each side. */
#ifndef SLUICE_TYPES_H
#define SLUICE_TYPES_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#define SL_FAMILY_IPV4 4
#define SL_FAMILY_IPV6 6

/*
 * An IPv4 or IPv6 address in network byte order. IPv4 uses word 0 and leaves
 * words 1..3 zero, so one key layout serves both families and hashes the same
 * whichever side wrote it.
 */
struct sl_addr {
	__be32 words[4];
};
_Static_assert(sizeof(struct sl_addr) == 16, "ABI: sl_addr");

#endif
