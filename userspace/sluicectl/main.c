// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/maps.h"
#include "sluicectl.h"

static const struct cmd {
	const char *name;
	int (*fn)(struct ctl *c);
	int takes_load_opts;
} cmds[] = {
	{ "load", do_load, 1 },
	{ "unload", do_unload, 0 },
	{ "status", do_status, 0 },
	{ "apply", do_apply, 0 },
	{ "services", do_services, 0 },
	{ "backends", do_backends, 0 },
	{ "breakers", do_breakers, 0 },
	{ "stats", do_stats, 0 },
	{ "attach-xdp", do_attach_xdp, 0 },
	{ "detach-xdp", do_detach_xdp, 0 },
};

void usage_to(FILE *out)
{
	fprintf(out,
		"Usage: sluicectl [OPTIONS] OBJECT [ARGS]\n"
		"\n"
		"  sluicectl load [--cgroup PATH] [--no-conn-tracking] [--rl-clients N]\n"
		"                                     load, pin and attach the datapath\n"
		"  sluicectl unload                   detach and remove what load created\n"
		"  sluicectl status                   what is loaded, attached where, which config is live\n"
		"  sluicectl apply FILE [--dry-run]   validate a registry document and program it\n"
		"  sluicectl services                 services in the maps, with counters\n"
		"  sluicectl backends [SERVICE]       backends in the maps, with counters\n"
		"  sluicectl breakers [SERVICE]       circuit breaker state and live connections\n"
		"  sluicectl breakers reset SERVICE ADDR:PORT\n"
		"                                     close one breaker by hand\n"
		"  sluicectl stats [SERVICE]          per service: accepted, refused by reason, tokens,\n"
		"                                     XDP packets and drops\n"
		"  sluicectl attach-xdp IFACE [--mode native|generic]\n"
		"                                     rate-limit at XDP on IFACE (native by default)\n"
		"  sluicectl detach-xdp IFACE         remove it\n"
		"\n"
		"OPTIONS: -j|--json  -p|--pretty  -d|--debug  --pin-root DIR (default %s)\n"
		"Objects may be abbreviated to any unambiguous prefix.\n",
		SL_PIN_ROOT_DEFAULT);
}

void ctl_print_json(const struct ctl *c, json_t *doc)
{
	json_dumpf(doc, stdout, c->pretty ? JSON_INDENT(2) : JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(doc);
}

int ctl_take_show_verb(struct ctl *c)
{
	if (c->argc && (!strcmp(c->argv[0], "show") || !strcmp(c->argv[0], "list"))) {
		c->argc--;
		c->argv++;
	} else if (c->argc && !strcmp(c->argv[0], "help")) {
		return -1;
	}
	return 0;
}

/* Exact name, else the only command the prefix starts; lists candidates when ambiguous. */
static const struct cmd *find_cmd(const char *name)
{
	const struct cmd *hit = NULL;
	size_t len = strlen(name), matches = 0;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
		if (!strncmp(cmds[i].name, name, len)) {
			hit = &cmds[i];
			matches++;
		}
	}
	if (matches > 1) {
		fprintf(stderr, "sluicectl: '%s' is ambiguous:", name);
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (!strncmp(cmds[i].name, name, len))
				fprintf(stderr, " %s", cmds[i].name);
		fputc('\n', stderr);
		return NULL;
	}
	if (!hit)
		fprintf(stderr, "sluicectl: unknown object '%s' (see 'sluicectl --help')\n", name);
	return hit;
}

void usage(void)
{
	usage_to(stderr);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },	    { "pretty", no_argument, NULL, 'p' },
		{ "debug", no_argument, NULL, 'd' },	    { "help", no_argument, NULL, 'h' },
		{ "pin-root", required_argument, NULL, 'P' }, { "cgroup", required_argument, NULL, 'C' },
		{ "dry-run", no_argument, NULL, 'n' },	    { "no-conn-tracking", no_argument, NULL, 'T' },
		{ "rl-clients", required_argument, NULL, 'R' },
		{ "mode", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .pin_root = SL_PIN_ROOT_DEFAULT };
	enum sl_log_level level = SL_LOG_INFO;
	const struct cmd *cmd;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "jpdh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			c.pretty = 1;
			/* fallthrough */
		case 'j':
			c.json = 1;
			break;
		case 'd':
			level = SL_LOG_DEBUG;
			break;
		case 'P':
			c.pin_root = optarg;
			break;
		case 'C':
			c.cgroup = optarg;
			break;
		case 'n':
			c.dry_run = 1;
			break;
		case 'T':
			c.no_conn_tracking = 1;
			break;
		case 'M':
			c.xdp_mode = optarg;
			break;
		case 'R': {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);

			if (*end || !n || n > (1UL << 24)) {
				fprintf(stderr, "sluicectl: --rl-clients: expected 1..16777216, got '%s'\n",
					optarg);
				return EXIT_USAGE;
			}
			c.rl_clients = n;
			break;
		}
		case 'h':
			usage_to(stdout);
			return EXIT_OK;
		default:
			usage();
			return EXIT_USAGE;
		}
	}
	log_init("sluicectl", level);
	log_set_quiet(c.json);
	log_hook_libbpf();
	if (optind >= argc) {
		usage();
		return EXIT_USAGE;
	}
	cmd = find_cmd(argv[optind]);
	if (!cmd)
		return EXIT_USAGE;
	if ((c.cgroup || c.no_conn_tracking || c.rl_clients) && !cmd->takes_load_opts) {
		fprintf(stderr, "sluicectl: --cgroup, --no-conn-tracking and --rl-clients apply to 'load' only\n");
		return EXIT_USAGE;
	}
	if (c.xdp_mode && cmd->fn != do_attach_xdp) {
		fprintf(stderr, "sluicectl: --mode applies to 'attach-xdp' only\n");
		return EXIT_USAGE;
	}
	if (c.dry_run && cmd->fn != do_apply) {
		fprintf(stderr, "sluicectl: --dry-run applies to 'apply' only\n");
		return EXIT_USAGE;
	}
	c.argc = argc - optind - 1;
	c.argv = argv + optind + 1;
	err = cmd->fn(&c);
	if (err == CTL_EUSAGE)
		return EXIT_USAGE;
	if (err) {
		if (c.json)
			ctl_print_json(&c, json_pack("{s:s}", "error", log_last_error()));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
