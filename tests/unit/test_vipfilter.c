// SPDX-License-Identifier: MIT
/* The XDP VIP pre-filter: every wanted VIP's address and port bits set, little else. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/registry.h"
#include "lib/vipfilter.h"

static int has_bit(const __u64 *words, __u32 bit)
{
	return words[(bit >> 6) & (SL_VIP_FILTER_WORDS - 1)] >> (bit & 63) & 1;
}

static int popcount(const __u64 *words)
{
	int n = 0;

	for (int i = 0; i < SL_VIP_FILTER_WORDS; i++)
		n += __builtin_popcountll(words[i]);
	return n;
}

static void test_fill_sets_each_vip(void **state)
{
	static const char doc[] =
		"{\"services\":["
		"{\"name\":\"a\",\"vip\":\"10.96.0.10\",\"port\":80,\"protocol\":\"tcp\"},"
		"{\"name\":\"b\",\"vip\":\"10.96.0.11\",\"port\":53,\"protocol\":\"udp\"},"
		"{\"name\":\"c\",\"vip\":\"fd00:96::10\",\"port\":443,\"protocol\":\"tcp\"}]}";
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	struct sl_registry reg;
	char err[256];

	(void)state;
	assert_non_null(f);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), 0);
	sl_vip_filter_fill(f, &reg);
	for (size_t i = 0; i < reg.count; i++) {
		const struct sl_svc_key *k = &reg.services[i].key;

		assert_true(has_bit(f->addr, sl_vip_filter_addr_bit(&k->vip)));
		assert_true(has_bit(f->port, k->port));
	}
	/* Ports are kept in network order, as packets carry them. */
	assert_true(has_bit(f->port, htons(80)));
	assert_false(has_bit(f->port, 80) && htons(80) != 80);
	assert_int_equal(popcount(f->port), 3);
	assert_true(popcount(f->addr) >= 1 && popcount(f->addr) <= 3);
	sl_registry_free(&reg);
	free(f);
}

static void test_addr_bit_ignores_nothing_of_ipv6(void **state)
{
	struct sl_addr a = { .words = { 0, 0, 0, htonl(1) } }, b = a;

	(void)state;
	b.words[1] = htonl(0x10000);
	/* Every word takes part: two IPv6 VIPs differing in one word usually differ here. */
	assert_int_not_equal(sl_vip_filter_addr_bit(&a), sl_vip_filter_addr_bit(&b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_sets_each_vip),
		cmocka_unit_test(test_addr_bit_ignores_nothing_of_ipv6),
	};

	return cmocka_run_group_tests_name("vipfilter", tests, NULL, NULL);
}
