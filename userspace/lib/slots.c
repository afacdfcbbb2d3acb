// SPDX-License-Identifier: MIT
/* Selection tables: one per service, written whole into an sl_svc_slots inner map. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maglev.h"
#include "slots.h"

/* "[" INET6_ADDRSTRLEN "]:65535" */
#define SLOTS_KEY_LEN 56

struct remainder {
	__u64 rem;
	size_t idx;
};

static int slots_alloc(struct sl_slots *out, size_t n)
{
	if (n + 1 > SL_SLOTS_MAX)
		return -EINVAL;
	out->slots = calloc(n + 1, sizeof(*out->slots));
	if (!out->slots)
		return -ENOMEM;
	out->len = n + 1;
	out->slots[0] = n;
	return 0;
}

static __u64 gcd64(__u64 a, __u64 b)
{
	__u64 t;

	while (b) {
		t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static int cmp_remainder(const void *a, const void *b)
{
	const struct remainder *x = a, *y = b;

	if (x->rem != y->rem)
		return x->rem < y->rem ? 1 : -1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Shares cap slots out in proportion to w[], every backend keeping at least
 * one: backends whose quota is below one are fixed at one and taken out (which
 * lowers everyone else's quota, so repeat), then the rest get the floor of
 * their quota plus one more for the largest remainders. The result sums to cap.
 */
static int scale_weights(__u64 *w, size_t n, __u64 sum, __u64 cap)
{
	struct remainder *rems = NULL;
	unsigned char *fixed = NULL;
	__u64 budget = cap, left;
	size_t i, nrem = 0;
	int changed, err = 0;

	fixed = calloc(n, 1);
	rems = calloc(n, sizeof(*rems));
	if (!fixed || !rems) {
		err = -ENOMEM;
		goto out;
	}

	do {
		changed = 0;
		for (i = 0; i < n; i++) {
			if (fixed[i] || w[i] * budget >= sum)
				continue;
			fixed[i] = 1;
			budget--;
			sum -= w[i];
			w[i] = 1;
			changed = 1;
		}
	} while (changed);

	left = budget;
	for (i = 0; i < n; i++) {
		if (fixed[i])
			continue;
		rems[nrem].rem = w[i] * budget % sum;
		rems[nrem].idx = i;
		nrem++;
		w[i] = w[i] * budget / sum;
		left -= w[i];
	}
	qsort(rems, nrem, sizeof(*rems), cmp_remainder);
	for (i = 0; i < nrem && left; i++, left--)
		w[rems[i].idx]++;
out:
	free(rems);
	free(fixed);
	return err;
}

/*
 * nginx's smooth weighted round robin, run for one full cycle: every step
 * adds each weight to its backend's credit, picks the largest credit (lowest
 * index on ties) and takes the total from it. A backend of weight w appears w
 * times, spread out rather than in a run, so a connect at any slot sees the
 * shares over the next `total` slots.
 */
static int build_weighted(const struct sl_reg_service *svc, const __u32 *ids,
			  struct sl_slots *out)
{
	size_t i, step, best, n = svc->backend_count;
	__u64 *w = NULL, sum = 0, g = 0;
	__s64 *credit = NULL;
	int err;

	if (n > SL_WEIGHTED_SLOTS_MAX)
		return -EINVAL;
	w = calloc(n, sizeof(*w));
	credit = calloc(n, sizeof(*credit));
	if (!w || !credit) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (svc->backends[i].weight == 0) {
			err = -EINVAL;
			goto out;
		}
		w[i] = svc->backends[i].weight;
		g = gcd64(w[i], g);
	}
	for (i = 0; i < n; i++) {
		w[i] /= g;
		sum += w[i];
	}
	if (sum > SL_WEIGHTED_SLOTS_MAX) {
		err = scale_weights(w, n, sum, SL_WEIGHTED_SLOTS_MAX);
		if (err)
			goto out;
		sum = SL_WEIGHTED_SLOTS_MAX;
	}

	err = slots_alloc(out, sum);
	if (err)
		goto out;
	for (step = 0; step < sum; step++) {
		best = 0;
		for (i = 0; i < n; i++) {
			credit[i] += (__s64)w[i];
			if (credit[i] > credit[best])
				best = i;
		}
		credit[best] -= (__s64)sum;
		out->slots[1 + step] = ids[best];
	}
out:
	free(credit);
	free(w);
	return err;
}

static int format_key(const struct sl_reg_backend *b, char *buf, size_t size)
{
	char addr[INET6_ADDRSTRLEN];
	int n;

	if (b->family == SL_FAMILY_IPV4) {
		if (!inet_ntop(AF_INET, &b->addr.words[0], addr, sizeof(addr)))
			return -errno;
		n = snprintf(buf, size, "%s:%u", addr, (unsigned int)b->port);
	} else if (b->family == SL_FAMILY_IPV6) {
		if (!inet_ntop(AF_INET6, b->addr.words, addr, sizeof(addr)))
			return -errno;
		n = snprintf(buf, size, "[%s]:%u", addr, (unsigned int)b->port);
	} else {
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= size)
		return -EINVAL;
	return 0;
}

/* Keys are "ADDR:PORT", so a backend keeps its permutation across registry reorderings. */
static int build_maglev(const struct sl_reg_service *svc, const __u32 *ids, __u32 keep_m,
			struct sl_slots *out)
{
	size_t i, n = svc->backend_count;
	const char **keys = NULL;
	__u32 *weights = NULL, *table = NULL, m;
	char *keybuf = NULL;
	int err;

	m = sl_maglev_size_keep(n, keep_m);
	keys = calloc(n, sizeof(*keys));
	keybuf = calloc(n, SLOTS_KEY_LEN);
	weights = calloc(n, sizeof(*weights));
	table = calloc(m, sizeof(*table));
	if (!keys || !keybuf || !weights || !table) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		err = format_key(&svc->backends[i], keybuf + i * SLOTS_KEY_LEN, SLOTS_KEY_LEN);
		if (err)
			goto out;
		keys[i] = keybuf + i * SLOTS_KEY_LEN;
		weights[i] = svc->backends[i].weight;
	}
	err = sl_maglev_build(keys, weights, n, m, table);
	if (err)
		goto out;

	err = slots_alloc(out, m);
	if (err)
		goto out;
	for (i = 0; i < m; i++)
		out->slots[1 + i] = ids[table[i]];
out:
	free(table);
	free(weights);
	free(keybuf);
	free(keys);
	return err;
}

int sl_slots_build(const struct sl_reg_service *svc, const __u32 *ids, struct sl_slots *out)
{
	return sl_slots_build_keep(svc, ids, 0, out);
}

int sl_slots_build_keep(const struct sl_reg_service *svc, const __u32 *ids, __u32 maglev_m,
			struct sl_slots *out)
{
	size_t i, n = svc->backend_count;
	int err;

	out->slots = NULL;
	out->len = 0;
	if (n == 0)
		return slots_alloc(out, 0);

	switch (svc->settings.algorithm) {
	case SL_ALG_RANDOM:
	case SL_ALG_ROUND_ROBIN:
	case SL_ALG_LEAST_CONN:
		err = slots_alloc(out, n);
		if (err)
			return err;
		for (i = 0; i < n; i++)
			out->slots[1 + i] = ids[i];
		return 0;
	case SL_ALG_WEIGHTED:
		return build_weighted(svc, ids, out);
	case SL_ALG_MAGLEV:
		return build_maglev(svc, ids, maglev_m, out);
	default:
		return -EINVAL;
	}
}

void sl_slots_free(struct sl_slots *s)
{
	if (!s)
		return;
	free(s->slots);
	s->slots = NULL;
	s->len = 0;
}
