/* SPDX-License-Identifier: MIT */
/*
 * The registry document (shared/DESIGN.md, "Registry"): parsed and validated
 * whole, so that an invalid document changes nothing.
 */
#ifndef SL_REGISTRY_H
#define SL_REGISTRY_H

#include <stddef.h>
#include <sluice/service.h>
#include <sluice/backend.h>
#include <sluice/xdp.h>

#define SL_ERR_MAX 512
#define SL_WEIGHT_MAX 65535

struct sl_reg_backend {
	struct sl_addr addr;
	__u16 port; /* host order */
	__u8 family;
	__u32 weight;
};

enum sl_hc_type { SL_HC_NONE = 0, SL_HC_TCP, SL_HC_HTTP };

struct sl_health_check {
	__u8 type; /* enum sl_hc_type */
	char path[256];
	__u32 interval_ms;
	__u32 timeout_ms;
	__u32 healthy_threshold;
	__u32 unhealthy_threshold;
};

struct sl_reg_service {
	/* key.port is network order, as in the map. */
	struct sl_svc_key key;
	/* Every setting of the document; id and backend_count are filled by the reconciler. */
	struct sl_service settings;
	struct sl_health_check health_check;
	struct sl_reg_backend *backends;
	size_t backend_count;
};

struct sl_registry {
	struct sl_reg_service *services;
	size_t count;
	struct sl_xdp_cfg xdp; /* "global": {"xdp": ...}; zero = no limit */
	__u8 sha256[32]; /* of the document's bytes */
};

/*
 * Parses and validates a whole document. On error returns -EINVAL and writes
 * a message naming the service and the field to err; out is left empty.
 */
int sl_registry_parse(const char *text, size_t len, struct sl_registry *out, char *err,
		      size_t errlen);
/* Reads path and parses it; errors name the file as well. */
int sl_registry_load_file(const char *path, struct sl_registry *out, char *err, size_t errlen);
void sl_registry_free(struct sl_registry *reg);

const char *sl_algorithm_name(__u8 alg);
/* Returns the enum value, or -1 for an unknown name. */
int sl_algorithm_parse(const char *name);
const char *sl_proto_name(__u8 proto);

#endif
