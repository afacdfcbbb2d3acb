/* SPDX-License-Identifier: MIT */
/*
 * The seed of the XDP flow table's fingerprints (sluice/flow.h, sl_flow_fp):
 * drawn at random when a load creates the table, kept with it in
 * sl_xdp_fp_seed, and given to every XDP program loaded later as a
 * constant, so that ways written by one program match for the next.
 */
#ifndef SL_FLOWSEED_H
#define SL_FLOWSEED_H

#include <linux/types.h>

/*
 * Before a load: a table without its seed (a load cut short) or laid out by
 * an earlier version (ways of 5-tuples) is unpinned with its index, so the
 * load creates them anew (their flows are chosen again: the same backend
 * unless the backend set changed); a missing seed is drawn and pinned.
 * Returns 0 or -errno, logged.
 */
int sl_flow_seed_prepare(const char *pin_root);
/* The pinned seed; -ENOENT when there is none (nothing loaded yet). */
int sl_flow_seed_read(const char *pin_root, __u64 *seed);

#endif
