/* SPDX-License-Identifier: MIT */
/*
 * The interface watcher: attaches sl_xdp to every interface whose name
 * matches a pattern (fnmatch), at start and as interfaces appear (rtnetlink
 * link notifications), and notes when they go.
 */
#ifndef SLUICED_IFWATCH_H
#define SLUICED_IFWATCH_H

#include "loop.h"

struct mnl_socket;

struct ifwatch {
	struct mnl_socket *nl;
	struct loop_watch watch;
	struct loop *loop;
	const char *pattern;
	const char *pin_root;
	/* Read at each attach, as pattern is: a SIGHUP's new configuration applies to new links. */
	const int *no_forward; /* sl_xdp_edge (limits and counters only) instead of sl_xdp */
};

/* Attaches to the matching interfaces present now, then follows changes. */
int ifwatch_start(struct ifwatch *w, struct loop *loop, const char *pattern,
		  const char *pin_root, const int *no_forward);
void ifwatch_stop(struct ifwatch *w);

#endif
