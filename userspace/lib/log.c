// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "log.h"

static const char *log_prog = "sluice";
static enum sl_log_level log_level = SL_LOG_INFO;
static int log_quiet;
static enum sl_log_style log_style = SL_LOG_PLAIN;
static char last_error[1024];

static const char *const level_names[] = {
	[SL_LOG_ERROR] = "error",
	[SL_LOG_WARN] = "warn",
	[SL_LOG_INFO] = "info",
	[SL_LOG_DEBUG] = "debug",
};

void log_init(const char *prog, enum sl_log_level level)
{
	log_prog = prog;
	log_level = level;
}

/* With -j, stdout is one JSON document and stderr carries only errors. */
void log_set_quiet(int quiet)
{
	log_quiet = quiet;
}

void log_set_level(enum sl_log_level level)
{
	log_level = level;
}

void log_set_style(enum sl_log_style style)
{
	log_style = style;
}

int log_parse_style(const char *s, enum sl_log_style *style)
{
	if (!strcmp(s, "kv") || !strcmp(s, "text"))
		*style = SL_LOG_KV;
	else if (!strcmp(s, "json"))
		*style = SL_LOG_JSON;
	else if (!strcmp(s, "plain"))
		*style = SL_LOG_PLAIN;
	else
		return -1;
	return 0;
}

static void format_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Structured lines: the message goes in msg, quoted; key=value pairs inside it stay readable. */
static void log_structured(enum sl_log_level level, const char *msg)
{
	char when[40];

	format_now(when, sizeof(when));
	if (log_style == SL_LOG_JSON) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "ts", when, "level", level_names[level],
				      "prog", log_prog, "msg", msg);

		if (o) {
			json_dumpf(o, stderr, JSON_COMPACT);
			fputc('\n', stderr);
			json_decref(o);
		}
		return;
	}
	fprintf(stderr, "ts=%s level=%s prog=%s msg=\"", when, level_names[level], log_prog);
	for (const char *p = msg; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', stderr);
		fputc(*p == '\n' ? ' ' : *p, stderr);
	}
	fputs("\"\n", stderr);
}

int log_parse_level(const char *s, enum sl_log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcmp(s, level_names[i])) {
			*level = i;
			return 0;
		}
	}
	return -1;
}

static void log_vmsg(enum sl_log_level level, const char *fmt, va_list ap)
{
	if (level == SL_LOG_ERROR) {
		va_list copy;

		va_copy(copy, ap);
		vsnprintf(last_error, sizeof(last_error), fmt, copy);
		va_end(copy);
	}
	if (level > log_level || (log_quiet && level > SL_LOG_ERROR))
		return;
	if (log_style != SL_LOG_PLAIN) {
		char msg[2048];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		log_structured(level, msg);
		return;
	}
	fprintf(stderr, "%s: ", log_prog);
	if (level == SL_LOG_WARN)
		fputs("warning: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_msg(enum sl_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum sl_log_level ours = level == LIBBPF_WARN ? SL_LOG_INFO : SL_LOG_DEBUG;
	char line[1024];
	size_t n;

	if (ours > log_level || log_quiet)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_msg(ours, "%s", line);
	return 0;
}

void log_hook_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}

const char *log_last_error(void)
{
	return last_error[0] ? last_error : "failed";
}
