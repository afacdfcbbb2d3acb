/* SPDX-License-Identifier: MIT */
/* The agent's state: one instance, owned by main, used from the event loop only. */
#ifndef SLUICED_AGENT_H
#define SLUICED_AGENT_H

#include "config.h"
#include "health.h"
#include "ifwatch.h"
#include "lib/maps.h"
#include "lib/registry.h"
#include "loop.h"
#include "source_file.h"
#include "source_redis.h"
#include "status.h"

struct MHD_Daemon;

struct agent {
	struct agent_config cfg;
	int argc;
	char **argv;
	struct loop loop;
	struct sl_maps maps;
	struct agent_status status;
	struct source_file source;
	struct source_redis *redis; /* the registry source when it is redis://, else NULL */
	size_t adopted_services;    /* services the maps held at start */
	struct health *health;
	struct MHD_Daemon *http;
	struct loop_watch http_watch;
	struct loop_watch signal_watch;
	struct ifwatch ifwatch;
	__u64 generation; /* of the last apply this agent made or adopted */
};

/* Reads the registry source and reconciles the maps with it; keeps the last good state on error. */
int agent_apply_registry(struct agent *a);
/* The API: an HTTP server on cfg.listen whose sockets the loop polls. */
int api_start(struct agent *a);
void api_poll(struct agent *a);
int api_timeout_ms(struct agent *a, int max_ms);
void api_stop(struct agent *a);

#endif
