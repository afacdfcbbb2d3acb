// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "config.h"
#include "lib/maps.h"
#include "lib/redis_keys.h"
#include "lib/redis_url.h"

enum opt_id {
	OPT_REGISTRY = 256,
	OPT_PIN_ROOT,
	OPT_CGROUP,
	OPT_LISTEN,
	OPT_TOKEN_FILE,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_CONFIG,
	OPT_CLEANUP,
	OPT_NO_CONN_TRACKING,
	OPT_RL_CLIENTS,
	OPT_XDP_FLOWS,
	OPT_XDP_NO_FORWARD,
	OPT_XDP_INTERFACES,
	OPT_REDIS_PREFIX,
	OPT_REDIS_PASSWORD_FILE,
	OPT_REDIS_EMPTY_GRACE,
	OPT_REDIS_RESYNC,
};

/* One setting: its flag, environment variable, config-file key and storage. */
struct setting {
	int opt;
	const char *flag;
	const char *env;
	const char *key;
	size_t offset;
	size_t size;
	int numeric; /* the config file may give a number */
};

#define STR_SETTING(opt, flag, env, key, field) \
	{ opt, flag, env, key, offsetof(struct agent_config, field), \
	  sizeof(((struct agent_config *)0)->field), 0 }
#define NUM_SETTING(opt, flag, env, key, field) \
	{ opt, flag, env, key, offsetof(struct agent_config, field), \
	  sizeof(((struct agent_config *)0)->field), 1 }

static const struct setting settings[] = {
	STR_SETTING(OPT_REGISTRY, "registry", "SLUICE_REGISTRY", "registry", registry),
	STR_SETTING(OPT_PIN_ROOT, "pin-root", "SLUICE_PIN_ROOT", "pin_root", pin_root),
	STR_SETTING(OPT_CGROUP, "cgroup", "SLUICE_CGROUP", "cgroup", cgroup),
	STR_SETTING(OPT_LISTEN, "listen", "SLUICE_LISTEN", "listen", listen),
	STR_SETTING(OPT_TOKEN_FILE, "api-token-file", "SLUICE_API_TOKEN_FILE", "api_token_file",
		    api_token_file),
	STR_SETTING(OPT_XDP_INTERFACES, "xdp-interfaces", "SLUICE_XDP_INTERFACES",
		    "xdp_interfaces", xdp_interfaces),
	STR_SETTING(OPT_REDIS_PREFIX, "redis-prefix", "SLUICE_REDIS_PREFIX", "redis_prefix",
		    redis_prefix),
	STR_SETTING(OPT_REDIS_PASSWORD_FILE, "redis-password-file", "SLUICE_REDIS_PASSWORD_FILE",
		    "redis_password_file", redis_password_file),
	NUM_SETTING(OPT_REDIS_EMPTY_GRACE, "redis-empty-grace", "SLUICE_REDIS_EMPTY_GRACE",
		    "redis_empty_grace", redis_empty_grace),
	NUM_SETTING(OPT_REDIS_RESYNC, "redis-resync-interval", "SLUICE_REDIS_RESYNC_INTERVAL",
		    "redis_resync_interval", redis_resync_interval),
};

void config_usage(FILE *out)
{
	fprintf(out,
		"Usage: sluiced [--registry file:PATH|redis://...] [--pin-root DIR] [--cgroup PATH]\n"
		"               [--listen ADDR:PORT] [--api-token-file F] [--config FILE]\n"
		"               [--log-level error|warn|info|debug] [--log-format kv|json]\n"
		"               [--cleanup-on-exit] [--no-conn-tracking] [--rl-clients N]\n"
		"               [--xdp-flows N] [--xdp-interfaces PATTERN] [--xdp-no-forward]\n"
		"               [--redis-prefix P] [--redis-password-file F] [--redis-empty-grace S]\n"
		"               [--redis-resync-interval S]\n"
		"\n"
		"  --registry SRC        where services come from: file:PATH, a JSON document or a\n"
		"                        directory of them, watched with inotify (%s);\n"
		"                        or redis://[user:password@]host[:port][/db], shared by a\n"
		"                        fleet (rediss:// is refused: this build has no TLS)\n"
		"  --pin-root DIR        pinned maps, programs and links (%s)\n"
		"  --cgroup PATH         cgroup v2 directory to attach to if nothing is loaded yet\n"
		"                        (default: the root of the cgroup v2 hierarchy)\n"
		"  --listen ADDR:PORT    HTTP API and /metrics (%s)\n"
		"  --api-token-file F    bearer token for mutating API calls (or SLUICE_API_TOKEN)\n"
		"  --config FILE         JSON object with the same settings: registry, pin_root,\n"
		"                        cgroup, listen, api_token_file, log_level, log_format,\n"
		"                        cleanup_on_exit, xdp_interfaces, xdp_no_forward,\n"
		"                        redis_prefix, redis_password_file, redis_empty_grace,\n"
		"                        redis_resync_interval\n"
		"  --log-level LEVEL     (info)          --log-format kv|json (kv)\n"
		"  --cleanup-on-exit     unload the datapath on SIGTERM (default: leave it running)\n"
		"  --no-conn-tracking    when loading: no sockops, no breakers or live counts\n"
		"  --rl-clients N        when loading: per-client rate-limit buckets (65536)\n"
		"  --xdp-flows N         when loading: flows of the XDP flow table (262144)\n"
		"  --xdp-interfaces PAT  attach sl_xdp to interfaces whose names match PAT\n"
		"                        (fnmatch, e.g. 'eth*'), now and as they appear\n"
		"  --xdp-no-forward      attach them without load balancing: limits and counters\n"
		"                        only, for a node that serves its VIPs itself\n"
		"  --redis-prefix P      key prefix in Redis (%s)\n"
		"  --redis-password-file F  AUTH password (or SLUICE_REDIS_PASSWORD); wins over\n"
		"                        the URL's\n"
		"  --redis-empty-grace S seconds an empty Redis (restarted without persistence) is\n"
		"                        not believed: nothing is removed meanwhile (%s)\n"
		"  --redis-resync-interval S  seconds between full resyncs, the safety net (%s)\n"
		"\n"
		"Environment: SLUICE_REGISTRY, SLUICE_PIN_ROOT, SLUICE_CGROUP, SLUICE_LISTEN,\n"
		"SLUICE_API_TOKEN_FILE, SLUICE_API_TOKEN, SLUICE_LOG_LEVEL, SLUICE_LOG_FORMAT,\n"
		"SLUICE_RL_CLIENTS, SLUICE_XDP_FLOWS, SLUICE_XDP_INTERFACES, SLUICE_REDIS_PREFIX, SLUICE_REDIS_PASSWORD,\n"
		"SLUICE_REDIS_PASSWORD_FILE, SLUICE_REDIS_EMPTY_GRACE, SLUICE_REDIS_RESYNC_INTERVAL,\n"
		"SLUICE_CONFIG. Flags win over the environment, which wins over the config file.\n"
		"Signals: SIGTERM/SIGINT stop (datapath stays), SIGHUP re-reads config and registry.\n",
		SLUICED_REGISTRY_DEFAULT, SL_PIN_ROOT_DEFAULT, SLUICED_LISTEN_DEFAULT,
		SL_REDIS_PREFIX_DEFAULT, SLUICED_REDIS_EMPTY_GRACE_DEFAULT,
		SLUICED_REDIS_RESYNC_DEFAULT);
}

static int set_string(char *dst, size_t size, const char *value, const char *what)
{
	if (strlen(value) >= size) {
		log_err("%s is too long (at most %zu characters)", what, size - 1);
		return -EINVAL;
	}
	strcpy(dst, value);
	return 0;
}

static int set_level(struct agent_config *cfg, const char *v, const char *what)
{
	if (log_parse_level(v, &cfg->log_level)) {
		log_err("%s: unknown log level \"%s\" (error, warn, info, debug)", what, v);
		return -EINVAL;
	}
	return 0;
}

static int set_style(struct agent_config *cfg, const char *v, const char *what)
{
	if (log_parse_style(v, &cfg->log_style) || cfg->log_style == SL_LOG_PLAIN) {
		log_err("%s: unknown log format \"%s\" (kv, json)", what, v);
		return -EINVAL;
	}
	return 0;
}

static int apply_file(struct agent_config *cfg, const char *path)
{
	json_error_t jerr;
	const char *key;
	json_t *root, *v;
	int err = 0;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		log_err("config %s: %s (line %d)", path, jerr.text, jerr.line);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		log_err("config %s: must be a JSON object", path);
		json_decref(root);
		return -EINVAL;
	}
	json_object_foreach(root, key, v) {
		const struct setting *s = NULL;

		for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
			if (!strcmp(settings[i].key, key))
				s = &settings[i];
		if (!strcmp(key, "cleanup_on_exit") && json_is_boolean(v)) {
			cfg->cleanup_on_exit = json_is_true(v);
		} else if (!strcmp(key, "xdp_no_forward") && json_is_boolean(v)) {
			cfg->xdp_no_forward = json_is_true(v);
		} else if (s && s->numeric && json_is_number(v)) {
			char num[32];

			snprintf(num, sizeof(num), "%.17g", json_number_value(v));
			err = set_string((char *)cfg + s->offset, s->size, num, key);
		} else if (!json_is_string(v)) {
			log_err("config %s: %s: must be a string", path, key);
			err = -EINVAL;
		} else if (s) {
			err = set_string((char *)cfg + s->offset, s->size, json_string_value(v), key);
		} else if (!strcmp(key, "log_level")) {
			err = set_level(cfg, json_string_value(v), key);
		} else if (!strcmp(key, "log_format")) {
			err = set_style(cfg, json_string_value(v), key);
		} else {
			log_err("config %s: unknown setting \"%s\"", path, key);
			err = -EINVAL;
		}
		if (err)
			break;
	}
	json_decref(root);
	return err;
}

/* A table size at load (--rl-clients, --xdp-flows): 1..2^24, as sluicectl load takes it. */
static int set_map_size(unsigned int *out, const char *v, const char *what)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);

	if (*end || !n || n > (1UL << 24)) {
		log_err("%s: expected 1..16777216 entries, got \"%s\"", what, v);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

static int apply_env(struct agent_config *cfg)
{
	const char *v;
	int err = 0;

	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]) && !err; i++)
		if ((v = getenv(settings[i].env)) && *v)
			err = set_string((char *)cfg + settings[i].offset, settings[i].size, v,
					 settings[i].env);
	if (!err && (v = getenv("SLUICE_LOG_LEVEL")) && *v)
		err = set_level(cfg, v, "SLUICE_LOG_LEVEL");
	if (!err && (v = getenv("SLUICE_LOG_FORMAT")) && *v)
		err = set_style(cfg, v, "SLUICE_LOG_FORMAT");
	if (!err && (v = getenv("SLUICE_RL_CLIENTS")) && *v)
		err = set_map_size(&cfg->rl_clients, v, "SLUICE_RL_CLIENTS");
	if (!err && (v = getenv("SLUICE_XDP_FLOWS")) && *v)
		err = set_map_size(&cfg->xdp_flows, v, "SLUICE_XDP_FLOWS");
	return err;
}

/* A string-valued flag from settings[]; an unknown option is a usage error. */
static int set_flag_string(struct agent_config *cfg, int opt, const char *value)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (settings[i].opt == opt)
			return set_string((char *)cfg + settings[i].offset, settings[i].size, value,
					  settings[i].flag);
	config_usage(stderr);
	return -EINVAL;
}

/* only_config: the first pass, which only finds --config (the file is read before flags). */
static int apply_flags(struct agent_config *cfg, int argc, char **argv, int only_config)
{
	static const struct option opts[] = {
		{ "registry", required_argument, NULL, OPT_REGISTRY },
		{ "pin-root", required_argument, NULL, OPT_PIN_ROOT },
		{ "cgroup", required_argument, NULL, OPT_CGROUP },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "api-token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "cleanup-on-exit", no_argument, NULL, OPT_CLEANUP },
		{ "no-conn-tracking", no_argument, NULL, OPT_NO_CONN_TRACKING },
		{ "rl-clients", required_argument, NULL, OPT_RL_CLIENTS },
		{ "xdp-flows", required_argument, NULL, OPT_XDP_FLOWS },
		{ "xdp-no-forward", no_argument, NULL, OPT_XDP_NO_FORWARD },
		{ "xdp-interfaces", required_argument, NULL, OPT_XDP_INTERFACES },
		{ "redis-prefix", required_argument, NULL, OPT_REDIS_PREFIX },
		{ "redis-password-file", required_argument, NULL, OPT_REDIS_PASSWORD_FILE },
		{ "redis-empty-grace", required_argument, NULL, OPT_REDIS_EMPTY_GRACE },
		{ "redis-resync-interval", required_argument, NULL, OPT_REDIS_RESYNC },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, err = 0;

	optind = 1;
	opterr = !only_config;
	while (!err && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (only_config) {
			if (opt == OPT_CONFIG)
				err = set_string(cfg->config_file, sizeof(cfg->config_file), optarg,
						 "--config");
			continue;
		}
		switch (opt) {
		case OPT_LOG_LEVEL:
			err = set_level(cfg, optarg, "--log-level");
			break;
		case OPT_LOG_FORMAT:
			err = set_style(cfg, optarg, "--log-format");
			break;
		case OPT_CONFIG:
			break;
		case OPT_CLEANUP:
			cfg->cleanup_on_exit = 1;
			break;
		case OPT_NO_CONN_TRACKING:
			cfg->no_conn_tracking = 1;
			break;
		case OPT_RL_CLIENTS:
			err = set_map_size(&cfg->rl_clients, optarg, "--rl-clients");
			break;
		case OPT_XDP_FLOWS:
			err = set_map_size(&cfg->xdp_flows, optarg, "--xdp-flows");
			break;
		case OPT_XDP_NO_FORWARD:
			cfg->xdp_no_forward = 1;
			break;
		case 'h':
			config_usage(stdout);
			return 1;
		default:
			err = set_flag_string(cfg, opt, optarg);
			break;
		}
	}
	if (!err && optind < argc) {
		log_err("unexpected argument \"%s\" (see --help)", argv[optind]);
		return -EINVAL;
	}
	return err;
}

static int read_token(struct agent_config *cfg)
{
	const char *env = getenv("SLUICE_API_TOKEN");
	FILE *f;
	size_t n;

	cfg->api_token[0] = '\0';
	if (!cfg->api_token_file[0]) {
		if (env && *env)
			return set_string(cfg->api_token, sizeof(cfg->api_token), env,
					  "SLUICE_API_TOKEN");
		return 0;
	}
	f = fopen(cfg->api_token_file, "r");
	if (!f) {
		log_err("cannot read API token file %s: %s", cfg->api_token_file, strerror(errno));
		return -errno;
	}
	n = fread(cfg->api_token, 1, sizeof(cfg->api_token) - 1, f);
	fclose(f);
	cfg->api_token[n] = '\0';
	while (n && (cfg->api_token[n - 1] == '\n' || cfg->api_token[n - 1] == '\r' ||
		     cfg->api_token[n - 1] == ' '))
		cfg->api_token[--n] = '\0';
	if (!n) {
		log_err("API token file %s is empty", cfg->api_token_file);
		return -EINVAL;
	}
	return 0;
}

/* Seconds (a decimal number) in [min_s, max_s], to milliseconds. */
static int parse_seconds(const char *v, double min_s, double max_s, unsigned int *ms,
			 const char *what)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end || !(x >= min_s && x <= max_s)) {
		log_err("%s: expected seconds in [%g, %g], got \"%s\"", what, min_s, max_s, v);
		return -EINVAL;
	}
	*ms = (unsigned int)(x * 1000 + 0.5);
	return 0;
}

/* The password from --redis-password-file, else SLUICE_REDIS_PASSWORD; "" if neither. */
static int read_redis_password(struct agent_config *cfg)
{
	const char *env = getenv("SLUICE_REDIS_PASSWORD");
	FILE *f;
	size_t n;

	cfg->redis_password[0] = '\0';
	if (!cfg->redis_password_file[0]) {
		if (env && *env)
			return set_string(cfg->redis_password, sizeof(cfg->redis_password), env,
					  "SLUICE_REDIS_PASSWORD");
		return 0;
	}
	f = fopen(cfg->redis_password_file, "r");
	if (!f) {
		log_err("cannot read the Redis password file %s: %s", cfg->redis_password_file,
			strerror(errno));
		return -errno;
	}
	n = fread(cfg->redis_password, 1, sizeof(cfg->redis_password) - 1, f);
	fclose(f);
	cfg->redis_password[n] = '\0';
	while (n && (cfg->redis_password[n - 1] == '\n' || cfg->redis_password[n - 1] == '\r'))
		cfg->redis_password[--n] = '\0';
	if (!n) {
		log_err("the Redis password file %s is empty", cfg->redis_password_file);
		return -EINVAL;
	}
	return 0;
}

/* A registry that is not file:PATH must be a redis:// URL this build can use. */
static int check_redis(struct agent_config *cfg)
{
	struct sl_redis_url u;
	char err[512];

	if (strncmp(cfg->registry, "redis://", 8) && strncmp(cfg->registry, "rediss://", 9)) {
		log_err("registry \"%s\": unsupported source (file:PATH or "
			"redis://[user:password@]host[:port][/db])", cfg->registry);
		return -EINVAL;
	}
	if (sl_redis_url_parse(cfg->registry, &u, err, sizeof(err))) {
		log_err("registry: %s", err);
		return -EINVAL;
	}
	if (sl_redis_prefix_check(cfg->redis_prefix, err, sizeof(err))) {
		log_err("--redis-prefix: %s", err);
		return -EINVAL;
	}
	if (parse_seconds(cfg->redis_empty_grace, 0, 86400, &cfg->redis_empty_grace_ms,
			  "--redis-empty-grace") ||
	    parse_seconds(cfg->redis_resync_interval, 0.1, 86400, &cfg->redis_resync_ms,
			  "--redis-resync-interval"))
		return -EINVAL;
	return read_redis_password(cfg);
}

static void config_defaults(struct agent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->registry, SLUICED_REGISTRY_DEFAULT);
	strcpy(cfg->pin_root, SL_PIN_ROOT_DEFAULT);
	strcpy(cfg->listen, SLUICED_LISTEN_DEFAULT);
	strcpy(cfg->redis_prefix, SL_REDIS_PREFIX_DEFAULT);
	strcpy(cfg->redis_empty_grace, SLUICED_REDIS_EMPTY_GRACE_DEFAULT);
	strcpy(cfg->redis_resync_interval, SLUICED_REDIS_RESYNC_DEFAULT);
	cfg->log_level = SL_LOG_INFO;
	cfg->log_style = SL_LOG_KV;
}

int config_load(struct agent_config *cfg, int argc, char **argv)
{
	const char *env_config = getenv("SLUICE_CONFIG");
	int err;

	config_defaults(cfg);
	if (env_config && *env_config)
		snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", env_config);
	err = apply_flags(cfg, argc, argv, 1);
	if (!err && cfg->config_file[0])
		err = apply_file(cfg, cfg->config_file);
	if (!err)
		err = apply_env(cfg);
	if (!err)
		err = apply_flags(cfg, argc, argv, 0);
	if (err)
		return err;
	if (strncmp(cfg->registry, "file:", 5)) {
		err = check_redis(cfg);
		if (err)
			return err;
	}
	return read_token(cfg);
}

int config_reload(struct agent_config *cfg, int argc, char **argv)
{
	struct agent_config fresh;
	int err = config_load(&fresh, argc, argv);

	if (err)
		return err < 0 ? err : -EINVAL;
	*cfg = fresh;
	return 0;
}
