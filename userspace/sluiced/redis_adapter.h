/* SPDX-License-Identifier: MIT */
/*
 * hiredis's asynchronous API on the agent's epoll loop: hiredis says when it
 * wants to read or write, the loop tells it when the socket is ready.
 */
#ifndef SLUICED_REDIS_ADAPTER_H
#define SLUICED_REDIS_ADAPTER_H

#include <hiredis/async.h>

#include "loop.h"

struct redis_adapter {
	struct loop_watch watch; /* first: the loop hands it back */
	struct loop *loop;
	redisAsyncContext *ac; /* NULL once hiredis has let go of it */
	uint32_t events;       /* what the loop polls for now */
	int added;
};

/* Hooks ac to the loop through a (owned by the caller, alive as long as ac). */
int redis_adapter_attach(struct redis_adapter *a, struct loop *loop, redisAsyncContext *ac);

#endif
