// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP at the node's edge (sluicectl attach-xdp): packets per second per
 * source address and TCP SYNs per second per VIP, dropped before the stack
 * allocates anything; packets to a VIP:port balanced over the service's
 * backends by direct server return (lib/forward.h), each flow kept on its
 * backend by a flow table (lib/flowtable.h); packets and bytes counted per VIP and per
 * backend. Everything else (ARP, other ethertypes, frames cut short, other
 * protocols, fragments, non-VIP traffic) is passed untouched.
 *
 * Two entry points share the code: sl_xdp forwards, sl_xdp_edge (attach-xdp
 * --no-forward) only limits and counts, for a node that serves its VIPs
 * itself.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/bucket.h"
#include "lib/flow.h"
#include "lib/flowtable.h"
#include "lib/forward.h"

/* One bucket per source; a new source starts full less the packet it sends now. */
static __always_inline int source_take(const struct packet *p, const struct sl_xdp_cfg *cfg,
				       __u64 now)
{
	struct sl_xdp_src_key key = { .addr = p->src, .family = p->family };
	struct sl_rl_bucket *b, fresh = {};

	b = bpf_map_lookup_elem(&sl_xdp_src, &key);
	if (!b) {
		fresh.tat_ns = now + NS_PER_SEC / cfg->source_packets_per_second;
		if (!bpf_map_update_elem(&sl_xdp_src, &key, &fresh, BPF_NOEXIST))
			return 1;
		b = bpf_map_lookup_elem(&sl_xdp_src, &key);
		if (!b)
			return 1;
	}
	return bucket_take(&b->tat_ns, cfg->source_packets_per_second, cfg->source_burst, now);
}

static __always_inline int syn_take(const struct sl_xdp_vip *vs, __u64 now)
{
	__u32 svc_id = vs->svc_id;
	struct sl_rl_bucket *b = bpf_map_lookup_elem(&sl_xdp_syn, &svc_id);

	return !b || bucket_take(&b->tat_ns, vs->syn_per_second, vs->syn_burst, now);
}

/* The backend of a known flow of hash h to service svc_id, or 0. */
static __always_inline __u32 flow_lookup(const struct sl_flow_key *key, __u64 h, __u32 svc_id,
					 __u32 now)
{
	__u32 i = flow_bucket_index(h);
	struct sl_flow_bucket *b = flow_bucket(i);
	struct flow_hit hit;

	if (!b || !flow_find(b, i, flow_fp(key), &hit) || hit.svc_id != svc_id)
		return 0;
	flow_seen(&hit, now);
	return hit.backend_id;
}

/* A backend for a new flow of hash h, remembered; 0 when none is usable. */
static __always_inline __u32 flow_new(const struct sl_flow_key *key, __u64 h,
				      const struct sl_xdp_vip *vs, struct sl_xdp_stats *st,
				      __u32 now)
{
	struct sl_xdp_be_stats *bs;
	__u32 *ix = flow_index_word(flow_bucket_index(h)); /* read first: see flow_remember */
	__u32 word = ix ? READ_ONCE_U32(*ix) : 0;
	__u32 id = xdp_pick_backend(vs, h);

	if (!id)
		return 0;
	flow_remember(key, h, vs->svc_id, id, now, ix, word);
	st->new_flows++;
	bs = xdp_be_stats_of(id);
	if (bs)
		bs->new_flows++;
	return id;
}

/*
 * A flow keeps the backend the flow table gives it while that backend still
 * serves svc; otherwise (and always for a TCP SYN, which starts a new
 * connection on a possibly reused 4-tuple) it gets a new one. A valid cached
 * route stands for "still serves": the reconciler empties it when it removes
 * the backend, and a refill reads sl_backends.
 */
static __always_inline int balance(struct xdp_md *ctx, const struct packet *p,
				   const struct sl_flow_key *key, __u64 h, const struct sl_xdp_vip *vs,
				   int syn, struct sl_xdp_stats *st)
{
	struct sl_xdp_nexthop *nh = NULL;
	struct sl_xdp_be_stats *bs;
	__u64 jiffies = bpf_jiffies64(); /* one read for the flow table and the route cache */
	__u32 id = 0, why = 0, now = (__u32)jiffies;
	int action;

	/* Checked before a flow is chosen, so that nothing is remembered for these. */
	if (p->l3_off + p->ip_len > p->len) {
		st->dropped[SL_XDP_DROP_MALFORMED]++;
		return XDP_DROP;
	}
	if (p->l3_off != sizeof(struct ethhdr)) {
		st->passed[SL_XDP_PASS_VLAN]++;
		return XDP_PASS;
	}
	if (!syn) {
		id = flow_lookup(key, h, vs->svc_id, now);
		if (id) {
			nh = nexthop_get(ctx, p, vs->svc_id, id, jiffies, &why);
			if (!nh && why == NEXTHOP_GONE)
				id = 0;
		}
		if (id)
			st->flow_hits++;
		else
			st->flow_misses++;
	}
	if (!id) {
		id = flow_new(key, h, vs, st, now);
		if (!id) {
			st->dropped[SL_XDP_DROP_NO_BACKEND]++;
			return XDP_DROP;
		}
		nh = nexthop_get(ctx, p, vs->svc_id, id, jiffies, &why);
	}
	if (!nh) {
		/* GONE here: removed between the choice and now; the stack drops it. */
		st->passed[why < SL_XDP_PASS_COUNT ? why : SL_XDP_PASS_NO_ROUTE]++;
		return XDP_PASS;
	}
	action = dsr_forward(ctx, p, nh, &why);
	if (action == XDP_PASS) {
		if (why < SL_XDP_PASS_COUNT)
			st->passed[why]++;
		return XDP_PASS;
	}
	st->forwarded++;
	st->forwarded_bytes += p->len;
	bs = xdp_be_stats_of(id);
	if (bs) {
		bs->packets++;
		bs->bytes += p->len;
	}
	return action;
}

/* Whether filter bit may be a VIP's (no false negatives; see struct sl_vip_filter). */
static __always_inline int maybe_vip(__u32 bit)
{
	__u32 zero = 0;
	struct sl_vip_filter *f = bpf_map_lookup_elem(&sl_vip_filter, &zero);

	return !f || sl_vip_filter_has(f, bit);
}

static __always_inline int svc_key_equal(const struct sl_svc_key *a, const struct sl_svc_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]));
}

/*
 * The service of a packet to VIP key (filter bit bit) into *vs: its
 * sl_xdp_vips slot, read once, when that names the VIP whole and checks;
 * else sl_services. Returns 0 when no service has the VIP.
 */
static __always_inline int vip_service(const struct sl_svc_key *key, __u32 bit,
				       struct sl_xdp_vip *vs)
{
	__u32 slot = sl_xdp_vip_slot(bit);
	struct sl_xdp_vip *v = bpf_map_lookup_elem(&sl_xdp_vips, &slot);
	struct sl_service *svc;

	if (v) {
		*vs = *v;
		if (vs->svc_id && svc_key_equal(&vs->key, key) && vs->check == sl_xdp_vip_check(vs))
			return 1;
	}
	svc = bpf_map_lookup_elem(&sl_services, key);
	if (!svc) {
		__builtin_memset(vs, 0, sizeof(*vs));
		return 0;
	}
	*vs = sl_xdp_vip_of(key, svc);
	return 1;
}

/*
 * A packet of a known flow whose backend's route is cached: forwarded on
 * one hash lookup (the flow's), without the service's. A fresh cached route
 * stands for "the backend still exists", so the service does too (a
 * service's backends go with it). Returns the action, or -1 for the full path.
 */
static __always_inline int fast_forward(struct xdp_md *ctx, const struct packet *p,
					const struct sl_flow_key *key, __u64 h)
{
	__u32 i = flow_bucket_index(h), why;
	struct sl_flow_bucket *b = flow_bucket(i);
	struct sl_xdp_backend *xb;
	struct sl_xdp_nexthop *nh;
	struct sl_xdp_stats *st;
	struct flow_hit hit;
	__u64 now;
	int action;

	if (!b || !flow_find(b, i, flow_fp(key), &hit))
		return -1;
	xb = xdp_backend_of(hit.backend_id); /* its route and counters, one entry */
	if (!xb)
		return -1;
	nh = xdp_route(xb);
	now = bpf_jiffies64();
	if (nh->expires <= now)
		return -1;
	st = xdp_stats_of(hit.svc_id);
	if (!st)
		return -1;
	action = dsr_forward(ctx, p, nh, &why);
	if (action == XDP_PASS) /* unchanged: the full path counts why */
		return -1;
	flow_seen(&hit, (__u32)now);
	st->packets++;
	st->bytes += p->len;
	st->flow_hits++;
	st->forwarded++;
	st->forwarded_bytes += p->len;
	xb->stats.packets++;
	xb->stats.bytes += p->len;
	return action;
}

static __always_inline int edge(struct xdp_md *ctx, const int forward)
{
	struct sl_xdp_vip vs = {};
	struct sl_xdp_stats *st;
	struct sl_xdp_cfg *cfg;
	struct sl_flow_key key __attribute__((aligned(8))) = {};
	struct packet p = {};
	__u32 zero = 0, bit = 0;
	__u64 now = 0, h = 0;
	int syn, vip, svc = 0;

	if (parse_packet(ctx, &p))
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&sl_xdp_cfg, &zero);
	if (p.l4)
		bit = sl_vip_filter_bit(&p.dst, p.dport);
	vip = p.l4 && maybe_vip(bit);
	if (vip) { /* the flow's key and hash, for the fast path and balance() alike */
		key = (struct sl_flow_key){
			.src = p.src, .dst = p.dst, .sport = p.sport, .dport = p.dport,
			.proto = p.proto, .family = p.family,
		};
		h = sl_flow_hash(&key);
	}
	syn = p.proto == IPPROTO_TCP && (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	/*
	 * The common case first: a packet of an established flow, when no
	 * per-source limit applies (its drops are counted by VIP, which needs the
	 * service) and the frame is one the full path would forward as it is.
	 */
	if (forward && vip && !syn && p.l3_off == sizeof(struct ethhdr) &&
	    p.l3_off + p.ip_len <= p.len && (!cfg || !cfg->source_packets_per_second)) {
		int action = fast_forward(ctx, &p, &key, h);

		if (action >= 0)
			return action;
	}
	if (vip) {
		struct sl_svc_key key = {
			.vip = p.dst, .port = p.dport, .proto = p.proto, .family = p.family,
		};

		svc = vip_service(&key, bit, &vs);
	}
	st = xdp_stats_of(vs.svc_id);
	if (!st)
		return XDP_PASS;
	/* This CPU's entry: plain increments are race-free. */
	st->packets++;
	st->bytes += p.len;

	if (cfg && cfg->source_packets_per_second) {
		now = bpf_ktime_get_ns();
		if (!source_take(&p, cfg, now)) {
			st->dropped[SL_XDP_DROP_SOURCE_RATE]++;
			return XDP_DROP;
		}
	}
	if (!svc)
		return XDP_PASS;
	if (syn) {
		st->syns++;
		if (vs.syn_per_second) {
			if (!now)
				now = bpf_ktime_get_ns();
			if (!syn_take(&vs, now)) {
				st->dropped[SL_XDP_DROP_SYN_RATE]++;
				return XDP_DROP;
			}
		}
	}
	if (!forward) {
		st->passed[SL_XDP_PASS_NOT_FORWARDING]++;
		return XDP_PASS;
	}
	return balance(ctx, &p, &key, h, &vs, syn, st);
}

SEC("xdp")
int sl_xdp(struct xdp_md *ctx)
{
	return edge(ctx, 1);
}

SEC("xdp")
int sl_xdp_edge(struct xdp_md *ctx)
{
	return edge(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
