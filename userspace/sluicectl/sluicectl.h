/* SPDX-License-Identifier: MIT */
#ifndef SLUICECTL_H
#define SLUICECTL_H

#include <stdio.h>
#include <jansson.h>

#include "lib/maps.h"
#include "lib/state.h"

/* Exit statuses: only main turns results into these. */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

struct ctl {
	int json;
	int pretty;
	int dry_run;
	int no_conn_tracking;
	__u32 rl_clients;
	__u32 xdp_flows;
	const char *xdp_mode;
	int no_forward;
	const char *pin_root;
	const char *cgroup;
	/* The Redis registry (registry, register, deregister). */
	const char *registry;
	const char *redis_prefix;
	const char *redis_password_file;
	long ttl;	/* -1: not given */
	unsigned int weight; /* 0: not given */
	int heartbeat;
	int replace;
	int argc; /* arguments after the object name */
	char **argv;
};

/* Handlers return 0 or -errno, having logged why, or CTL_EUSAGE after printing usage. */
#define CTL_EUSAGE (-10000)

int do_load(struct ctl *c);
int do_unload(struct ctl *c);
int do_status(struct ctl *c);
int do_apply(struct ctl *c);
int do_services(struct ctl *c);
int do_backends(struct ctl *c);
int do_breakers(struct ctl *c);
int do_stats(struct ctl *c);
int do_flow(struct ctl *c);
int do_attach_xdp(struct ctl *c);
int do_detach_xdp(struct ctl *c);
int do_registry(struct ctl *c);
int do_register(struct ctl *c);
int do_deregister(struct ctl *c);

/* Prints one JSON document on stdout (stolen reference). */
void ctl_print_json(const struct ctl *c, json_t *doc);
/* Opens the pinned maps and reads services and backends; logs why not. */
int ctl_read_state(const struct ctl *c, struct sl_maps *m, struct sl_state *st);
void ctl_release_state(struct sl_maps *m, struct sl_state *st);
/* 0 when name is NULL (every service) or a service in st; else logs it and -ENOENT. */
int ctl_check_service(const struct ctl *c, const struct sl_state *st, const char *name);
/* Consumes an optional show/list verb; returns -1 for "help". */
int ctl_take_show_verb(struct ctl *c);
void usage(void);
void usage_to(FILE *out);

#endif
