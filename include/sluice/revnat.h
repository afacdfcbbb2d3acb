/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reverse translation: which VIP a socket's backend peer stands for. */
#ifndef SLUICE_REVNAT_H
#define SLUICE_REVNAT_H

#include "types.h"

#define SL_REVNAT_MAX 262144

/*
 * Key of sl_revnat. The socket cookie makes an entry private to one socket,
 * so two clients of one backend through different VIPs never see each
 * other's VIP. Zero the struct before filling it.
 */
struct sl_revnat_key {
	__u64 cookie;
	struct sl_addr backend;
	__be16 port;
	__u8 family;
	__u8 pad[5];
};
_Static_assert(sizeof(struct sl_revnat_key) == 32, "ABI: sl_revnat_key");

struct sl_revnat {
	struct sl_addr vip;
	__be16 port;
	__u8 family;
	__u8 pad;
};
_Static_assert(sizeof(struct sl_revnat) == 20, "ABI: sl_revnat");

#endif
