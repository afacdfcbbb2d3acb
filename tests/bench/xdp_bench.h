/* SPDX-License-Identifier: MIT */
/*
 * What the two XDP benches share (xdpbench.c: the ratelimit part, xdplbbench.c:
 * the xdplb part): the real xdp skeleton and the reference programs
 * (xdpref.bpf.c) loaded under a pin root of their own, BPFFS/sluice-NAME-PID,
 * removed at exit and on SIGINT/SIGTERM; errors that end the run; the clock;
 * medians over rounds. Define BENCH_NAME before including it.
 */
#ifndef SL_XDP_BENCH_H
#define SL_XDP_BENCH_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "xdp.skel.h"
#include "../lib/pin_root.h"
#include "../lib/xdp_cpu_maps.h"

#define BPFFS "/sys/fs/bpf"
#define NS_PER_SEC 1000000000ULL
#define MAX_ROUNDS 99

static struct xdp_bpf *skel;
static struct bpf_object *ref;
static char pin_root[64];

static void cleanup(void)
{
	if (ref) {
		bpf_object__close(ref);
		ref = NULL;
	}
	remove_pin_root(skel ? skel->obj : NULL, pin_root, BENCH_NAME);
	xdp_bpf__destroy(skel);
	skel = NULL;
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void die(const char *what, int err)
{
	fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static __u64 mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_ROUNDS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* skel (sized as the loader sizes it) under the bench's own pin root, and ref from ref_path. */
static void bench_load(const char *ref_path)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	int err;

	snprintf(pin_root, sizeof(pin_root), BPFFS "/sluice-" BENCH_NAME "-%d", (int)getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (mkdir(pin_root, 0700)) {
		err = errno;
		pin_root[0] = 0;
		die("mkdir " BPFFS "/sluice-" BENCH_NAME "-PID", err);
	}
	opts.pin_root_path = pin_root;
	skel = xdp_bpf__open_opts(&opts);
	if (!skel)
		die("xdp_bpf__open_opts", errno);
	skel->rodata->flow_seed = 0x5eed0f10e5eed5ULL; /* the loader draws one per table */
	err = xdp_cpu_maps_size(skel->obj);
	if (err)
		die("sizing the per-CPU maps", err);
	err = xdp_bpf__load(skel);
	if (err)
		die("xdp_bpf__load", err);
	ref = bpf_object__open_file(ref_path, NULL);
	if (!ref)
		die(ref_path, errno);
	err = bpf_object__load(ref);
	if (err)
		die("loading the reference programs", err);
}

/* The fd of reference program name, or exit. */
static int ref_prog_fd(const char *name, const char *ref_path)
{
	struct bpf_program *p = bpf_object__find_program_by_name(ref, name);

	if (!p) {
		fprintf(stderr, BENCH_NAME ": no program %s in %s\n", name, ref_path);
		exit(1);
	}
	return bpf_program__fd(p);
}

#endif
