/* SPDX-License-Identifier: MIT */
/* GET /metrics: Prometheus text exposition, read from the pinned maps. */
#ifndef SLUICED_METRICS_H
#define SLUICED_METRICS_H

#include <stddef.h>
#include <stdio.h>

#include "lib/maps.h"
#include <sluice/xdp.h>
#include "status.h"

/* Writes every sluice_* metric to out. Returns 0 or -errno. */
int metrics_write(FILE *out, const struct sl_maps *maps, const struct agent_status *st);

/*
 * The formatting layer under metrics_write: plain structs in, text out, no
 * maps, so the unit tests can check the exposition without a kernel.
 */
struct metrics_backend {
	struct sl_addr addr;
	__u16 port; /* host order */
	__u8 family;
	__u8 health; /* enum sl_backend_health */
	__u32 breaker_state; /* enum sl_breaker_state */
	__u32 consecutive_failures;
	__u32 live;
	struct sl_be_stats stats;
	struct sl_xdp_be_stats xdp; /* what sl_xdp forwarded to it */
};

struct metrics_service {
	const char *name;
	__u32 backend_count; /* configured */
	__u32 unhealthy;
	__u32 ejected;
	struct sl_svc_stats stats;
	struct sl_xdp_stats xdp; /* what sl_xdp saw for the VIP */
	const struct metrics_backend *backends; /* sorted by family, address, port */
	size_t nbackends;
};

struct metrics_snapshot {
	const struct metrics_service *services; /* sorted by name */
	size_t count;
	const struct sl_generation *generation; /* NULL: not readable */
};

/*
 * Formats the snapshot and the agent's status (NULL: its families are left
 * out). A service or backend equal to the one before it is skipped, so the
 * output never repeats a series. Returns 0 or -errno.
 */
int metrics_format(FILE *out, const struct metrics_snapshot *snap, const struct agent_status *st);

#endif
