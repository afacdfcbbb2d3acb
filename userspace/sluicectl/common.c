// SPDX-License-Identifier: MIT
/* What several sluicectl objects share: reading the maps back, JSON shapes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "sluicectl.h"

int ctl_read_state(const struct ctl *c, struct sl_maps *m, struct sl_state *st)
{
	int err = sl_maps_open(c->pin_root, m);

	if (err)
		return err;
	err = sl_state_read(m, st);
	if (err) {
		log_err("cannot read sl_services/sl_backends under %s: %s", c->pin_root,
			strerror(-err));
		sl_maps_close(m);
	}
	return err;
}

int ctl_check_service(const struct ctl *c, const struct sl_state *st, const char *name)
{
	if (!name || sl_state_find(st, name))
		return 0;
	log_err("no service named \"%s\" in %s/sl_services", name, c->pin_root);
	return -ENOENT;
}

void ctl_release_state(struct sl_maps *m, struct sl_state *st)
{
	sl_state_free(st);
	sl_maps_close(m);
}
