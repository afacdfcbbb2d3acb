// SPDX-License-Identifier: MIT
/*
 * make bench, part xdplb: ns per packet of sl_xdp's load balancing (bpf/xdp.bpf.c,
 * the real skeleton) under BPF_PROG_TEST_RUN beside reference programs
 * (tests/bench/xdpref.bpf.c: XDP_PASS, XDP_DROP, sluice's parser alone), all in one
 * process, interleaved over rounds, medians reported.
 *
 *   xdplbbench REF_OBJ [-r ROUNDS] [-c CALLS] [-n REPEAT]
 *
 * sl_xdp rewrites the frames it forwards (MACs, TTL, IPv4 checksum), so with
 * `repeat` the kernel would rerun it on its own output (shared/BENCHMARKING.md).
 * Every program is therefore timed ONE packet per call: repeat = 1, CALLS calls per
 * round, each call handing the kernel the pristine frame again (test_run copies
 * data_in into a fresh buffer per call and returns the rewrite in data_out, so
 * data_in is never changed). Two figures per call: the kernel's own duration at
 * repeat 1 ("per call", includes ~50-65 ns of timer overhead) and the wall clock
 * around the bpf() syscall ("syscall"); each also net of the XDP_PASS program
 * timed the same way in the same round. The targets are judged on the per-call
 * figure net of XDP_PASS. Repeat-mode figures are printed only for the programs
 * that leave the frame unchanged (non-VIP, parse only, PASS, DROP), as context.
 *
 * Cases (Ethernet + IPv4 + TCP, no payload, 54 bytes):
 *   flow-table hit  sl_xdp, an ACK of an established flow to the VIP 10.96.2.10:80:
 *                   parse, VIP lookup, flow lookup, backend lookup, FIB lookup, L2
 *                   rewrite, XDP_REDIRECT
 *   new flow        sl_xdp, a SYN (a SYN always chooses anew): + Maglev slot lookup,
 *                   health and breaker checks, flow-table write; source ports
 *                   cycle over 4,096 pre-built frames
 *   non-VIP         sl_xdp, a SYN to 10.96.2.99:80 (no service): parse, VIP lookup
 *                   miss, counters, XDP_PASS
 *   parse only      sluice's parse_packet, XDP_PASS (on the flow-table-hit frame)
 *   XDP_DROP, XDP_PASS  reference programs on the same frame
 * The service: 16 backends on a veth (lbout) with permanent neighbours, a selection
 * table of 8,191 slots (the Maglev size for 16 backends), panic off, its VIP's
 * sl_xdp_vips slot written as an apply writes it (a SYN reads the service there,
 * not in the sl_services hash); the flow table
 * at its default size (262,144), far above the 4,097 flows used. XDP_REDIRECT under
 * test_run does not run the redirect itself (no live frames): the figures are the
 * program's cost, like any XDP LB measured this way.
 *
 * Runs in a private network namespace (unshare(CLONE_NEWNET); ip(8) builds lbin and
 * lbout with forwarding on), its own pin root /sys/fs/bpf/sluice-xdplbbench-<pid>
 * removed on exit and on SIGINT/SIGTERM. Needs root. Checks every verdict, the
 * rewritten frame once per round and case, and the flow counters at the end. Prints
 * the table on stdout; exits 1 on any error or unexpected result.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
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
#include <linux/tcp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sluice/service.h"
#include "sluice/backend.h"
#include "sluice/xdp.h"
#include "../lib/vip_filter.h"

#define BENCH_NAME "xdplbbench"
#include "xdp_bench.h"

#define CLIENT "192.0.2.1"
#define VIP "10.96.2.10"
#define NON_VIP "10.96.2.99"
#define VIP_PORT 80
#define SVC_ID 1
#define NBACKENDS 16
#define TABLE_SLOTS 8191
#define NSYN 4096
#define FRAME_LEN (ETH_HLEN + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* The targets, ns per packet, per call net of XDP_PASS. */
#define TARGET_HIT 110
#define TARGET_NEW 230
#define TARGET_NONVIP 80

static const __u8 lbin_mac[ETH_ALEN] = { 0x02, 0x10, 0, 0, 0, 0x01 };
static const __u8 lbout_mac[ETH_ALEN] = { 0x02, 0x11, 0, 0, 0, 0x01 };

static void sh(const char *cmd)
{
	int rc = system(cmd);

	if (rc) {
		fprintf(stderr, "xdplbbench: `%s` failed (status %d)\n", cmd, rc);
		exit(1);
	}
}

static void write_sysctl(const char *path, const char *v)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(v, f) < 0 || fclose(f))
		die(path, errno);
}

/* --- frames ------------------------------------------------------------------------------ */

static __u16 csum_fold(__u32 s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

static __u32 sum16(const __u8 *b, size_t n, __u32 s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (b[i] << 8) | b[i + 1];
	return s;
}

/* Ethernet to lbin + IPv4 (ttl 64, valid checksum) + TCP (valid checksum). */
static void build_frame(__u8 *f, const char *dst, __u16 sport, __u8 flags)
{
	static const __u8 client_mac[ETH_ALEN] = { 0x02, 0x10, 0, 0, 0, 0x02 };
	struct iphdr ip = { .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_TCP,
			    .frag_off = htons(0x4000) };
	struct tcphdr tcp = { .source = htons(sport), .dest = htons(VIP_PORT), .doff = 5,
			      .window = htons(64240) };
	__be16 proto = htons(ETH_P_IP), v;
	__u32 s;

	inet_pton(AF_INET, CLIENT, &ip.saddr);
	inet_pton(AF_INET, dst, &ip.daddr);
	ip.tot_len = htons(sizeof(ip) + sizeof(tcp));
	ip.check = htons(~csum_fold(sum16((__u8 *)&ip, sizeof(ip), 0)) & 0xffff);
	tcp.seq = htonl(1000);
	tcp.syn = !!(flags & 0x02);
	tcp.ack = !!(flags & 0x10);
	if (tcp.ack)
		tcp.ack_seq = htonl(2000);
	s = sum16((__u8 *)&ip.saddr, 8, IPPROTO_TCP + sizeof(tcp));
	v = htons(~csum_fold(sum16((__u8 *)&tcp, sizeof(tcp), s)) & 0xffff);
	tcp.check = v;
	memcpy(f, lbin_mac, ETH_ALEN);
	memcpy(f + ETH_ALEN, client_mac, ETH_ALEN);
	memcpy(f + 12, &proto, 2);
	memcpy(f + ETH_HLEN, &ip, sizeof(ip));
	memcpy(f + ETH_HLEN + sizeof(ip), &tcp, sizeof(tcp));
}

static __u8 f_ack[FRAME_LEN], f_nonvip[FRAME_LEN], f_syn[NSYN][FRAME_LEN];

/* --- the namespace, the skeleton, the maps ----------------------------------------------- */

static void make_topology(void)
{
	char cmd[160];

	if (unshare(CLONE_NEWNET))
		die("unshare(CLONE_NEWNET)", errno);
	write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
	sh("ip link set lo up");
	sh("ip link add lbin address 02:10:00:00:00:01 type veth peer name lbin_p");
	sh("ip link add lbout address 02:11:00:00:00:01 type veth peer name lbout_p");
	sh("ip addr add 10.210.0.1/24 dev lbin && ip addr add 10.211.0.1/24 dev lbout");
	sh("ip link set lbin_p up && ip link set lbout_p up");
	sh("ip link set lbin up && ip link set lbout up");
	for (int i = 0; i < NBACKENDS; i++) {
		snprintf(cmd, sizeof(cmd),
			 "ip neigh replace 10.211.0.%d lladdr 02:11:00:00:01:%02x nud permanent dev lbout",
			 10 + i, i);
		sh(cmd);
	}
}

static void fill_maps(void)
{
	LIBBPF_OPTS(bpf_map_create_opts, copts, .map_flags = BPF_F_INNER_MAP);
	__u32 len = TABLE_SLOTS + 2 + NBACKENDS, *keys, *vals, count = len, id = SVC_ID;
	struct sl_svc_key key = { 0 };
	struct sl_service svc = { 0 };
	int fd;

	key.family = SL_FAMILY_IPV4;
	inet_pton(AF_INET, VIP, &key.vip.words[0]);
	key.port = htons(VIP_PORT);
	key.proto = IPPROTO_TCP;
	svc.id = SVC_ID;
	svc.algorithm = SL_ALG_MAGLEV;
	svc.backend_count = NBACKENDS;
	snprintf(svc.name, sizeof(svc.name), "bench");
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_services), &key, &svc, BPF_NOEXIST))
		die("sl_services update", errno);
	if (vip_filter_add(bpf_map__fd(skel->maps.sl_vip_filter), &key))
		die("sl_vip_filter update", errno);
	if (xdp_vips_add(bpf_map__fd(skel->maps.sl_xdp_vips), &key, &svc))
		die("sl_xdp_vips update", errno);
	for (__u32 i = 0; i < NBACKENDS; i++) {
		struct sl_backend be = { 0 };
		struct sl_be_health h;
		__u32 be_id = 1 + i;
		char addr[32];

		snprintf(addr, sizeof(addr), "10.211.0.%u", 10 + i);
		inet_pton(AF_INET, addr, &be.addr.words[0]);
		be.svc_id = SVC_ID;
		be.weight = 1;
		be.port = htons(8080);
		be.family = SL_FAMILY_IPV4;
		h = sl_be_health_of(&be); /* as the reconciler copies every record it writes */
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_backends), &be_id, &be, BPF_ANY))
			die("sl_backends update", errno);
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_be_health), &be_id, &h, BPF_ANY))
			die("sl_be_health update", errno);
	}
	/* As userspace/lib/reconcile.c write_table: [T, table..., B, list...], then swapped in. */
	keys = calloc(len, sizeof(*keys));
	vals = calloc(len, sizeof(*vals));
	if (!keys || !vals)
		die("calloc", ENOMEM);
	for (__u32 i = 0; i < len; i++)
		keys[i] = i;
	vals[0] = TABLE_SLOTS;
	for (__u32 i = 0; i < TABLE_SLOTS; i++)
		vals[1 + i] = 1 + (i * 7) % NBACKENDS; /* every backend, interleaved */
	vals[TABLE_SLOTS + 1] = NBACKENDS;
	for (__u32 i = 0; i < NBACKENDS; i++)
		vals[TABLE_SLOTS + 2 + i] = 1 + i;
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sl_slots", sizeof(__u32), sizeof(__u32), len,
			    &copts);
	if (fd < 0)
		die("creating the selection table", errno);
	if (bpf_map_update_batch(fd, keys, vals, &count, NULL))
		die("filling the selection table", errno);
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.sl_svc_slots), &id, &fd, BPF_ANY))
		die("sl_svc_slots update", errno);
	close(fd);
	free(keys);
	free(vals);
}

/* --- cases ------------------------------------------------------------------------------- */

enum { C_PASS, C_DROP, C_PARSE, C_NONVIP, C_HIT, C_NEW, NCASES };

static const struct {
	const char *name;
	const char *what;
	int verdict;
	int repeat_ok; /* leaves the frame unchanged: repeat mode is valid */
	int target;    /* ns, per call net of XDP_PASS; 0: none */
} cases[NCASES] = {
	[C_PASS] = { "XDP_PASS", "return XDP_PASS (reference)", XDP_PASS, 1, 0 },
	[C_DROP] = { "XDP_DROP", "return XDP_DROP (reference)", XDP_DROP, 1, 0 },
	[C_PARSE] = { "parse only", "sluice's parse_packet, XDP_PASS", XDP_PASS, 1, 0 },
	[C_NONVIP] = { "sl_xdp non-VIP", "parse, VIP miss, counters", XDP_PASS, 1, TARGET_NONVIP },
	[C_HIT] = { "sl_xdp flow-table hit", "TCP ACK: flow hit, FIB, L2 rewrite", XDP_REDIRECT, 0,
		    TARGET_HIT },
	[C_NEW] = { "sl_xdp new flow", "TCP SYN: Maglev slot, flow insert, FIB", XDP_REDIRECT, 0,
		    TARGET_NEW },
};

static int prog_fd[NCASES];
static int if_lbin;

static const __u8 *frame_of(int c, __u32 i)
{
	if (c == C_NEW)
		return f_syn[i % NSYN];
	if (c == C_NONVIP)
		return f_nonvip;
	return f_ack;
}

/* A forwarded frame: MACs rewritten (src lbout), TTL 63, the rest as sent. */
static void check_rewrite(int c, const __u8 *in, const __u8 *out)
{
	const __u8 *ip = out + ETH_HLEN;

	if (memcmp(out + ETH_ALEN, lbout_mac, ETH_ALEN) || out[0] != 0x02 || out[1] != 0x11 ||
	    ip[8] != 63 || csum_fold(sum16(ip, 20, 0)) != 0xffff ||
	    memcmp(out + 12, in + 12, 10) || memcmp(ip + 12, in + ETH_HLEN + 12, FRAME_LEN - 26)) {
		fprintf(stderr, "xdplbbench: %s: the frame was not rewritten as expected\n",
			cases[c].name);
		exit(1);
	}
}

/* One test run of case c on frame i; returns the kernel's mean ns per run. */
static double run(int c, __u32 i, __u32 repeat, bool check)
{
	const __u8 *in = frame_of(c, i);
	__u8 out[FRAME_LEN + 64];
	struct xdp_md ctx = { .data = 0, .data_end = FRAME_LEN, .ingress_ifindex = if_lbin };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = FRAME_LEN,
		    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat);

	if (bpf_prog_test_run_opts(prog_fd[c], &opts))
		die("bpf_prog_test_run_opts", errno);
	if ((int)opts.retval != cases[c].verdict) {
		fprintf(stderr, "xdplbbench: %s: verdict %u, expected %d\n", cases[c].name,
			opts.retval, cases[c].verdict);
		exit(1);
	}
	if (check) {
		if (opts.data_size_out != FRAME_LEN)
			die("data_size_out", EINVAL);
		if (cases[c].repeat_ok && memcmp(out, in, FRAME_LEN)) {
			fprintf(stderr, "xdplbbench: %s: the frame came back changed\n",
				cases[c].name);
			exit(1);
		}
		if (!cases[c].repeat_ok)
			check_rewrite(c, in, out);
	}
	return opts.duration;
}

static void stats(__u64 *new_flows, __u64 *hits, __u64 *forwarded)
{
	int n = libbpf_num_possible_cpus();
	struct sl_xdp_stats per[n];
	__u32 id = SVC_ID;

	if (xdp_cpu_read(bpf_map__fd(skel->maps.sl_xdp_stats), SL_XDP_STATS_STRIDE, id, per,
			 sizeof(per[0])))
		die("sl_xdp_stats lookup", errno);
	*new_flows = *hits = *forwarded = 0;
	for (int i = 0; i < n; i++) {
		*new_flows += per[i].new_flows;
		*hits += per[i].flow_hits;
		*forwarded += per[i].forwarded;
	}
}

int main(int argc, char **argv)
{
	static double rep[NCASES][MAX_ROUNDS], call[NCASES][MAX_ROUNDS], kcall[NCASES][MAX_ROUNDS];
	static const char *ref_progs[] = { [C_PASS] = "ref_pass", [C_DROP] = "ref_drop",
					   [C_PARSE] = "ref_parse" };
	__u64 nf0, hit0, fw0, nf1, hit1, fw1, hit_runs = 0, new_runs = 0;
	__u32 calls = 20000, repeat = 1000000, next_syn = 0;
	int rounds = 7, opt, met = 0, judged = 0;

	while ((opt = getopt(argc, argv, "r:c:n:")) != -1) {
		switch (opt) {
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'c':
			calls = strtoul(optarg, NULL, 10);
			break;
		case 'n':
			repeat = strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || rounds < 1 || rounds > MAX_ROUNDS || !calls || !repeat) {
usage:
		fprintf(stderr, "usage: xdplbbench REF_OBJ [-r ROUNDS (1..%d)] [-c CALLS] [-n REPEAT]\n",
			MAX_ROUNDS);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "xdplbbench: needs root\n");
		return 1;
	}
	make_topology();
	if_lbin = if_nametoindex("lbin");
	if (!if_lbin)
		die("if_nametoindex lbin", errno);
	build_frame(f_ack, VIP, 40000, 0x10);
	build_frame(f_nonvip, NON_VIP, 40000, 0x02);
	for (int i = 0; i < NSYN; i++)
		build_frame(f_syn[i], VIP, 20000 + i, 0x02);

	bench_load(argv[optind]);
	fill_maps();
	for (int c = 0; c < C_NONVIP; c++)
		prog_fd[c] = ref_prog_fd(ref_progs[c], argv[optind]);
	for (int c = C_NONVIP; c < NCASES; c++)
		prog_fd[c] = bpf_program__fd(skel->progs.sl_xdp);

	/* The established flow of the ACK frame: its SYN first. */
	{
		__u8 syn[FRAME_LEN];
		struct xdp_md ctx = { .data_end = FRAME_LEN, .ingress_ifindex = if_lbin };
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = syn, .data_size_in = FRAME_LEN,
			    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);

		build_frame(syn, VIP, 40000, 0x02);
		if (bpf_prog_test_run_opts(prog_fd[C_NEW], &o))
			die("opening the established flow", errno);
		if (o.retval != XDP_REDIRECT)
			die("opening the established flow: not redirected", EINVAL);
	}
	/* Warm-up: every case briefly. */
	for (int c = 0; c < NCASES; c++)
		for (__u32 i = 0; i < 2000; i++)
			run(c, c == C_NEW ? next_syn++ : i, 1, i == 0);
	stats(&nf0, &hit0, &fw0);

	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < NCASES; k++) {
			int c = (r + k) % NCASES;
			double ksum = 0;
			__u64 t0, t1;

			if (cases[c].repeat_ok)
				rep[c][r] = run(c, 0, repeat, true);
			run(c, c == C_NEW ? next_syn : 0, 1, true);
			if (c == C_NEW)
				next_syn++;
			t0 = mono_ns();
			for (__u32 i = 0; i < calls; i++)
				ksum += run(c, c == C_NEW ? next_syn++ : 0, 1, false);
			t1 = mono_ns();
			call[c][r] = (double)(t1 - t0) / calls;
			kcall[c][r] = ksum / calls;
			if (c == C_HIT)
				hit_runs += calls + 1;
			if (c == C_NEW)
				new_runs += calls + 1;
		}
	}
	stats(&nf1, &hit1, &fw1);
	if (nf1 - nf0 != new_runs || hit1 - hit0 != hit_runs || fw1 - fw0 != new_runs + hit_runs) {
		fprintf(stderr, "xdplbbench: counters moved by new_flows %llu, flow_hits %llu, "
			"forwarded %llu; expected %llu, %llu, %llu\n",
			(unsigned long long)(nf1 - nf0), (unsigned long long)(hit1 - hit0),
			(unsigned long long)(fw1 - fw0), (unsigned long long)new_runs,
			(unsigned long long)hit_runs, (unsigned long long)(new_runs + hit_runs));
		return 1;
	}

	double pass_k = median(kcall[C_PASS], rounds), pass_call = median(call[C_PASS], rounds);

	printf("  %-22s %-40s | %9s %10s %7s | %9s %10s | %8s\n", "program", "what runs",
	       "per call", "-XDP_PASS", "target", "syscall", "-XDP_PASS", "repeat");
	for (int c = 0; c < NCASES; c++) {
		double pk = median(kcall[c], rounds), pc = median(call[c], rounds);
		char target[16] = "", repeat_s[16] = "-";

		if (cases[c].target) {
			bool ok = pk - pass_k <= cases[c].target;

			snprintf(target, sizeof(target), "%s%d", ok ? "<=" : "> ", cases[c].target);
			judged++;
			met += ok;
		}
		if (cases[c].repeat_ok)
			snprintf(repeat_s, sizeof(repeat_s), "%5.1f ns", median(rep[c], rounds));
		printf("  %-22s %-40s | %6.1f ns %7.1f ns %7s | %6.0f ns %7.1f ns | %8s\n",
		       cases[c].name, cases[c].what, pk, pk - pass_k, target, pc, pc - pass_call,
		       repeat_s);
	}
	printf("  targets (per call - XDP_PASS): %d of %d met\n", met, judged);
	printf("  checked: every verdict, the rewrite once per round and case, new_flows +%llu,"
	       " flow_hits +%llu, forwarded +%llu\n", (unsigned long long)new_runs,
	       (unsigned long long)hit_runs, (unsigned long long)(new_runs + hit_runs));
	return 0;
}
