// SPDX-License-Identifier: MIT
/*
 * The flow table's index word (sluice/flow.h): which way a new flow takes
 * and how a packet marks its way as used. The XDP program and these tests
 * share the functions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sluice/flow.h>

/* A word whose ways hold tags 11, 12, 13 and 14. */
static __u32 full_word(void)
{
	__u32 word = 0;

	for (unsigned int w = 0; w < SL_FLOW_WAYS; w++)
		word = sl_flow_index_took(word, w, 11 + w);
	return word;
}

static void test_tag_is_never_free(void **state)
{
	(void)state;
	assert_int_equal(sl_flow_tag(0), 1);
	assert_int_equal(sl_flow_tag((__u64)SL_FLOW_TAG_MASK + 1), 1);
	assert_int_equal(sl_flow_tag(0x1234567800000005ULL), 5);
	assert_true(sl_flow_tag(~0ULL) <= SL_FLOW_TAG_MASK);
}

static void test_empty_bucket_fills_in_order(void **state)
{
	__u32 word = 0;

	(void)state;
	for (unsigned int w = 0; w < SL_FLOW_WAYS; w++) {
		__u32 tag = 40 + w;

		assert_int_equal(sl_flow_way_for(word, tag), w);
		word = sl_flow_index_took(word, w, tag);
		assert_int_equal(sl_flow_index_tag(word, w), tag);
	}
	for (unsigned int w = 0; w < SL_FLOW_WAYS; w++)
		assert_int_equal(sl_flow_index_tag(word, w), 40 + w);
}

/* The same flow starting again (a retransmitted SYN, a reused port) takes its own way back. */
static void test_own_tag_wins_over_free_and_victim(void **state)
{
	__u32 word = sl_flow_index_took(0, 2, 77);

	(void)state;
	assert_int_equal(sl_flow_way_for(word, 77), 2);
	word = full_word();
	for (unsigned int w = 0; w < SL_FLOW_WAYS; w++)
		assert_int_equal(sl_flow_way_for(word, 11 + w), w);
}

static void test_free_way_before_victim(void **state)
{
	__u32 word = full_word();

	(void)state;
	/* way 1 freed: a new flow takes it whatever the tree says. */
	word &= ~(SL_FLOW_TAG_MASK << SL_FLOW_TAG_BITS);
	assert_int_equal(sl_flow_way_for(word, 99), 1);
}

/*
 * The tree worked by hand: filled 0, 1, 2, 3, the victim is 0 (the LRU);
 * after uses of 0, 2 and 1 it is 2, 1 and 3 (a pseudo-LRU: never the way
 * just used, nor the one before it in the other half).
 */
static void test_victim_after_uses(void **state)
{
	__u32 word = full_word();

	(void)state;
	assert_int_equal(sl_flow_plru_victim(word), 0);
	word = (word & ~sl_flow_plru_mask(0)) | sl_flow_plru_used(0);
	assert_int_equal(sl_flow_plru_victim(word), 2);
	word = (word & ~sl_flow_plru_mask(2)) | sl_flow_plru_used(2);
	assert_int_equal(sl_flow_plru_victim(word), 1);
	word = (word & ~sl_flow_plru_mask(1)) | sl_flow_plru_used(1);
	assert_int_equal(sl_flow_plru_victim(word), 3);
	assert_int_equal(sl_flow_way_for(word, 99), 3);
}

/* Whatever the tree held, the way just used is never the next victim. */
static void test_most_recent_never_victim(void **state)
{
	(void)state;
	for (__u32 tree = 0; tree < 8; tree++) {
		__u32 word = full_word() & ~SL_FLOW_PLRU_MASK;

		word |= tree << SL_FLOW_PLRU_SHIFT;
		for (unsigned int w = 0; w < SL_FLOW_WAYS; w++) {
			__u32 used = (word & ~sl_flow_plru_mask(w)) | sl_flow_plru_used(w);

			assert_int_not_equal(sl_flow_plru_victim(used), w);
			assert_int_not_equal(sl_flow_plru_victim(sl_flow_index_took(word, w, 99)), w);
		}
	}
}

/* A full bucket given new flows one after another cycles through all its ways. */
static void test_new_flows_cycle_all_ways(void **state)
{
	__u32 word = full_word(), seen = 0;

	(void)state;
	for (unsigned int i = 0; i < SL_FLOW_WAYS; i++) {
		unsigned int w = sl_flow_way_for(word, 100 + i);

		seen |= 1U << w;
		word = sl_flow_index_took(word, w, 100 + i);
	}
	assert_int_equal(seen, (1U << SL_FLOW_WAYS) - 1);
}

/* Taking a way changes its tag and the tree, nothing else. */
static void test_took_keeps_other_tags(void **state)
{
	__u32 word = full_word(), after = sl_flow_index_took(word, 1, 5);

	(void)state;
	assert_int_equal(sl_flow_index_tag(after, 0), 11);
	assert_int_equal(sl_flow_index_tag(after, 1), 5);
	assert_int_equal(sl_flow_index_tag(after, 2), 13);
	assert_int_equal(sl_flow_index_tag(after, 3), 14);
	assert_int_equal(after & ~SL_FLOW_PLRU_MASK & ~(SL_FLOW_TAG_MASK << SL_FLOW_TAG_BITS),
			 word & ~SL_FLOW_PLRU_MASK & ~(SL_FLOW_TAG_MASK << SL_FLOW_TAG_BITS));
	assert_int_equal(after >> 31, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tag_is_never_free),
		cmocka_unit_test(test_empty_bucket_fills_in_order),
		cmocka_unit_test(test_own_tag_wins_over_free_and_victim),
		cmocka_unit_test(test_free_way_before_victim),
		cmocka_unit_test(test_victim_after_uses),
		cmocka_unit_test(test_most_recent_never_victim),
		cmocka_unit_test(test_new_flows_cycle_all_ways),
		cmocka_unit_test(test_took_keeps_other_tags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
