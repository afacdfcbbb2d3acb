// SPDX-License-Identifier: MIT
/* Maglev builder: table sizes, shares with and without weights, disruption, determinism. */
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

#define MAX_N 1024
#define KEY_LEN 32

struct backends {
	char buf[MAX_N][KEY_LEN];
	const char *keys[MAX_N];
	__u32 weights[MAX_N];
	size_t n;
};

static double absd(double x)
{
	return x < 0 ? -x : x;
}

/* n backends 10.1.x.y:8080, all of weight 1; skip leaves one index out. */
static void make_backends(struct backends *b, size_t n, size_t skip)
{
	size_t i;

	b->n = 0;
	for (i = 0; i < n; i++) {
		if (i == skip)
			continue;
		snprintf(b->buf[b->n], KEY_LEN, "10.1.%zu.%zu:8080", i / 256, i % 256);
		b->keys[b->n] = b->buf[b->n];
		b->weights[b->n] = 1;
		b->n++;
	}
}

static __u32 *build(const struct backends *b, __u32 m)
{
	__u32 *table = calloc(m, sizeof(*table));

	assert_non_null(table);
	assert_int_equal(sl_maglev_build(b->keys, b->weights, b->n, m, table), 0);
	return table;
}

static void count_entries(const __u32 *table, __u32 m, size_t n, __u32 *counts)
{
	__u32 j;

	memset(counts, 0, n * sizeof(*counts));
	for (j = 0; j < m; j++) {
		assert_true(table[j] < n);
		counts[table[j]]++;
	}
}

static void test_size(void **state)
{
	(void)state;
	assert_int_equal(sl_maglev_size(0), 1021);
	assert_int_equal(sl_maglev_size(1), 1021);
	assert_int_equal(sl_maglev_size(3), 1021);
	assert_int_equal(sl_maglev_size(4), 2053);
	assert_int_equal(sl_maglev_size(6), 2053);
	assert_int_equal(sl_maglev_size(7), 4099);
	assert_int_equal(sl_maglev_size(25), 8191);
	assert_int_equal(sl_maglev_size(26), 16381);
	assert_int_equal(sl_maglev_size(100), 32771);
	assert_int_equal(sl_maglev_size(204), 65537);
	assert_int_equal(sl_maglev_size(205), 131071);
	assert_int_equal(sl_maglev_size(409), 131071);
	assert_int_equal(sl_maglev_size(410), 131071);
	assert_int_equal(sl_maglev_size(1024), 131071);
	assert_int_equal(sl_maglev_size((size_t)-1), 131071);
	assert_true(sl_maglev_size(1024) <= SL_SLOTS_MAX - 1);
}

static void test_hash(void **state)
{
	const char *k = "10.0.0.1:80";

	(void)state;
	assert_int_equal(sl_hash64(k, strlen(k), 1), sl_hash64(k, strlen(k), 1));
	assert_int_not_equal(sl_hash64(k, strlen(k), 1), sl_hash64(k, strlen(k), 2));
	assert_int_not_equal(sl_hash64("10.0.0.1:80", 11, 0), sl_hash64("10.0.0.2:80", 11, 0));
	assert_int_not_equal(sl_hash64("", 0, 0), sl_hash64("\0", 1, 0));
	assert_int_not_equal(sl_hash64("abcdefgh", 8, 0), sl_hash64("abcdefgh\0", 9, 0));
	/* Pinned values: tables must agree between hosts and releases. */
	assert_int_equal(sl_hash64("", 0, 0), 0x9ca066f1a4ab2eeaULL);
	assert_int_equal(sl_hash64(k, strlen(k), 0), 0x222370ee54d8904dULL);
	assert_int_equal(sl_hash64(k, strlen(k), 0x123456789abcdefULL), 0xfe10af0ea0433b15ULL);
}

static void test_errors(void **state)
{
	const char *keys[] = { "a", "b", "c" };
	__u32 weights[] = { 1, 1, 1 };
	__u32 zero[] = { 1, 0, 1 };
	__u32 table[1021];

	(void)state;
	assert_int_equal(sl_maglev_build(keys, weights, 0, 1021, table), -EINVAL);
	assert_int_equal(sl_maglev_build(keys, zero, 3, 1021, table), -EINVAL);
	assert_int_equal(sl_maglev_build(keys, weights, 3, 2, table), -EINVAL);
	assert_int_equal(sl_maglev_build(keys, weights, 3, 3, table), 0);
	assert_int_equal(sl_maglev_build(keys, weights, 1, 1, table), 0);
	assert_int_equal(table[0], 0);
}

static void test_single(void **state)
{
	struct backends *b = malloc(sizeof(*b));
	__u32 *table, j;

	(void)state;
	assert_non_null(b);
	make_backends(b, 1, (size_t)-1);
	table = build(b, 1021);
	for (j = 0; j < 1021; j++)
		assert_int_equal(table[j], 0);
	free(table);
	free(b);
}

/* |count - expected| / expected, worst over backends and over n = 3..100. */
static double check_shares(int weighted, double limit, double *worst_abs)
{
	struct backends *b = malloc(sizeof(*b));
	__u32 counts[100], *table, m, sum;
	double worst = 0, expected, dev;
	size_t n, i;

	assert_non_null(b);
	*worst_abs = 0;
	for (n = 3; n <= 100; n++) {
		make_backends(b, n, (size_t)-1);
		sum = 0;
		for (i = 0; i < n; i++) {
			if (weighted)
				b->weights[i] = 1 + i % 5;
			sum += b->weights[i];
		}
		m = sl_maglev_size(n);
		table = build(b, m);
		count_entries(table, m, n, counts);
		for (i = 0; i < n; i++) {
			expected = (double)m * b->weights[i] / sum;
			dev = absd(counts[i] - expected);
			if (dev / expected > worst)
				worst = dev / expected;
			if (dev / m > *worst_abs)
				*worst_abs = dev / m;
			if (dev > limit * expected)
				fail_msg("n %zu backend %zu weight %u: %u entries, expected %.1f",
					 n, i, b->weights[i], counts[i], expected);
		}
		free(table);
	}
	free(b);
	return worst;
}

static void test_equal_shares(void **state)
{
	double worst, worst_abs;

	(void)state;
	worst = check_shares(0, 0.01, &worst_abs);
	print_message("equal weights, n 3..100: worst deviation %.3f%% of the expected share "
		      "(%.4f%% of the table)\n", worst * 100, worst_abs * 100);
}

static void test_weighted_shares(void **state)
{
	double worst, worst_abs;

	(void)state;
	worst = check_shares(1, 0.01, &worst_abs);
	print_message("weights 1..5, n 3..100: worst deviation %.3f%% of the expected share "
		      "(%.4f%% of the table)\n", worst * 100, worst_abs * 100);
}

/*
 * A backend of weight w gets w times the entries of a backend of weight 1, to
 * within the turn discretisation: a light backend's count is the floor of its
 * turns plus at most one more in the last, partial round, and the heaviest
 * absorbs what the floors left over (at most about one entry per backend).
 */
static void test_weighted_ratio(void **state)
{
	static const __u32 weights[] = { 1, 10, 100, 1000 };
	struct backends *b = malloc(sizeof(*b));
	__u32 counts[4], *table, m = 65537;
	double expected;
	size_t i;

	(void)state;
	assert_non_null(b);
	make_backends(b, 4, (size_t)-1);
	memcpy(b->weights, weights, sizeof(weights));
	table = build(b, m);
	count_entries(table, m, 4, counts);
	for (i = 0; i < 4; i++) {
		expected = (double)m * weights[i] / 1111;
		if (absd(counts[i] - expected) > 2)
			fail_msg("weight %u: %u entries, expected %.2f", weights[i], counts[i],
				 expected);
	}
	free(table);
	free(b);
}

static void test_disruption(void **state)
{
	static const size_t sizes[] = { 3, 5, 10, 50, 100 };
	struct backends *b = malloc(sizeof(*b));
	__u32 *before, *after, m, j, old, new, moved;
	size_t s, n, gone;

	(void)state;
	assert_non_null(b);
	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		n = sizes[s];
		gone = n / 2;
		m = sl_maglev_size(n);
		make_backends(b, n, (size_t)-1);
		before = build(b, m);
		make_backends(b, n, gone);
		after = build(b, m);

		moved = 0;
		for (j = 0; j < m; j++) {
			old = before[j];
			new = after[j] < gone ? after[j] : after[j] + 1;
			assert_int_not_equal(new, gone);
			if (old != gone && old != new)
				moved++;
		}
		print_message("n %zu, m %u: removing backend %zu moves %u other entries "
			      "(%.2f%% of the table, limit %.2f%%)\n", n, m, gone, moved,
			      100.0 * moved / m, 100.0 * (1.0 / n + 0.02));
		assert_true(moved <= (1.0 / n + 0.02) * m);
		free(after);
		free(before);
	}
	free(b);
}

static void test_deterministic(void **state)
{
	struct backends *b = malloc(sizeof(*b));
	__u32 *one, *two, m;
	__u64 digest;

	(void)state;
	assert_non_null(b);
	make_backends(b, 10, (size_t)-1);
	m = sl_maglev_size(10);
	one = build(b, m);
	two = build(b, m);
	assert_memory_equal(one, two, m * sizeof(*one));

	/* Hashing the table pins its content (the hash reads bytes little-endian). */
	digest = sl_hash64(one, m * sizeof(*one), 0);
	assert_int_equal(digest, 0x617f44468535c86dULL);
	free(two);
	free(one);
	free(b);
}

/* The largest service: 1024 backends in the largest table. */
static void test_large(void **state)
{
	struct backends *b = malloc(sizeof(*b));
	__u32 *counts = calloc(MAX_N, sizeof(*counts));
	double dev, worst = 0;
	__u32 *table, m;
	size_t i;

	(void)state;
	assert_non_null(b);
	assert_non_null(counts);
	make_backends(b, MAX_N, (size_t)-1);
	m = sl_maglev_size(MAX_N);
	table = build(b, m);
	count_entries(table, m, MAX_N, counts);
	for (i = 0; i < MAX_N; i++) {
		dev = absd(counts[i] - (double)m / MAX_N);
		if (dev > worst)
			worst = dev;
	}
	print_message("equal weights, n %d, m %u: worst deviation %.3f%% of the expected share\n",
		      MAX_N, m, 100.0 * worst * MAX_N / m);
	assert_true(worst <= 0.01 * m / MAX_N);
	free(table);
	free(counts);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_single),
		cmocka_unit_test(test_equal_shares),
		cmocka_unit_test(test_weighted_shares),
		cmocka_unit_test(test_weighted_ratio),
		cmocka_unit_test(test_disruption),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_large),
	};

	return cmocka_run_group_tests_name("maglev", tests, NULL, NULL);
}
