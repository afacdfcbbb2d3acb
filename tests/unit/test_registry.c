// SPDX-License-Identifier: MIT
/*
 * Registry parser: every invalid field is rejected with a message naming the
 * service and the field, valid edge cases parse to the expected settings,
 * limits hold exactly, and the digest matches sha256sum.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/addr.h"
#include "lib/registry.h"

/* Documents are written with single quotes and converted, to keep them readable. */
#define ONE(fields) "{'services':[{'name':'s','vip':'10.0.0.1','port':80" fields "}]}"
#define NOPORT(fields) "{'services':[{'name':'s','vip':'10.0.0.1'" fields "}]}"

#define X8 "xxxxxxxx"
#define X63 "xxxxxxx" X8 X8 X8 X8 X8 X8 X8
#define X64 X8 X8 X8 X8 X8 X8 X8 X8
#define X254 X63 X64 X64 X63
#define X255 X64 X64 X64 X63

struct bad_case {
	const char *doc;
	const char *want; /* substring of the error */
};

static char *dq(const char *sq)
{
	char *s = strdup(sq), *c;

	assert_non_null(s);
	for (c = s; *c; c++)
		if (*c == '\'')
			*c = '"';
	return s;
}

static int parse_sq(const char *sq, struct sl_registry *reg, char *err, size_t errlen)
{
	char *doc = dq(sq);
	int ret;

	ret = sl_registry_parse(doc, strlen(doc), reg, err, errlen);
	free(doc);
	return ret;
}

static void assert_empty(const struct sl_registry *reg)
{
	static const __u8 zero[32];

	assert_int_equal(reg->count, 0);
	assert_null(reg->services);
	assert_memory_equal(reg->sha256, zero, sizeof(zero));
}

static void parse_ok(const char *sq, struct sl_registry *reg)
{
	char err[SL_ERR_MAX] = "";
	int ret;

	ret = parse_sq(sq, reg, err, sizeof(err));
	if (ret)
		print_error("unexpected error %d: %s\n", ret, err);
	assert_int_equal(ret, 0);
}

/* Returns 1 (after printing why) unless sq fails with -EINVAL and an error containing want. */
static int check_bad(const char *sq, const char *want)
{
	struct sl_registry reg;
	char err[SL_ERR_MAX] = "";
	int ret;

	memset(&reg, 0xa5, sizeof(reg));
	ret = parse_sq(sq, &reg, err, sizeof(err));
	if (ret != -EINVAL || !strstr(err, want) || reg.count || reg.services) {
		print_error("document: %s\n  got %d: %s\n  want -EINVAL containing: %s\n", sq, ret,
			    err, want);
		if (!ret)
			sl_registry_free(&reg);
		return 1;
	}
	return 0;
}

static void run_bad_cases(const struct bad_case *cases, size_t n)
{
	size_t i;
	int failed = 0;

	for (i = 0; i < n; i++)
		failed += check_bad(cases[i].doc, cases[i].want);
	assert_int_equal(failed, 0);
}

#define RUN_BAD(cases) run_bad_cases(cases, sizeof(cases) / sizeof(cases[0]))

static void test_bad_document(void **state)
{
	static const struct bad_case cases[] = {
		{ "", "invalid JSON at line 1, column 0: " },
		{ "{'services':[}", "invalid JSON at line 1, column 14: " },
		{ "{'services':[]} x", "invalid JSON at line 1, column 17: end of file expected" },
		{ "{'services':[],'services':[]}", "duplicate object key" },
		{ ONE(",'port':81"), "duplicate object key" },
		{ "[]", "document: must be a JSON object (got an array)" },
		{ "{}", "services: required field is missing" },
		{ "{'services':{}}", "services: must be an array (got an object)" },
		{ "{'services':[],'version':1}", "version: unknown field" },
		{ "{'services':[1]}", "services[0]: must be an object (got an integer)" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_name(void **state)
{
	static const struct bad_case cases[] = {
		{ "{'services':[{'vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: required field is missing" },
		{ "{'services':[{'name':7,'vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: must be a string (got an integer)" },
		{ "{'services':[{'name':'','vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: must be 1 to 63 characters long (got 0)" },
		{ "{'services':[{'name':'" X64 "','vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: must be 1 to 63 characters long (got 64)" },
		{ "{'services':[{'name':'a!b','vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: invalid character '!'" },
		{ "{'services':[{'name':'a b','vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: invalid byte 0x20" },
		{ "{'services':[{'name':'caf\xc3\xa9','vip':'10.0.0.1','port':80}]}",
		  "services[0]: name: invalid byte 0xc3" },
		{ "{'services':[{'name':'a','vip':'10.0.0.1','port':80},"
		  "{'name':'b/c','vip':'10.0.0.2','port':80}]}",
		  "services[1]: name: invalid character '/'" },
		{ "{'services':[{'name':'a','vip':'10.0.0.1','port':80},"
		  "{'name':'a','vip':'10.0.0.2','port':80}]}",
		  "service \"a\": name: duplicate service name (services[0] and services[1])" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_service(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'colour':'red'"), "service \"s\": colour: unknown field" },
		{ "{'services':[{'name':'s','port':80}]}",
		  "service \"s\": vip: required field is missing" },
		{ "{'services':[{'name':'s','vip':'nope','port':80}]}",
		  "service \"s\": vip: invalid address \"nope\"" },
		{ "{'services':[{'name':'s','vip':'users.example','port':80}]}",
		  "service \"s\": vip: invalid address \"users.example\"" },
		{ "{'services':[{'name':'s','vip':'10.0.0.1:80','port':80}]}",
		  "service \"s\": vip: invalid address \"10.0.0.1:80\"" },
		{ "{'services':[{'name':'s','vip':167772161,'port':80}]}",
		  "service \"s\": vip: must be a string (got an integer)" },
		{ NOPORT(""), "service \"s\": port: required field is missing" },
		{ NOPORT(",'port':0"), "service \"s\": port: must be >= 1 (got 0)" },
		{ NOPORT(",'port':-80"), "service \"s\": port: must be >= 1 (got -80)" },
		{ NOPORT(",'port':65536"), "service \"s\": port: must be <= 65535 (got 65536)" },
		{ NOPORT(",'port':'80'"),
		  "service \"s\": port: must be an integer (got a string)" },
		{ NOPORT(",'port':80.0"),
		  "service \"s\": port: must be an integer (got a non-integer number)" },
		{ NOPORT(",'port':true"), "service \"s\": port: must be an integer (got true)" },
		{ NOPORT(",'port':null"), "service \"s\": port: must be an integer (got null)" },
		{ ONE(",'protocol':'sctp'"),
		  "service \"s\": protocol: unknown protocol \"sctp\" (tcp, udp)" },
		{ ONE(",'protocol':6"),
		  "service \"s\": protocol: must be a string (got an integer)" },
		{ "{'services':[{'name':'a','vip':'10.0.0.1','port':80},"
		  "{'name':'b','vip':'10.0.0.1','port':80,'protocol':'tcp'}]}",
		  "service \"b\": vip: duplicate VIP 10.0.0.1:80/tcp (also service \"a\")" },
		{ "{'services':[{'name':'a','vip':'fd00::1','port':53,'protocol':'udp'},"
		  "{'name':'b','vip':'fd00:0:0::1','port':53,'protocol':'udp'}]}",
		  "service \"b\": vip: duplicate VIP [fd00::1]:53/udp (also service \"a\")" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_lb(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'lb':1"), "service \"s\": lb: must be an object (got an integer)" },
		{ ONE(",'lb':{'algorithm':'Maglev'}"),
		  "service \"s\": lb.algorithm: unknown algorithm \"Maglev\"" },
		{ ONE(",'lb':{'algorithm':3}"),
		  "service \"s\": lb.algorithm: must be a string (got an integer)" },
		{ ONE(",'lb':{'affinity_timeout_s':-1}"),
		  "service \"s\": lb.affinity_timeout_s: must be >= 0 (got -1)" },
		{ ONE(",'lb':{'affinity_timeout_s':86401}"),
		  "service \"s\": lb.affinity_timeout_s: must be <= 86400 (got 86401)" },
		{ ONE(",'lb':{'panic_threshold_percent':101}"),
		  "service \"s\": lb.panic_threshold_percent: must be <= 100 (got 101)" },
		{ ONE(",'lb':{'panic_threshold_percent':'50'}"),
		  "service \"s\": lb.panic_threshold_percent: must be an integer (got a string)" },
		{ ONE(",'lb':{'weight':1}"), "service \"s\": lb.weight: unknown field" },
	};
	struct sl_registry reg;
	char err[SL_ERR_MAX];

	(void)state;
	RUN_BAD(cases);

	/* The whole message once, to pin the format. */
	assert_int_equal(parse_sq("{'services':[{'name':'users','vip':'10.0.0.1','port':80,"
				  "'lb':{'algorithm':'foo'}}]}",
				  &reg, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "service \"users\": lb.algorithm: unknown algorithm \"foo\" "
				 "(random, round_robin, weighted, maglev, least_conn)");
	assert_empty(&reg);
}

static void test_bad_rate_limit(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'rate_limit':[]"),
		  "service \"s\": rate_limit: must be an object (got an array)" },
		{ ONE(",'rate_limit':{'connections_per_second':10000001}"),
		  "service \"s\": rate_limit.connections_per_second: must be <= 10000000 "
		  "(got 10000001)" },
		{ ONE(",'rate_limit':{'burst':-1}"),
		  "service \"s\": rate_limit.burst: must be >= 0 (got -1)" },
		{ ONE(",'rate_limit':{'per_client_connections_per_second':'5'}"),
		  "service \"s\": rate_limit.per_client_connections_per_second: "
		  "must be an integer (got a string)" },
		{ ONE(",'rate_limit':{'per_client_burst':1.5}"),
		  "service \"s\": rate_limit.per_client_burst: must be an integer "
		  "(got a non-integer number)" },
		{ ONE(",'rate_limit':{'per_client_burst':false}"),
		  "service \"s\": rate_limit.per_client_burst: must be an integer (got false)" },
		{ ONE(",'rate_limit':{'rate':5}"),
		  "service \"s\": rate_limit.rate: unknown field" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_circuit_breaker(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'circuit_breaker':true"),
		  "service \"s\": circuit_breaker: must be an object (got true)" },
		{ ONE(",'circuit_breaker':{'max_connections':-1}"),
		  "service \"s\": circuit_breaker.max_connections: must be >= 0 (got -1)" },
		{ ONE(",'circuit_breaker':{'max_connections':4294967296}"),
		  "service \"s\": circuit_breaker.max_connections: must be <= 4294967295" },
		{ ONE(",'circuit_breaker':{'consecutive_failures':0}"),
		  "service \"s\": circuit_breaker.consecutive_failures: must be >= 1 (got 0)" },
		{ ONE(",'circuit_breaker':{'base_ejection_ms':0}"),
		  "service \"s\": circuit_breaker.base_ejection_ms: must be >= 1 (got 0)" },
		{ ONE(",'circuit_breaker':{'max_ejection_ms':1000}"),
		  "service \"s\": circuit_breaker.max_ejection_ms: must be >= base_ejection_ms "
		  "(1000 < 30000)" },
		{ ONE(",'circuit_breaker':{'base_ejection_ms':500,'max_ejection_ms':499}"),
		  "service \"s\": circuit_breaker.max_ejection_ms: must be >= base_ejection_ms "
		  "(499 < 500)" },
		{ ONE(",'circuit_breaker':{'half_open_max':0}"),
		  "service \"s\": circuit_breaker.half_open_max: must be >= 1 (got 0)" },
		{ ONE(",'circuit_breaker':{'max_ejection_percent':101}"),
		  "service \"s\": circuit_breaker.max_ejection_percent: must be <= 100 (got 101)" },
		{ ONE(",'circuit_breaker':{'max_ejection_percent':-5}"),
		  "service \"s\": circuit_breaker.max_ejection_percent: must be >= 0 (got -5)" },
		{ ONE(",'circuit_breaker':{'max_conns':1}"),
		  "service \"s\": circuit_breaker.max_conns: unknown field" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_health_check(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'health_check':'http'"),
		  "service \"s\": health_check: must be an object (got a string)" },
		{ ONE(",'health_check':{}"),
		  "service \"s\": health_check.type: required field is missing" },
		{ ONE(",'health_check':{'type':'grpc'}"),
		  "service \"s\": health_check.type: unknown type \"grpc\" (tcp, http)" },
		{ ONE(",'health_check':{'type':'tcp','path':'/x'}"),
		  "service \"s\": health_check.path: only valid with type \"http\"" },
		{ ONE(",'health_check':{'type':'http','path':'health'}"),
		  "service \"s\": health_check.path: must start with '/'" },
		{ ONE(",'health_check':{'type':'http','path':'/" X255 "'}"),
		  "service \"s\": health_check.path: must be shorter than 256 characters "
		  "(got 256)" },
		{ ONE(",'health_check':{'type':'http','path':'/a b'}"),
		  "service \"s\": health_check.path: invalid byte 0x20" },
		{ ONE(",'health_check':{'type':'http','path':'/a\\r\\nHost: x'}"),
		  "service \"s\": health_check.path: invalid byte 0x0d" },
		{ ONE(",'health_check':{'type':'http','path':1}"),
		  "service \"s\": health_check.path: must be a string (got an integer)" },
		{ ONE(",'health_check':{'type':'tcp','interval_ms':9}"),
		  "service \"s\": health_check.interval_ms: must be >= 10 (got 9)" },
		{ ONE(",'health_check':{'type':'tcp','timeout_ms':0}"),
		  "service \"s\": health_check.timeout_ms: must be >= 1 (got 0)" },
		{ ONE(",'health_check':{'type':'tcp','timeout_ms':2000}"),
		  "service \"s\": health_check.timeout_ms: must be <= interval_ms (2000 > 1000)" },
		{ ONE(",'health_check':{'type':'tcp','interval_ms':100,'timeout_ms':101}"),
		  "service \"s\": health_check.timeout_ms: must be <= interval_ms (101 > 100)" },
		{ ONE(",'health_check':{'type':'tcp','healthy_threshold':0}"),
		  "service \"s\": health_check.healthy_threshold: must be >= 1 (got 0)" },
		{ ONE(",'health_check':{'type':'tcp','unhealthy_threshold':0}"),
		  "service \"s\": health_check.unhealthy_threshold: must be >= 1 (got 0)" },
		{ ONE(",'health_check':{'type':'tcp','port':8081}"),
		  "service \"s\": health_check.port: unknown field" },
	};

	(void)state;
	RUN_BAD(cases);
}

static void test_bad_backends(void **state)
{
	static const struct bad_case cases[] = {
		{ ONE(",'backends':{}"),
		  "service \"s\": backends: must be an array (got an object)" },
		{ ONE(",'backends':[1]"),
		  "service \"s\": backends[0]: must be an object (got an integer)" },
		{ ONE(",'backends':[{'port':8080}]"),
		  "service \"s\": backends[0].address: required field is missing" },
		{ ONE(",'backends':[{'address':'x','port':8080}]"),
		  "service \"s\": backends[0].address: invalid address \"x\"" },
		{ ONE(",'backends':[{'address':'fd00::1','port':8080}]"),
		  "service \"s\": backends[0].address: IPv6 address for an IPv4 VIP" },
		{ "{'services':[{'name':'v6','vip':'fd00::1','port':80,"
		  "'backends':[{'address':'10.1.0.1','port':8080}]}]}",
		  "service \"v6\": backends[0].address: IPv4 address for an IPv6 VIP" },
		{ ONE(",'backends':[{'address':'10.1.0.1'}]"),
		  "service \"s\": backends[0].port: required field is missing" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':1},"
		      "{'address':'10.1.0.2','port':2},{'address':'10.1.0.3','port':0}]"),
		  "service \"s\": backends[2].port: must be >= 1 (got 0)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':65536}]"),
		  "service \"s\": backends[0].port: must be <= 65535 (got 65536)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':'8080'}]"),
		  "service \"s\": backends[0].port: must be an integer (got a string)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080,'weight':0}]"),
		  "service \"s\": backends[0].weight: must be >= 1 (got 0)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080,'weight':-3}]"),
		  "service \"s\": backends[0].weight: must be >= 1 (got -3)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080,'weight':65536}]"),
		  "service \"s\": backends[0].weight: must be <= 65535 (got 65536)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080,'weight':1.0}]"),
		  "service \"s\": backends[0].weight: must be an integer (got a "
		  "non-integer number)" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080},"
		      "{'address':'10.1.0.1','port':8081},{'address':'10.1.0.1','port':8080}]"),
		  "service \"s\": backends[2]: duplicate backend 10.1.0.1:8080 (also "
		  "backends[0])" },
		{ "{'services':[{'name':'v6','vip':'fd00::1','port':80,'backends':["
		  "{'address':'fd00::2','port':8080},{'address':'fd00:0::2','port':8080}]}]}",
		  "service \"v6\": backends[1]: duplicate backend [fd00::2]:8080 (also "
		  "backends[0])" },
		{ ONE(",'backends':[{'address':'10.1.0.1','port':8080,'host':'a'}]"),
		  "service \"s\": backends[0].host: unknown field" },
	};

	(void)state;
	RUN_BAD(cases);
}

/* The first error in document order is the one reported. */
static void test_first_error_wins(void **state)
{
	(void)state;
	assert_int_equal(check_bad("{'services':[{'name':'a','vip':'10.0.0.1','port':0},"
				   "{'name':'a','vip':'10.0.0.1','port':80}]}",
				   "service \"a\": port: must be >= 1"),
			 0);
	assert_int_equal(check_bad("{'services':[{'name':'ok','vip':'10.0.0.1','port':80},"
				   "{'name':'b','vip':'10.0.0.2','port':80,'lb':{'algorithm':'x'},"
				   "'backends':[{'address':'10.1.0.1','port':0}]}]}",
				   "service \"b\": lb.algorithm"),
			 0);
}

static void test_defaults(void **state)
{
	struct sl_registry reg;
	const struct sl_reg_service *s;
	struct sl_svc_key key;

	(void)state;
	parse_ok(ONE(""), &reg);
	assert_int_equal(reg.count, 1);
	s = &reg.services[0];

	memset(&key, 0, sizeof(key));
	key.vip.words[0] = htonl(0x0a000001);
	key.port = htons(80);
	key.proto = IPPROTO_TCP;
	key.family = SL_FAMILY_IPV4;
	assert_memory_equal(&s->key, &key, sizeof(key));

	assert_string_equal(s->settings.name, "s");
	assert_int_equal(s->settings.id, 0);
	assert_int_equal(s->settings.backend_count, 0);
	assert_int_equal(s->settings.algorithm, SL_ALG_RANDOM);
	assert_int_equal(s->settings.affinity_timeout_s, 0);
	assert_int_equal(s->settings.panic_threshold_pct, 50);
	assert_int_equal(s->settings.connections_per_second, 0);
	assert_int_equal(s->settings.burst, 0);
	assert_int_equal(s->settings.per_client_connections_per_second, 0);
	assert_int_equal(s->settings.per_client_burst, 0);
	assert_int_equal(s->settings.max_connections, 0);
	assert_int_equal(s->settings.consecutive_failures, 5);
	assert_int_equal(s->settings.base_ejection_ms, 30000);
	assert_int_equal(s->settings.max_ejection_ms, 300000);
	assert_int_equal(s->settings.half_open_max, 1);
	assert_int_equal(s->settings.max_ejection_pct, 10);
	assert_int_equal(s->settings.pad, 0);
	assert_int_equal(s->health_check.type, SL_HC_NONE);
	assert_null(s->backends);
	assert_int_equal(s->backend_count, 0);
	sl_registry_free(&reg);
	assert_empty(&reg);

	/* Empty blocks get the same defaults. */
	parse_ok(ONE(",'lb':{},'rate_limit':{},'circuit_breaker':{},'backends':[]"), &reg);
	s = &reg.services[0];
	assert_int_equal(s->settings.algorithm, SL_ALG_RANDOM);
	assert_int_equal(s->settings.panic_threshold_pct, 50);
	assert_int_equal(s->settings.consecutive_failures, 5);
	assert_int_equal(s->settings.max_ejection_ms, 300000);
	assert_int_equal(s->settings.max_ejection_pct, 10);
	assert_int_equal(s->backend_count, 0);
	sl_registry_free(&reg);

	parse_ok("{'services':[]}", &reg);
	assert_int_equal(reg.count, 0);
	assert_null(reg.services);
	sl_registry_free(&reg);
}

static void test_full_example(void **state)
{
	static const char doc[] =
		"{'services': [{"
		"  'name': 'users',"
		"  'vip': '10.96.0.10', 'port': 80, 'protocol': 'tcp',"
		"  'lb': {'algorithm': 'maglev', 'affinity_timeout_s': 0,"
		"         'panic_threshold_percent': 50},"
		"  'rate_limit': {'connections_per_second': 1000, 'burst': 200,"
		"                 'per_client_connections_per_second': 50, 'per_client_burst': 20},"
		"  'circuit_breaker': {'max_connections': 1024, 'consecutive_failures': 5,"
		"                      'base_ejection_ms': 30000, 'max_ejection_ms': 300000,"
		"                      'half_open_max': 1, 'max_ejection_percent': 50},"
		"  'health_check': {'type': 'http', 'path': '/health', 'interval_ms': 1000,"
		"                   'timeout_ms': 500, 'healthy_threshold': 2,"
		"                   'unhealthy_threshold': 3},"
		"  'backends': [{'address': '10.200.0.11', 'port': 8080, 'weight': 1}]"
		"}]}";
	struct sl_registry reg;
	const struct sl_reg_service *s;
	char buf[SL_ADDR_STRLEN];

	(void)state;
	parse_ok(doc, &reg);
	assert_int_equal(reg.count, 1);
	s = &reg.services[0];
	assert_string_equal(s->settings.name, "users");
	assert_string_equal(sl_addr_format(&s->key.vip, s->key.family, buf, sizeof(buf)),
			    "10.96.0.10");
	assert_int_equal(ntohs(s->key.port), 80);
	assert_int_equal(s->key.proto, IPPROTO_TCP);
	assert_int_equal(s->settings.algorithm, SL_ALG_MAGLEV);
	assert_int_equal(s->settings.panic_threshold_pct, 50);
	assert_int_equal(s->settings.connections_per_second, 1000);
	assert_int_equal(s->settings.burst, 200);
	assert_int_equal(s->settings.per_client_connections_per_second, 50);
	assert_int_equal(s->settings.per_client_burst, 20);
	assert_int_equal(s->settings.max_connections, 1024);
	assert_int_equal(s->settings.consecutive_failures, 5);
	assert_int_equal(s->settings.base_ejection_ms, 30000);
	assert_int_equal(s->settings.max_ejection_ms, 300000);
	assert_int_equal(s->settings.half_open_max, 1);
	assert_int_equal(s->settings.max_ejection_pct, 50);
	assert_int_equal(s->health_check.type, SL_HC_HTTP);
	assert_string_equal(s->health_check.path, "/health");
	assert_int_equal(s->health_check.interval_ms, 1000);
	assert_int_equal(s->health_check.timeout_ms, 500);
	assert_int_equal(s->health_check.healthy_threshold, 2);
	assert_int_equal(s->health_check.unhealthy_threshold, 3);
	assert_int_equal(s->backend_count, 1);
	assert_string_equal(sl_addr_format(&s->backends[0].addr, s->backends[0].family, buf,
					   sizeof(buf)),
			    "10.200.0.11");
	assert_int_equal(s->backends[0].port, 8080);
	assert_int_equal(s->backends[0].family, SL_FAMILY_IPV4);
	assert_int_equal(s->backends[0].weight, 1);
	sl_registry_free(&reg);
}

static void test_edges(void **state)
{
	struct sl_registry reg;
	const struct sl_reg_service *s;

	(void)state;
	parse_ok("{'services':["
		 "{'name':'" X63 "','vip':'10.0.0.1','port':1,"
		 " 'backends':[{'address':'10.1.0.1','port':1,'weight':65535},"
		 "             {'address':'10.1.0.1','port':65535}]},"
		 "{'name':'Az09._-','vip':'10.0.0.1','port':65535,'protocol':'udp',"
		 " 'lb':{'algorithm':'weighted','affinity_timeout_s':86400,"
		 "       'panic_threshold_percent':0},"
		 " 'circuit_breaker':{'max_connections':4294967295,'max_ejection_percent':0,"
		 "                    'consecutive_failures':1,'base_ejection_ms':1,"
		 "                    'max_ejection_ms':1}}]}",
		 &reg);
	assert_int_equal(reg.count, 2);
	s = &reg.services[0];
	assert_string_equal(s->settings.name, X63);
	assert_int_equal(ntohs(s->key.port), 1);
	assert_int_equal(s->backend_count, 2);
	assert_int_equal(s->backends[0].port, 1);
	assert_int_equal(s->backends[0].weight, 65535);
	assert_int_equal(s->backends[1].port, 65535);
	assert_int_equal(s->backends[1].weight, 1);

	s = &reg.services[1];
	assert_string_equal(s->settings.name, "Az09._-");
	assert_int_equal(ntohs(s->key.port), 65535);
	assert_int_equal(s->key.proto, IPPROTO_UDP);
	assert_int_equal(s->settings.algorithm, SL_ALG_WEIGHTED);
	assert_int_equal(s->settings.affinity_timeout_s, 86400);
	assert_int_equal(s->settings.panic_threshold_pct, 0);
	assert_int_equal(s->settings.max_connections, 4294967295U);
	assert_int_equal(s->settings.max_ejection_pct, 0);
	assert_int_equal(s->settings.consecutive_failures, 1);
	assert_int_equal(s->settings.base_ejection_ms, 1);
	assert_int_equal(s->settings.max_ejection_ms, 1);
	sl_registry_free(&reg);

	/* The same VIP and port with another protocol is another service. */
	parse_ok("{'services':[{'name':'dns','vip':'10.0.0.53','port':53,'protocol':'udp'},"
		 "{'name':'dns-tcp','vip':'10.0.0.53','port':53}]}",
		 &reg);
	assert_int_equal(reg.count, 2);
	assert_int_equal(reg.services[0].key.proto, IPPROTO_UDP);
	assert_int_equal(reg.services[1].key.proto, IPPROTO_TCP);
	sl_registry_free(&reg);

	/* Backends may repeat across services. */
	parse_ok("{'services':["
		 "{'name':'a','vip':'10.0.0.1','port':80,"
		 " 'backends':[{'address':'10.1.0.1','port':80}]},"
		 "{'name':'b','vip':'10.0.0.2','port':80,"
		 " 'backends':[{'address':'10.1.0.1','port':80}]}]}",
		 &reg);
	assert_int_equal(reg.count, 2);
	sl_registry_free(&reg);
}

static void test_ipv6(void **state)
{
	struct sl_registry reg;
	const struct sl_reg_service *s;
	struct sl_addr want;
	char buf[SL_ADDR_STRLEN];
	__u8 family;

	(void)state;
	parse_ok("{'services':[{'name':'v6','vip':'fd00:96::10','port':443,"
		 "'backends':[{'address':'fd00:200::11','port':8443,'weight':3},"
		 "{'address':'fd00:200::12','port':8443}]}]}",
		 &reg);
	s = &reg.services[0];
	assert_int_equal(s->key.family, SL_FAMILY_IPV6);
	assert_int_equal(sl_addr_parse("fd00:96::10", &want, &family), 0);
	assert_memory_equal(&s->key.vip, &want, sizeof(want));
	assert_int_equal(ntohs(s->key.port), 443);
	assert_int_equal(s->backend_count, 2);
	assert_int_equal(s->backends[0].family, SL_FAMILY_IPV6);
	assert_int_equal(s->backends[0].weight, 3);
	assert_string_equal(sl_addr_format(&s->backends[1].addr, s->backends[1].family, buf,
					   sizeof(buf)),
			    "fd00:200::12");
	sl_registry_free(&reg);
}

static void test_rate_limit_burst_default(void **state)
{
	struct sl_registry reg;
	const struct sl_service *set;

	(void)state;
	parse_ok(ONE(",'rate_limit':{'connections_per_second':1000,"
		     "'per_client_connections_per_second':50}"),
		 &reg);
	set = &reg.services[0].settings;
	assert_int_equal(set->connections_per_second, 1000);
	assert_int_equal(set->burst, 1000);
	assert_int_equal(set->per_client_connections_per_second, 50);
	assert_int_equal(set->per_client_burst, 50);
	sl_registry_free(&reg);

	parse_ok(ONE(",'rate_limit':{'connections_per_second':10000000,'burst':0,"
		     "'per_client_connections_per_second':0,'per_client_burst':7}"),
		 &reg);
	set = &reg.services[0].settings;
	assert_int_equal(set->connections_per_second, 10000000);
	assert_int_equal(set->burst, 10000000);
	assert_int_equal(set->per_client_connections_per_second, 0);
	assert_int_equal(set->per_client_burst, 7);
	sl_registry_free(&reg);
}

static void test_health_check_defaults(void **state)
{
	struct sl_registry reg;
	const struct sl_health_check *hc;

	(void)state;
	parse_ok(ONE(",'health_check':{'type':'http'}"), &reg);
	hc = &reg.services[0].health_check;
	assert_int_equal(hc->type, SL_HC_HTTP);
	assert_string_equal(hc->path, "/");
	assert_int_equal(hc->interval_ms, 1000);
	assert_int_equal(hc->timeout_ms, 500);
	assert_int_equal(hc->healthy_threshold, 2);
	assert_int_equal(hc->unhealthy_threshold, 3);
	sl_registry_free(&reg);

	parse_ok(ONE(",'health_check':{'type':'tcp','interval_ms':10}"), &reg);
	hc = &reg.services[0].health_check;
	assert_int_equal(hc->type, SL_HC_TCP);
	assert_string_equal(hc->path, "");
	assert_int_equal(hc->interval_ms, 10);
	/* The default timeout shrinks to fit a short interval. */
	assert_int_equal(hc->timeout_ms, 10);
	sl_registry_free(&reg);

	parse_ok(ONE(",'health_check':{'type':'http','path':'/" X254 "'}"), &reg);
	hc = &reg.services[0].health_check;
	assert_int_equal(strlen(hc->path), 255);
	sl_registry_free(&reg);

	/* Likewise the default maximum ejection grows to a longer base. */
	parse_ok(ONE(",'circuit_breaker':{'base_ejection_ms':600000}"), &reg);
	assert_int_equal(reg.services[0].settings.base_ejection_ms, 600000);
	assert_int_equal(reg.services[0].settings.max_ejection_ms, 600000);
	sl_registry_free(&reg);
}

/* nsvc services s0.. with per_svc backends each, plus one service with last backends. */
static char *gen_doc(size_t nsvc, size_t per_svc, size_t last)
{
	size_t i, j, n, len;
	char *buf = NULL;
	FILE *f;

	f = open_memstream(&buf, &len);
	assert_non_null(f);
	fputs("{\"services\":[", f);
	for (i = 0; i < nsvc + (last ? 1 : 0); i++) {
		n = i < nsvc ? per_svc : last;
		fprintf(f, "%s{\"name\":\"s%zu\",\"vip\":\"10.%zu.%zu.1\",\"port\":80,",
			i ? "," : "", i, i / 256, i % 256);
		fputs("\"backends\":[", f);
		for (j = 0; j < n; j++)
			fprintf(f, "%s{\"address\":\"192.168.%zu.%zu\",\"port\":8080}",
				j ? "," : "", j / 256, j % 256);
		fputs("]}", f);
	}
	fputs("]}", f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void test_backend_limits(void **state)
{
	struct sl_registry reg;
	char err[SL_ERR_MAX];
	char *doc;

	(void)state;
	doc = gen_doc(1, SL_MAX_BACKENDS_PER_SVC, 0);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), 0);
	assert_int_equal(reg.services[0].backend_count, 1024);
	assert_int_equal(reg.services[0].backends[1023].weight, 1);
	sl_registry_free(&reg);
	free(doc);

	doc = gen_doc(1, SL_MAX_BACKENDS_PER_SVC + 1, 0);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "service \"s0\": backends: too many backends (1025 > 1024)");
	assert_empty(&reg);
	free(doc);

	/* 127 full services and one of 1023 reach SL_BACKENDS_LIMIT exactly; one more is too many. */
	doc = gen_doc(127, SL_MAX_BACKENDS_PER_SVC, SL_MAX_BACKENDS_PER_SVC - 1);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), 0);
	assert_int_equal(reg.count, 128);
	sl_registry_free(&reg);
	free(doc);

	doc = gen_doc(127, SL_MAX_BACKENDS_PER_SVC, SL_MAX_BACKENDS_PER_SVC);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "service \"s127\": backends: too many backends in total "
				 "(131072 > 131071)");
	assert_empty(&reg);
	free(doc);
}

static void test_service_limit(void **state)
{
	struct sl_registry reg;
	char err[SL_ERR_MAX];
	char *doc;

	(void)state;
	doc = gen_doc(SL_SERVICES_LIMIT, 0, 0);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), 0);
	assert_int_equal(reg.count, SL_SERVICES_LIMIT);
	assert_string_equal(reg.services[SL_SERVICES_LIMIT - 1].settings.name, "s16382");
	sl_registry_free(&reg);
	free(doc);

	doc = gen_doc(SL_SERVICES_LIMIT + 1, 0, 0);
	assert_int_equal(sl_registry_parse(doc, strlen(doc), &reg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "services: too many services (16384 > 16383)");
	assert_empty(&reg);
	free(doc);
}

/* Digests from: printf '%s\n' "$doc" | sha256sum, and printf '%s' '{"services":[]}'. */
static const char sha_doc[] = "{\"services\": [{\"name\": \"users\", \"vip\": \"10.96.0.10\", "
			      "\"port\": 80, \"backends\": [{\"address\": \"10.200.0.11\", "
			      "\"port\": 8080}]}]}\n";
static const __u8 sha_doc_digest[32] = {
	0x9d, 0x5f, 0x67, 0xfc, 0xee, 0xd0, 0x37, 0x9e, 0x48, 0x28, 0x9a, 0x6a,
	0x3c, 0x93, 0x46, 0xe9, 0x65, 0x5a, 0x22, 0x0a, 0x89, 0x4c, 0x6a, 0xf7,
	0x06, 0x04, 0x0a, 0x45, 0xe4, 0x7c, 0x90, 0x53,
};
static const __u8 sha_empty_digest[32] = {
	0xcb, 0x4f, 0x1f, 0xf5, 0x57, 0x6b, 0x20, 0x3a, 0x65, 0x63, 0xc2, 0xca,
	0xbf, 0xce, 0x32, 0x83, 0x39, 0x17, 0x58, 0x13, 0x5e, 0xb0, 0xd8, 0x88,
	0x5d, 0x69, 0x07, 0x53, 0x03, 0xc3, 0x9c, 0x4e,
};

static void test_sha256(void **state)
{
	struct sl_registry reg;
	char err[SL_ERR_MAX];

	(void)state;
	assert_int_equal(sl_registry_parse(sha_doc, strlen(sha_doc), &reg, err, sizeof(err)), 0);
	assert_memory_equal(reg.sha256, sha_doc_digest, 32);
	sl_registry_free(&reg);

	assert_int_equal(sl_registry_parse("{\"services\":[]}", 15, &reg, err, sizeof(err)), 0);
	assert_memory_equal(reg.sha256, sha_empty_digest, 32);
	sl_registry_free(&reg);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_load_file(void **state)
{
	char dir[] = "/tmp/sl-test-registry-XXXXXX";
	char path[64], want[128], err[SL_ERR_MAX];
	struct sl_registry reg;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/registry.json", dir);

	write_file(path, sha_doc);
	assert_int_equal(sl_registry_load_file(path, &reg, err, sizeof(err)), 0);
	assert_int_equal(reg.count, 1);
	assert_memory_equal(reg.sha256, sha_doc_digest, 32);
	sl_registry_free(&reg);

	write_file(path, "{\"services\":[{\"name\":\"users\",\"vip\":\"10.0.0.1\",\"port\":0}]}");
	assert_int_equal(sl_registry_load_file(path, &reg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: service \"users\": port: must be >= 1 (got 0)", path);
	assert_string_equal(err, want);
	assert_empty(&reg);

	write_file(path, "");
	assert_int_equal(sl_registry_load_file(path, &reg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: invalid JSON at line 1, column 0: ", path);
	assert_true(!strncmp(err, want, strlen(want)));

	assert_int_equal(unlink(path), 0);
	assert_int_equal(sl_registry_load_file(path, &reg, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "cannot read %s: No such file or directory", path);
	assert_string_equal(err, want);
	assert_empty(&reg);

	assert_int_equal(sl_registry_load_file(dir, &reg, err, sizeof(err)), -EISDIR);
	snprintf(want, sizeof(want), "cannot read %s: Is a directory", dir);
	assert_string_equal(err, want);
	assert_empty(&reg);

	assert_int_equal(rmdir(dir), 0);
}

static void test_error_buffer(void **state)
{
	struct sl_registry reg;
	char err[24];

	(void)state;
	memset(err, 'z', sizeof(err));
	assert_int_equal(parse_sq(NOPORT(",'port':0"), &reg, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "service \"s\": port: m...");
	assert_empty(&reg);

	assert_int_equal(parse_sq(NOPORT(",'port':0"), &reg, NULL, 0), -EINVAL);
	assert_empty(&reg);
	err[0] = 'z';
	assert_int_equal(parse_sq(NOPORT(",'port':0"), &reg, err, 1), -EINVAL);
	assert_int_equal(err[0], '\0');

	/* A successful parse clears an old message. */
	assert_int_equal(parse_sq(ONE(""), &reg, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	sl_registry_free(&reg);
}

static void test_names(void **state)
{
	int alg;

	(void)state;
	for (alg = 0; alg < SL_ALG_COUNT; alg++)
		assert_string_not_equal(sl_algorithm_name(alg), "?");
	assert_string_equal(sl_algorithm_name(SL_ALG_RANDOM), "random");
	assert_string_equal(sl_algorithm_name(SL_ALG_ROUND_ROBIN), "round_robin");
	assert_string_equal(sl_algorithm_name(SL_ALG_WEIGHTED), "weighted");
	assert_string_equal(sl_algorithm_name(SL_ALG_MAGLEV), "maglev");
	assert_string_equal(sl_algorithm_name(SL_ALG_LEAST_CONN), "least_conn");
	assert_string_equal(sl_algorithm_name(SL_ALG_COUNT), "?");
	assert_string_equal(sl_algorithm_name(255), "?");

	for (alg = 0; alg < SL_ALG_COUNT; alg++)
		assert_int_equal(sl_algorithm_parse(sl_algorithm_name(alg)), alg);
	assert_int_equal(sl_algorithm_parse("Random"), -1);
	assert_int_equal(sl_algorithm_parse(""), -1);
	assert_int_equal(sl_algorithm_parse(NULL), -1);

	assert_string_equal(sl_proto_name(IPPROTO_TCP), "tcp");
	assert_string_equal(sl_proto_name(IPPROTO_UDP), "udp");
	assert_string_equal(sl_proto_name(IPPROTO_SCTP), "?");
}

static void test_free_registry(void **state)
{
	struct sl_registry reg;

	(void)state;
	memset(&reg, 0, sizeof(reg));
	sl_registry_free(&reg);
	assert_empty(&reg);
	sl_registry_free(NULL);

	parse_ok(ONE(",'backends':[{'address':'10.1.0.1','port':80}]"), &reg);
	sl_registry_free(&reg);
	assert_empty(&reg);
	sl_registry_free(&reg);
	assert_empty(&reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_document),
		cmocka_unit_test(test_bad_name),
		cmocka_unit_test(test_bad_service),
		cmocka_unit_test(test_bad_lb),
		cmocka_unit_test(test_bad_rate_limit),
		cmocka_unit_test(test_bad_circuit_breaker),
		cmocka_unit_test(test_bad_health_check),
		cmocka_unit_test(test_bad_backends),
		cmocka_unit_test(test_first_error_wins),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_rate_limit_burst_default),
		cmocka_unit_test(test_health_check_defaults),
		cmocka_unit_test(test_backend_limits),
		cmocka_unit_test(test_service_limit),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_error_buffer),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_free_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
