// SPDX-License-Identifier: MIT
/*
 * breakerbench: how fast a circuit breaker stops sending connections to a
 * backend that died. One thread makes serial short-lived HTTP connections to a
 * VIP at full speed (socket, connect, GET, read to EOF, close) and records each
 * one: CLOCK_MONOTONIC times, outcome, the backend named in the reply body
 * ("be<N>\n") and, with -S, the backend sluice sent the socket to, read back
 * from the socket's own sl_sock storage (a bpf(2) lookup keyed by the socket's
 * descriptor; this is what names the backend of a connect that failed).
 *
 * After -w seconds the client itself kills the given processes with SIGKILL
 * (through pidfds opened at start, so a recycled PID cannot be hit) between
 * two connections, and records that instant, T0, on the same clock as the
 * connections. A second thread waits on the pidfds and records when every one
 * of them has exited (files closed, so the listening socket is gone). The loop
 * goes on for -d seconds after T0.
 *
 * Writes one CSV line per connection to -R FILE and prints one JSON object
 * (times in ns of CLOCK_MONOTONIC) on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sluice/breaker.h"

#define BB_MAX_PIDS	8
#define BB_BUF_SIZE	4096

static const char request[] = "GET / HTTP/1.0\r\nHost: bench\r\n\r\n";

enum bb_outcome {
	BB_OK,		/* a 200 reply, read to EOF */
	BB_REFUSED,	/* connect() failed with ECONNREFUSED */
	BB_CONNECT_ERR, /* connect() failed otherwise */
	BB_IO_ERR,	/* connected, then write or read failed */
	BB_HTTP_ERR,	/* connected, but not a 200 reply */
};

static const char *const outcome_name[] = {
	[BB_OK] = "ok",
	[BB_REFUSED] = "refused",
	[BB_CONNECT_ERR] = "connect_error",
	[BB_IO_ERR] = "io_error",
	[BB_HTTP_ERR] = "http_error",
};

struct bb_rec {
	uint64_t start_ns;	/* before socket() */
	uint64_t connect_ns;	/* connect() returned */
	uint64_t end_ns;	/* after close() */
	uint32_t sk_backend_id; /* from sl_sock, 0 if none */
	uint32_t sk_backend_addr; /* network order, from sl_sock */
	uint16_t sk_port;	/* host order, from sl_sock */
	uint8_t outcome;
	uint8_t body_be;	/* N of "be<N>" in the reply, 0 if none */
	int32_t err;		/* errno of the failure, 0 if none */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* The backend sluice sent this socket to, from its sl_sock storage; 0 when it has none. */
static void sk_backend(int map_fd, int sock, struct bb_rec *r)
{
	struct sl_sock_state st;
	union bpf_attr attr;

	if (map_fd < 0)
		return;
	memset(&attr, 0, sizeof(attr));
	attr.map_fd = map_fd;
	attr.key = (uint64_t)(uintptr_t)&sock;
	attr.value = (uint64_t)(uintptr_t)&st;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr))
		return;
	r->sk_backend_id = st.backend_id;
	r->sk_backend_addr = st.backend.words[0];
	r->sk_port = ntohs(st.backend_port);
}

static int parse_reply(const char *buf, size_t len)
{
	const char *body;
	long n;

	if (len < 12 || strncmp(buf, "HTTP/1.", 7) || strncmp(buf + 8, " 200", 4))
		return -1;
	body = memmem(buf, len, "\r\n\r\n", 4);
	if (!body)
		return -1;
	body += 4;
	if (buf + len - body < 3 || strncmp(body, "be", 2))
		return 0;
	n = strtol(body + 2, NULL, 10);
	return n >= 1 && n <= 255 ? (int)n : 0;
}

static void one_conn(const struct sockaddr_in *dst, unsigned int timeout_ms, int map_fd,
		     struct bb_rec *r)
{
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	char buf[BB_BUF_SIZE], sink[512];
	size_t len = 0;
	ssize_t n;
	int fd, be;

	r->outcome = BB_IO_ERR;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r->connect_ns = now_ns();
		r->outcome = BB_CONNECT_ERR;
		r->err = errno;
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst))) {
		r->err = errno;
		r->connect_ns = now_ns();
		r->outcome = r->err == ECONNREFUSED ? BB_REFUSED : BB_CONNECT_ERR;
		sk_backend(map_fd, fd, r);
		goto out;
	}
	r->connect_ns = now_ns();
	sk_backend(map_fd, fd, r);
	if (write(fd, request, sizeof(request) - 1) != sizeof(request) - 1) {
		r->err = errno;
		goto out;
	}
	for (;;) {
		if (len < sizeof(buf) - 1)
			n = read(fd, buf + len, sizeof(buf) - 1 - len);
		else
			n = read(fd, sink, sizeof(sink));
		if (n < 0) {
			r->err = errno;
			goto out;
		}
		if (n == 0)
			break;
		if (len < sizeof(buf) - 1)
			len += n;
	}
	buf[len] = '\0';
	be = parse_reply(buf, len);
	if (be < 0) {
		r->outcome = BB_HTTP_ERR;
	} else {
		r->outcome = BB_OK;
		r->body_be = (uint8_t)be;
	}
out:
	close(fd);
}

struct bb_watch {
	int pidfds[BB_MAX_PIDS];
	unsigned int n;
	atomic_int stop;
	uint64_t exited_ns; /* when the last of them had exited, 0 if not seen */
};

/* Waits until every process has exited (its pidfd turns readable) and notes when. */
static void *watch_run(void *arg)
{
	struct bb_watch *w = arg;
	struct pollfd pfd[BB_MAX_PIDS];
	unsigned int i, left = w->n;

	for (i = 0; i < w->n; i++) {
		pfd[i].fd = w->pidfds[i];
		pfd[i].events = POLLIN;
	}
	while (left && !atomic_load(&w->stop)) {
		if (poll(pfd, w->n, 20) <= 0)
			continue;
		for (i = 0; i < w->n; i++) {
			if (pfd[i].fd >= 0 && pfd[i].revents) {
				pfd[i].fd = -1; /* poll ignores it from now on */
				left--;
			}
		}
		if (!left)
			w->exited_ns = now_ns();
	}
	return NULL;
}

/* /proc/PID/comm must name COMM: the pidfd is then known to be that process. */
static int check_comm(pid_t pid, const char *comm)
{
	char path[64], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return strcmp(buf, comm) ? -1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: breakerbench -K PID[,PID...] -R FILE [-w SECONDS] [-d SECONDS]\n"
		"                    [-S SL_SOCK_PIN] [-c COMM] [-n MAX_CONNS] [-o TIMEOUT_MS]\n"
		"                    ADDR PORT\n"
		"  Serial connect/GET/close loop to ADDR:PORT; SIGKILLs the PIDs after -w\n"
		"  seconds (default 0.5) and goes on for -d seconds (default 1).\n"
		"  -R  one CSV line per connection    -S  pinned sl_sock map: record each socket's backend\n"
		"  -c  the PIDs' /proc comm (default nginx)\n"
		"  -n  connection cap (default 400000) -o  per-socket timeout in ms (default 1000)\n");
}

int main(int argc, char **argv)
{
	double before_s = 0.5, after_s = 1.0;
	unsigned long cap = 400000, n = 0, i;
	unsigned int timeout_ms = 1000;
	const char *rec_path = NULL, *sock_pin = NULL, *comm = "nginx";
	struct bb_watch watch = { .n = 0 };
	pid_t pids[BB_MAX_PIDS];
	struct sockaddr_in dst = { .sin_family = AF_INET };
	uint64_t start, kill_at, t0 = 0, t0_done = 0, end = 0, t;
	struct bb_rec *recs = NULL;
	char *tok, *save = NULL, addr[INET_ADDRSTRLEN], backend[INET_ADDRSTRLEN + 8];
	int opt, map_fd = -1, ret = 1, kill_err = 0;
	pthread_t watcher;
	FILE *out = NULL;
	long port;

	while ((opt = getopt(argc, argv, "w:d:K:R:S:c:n:o:h")) != -1) {
		switch (opt) {
		case 'w':
			before_s = strtod(optarg, NULL);
			break;
		case 'd':
			after_s = strtod(optarg, NULL);
			break;
		case 'K':
			for (tok = strtok_r(optarg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (watch.n == BB_MAX_PIDS) {
					fprintf(stderr, "breakerbench: at most %d PIDs\n", BB_MAX_PIDS);
					return 2;
				}
				pids[watch.n++] = (pid_t)strtol(tok, NULL, 10);
			}
			break;
		case 'R':
			rec_path = optarg;
			break;
		case 'S':
			sock_pin = optarg;
			break;
		case 'c':
			comm = optarg;
			break;
		case 'n':
			cap = strtoul(optarg, NULL, 10);
			break;
		case 'o':
			timeout_ms = strtoul(optarg, NULL, 10);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2 || !watch.n || !rec_path || before_s <= 0 || after_s <= 0 ||
	    before_s + after_s > 60 || !cap || !timeout_ms) {
		usage(stderr);
		return 2;
	}
	if (inet_pton(AF_INET, argv[optind], &dst.sin_addr) != 1) {
		fprintf(stderr, "breakerbench: not an IPv4 address: %s\n", argv[optind]);
		return 2;
	}
	port = strtol(argv[optind + 1], NULL, 10);
	if (port < 1 || port > 65535) {
		fprintf(stderr, "breakerbench: bad port %s\n", argv[optind + 1]);
		return 2;
	}
	dst.sin_port = htons((uint16_t)port);

	for (i = 0; i < watch.n; i++)
		watch.pidfds[i] = -1;
	for (i = 0; i < watch.n; i++) {
		watch.pidfds[i] = pidfd_open(pids[i]);
		if (watch.pidfds[i] < 0 || check_comm(pids[i], comm)) {
			fprintf(stderr, "breakerbench: PID %d is not a running %s\n", (int)pids[i], comm);
			goto out_fds;
		}
	}
	if (sock_pin) {
		union bpf_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.pathname = (uint64_t)(uintptr_t)sock_pin;
		map_fd = sys_bpf(BPF_OBJ_GET, &attr);
		if (map_fd < 0) {
			fprintf(stderr, "breakerbench: cannot open %s: %s\n", sock_pin, strerror(errno));
			goto out_fds;
		}
	}
	recs = calloc(cap, sizeof(*recs));
	if (!recs) {
		perror("breakerbench: calloc");
		goto out_fds;
	}
	out = fopen(rec_path, "we");
	if (!out) {
		fprintf(stderr, "breakerbench: cannot open %s: %s\n", rec_path, strerror(errno));
		goto out_fds;
	}
	errno = pthread_create(&watcher, NULL, watch_run, &watch);
	if (errno) {
		perror("breakerbench: pthread_create");
		goto out_fds;
	}

	start = now_ns();
	kill_at = start + (uint64_t)(before_s * 1e9);
	for (;;) {
		t = now_ns();
		if (!t0 && t >= kill_at) {
			/* T0: the first signal is sent right after this clock read. */
			t0 = now_ns();
			for (i = 0; i < watch.n; i++)
				if (pidfd_kill(watch.pidfds[i], SIGKILL))
					kill_err = errno;
			t0_done = now_ns();
			end = t0 + (uint64_t)(after_s * 1e9);
			t = t0_done;
		}
		if ((end && t >= end) || n == cap)
			break;
		recs[n].start_ns = t;
		one_conn(&dst, timeout_ms, map_fd, &recs[n]);
		recs[n].end_ns = now_ns();
		n++;
	}
	atomic_store(&watch.stop, 1);
	pthread_join(watcher, NULL);

	fprintf(out, "start_ns,connect_ns,end_ns,outcome,errno,body_be,sk_backend_id,"
		     "sk_backend\n");
	for (i = 0; i < n; i++) {
		const struct bb_rec *r = &recs[i];

		backend[0] = '\0';
		if (r->sk_backend_id && inet_ntop(AF_INET, &r->sk_backend_addr, addr, sizeof(addr)))
			snprintf(backend, sizeof(backend), "%s:%u", addr, r->sk_port);
		fprintf(out, "%llu,%llu,%llu,%s,%d,%u,%u,%s\n",
			(unsigned long long)r->start_ns, (unsigned long long)r->connect_ns,
			(unsigned long long)r->end_ns, outcome_name[r->outcome], r->err,
			r->body_be, r->sk_backend_id, backend);
	}
	if (fclose(out)) {
		out = NULL;
		fprintf(stderr, "breakerbench: cannot write %s\n", rec_path);
		goto out_fds;
	}
	out = NULL;
	printf("{\"start_ns\": %llu, \"t0_ns\": %llu, \"t0_done_ns\": %llu, "
	       "\"exited_ns\": %llu, \"end_ns\": %llu, \"conns\": %lu, \"capped\": %s, "
	       "\"kill_errno\": %d, \"sk_lookup\": %s}\n",
	       (unsigned long long)start, (unsigned long long)t0, (unsigned long long)t0_done,
	       (unsigned long long)watch.exited_ns, (unsigned long long)end, n,
	       n == cap ? "true" : "false", kill_err, map_fd >= 0 ? "true" : "false");
	ret = t0 && !kill_err ? 0 : 1;
out_fds:
	if (out)
		fclose(out);
	for (i = 0; i < watch.n; i++)
		if (watch.pidfds[i] >= 0)
			close(watch.pidfds[i]);
	if (map_fd >= 0)
		close(map_fd);
	free(recs);
	return ret;
}
