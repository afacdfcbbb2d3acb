/* SPDX-License-Identifier: MIT */
/*
 * What the Redis registry holds, checked one key at a time (so one bad key
 * costs only itself), and the canonical document made from it: the agent
 * hashes it for the generation's SHA-256 and `sluicectl registry get` prints
 * the same bytes.
 */
#ifndef SL_REDIS_DOC_H
#define SL_REDIS_DOC_H

#include <stddef.h>
#include <jansson.h>

#include "registry.h"

/* The canonical document: HEAD, the services' texts joined by ",", TAIL. */
#define SL_RDOC_HEAD "{\"services\":["
#define SL_RDOC_TAIL "]}\n"

/*
 * A service definition (the value of field `name` of hash `hkey`): a service
 * of the registry document without "backends"; "name" may be left out. On
 * success *svc holds it (no backends) and *def the definition with its name
 * (a new reference). Errors name the hash and the field.
 */
int sl_rsvc_parse(const char *hkey, const char *name, const char *raw, size_t len,
		  struct sl_reg_service *svc, json_t **def, char *err, size_t errlen);
/*
 * An instance value {"address", "port", "weight" (1)} stored under key `key`
 * for instance `id`: the value's endpoint must be the id. Errors name the key.
 */
int sl_rinst_parse(const char *key, const char *id, const char *raw, size_t len,
		   struct sl_reg_backend *be, char *err, size_t errlen);
/* The value written for an instance (malloc'd), or NULL without memory. */
char *sl_rinst_value(const struct sl_reg_backend *be);
/* Orders backends by family, address and port: every agent builds the same tables. */
int sl_rbackend_cmp(const void *a, const void *b);
/* One service of the canonical document: def with "backends", compact, keys sorted (malloc'd). */
char *sl_rdoc_service_text(json_t *def, const struct sl_reg_backend *bes, size_t n);

#endif
