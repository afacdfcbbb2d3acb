/* SPDX-License-Identifier: MIT */
/*
 * What one reader knows of a Redis registry: service definitions and
 * instances as last read, each checked on its own when it changes, and the
 * instances' expiry deadlines. It assembles the registry document (only the
 * services that changed are rebuilt) for the reconciler. No I/O here: the
 * agent feeds it from its connection and `sluicectl registry get` from its own.
 */
#ifndef SL_REDIS_CACHE_H
#define SL_REDIS_CACHE_H

#include <stddef.h>
#include <linux/types.h>

#include "registry.h"

struct sl_rcache;

struct sl_rcache_report {
	size_t services; /* in the document */
	size_t backends;
	size_t invalid;	 /* keys skipped (bad JSON, bad field, clashes, limits) */
	char first_error[SL_ERR_MAX]; /* of the first skipped key in name order; "" if none */
};

struct sl_rcache *sl_rcache_new(const char *prefix);
void sl_rcache_free(struct sl_rcache *c);

/*
 * A service definition as read from the services hash. Returns 1 when the
 * document changes, 0 when not (same bytes, or an invalid definition that
 * leaves the last good one in force), -ENOMEM.
 */
int sl_rcache_put_service(struct sl_rcache *c, const char *name, const char *raw, size_t len);
/* Removes a service and its instances; returns 1 if it was there. */
int sl_rcache_del_service(struct sl_rcache *c, const char *name);
/* Removes the services not in names[0..n); returns how many went. */
size_t sl_rcache_retain_services(struct sl_rcache *c, char *const *names, size_t n);
int sl_rcache_has_service(const struct sl_rcache *c, const char *name);
/* The VIP's family of a service with a valid definition; -ENOENT if none. */
int sl_rcache_service_family(const struct sl_rcache *c, const char *name, __u8 *family);
size_t sl_rcache_service_count(const struct sl_rcache *c);
size_t sl_rcache_instance_count(const struct sl_rcache *c);
/* Calls fn with every service's name (no changes to the cache from fn). */
void sl_rcache_each_service(const struct sl_rcache *c, void (*fn)(const char *name, void *ctx),
			    void *ctx);

/*
 * An instance of a known service (ignored, returning 0, for an unknown one).
 * pttl_ms: Redis's PTTL (-1: no expiry; -2: gone, which removes it); now_ms:
 * the caller's monotonic clock, which the deadline is on. Returns 1 when the
 * document changes, 0, or -ENOMEM.
 */
int sl_rcache_put_instance(struct sl_rcache *c, const char *svc, const char *id,
			   const char *raw, size_t len, long long pttl_ms, __u64 now_ms);
int sl_rcache_del_instance(struct sl_rcache *c, const char *svc, const char *id);
/* Removes the service's instances not in ids[0..n); returns how many went. */
size_t sl_rcache_retain_instances(struct sl_rcache *c, const char *svc, char *const *ids,
				  size_t n);
/* 1 when this value still needs its TTL read: new, changed, or no deadline known. */
int sl_rcache_instance_needs_ttl(const struct sl_rcache *c, const char *svc, const char *id,
				 const char *raw, size_t len);

/* The earliest instance deadline (monotonic ms), 0 when none. */
__u64 sl_rcache_next_expiry(const struct sl_rcache *c);
/*
 * Takes every deadline at or before now_ms off the heap and calls fn for its
 * instance (which stays until a read says it is gone). Returns how many.
 */
size_t sl_rcache_pop_expired(struct sl_rcache *c, __u64 now_ms,
			     void (*fn)(const char *svc, const char *id, void *ctx), void *ctx);

/* 1 when something changed since the last build: the document, or which keys are skipped. */
int sl_rcache_changed(const struct sl_rcache *c);
/*
 * Assembles the document: services in name order, each with its valid
 * instances (ordered by sl_rbackend_cmp) as backends. out gets it, with the
 * SHA-256 of its canonical text (and *text that text, if text is not NULL).
 * problem(msg, ctx) is called once for each newly skipped key. Returns 0 or -ENOMEM.
 */
int sl_rcache_build(struct sl_rcache *c, struct sl_registry *out, char **text,
		    struct sl_rcache_report *rep,
		    void (*problem)(const char *msg, void *ctx), void *ctx);

#endif
