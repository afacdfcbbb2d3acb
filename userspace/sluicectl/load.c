// SPDX-License-Identifier: MIT
#include <stdio.h>

#include "lib/loader.h"
#include "lib/log.h"
#include "sluicectl.h"

static int no_args(struct ctl *c, const char *cmd)
{
	if (c->argc) {
		fprintf(stderr, "sluicectl: %s takes no arguments (got '%s')\n", cmd, c->argv[0]);
		return CTL_EUSAGE;
	}
	return 0;
}

int do_load(struct ctl *c)
{
	struct sl_load_opts o = { .pin_root = c->pin_root, .cgroup = c->cgroup,
				  .no_conn_tracking = c->no_conn_tracking,
				  .rl_clients = c->rl_clients,
				  .xdp_flows = c->xdp_flows };
	int err = no_args(c, "load");

	if (err)
		return err;
	err = sl_load(&o);
	if (!err && c->json)
		ctl_print_json(c, json_pack("{s:b,s:s}", "loaded", 1, "pin_root", c->pin_root));
	return err;
}

int do_unload(struct ctl *c)
{
	int err = no_args(c, "unload");

	if (err)
		return err;
	err = sl_unload(c->pin_root);
	if (!err && c->json)
		ctl_print_json(c, json_pack("{s:b,s:s}", "unloaded", 1, "pin_root", c->pin_root));
	return err;
}
