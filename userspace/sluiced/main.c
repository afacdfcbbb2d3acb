// SPDX-License-Identifier: MIT
/*
 * sluiced, the agent. For now it only checks that the datapath is loaded and
 * says so; the registry watcher, health checks and API arrive with issue 4.
 */
#include <stdio.h>
#include <string.h>

#include "lib/loader.h"
#include "lib/log.h"
#include "lib/maps.h"

int main(int argc, char **argv)
{
	const char *pin_root = SL_PIN_ROOT_DEFAULT;
	struct sl_status st;

	log_init("sluiced", SL_LOG_INFO);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pin-root") && i + 1 < argc) {
			pin_root = argv[++i];
		} else {
			fprintf(stderr, "Usage: sluiced [--pin-root DIR]\n"
					"The agent is not written yet; use 'sluicectl load' and 'sluicectl apply'.\n");
			return 2;
		}
	}
	if (sl_status_read(pin_root, &st)) {
		log_err("cannot read the datapath's status under %s", pin_root);
		return 1;
	}
	log_info("datapath under %s is %s; the agent itself is not implemented yet", pin_root,
		 st.loaded ? "loaded" : "not loaded");
	return st.loaded ? 0 : 1;
}
