/* SPDX-License-Identifier: MIT */
/*
 * The agent's configuration: command-line flags over environment variables
 * over a JSON config file over defaults (README, "sluiced").
 */
#ifndef SLUICED_CONFIG_H
#define SLUICED_CONFIG_H

#include <limits.h>
#include <stdio.h>

#include "lib/log.h"

#define SLUICED_REGISTRY_DEFAULT "file:/etc/sluice/registry.json"
#define SLUICED_LISTEN_DEFAULT "127.0.0.1:8090"
#define SLUICED_REDIS_EMPTY_GRACE_DEFAULT "30"
#define SLUICED_REDIS_RESYNC_DEFAULT "60"

struct agent_config {
	char registry[PATH_MAX]; /* "file:PATH" (a JSON file or a directory of them), "redis://..." */
	char pin_root[PATH_MAX];
	char cgroup[PATH_MAX];	 /* "" = the root of the cgroup v2 hierarchy */
	char listen[128];
	char api_token_file[PATH_MAX];
	char api_token[512]; /* resolved: from the file, or SLUICE_API_TOKEN */
	char config_file[PATH_MAX];
	char xdp_interfaces[64]; /* fnmatch pattern; "" = no XDP */
	enum sl_log_level log_level;
	enum sl_log_style log_style;
	int cleanup_on_exit;
	int no_conn_tracking;
	unsigned int rl_clients; /* sl_rl_client entries when loading; 0: as pinned / default */
	unsigned int xdp_flows;	 /* sl_xdp_flows flows when loading; 0: as pinned / default */
	int xdp_no_forward;	 /* the watcher attaches sl_xdp_edge: limits and counters only */
	/* The Redis source (README, "Redis registry"). */
	char redis_prefix[65];
	char redis_password_file[PATH_MAX];
	char redis_password[512]; /* resolved: from the file, or SLUICE_REDIS_PASSWORD */
	char redis_empty_grace[32]; /* seconds, as given */
	char redis_resync_interval[32];
	unsigned int redis_empty_grace_ms;
	unsigned int redis_resync_ms;
};

/*
 * Fills cfg from argv, the environment and the config file. Returns 0, 1 when
 * --help was printed, or -EINVAL with the reason logged (usage error).
 */
int config_load(struct agent_config *cfg, int argc, char **argv);
/* Re-reads the config file and the token file (SIGHUP); flags and environment still win. */
int config_reload(struct agent_config *cfg, int argc, char **argv);
void config_usage(FILE *out);

#endif
