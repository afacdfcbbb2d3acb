/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* XDP at the node's edge: per-source packet limits, per-VIP SYN limits, per-VIP counters. */
#ifndef SLUICE_XDP_H
#define SLUICE_XDP_H

#include "types.h"

#define SL_XDP_SOURCES_DEFAULT 262144

/* The registry's "global": {"xdp": {...}}: one entry of sl_xdp_cfg. 0 = unlimited. */
struct sl_xdp_cfg {
	__u32 source_packets_per_second;
	__u32 source_burst;
};
_Static_assert(sizeof(struct sl_xdp_cfg) == 8, "ABI: sl_xdp_cfg");

/* Key of sl_xdp_src (LRU): one packet bucket (struct sl_rl_bucket) per source address. */
struct sl_xdp_src_key {
	struct sl_addr addr;
	__u8 family;
	__u8 pad[3];
};
_Static_assert(sizeof(struct sl_xdp_src_key) == 20, "ABI: sl_xdp_src_key");

/* Why XDP dropped a packet; named by sl_xdp_drop_name(). */
enum sl_xdp_drop {
	SL_XDP_DROP_SOURCE_RATE = 0, /* its source sent over source_packets_per_second */
	SL_XDP_DROP_SYN_RATE = 1,    /* a SYN over its VIP's syn_per_second */
	SL_XDP_DROP_COUNT = 4,
};

/*
 * Value of sl_xdp_stats (PERCPU_ARRAY indexed by service id; index 0 counts
 * packets to no VIP). Packets that reach XDP, by VIP.
 */
struct sl_xdp_stats {
	__u64 packets;
	__u64 bytes;
	__u64 syns;
	__u64 dropped[SL_XDP_DROP_COUNT];
};
_Static_assert(sizeof(struct sl_xdp_stats) == 56, "ABI: sl_xdp_stats");

#endif
