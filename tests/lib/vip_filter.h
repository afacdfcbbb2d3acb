/* SPDX-License-Identifier: MIT */
/*
 * Tests and benchmarks that write sl_services themselves must also mark the
 * VIP in sl_vip_filter, as the reconciler does, or sl_xdp takes its packets
 * for no VIP's; writing its sl_xdp_vips slot too spares new flows the
 * sl_services lookup, as after an apply.
 */
#ifndef SL_TEST_VIP_FILTER_H
#define SL_TEST_VIP_FILTER_H

#include <errno.h>
#include <stdlib.h>
#include <bpf/bpf.h>

#include "sluice/service.h"
#include "sluice/xdp.h"

static inline int vip_filter_add(int fd, const struct sl_svc_key *key)
{
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	__u32 zero = 0;
	int err = 0;

	if (!f)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &zero, f))
		err = -errno;
	if (!err) {
		sl_vip_filter_mark(f, &key->vip, key->port);
		if (bpf_map_update_elem(fd, &zero, f, BPF_ANY))
			err = -errno;
	}
	free(f);
	return err;
}

/* The VIP's slot of sl_xdp_vips, as the reconciler writes it for a slot no other VIP shares. */
static inline int xdp_vips_add(int fd, const struct sl_svc_key *key, const struct sl_service *svc)
{
	struct sl_xdp_vip v = sl_xdp_vip_of(key, svc);
	__u32 slot = sl_xdp_vip_slot(sl_vip_filter_bit(&key->vip, key->port));

	return bpf_map_update_elem(fd, &slot, &v, BPF_ANY) ? -errno : 0;
}

#endif
