// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP at the node's edge (sluicectl attach-xdp): packets per second per
 * source address and TCP SYNs per second per VIP, dropped before the stack
 * allocates anything, and packets/bytes counted per VIP. Everything else
 * (ARP, other ethertypes, frames cut short, other protocols, fragments) is
 * passed untouched.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/bucket.h"

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

static __always_inline int syn_take(const struct sl_service *svc, __u64 now)
{
	__u32 svc_id = svc->id;
	struct sl_rl_bucket *b = bpf_map_lookup_elem(&sl_xdp_syn, &svc_id);

	return !b || bucket_take(&b->tat_ns, svc->syn_per_second, svc->syn_burst, now);
}

SEC("xdp")
int sl_xdp(struct xdp_md *ctx)
{
	struct sl_service *svc = NULL;
	struct sl_xdp_stats *st;
	struct sl_xdp_cfg *cfg;
	struct packet p = {};
	__u32 svc_id = 0, zero = 0;
	__u64 now = 0;

	if (parse_packet(ctx, &p))
		return XDP_PASS;
	if (p.l4) {
		struct sl_svc_key key = {
			.vip = p.dst, .port = p.dport, .proto = p.proto, .family = p.family,
		};

		svc = bpf_map_lookup_elem(&sl_services, &key);
		if (svc)
			svc_id = svc->id;
	}
	st = bpf_map_lookup_elem(&sl_xdp_stats, &svc_id);
	if (!st)
		return XDP_PASS;
	/* Per-CPU value: plain increments are race-free. */
	st->packets++;
	st->bytes += p.len;

	cfg = bpf_map_lookup_elem(&sl_xdp_cfg, &zero);
	if (cfg && cfg->source_packets_per_second) {
		now = bpf_ktime_get_ns();
		if (!source_take(&p, cfg, now)) {
			st->dropped[SL_XDP_DROP_SOURCE_RATE]++;
			return XDP_DROP;
		}
	}
	if (svc && p.proto == IPPROTO_TCP &&
	    (p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		st->syns++;
		if (svc->syn_per_second) {
			if (!now)
				now = bpf_ktime_get_ns();
			if (!syn_take(svc, now)) {
				st->dropped[SL_XDP_DROP_SYN_RATE]++;
				return XDP_DROP;
			}
		}
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
