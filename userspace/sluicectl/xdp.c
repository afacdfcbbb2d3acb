// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>

#include "lib/loader.h"
#include "lib/log.h"
#include "sluicectl.h"

static const char *mode_name(enum sl_xdp_mode m)
{
	return m == SL_XDP_GENERIC ? "generic" : "native";
}

/* attach-xdp IFACE [--mode native|generic] [--no-forward] */
int do_attach_xdp(struct ctl *c)
{
	enum sl_xdp_mode mode = SL_XDP_AUTO, used = SL_XDP_AUTO;
	int err;

	if (c->argc != 1) {
		fprintf(stderr, "sluicectl: usage: attach-xdp IFACE [--mode native|generic] [--no-forward]\n");
		return CTL_EUSAGE;
	}
	if (c->xdp_mode && !strcmp(c->xdp_mode, "native")) {
		mode = SL_XDP_NATIVE;
	} else if (c->xdp_mode && !strcmp(c->xdp_mode, "generic")) {
		mode = SL_XDP_GENERIC;
	} else if (c->xdp_mode) {
		fprintf(stderr, "sluicectl: --mode: native or generic, not '%s'\n", c->xdp_mode);
		return CTL_EUSAGE;
	}
	err = sl_xdp_attach(c->pin_root, c->argv[0], mode, !c->no_forward, &used);
	if (err)
		return err;
	if (c->json)
		ctl_print_json(c, json_pack("{s:s,s:s,s:b}", "interface", c->argv[0], "mode",
					    mode_name(used), "forward", !c->no_forward));
	else
		log_info("XDP attached to %s (%s mode, %s)", c->argv[0], mode_name(used),
			 c->no_forward ? "limits only" : "limits and load balancing");
	return 0;
}

int do_detach_xdp(struct ctl *c)
{
	int err;

	if (c->argc != 1) {
		fprintf(stderr, "sluicectl: usage: detach-xdp IFACE\n");
		return CTL_EUSAGE;
	}
	err = sl_xdp_detach(c->pin_root, c->argv[0]);
	if (!err && c->json)
		ctl_print_json(c, json_pack("{s:s,s:b}", "interface", c->argv[0], "detached", 1));
	else if (!err)
		log_info("XDP detached from %s", c->argv[0]);
	return err;
}
