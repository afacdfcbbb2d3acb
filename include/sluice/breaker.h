/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection-level circuit breaking: per-backend breaker state, live
 * connection counts, and what each balanced TCP socket remembers about the
 * backend it was sent to.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include "types.h"
#include "service.h"

#ifndef __bpf__
#include <linux/bpf.h> /* struct bpf_spin_lock */
#endif

enum sl_breaker_state {
	SL_BREAKER_CLOSED = 0,
	SL_BREAKER_OPEN = 1,
	SL_BREAKER_HALF_OPEN = 2,
};

/*
 * Value of sl_breakers (ARRAY indexed by backend id). Transitions happen in
 * the kernel under the lock; userspace reads and resets it with BPF_F_LOCK.
 */
struct sl_breaker {
	struct bpf_spin_lock lock;
	__u32 state; /* enum sl_breaker_state */
	__u32 consecutive_failures;
	__u32 times_ejected;	  /* scales the ejection time; decays on recovery */
	__u32 half_open_inflight; /* probes admitted and not yet resolved */
	__u32 pad;
	__u64 open_until_ns;	  /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
};
_Static_assert(sizeof(struct sl_breaker) == 32, "ABI: sl_breaker");

/* Value of sl_svc_state (ARRAY indexed by service id); the kernel changes it atomically. */
struct sl_svc_state {
	__u32 ejected; /* backends not CLOSED, bounded by max_ejection_percent */
	__u32 pad;
};
_Static_assert(sizeof(struct sl_svc_state) == 8, "ABI: sl_svc_state");

/* sl_sock_state.flags: each is cleared exactly once, by whoever resolves it first. */
#define SL_SOCK_LIVE (1U << 0)	  /* holds one count in sl_live[backend_id] */
#define SL_SOCK_PENDING (1U << 1) /* connect outcome not yet told to the breaker */
#define SL_SOCK_PROBE (1U << 2)	  /* admitted as a half-open probe */
#define SL_SOCK_ESTABLISHED (1U << 3) /* the handshake completed */

/*
 * Socket-local storage (sl_sock) of every TCP socket balanced to a backend.
 * It also stands in for sl_revnat for these sockets: getpeername() of a peer
 * equal to backend/backend_port shows svc's VIP, without an LRU update per
 * connect.
 */
struct sl_sock_state {
	struct sl_svc_key svc; /* the VIP; finds the service's settings at close time */
	struct sl_addr backend;
	__u32 backend_id;
	__u32 flags;
	__be16 backend_port;
	__u8 pad[2];
};
_Static_assert(sizeof(struct sl_sock_state) == 48, "ABI: sl_sock_state");

/* Key and value of sl_affinity (LRU): which backend a client was last sent to. */
struct sl_affinity_key {
	__u64 client; /* hash of the bound source, else the netns cookie */
	__u32 svc_id;
	__u32 pad;
};
_Static_assert(sizeof(struct sl_affinity_key) == 16, "ABI: sl_affinity_key");

struct sl_affinity {
	__u64 last_used_ns;
	__u32 backend_id;
	__u32 pad;
};
_Static_assert(sizeof(struct sl_affinity) == 16, "ABI: sl_affinity");

#define SL_AFFINITY_MAX 262144

#endif
