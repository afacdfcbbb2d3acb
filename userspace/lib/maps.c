// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "maps.h"

const char *const sl_map_names[] = {
	"sl_services", "sl_backends", "sl_be_health", "sl_svc_slots", "sl_rr",
	"sl_revnat",   "sl_svc_stats", "sl_be_stats", "sl_generation",
	"sl_breakers", "sl_live",      "sl_svc_state", "sl_sock",
	"sl_affinity", "sl_rl_svc",    "sl_rl_client", "sl_xdp_cfg",
	"sl_xdp_src",  "sl_xdp_syn",   "sl_xdp_stats", "sl_xdp_backend",
	"sl_xdp_flows", "sl_xdp_flow_idx", "sl_xdp_fp_seed", "sl_vip_filter", "sl_xdp_vips",
};
const size_t sl_map_count = sizeof(sl_map_names) / sizeof(sl_map_names[0]);
_Static_assert(sizeof(sl_map_names) / sizeof(sl_map_names[0]) == sizeof(struct sl_maps) / sizeof(int),
	       "sl_map_names matches struct sl_maps");

static const char *const reason_names[SL_REASON_COUNT] = {
	[SL_REASON_NO_BACKEND] = "no_backend",
	[SL_REASON_NONE_USABLE] = "none_usable",
	[SL_REASON_BREAKER_OPEN] = "breaker_open",
	[SL_REASON_MAX_CONNECTIONS] = "max_connections",
	[SL_REASON_RATE_SERVICE] = "rate_limited_service",
	[SL_REASON_RATE_CLIENT] = "rate_limited_client",
	[SL_REASON_UNHEALTHY] = "unhealthy",
};

const char *sl_reason_name(unsigned int reason)
{
	if (reason >= SL_REASON_COUNT || !reason_names[reason])
		return NULL;
	return reason_names[reason];
}

const char *sl_health_name(__u8 health)
{
	switch (health) {
	case SL_HEALTH_UP:
		return "up";
	case SL_HEALTH_DOWN:
		return "down";
	default:
		return "unknown";
	}
}

int sl_pin_path(char *buf, size_t size, const char *pin_root, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", pin_root, name);

	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

int sl_pin_open(const char *pin_root, const char *name)
{
	char path[4096];
	int fd, err = sl_pin_path(path, sizeof(path), pin_root, name);

	if (err)
		return err;
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

int sl_maps_open(const char *pin_root, struct sl_maps *m)
{
	int *fds = (int *)m;
	int err;

	for (size_t i = 0; i < sl_map_count; i++)
		fds[i] = -1;
	for (size_t i = 0; i < sl_map_count; i++) {
		fds[i] = sl_pin_open(pin_root, sl_map_names[i]);
		if (fds[i] < 0) {
			err = fds[i];
			fds[i] = -1;
			log_err("cannot open map %s at %s/%s: %s (is sluice loaded? try 'sluicectl load')",
				sl_map_names[i], pin_root, sl_map_names[i], strerror(-err));
			goto fail;
		}
	}
	return 0;
fail:
	sl_maps_close(m);
	return err;
}

void sl_maps_close(struct sl_maps *m)
{
	int *fds = (int *)m;

	for (size_t i = 0; i < sl_map_count; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/* Reads a per-CPU value and sums it as an array of __u64 counters. */
static int percpu_sum(int fd, __u32 key, __u64 *out, size_t counters)
{
	int ncpus = libbpf_num_possible_cpus();
	__u64 *values;
	int err = 0;

	if (ncpus < 0)
		return ncpus;
	values = calloc((size_t)ncpus * counters, sizeof(__u64));
	if (!values)
		return -ENOMEM;
	memset(out, 0, counters * sizeof(__u64));
	if (bpf_map_lookup_elem(fd, &key, values)) {
		err = -errno;
		goto out;
	}
	for (int cpu = 0; cpu < ncpus; cpu++)
		for (size_t c = 0; c < counters; c++)
			out[c] += values[(size_t)cpu * counters + c];
out:
	free(values);
	return err;
}

static int percpu_zero(int fd, __u32 key, size_t value_size)
{
	int ncpus = libbpf_num_possible_cpus();
	void *zeros;
	int err = 0;

	if (ncpus < 0)
		return ncpus;
	zeros = calloc(ncpus, value_size);
	if (!zeros)
		return -ENOMEM;
	if (bpf_map_update_elem(fd, &key, zeros, BPF_ANY))
		err = -errno;
	free(zeros);
	return err;
}

int sl_stats_read_service(const struct sl_maps *m, __u32 svc_id, struct sl_svc_stats *out)
{
	return percpu_sum(m->svc_stats, svc_id, (__u64 *)out, sizeof(*out) / sizeof(__u64));
}

int sl_stats_read_backend(const struct sl_maps *m, __u32 backend_id, struct sl_be_stats *out)
{
	return percpu_sum(m->be_stats, backend_id, (__u64 *)out, sizeof(*out) / sizeof(__u64));
}

int sl_stats_reset_service(const struct sl_maps *m, __u32 svc_id)
{
	return percpu_zero(m->svc_stats, svc_id, sizeof(struct sl_svc_stats));
}

int sl_stats_reset_backend(const struct sl_maps *m, __u32 backend_id)
{
	return percpu_zero(m->be_stats, backend_id, sizeof(struct sl_be_stats));
}

int sl_generation_read(const struct sl_maps *m, struct sl_generation *out)
{
	__u32 zero = 0;

	if (bpf_map_lookup_elem(m->generation, &zero, out))
		return -errno;
	return 0;
}

int sl_rl_tokens(const struct sl_maps *m, const struct sl_service *svc, __u32 *tokens)
{
	struct sl_rl_bucket b = { 0 };
	__u64 interval, now, full_at, avail;
	__u32 burst = svc->burst ? svc->burst : 1, id = svc->id;
	struct timespec ts;

	if (!svc->connections_per_second)
		return -ENOENT;
	*tokens = burst;
	if (bpf_map_lookup_elem(m->rl_svc, &id, &b) || !b.tat_ns)
		return 0;
	interval = 1000000000ULL / svc->connections_per_second;
	if (!interval)
		interval = 1;
	/* The kernel's clock: bpf_ktime_get_ns() is CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	full_at = now + (__u64)burst * interval;
	avail = b.tat_ns >= full_at ? 0 : (full_at - b.tat_ns) / interval;
	*tokens = avail > burst ? burst : avail;
	return 0;
}

const char *sl_xdp_drop_name(unsigned int reason)
{
	switch (reason) {
	case SL_XDP_DROP_SOURCE_RATE:
		return "source_rate";
	case SL_XDP_DROP_SYN_RATE:
		return "syn_rate";
	case SL_XDP_DROP_NO_BACKEND:
		return "no_backend";
	case SL_XDP_DROP_MALFORMED:
		return "malformed";
	default:
		return NULL;
	}
}

const char *sl_xdp_pass_name(unsigned int reason)
{
	static const char *const names[SL_XDP_PASS_COUNT] = {
		[SL_XDP_PASS_TTL] = "ttl",
		[SL_XDP_PASS_NO_ROUTE] = "no_route",
		[SL_XDP_PASS_NO_NEIGHBOR] = "no_neighbor",
		[SL_XDP_PASS_FRAG_NEEDED] = "frag_needed",
		[SL_XDP_PASS_NOT_FORWARDING] = "not_forwarding",
		[SL_XDP_PASS_VLAN] = "vlan",
		[SL_XDP_PASS_FORWARDING_OFF] = "forwarding_off",
	};

	return reason < SL_XDP_PASS_COUNT ? names[reason] : NULL;
}

/* The counters of id in one of sl_xdp's per-CPU maps (sluice/xdp.h), summed over CPUs. */
/* The first `counters` u64 of id's entries, summed over the CPU blocks; value_size: an entry's. */
static int cpu_blocks_sum(int fd, __u32 stride, __u32 id, __u64 *out, size_t counters,
			  size_t value_size)
{
	int ncpus = libbpf_num_possible_cpus();
	__u64 *value;
	int err = 0;

	if (ncpus < 0)
		return ncpus;
	if (id >= stride)
		return -ENOENT;
	value = calloc(1, value_size);
	if (!value)
		return -ENOMEM;
	memset(out, 0, counters * sizeof(*out));
	for (int cpu = 0; cpu < ncpus && !err; cpu++) {
		__u32 key = sl_xdp_cpu_key(cpu, id, stride);

		if (bpf_map_lookup_elem(fd, &key, value)) {
			err = -errno;
			break;
		}
		for (size_t c = 0; c < counters; c++)
			out[c] += value[c];
	}
	free(value);
	return err;
}

int sl_xdp_stats_read(const struct sl_maps *m, __u32 svc_id, struct sl_xdp_stats *out)
{
	return cpu_blocks_sum(m->xdp_stats, SL_XDP_STATS_STRIDE, svc_id, (__u64 *)out,
			      sizeof(*out) / sizeof(__u64), sizeof(*out));
}

int sl_xdp_be_stats_read(const struct sl_maps *m, __u32 backend_id, struct sl_xdp_be_stats *out)
{
	/* The counters lead each entry (struct sl_xdp_backend). */
	return cpu_blocks_sum(m->xdp_backend, SL_XDP_BE_STRIDE, backend_id, (__u64 *)out,
			      sizeof(*out) / sizeof(__u64), sizeof(struct sl_xdp_backend));
}

const char *sl_breaker_state_name(__u32 state)
{
	switch (state) {
	case SL_BREAKER_CLOSED:
		return "closed";
	case SL_BREAKER_OPEN:
		return "open";
	case SL_BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "unknown";
	}
}

int sl_breaker_read(const struct sl_maps *m, __u32 backend_id, struct sl_breaker *out)
{
	if (bpf_map_lookup_elem_flags(m->breakers, &backend_id, out, BPF_F_LOCK))
		return -errno;
	return 0;
}

int sl_breaker_reset(const struct sl_maps *m, __u32 backend_id)
{
	struct sl_breaker closed = { 0 };

	if (bpf_map_update_elem(m->breakers, &backend_id, &closed, BPF_F_LOCK))
		return -errno;
	return 0;
}

int sl_backend_rewrite(const struct sl_maps *m, __u32 backend_id, const struct sl_backend *b)
{
	struct sl_be_health h = sl_be_health_of(b);

	if (bpf_map_update_elem(m->backends, &backend_id, b, BPF_EXIST) ||
	    bpf_map_update_elem(m->be_health, &backend_id, &h, BPF_ANY))
		return -errno;
	return 0;
}

__u32 sl_live_read(const struct sl_maps *m, __u32 backend_id)
{
	__s32 live = 0;

	if (bpf_map_lookup_elem(m->live, &backend_id, &live))
		return 0;
	return live > 0 ? live : 0;
}

int sl_svc_state_recount(const struct sl_maps *m, __u32 svc_id, const __u32 *ids, size_t n)
{
	struct sl_svc_state st = { 0 };
	struct sl_breaker b;

	for (size_t i = 0; i < n; i++)
		if (!sl_breaker_read(m, ids[i], &b) && b.state != SL_BREAKER_CLOSED)
			st.ejected++;
	if (bpf_map_update_elem(m->svc_state, &svc_id, &st, BPF_ANY))
		return -errno;
	return 0;
}

int sl_lock_pin_root(const char *pin_root)
{
	int fd = open(pin_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err;

	if (fd < 0) {
		err = -errno;
		log_err("cannot open %s: %s", pin_root, strerror(-err));
		return err;
	}
	if (flock(fd, LOCK_EX)) {
		err = -errno;
		log_err("cannot lock %s: %s", pin_root, strerror(-err));
		close(fd);
		return err;
	}
	return fd;
}
