// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <bpf/bpf.h>

#include "sluice/flow.h"
#include "flowseed.h"
#include "log.h"
#include "maps.h"

#define SEED_MAP "sl_xdp_fp_seed"

int sl_flow_seed_read(const char *pin_root, __u64 *seed)
{
	int fd = sl_pin_open(pin_root, SEED_MAP), err = 0;
	__u32 zero = 0;

	if (fd < 0)
		return fd;
	if (bpf_map_lookup_elem(fd, &zero, seed))
		err = -errno;
	close(fd);
	return err;
}

/* The pinned table's bucket size, 0 when none is pinned; -errno. */
static int pinned_bucket_size(const char *pin_root, __u32 *size)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd = sl_pin_open(pin_root, "sl_xdp_flows"), err = 0;

	*size = 0;
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		err = -errno;
	else
		*size = info.value_size;
	close(fd);
	return err;
}

static int unpin(const char *pin_root, const char *name)
{
	char path[PATH_MAX];
	int err = sl_pin_path(path, sizeof(path), pin_root, name);

	if (!err && unlink(path) && errno != ENOENT)
		err = -errno;
	return err;
}

/* A fresh non-zero seed, pinned (created unless a pin is there to write). */
static int pin_new_seed(const char *pin_root)
{
	char path[PATH_MAX];
	__u64 seed = 0;
	__u32 zero = 0;
	int fd, err;

	while (!seed)
		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			return -errno;
	fd = sl_pin_open(pin_root, SEED_MAP);
	if (fd == -ENOENT) {
		fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, SEED_MAP, sizeof(__u32), sizeof(seed), 1, NULL);
		if (fd < 0)
			return -errno;
		err = sl_pin_path(path, sizeof(path), pin_root, SEED_MAP);
		if (!err && bpf_obj_pin(fd, path))
			err = -errno;
		if (err) {
			close(fd);
			return err;
		}
	}
	if (fd < 0)
		return fd;
	err = bpf_map_update_elem(fd, &zero, &seed, BPF_ANY) ? -errno : 0;
	close(fd);
	return err;
}

int sl_flow_seed_prepare(const char *pin_root)
{
	__u64 seed = 0;
	__u32 bucket;
	int err = sl_flow_seed_read(pin_root, &seed);

	if (err && err != -ENOENT)
		goto out;
	err = pinned_bucket_size(pin_root, &bucket);
	if (err)
		goto out;
	if (bucket && (bucket != sizeof(struct sl_flow_bucket) || !seed)) {
		log_info("sl_xdp_flows: %s; replaced, its flows are chosen anew",
			 seed ? "laid out by an earlier version" : "pinned without its seed");
		err = unpin(pin_root, "sl_xdp_flows") ?: unpin(pin_root, "sl_xdp_flow_idx");
		if (err)
			goto out;
		seed = 0;
	}
	if (!seed)
		err = pin_new_seed(pin_root);
out:
	if (err)
		log_err("cannot prepare the XDP flow table's seed under %s: %s", pin_root,
			strerror(-err));
	return err;
}
