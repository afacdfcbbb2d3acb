// SPDX-License-Identifier: MIT
/*
 * make bench, part ratelimit: a bounded UDP flood (sendmmsg, batches of 64) from one
 * source to HOST:PORT, at most COUNT datagrams (<= 20,000,000) and SECS seconds
 * (<= 10), as fast as the kernel takes them. Prints {"sent": N, "secs": S,
 * "errors": E} (E: batches refused, e.g. ENOBUFS).
 *
 *   udpflood HOST PORT COUNT SECS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	static struct mmsghdr msgs[BATCH];
	static struct iovec iov[BATCH];
	static char payload[32];
	long count, sent = 0, errors = 0;
	double secs, t0, t;
	int fd;

	if (argc != 5 || inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
		fprintf(stderr, "usage: udpflood HOST PORT COUNT SECS\n");
		return 2;
	}
	to.sin_port = htons(atoi(argv[2]));
	count = atol(argv[3]);
	secs = atof(argv[4]);
	if (count < 1 || count > 20000000 || secs <= 0 || secs > 10) {
		fprintf(stderr, "udpflood: bounded: COUNT 1..20000000, SECS (0, 10]\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to))) {
		perror("udpflood: socket/connect");
		return 1;
	}
	memset(payload, 'x', sizeof(payload));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = payload;
		iov[i].iov_len = sizeof(payload);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = t = now();
	while (sent < count && t - t0 < secs) {
		int n = count - sent < BATCH ? count - sent : BATCH;

		n = sendmmsg(fd, msgs, n, 0);
		if (n < 0) {
			if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED &&
			    errno != EINTR) {
				perror("udpflood: sendmmsg");
				return 1;
			}
			errors++;
		} else {
			sent += n;
		}
		if ((sent & 1023) < BATCH)
			t = now();
	}
	t = now();
	printf("{\"sent\": %ld, \"secs\": %.6f, \"errors\": %ld}\n", sent, t - t0, errors);
	return 0;
}
