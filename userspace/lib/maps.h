/* SPDX-License-Identifier: MIT */
/* The pinned maps, opened by path, for the reconciler and the inspection commands. */
#ifndef SL_MAPS_H
#define SL_MAPS_H

#include <stddef.h>
#include <sluice/service.h>
#include <sluice/backend.h>
#include <sluice/stats.h>
#include <sluice/generation.h>
#include <sluice/breaker.h>
#include <sluice/ratelimit.h>
#include <sluice/xdp.h>
#include <sluice/flow.h>

#define SL_PIN_ROOT_DEFAULT "/sys/fs/bpf/sluice"

struct sl_maps {
	int services;
	int backends;
	int be_health;
	int svc_slots;
	int rr;
	int revnat;
	int svc_stats;
	int be_stats;
	int generation;
	int breakers;
	int live;
	int svc_state;
	int sock;
	int affinity;
	int rl_svc;
	int rl_client;
	int xdp_cfg;
	int xdp_src;
	int xdp_syn;
	int xdp_stats;
	int xdp_backend;
	int xdp_flows;
	int xdp_flow_idx;
	int xdp_fp_seed;
	int vip_filter;
	int xdp_vips;
};

/* Every pinned map by name, in the order of struct sl_maps' fields. */
extern const char *const sl_map_names[];
extern const size_t sl_map_count;

/* "PIN_ROOT/NAME" into buf; -ENAMETOOLONG if it does not fit. */
int sl_pin_path(char *buf, size_t size, const char *pin_root, const char *name);
/* An fd of the object pinned at PIN_ROOT/name, or -errno (-ENOENT: nothing pinned there). */
int sl_pin_open(const char *pin_root, const char *name);

/* Opens every pinned map; on failure logs which one and why, returns -errno. */
int sl_maps_open(const char *pin_root, struct sl_maps *m);
void sl_maps_close(struct sl_maps *m);

/* Per-CPU counters summed over all possible CPUs. */
int sl_stats_read_service(const struct sl_maps *m, __u32 svc_id, struct sl_svc_stats *out);
int sl_stats_read_backend(const struct sl_maps *m, __u32 backend_id, struct sl_be_stats *out);
/* Zero the counters of an id before it is (re)used. */
int sl_stats_reset_service(const struct sl_maps *m, __u32 svc_id);
int sl_stats_reset_backend(const struct sl_maps *m, __u32 backend_id);

int sl_generation_read(const struct sl_maps *m, struct sl_generation *out);

/* Tokens in a service's connection bucket now; -ENOENT when it has no service-wide limit. */
int sl_rl_tokens(const struct sl_maps *m, const struct sl_service *svc, __u32 *tokens);

/* A backend's breaker, read under its spin lock. */
int sl_breaker_read(const struct sl_maps *m, __u32 backend_id, struct sl_breaker *out);
/* Closes a backend's breaker by hand (consecutive failures and ejections forgotten). */
int sl_breaker_reset(const struct sl_maps *m, __u32 backend_id);
/*
 * Rewrites backend id's record in place (it must exist) and its copy in
 * sl_be_health (sluice/backend.h), as every writer of a record must.
 */
int sl_backend_rewrite(const struct sl_maps *m, __u32 backend_id, const struct sl_backend *b);
/* Live TCP connections of a backend (0 when the count is transiently negative). */
__u32 sl_live_read(const struct sl_maps *m, __u32 backend_id);
/*
 * Rewrites a service's ejected-backend count from the breakers of its
 * backends ids[0..n). The kernel keeps it with atomic adds; a removed or
 * reset backend needs a recount. An ejection racing the rewrite can be lost
 * from the count until the next one (it bounds max_ejection_percent only).
 */
int sl_svc_state_recount(const struct sl_maps *m, __u32 svc_id, const __u32 *ids, size_t n);

/* Names of enum sl_reason values for the CLI and metrics ("no_backend", ...). */
const char *sl_reason_name(unsigned int reason);
const char *sl_health_name(__u8 health);
const char *sl_breaker_state_name(__u32 state);
const char *sl_xdp_drop_name(unsigned int reason);
const char *sl_xdp_pass_name(unsigned int reason);
/* XDP counters of a service id (0: packets to no VIP), summed over CPUs. */
int sl_xdp_stats_read(const struct sl_maps *m, __u32 svc_id, struct sl_xdp_stats *out);
/* What XDP forwarded to a backend id, summed over CPUs. */
int sl_xdp_be_stats_read(const struct sl_maps *m, __u32 backend_id, struct sl_xdp_be_stats *out);

/*
 * Takes the exclusive lock of a pin root (flock on its directory), so loads,
 * unloads and applies never interleave. Returns the fd to close, or -errno.
 */
int sl_lock_pin_root(const char *pin_root);

#endif
