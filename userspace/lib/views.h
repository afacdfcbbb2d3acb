/* SPDX-License-Identifier: MIT */
/*
 * JSON views of what the maps hold, shared by sluicectl -j and the agent's
 * API so both speak the same keys (README, "JSON output").
 */
#ifndef SL_VIEWS_H
#define SL_VIEWS_H

#include <jansson.h>

#include "maps.h"
#include "state.h"

/* {"no_backend": n, ...} from an array of SL_REASON_COUNT counters. */
json_t *sl_json_reason_counts(const __u64 *counts);
json_t *sl_json_service(const struct sl_maps *m, const struct sl_state_service *s);
json_t *sl_json_backend(const struct sl_maps *m, const struct sl_state_service *s,
			const struct sl_state_backend *b);
json_t *sl_json_breaker(const struct sl_maps *m, const struct sl_state_service *s,
			const struct sl_state_backend *b);

/* {service, accepted, refused: {...}, refused_total, rate_limit: {...}, tokens}. */
json_t *sl_json_stats(const struct sl_maps *m, const struct sl_state_service *s);

/* Milliseconds until an OPEN breaker turns HALF_OPEN (0 when not open or due). */
__u64 sl_breaker_open_remaining_ms(const struct sl_breaker *b);

#endif
