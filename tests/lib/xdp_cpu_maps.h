/* SPDX-License-Identifier: MIT */
/*
 * For test and bench programs that load the xdp skeleton themselves: sl_xdp's
 * per-CPU maps are ARRAYs of one block per possible CPU (sluice/xdp.h), which
 * sluicectl's loader sizes; these size them the same way and read or write
 * one id across all blocks, as a PERCPU_ARRAY lookup or update would.
 */
#ifndef SL_TESTS_XDP_CPU_MAPS_H
#define SL_TESTS_XDP_CPU_MAPS_H

#include <errno.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sluice/xdp.h"

/* Between open and load: stride entries per possible CPU. Returns 0 or -errno. */
static inline int xdp_cpu_maps_size(struct bpf_object *obj)
{
	static const struct sl_xdp_cpu_map maps[] = SL_XDP_CPU_MAPS;
	int ncpus = libbpf_num_possible_cpus();

	if (ncpus < 1)
		return ncpus < 0 ? ncpus : -EINVAL;
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, maps[i].name);
		int err = m ? bpf_map__set_max_entries(m, maps[i].stride * (__u32)ncpus) : -ENOENT;

		if (err)
			return err;
	}
	return 0;
}

/* Every CPU's value of id into per[0..ncpus); 0, or -1 with errno. */
static inline int xdp_cpu_read(int fd, __u32 stride, __u32 id, void *per, size_t value_size)
{
	int ncpus = libbpf_num_possible_cpus();

	for (int cpu = 0; cpu < ncpus; cpu++) {
		__u32 key = sl_xdp_cpu_key(cpu, id, stride);

		if (bpf_map_lookup_elem(fd, &key, (char *)per + (size_t)cpu * value_size))
			return -1;
	}
	return 0;
}

/* per[0..ncpus) as every CPU's value of id; 0, or -1 with errno. */
static inline int xdp_cpu_write(int fd, __u32 stride, __u32 id, const void *per, size_t value_size)
{
	int ncpus = libbpf_num_possible_cpus();

	for (int cpu = 0; cpu < ncpus; cpu++) {
		__u32 key = sl_xdp_cpu_key(cpu, id, stride);

		if (bpf_map_update_elem(fd, &key, (const char *)per + (size_t)cpu * value_size,
					BPF_ANY))
			return -1;
	}
	return 0;
}

#endif
