// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

static size_t hash_str(const char *s)
{
	size_t h = 0xcbf29ce484222325ULL;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

static struct sl_strmap_node **find(const struct sl_strmap *m, const char *key, size_t h)
{
	struct sl_strmap_node **p;

	if (!m->nbuckets)
		return NULL;
	for (p = &m->buckets[h & (m->nbuckets - 1)]; *p; p = &(*p)->next)
		if ((*p)->hash == h && !strcmp((*p)->key, key))
			return p;
	return p;
}

void *sl_strmap_get(const struct sl_strmap *m, const char *key)
{
	struct sl_strmap_node **p = find(m, key, hash_str(key));

	return p && *p ? (*p)->val : NULL;
}

static int grow(struct sl_strmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
	struct sl_strmap_node **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct sl_strmap_node *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

int sl_strmap_put(struct sl_strmap *m, const char *key, void *val, void **old)
{
	size_t h = hash_str(key), len = strlen(key);
	struct sl_strmap_node **p, *e;

	if (old)
		*old = NULL;
	p = find(m, key, h);
	if (p && *p) {
		if (old)
			*old = (*p)->val;
		(*p)->val = val;
		return 0;
	}
	/* Keep chains short: at most one entry per bucket on average. */
	if (m->count >= m->nbuckets && grow(m))
		return -ENOMEM;
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->val = val;
	memcpy(e->key, key, len + 1);
	e->next = m->buckets[h & (m->nbuckets - 1)];
	m->buckets[h & (m->nbuckets - 1)] = e;
	m->count++;
	return 0;
}

void *sl_strmap_del(struct sl_strmap *m, const char *key)
{
	struct sl_strmap_node **p = find(m, key, hash_str(key)), *e;
	void *val;

	if (!p || !*p)
		return NULL;
	e = *p;
	*p = e->next;
	val = e->val;
	free(e);
	m->count--;
	return val;
}

void sl_strmap_each(const struct sl_strmap *m, void (*fn)(const char *key, void *val, void *ctx),
		    void *ctx)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct sl_strmap_node *e = m->buckets[i]; e; e = e->next)
			fn(e->key, e->val, ctx);
}

void sl_strmap_clear(struct sl_strmap *m)
{
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct sl_strmap_node *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}
