// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include "vipfilter.h"

void sl_vip_filter_fill(struct sl_vip_filter *f, const struct sl_registry *want)
{
	for (size_t i = 0; i < want->count; i++)
		sl_vip_filter_mark(f, &want->services[i].key.vip, want->services[i].key.port);
}

static int write_filter(const struct sl_maps *m, const struct sl_registry *want, int widen)
{
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	__u32 zero = 0;
	int err = 0;

	if (!f)
		return -ENOMEM;
	if (widen && bpf_map_lookup_elem(m->vip_filter, &zero, f))
		err = -errno;
	if (!err) {
		sl_vip_filter_fill(f, want);
		if (bpf_map_update_elem(m->vip_filter, &zero, f, BPF_ANY))
			err = -errno;
	}
	free(f);
	return err;
}

int sl_vip_filter_widen(const struct sl_maps *m, const struct sl_registry *want)
{
	return write_filter(m, want, 1);
}

int sl_vip_filter_set(const struct sl_maps *m, const struct sl_registry *want)
{
	return write_filter(m, want, 0);
}
