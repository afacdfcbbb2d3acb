// SPDX-License-Identifier: MIT
/* The /metrics exposition, formatted from hand-made snapshots (no maps, no root). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/addr.h"
#include "sluiced/metrics.h"
#include "sluiced/status.h"

#define PROMTOOL "/usr/bin/promtool"

static struct metrics_backend v4(const char *addr, __u16 port)
{
	struct metrics_backend b = { .port = port };

	assert_int_equal(sl_addr_parse(addr, &b.addr, &b.family), 0);
	return b;
}

static char *format(const struct metrics_snapshot *snap, const struct agent_status *st)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	assert_int_equal(metrics_format(f, snap, st), 0);
	assert_int_equal(fclose(f), 0);
	assert_non_null(text);
	return text;
}

static void assert_line(const char *text, const char *line)
{
	const char *p = text;
	size_t n = strlen(line);

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
		p += n;
	}
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

/* A status with a few reconciles, one rejected document, fixed clocks. */
static void fill_status(struct agent_status *st)
{
	memset(st, 0, sizeof(*st));
	st->registry_source = "file:/etc/sluice/registry.json";
	st->degraded = 1;
	st->registry_errors_total = 3;
	st->start_unix_ns = 1700000000000000000ULL;
	st->last_sync_unix_ns = 1700000000123456789ULL;
	st->last_error_unix_ns = 1700000005000000000ULL;
	status_observe_reconcile(st, 0.0005);
	status_observe_reconcile(st, 0.003);
	status_observe_reconcile(st, 0.2);
	status_observe_reconcile(st, 5);
	status_observe_reconcile(st, 100);
	status_observe_reconcile(st, -1);
}

/* Two services, one of them twice and one backend twice: duplicates must vanish. */
struct world {
	struct metrics_backend web[4];
	struct metrics_backend api[2];
	struct metrics_service svcs[4];
	struct sl_generation gen;
	struct metrics_snapshot snap;
};

static void fill_world(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->web[0] = v4("10.0.0.1", 80);
	w->web[1] = v4("10.0.0.2", 80);
	w->web[2] = v4("10.0.0.2", 80);
	w->web[3] = v4("fd00::1", 8080);
	w->web[1].stats.selected = 42;
	w->web[1].stats.skipped[SL_REASON_UNHEALTHY] = 5;
	w->web[1].breaker_state = SL_BREAKER_HALF_OPEN;
	w->web[1].health = SL_HEALTH_DOWN;
	w->web[1].live = 9;
	w->api[0] = v4("10.1.0.1", 9000);
	w->api[1] = v4("10.1.0.2", 9000);

	w->svcs[0] = (struct metrics_service){ .name = "api", .backend_count = 2,
					       .backends = w->api, .nbackends = 2 };
	w->svcs[1] = (struct metrics_service){ .name = "empty" };
	w->svcs[2] = (struct metrics_service){ .name = "web", .backend_count = 4, .ejected = 1,
					       .backends = w->web, .nbackends = 4 };
	w->svcs[2].stats.selected = 100;
	w->svcs[2].stats.refused[SL_REASON_RATE_CLIENT] = 7;
	w->svcs[3] = w->svcs[2];
	w->gen.generation = 12;
	w->gen.applied_unix_ns = 1700000001000000000ULL;
	w->snap.services = w->svcs;
	w->snap.count = 4;
	w->snap.generation = &w->gen;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Every family has one HELP and one TYPE line, before its samples, and its
 * samples are one block; no series (name and labels) appears twice.
 * Returns the number of samples.
 */
static size_t check_structure(const char *text)
{
	char *copy = strdup(text), *save = NULL, *line;
	char *families[128], *series[4096];
	size_t nfam = 0, nser = 0;
	char cur[128] = "", cur_type[16] = "";

	assert_non_null(copy);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128], type[16];

		if (sscanf(line, "# TYPE %127s %15s", name, type) == 2) {
			for (size_t i = 0; i < nfam; i++)
				if (!strcmp(families[i], name))
					fail_msg("TYPE %s twice", name);
			assert_true(nfam < 128);
			families[nfam++] = strdup(name);
			assert_string_equal(cur, name); /* HELP came right before */
			snprintf(cur_type, sizeof(cur_type), "%s", type);
			continue;
		}
		if (sscanf(line, "# HELP %127s", name) == 1) {
			for (size_t i = 0; i < nfam; i++)
				if (!strcmp(families[i], name))
					fail_msg("HELP %s after its TYPE or twice", name);
			snprintf(cur, sizeof(cur), "%s", name);
			cur_type[0] = '\0';
			continue;
		}
		assert_true(line[0] != '#');
		size_t n = strcspn(line, "{ ");
		size_t base = strlen(cur);

		assert_true(cur_type[0]); /* a sample before any TYPE */
		if (!strcmp(cur_type, "histogram")) {
			assert_true(n > base && !strncmp(line, cur, base));
			assert_true(!strncmp(line + base, "_bucket", n - base) ||
				    !strncmp(line + base, "_sum", n - base) ||
				    !strncmp(line + base, "_count", n - base));
		} else if (n != base || strncmp(line, cur, n)) {
			fail_msg("sample %s outside its family's block (now in %s)", line, cur);
		}
		assert_true(nser < 4096);
		series[nser] = strndup(line, strrchr(line, ' ') - line);
		assert_non_null(series[nser]);
		nser++;
	}
	qsort(series, nser, sizeof(series[0]), cmp_str);
	for (size_t i = 1; i < nser; i++)
		if (!strcmp(series[i], series[i - 1]))
			fail_msg("series %s twice", series[i]);
	for (size_t i = 0; i < nser; i++)
		free(series[i]);
	for (size_t i = 0; i < nfam; i++)
		free(families[i]);
	free(copy);
	return nser;
}

static size_t count_prefix(const char *text, const char *prefix)
{
	size_t n = 0, len = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, len))
			n++;
	return n;
}

/* Runs promtool check metrics on text; returns its exit status, its output in out. */
static int run_promtool(const char *text, char *out, size_t size)
{
	char path[] = "/tmp/sl-test-metrics-XXXXXX", cmd[128];
	size_t n;
	FILE *p;
	int fd, status;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), PROMTOOL " check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	status = pclose(p);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* No parse error and no lint problem. */
static void check_promtool(const char *text)
{
	char out[4096];
	int status = run_promtool(text, out, sizeof(out));

	if (status != 0 || out[0])
		fail_msg("promtool check metrics (exit %d):\n%s", status, out);
}

/* A service name with every character the text format escapes, and bytes that are not UTF-8. */
static char *format_odd_name(void)
{
	struct metrics_backend b = v4("10.0.0.1", 80);
	struct metrics_service s = { .name = "a\"b\\c\nd\xc3\xa9\xff" "e\xe0\x80\xaf",
				     .backends = &b, .nbackends = 1 };
	struct metrics_snapshot snap = { .services = &s, .count = 1 };

	return format(&snap, NULL);
}

static void test_label_escaping(void **state)
{
	char *text;

	(void)state;
	text = format_odd_name();
	/* é stays, 0xff and the overlong 0xe0 0x80 0xaf become U+FFFD each byte. */
	assert_line(text, "sluice_service_backends{service=\"a\\\"b\\\\c\\nd\xc3\xa9\xef\xbf\xbd"
			  "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 0");
	assert_line(text, "sluice_backend_health{service=\"a\\\"b\\\\c\\nd\xc3\xa9\xef\xbf\xbd"
			  "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",backend=\"10.0.0.1:80\"} 0");
	check_structure(text);
	free(text);
}

static void test_backend_labels(void **state)
{
	struct world w;
	char *text;

	(void)state;
	fill_world(&w);
	text = format(&w.snap, NULL);
	assert_line(text, "sluice_backend_connections_selected_total{service=\"web\","
			  "backend=\"[fd00::1]:8080\"} 0");
	assert_line(text, "sluice_backend_connections_selected_total{service=\"web\","
			  "backend=\"10.0.0.2:80\"} 42");
	assert_line(text, "sluice_backend_breaker_state{service=\"web\","
			  "backend=\"10.0.0.2:80\"} 2");
	assert_line(text, "sluice_backend_health{service=\"web\",backend=\"10.0.0.2:80\"} 2");
	assert_line(text, "sluice_backend_live_connections{service=\"web\","
			  "backend=\"10.0.0.2:80\"} 9");
	assert_line(text, "sluice_backend_skipped_total{service=\"web\",backend=\"10.0.0.2:80\","
			  "reason=\"unhealthy\"} 5");
	assert_line(text, "sluice_service_refused_total{service=\"web\","
			  "reason=\"rate_limited_client\"} 7");
	assert_line(text, "sluice_service_refused_total{service=\"empty\","
			  "reason=\"no_backend\"} 0");
	assert_line(text, "sluice_service_ejected_backends{service=\"web\"} 1");
	assert_line(text, "sluice_service_connections_selected_total{service=\"web\"} 100");
	assert_line(text, "sluice_registry_generation 12");
	assert_line(text, "sluice_registry_applied_timestamp_seconds 1700000001");
	free(text);
}

static void test_duplicates_dropped(void **state)
{
	struct world w;
	char *text;

	(void)state;
	fill_world(&w);
	text = format(&w.snap, NULL);
	check_structure(text);
	/* 3 services once each; api 2 + web 3 distinct backends. */
	assert_int_equal(count_prefix(text, "sluice_service_backends{"), 3);
	assert_int_equal(count_prefix(text, "sluice_backend_health{"), 5);
	assert_int_equal(count_prefix(text, "sluice_service_refused_total{"), 3 * 6);
	assert_int_equal(count_prefix(text, "sluice_backend_skipped_total{"), 5 * 3);
	free(text);
}

static void test_histogram(void **state)
{
	static const char *const expect[RECONCILE_BUCKETS] = {
		"0.001\"} 2", "0.005\"} 3", "0.01\"} 3",  "0.025\"} 3", "0.05\"} 3",  "0.1\"} 3",
		"0.25\"} 4",  "0.5\"} 4",   "1\"} 4",	  "2.5\"} 4",	"10\"} 5",    "+Inf\"} 6",
	};
	struct metrics_snapshot snap = { 0 };
	struct agent_status st;
	char line[128], *text;
	const char *sum;

	(void)state;
	fill_status(&st);
	assert_int_equal(st.reconcile_buckets[RECONCILE_BUCKETS - 1], st.reconcile_count);
	text = format(&snap, &st);
	for (int i = 0; i < RECONCILE_BUCKETS; i++) {
		snprintf(line, sizeof(line), "sluice_reconcile_duration_seconds_bucket{le=\"%s",
			 expect[i]);
		assert_line(text, line);
	}
	assert_line(text, "sluice_reconcile_duration_seconds_count 6");
	sum = strstr(text, "\nsluice_reconcile_duration_seconds_sum ");
	assert_non_null(sum);
	assert_true(strtod(sum + strlen("\nsluice_reconcile_duration_seconds_sum "), NULL) ==
		    0.0005 + 0.003 + 0.2 + 5 + 100 + 0);
	assert_line(text, "sluice_registry_last_sync_timestamp_seconds 1700000000.123456789");
	assert_line(text, "sluice_agent_start_time_seconds 1700000000");
	assert_line(text, "sluice_registry_errors_total 3");
	assert_line(text, "sluice_registry_degraded 1");
	check_structure(text);
	free(text);
}

static void test_help_type_once(void **state)
{
	struct agent_status st;
	struct world w;
	char *text;

	(void)state;
	fill_world(&w);
	fill_status(&st);
	text = format(&w.snap, &st);
	assert_true(check_structure(text) > 0);
	assert_int_equal(count_prefix(text, "# HELP "), count_prefix(text, "# TYPE "));
	free(text);
}

static void test_promtool(void **state)
{
	struct metrics_snapshot empty = { 0 };
	struct agent_status st;
	char out[4096], *text;
	struct world w;

	(void)state;
	if (access(PROMTOOL, X_OK))
		skip();
	/* promtool must be able to fail here, or the checks below prove nothing. */
	assert_int_not_equal(run_promtool("# TYPE bad counter\nbad 1\n", out, sizeof(out)), 0);
	fill_world(&w);
	fill_status(&st);
	text = format(&w.snap, &st);
	check_promtool(text);
	free(text);
	text = format(&empty, NULL);
	check_promtool(text);
	free(text);
	text = format_odd_name();
	check_promtool(text);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_backend_labels),
		cmocka_unit_test(test_duplicates_dropped),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_help_type_once),
		cmocka_unit_test(test_promtool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
