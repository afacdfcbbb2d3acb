// SPDX-License-Identifier: MIT
/*
 * connbench: serial short-lived HTTP connections, as a client of a service mesh
 * makes them. Each connection is socket(), connect(), one request, read until
 * EOF, close(); its latency is taken around all of it. Threads run the same loop
 * independently; targets are used in rotation (each thread starts at its own
 * offset), so a client can balance across backends by itself.
 *
 * Prints one JSON object on stdout: rate over the measured window, latency
 * percentiles (µs), errors by kind, and how many replies came from each backend
 * (the body is "be<N>\n"). With -L, the raw latencies (native-endian __u32 ns,
 * one per successful connection) are appended to a file, so that percentiles can
 * be taken over several runs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CB_MAX_TARGETS	16
#define CB_MAX_BACKENDS	16
#define CB_MAX_THREADS	64
#define CB_BUF_SIZE	4096

static const char request[] = "GET / HTTP/1.0\r\nHost: bench\r\n\r\n";

struct cb_config {
	struct sockaddr_in targets[CB_MAX_TARGETS];
	unsigned int ntargets;
	double duration_s;
	double warmup_s;
	unsigned long max_conns;
	unsigned int threads;
	unsigned int timeout_ms;
	const char *lat_file;
	uint64_t measure_start_ns;
	uint64_t end_ns;
};

struct cb_worker {
	pthread_t tid;
	unsigned int idx;
	const struct cb_config *cfg;
	uint32_t *lat_ns;
	unsigned long cap;
	unsigned long n;
	uint64_t last_done_ns;
	unsigned long err_connect;
	unsigned long err_io;
	unsigned long err_http;
	unsigned long per_backend[CB_MAX_BACKENDS + 1];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

enum cb_result {
	CB_OK,
	CB_ERR_CONNECT,
	CB_ERR_IO,
	CB_ERR_HTTP,
};

/* Parses "HTTP/1.x 200 ..." and a body of "be<N>\n"; returns N (0 if absent) or -1. */
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
	if (n < 1 || n > CB_MAX_BACKENDS)
		return 0;
	return (int)n;
}

static enum cb_result one_conn(const struct cb_config *cfg, const struct sockaddr_in *dst,
			       int *backend)
{
	struct timeval tv = {
		.tv_sec = cfg->timeout_ms / 1000,
		.tv_usec = (cfg->timeout_ms % 1000) * 1000,
	};
	char buf[CB_BUF_SIZE], sink[512];
	enum cb_result res = CB_ERR_IO;
	size_t len = 0;
	ssize_t r;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CB_ERR_CONNECT;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst))) {
		res = CB_ERR_CONNECT;
		goto out;
	}
	if (write(fd, request, sizeof(request) - 1) != sizeof(request) - 1)
		goto out;
	for (;;) {
		/* Only the head is parsed; the rest of a long reply is drained. */
		if (len < sizeof(buf) - 1)
			r = read(fd, buf + len, sizeof(buf) - 1 - len);
		else
			r = read(fd, sink, sizeof(sink));
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		if (len < sizeof(buf) - 1)
			len += r;
	}
	buf[len] = '\0';
	*backend = parse_reply(buf, len);
	res = *backend < 0 ? CB_ERR_HTTP : CB_OK;
out:
	close(fd);
	return res;
}

static void *worker_run(void *arg)
{
	struct cb_worker *w = arg;
	const struct cb_config *cfg = w->cfg;
	unsigned int next = w->idx % cfg->ntargets;
	uint64_t t0, t1;
	enum cb_result res;
	int backend;

	for (;;) {
		t0 = now_ns();
		if (t0 >= cfg->end_ns || w->n >= w->cap)
			break;
		backend = 0;
		res = one_conn(cfg, &cfg->targets[next], &backend);
		t1 = now_ns();
		next = (next + 1) % cfg->ntargets;
		if (t0 < cfg->measure_start_ns)
			continue;
		w->last_done_ns = t1;
		switch (res) {
		case CB_OK:
			w->lat_ns[w->n++] = t1 - t0 > UINT32_MAX ? UINT32_MAX : (uint32_t)(t1 - t0);
			w->per_backend[backend]++;
			break;
		case CB_ERR_CONNECT:
			w->err_connect++;
			break;
		case CB_ERR_IO:
			w->err_io++;
			break;
		case CB_ERR_HTTP:
			w->err_http++;
			break;
		}
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, in µs. */
static double pct_us(const uint32_t *v, unsigned long n, double p)
{
	unsigned long rank;

	if (!n)
		return 0;
	rank = (unsigned long)(p * n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1] / 1000.0;
}

static int add_targets(struct cb_config *cfg, char *list)
{
	char *tok, *save = NULL;

	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct sockaddr_in *sin;

		if (cfg->ntargets == CB_MAX_TARGETS) {
			fprintf(stderr, "connbench: at most %d targets\n", CB_MAX_TARGETS);
			return -1;
		}
		sin = &cfg->targets[cfg->ntargets++];
		sin->sin_family = AF_INET;
		if (inet_pton(AF_INET, tok, &sin->sin_addr) != 1) {
			fprintf(stderr, "connbench: not an IPv4 address: %s\n", tok);
			return -1;
		}
	}
	return cfg->ntargets ? 0 : -1;
}

static int append_latencies(const char *path, const uint32_t *v, unsigned long n)
{
	size_t left = n * sizeof(*v);
	const char *p = (const char *)v;
	ssize_t w;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "connbench: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (left) {
		w = write(fd, p, left);
		if (w < 0) {
			fprintf(stderr, "connbench: cannot write %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		p += w;
		left -= w;
	}
	return close(fd);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: connbench [-d SECONDS] [-w WARMUP_S] [-n MAX_CONNS] [-T THREADS]\n"
		"                 [-o TIMEOUT_MS] [-L FILE] ADDR[,ADDR...] PORT\n"
		"  Serial connect/request/reply/close loops; prints one JSON object.\n"
		"  -d  measured seconds (default 2)      -w  warm-up seconds (default 0.2)\n"
		"  -n  connection cap (default 1000000)  -T  threads (default 1)\n"
		"  -o  per-socket timeout in ms (default 1000)\n"
		"  -L  append raw latencies (u32 ns each) to FILE\n");
}

int main(int argc, char **argv)
{
	struct cb_config cfg = {
		.duration_s = 2.0,
		.warmup_s = 0.2,
		.max_conns = 1000000,
		.threads = 1,
		.timeout_ms = 1000,
	};
	struct cb_worker *workers = NULL;
	unsigned long total = 0, errc = 0, erri = 0, errh = 0, k;
	unsigned long per_backend[CB_MAX_BACKENDS + 1] = { 0 };
	uint64_t start, last = 0;
	uint32_t *all = NULL;
	unsigned int i, j, top = 0;
	double secs;
	long port;
	int opt, ret = 1;

	while ((opt = getopt(argc, argv, "d:w:n:T:o:L:h")) != -1) {
		switch (opt) {
		case 'd':
			cfg.duration_s = strtod(optarg, NULL);
			break;
		case 'w':
			cfg.warmup_s = strtod(optarg, NULL);
			break;
		case 'n':
			cfg.max_conns = strtoul(optarg, NULL, 10);
			break;
		case 'T':
			cfg.threads = strtoul(optarg, NULL, 10);
			break;
		case 'o':
			cfg.timeout_ms = strtoul(optarg, NULL, 10);
			break;
		case 'L':
			cfg.lat_file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2 || cfg.duration_s <= 0 || cfg.warmup_s < 0 || !cfg.max_conns ||
	    !cfg.threads || cfg.threads > CB_MAX_THREADS || !cfg.timeout_ms) {
		usage(stderr);
		return 2;
	}
	if (add_targets(&cfg, argv[optind]))
		return 2;
	port = strtol(argv[optind + 1], NULL, 10);
	if (port < 1 || port > 65535) {
		fprintf(stderr, "connbench: bad port %s\n", argv[optind + 1]);
		return 2;
	}
	for (i = 0; i < cfg.ntargets; i++)
		cfg.targets[i].sin_port = htons((uint16_t)port);

	workers = calloc(cfg.threads, sizeof(*workers));
	if (!workers) {
		perror("connbench: calloc");
		goto out;
	}
	start = now_ns();
	cfg.measure_start_ns = start + (uint64_t)(cfg.warmup_s * 1e9);
	cfg.end_ns = cfg.measure_start_ns + (uint64_t)(cfg.duration_s * 1e9);
	for (i = 0; i < cfg.threads; i++) {
		struct cb_worker *w = &workers[i];

		w->idx = i;
		w->cfg = &cfg;
		w->cap = (cfg.max_conns + cfg.threads - 1) / cfg.threads;
		w->lat_ns = malloc(w->cap * sizeof(*w->lat_ns));
		if (!w->lat_ns) {
			perror("connbench: malloc");
			goto out_join;
		}
		errno = pthread_create(&w->tid, NULL, worker_run, w);
		if (errno) {
			perror("connbench: pthread_create");
			free(w->lat_ns);
			w->lat_ns = NULL;
			goto out_join;
		}
	}
	ret = 0;
out_join:
	/* Threads that did start are joined even when a later one failed. */
	for (j = 0; j < i; j++)
		pthread_join(workers[j].tid, NULL);
	if (ret)
		goto out;

	for (i = 0; i < cfg.threads; i++)
		total += workers[i].n;
	all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		perror("connbench: malloc");
		ret = 1;
		goto out;
	}
	for (i = 0, k = 0; i < cfg.threads; i++) {
		struct cb_worker *w = &workers[i];

		memcpy(all + k, w->lat_ns, w->n * sizeof(*all));
		k += w->n;
		errc += w->err_connect;
		erri += w->err_io;
		errh += w->err_http;
		if (w->last_done_ns > last)
			last = w->last_done_ns;
		for (j = 0; j <= CB_MAX_BACKENDS; j++)
			per_backend[j] += w->per_backend[j];
	}
	if (cfg.lat_file && append_latencies(cfg.lat_file, all, total)) {
		ret = 1;
		goto out;
	}
	qsort(all, total, sizeof(*all), cmp_u32);
	secs = last > cfg.measure_start_ns ? (last - cfg.measure_start_ns) / 1e9 : cfg.duration_s;
	for (j = 1; j <= CB_MAX_BACKENDS; j++)
		if (per_backend[j])
			top = j;

	printf("{\"threads\": %u, \"seconds\": %.3f, \"conns\": %lu, \"conn_per_s\": %.1f, "
	       "\"errors\": %lu, \"err_connect\": %lu, \"err_io\": %lu, \"err_http\": %lu, "
	       "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, "
	       "\"backends\": [",
	       cfg.threads, secs, total, total / secs, errc + erri + errh, errc, erri, errh,
	       pct_us(all, total, 0.50), pct_us(all, total, 0.90), pct_us(all, total, 0.99),
	       total ? all[total - 1] / 1000.0 : 0.0);
	for (j = 1; j <= top; j++)
		printf("%s%lu", j > 1 ? ", " : "", per_backend[j]);
	printf("], \"unlabelled\": %lu}\n", per_backend[0]);
out:
	if (workers)
		for (i = 0; i < cfg.threads; i++)
			free(workers[i].lat_ns);
	free(workers);
	free(all);
	return ret;
}
