// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Reference XDP programs for the ratelimit and xdplb parts of make bench
 * (tests/bench/xdpbench.c, tests/bench/xdplbbench.c): ref_pass returns XDP_PASS
 * (the per-call overhead to subtract), ref_drop returns XDP_DROP, ref_parse runs
 * sluice's own parser (bpf/lib/parse.h, as sl_xdp does) and passes: the cost of
 * parsing alone, no map lookups.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/parse.h"

SEC("xdp")
int ref_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int ref_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int ref_parse(struct xdp_md *ctx)
{
	struct packet p = {};

	if (parse_packet(ctx, &p))
		return XDP_PASS;
	/* The verdict depends on what the parse found, so none of it is optimised away. */
	return p.l4 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
