// SPDX-License-Identifier: MIT
/*
 * make bench, part ratelimit: ns per packet of sl_xdp_edge (bpf/xdp.bpf.c, the real
 * skeleton) under BPF_PROG_TEST_RUN beside reference programs
 * (tests/bench/xdpref.bpf.c: XDP_PASS, XDP_DROP, sluice's parser alone), all in one
 * process, interleaved over rounds, medians reported.
 *
 *   xdpbench REF_OBJ [-r ROUNDS] [-n REPEAT] [-c CALLS]
 *
 * sl_xdp_edge is the limits-only entry point (attach-xdp --no-forward): the same
 * parser, counters and limiters as sl_xdp, which also forwards VIP packets to
 * backends and so rewrites them (that path is the xdplb part, tests/bench/xdplbbench.c).
 * The limiters' cost is what this part measures, so it times sl_xdp_edge.
 *
 * The frame: Ethernet + IPv4 + UDP (32 bytes of payload) from 10.1.0.1 to the VIP
 * 10.96.0.10:53/udp (a service of id 1 in sl_services). Cases:
 *   sl_xdp_edge pass, no limit  sl_xdp_cfg {0, 0}: parse, VIP lookup, per-CPU counters
 *   sl_xdp_edge pass path       sl_xdp_cfg {2^32-1/s, 2^32-1}: also the source bucket
 *                               (lookup + compare-and-swap), never empty
 *   sl_xdp_edge drop path       sl_xdp_cfg {1/s, 1}, the source's bucket set an hour
 *                               ahead: every run drops (counted in dropped.source_rate)
 * sl_xdp_edge never rewrites the frame (checked: data_out == data_in), so `repeat` mode
 * (the kernel reruns the program REPEAT times on the same buffer and reports the
 * mean) measures the real per-packet cost here; see shared/BENCHMARKING.md. The
 * per-call figure (repeat = 1, CALLS calls, a fresh copy of the frame each, wall
 * clock around the syscalls) includes 50-65 ns of syscall and timer overhead: the
 * XDP_PASS program's per-call figure is subtracted beside it.
 *
 * Its own pin root /sys/fs/bpf/sluice-xdpbench-<pid>, removed on exit and on
 * SIGINT/SIGTERM. Needs root. Prints the table on stdout; exits 1 on any error or
 * unexpected verdict.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sluice/service.h"
#include "sluice/ratelimit.h"
#include "sluice/xdp.h"
#include "../lib/vip_filter.h"

#define BENCH_NAME "xdpbench"
#include "xdp_bench.h"

#define SRC "10.1.0.1"
#define VIP "10.96.0.10"
#define VIP_PORT 53
#define SVC_ID 1

/* --- the frame --------------------------------------------------------------------------- */

static __u8 frame[128];
static __u32 frame_len;

static void build_frame(void)
{
	static const __u8 macs[12] = { 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01 };
	struct iphdr ip = { .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP };
	struct udphdr udp = { .source = htons(40000), .dest = htons(VIP_PORT) };
	__be16 proto = htons(ETH_P_IP);
	size_t payload = 32;
	__u8 *p = frame;

	inet_pton(AF_INET, SRC, &ip.saddr);
	inet_pton(AF_INET, VIP, &ip.daddr);
	ip.tot_len = htons(sizeof(ip) + sizeof(udp) + payload);
	udp.len = htons(sizeof(udp) + payload);
	memcpy(p, macs, sizeof(macs));
	p += sizeof(macs);
	memcpy(p, &proto, 2);
	p += 2;
	memcpy(p, &ip, sizeof(ip));
	p += sizeof(ip);
	memcpy(p, &udp, sizeof(udp));
	p += sizeof(udp);
	memset(p, 0xab, payload);
	p += payload;
	frame_len = p - frame;
}

/* --- cases ------------------------------------------------------------------------------- */

enum { C_PASS, C_DROP, C_PARSE, C_SL_NOLIMIT, C_SL_PASS, C_SL_DROP, NCASES };

static const struct {
	const char *name;
	const char *what;
	int verdict;
} cases[NCASES] = {
	[C_PASS] = { "XDP_PASS", "return XDP_PASS (reference)", XDP_PASS },
	[C_DROP] = { "XDP_DROP", "return XDP_DROP (reference)", XDP_DROP },
	[C_PARSE] = { "parse only", "sluice's parse_packet, then XDP_PASS", XDP_PASS },
	[C_SL_NOLIMIT] = { "sl_xdp_edge no limit", "VIP lookup + counters, cfg 0", XDP_PASS },
	[C_SL_PASS] = { "sl_xdp_edge pass path", "+ source bucket CAS, never empty", XDP_PASS },
	[C_SL_DROP] = { "sl_xdp_edge drop path", "source over its limit, every run", XDP_DROP },
};

static int prog_fd[NCASES];

static void set_cfg(__u32 rate, __u32 burst)
{
	struct sl_xdp_cfg cfg = { .source_packets_per_second = rate, .source_burst = burst };
	__u32 zero = 0;
	int err;

	err = bpf_map_update_elem(bpf_map__fd(skel->maps.sl_xdp_cfg), &zero, &cfg, BPF_ANY);
	if (err)
		die("sl_xdp_cfg update", errno);
}

static void src_key(struct sl_xdp_src_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = SL_FAMILY_IPV4;
	inet_pton(AF_INET, SRC, &k->addr.words[0]);
}

/* Puts the maps in the state case C needs. */
static void prepare(int c)
{
	struct sl_xdp_src_key key;
	struct sl_rl_bucket b;

	src_key(&key);
	switch (c) {
	case C_SL_NOLIMIT:
		set_cfg(0, 0);
		break;
	case C_SL_PASS:
		set_cfg(UINT32_MAX, UINT32_MAX);
		/* A fresh source: its bucket starts full (now), and 1 ns per packet never empties it. */
		bpf_map_delete_elem(bpf_map__fd(skel->maps.sl_xdp_src), &key);
		break;
	case C_SL_DROP:
		set_cfg(1, 1);
		b.tat_ns = mono_ns() + 3600 * NS_PER_SEC;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_xdp_src), &key, &b, BPF_ANY))
			die("sl_xdp_src update", errno);
		break;
	}
}

static __u64 drops_counted(void)
{
	int n = libbpf_num_possible_cpus();
	struct sl_xdp_stats per[n];
	__u32 id = SVC_ID;
	__u64 sum = 0;

	if (xdp_cpu_read(bpf_map__fd(skel->maps.sl_xdp_stats), SL_XDP_STATS_STRIDE, id, per,
			 sizeof(per[0])))
		die("sl_xdp_stats lookup", errno);
	for (int i = 0; i < n; i++)
		sum += per[i].dropped[SL_XDP_DROP_SOURCE_RATE];
	return sum;
}

/* One test run of case C; returns the kernel's mean ns per run. */
static double run(int c, __u32 repeat)
{
	__u8 out[sizeof(frame)];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = frame_len,
		    .data_out = out, .data_size_out = sizeof(out), .repeat = repeat);
	int err;

	err = bpf_prog_test_run_opts(prog_fd[c], &opts);
	if (err)
		die("bpf_prog_test_run_opts", errno);
	if ((int)opts.retval != cases[c].verdict) {
		fprintf(stderr, "xdpbench: %s: verdict %u, expected %d\n", cases[c].name,
			opts.retval, cases[c].verdict);
		exit(1);
	}
	if (opts.data_size_out != frame_len || memcmp(out, frame, frame_len)) {
		fprintf(stderr, "xdpbench: %s: the frame came back changed\n", cases[c].name);
		exit(1);
	}
	return opts.duration;
}

static double minimum(const double *v, int n)
{
	double m = v[0];

	for (int i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

int main(int argc, char **argv)
{
	static double rep[NCASES][MAX_ROUNDS], call[NCASES][MAX_ROUNDS], kcall[NCASES][MAX_ROUNDS];
	static const char *ref_progs[] = { [C_PASS] = "ref_pass", [C_DROP] = "ref_drop",
					   [C_PARSE] = "ref_parse" };
	int rounds = 7, opt;
	__u32 repeat = 1000000, calls = 20000;
	struct sl_svc_key key = { 0 };
	struct sl_service svc = { 0 };
	struct sl_rl_bucket full = { 0 };
	__u64 drops0, drop_runs = 0;
	__u32 id = SVC_ID;

	while ((opt = getopt(argc, argv, "r:n:c:")) != -1) {
		switch (opt) {
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'n':
			repeat = strtoul(optarg, NULL, 10);
			break;
		case 'c':
			calls = strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || rounds < 1 || rounds > MAX_ROUNDS || !repeat || !calls) {
usage:
		fprintf(stderr, "usage: xdpbench REF_OBJ [-r ROUNDS (1..%d)] [-n REPEAT] [-c CALLS]\n",
			MAX_ROUNDS);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "xdpbench: needs root\n");
		return 1;
	}
	build_frame();

	bench_load(argv[optind]);
	key.family = SL_FAMILY_IPV4;
	inet_pton(AF_INET, VIP, &key.vip.words[0]);
	key.port = htons(VIP_PORT);
	key.proto = IPPROTO_UDP;
	svc.id = SVC_ID;
	snprintf(svc.name, sizeof(svc.name), "bench");
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_services), &key, &svc, BPF_NOEXIST))
		die("sl_services update", errno);
	if (vip_filter_add(bpf_map__fd(skel->maps.sl_vip_filter), &key))
		die("sl_vip_filter update", errno);
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_xdp_syn), &id, &full, BPF_ANY))
		die("sl_xdp_syn update", errno);
	for (int c = 0; c < C_SL_NOLIMIT; c++)
		prog_fd[c] = ref_prog_fd(ref_progs[c], argv[optind]);
	for (int c = C_SL_NOLIMIT; c < NCASES; c++)
		prog_fd[c] = bpf_program__fd(skel->progs.sl_xdp_edge);

	/* Warm-up: every case once, briefly. */
	for (int c = 0; c < NCASES; c++) {
		prepare(c);
		run(c, 1000);
	}
	drops0 = drops_counted();
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < NCASES; k++) {
			int c = (r + k) % NCASES;
			double ksum = 0;
			__u64 t0, t1;

			prepare(c);
			rep[c][r] = run(c, repeat);
			t0 = mono_ns();
			for (__u32 i = 0; i < calls; i++)
				ksum += run(c, 1);
			t1 = mono_ns();
			call[c][r] = (double)(t1 - t0) / calls;
			kcall[c][r] = ksum / calls;
			if (c == C_SL_DROP)
				drop_runs += repeat + calls;
		}
	}
	if (drops_counted() - drops0 != drop_runs) {
		fprintf(stderr, "xdpbench: sl_xdp_stats dropped.source_rate moved by %llu, expected %llu\n",
			(unsigned long long)(drops_counted() - drops0), (unsigned long long)drop_runs);
		return 1;
	}

	double pass_call = median(call[C_PASS], rounds), pass_k = median(kcall[C_PASS], rounds);

	printf("  %-22s %-36s %8s %8s | %9s %10s | %9s %10s\n", "program", "what runs",
	       "repeat", "(min)", "per call", "-XDP_PASS", "syscall", "-XDP_PASS");
	for (int c = 0; c < NCASES; c++) {
		double pc = median(call[c], rounds), pk = median(kcall[c], rounds);

		printf("  %-22s %-36s %5.1f ns %5.1f ns | %6.1f ns %7.1f ns | %6.0f ns %7.1f ns\n",
		       cases[c].name, cases[c].what, median(rep[c], rounds),
		       minimum(rep[c], rounds), pk, pk - pass_k, pc, pc - pass_call);
	}
	printf("  sl_xdp_edge: drop path - pass path = %.1f ns, pass path - parse only = %.1f ns,"
	       " limiter on - off (pass) = %.1f ns (repeat medians)\n",
	       median(rep[C_SL_DROP], rounds) - median(rep[C_SL_PASS], rounds),
	       median(rep[C_SL_PASS], rounds) - median(rep[C_PARSE], rounds),
	       median(rep[C_SL_PASS], rounds) - median(rep[C_SL_NOLIMIT], rounds));
	printf("  checked: every run's verdict, the frame unchanged, dropped.source_rate +%llu"
	       " = the drop path's runs\n", (unsigned long long)drop_runs);
	return 0;
}
