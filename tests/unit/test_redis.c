// SPDX-License-Identifier: MIT
/*
 * The Redis registry's pure logic: URL parsing, reconnect backoff, key and
 * message encoding, per-key validation, and the document the cache assembles
 * (what the agent applies and `sluicectl registry get` prints).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "lib/backoff.h"
#include "lib/redis_cache.h"
#include "lib/redis_doc.h"
#include "lib/redis_keys.h"
#include "lib/redis_url.h"

/* --- URLs -------------------------------------------------------------------------------- */

static void test_url_ok(void **state)
{
	struct sl_redis_url u;
	char err[256], buf[300];

	(void)state;
	assert_int_equal(sl_redis_url_parse("redis://127.0.0.1:6380", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.password, "");

	assert_int_equal(sl_redis_url_parse("redis://redis.example", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "redis.example");
	assert_int_equal(u.port, SL_REDIS_PORT_DEFAULT);

	assert_int_equal(sl_redis_url_parse("redis://alice:s%40cr%3At@[fd00::1]:7000/3", &u, err,
					    sizeof(err)), 0);
	assert_string_equal(u.user, "alice");
	assert_string_equal(u.password, "s@cr:t");
	assert_string_equal(u.host, "fd00::1");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 3);
	/* The password never shows. */
	assert_string_equal(sl_redis_url_display(&u, buf, sizeof(buf)),
			    "redis://alice@[fd00::1]:7000/3");

	assert_int_equal(sl_redis_url_parse("redis://:pw@h/", &u, err, sizeof(err)), 0);
	assert_string_equal(u.user, "");
	assert_string_equal(u.password, "pw");
	assert_int_equal(u.db, 0);
	/* The last '@' ends the user part. */
	assert_int_equal(sl_redis_url_parse("redis://:a@b@h", &u, err, sizeof(err)), 0);
	assert_string_equal(u.password, "a@b");
	assert_string_equal(u.host, "h");
}

static void expect_bad(const char *url, int ret, const char *needle)
{
	struct sl_redis_url u;
	char err[256] = "";

	assert_int_equal(sl_redis_url_parse(url, &u, err, sizeof(err)), ret);
	if (!strstr(err, needle))
		fail_msg("%s: error \"%s\" lacks \"%s\"", url, err, needle);
}

static void test_url_bad(void **state)
{
	(void)state;
	expect_bad("rediss://h:6380", -ENOTSUP, "TLS");
	expect_bad("http://h", -EINVAL, "expected redis://");
	expect_bad("redis://", -EINVAL, "no host");
	expect_bad("redis://h:0", -EINVAL, "port");
	expect_bad("redis://h:65536", -EINVAL, "port");
	expect_bad("redis://h:x", -EINVAL, "port");
	expect_bad("redis://fd00::1:80", -EINVAL, "brackets");
	expect_bad("redis://[fd00::1", -EINVAL, "']'");
	expect_bad("redis://h/x", -EINVAL, "database");
	expect_bad("redis://h/70000", -EINVAL, "database");
	expect_bad("redis://h?timeout=1", -EINVAL, "query");
	expect_bad("redis://user@h", -EINVAL, "needs a password");
	expect_bad("redis://:%zz@h", -EINVAL, "password");
	expect_bad("redis://:@h", -EINVAL, "empty password");
	expect_bad("redis://h%20x", -EINVAL, "invalid character");
}

/* --- backoff ----------------------------------------------------------------------------- */

static void test_backoff(void **state)
{
	(void)state;
	/* Equal jitter: between half the step and the step. */
	assert_int_equal(sl_backoff_ms(0, 100, 5000, 0), 50);
	assert_int_equal(sl_backoff_ms(0, 100, 5000, 50), 100);
	assert_int_equal(sl_backoff_ms(0, 100, 5000, 51), 50);
	assert_int_equal(sl_backoff_ms(1, 100, 5000, 0), 100);
	assert_int_equal(sl_backoff_ms(3, 100, 5000, 0), 400);
	assert_int_equal(sl_backoff_ms(5, 100, 5000, 1600), 3200);
	/* Capped, and no overflow however many attempts. */
	assert_int_equal(sl_backoff_ms(6, 100, 5000, 0), 2500);
	assert_int_equal(sl_backoff_ms(1000, 100, 5000, 2500), 5000);
	assert_int_equal(sl_backoff_ms(4000000000u, 100, 5000, 0xffffffffu) <= 5000, 1);
	for (unsigned int a = 0; a < 64; a++)
		for (uint32_t r = 0; r < 100000; r += 997) {
			unsigned int d = sl_backoff_ms(a, 100, 5000, r);

			assert_true(d >= 50 && d <= 5000);
		}
	/* Jitter spreads a fleet: different random words, different delays. */
	assert_int_not_equal(sl_backoff_ms(4, 100, 5000, 1), sl_backoff_ms(4, 100, 5000, 700));
}

/* --- keys and messages ------------------------------------------------------------------- */

static void test_keys(void **state)
{
	char buf[SL_REDIS_KEY_MAX], svc[SL_NAME_MAX], id[SL_ENDPOINT_STRLEN], err[256];
	const char *k;

	(void)state;
	sl_rkey_services("sluice:", buf, sizeof(buf));
	assert_string_equal(buf, "sluice:services");
	sl_rkey_instances("p/", "web", buf, sizeof(buf));
	assert_string_equal(buf, "p/instances:web");
	sl_rkey_channel("", buf, sizeof(buf));
	assert_string_equal(buf, "changes");
	sl_rkey_instance("sluice:", "web", "[fd00::1]:80", buf, sizeof(buf));
	assert_string_equal(buf, "sluice:instance:web:[fd00::1]:80");

	assert_int_equal(sl_rinst_id("10.0.0.1:80", id, sizeof(id)), 0);
	assert_string_equal(id, "10.0.0.1:80");
	assert_int_equal(sl_rinst_id("[fd00:0::01]:443", id, sizeof(id)), 0);
	assert_string_equal(id, "[fd00::1]:443");
	assert_int_equal(sl_rinst_id("fd00::1:443", id, sizeof(id)), -EINVAL);
	assert_int_equal(sl_rinst_id("10.0.0.1", id, sizeof(id)), -EINVAL);
	assert_int_equal(sl_rinst_id("10.0.0.1:0", id, sizeof(id)), -EINVAL);

	/* An instance key splits at the first ':' after "instance:" (names have none). */
	k = "sluice:instance:web-1.a_b:[fd00::1]:80";
	assert_int_equal(sl_rkey_parse_instance("sluice:", k, strlen(k), svc, id), 0);
	assert_string_equal(svc, "web-1.a_b");
	assert_string_equal(id, "[fd00::1]:80");
	k = "sluice:instance:web:10.0.0.1:80";
	assert_int_equal(sl_rkey_parse_instance("other:", k, strlen(k), svc, id), -EINVAL);
	k = "sluice:instances:web";
	assert_int_equal(sl_rkey_parse_instance("sluice:", k, strlen(k), svc, id), -EINVAL);
	k = "sluice:instance:web:[fd00::0001]:80"; /* not canonical: no writer makes it */
	assert_int_equal(sl_rkey_parse_instance("sluice:", k, strlen(k), svc, id), -EINVAL);
	k = "sluice:instance:w b:10.0.0.1:80";
	assert_int_equal(sl_rkey_parse_instance("sluice:", k, strlen(k), svc, id), -EINVAL);

	assert_int_equal(sl_rmsg_parse("web", 3, svc, id), 0);
	assert_string_equal(svc, "web");
	assert_string_equal(id, "");
	assert_int_equal(sl_rmsg_parse("web 10.0.0.1:80", 15, svc, id), 0);
	assert_string_equal(id, "10.0.0.1:80");
	assert_int_equal(sl_rmsg_parse("web ", 4, svc, id), -EINVAL);
	assert_int_equal(sl_rmsg_parse("", 0, svc, id), -EINVAL);
	assert_int_equal(sl_rmsg_parse("we:b", 4, svc, id), -EINVAL);
	assert_int_equal(sl_rmsg_parse("web 10.0.0.1:80 x", 17, svc, id), -EINVAL);

	assert_int_equal(sl_redis_prefix_check("sluice:", err, sizeof(err)), 0);
	assert_int_equal(sl_redis_prefix_check("", err, sizeof(err)), 0);
	assert_int_equal(sl_redis_prefix_check("a b", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0x20"));
	assert_int_equal(sl_redis_name_valid("a.b-c_D9", 8), 1);
	assert_int_equal(sl_redis_name_valid("a:b", 3), 0);
	assert_int_equal(sl_redis_name_valid("", 0), 0);
}

/* --- one key at a time ------------------------------------------------------------------- */

static void test_service_parse(void **state)
{
	struct sl_reg_service svc;
	char err[SL_ERR_MAX];
	json_t *def;
	const char *ok = "{\"vip\":\"10.96.0.1\",\"port\":80,\"lb\":{\"algorithm\":\"maglev\"}}";

	(void)state;
	assert_int_equal(sl_rsvc_parse("sluice:services", "web", ok, strlen(ok), &svc, &def, err,
				       sizeof(err)), 0);
	assert_string_equal(svc.settings.name, "web");
	assert_int_equal(svc.settings.algorithm, SL_ALG_MAGLEV);
	assert_int_equal(ntohs(svc.key.port), 80);
	assert_null(svc.backends);
	assert_string_equal(json_string_value(json_object_get(def, "name")), "web");
	json_decref(def);

	static const struct {
		const char *raw;
		const char *needle;
	} bad[] = {
		{ "{\"vip\":", "invalid JSON" },
		{ "[1]", "must be a JSON object" },
		{ "{\"vip\":\"10.96.0.1\",\"port\":80,\"backends\":[]}", "backends" },
		{ "{\"name\":\"other\",\"vip\":\"10.96.0.1\",\"port\":80}", "name" },
		{ "{\"vip\":\"10.96.0.300\",\"port\":80}", "vip: invalid address" },
		{ "{\"vip\":\"10.96.0.1\",\"port\":80,\"lb\":{\"algorithm\":\"x\"}}",
		  "lb.algorithm" },
		{ "{\"vip\":\"10.96.0.1\",\"port\":80,\"typo\":1}", "typo: unknown field" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = sl_rsvc_parse("sluice:services", "web", bad[i].raw, strlen(bad[i].raw),
					&svc, &def, err, sizeof(err));

		assert_int_equal(ret, -EINVAL);
		assert_null(def);
		/* Every error names the hash and the field. */
		if (!strstr(err, "sluice:services field \"web\"") || !strstr(err, bad[i].needle))
			fail_msg("%s: error \"%s\"", bad[i].raw, err);
	}
}

static void test_instance_parse(void **state)
{
	struct sl_reg_backend be;
	char err[SL_ERR_MAX], *v;
	const char *key = "sluice:instance:web:10.0.0.1:80";
	const char *ok = "{\"address\":\"10.0.0.1\",\"port\":80}";

	(void)state;
	assert_int_equal(sl_rinst_parse(key, "10.0.0.1:80", ok, strlen(ok), &be, err, sizeof(err)),
			 0);
	assert_int_equal(be.port, 80);
	assert_int_equal(be.weight, 1);
	assert_int_equal(be.family, SL_FAMILY_IPV4);
	v = sl_rinst_value(&be);
	assert_string_equal(v, "{\"address\":\"10.0.0.1\",\"port\":80,\"weight\":1}");
	free(v);

	static const struct {
		const char *raw;
		const char *needle;
	} bad[] = {
		{ "nope", "invalid JSON" },
		{ "{\"address\":\"10.0.0.1\"}", "port: required" },
		{ "{\"address\":\"10.0.0.300\",\"port\":80}", "invalid address" },
		{ "{\"address\":\"10.0.0.1\",\"port\":80,\"weight\":0}", "weight" },
		{ "{\"address\":\"10.0.0.1\",\"port\":80,\"zone\":\"a\"}", "zone: unknown field" },
		{ "{\"address\":\"10.0.0.2\",\"port\":80}", "the value is for 10.0.0.2:80" },
		{ "{\"address\":10,\"port\":80}", "address: must be a string" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = sl_rinst_parse(key, "10.0.0.1:80", bad[i].raw, strlen(bad[i].raw), &be,
					 err, sizeof(err));

		assert_int_equal(ret, -EINVAL);
		if (strncmp(err, key, strlen(key)) || !strstr(err, bad[i].needle))
			fail_msg("%s: error \"%s\"", bad[i].raw, err);
	}
}

/* --- the cache and the document it assembles -------------------------------------------- */

struct problems {
	int n;
	char last[SL_ERR_MAX];
};

static void on_problem(const char *msg, void *ctx)
{
	struct problems *p = ctx;

	p->n++;
	snprintf(p->last, sizeof(p->last), "%s", msg);
}

static void put_svc(struct sl_rcache *c, const char *name, const char *vip, int port)
{
	char raw[256];

	snprintf(raw, sizeof(raw), "{\"vip\":\"%s\",\"port\":%d}", vip, port);
	assert_true(sl_rcache_put_service(c, name, raw, strlen(raw)) >= 0);
}

static int put_inst(struct sl_rcache *c, const char *svc, const char *addr, int port, int weight,
		    long long pttl, __u64 now)
{
	char raw[256], id[SL_ENDPOINT_STRLEN], ep[SL_ENDPOINT_STRLEN];

	snprintf(raw, sizeof(raw), "{\"address\":\"%s\",\"port\":%d,\"weight\":%d}", addr, port,
		 weight);
	snprintf(ep, sizeof(ep), strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, port);
	assert_int_equal(sl_rinst_id(ep, id, sizeof(id)), 0);
	return sl_rcache_put_instance(c, svc, id, raw, strlen(raw), pttl, now);
}

static void sha_of(const char *text, __u8 *out)
{
	assert_int_equal(EVP_Digest(text, strlen(text), out, NULL, EVP_sha256(), NULL), 1);
}

static void test_assembly(void **state)
{
	struct sl_rcache *c = sl_rcache_new("sluice:");
	struct sl_registry reg, again;
	struct sl_rcache_report rep;
	struct problems pr = { 0 };
	char *text;
	__u8 sha[32];

	(void)state;
	assert_non_null(c);
	put_svc(c, "web", "10.96.0.1", 80);
	put_svc(c, "api", "10.96.0.2", 443);
	assert_int_equal(put_inst(c, "web", "10.0.0.2", 80, 1, -1, 0), 1);
	assert_int_equal(put_inst(c, "web", "10.0.0.10", 80, 3, -1, 0), 1);
	assert_int_equal(put_inst(c, "web", "10.0.0.1", 8080, 1, -1, 0), 1);
	/* An instance of a service Redis does not define is not kept. */
	assert_int_equal(put_inst(c, "nope", "10.0.0.1", 80, 1, -1, 0), 0);

	assert_int_equal(sl_rcache_build(c, &reg, &text, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.services, 2);
	assert_int_equal(rep.backends, 3);
	assert_int_equal(rep.invalid, 0);
	assert_int_equal(pr.n, 0);
	/* Services by name; backends by address, then port (numerically, not as text). */
	assert_string_equal(text,
		"{\"services\":["
		"{\"backends\":[],\"name\":\"api\",\"port\":443,\"vip\":\"10.96.0.2\"},"
		"{\"backends\":[{\"address\":\"10.0.0.1\",\"port\":8080,\"weight\":1},"
		"{\"address\":\"10.0.0.2\",\"port\":80,\"weight\":1},"
		"{\"address\":\"10.0.0.10\",\"port\":80,\"weight\":3}],"
		"\"name\":\"web\",\"port\":80,\"vip\":\"10.96.0.1\"}]}\n");
	/* The generation's SHA-256 is the canonical text's: `registry get | sha256sum`. */
	sha_of(text, sha);
	assert_memory_equal(sha, reg.sha256, 32);
	assert_string_equal(reg.services[1].settings.name, "web");
	assert_int_equal(reg.services[1].backend_count, 3);
	assert_int_equal(reg.services[1].backends[2].weight, 3);
	/* The assembled registry parses to the same thing as its text. */
	assert_int_equal(sl_registry_parse(text, strlen(text), &again, NULL, 0), 0);
	assert_int_equal(again.count, 2);
	assert_int_equal(again.services[1].backend_count, 3);
	assert_memory_equal(again.sha256, reg.sha256, 32);
	sl_registry_free(&again);
	sl_registry_free(&reg);
	free(text);
	assert_int_equal(sl_rcache_changed(c), 0);

	/* Same bytes again: nothing changes. */
	assert_int_equal(put_inst(c, "web", "10.0.0.2", 80, 1, -1, 0), 0);
	assert_int_equal(sl_rcache_changed(c), 0);

	/* Membership: what the set no longer lists goes. */
	{
		char *keep[] = { "10.0.0.2:80" };

		assert_int_equal(sl_rcache_retain_instances(c, "web", keep, 1), 2);
	}
	assert_int_equal(sl_rcache_instance_count(c), 1);
	{
		char *keep[] = { "web" };

		assert_int_equal(sl_rcache_retain_services(c, keep, 1), 1);
	}
	assert_int_equal(sl_rcache_has_service(c, "api"), 0);
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.services, 1);
	assert_int_equal(rep.backends, 1);
	sl_registry_free(&reg);
	sl_rcache_free(c);
}

static void test_bad_keys_are_skipped_alone(void **state)
{
	struct sl_rcache *c = sl_rcache_new("sluice:");
	struct sl_rcache_report rep;
	struct problems pr = { 0 };
	struct sl_registry reg;
	const char *bad = "{\"vip\":\"10.96.0.3\",\"port\":80,\"lb\":{\"algorithm\":\"fast\"}}";
	const char *badinst = "{\"address\":\"10.0.0.5\"";
	__u8 fam;

	(void)state;
	put_svc(c, "good", "10.96.0.1", 80);
	put_svc(c, "six", "fd00:96::1", 80);
	assert_int_equal(sl_rcache_put_service(c, "broken", bad, strlen(bad)), 0);
	put_inst(c, "good", "10.0.0.1", 80, 1, -1, 0);
	assert_int_equal(sl_rcache_put_instance(c, "good", "10.0.0.5:80", badinst, strlen(badinst),
						-1, 0), 0);
	/* An IPv4 instance of an IPv6 service: skipped at assembly, naming its key. */
	put_inst(c, "six", "10.0.0.6", 80, 1, -1, 0);
	put_inst(c, "six", "fd00::6", 80, 1, -1, 0);

	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.services, 2);
	assert_int_equal(rep.backends, 2);
	assert_int_equal(rep.invalid, 3);
	assert_int_equal(pr.n, 3);
	/* The first in name order: the broken service's definition. */
	assert_non_null(strstr(rep.first_error, "sluice:services field \"broken\""));
	assert_non_null(strstr(rep.first_error, "lb.algorithm"));
	sl_registry_free(&reg);

	/* Reported once: a second build reports nothing new, and still counts them. */
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(pr.n, 3);
	assert_int_equal(rep.invalid, 3);
	sl_registry_free(&reg);

	/* A valid service made invalid keeps its last good definition in force. */
	assert_int_equal(sl_rcache_put_service(c, "good", bad, strlen(bad)), 0);
	assert_int_equal(sl_rcache_service_family(c, "good", &fam), 0);
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.services, 2);
	assert_int_equal(rep.invalid, 4);
	assert_int_equal(pr.n, 4);
	assert_non_null(strstr(pr.last, "field \"good\""));
	sl_registry_free(&reg);

	/* Fixed keys stop counting. */
	put_svc(c, "good", "10.96.0.1", 80);
	put_inst(c, "good", "10.0.0.5", 80, 1, -1, 0);
	assert_int_equal(sl_rcache_del_instance(c, "six", "10.0.0.6:80"), 1);
	assert_int_equal(sl_rcache_del_service(c, "broken"), 1);
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.invalid, 0);
	assert_string_equal(rep.first_error, "");
	assert_int_equal(rep.backends, 3);
	sl_registry_free(&reg);
	sl_rcache_free(c);
}

static void test_duplicate_vip(void **state)
{
	struct sl_rcache *c = sl_rcache_new("sluice:");
	struct sl_rcache_report rep;
	struct problems pr = { 0 };
	struct sl_registry reg;

	(void)state;
	put_svc(c, "b", "10.96.0.1", 80);
	put_svc(c, "a", "10.96.0.1", 80);
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	/* The first by name keeps the VIP; the other is left out, naming both. */
	assert_int_equal(rep.services, 1);
	assert_string_equal(reg.services[0].settings.name, "a");
	assert_int_equal(rep.invalid, 1);
	assert_non_null(strstr(rep.first_error, "field \"b\": vip: duplicate VIP 10.96.0.1:80/tcp "
					      "(also service \"a\")"));
	sl_registry_free(&reg);
	sl_rcache_del_service(c, "a");
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, on_problem, &pr), 0);
	assert_int_equal(rep.services, 1);
	assert_int_equal(rep.invalid, 0);
	assert_string_equal(reg.services[0].settings.name, "b");
	sl_registry_free(&reg);
	sl_rcache_free(c);
}

struct popped {
	int n;
	char ids[8][SL_ENDPOINT_STRLEN];
};

static void on_pop(const char *svc, const char *id, void *ctx)
{
	struct popped *p = ctx;

	assert_string_equal(svc, "web");
	snprintf(p->ids[p->n++], sizeof(p->ids[0]), "%s", id);
}

static void test_ttl_deadlines(void **state)
{
	struct sl_rcache *c = sl_rcache_new("sluice:");
	struct popped p = { 0 };
	const char *raw3 = "{\"address\":\"10.0.0.3\",\"port\":80,\"weight\":1}";

	(void)state;
	put_svc(c, "web", "10.96.0.1", 80);
	put_inst(c, "web", "10.0.0.1", 80, 1, 3000, 1000);
	put_inst(c, "web", "10.0.0.2", 80, 1, 1000, 1000);
	put_inst(c, "web", "10.0.0.3", 80, 1, 2000, 1000);
	put_inst(c, "web", "10.0.0.4", 80, 1, -1, 1000); /* persistent: no deadline */
	/* A deadline is a millisecond past the TTL, so the read then finds the key gone. */
	assert_int_equal(sl_rcache_next_expiry(c), 2001);
	assert_int_equal(sl_rcache_pop_expired(c, 2000, on_pop, &p), 0);
	/* A renewal (a heartbeat's longer TTL read back) moves a deadline later. */
	put_inst(c, "web", "10.0.0.2", 80, 1, 5000, 1500);
	assert_int_equal(sl_rcache_next_expiry(c), 3001);
	assert_int_equal(sl_rcache_pop_expired(c, 4001, on_pop, &p), 2);
	assert_string_equal(p.ids[0], "10.0.0.3:80");
	assert_string_equal(p.ids[1], "10.0.0.1:80");
	assert_int_equal(sl_rcache_next_expiry(c), 6501);
	/* Popped instances stay until a read says they are gone, and need their TTL read. */
	assert_int_equal(sl_rcache_instance_count(c), 4);
	assert_int_equal(sl_rcache_instance_needs_ttl(c, "web", "10.0.0.3:80", raw3, strlen(raw3)),
			 1);
	assert_int_equal(sl_rcache_put_instance(c, "web", "10.0.0.3:80", raw3, strlen(raw3), -2,
						5000), 1);
	assert_int_equal(sl_rcache_instance_count(c), 3);
	/* Removing a service takes its deadlines with it. */
	sl_rcache_del_service(c, "web");
	assert_int_equal(sl_rcache_next_expiry(c), 0);
	sl_rcache_free(c);
}

static void test_many_instances_heap(void **state)
{
	struct sl_rcache *c = sl_rcache_new("");
	struct sl_registry reg;
	struct sl_rcache_report rep;
	char addr[32];
	__u64 last = 0;
	int n = 0;

	(void)state;
	put_svc(c, "web", "10.96.0.1", 80);
	for (int i = 0; i < 2000; i++) {
		snprintf(addr, sizeof(addr), "10.1.%d.%d", i / 250, i % 250 + 1);
		put_inst(c, "web", addr, 80, 1, (i * 7919) % 5000, 0);
	}
	/* Deadlines come off in order. */
	while (sl_rcache_next_expiry(c)) {
		__u64 t = sl_rcache_next_expiry(c);
		struct popped p = { 0 };

		assert_true(t >= last);
		last = t;
		while (p.n == 0)
			sl_rcache_pop_expired(c, t, on_pop, &p);
		n += p.n;
		if (p.n > 8)
			fail_msg("popped %d at once", p.n);
	}
	assert_int_equal(n, 2000);
	/* More than 1024 instances: the service keeps the first 1024 by address. */
	assert_int_equal(sl_rcache_build(c, &reg, NULL, &rep, NULL, NULL), 0);
	assert_int_equal(reg.services[0].backend_count, SL_MAX_BACKENDS_PER_SVC);
	assert_int_equal(rep.invalid, 1);
	assert_non_null(strstr(rep.first_error, "instances:web: more than 1024"));
	sl_registry_free(&reg);
	sl_rcache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_service_parse),
		cmocka_unit_test(test_instance_parse),
		cmocka_unit_test(test_assembly),
		cmocka_unit_test(test_bad_keys_are_skipped_alone),
		cmocka_unit_test(test_duplicate_vip),
		cmocka_unit_test(test_ttl_deadlines),
		cmocka_unit_test(test_many_instances_heap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
