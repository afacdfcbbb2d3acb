// SPDX-License-Identifier: MIT
/*
 * The flow table (sluice/flow.h): which way a new flow takes, how a packet
 * marks its way as used, and what a way's fingerprint holds. The XDP
 * program and these tests share the functions.
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

/* Every byte of the 5-tuple, and the seed, moves the fingerprint. */
static void test_fingerprint_covers_the_whole_key(void **state)
{
	struct sl_flow_key k = { .sport = 0x3412, .dport = 0x5000, .proto = 6, .family = 4 };
	const __u64 seed = 0x0123456789abcdefULL;
	__u64 fp;

	(void)state;
	k.src.words[0] = 0x0100000a;
	k.dst.words[0] = 0x0a60000a;
	fp = sl_flow_fp(&k, seed);
	assert_int_not_equal(fp, sl_flow_fp(&k, seed + 1));
	for (size_t i = 0; i < offsetof(struct sl_flow_key, pad); i++) {
		struct sl_flow_key o = k;

		((unsigned char *)&o)[i] ^= 0x01;
		assert_int_not_equal(sl_flow_fp(&o, seed), fp);
	}
}

/*
 * A way holds its flow only with the backend and service it was written
 * with: a way two CPUs wrote at once (one's fingerprint, the other's
 * backend) holds neither flow.
 */
static void test_way_holds_its_flow_only_whole(void **state)
{
	struct sl_flow_key a = { .sport = 1, .proto = 6, .family = 4 }, b = a;
	__u64 fa, fb, way;

	(void)state;
	b.sport = 2;
	fa = sl_flow_fp(&a, 7);
	fb = sl_flow_fp(&b, 7);
	way = fa ^ sl_flow_bind(51, 3);
	assert_true(sl_flow_holds(way, 51, 3, fa));
	assert_false(sl_flow_holds(way, 52, 3, fa));
	assert_false(sl_flow_holds(way, 51, 4, fa));
	assert_false(sl_flow_holds(way, 51, 3, fb));
	assert_false(sl_flow_holds(way, 0, 3, fa ^ sl_flow_bind(51, 3) ^ sl_flow_bind(0, 3)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tag_is_never_free),
		cmocka_unit_test(test_fingerprint_covers_the_whole_key),
		cmocka_unit_test(test_way_holds_its_flow_only_whole),
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
