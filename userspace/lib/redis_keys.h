/* SPDX-License-Identifier: MIT */
/*
 * The Redis registry's names (README, "Redis registry"), for a key prefix P
 * (default "sluice:"):
 *   P services                    HASH  service name -> service JSON (no backends)
 *   P instances:SERVICE           SET   instance ids of the service
 *   P instance:SERVICE:ID         STRING {"address","port","weight"}, with a TTL or none
 *   P changes                     channel: "SERVICE" or "SERVICE ID" after every write
 * An instance id is its endpoint as sluice prints it: "10.0.0.1:80", "[fd00::1]:80".
 * Service names cannot hold ':' or ' ', so every key and message splits one way.
 */
#ifndef SL_REDIS_KEYS_H
#define SL_REDIS_KEYS_H

#include <stddef.h>
#include <sluice/service.h>

#include "addr.h"

#define SL_REDIS_PREFIX_DEFAULT "sluice:"
#define SL_REDIS_PREFIX_MAX 64
#define SL_REDIS_KEY_MAX (SL_REDIS_PREFIX_MAX + 16 + SL_NAME_MAX + SL_ENDPOINT_STRLEN)
/* The longest change message: "SERVICE ID". */
#define SL_REDIS_MSG_MAX (SL_NAME_MAX + SL_ENDPOINT_STRLEN + 1)

/* A prefix is 0..64 printable characters without spaces. Returns 0 or -EINVAL (err says why). */
int sl_redis_prefix_check(const char *prefix, char *err, size_t errlen);
/* The registry document's service name rule: 1..63 of A-Z a-z 0-9 . _ - */
int sl_redis_name_valid(const char *name, size_t len);

void sl_rkey_services(const char *prefix, char *buf, size_t size);
void sl_rkey_instances(const char *prefix, const char *svc, char *buf, size_t size);
void sl_rkey_instance(const char *prefix, const char *svc, const char *id, char *buf,
		      size_t size);
void sl_rkey_channel(const char *prefix, char *buf, size_t size);

/*
 * The canonical instance id of "ADDR:PORT" / "[ADDR6]:PORT" (so "fd00::01" and
 * "fd00::1" are one instance). Returns 0 or -EINVAL.
 */
int sl_rinst_id(const char *endpoint, char *id, size_t size);
/* Splits P instance:SERVICE:ID (an expired key's name); -EINVAL if it is not one. */
int sl_rkey_parse_instance(const char *prefix, const char *key, size_t len,
			   char svc[SL_NAME_MAX], char id[SL_ENDPOINT_STRLEN]);
/* Splits a change message; id[0] is '\0' for a whole-service change. */
int sl_rmsg_parse(const char *msg, size_t len, char svc[SL_NAME_MAX],
		  char id[SL_ENDPOINT_STRLEN]);

#endif
