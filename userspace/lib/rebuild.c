// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "log.h"
#include "maps.h"
#include "rebuild.h"

static int open_pinned(const char *pin_root, const char *name)
{
	char path[PATH_MAX];
	int fd;

	if (sl_pin_path(path, sizeof(path), pin_root, name))
		return -ENAMETOOLONG;
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

/*
 * sl_be_health copies sl_backends' records (sluice/backend.h). Created by a
 * load over the pins of a version without it, it is filled from the records
 * in force; empty, it would have XDP take every backend for removed until
 * the next apply that changed them.
 */
int sl_fill_be_health(const char *pin_root)
{
	int be_fd = open_pinned(pin_root, "sl_backends"), h_fd = -1, err = 0, n = 0;
	__u32 id, *prev = NULL;
	struct sl_be_health h;
	struct sl_backend b;

	if (be_fd < 0)
		return 0; /* no records yet */
	h_fd = open_pinned(pin_root, "sl_be_health");
	if (h_fd < 0) {
		err = h_fd;
		goto out;
	}
	while (!bpf_map_get_next_key(be_fd, prev, &id)) {
		prev = &id;
		if (bpf_map_lookup_elem(be_fd, &id, &b))
			continue; /* removed meanwhile */
		h = sl_be_health_of(&b);
		if (bpf_map_update_elem(h_fd, &id, &h, BPF_ANY)) {
			err = -errno;
			goto out;
		}
		n++;
	}
	if (n)
		log_info("sl_be_health: filled from the %d backend records in force", n);
out:
	if (err)
		log_err("cannot fill sl_be_health from sl_backends: %s", strerror(-err));
	if (h_fd >= 0)
		close(h_fd);
	close(be_fd);
	return err;
}

/*
 * sl_vip_filter is derived from sl_services' keys, and a filter pinned by a
 * version that laid its bits out otherwise has the same size, so its pin is
 * reused: each load rewrites it from the services in force, so the new
 * program never takes a VIP in force for none. An apply running meanwhile
 * rewrites it again when it ends.
 */
int sl_refill_vip_filter(const char *pin_root)
{
	int svc_fd = open_pinned(pin_root, "sl_services"), f_fd = -1, err = 0;
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	struct sl_svc_key key, *prev = NULL;
	__u32 zero = 0;

	if (!f) {
		err = -ENOMEM;
		goto out;
	}
	if (svc_fd < 0 || (f_fd = open_pinned(pin_root, "sl_vip_filter")) < 0) {
		err = svc_fd < 0 ? svc_fd : f_fd;
		goto out;
	}
	while (!bpf_map_get_next_key(svc_fd, prev, &key)) {
		prev = &key;
		sl_vip_filter_mark(f, &key.vip, key.port);
	}
	if (bpf_map_update_elem(f_fd, &zero, f, BPF_ANY))
		err = -errno;
out:
	if (err)
		log_err("cannot rewrite sl_vip_filter from sl_services: %s", strerror(-err));
	if (f_fd >= 0)
		close(f_fd);
	if (svc_fd >= 0)
		close(svc_fd);
	free(f);
	return err;
}

bool sl_pinned(const char *pin_root, const char *name)
{
	int fd = open_pinned(pin_root, name);

	if (fd >= 0)
		close(fd);
	return fd != -ENOENT;
}
