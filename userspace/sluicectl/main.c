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
	{ "flow", do_flow, 0 },
	{ "attach-xdp", do_attach_xdp, 0 },
	{ "detach-xdp", do_detach_xdp, 0 },
	{ "registry", do_registry, 0 },
	{ "register", do_register, 0 },
	{ "deregister", do_deregister, 0 },
};

void usage_to(FILE *out)
{
	fprintf(out,
		"Usage: sluicectl [OPTIONS] OBJECT [ARGS]\n"
		"\n"
		"  sluicectl load [--cgroup PATH] [--no-conn-tracking] [--rl-clients N] [--xdp-flows N]\n"
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
		"  sluicectl flow CLIENT:PORT VIP:PORT [tcp|udp]\n"
		"                                     the backend XDP's flow table holds for a flow\n"
		"  sluicectl attach-xdp IFACE [--mode native|generic] [--no-forward]\n"
		"                                     balance VIP traffic arriving on IFACE by direct\n"
		"                                     server return and rate-limit it at XDP (native by\n"
		"                                     default); --no-forward: limits and counters only\n"
		"  sluicectl detach-xdp IFACE         remove it\n"
		"  sluicectl registry put FILE [--replace] --registry redis://HOST:PORT\n"
		"                                     write a registry document into Redis (--replace:\n"
		"                                     remove the services it does not have)\n"
		"  sluicectl registry get --registry redis://HOST:PORT\n"
		"                                     print the document Redis holds\n"
		"  sluicectl register SERVICE ADDR:PORT --registry redis://HOST:PORT [--ttl S]\n"
		"            [--weight W] [--heartbeat]\n"
		"                                     add an instance (--heartbeat: renew every ttl/3\n"
		"                                     until SIGTERM/SIGINT, then deregister)\n"
		"  sluicectl deregister SERVICE ADDR:PORT --registry redis://HOST:PORT\n"
		"                                     remove an instance\n"
		"\n"
		"OPTIONS: -j|--json  -p|--pretty  -d|--debug  --pin-root DIR (default %s)\n"
		"Redis: --registry URL (or SLUICE_REGISTRY), --redis-prefix P (sluice:),\n"
		"       --redis-password-file F (or SLUICE_REDIS_PASSWORD[_FILE])\n"
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

/* A map size given on the command line: 1..2^24 entries. */
static int parse_map_size(const char *flag, const char *arg, __u32 *out)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (*end || !n || n > (1UL << 24)) {
		fprintf(stderr, "sluicectl: %s: expected 1..16777216, got '%s'\n", flag, arg);
		return -1;
	}
	*out = n;
	return 0;
}

/* --ttl S (0..30 days) and --weight W (1..65535) of register. */
static int parse_register_number(int opt, const char *v, struct ctl *c)
{
	unsigned long max = opt == 't' ? 2592000 : 65535, n;
	char *end;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || !*v || n > max || (opt == 'w' && !n)) {
		fprintf(stderr, "sluicectl: --%s: expected %s, got '%s'\n",
			opt == 't' ? "ttl" : "weight",
			opt == 't' ? "seconds 0..2592000" : "1..65535", v);
		return -1;
	}
	if (opt == 't')
		c->ttl = n;
	else
		c->weight = n;
	return 0;
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
		{ "no-forward", no_argument, NULL, 'N' },
		{ "xdp-flows", required_argument, NULL, 'F' },
		{ "registry", required_argument, NULL, 'G' },
		{ "redis-prefix", required_argument, NULL, 'K' },
		{ "redis-password-file", required_argument, NULL, 'W' },
		{ "ttl", required_argument, NULL, 't' },
		{ "weight", required_argument, NULL, 'w' },
		{ "heartbeat", no_argument, NULL, 'H' },
		{ "replace", no_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl c = { .pin_root = SL_PIN_ROOT_DEFAULT, .ttl = -1 };
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
		case 'N':
			c.no_forward = 1;
			break;
		case 'F':
			if (parse_map_size("--xdp-flows", optarg, &c.xdp_flows))
				return EXIT_USAGE;
			break;
		case 'R':
			if (parse_map_size("--rl-clients", optarg, &c.rl_clients))
				return EXIT_USAGE;
			break;
		case 'G':
			c.registry = optarg;
			break;
		case 'K':
			c.redis_prefix = optarg;
			break;
		case 'W':
			c.redis_password_file = optarg;
			break;
		case 't':
		case 'w':
			if (parse_register_number(opt, optarg, &c))
				return EXIT_USAGE;
			break;
		case 'H':
			c.heartbeat = 1;
			break;
		case 'X':
			c.replace = 1;
			break;
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
	if ((c.cgroup || c.no_conn_tracking || c.rl_clients || c.xdp_flows) &&
	    !cmd->takes_load_opts) {
		fprintf(stderr, "sluicectl: --cgroup, --no-conn-tracking, --rl-clients and --xdp-flows apply to 'load' only\n");
		return EXIT_USAGE;
	}
	if ((c.xdp_mode || c.no_forward) && cmd->fn != do_attach_xdp) {
		fprintf(stderr, "sluicectl: --mode and --no-forward apply to 'attach-xdp' only\n");
		return EXIT_USAGE;
	}
	if ((c.registry || c.redis_prefix || c.redis_password_file) && cmd->fn != do_registry &&
	    cmd->fn != do_register && cmd->fn != do_deregister) {
		fprintf(stderr, "sluicectl: --registry and --redis-* apply to 'registry', 'register' "
			"and 'deregister' only\n");
		return EXIT_USAGE;
	}
	if ((c.ttl >= 0 || c.weight || c.heartbeat) && cmd->fn != do_register) {
		fprintf(stderr, "sluicectl: --ttl, --weight and --heartbeat apply to 'register' only\n");
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
