/* SPDX-License-Identifier: MIT */
/*
 * The XDP VIP pre-filter (struct sl_vip_filter): which destination addresses
 * and ports may belong to a VIP. Written around each apply so that it never
 * misses a VIP in force: first the union of what is there and what is
 * wanted, after the maps are written exactly what is wanted.
 */
#ifndef SL_VIPFILTER_H
#define SL_VIPFILTER_H

#include "maps.h"
#include "registry.h"

/* Sets the bits of every wanted service into f. */
void sl_vip_filter_fill(struct sl_vip_filter *f, const struct sl_registry *want);
/* Before an apply: adds want's bits to the filter in force. -errno on failure. */
int sl_vip_filter_widen(const struct sl_maps *m, const struct sl_registry *want);
/* After an apply: exactly want's bits. */
int sl_vip_filter_set(const struct sl_maps *m, const struct sl_registry *want);

#endif
