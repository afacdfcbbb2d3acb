// SPDX-License-Identifier: MIT
/*
 * sluicectl flow CLIENT:PORT VIP:PORT [tcp|udp]: the backend the XDP flow
 * table holds for one flow. Ways hold fingerprints, not 5-tuples
 * (sluice/flow.h), so a flow is found from its 5-tuple, never listed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <bpf/bpf.h>

#include "sluice/flow.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "lib/state.h"
#include "sluicectl.h"

/* Where key's flow lives, and its way (*way -1: the table does not hold it). */
static int find_flow(const struct sl_maps *m, const struct sl_flow_key *key, __u32 *bucket,
		     int *way, struct sl_flow *out)
{
	struct bpf_map_info info;
	struct sl_flow_bucket b;
	__u32 len = sizeof(info), zero = 0;
	__u64 seed, fp;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(m->xdp_flows, &info, &len) ||
	    bpf_map_lookup_elem(m->xdp_fp_seed, &zero, &seed))
		return -errno;
	*bucket = sl_flow_bucket_of(sl_flow_hash(key), info.max_entries);
	if (bpf_map_lookup_elem(m->xdp_flows, bucket, &b))
		return -errno;
	fp = sl_flow_fp(key, seed);
	*way = -1;
	for (int w = 0; w < SL_FLOW_WAYS; w++) {
		if (sl_flow_holds(b.way[w].fp, b.way[w].backend_id, b.way[w].svc_id, fp)) {
			*way = w;
			*out = b.way[w];
			break;
		}
	}
	return 0;
}

/* The service and backend of backend id in the state, or NULLs. */
static void find_backend(const struct sl_state *st, __u32 id, const struct sl_state_service **svc,
			 const struct sl_state_backend **be)
{
	*svc = NULL;
	*be = NULL;
	for (size_t i = 0; i < st->count; i++)
		for (size_t k = 0; k < st->services[i].backend_count; k++)
			if (st->services[i].backends[k].id == id) {
				*svc = &st->services[i];
				*be = &st->services[i].backends[k];
				return;
			}
}

static int parse_flow(const struct ctl *c, struct sl_flow_key *key)
{
	__u8 sfam, dfam;
	__u16 sport, dport;
	const char *proto = c->argc == 3 ? c->argv[2] : "tcp";

	memset(key, 0, sizeof(*key));
	if (sl_endpoint_parse(c->argv[0], &key->src, &sfam, &sport) ||
	    sl_endpoint_parse(c->argv[1], &key->dst, &dfam, &dport)) {
		log_err("flow: expected CLIENT:PORT VIP:PORT, got \"%s\" \"%s\"", c->argv[0],
			c->argv[1]);
		return -EINVAL;
	}
	if (sfam != dfam) {
		log_err("flow: %s and %s are of different address families", c->argv[0], c->argv[1]);
		return -EINVAL;
	}
	if (strcmp(proto, "tcp") && strcmp(proto, "udp")) {
		log_err("flow: protocol \"%s\": expected tcp or udp", proto);
		return -EINVAL;
	}
	key->sport = htons(sport);
	key->dport = htons(dport);
	key->proto = strcmp(proto, "tcp") ? IPPROTO_UDP : IPPROTO_TCP;
	key->family = sfam;
	return 0;
}

int do_flow(struct ctl *c)
{
	const struct sl_state_service *svc = NULL;
	const struct sl_state_backend *be = NULL;
	char ep[SL_ENDPOINT_STRLEN] = "";
	struct sl_flow_key key;
	struct sl_flow f;
	struct sl_state st;
	struct sl_maps m;
	__u32 bucket;
	int err, way;

	if (c->argc < 2 || c->argc > 3) {
		usage();
		return CTL_EUSAGE;
	}
	err = parse_flow(c, &key);
	if (err)
		return err;
	err = ctl_read_state(c, &m, &st);
	if (err)
		return err;
	err = find_flow(&m, &key, &bucket, &way, &f);
	if (err) {
		log_err("flow: cannot read sl_xdp_flows under %s: %s", c->pin_root, strerror(-err));
		goto out;
	}
	if (way >= 0)
		find_backend(&st, f.backend_id, &svc, &be);
	if (be)
		sl_endpoint_format(&be->v.addr, be->v.family, ntohs(be->v.port), ep, sizeof(ep));
	if (c->json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "client", c->argv[0], "vip", c->argv[1],
				      "protocol", key.proto == IPPROTO_TCP ? "tcp" : "udp", "bucket",
				      (json_int_t)bucket);

		json_object_set_new(o, "way", way >= 0 ? json_integer(way) : json_null());
		json_object_set_new(o, "backend_id", way >= 0 ? json_integer(f.backend_id) : json_null());
		json_object_set_new(o, "svc_id", way >= 0 ? json_integer(f.svc_id) : json_null());
		json_object_set_new(o, "backend", be ? json_string(ep) : json_null());
		json_object_set_new(o, "service", svc ? json_string(svc->v.name) : json_null());
		ctl_print_json(c, o);
	} else if (way < 0) {
		printf("%s -> %s %s: not in the flow table (bucket %u): its next packet gets a new choice\n",
		       c->argv[0], c->argv[1], key.proto == IPPROTO_TCP ? "tcp" : "udp", bucket);
	} else if (!be || svc->v.id != f.svc_id) {
		printf("%s -> %s %s: bucket %u, way %d: backend id %u, no longer of service id %u: "
		       "its next packet gets a new choice\n", c->argv[0], c->argv[1],
		       key.proto == IPPROTO_TCP ? "tcp" : "udp", bucket, way, f.backend_id, f.svc_id);
	} else {
		printf("%s -> %s %s: bucket %u, way %d: backend %s (id %u) of %s (service id %u)\n",
		       c->argv[0], c->argv[1], key.proto == IPPROTO_TCP ? "tcp" : "udp", bucket, way,
		       ep, f.backend_id, svc->v.name, f.svc_id);
	}
out:
	ctl_release_state(&m, &st);
	return err;
}
