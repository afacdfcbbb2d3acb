/* SPDX-License-Identifier: MIT */
/*
 * The health check engine under health.c, without maps: targets (address,
 * port, health_check settings) checked by TCP connect or HTTP GET from the
 * event loop, with their up/down state machine. health.c writes the results
 * into the maps; the unit tests drive it against local servers.
 */
#ifndef SLUICED_HEALTH_CHECK_H
#define SLUICED_HEALTH_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "lib/registry.h"
#include "loop.h"

#define HC_ERR_MAX 96

struct hc_engine;
struct hc_probe;
struct hc_target;

/*
 * Called after every check of t, with t's counters and state already updated:
 * a transition when t->state != prev. The callback may stop (and free) t or
 * any other target.
 */
typedef void (*hc_result_fn)(struct hc_target *t, __u8 prev, void *ctx);

/*
 * One checked endpoint. The caller embeds it and fills family, addr, port,
 * cfg and state (enum sl_backend_health) before hc_target_start(); the rest
 * belongs to the engine and is read-only outside it.
 */
struct hc_target {
	struct sl_addr addr;
	__u16 port; /* host order */
	__u8 family; /* SL_FAMILY_IPV4 or SL_FAMILY_IPV6 */
	__u8 state;
	struct sl_health_check cfg;
	__u32 consecutive_ok;
	__u32 consecutive_fail;
	__u64 checks;
	__u64 last_check_unix_ms; /* 0: not checked yet */
	char last_error[HC_ERR_MAX]; /* of the last check; empty when it succeeded */

	struct hc_engine *engine; /* NULL when stopped */
	struct hc_probe *probe; /* the check in flight */
	__u64 deadline_ms; /* next check, or the timeout of the one in flight */
	size_t heap_idx;
	struct hc_target *wait_prev, *wait_next;
	int waiting;
};

struct hc_engine *hc_engine_new(struct loop *loop, hc_result_fn fn, void *ctx);
/* Stops every target still started; call it outside loop dispatch. */
void hc_engine_free(struct hc_engine *e);
/* Checks in flight at once, at most (default from RLIMIT_NOFILE); others wait their turn. */
void hc_engine_set_max_inflight(struct hc_engine *e, size_t n);
size_t hc_engine_inflight(const struct hc_engine *e);

/* Schedules t's first check delay_ms from now. Returns 0 or -errno. */
int hc_target_start(struct hc_engine *e, struct hc_target *t, __u32 delay_ms);
/* New settings; a shorter interval brings the next check forward. */
void hc_target_configure(struct hc_target *t, const struct sl_health_check *cfg);
/*
 * Cancels t's check in flight and forgets t: the caller may free it at once,
 * even from a callback while an event for its socket is pending.
 */
void hc_target_stop(struct hc_target *t);

/*
 * Parses the status line at the start of an HTTP response. Returns the
 * status code, 0 when more bytes are needed, or -EINVAL when it is no status line.
 */
int hc_http_status(const char *buf, size_t len);

const char *hc_type_name(__u8 type);

#endif
