// SPDX-License-Identifier: MIT
/*
 * The XDP VIP pre-filter (every wanted VIP's address and port bits set, little
 * else) and the VIP index (sl_xdp_vips: a slot per VIP, shared ones empty).
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/registry.h"
#include "lib/vipfilter.h"
#include "lib/vipindex.h"

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

static struct sl_svc_key vip_key(const char *addr, __u16 port, __u8 proto)
{
	struct sl_svc_key k = { .family = SL_FAMILY_IPV4, .port = htons(port), .proto = proto };

	inet_pton(AF_INET, addr, &k.vip.words[0]);
	return k;
}

static struct sl_xdp_vip *slot_of(struct sl_xdp_vip *slots, const struct sl_svc_key *k)
{
	return &slots[sl_xdp_vip_slot(sl_vip_filter_bit(&k->vip, k->port))];
}

/* The index of n services, all kept, into a fresh array (every slot written). */
static struct sl_xdp_vip *index_of(const struct sl_svc_key *keys, const struct sl_service *svcs,
				   size_t n)
{
	struct sl_xdp_vip *slots = calloc(SL_XDP_VIP_SLOTS, sizeof(*slots));
	struct sl_vip_pass p = { .keys = keys, .svcs = svcs, .key_stride = sizeof(*keys),
				 .svc_stride = sizeof(*svcs), .n = n };

	assert_non_null(slots);
	assert_int_equal(sl_vip_index_write(slots, &p, 1), 0);
	return slots;
}

static size_t used_slots(const struct sl_xdp_vip *slots)
{
	size_t used = 0;

	for (size_t s = 0; s < SL_XDP_VIP_SLOTS; s++)
		used += slots[s].svc_id != 0;
	return used;
}

static void test_index_names_each_vip_alone_in_its_slot(void **state)
{
	struct sl_svc_key keys[2] = { vip_key("10.96.0.10", 80, 6), vip_key("10.96.0.11", 443, 6) };
	struct sl_service svcs[2] = { { .id = 3, .syn_per_second = 100, .syn_burst = 20 },
				      { .id = 4 } };
	struct sl_xdp_vip *slots = index_of(keys, svcs, 2);

	(void)state;
	for (int i = 0; i < 2; i++) {
		struct sl_xdp_vip *v = slot_of(slots, &keys[i]);

		assert_memory_equal(&v->key, &keys[i], sizeof(keys[i]));
		assert_int_equal(v->svc_id, svcs[i].id);
		assert_int_equal(v->syn_per_second, svcs[i].syn_per_second);
		assert_int_equal(v->syn_burst, svcs[i].syn_burst);
		assert_int_equal(v->check, sl_xdp_vip_check(v));
	}
	assert_int_equal(used_slots(slots), 2);
	free(slots);
}

/* TCP and UDP on one VIP:port hash to one slot: it stays empty, for sl_services to answer. */
static void test_index_leaves_shared_slots_empty(void **state)
{
	struct sl_svc_key keys[4] = { vip_key("10.96.0.53", 53, 17), vip_key("10.96.0.53", 53, 6),
				      vip_key("10.96.0.10", 80, 6), vip_key("10.96.0.53", 53, 132) };
	struct sl_service svcs[4] = { { .id = 1 }, { .id = 2 }, { .id = 3 }, { .id = 5 } };
	struct sl_xdp_vip *slots = index_of(keys, svcs, 4), zero = { 0 };

	(void)state;
	assert_memory_equal(slot_of(slots, &keys[0]), &zero, sizeof(zero));
	assert_int_equal(slot_of(slots, &keys[2])->svc_id, 3);
	assert_int_equal(used_slots(slots), 1);
	free(slots);
}

/*
 * Before an apply, only services the new document keeps under the same VIP
 * and name keep their slots; a renamed or removed one's slot is emptied,
 * and a slot no service has is left as it is (an apply touches only its
 * services' slots).
 */
static void test_index_narrowing_keeps_what_stays(void **state)
{
	static const char doc[] =
		"{\"services\":["
		"{\"name\":\"a\",\"vip\":\"10.96.0.10\",\"port\":80,\"protocol\":\"tcp\"},"
		"{\"name\":\"b2\",\"vip\":\"10.96.0.11\",\"port\":443,\"protocol\":\"tcp\"}]}";
	struct sl_svc_key keys[3] = { vip_key("10.96.0.10", 80, 6), vip_key("10.96.0.11", 443, 6),
				      vip_key("10.96.0.12", 80, 6) };
	struct sl_service svcs[3] = { { .id = 1, .name = "a" }, { .id = 2, .name = "b" },
				      { .id = 3, .name = "c" } };
	struct sl_xdp_vip *slots = index_of(keys, svcs, 3), stray = { .svc_id = 9 };
	struct sl_vip_pass p = { .keys = keys, .svcs = svcs, .key_stride = sizeof(keys[0]),
				 .svc_stride = sizeof(svcs[0]), .n = 3 };
	struct sl_registry reg;
	char err[256];
	size_t stray_slot = 0;

	(void)state;
	assert_int_equal(sl_registry_parse(doc, sizeof(doc) - 1, &reg, err, sizeof(err)), 0);
	p.want = &reg;
	while (slots[stray_slot].svc_id)
		stray_slot++;
	slots[stray_slot] = stray;
	assert_int_equal(sl_vip_index_write(slots, &p, 0), 0);
	assert_int_equal(slot_of(slots, &keys[0])->svc_id, 1);
	assert_int_equal(slot_of(slots, &keys[1])->svc_id, 0); /* renamed b -> b2 */
	assert_int_equal(slot_of(slots, &keys[2])->svc_id, 0); /* removed */
	assert_int_equal(slots[stray_slot].svc_id, 9);
	sl_registry_free(&reg);
	free(slots);
}

/* A read that catches a slot mid-write sees words of two entries: the check fails. */
static void test_index_check_catches_a_torn_entry(void **state)
{
	struct sl_svc_key ka = vip_key("10.96.0.10", 80, 6), kb = vip_key("10.96.7.20", 8443, 6);
	struct sl_service sa = { .id = 7, .syn_per_second = 50 }, sb = { .id = 9 };
	struct sl_xdp_vip a = sl_xdp_vip_of(&ka, &sa), b = sl_xdp_vip_of(&kb, &sb), torn;
	int caught = 0, tried = 0;

	(void)state;
	/* Every split at an 8-byte store boundary, either entry first. */
	for (size_t cut = 8; cut < offsetof(struct sl_xdp_vip, check); cut += 8) {
		torn = a;
		memcpy((char *)&torn + cut, (char *)&b + cut, sizeof(torn) - cut);
		caught += torn.check != sl_xdp_vip_check(&torn);
		torn = b;
		memcpy((char *)&torn + cut, (char *)&a + cut, sizeof(torn) - cut);
		caught += torn.check != sl_xdp_vip_check(&torn);
		tried += 2;
	}
	assert_int_equal(caught, tried);
	assert_int_equal(a.check, sl_xdp_vip_check(&a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_sets_each_vip),
		cmocka_unit_test(test_bit_ignores_nothing_of_ipv6),
		cmocka_unit_test(test_few_false_positives),
		cmocka_unit_test(test_index_names_each_vip_alone_in_its_slot),
		cmocka_unit_test(test_index_leaves_shared_slots_empty),
		cmocka_unit_test(test_index_narrowing_keeps_what_stays),
		cmocka_unit_test(test_index_check_catches_a_torn_entry),
	};

	return cmocka_run_group_tests_name("vipfilter", tests, NULL, NULL);
}
