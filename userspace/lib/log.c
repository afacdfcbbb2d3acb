// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

#include "log.h"

static const char *log_prog = "sluice";
static enum sl_log_level log_level = SL_LOG_INFO;
static int log_quiet;
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
