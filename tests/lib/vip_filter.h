/* SPDX-License-Identifier: MIT */
/*
 * Tests and benchmarks that write sl_services themselves must also mark the
 * VIP in sl_vip_filter, as the reconciler does, or sl_xdp takes its packets
 * for no VIP's.
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

#endif
