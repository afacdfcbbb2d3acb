// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "batch.h"
#include "log.h"
#include "maps.h"
#include "rebuild.h"
#include "vipindex.h"

/*
 * sl_be_health copies sl_backends' records (sluice/backend.h). Created by a
 * load over the pins of a version without it, it is filled from the records
 * in force; empty, it would have XDP take every backend for removed until
 * the next apply that changed them.
 */
int sl_fill_be_health(const char *pin_root)
{
	int be_fd = sl_pin_open(pin_root, "sl_backends"), h_fd = -1, err;
	struct sl_batch records, copies;

	if (be_fd < 0)
		return 0; /* no records yet */
	sl_batch_init(&records, sizeof(__u32), sizeof(struct sl_backend));
	sl_batch_init(&copies, sizeof(__u32), sizeof(struct sl_be_health));
	err = sl_batch_dump(be_fd, &records);
	for (size_t i = 0; !err && i < records.count; i++) {
		struct sl_backend b;
		struct sl_be_health h;

		memcpy(&b, records.values + i * records.value_size, sizeof(b));
		h = sl_be_health_of(&b);
		err = sl_batch_add(&copies, records.keys + i * records.key_size, &h);
	}
	if (!err && copies.count) {
		h_fd = sl_pin_open(pin_root, "sl_be_health");
		err = h_fd < 0 ? h_fd : sl_batch_update(h_fd, &copies, 0);
	}
	if (err)
		log_err("cannot fill sl_be_health from sl_backends: %s", strerror(-err));
	else if (copies.count)
		log_info("sl_be_health: filled from the %zu backend records in force", copies.count);
	if (h_fd >= 0)
		close(h_fd);
	close(be_fd);
	sl_batch_free(&records);
	sl_batch_free(&copies);
	return err;
}

/* Sets the bit of every dumped service's VIP:port in f. */
static void mark_services(struct sl_vip_filter *f, const struct sl_batch *services)
{
	for (size_t i = 0; i < services->count; i++) {
		struct sl_svc_key key;

		memcpy(&key, services->keys + i * services->key_size, sizeof(key));
		sl_vip_filter_mark(f, &key.vip, key.port);
	}
}

/*
 * sl_vip_filter and sl_xdp_vips are derived from sl_services, from one dump
 * of it. A filter pinned by a version that laid its bits out otherwise has
 * the same size, so its pin is reused, and sl_xdp_vips may be new: each
 * load rewrites both from the services in force, so the new program never
 * takes a VIP in force for none. An apply running meanwhile rewrites them
 * again when it ends.
 */
int sl_refill_vip_maps(const char *pin_root)
{
	int svc_fd = sl_pin_open(pin_root, "sl_services"), f_fd = -1, idx_fd = -1, err = 0;
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	const char *what = "sl_vip_filter";
	struct sl_batch services;
	__u32 zero = 0;

	sl_batch_init(&services, sizeof(struct sl_svc_key), sizeof(struct sl_service));
	if (!f)
		err = -ENOMEM;
	else if (svc_fd < 0)
		err = svc_fd;
	else if (!(err = sl_batch_dump(svc_fd, &services))) {
		mark_services(f, &services);
		f_fd = sl_pin_open(pin_root, "sl_vip_filter");
		if (f_fd < 0)
			err = f_fd;
		else if (bpf_map_update_elem(f_fd, &zero, f, BPF_ANY))
			err = -errno;
	}
	if (!err) {
		what = "sl_xdp_vips";
		idx_fd = sl_pin_open(pin_root, "sl_xdp_vips");
		err = idx_fd < 0 ? idx_fd : sl_vip_index_set(idx_fd, &services);
	}
	if (err)
		log_err("cannot rewrite %s from sl_services: %s", what, strerror(-err));
	if (idx_fd >= 0)
		close(idx_fd);
	if (f_fd >= 0)
		close(f_fd);
	if (svc_fd >= 0)
		close(svc_fd);
	sl_batch_free(&services);
	free(f);
	return err;
}
