/* SPDX-License-Identifier: MIT */
/*
 * Loading, pinning and attaching the datapath, and reading back what is
 * loaded. sluicectl load/unload/status and the agent's start-up share it.
 */
#ifndef SL_LOADER_H
#define SL_LOADER_H

#include <stddef.h>
#include <linux/types.h>

struct sl_load_opts {
	const char *pin_root;
	const char *cgroup; /* NULL: the root of the cgroup v2 hierarchy */
	int no_conn_tracking; /* leave TCP sockets unfollowed: no breakers, no live counts */
	__u32 rl_clients;     /* entries of sl_rl_client; 0: as pinned, else the default */
	__u32 xdp_flows;      /* entries of sl_xdp_flows; the same rule */
};

/* Finds the cgroup v2 mount point in /proc/mounts. Returns 0 or -ENOENT. */
int sl_cgroup2_root(char *buf, size_t size);

/* Loads (or upgrades in place) and attaches everything; logs the cause of a failure. */
int sl_load(const struct sl_load_opts *o);
/* Detaches and removes what sl_load created under pin_root, and nothing else. */
int sl_unload(const char *pin_root);

#define SL_STATUS_MAX_OBJS 32

struct sl_prog_status {
	char name[16];
	__u32 prog_id;	  /* 0: not pinned */
	__u32 link_id;	  /* 0: not attached */
	__u32 attach_type; /* enum bpf_attach_type */
	__u64 cgroup_id;
	char cgroup[4096]; /* path, "" if unknown */
	__u64 run_cnt;
	__u64 run_time_ns;
};

struct sl_map_status {
	char name[16];
	__u32 map_id; /* 0: not pinned */
	__u32 type;   /* enum bpf_map_type */
	__u32 max_entries;
};

struct sl_xdp_status {
	char ifname[32];
	__u64 netns; /* inode of the interface's network namespace */
	__u32 ifindex;
	__u32 link_id;
	__u32 prog_id;
	char prog_name[16]; /* sl_xdp (forwarding) or sl_xdp_edge (--no-forward) */
};

struct sl_status {
	struct sl_xdp_status xdp[SL_STATUS_MAX_OBJS];
	size_t xdp_count;
	int loaded;	   /* the balancer's programs attached and every map pinned */
	int conn_tracking; /* and the connection tracking programs (sockops) attached */
	struct sl_prog_status progs[SL_STATUS_MAX_OBJS];
	size_t prog_count;
	struct sl_map_status maps[SL_STATUS_MAX_OBJS];
	size_t map_count;
};

int sl_status_read(const char *pin_root, struct sl_status *st);

enum sl_xdp_mode { SL_XDP_AUTO, SL_XDP_NATIVE, SL_XDP_GENERIC };

/*
 * Attaches sl_xdp (forward = 1: limits and load balancing) or sl_xdp_edge
 * (forward = 0: limits and counters only) to ifname (in the caller's network
 * namespace) through a link pinned as PIN_ROOT/links/xdp@NETNS:IFNAME. AUTO
 * tries native and falls back to generic with a warning; *used says which the
 * kernel has. Attaching again swaps in the fresh program and keeps the link's
 * mode.
 */
int sl_xdp_attach(const char *pin_root, const char *ifname, enum sl_xdp_mode mode, int forward,
		  enum sl_xdp_mode *used);
int sl_xdp_detach(const char *pin_root, const char *ifname);
/* 1 when ifname (this network namespace) has a live sl_xdp link; a stale pin is removed. */
int sl_xdp_attached(const char *pin_root, const char *ifname);

#endif
