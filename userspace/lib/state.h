/* SPDX-License-Identifier: MIT */
/* What the maps hold now, read back as services with their backends. */
#ifndef SL_STATE_H
#define SL_STATE_H

#include <stddef.h>
#include "maps.h"

struct sl_state_backend {
	__u32 id;
	struct sl_backend v;
};

struct sl_state_service {
	struct sl_svc_key key;
	struct sl_service v;
	struct sl_state_backend *backends; /* sorted by family, address, port */
	size_t backend_count;
	size_t backend_cap;
};

struct sl_state {
	struct sl_state_service *services; /* sorted by name */
	size_t count;
	/* Backends whose service is gone (an interrupted apply); the next apply removes them. */
	struct sl_state_backend *orphans;
	size_t orphan_count;
};

int sl_state_read(const struct sl_maps *m, struct sl_state *st);
void sl_state_free(struct sl_state *st);
/* The service named name, or NULL. */
struct sl_state_service *sl_state_find(const struct sl_state *st, const char *name);

/* The backend of s at "ADDR:PORT" (IPv6 "[ADDR]:PORT"), or NULL. */
const struct sl_state_backend *sl_state_find_backend(const struct sl_state_service *s,
						     const char *endpoint);
/* Closes one breaker by hand and recounts its service's ejections; *prev gets the old state. */
int sl_state_reset_breaker(const struct sl_maps *m, const struct sl_state_service *s,
			   const struct sl_state_backend *b, __u32 *prev);

/* Orders backends by family, address bytes, then port: the order tables are built in. */
int sl_backend_cmp(__u8 fa, const struct sl_addr *a, __u16 pa, __u8 fb, const struct sl_addr *b,
		   __u16 pb);

#endif
