/* SPDX-License-Identifier: MIT */
/*
 * What a load rebuilds from the records in force: maps derived from
 * sl_backends and sl_services, which a version's new layout or a new map
 * would otherwise leave empty or stale until the next apply changed them.
 */
#ifndef SL_REBUILD_H
#define SL_REBUILD_H

/* Fills sl_be_health from sl_backends (sluice/backend.h); 0 when nothing is pinned yet. */
int sl_fill_be_health(const char *pin_root);
/* Rewrites sl_vip_filter and sl_xdp_vips from one dump of sl_services (sluice/xdp.h). */
int sl_refill_vip_maps(const char *pin_root);

#endif
