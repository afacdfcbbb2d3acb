/* SPDX-License-Identifier: MIT */
/*
 * The agent's single event loop (epoll). Everything that touches the maps
 * (registry reloads, health results, API calls) runs on this one thread, so
 * none of it needs a lock.
 */
#ifndef SLUICED_LOOP_H
#define SLUICED_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct loop_watch;
typedef void (*loop_fn)(struct loop_watch *w, uint32_t events);

/* Embed in the owner's struct; fn gets the watch back and finds its owner. */
struct loop_watch {
	int fd;
	loop_fn fn;
};

struct loop {
	int epfd;
	int stop;
};

int loop_init(struct loop *l);
void loop_close(struct loop *l);
/* events: EPOLLIN, EPOLLOUT... Returns 0 or -errno. */
int loop_add(struct loop *l, struct loop_watch *w, uint32_t events);
int loop_mod(struct loop *l, struct loop_watch *w, uint32_t events);
void loop_del(struct loop *l, struct loop_watch *w);
/* Waits up to timeout_ms (-1: forever) and dispatches what is ready. */
int loop_run_once(struct loop *l, int timeout_ms);

/* CLOCK_MONOTONIC in milliseconds and nanoseconds; wall clock in nanoseconds. */
uint64_t now_ms(void);
uint64_t now_ns(void);
uint64_t wall_ns(void);

#endif
