/* SPDX-License-Identifier: MIT */
#ifndef SL_LOG_H
#define SL_LOG_H

enum sl_log_level { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };

/* plain: "prog: msg" (the CLI); kv: ts=... level=... msg="..."; json: one object a line. */
enum sl_log_style { SL_LOG_PLAIN, SL_LOG_KV, SL_LOG_JSON };

/* Prefix for every line (the program's name); messages go to stderr. */
void log_init(const char *prog, enum sl_log_level level);
void log_set_quiet(int quiet);
void log_set_level(enum sl_log_level level);
void log_set_style(enum sl_log_style style);
int log_parse_style(const char *s, enum sl_log_style *style);
int log_parse_level(const char *s, enum sl_log_level *level);

void log_msg(enum sl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...) log_msg(SL_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(SL_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(SL_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(SL_LOG_DEBUG, __VA_ARGS__)

/* The text of the latest error logged, for -j's {"error": ...}. */
const char *log_last_error(void);

/* Route libbpf's messages through log_msg, one level lower than libbpf says. */
void log_hook_libbpf(void);

#endif
