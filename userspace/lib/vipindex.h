/* SPDX-License-Identifier: MIT */
/*
 * sl_xdp_vips (struct sl_xdp_vip): what a new flow at XDP needs of each
 * service, by VIP slot, derived from sl_services as sl_vip_filter is. A slot
 * two VIP:ports share stays empty: their packets read sl_services.
 *
 * Written around each apply so that no slot ever names a service the VIP
 * does not have: before the apply's writes, only the slots of services that
 * keep their VIP and name (so their id) stay; after them, exactly what
 * sl_services holds (reconcile.c: index_after). The index is mapped
 * (BPF_F_MMAPABLE): a pass reads and writes only the slots of its
 * services, and writes only those that change.
 */
#ifndef SL_VIPINDEX_H
#define SL_VIPINDEX_H

#include <stddef.h>

#include "batch.h"
#include "registry.h"
#include "state.h"
#include "sluice/xdp.h"

/* The services a pass over the index considers: those in force, each kept or dropped. */
struct sl_vip_pass {
	const struct sl_svc_key *keys; /* n keys, key_stride bytes apart */
	const struct sl_service *svcs; /* their records, svc_stride bytes apart */
	size_t key_stride, svc_stride;
	size_t n;
	const struct sl_registry *want; /* NULL: all kept; else those want has by VIP and name */
};

/*
 * Writes index (SL_XDP_VIP_SLOTS slots) for the pass: a kept service alone
 * in its slot gets its entry; every other slot of these services is
 * emptied (a slot two VIP:ports share stays empty). With every_slot, slots
 * of none of them are emptied too: a load may find an index it did not
 * write. Otherwise every slot the index names a service in is one of these
 * (it only ever names services sl_services holds), so only those are
 * touched. A slot is written only when it changes. 0 or -ENOMEM.
 */
int sl_vip_index_write(struct sl_xdp_vip *index, const struct sl_vip_pass *p, int every_slot);
/*
 * The pinned index (index_fd) mapped, for sl_vip_index_write (sl_xdp_vips
 * is BPF_F_MMAPABLE): an apply maps it once for both its passes, as the
 * first touch of each page of a mapping is dear here. NULL with errno.
 */
struct sl_xdp_vip *sl_vip_index_map(int index_fd);
void sl_vip_index_unmap(struct sl_xdp_vip *index);
/* Before an apply: drops the slots of services want removes, moves or renames. */
int sl_vip_index_narrow(struct sl_xdp_vip *index, const struct sl_state *cur,
			const struct sl_registry *want);
/* At load: every slot, from services (sl_services dumped: keys and records). -errno. */
int sl_vip_index_set(int index_fd, const struct sl_batch *services);

#endif
