// SPDX-License-Identifier: MIT
/* What several sluicectl objects share: reading the maps back, JSON shapes. */
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

void ctl_release_state(struct sl_maps *m, struct sl_state *st)
{
	sl_state_free(st);
	sl_maps_close(m);
}
