// SPDX-License-Identifier: MIT
/* Big buffers: contents survive growth across the heap/mapping boundary and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/batch.h"
#include "lib/bigmem.h"

#define MB (1u << 20)

static void fill(unsigned char *p, size_t n, size_t from)
{
	for (size_t i = from; i < n; i++)
		p[i] = (unsigned char)(i * 31 + 7);
}

static int intact(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 31 + 7))
			return 0;
	return 1;
}

static void test_grow_and_shrink_keep_contents(void **state)
{
	size_t sizes[] = { 1000, 64 * 1024, 3 * MB, 9 * MB + 5, 9 * MB + 100, 33 * MB, 5 * MB,
			   100 * 1024, 17 };
	size_t old = 0;
	unsigned char *p = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];

		p = sl_big_realloc(p, old, n);
		assert_non_null(p);
		assert_true(intact(p, old < n ? old : n));
		fill(p, n, old < n ? old : n);
		assert_true(intact(p, n));
		old = n;
	}
	sl_big_free(p, old);
	sl_big_free(NULL, 0);
}

static void test_batch_of_zeroes_stores_keys_only(void **state)
{
	struct sl_batch b;

	(void)state;
	sl_batch_init_zeroes(&b, sizeof(uint32_t), 240);
	for (uint32_t id = 1; id <= 100000; id++)
		assert_int_equal(sl_batch_add(&b, &id, NULL), 0);
	assert_int_equal(b.count, 100000);
	assert_null(b.values);
	for (uint32_t i = 0; i < 100000; i++) {
		uint32_t k;

		memcpy(&k, b.keys + i * sizeof(k), sizeof(k));
		assert_int_equal(k, i + 1);
	}
	sl_batch_free(&b);
	assert_int_equal(b.count, 0);
}

static void test_batch_keeps_values_across_growth(void **state)
{
	struct sl_batch b;
	uint64_t v[4];

	(void)state;
	sl_batch_init(&b, sizeof(uint32_t), sizeof(v));
	for (uint32_t id = 0; id < 200000; id++) {
		for (int j = 0; j < 4; j++)
			v[j] = (uint64_t)id * 4 + j;
		assert_int_equal(sl_batch_add(&b, &id, id % 3 ? v : NULL), 0);
	}
	for (uint32_t id = 0; id < 200000; id++) {
		memcpy(v, b.values + id * sizeof(v), sizeof(v));
		for (int j = 0; j < 4; j++)
			assert_true(v[j] == (id % 3 ? (uint64_t)id * 4 + j : 0));
	}
	sl_batch_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_and_shrink_keep_contents),
		cmocka_unit_test(test_batch_of_zeroes_stores_keys_only),
		cmocka_unit_test(test_batch_keeps_values_across_growth),
	};

	return cmocka_run_group_tests_name("bigmem", tests, NULL, NULL);
}
