/* SPDX-License-Identifier: MIT */
/*
 * Active health checks (the registry's health_check block): TCP connect or
 * HTTP GET per backend, every interval, all from the agent's event loop.
 * Results go into sl_backends.health, which selection honours.
 */
#ifndef SLUICED_HEALTH_H
#define SLUICED_HEALTH_H

#include <jansson.h>

#include "lib/maps.h"
#include "lib/registry.h"
#include "loop.h"

struct health;

struct health *health_new(struct loop *loop, const struct sl_maps *maps);
/*
 * Called after every successful apply with the document now in force: starts
 * checking new backends, stops checking removed ones, keeps the state of the
 * others (by service name, address and port). Backend ids are read from the maps.
 */
int health_sync(struct health *h, const struct sl_registry *reg);
/* [{"service","backend","id","type","state": "up"|"down"|"unknown", "consecutive_ok",
 *   "consecutive_fail", "last_check_unix_ms", "last_error"}] */
json_t *health_status_json(const struct health *h);
void health_free(struct health *h);

#endif
