/* SPDX-License-Identifier: MIT */
/*
 * The reconciler: makes the pinned maps hold a registry document, by
 * difference, atomically per service. Both sluicectl apply and the agent use it.
 */
#ifndef SL_RECONCILE_H
#define SL_RECONCILE_H

#include <stddef.h>
#include "addr.h"
#include "maps.h"
#include "registry.h"

enum sl_change_op { SL_CHANGE_ADD, SL_CHANGE_REMOVE, SL_CHANGE_UPDATE };
enum sl_change_object { SL_OBJ_SERVICE, SL_OBJ_BACKEND, SL_OBJ_GLOBAL };

struct sl_change {
	__u8 op;     /* enum sl_change_op */
	__u8 object; /* enum sl_change_object */
	char service[SL_NAME_MAX];
	char backend[SL_ENDPOINT_STRLEN]; /* backend changes only */
	char detail[192];
};

struct sl_apply_result {
	struct sl_change *changes;
	size_t change_count;
	size_t change_cap;
	__u64 generation; /* after the apply; unchanged on a dry run */
};

/*
 * Brings the maps to `want`. With dry_run, only computes the changes. On
 * error returns -errno with a message in err; a document that validated is
 * refused only for a kernel-side failure (a full map, a missing pin).
 */
int sl_reconcile(const struct sl_maps *m, const struct sl_registry *want, int dry_run,
		 struct sl_apply_result *res, char *err, size_t errlen);
void sl_apply_result_free(struct sl_apply_result *res);

const char *sl_change_op_name(__u8 op);
const char *sl_change_object_name(__u8 object);

#endif
