/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * New flows at XDP: the flow's hash picks a slot of the service's table
 * (for a maglev service, its Maglev table, so every node maps a flow to the
 * same backend and a backend change moves few flows); a backend that is
 * down or whose breaker is open is passed over for the next one of the
 * service's list. XDP sees neither connects nor closes, so it only reads the
 * socket datapath's breaker and health state, never changes it, and does not
 * apply max_connections.
 */
#ifndef SL_BPF_FLOW_H
#define SL_BPF_FLOW_H

#include "maps.h"
#include "parse.h"
#include "select.h"

struct xdp_pick {
	__u32 svc_id;
	__u32 list_base;
	__u32 list_len;
	__u32 start;
	__u32 id;
	int panic;
	__u64 now;
};

/* Whether a new flow may go to backend id: read-only, unlike select.h's backend_usable. */
static __always_inline int xdp_usable(struct xdp_pick *x, __u32 id)
{
	struct sl_be_health *be = bpf_map_lookup_elem(&sl_be_health, &id);
	struct sl_breaker *br;

	if (!be || be->svc_id != x->svc_id)
		return 0;
	if (x->panic)
		return 1;
	if (be->health == SL_HEALTH_DOWN)
		return 0;
	br = bpf_map_lookup_elem(&sl_breakers, &id);
	if (!br || br->state == SL_BREAKER_CLOSED)
		return 1;
	if (br->state == SL_BREAKER_HALF_OPEN) /* the socket side is probing it */
		return 0;
	/*
	 * OPEN until its time is up; then usable, as the socket side would probe
	 * it, so that a service only XDP serves does not lose the backend for good.
	 */
	if (!x->now)
		x->now = bpf_ktime_get_ns();
	return x->now >= br->open_until_ns;
}

static long xdp_scan_one(__u32 i, void *data)
{
	struct xdp_pick *x = data;
	__u32 svc_id = x->svc_id, id;
	void *slots;

	if (!x->list_len)
		return 1;
	slots = bpf_map_lookup_elem(&sl_svc_slots, &svc_id);
	if (!slots)
		return 1;
	id = slot_at(slots, x->list_base + (x->start + i) % x->list_len);
	if (id && xdp_usable(x, id)) {
		x->id = id;
		return 1;
	}
	return 0;
}

/*
 * Whether the service of VIP vs is in panic; read from sl_services, as
 * sl_xdp_vips does not copy what this needs: only a new flow whose first
 * choice is unusable asks.
 */
static __always_inline int xdp_svc_in_panic(const struct sl_xdp_vip *vs)
{
	struct sl_service *svc = bpf_map_lookup_elem(&sl_services, &vs->key);

	return svc && svc->id == vs->svc_id && svc_in_panic(svc);
}

/* A backend id for a new flow of hash h (sl_flow_hash) to VIP vs, or 0 when none is usable. */
static __always_inline __u32 xdp_pick_backend(const struct sl_xdp_vip *vs, __u64 h)
{
	struct xdp_pick x = { .svc_id = vs->svc_id };
	__u32 zero = 0, svc_id = vs->svc_id, n, *count, id;
	void *slots;

	slots = bpf_map_lookup_elem(&sl_svc_slots, &svc_id);
	count = slots ? bpf_map_lookup_elem(slots, &zero) : NULL;
	if (!count || *count == 0)
		return 0;
	n = *count;
	id = slot_at(slots, 1 + (__u32)h % n);
	if (id && xdp_usable(&x, id))
		return id;
	/* Panic matters only now: it lets every backend of the service be used. */
	x.panic = xdp_svc_in_panic(vs);
	if (x.panic && id && xdp_usable(&x, id))
		return id;
	x.list_base = n + 2;
	x.list_len = slot_at(slots, n + 1);
	x.start = (__u32)(h >> 32);
	if (x.list_len && x.list_len <= SL_MAX_BACKENDS_PER_SVC)
		bpf_loop(x.list_len, xdp_scan_one, &x, 0);
	return x.id;
}

#endif
