/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP flow table: which backend each flow to a VIP was given, so that an
 * established flow keeps it while the service's backend set changes.
 */
#ifndef SLUICE_FLOW_H
#define SLUICE_FLOW_H

#include "types.h"

#define SL_XDP_FLOWS_DEFAULT 262144

/* Key of sl_xdp_flows (LRU): the packet's 5-tuple as it arrives. Zero it whole first. */
struct sl_flow_key {
	struct sl_addr src;
	struct sl_addr dst; /* the VIP */
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};
_Static_assert(sizeof(struct sl_flow_key) == 40, "ABI: sl_flow_key");

struct sl_flow {
	__u32 backend_id;
	__u32 svc_id; /* the backend must still belong to it, or the flow is chosen anew */
};
_Static_assert(sizeof(struct sl_flow) == 8, "ABI: sl_flow");

#endif
