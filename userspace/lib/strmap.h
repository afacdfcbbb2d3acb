/* SPDX-License-Identifier: MIT */
/*
 * A string-keyed hash map of pointers (chained, doubling), for the Redis
 * registry cache: services by name and each service's instances by id.
 */
#ifndef SL_STRMAP_H
#define SL_STRMAP_H

#include <stddef.h>

struct sl_strmap_node {
	struct sl_strmap_node *next;
	size_t hash;
	void *val;
	char key[]; /* owned copy */
};

struct sl_strmap {
	struct sl_strmap_node **buckets;
	size_t nbuckets; /* a power of two, or 0 before the first insert */
	size_t count;
};

void *sl_strmap_get(const struct sl_strmap *m, const char *key);
/* Adds or replaces key; returns 0 or -ENOMEM. *old (if given) gets the replaced value. */
int sl_strmap_put(struct sl_strmap *m, const char *key, void *val, void **old);
/* Removes key; returns its value, or NULL when it was absent. */
void *sl_strmap_del(struct sl_strmap *m, const char *key);
/* Calls fn on every entry, in no particular order; fn must not change the map. */
void sl_strmap_each(const struct sl_strmap *m, void (*fn)(const char *key, void *val, void *ctx),
		    void *ctx);
/* Frees the map's own memory (not the values). */
void sl_strmap_clear(struct sl_strmap *m);

#endif
