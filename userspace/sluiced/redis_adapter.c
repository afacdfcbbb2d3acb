// SPDX-License-Identifier: MIT
#include <errno.h>

#include "redis_adapter.h"

static void update(struct redis_adapter *a, uint32_t events)
{
	if (events == a->events && a->added)
		return;
	a->events = events;
	if (!a->added) {
		if (!loop_add(a->loop, &a->watch, events))
			a->added = 1;
	} else {
		loop_mod(a->loop, &a->watch, events);
	}
}

static void add_read(void *p)
{
	struct redis_adapter *a = p;

	update(a, a->events | EPOLLIN);
}

static void del_read(void *p)
{
	struct redis_adapter *a = p;

	update(a, a->events & ~EPOLLIN);
}

static void add_write(void *p)
{
	struct redis_adapter *a = p;

	update(a, a->events | EPOLLOUT);
}

static void del_write(void *p)
{
	struct redis_adapter *a = p;

	update(a, a->events & ~EPOLLOUT);
}

/* hiredis is about to free the context and close its socket. */
static void cleanup(void *p)
{
	struct redis_adapter *a = p;

	if (a->added)
		loop_del(a->loop, &a->watch);
	a->added = 0;
	a->events = 0;
	a->ac = NULL;
}

static void on_ready(struct loop_watch *w, uint32_t events)
{
	struct redis_adapter *a = (struct redis_adapter *)w;

	/* An error or hang-up is found by the read, which then disconnects. */
	if (a->ac && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		redisAsyncHandleRead(a->ac);
	/* The read may have freed the context: cleanup() cleared a->ac then. */
	if (a->ac && (events & EPOLLOUT))
		redisAsyncHandleWrite(a->ac);
}

int redis_adapter_attach(struct redis_adapter *a, struct loop *loop, redisAsyncContext *ac)
{
	if (ac->ev.data)
		return -EEXIST;
	a->watch = (struct loop_watch){ ac->c.fd, on_ready };
	a->loop = loop;
	a->ac = ac;
	a->events = 0;
	a->added = 0;
	ac->ev.data = a;
	ac->ev.addRead = add_read;
	ac->ev.delRead = del_read;
	ac->ev.addWrite = add_write;
	ac->ev.delWrite = del_write;
	ac->ev.cleanup = cleanup;
	return 0;
}
