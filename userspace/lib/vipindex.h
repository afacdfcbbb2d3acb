/* SPDX-License-Identifier: MIT */
/*
 * sl_xdp_vips (struct sl_xdp_vip): what a new flow at XDP needs of each
 * service, by VIP slot, derived from sl_services as sl_vip_filter is. A slot
 * two VIP:ports share stays empty: their packets read sl_services.
 *
 * Written around each apply so that no slot ever names a service the VIP
 * does not have: before the apply's writes, only the slots of services that
 * keep their VIP and name (so their id) stay; after them, exactly what
 * sl_services holds. Only slots that change are written, and an apply reads
 * only the slots of its services.
 */
#ifndef SL_VIPINDEX_H
#define SL_VIPINDEX_H

#include <stddef.h>

#include "registry.h"
#include "state.h"
#include "sluice/xdp.h"

/*
 * Fills slots (SL_XDP_VIP_SLOTS entries, zeroed by the caller) from n
 * services: keys[i] with record svcs[i]; *shared gets how many slots two or
 * more VIP:ports share (left empty). 0 or -ENOMEM.
 */
int sl_vip_index_build(struct sl_xdp_vip *slots, const struct sl_svc_key *keys,
		       const struct sl_service *svcs, size_t n, size_t *shared);
/* Before an apply: drops the slots of services want removes, moves or renames. -errno. */
int sl_vip_index_narrow(int index_fd, const struct sl_state *cur, const struct sl_registry *want);
/*
 * After an apply (every_slot 0: only the slots of services in force are
 * read), and at load (every_slot 1): the index of what sl_services holds.
 */
int sl_vip_index_set(int svc_fd, int index_fd, int every_slot);

#endif
