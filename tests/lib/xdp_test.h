/* SPDX-License-Identifier: MIT */
/*
 * The BPF_PROG_TEST_RUN tests of the xdp object (test_xdp.c, test_xdp_lb.c):
 * the skeleton, loaded as sluicectl's loader would (its per-CPU maps sized)
 * under a pin root of the test's own, BPFFS/sluice-TAG-PID, that is removed
 * at exit, on a sanitizer's finding and on SIGINT/SIGTERM/SIGPIPE. Define
 * TEST_NAME before including it.
 */
#ifndef SL_TESTS_XDP_TEST_H
#define SL_TESTS_XDP_TEST_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "xdp.skel.h"
#include "pin_root.h"
#include "xdp_cpu_maps.h"

#define BPFFS "/sys/fs/bpf"

static struct xdp_bpf *skel;
static char pin_root[64];
static char skip_reason[160]; /* set by a setup that cannot run here: every case skips */
static char load_error[512];  /* set by a setup that failed: every case fails with it */
static int ncpus;

/* Unpins and removes everything under the pin root; safe to call more than once. */
static void cleanup(void)
{
	remove_pin_root(skel ? skel->obj : NULL, pin_root, TEST_NAME);
	xdp_bpf__destroy(skel);
	skel = NULL;
}

/* With -fno-sanitize-recover a finding ends the process without atexit handlers. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The flow table's fingerprint seed in the tests (the loader draws one per table). */
#define XDP_TEST_FLOW_SEED 0x5eed0f10e5eed5ULL

/* The skeleton under BPFFS/sluice-TAG-PID; 0, or -1 with load_error set. */
static int xdp_test_load(const char *tag)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	int err;

	ncpus = libbpf_num_possible_cpus();
	snprintf(pin_root, sizeof(pin_root), BPFFS "/sluice-%s-%d", tag, (int)getpid());
	atexit(cleanup);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, on_signal); /* output piped into head(1) */
	err = mkdir(pin_root, 0700);
	if (err && errno == EEXIST) {
		/* Left by a killed earlier run with our pid: ours by name, cleared first. */
		cleanup();
		snprintf(pin_root, sizeof(pin_root), BPFFS "/sluice-%s-%d", tag, (int)getpid());
		err = mkdir(pin_root, 0700);
	}
	if (err) {
		snprintf(load_error, sizeof(load_error), "cannot make %s: %s", pin_root,
			 strerror(errno));
		return -1;
	}
	opts.pin_root_path = pin_root;
	skel = xdp_bpf__open_opts(&opts);
	if (!skel) {
		snprintf(load_error, sizeof(load_error), "xdp_bpf__open_opts: %s", strerror(errno));
		return -1;
	}
	skel->rodata->flow_seed = XDP_TEST_FLOW_SEED; /* as the loader sets it from the pin */
	err = xdp_cpu_maps_size(skel->obj);
	if (!err)
		err = xdp_bpf__load(skel);
	if (err) {
		snprintf(load_error, sizeof(load_error), "xdp_bpf__load: %s", strerror(-err));
		return -1;
	}
	return 0;
}

#endif
