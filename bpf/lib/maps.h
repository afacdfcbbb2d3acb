/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the datapath, defined once. All are pinned by name under the
 * pin root, so sluicectl, the agent and bpftool see the same objects and a
 * reload reuses them.
 *
 * Atomicity per service: a service's backend set lives in one inner array of
 * sl_svc_slots: slot 0 = T, slots 1..T = the selection table, slot T+1 = B,
 * slots T+2..T+1+B = every backend id once (the fallback scan). The reconciler
 * fills a brand-new inner map and then replaces the outer entry in one
 * update; a program that looked up the old inner map keeps reading it whole
 * (the kernel frees it only after an RCU grace period), so a connect racing
 * an apply sees the old or the new set, never a mix. Backend records that a
 * new table names are written before the swap and removed ones deleted after
 * it, so every id in a live table resolves.
 */
#ifndef SL_BPF_MAPS_H
#define SL_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sluice/service.h"
#include "sluice/backend.h"
#include "sluice/revnat.h"
#include "sluice/stats.h"
#include "sluice/generation.h"
#include "sluice/breaker.h"
#include "sluice/ratelimit.h"
#include "sluice/xdp.h"
#include "sluice/flow.h"

/* VIP:port/proto -> service settings; written by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, struct sl_svc_key);
	__type(value, struct sl_service);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_services SEC(".maps");

/* backend id -> address, port, weight, health; written by the reconciler and health checker. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct sl_backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_backends SEC(".maps");

/* backend id -> its service and health, as in sl_backends, for XDP (sluice/backend.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct sl_be_health);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_be_health SEC(".maps");

/* Shape of one selection table; BPF_F_INNER_MAP lets each table have its own size. */
struct sl_slots_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/*
 * service id -> selection table (see the top of this file); swapped by the
 * reconciler. An array, so a lookup is inlined: no hashing, no bucket walk.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct sl_slots_inner);
} sl_svc_slots SEC(".maps");

/* service id -> round-robin position; advanced atomically by the socket programs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_rr SEC(".maps");

/* (socket cookie, backend) -> VIP the application asked for; written at connect/sendmsg. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_REVNAT_MAX);
	__type(key, struct sl_revnat_key);
	__type(value, struct sl_revnat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_revnat SEC(".maps");

/* service id -> per-CPU selection counters; written by the socket programs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sl_svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_svc_stats SEC(".maps");

/* backend id -> per-CPU connection counters; written by the socket programs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct sl_be_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_be_stats SEC(".maps");

/* backend id -> breaker state; transitions by sockops and selection, resets by sluicectl. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct sl_breaker);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_breakers SEC(".maps");

/*
 * backend id -> live TCP connections (reserved at connect, released once at
 * close); atomic adds from every CPU. Signed: a count is read as 0 below 0.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __s32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_live SEC(".maps");

/* service id -> ejected backend count; atomic adds by the breaker, recounted by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sl_svc_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_svc_state SEC(".maps");

/* TCP socket -> the backend it was balanced to; freed with the socket. Written at connect. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sl_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_sock SEC(".maps");

/* (client, service id) -> backend and last use; written at connect for affinity services. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_AFFINITY_MAX);
	__type(key, struct sl_affinity_key);
	__type(value, struct sl_affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_affinity SEC(".maps");

/* service id -> its connection-rate bucket; taken by the socket programs, emptied-to-full by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sl_rl_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_rl_svc SEC(".maps");

/* (client, service id) -> that client's bucket; LRU, sized at load (--rl-clients). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_RL_CLIENTS_DEFAULT);
	__type(key, struct sl_rl_client_key);
	__type(value, struct sl_rl_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_rl_client SEC(".maps");

/* The registry's global XDP limits, one entry; written by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_xdp_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_cfg SEC(".maps");

/* Source address -> its packet bucket at XDP; LRU, taken by sl_xdp. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SL_XDP_SOURCES_DEFAULT);
	__type(key, struct sl_xdp_src_key);
	__type(value, struct sl_rl_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_src SEC(".maps");

/* service id -> its VIP's SYN bucket at XDP; taken by sl_xdp, emptied-to-full by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sl_rl_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_syn SEC(".maps");

/*
 * The three per-CPU maps of sl_xdp below are ARRAYs of one block per CPU
 * (sluice/xdp.h, sl_xdp_cpu_key): one block here, one per possible CPU once
 * the loader has sized them.
 */

/* (CPU, service id (0: no VIP)) -> packets, bytes, SYNs and drops at XDP; written by sl_xdp. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_XDP_STATS_STRIDE);
	__type(key, __u32);
	__type(value, struct sl_xdp_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_stats SEC(".maps");

/*
 * (CPU, backend id) -> packets, bytes and new flows XDP sent it, and its
 * cached FIB answer (egress, MACs, MTU), written by sl_xdp; zeroed by the
 * reconciler for a new id and after it removes one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_XDP_BE_STRIDE);
	__type(key, __u32);
	__type(value, struct sl_xdp_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_backend SEC(".maps");

/* 0 -> the VIP pre-filter (struct sl_vip_filter); written by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_vip_filter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_vip_filter SEC(".maps");

/* VIP slot -> what a new flow needs of its service (struct sl_xdp_vip); written by the reconciler. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_XDP_VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct sl_xdp_vip);
	__uint(map_flags, BPF_F_MMAPABLE); /* the reconciler reads and writes single slots */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_vips SEC(".maps");

/*
 * The flow table of sl_xdp (sluice/flow.h): buckets of flows, shared by all
 * CPUs (a veth or a NIC without RSS may run one flow's packets on any CPU);
 * sized at load (sluicectl load --xdp-flows, flows / SL_FLOW_WAYS buckets).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_XDP_FLOWS_DEFAULT / SL_FLOW_WAYS);
	__type(key, __u32);
	__type(value, struct sl_flow_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_flows SEC(".maps");

/*
 * A word per bucket of sl_xdp_flows, its ways' tags and recency, 16 buckets
 * to an entry (struct sl_flow_index); sized with the table.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SL_XDP_FLOWS_DEFAULT / SL_FLOW_WAYS / SL_FLOW_INDEX_WORDS);
	__type(key, __u32);
	__type(value, struct sl_flow_index);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_flow_idx SEC(".maps");

/*
 * 0 -> the seed of sl_xdp_flows' fingerprints (sl_flow_fp), drawn by the
 * load that creates the table and kept with it; programs get it as a
 * constant (flowtable.h), this is where the next load and tools read it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_xdp_fp_seed SEC(".maps");

/* This CPU's entry of id in one of sl_xdp's per-CPU maps; NULL for an id past the stride. */
static __always_inline void *xdp_cpu_lookup(void *map, __u32 id, __u32 stride)
{
	__u32 key = sl_xdp_cpu_key(bpf_get_smp_processor_id(), id, stride);

	if (id >= stride)
		return NULL;
	return bpf_map_lookup_elem(map, &key);
}

static __always_inline struct sl_xdp_stats *xdp_stats_of(__u32 svc_id)
{
	return xdp_cpu_lookup(&sl_xdp_stats, svc_id, SL_XDP_STATS_STRIDE);
}

static __always_inline struct sl_xdp_backend *xdp_backend_of(__u32 backend_id)
{
	return xdp_cpu_lookup(&sl_xdp_backend, backend_id, SL_XDP_BE_STRIDE);
}

static __always_inline struct sl_xdp_be_stats *xdp_be_stats_of(__u32 backend_id)
{
	struct sl_xdp_backend *b = xdp_backend_of(backend_id);

	return b ? &b->stats : NULL; /* at offset 0: no arithmetic on a maybe-NULL pointer */
}

/* b's route; b not NULL. */
static __always_inline struct sl_xdp_nexthop *xdp_route(struct sl_xdp_backend *b)
{
	/* Keeps clang from adding the offset before the caller's NULL test, which the verifier refuses. */
	asm volatile("" : "+r"(b));
	return &b->route;
}

static __always_inline struct sl_xdp_nexthop *xdp_nexthop_of(__u32 backend_id)
{
	struct sl_xdp_backend *b = xdp_backend_of(backend_id);

	return b ? xdp_route(b) : NULL;
}

/* Which registry document is live; one entry written by the reconciler after each apply. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sl_generation);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_generation SEC(".maps");

#endif
