// SPDX-License-Identifier: MIT
/* Selection tables for every algorithm, built from hand-made services. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sluice/service.h>

#include "lib/maglev.h"
#include "lib/slots.h"

#define ID_BASE 100

struct fixture {
	struct sl_reg_service svc;
	__u32 *ids;
};

/* n IPv4 backends 10.2.x.y:8080 with ids ID_BASE + i and the given weights (NULL: all 1). */
static struct fixture *make_service(__u8 alg, size_t n, const __u32 *weights)
{
	struct fixture *f = calloc(1, sizeof(*f));
	size_t i;

	assert_non_null(f);
	f->svc.settings.algorithm = alg;
	f->svc.backend_count = n;
	if (!n)
		return f;
	f->svc.backends = calloc(n, sizeof(*f->svc.backends));
	f->ids = calloc(n, sizeof(*f->ids));
	assert_non_null(f->svc.backends);
	assert_non_null(f->ids);
	for (i = 0; i < n; i++) {
		f->svc.backends[i].family = SL_FAMILY_IPV4;
		f->svc.backends[i].addr.words[0] = htonl(0x0a020000 | (__u32)i);
		f->svc.backends[i].port = 8080;
		f->svc.backends[i].weight = weights ? weights[i] : 1;
		f->ids[i] = ID_BASE + i;
	}
	return f;
}

static void free_service(struct fixture *f)
{
	free(f->svc.backends);
	free(f->ids);
	free(f);
}

/* counts[i] = appearances of backend i; fails on an id that is not a backend's. */
static void count_ids(const struct sl_slots *s, size_t n, __u32 *counts)
{
	__u32 j;

	memset(counts, 0, n * sizeof(*counts));
	assert_int_equal(s->len, s->slots[0] + 1);
	for (j = 1; j < s->len; j++) {
		assert_in_range(s->slots[j], ID_BASE, ID_BASE + n - 1);
		counts[s->slots[j] - ID_BASE]++;
	}
}

static void test_empty(void **state)
{
	struct sl_slots s = { 0 };
	struct fixture *f;
	__u8 alg;

	(void)state;
	sl_slots_free(&s);
	sl_slots_free(NULL);
	for (alg = 0; alg < SL_ALG_COUNT; alg++) {
		f = make_service(alg, 0, NULL);
		assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
		assert_int_equal(s.len, 1);
		assert_non_null(s.slots);
		assert_int_equal(s.slots[0], 0);
		sl_slots_free(&s);
		assert_null(s.slots);
		assert_int_equal(s.len, 0);
		sl_slots_free(&s);
		free_service(f);
	}
}

static void test_list(void **state)
{
	static const __u8 algs[] = { SL_ALG_RANDOM, SL_ALG_ROUND_ROBIN, SL_ALG_LEAST_CONN };
	static const __u32 weights[] = { 7, 1, 3, 2 };
	struct sl_slots s;
	struct fixture *f;
	size_t a, i;

	(void)state;
	for (a = 0; a < sizeof(algs); a++) {
		f = make_service(algs[a], 4, weights);
		assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
		assert_int_equal(s.len, 5);
		assert_int_equal(s.slots[0], 4);
		for (i = 0; i < 4; i++)
			assert_int_equal(s.slots[1 + i], ID_BASE + i);
		sl_slots_free(&s);
		free_service(f);
	}
}

/* Smooth weighted round robin spreads the heavy backend out: a a b a c a a. */
static void test_weighted_interleaved(void **state)
{
	static const __u32 weights[] = { 5, 1, 1 };
	static const __u32 want[] = { 7, 100, 100, 101, 100, 102, 100, 100 };
	struct sl_slots s;
	struct fixture *f;

	(void)state;
	f = make_service(SL_ALG_WEIGHTED, 3, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_int_equal(s.len, 8);
	assert_memory_equal(s.slots, want, sizeof(want));
	sl_slots_free(&s);
	free_service(f);
}

static void test_weighted_shares(void **state)
{
	static const __u32 weights[] = { 1, 2, 3, 4 };
	struct sl_slots s;
	struct fixture *f;
	__u32 counts[4], start, k, total, run, longest = 0;
	size_t i;

	(void)state;
	f = make_service(SL_ALG_WEIGHTED, 4, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_int_equal(s.len, 11);
	total = s.slots[0];
	assert_int_equal(total, 10);

	/* A connect may start anywhere; any full cycle from there has the exact shares. */
	for (start = 0; start < total; start++) {
		memset(counts, 0, sizeof(counts));
		for (k = 0; k < total; k++)
			counts[s.slots[1 + (start + k) % total] - ID_BASE]++;
		for (i = 0; i < 4; i++)
			assert_int_equal(counts[i], weights[i]);
	}
	for (k = 1, run = 1; k < total; k++) {
		run = s.slots[1 + k] == s.slots[k] ? run + 1 : 1;
		if (run > longest)
			longest = run;
	}
	assert_true(longest <= 2);
	sl_slots_free(&s);
	free_service(f);
}

static void test_weighted_gcd(void **state)
{
	static const __u32 weights[] = { 2, 4, 6 };
	struct sl_slots s;
	struct fixture *f;
	__u32 counts[3];

	(void)state;
	f = make_service(SL_ALG_WEIGHTED, 3, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_int_equal(s.len, 7);
	count_ids(&s, 3, counts);
	assert_int_equal(counts[0], 1);
	assert_int_equal(counts[1], 2);
	assert_int_equal(counts[2], 3);
	sl_slots_free(&s);
	free_service(f);
}

/* 1000 backends of weight 65535 reduce by their gcd to one slot each. */
static void test_weighted_huge_equal(void **state)
{
	__u32 *weights = calloc(1000, sizeof(*weights));
	__u32 *counts = calloc(1000, sizeof(*counts));
	struct sl_slots s;
	struct fixture *f;
	size_t i;

	(void)state;
	assert_non_null(weights);
	assert_non_null(counts);
	for (i = 0; i < 1000; i++)
		weights[i] = 65535;
	f = make_service(SL_ALG_WEIGHTED, 1000, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_int_equal(s.len, 1001);
	count_ids(&s, 1000, counts);
	for (i = 0; i < 1000; i++)
		assert_int_equal(counts[i], 1);
	sl_slots_free(&s);
	free_service(f);
	free(counts);
	free(weights);
}

/*
 * Weights near 65535 without a common factor sum to ~65M and are scaled down
 * to the cap: each backend keeps its share to within one slot, and a backend
 * of weight 1 beside them keeps its single slot.
 */
static void test_weighted_huge_scaled(void **state)
{
	__u32 *weights = calloc(1001, sizeof(*weights));
	__u32 *counts = calloc(1001, sizeof(*counts));
	double sum = 0, quota;
	struct sl_slots s;
	struct fixture *f;
	size_t i;

	(void)state;
	assert_non_null(weights);
	assert_non_null(counts);
	for (i = 0; i < 1000; i++) {
		weights[i] = 65535 - i % 7;
		sum += weights[i];
	}
	weights[1000] = 1;
	sum += 1;
	f = make_service(SL_ALG_WEIGHTED, 1001, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_true(s.slots[0] <= SL_WEIGHTED_SLOTS_MAX);
	assert_true(s.len <= SL_SLOTS_MAX);
	count_ids(&s, 1001, counts);
	for (i = 0; i < 1000; i++) {
		quota = (double)SL_WEIGHTED_SLOTS_MAX * weights[i] / sum;
		assert_true(counts[i] >= 1);
		assert_true(counts[i] + 1 > quota && counts[i] < quota + 1);
	}
	assert_int_equal(counts[1000], 1);
	sl_slots_free(&s);
	free_service(f);
	free(counts);
	free(weights);
}

static void test_weighted_errors(void **state)
{
	static const __u32 weights[] = { 1, 0, 1 };
	struct sl_slots s;
	struct fixture *f;

	(void)state;
	f = make_service(SL_ALG_WEIGHTED, 3, weights);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), -EINVAL);
	assert_null(s.slots);
	f->svc.settings.algorithm = SL_ALG_MAGLEV;
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), -EINVAL);
	assert_null(s.slots);
	f->svc.settings.algorithm = SL_ALG_COUNT;
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), -EINVAL);
	assert_null(s.slots);
	free_service(f);
}

static void test_maglev(void **state)
{
	struct sl_slots s;
	struct fixture *f;
	__u32 counts[5], m, *table;
	const char *keys[5];
	char buf[5][32];
	__u32 weights[5];
	size_t i;

	(void)state;
	f = make_service(SL_ALG_MAGLEV, 5, NULL);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	m = sl_maglev_size(5);
	assert_int_equal(s.len, m + 1);
	assert_int_equal(s.slots[0], m);
	count_ids(&s, 5, counts);
	for (i = 0; i < 5; i++)
		assert_true(counts[i] > 0);

	/* The keys are the backends' "ADDR:PORT" strings. */
	for (i = 0; i < 5; i++) {
		snprintf(buf[i], sizeof(buf[i]), "10.2.0.%zu:8080", i);
		keys[i] = buf[i];
		weights[i] = 1;
	}
	table = calloc(m, sizeof(*table));
	assert_non_null(table);
	assert_int_equal(sl_maglev_build(keys, weights, 5, m, table), 0);
	for (i = 0; i < m; i++)
		assert_int_equal(s.slots[1 + i], f->ids[table[i]]);
	free(table);
	sl_slots_free(&s);
	free_service(f);
}

static void test_maglev_ipv6(void **state)
{
	static const char *keys[] = { "[fd00::1]:8080", "[fd00::2]:8080", "10.2.0.2:8080" };
	static const __u32 weights[] = { 3, 1, 2 };
	struct sl_slots s;
	struct fixture *f;
	__u32 m, *table;
	size_t i;

	(void)state;
	f = make_service(SL_ALG_MAGLEV, 3, weights);
	for (i = 0; i < 2; i++) {
		f->svc.backends[i].family = SL_FAMILY_IPV6;
		assert_int_equal(inet_pton(AF_INET6, i ? "fd00::2" : "fd00::1",
					   f->svc.backends[i].addr.words), 1);
	}
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	m = sl_maglev_size(3);
	assert_int_equal(s.len, m + 1);
	table = calloc(m, sizeof(*table));
	assert_non_null(table);
	assert_int_equal(sl_maglev_build(keys, weights, 3, m, table), 0);
	for (i = 0; i < m; i++)
		assert_int_equal(s.slots[1 + i], f->ids[table[i]]);
	free(table);
	sl_slots_free(&s);

	f->svc.backends[2].family = 0;
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), -EINVAL);
	free_service(f);
}

/* 1024 backends: the largest Maglev table, every backend in it. */
/*
 * Removing a backend keeps the table size, so the other backends keep almost
 * all their entries; a table that no longer gives each backend its minimum
 * share is rebuilt at the size sl_maglev_size picks.
 */
static void test_maglev_keeps_size(void **state)
{
	struct fixture *big = make_service(SL_ALG_MAGLEV, 4, NULL);
	struct fixture *small = make_service(SL_ALG_MAGLEV, 3, NULL);
	struct sl_slots before = { 0 }, after = { 0 }, fresh = { 0 };
	__u32 moved = 0, m;

	(void)state;
	assert_int_equal(sl_slots_build(&big->svc, big->ids, &before), 0);
	m = before.slots[0];
	assert_int_equal(m, sl_maglev_size(4));
	assert_int_not_equal(sl_maglev_size(3), m); /* a fresh build would change size */
	assert_int_equal(sl_slots_build_keep(&small->svc, small->ids, m, &after), 0);
	assert_int_equal(after.slots[0], m);
	for (__u32 j = 1; j <= m; j++)
		if (before.slots[j] != ID_BASE + 3 && before.slots[j] != after.slots[j])
			moved++;
	assert_true(moved <= (1.0 / 4 + 0.02) * m);

	assert_int_equal(sl_maglev_size_keep(3, m), m);
	assert_int_equal(sl_maglev_size_keep(m / SL_MAGLEV_MIN_SHARE + 1, m),
			 sl_maglev_size(m / SL_MAGLEV_MIN_SHARE + 1));
	assert_int_equal(sl_maglev_size_keep(3, 1000), sl_maglev_size(3)); /* not a table size */
	assert_int_equal(sl_slots_build_keep(&small->svc, small->ids, 0, &fresh), 0);
	assert_int_equal(fresh.slots[0], sl_maglev_size(3));
	sl_slots_free(&before);
	sl_slots_free(&after);
	sl_slots_free(&fresh);
	free_service(big);
	free_service(small);
}

static void test_maglev_large(void **state)
{
	__u32 *counts = calloc(1024, sizeof(*counts));
	struct sl_slots s;
	struct fixture *f;
	size_t i;

	(void)state;
	assert_non_null(counts);
	f = make_service(SL_ALG_MAGLEV, 1024, NULL);
	assert_int_equal(sl_slots_build(&f->svc, f->ids, &s), 0);
	assert_int_equal(s.len, SL_SLOTS_MAX);
	count_ids(&s, 1024, counts);
	for (i = 0; i < 1024; i++)
		assert_true(counts[i] > 0);
	sl_slots_free(&s);
	free_service(f);
	free(counts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_weighted_interleaved),
		cmocka_unit_test(test_weighted_shares),
		cmocka_unit_test(test_weighted_gcd),
		cmocka_unit_test(test_weighted_huge_equal),
		cmocka_unit_test(test_weighted_huge_scaled),
		cmocka_unit_test(test_weighted_errors),
		cmocka_unit_test(test_maglev),
		cmocka_unit_test(test_maglev_keeps_size),
		cmocka_unit_test(test_maglev_ipv6),
		cmocka_unit_test(test_maglev_large),
	};

	return cmocka_run_group_tests_name("slots", tests, NULL, NULL);
}
