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

		assert_true(sl_vip_filter_has(f, sl_vip_filter_bit(&k->vip, k->port)));
	}
	/* Ports are taken in network order, as packets carry them. */
	assert_int_not_equal(sl_vip_filter_bit(&reg.services[0].key.vip, htons(80)),
			     sl_vip_filter_bit(&reg.services[0].key.vip, 80));
	assert_true(popcount(f->bits) >= 1 && popcount(f->bits) <= 3);
	sl_registry_free(&reg);
	free(f);
}

static void test_bit_ignores_nothing_of_ipv6(void **state)
{
	struct sl_addr a = { .words = { 0, 0, 0, htonl(1) } }, b = a;

	(void)state;
	b.words[1] = htonl(0x10000);
	/* Every word takes part: two IPv6 VIPs differing in one word usually differ here. */
	assert_int_not_equal(sl_vip_filter_bit(&a, htons(443)), sl_vip_filter_bit(&b, htons(443)));
}

/*
 * A /24 of VIPs on two ports (512 VIP:ports) sets nearly 512 distinct bits,
 * and a sweep of non-VIP destinations (other /24s, other ports) passes about
 * as often as the bits set predict (512 / 131,072, 0.4%), not more.
 */
static void test_few_false_positives(void **state)
{
	struct sl_vip_filter *f = calloc(1, sizeof(*f));
	static const __u16 ports[] = { 80, 443 };
	unsigned int passed = 0, tried = 0;
	struct sl_addr a = { 0 };

	(void)state;
	assert_non_null(f);
	for (__u32 host = 0; host < 256; host++)
		for (size_t p = 0; p < 2; p++) {
			a.words[0] = htonl(0x0a600000 | host);
			sl_vip_filter_mark(f, &a, htons(ports[p]));
		}
	assert_true(popcount(f->bits) > 490);
	for (__u32 host = 0; host < 65536; host++) {
		a.words[0] = htonl(0x0a610000 | host);
		passed += sl_vip_filter_has(f, sl_vip_filter_bit(&a, htons(80)));
		a.words[0] = htonl(0x0a600000 | (host & 0xff));
		passed += sl_vip_filter_has(f, sl_vip_filter_bit(&a, htons(1024 + host % 30000)));
		tried += 2;
	}
	assert_true(passed * 1000 < tried * 12); /* < 1.2%: three times the expected rate */
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_sets_each_vip),
		cmocka_unit_test(test_bit_ignores_nothing_of_ipv6),
		cmocka_unit_test(test_few_false_positives),
	};

	return cmocka_run_group_tests_name("vipfilter", tests, NULL, NULL);
}
