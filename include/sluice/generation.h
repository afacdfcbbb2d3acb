/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Which registry document is live: one entry, written after every successful apply. */
#ifndef SLUICE_GENERATION_H
#define SLUICE_GENERATION_H

#include "types.h"

struct sl_generation {
	__u64 generation;     /* bumped by every apply that succeeded */
	__u64 applied_unix_ns; /* wall-clock time of that apply */
	__u32 service_count;
	__u32 backend_count;
	__u8 sha256[32]; /* of the applied document's bytes, as sha256sum prints it */
	/*
	 * Where the reconciler hands out the next ids. Kept across applies so a
	 * removed backend's id is reused only after every other id: sockets
	 * still open to it give their live count back against that id.
	 */
	__u32 next_service_id;
	__u32 next_backend_id;
};
_Static_assert(sizeof(struct sl_generation) == 64, "ABI: sl_generation");

#endif
