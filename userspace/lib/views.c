// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <time.h>

#include "addr.h"
#include "registry.h"
#include "views.h"

json_t *sl_json_reason_counts(const __u64 *counts)
{
	json_t *o = json_object();

	for (unsigned int r = 0; r < SL_REASON_COUNT; r++)
		if (sl_reason_name(r))
			json_object_set_new(o, sl_reason_name(r), json_integer(counts[r]));
	return o;
}

json_t *sl_json_service(const struct sl_maps *m, const struct sl_state_service *s)
{
	struct sl_svc_stats st = { 0 };
	char vip[SL_ADDR_STRLEN];

	sl_stats_read_service(m, s->v.id, &st);
	return json_pack("{s:s,s:I,s:s,s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:I,s:i}", "name",
			 s->v.name, "id", (json_int_t)s->v.id, "vip",
			 sl_addr_format(&s->key.vip, s->key.family, vip, sizeof(vip)), "port",
			 ntohs(s->key.port), "protocol", sl_proto_name(s->key.proto), "family",
			 s->key.family == SL_FAMILY_IPV6 ? "ipv6" : "ipv4", "algorithm",
			 sl_algorithm_name(s->v.algorithm), "backend_count",
			 (json_int_t)s->backend_count, "selected", (json_int_t)st.selected,
			 "panic_selected", (json_int_t)st.panic_selected, "refused",
			 sl_json_reason_counts(st.refused), "affinity_timeout_s",
			 (json_int_t)s->v.affinity_timeout_s, "panic_threshold_percent",
			 s->v.panic_threshold_pct);
}

json_t *sl_json_backend(const struct sl_maps *m, const struct sl_state_service *s,
			const struct sl_state_backend *b)
{
	struct sl_xdp_be_stats xs = { 0 };
	struct sl_be_stats st = { 0 };
	char addr[SL_ADDR_STRLEN];

	sl_stats_read_backend(m, b->id, &st);
	sl_xdp_be_stats_read(m, b->id, &xs);
	return json_pack("{s:s,s:I,s:s,s:i,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:{s:I,s:I,s:I}}",
			 "service",
			 s->v.name, "id", (json_int_t)b->id, "address",
			 sl_addr_format(&b->v.addr, b->v.family, addr, sizeof(addr)), "port",
			 ntohs(b->v.port), "weight", (json_int_t)b->v.weight, "health",
			 sl_health_name(b->v.health), "selected", (json_int_t)st.selected,
			 "established", (json_int_t)st.established, "connect_failed",
			 (json_int_t)st.connect_failed, "closed", (json_int_t)st.closed,
			 "panic_selected", (json_int_t)st.panic_selected, "probes",
			 (json_int_t)st.probes, "ejections", (json_int_t)st.ejections, "skipped",
			 sl_json_reason_counts(st.skipped), "xdp", "packets", (json_int_t)xs.packets,
			 "bytes", (json_int_t)xs.bytes, "new_flows", (json_int_t)xs.new_flows);
}

__u64 sl_breaker_open_remaining_ms(const struct sl_breaker *b)
{
	struct timespec now;
	__u64 now_ns;

	if (b->state != SL_BREAKER_OPEN)
		return 0;
	/* The kernel stamps open_until_ns with bpf_ktime_get_ns(): CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ns = (__u64)now.tv_sec * 1000000000ULL + now.tv_nsec;
	return b->open_until_ns > now_ns ? (b->open_until_ns - now_ns + 999999) / 1000000 : 0;
}

json_t *sl_json_breaker(const struct sl_maps *m, const struct sl_state_service *s,
			const struct sl_state_backend *b)
{
	char ep[SL_ENDPOINT_STRLEN];
	struct sl_breaker br = { 0 };

	sl_breaker_read(m, b->id, &br);
	sl_endpoint_format(&b->v.addr, b->v.family, ntohs(b->v.port), ep, sizeof(ep));
	return json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "service", s->v.name, "backend",
			 ep, "id", (json_int_t)b->id, "state", sl_breaker_state_name(br.state),
			 "consecutive_failures", (json_int_t)br.consecutive_failures,
			 "times_ejected", (json_int_t)br.times_ejected, "open_remaining_ms",
			 (json_int_t)sl_breaker_open_remaining_ms(&br), "half_open_inflight",
			 (json_int_t)br.half_open_inflight, "live_connections",
			 (json_int_t)sl_live_read(m, b->id));
}

/* What XDP saw and did for one VIP. */
static json_t *xdp_stats_json(const struct sl_xdp_stats *xs)
{
	json_t *drops = json_object(), *passed = json_object();

	for (unsigned int r = 0; r < SL_XDP_DROP_COUNT; r++)
		if (sl_xdp_drop_name(r))
			json_object_set_new(drops, sl_xdp_drop_name(r), json_integer(xs->dropped[r]));
	for (unsigned int r = 0; r < SL_XDP_PASS_COUNT; r++)
		if (sl_xdp_pass_name(r))
			json_object_set_new(passed, sl_xdp_pass_name(r), json_integer(xs->passed[r]));
	return json_pack("{s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:o}", "packets",
			 (json_int_t)xs->packets, "bytes", (json_int_t)xs->bytes, "syns",
			 (json_int_t)xs->syns, "dropped", drops, "forwarded",
			 (json_int_t)xs->forwarded, "forwarded_bytes", (json_int_t)xs->forwarded_bytes,
			 "new_flows", (json_int_t)xs->new_flows, "flow_hits", (json_int_t)xs->flow_hits,
			 "flow_misses", (json_int_t)xs->flow_misses, "passed", passed);
}

json_t *sl_json_stats(const struct sl_maps *m, const struct sl_state_service *s)
{
	struct sl_xdp_stats xs = { 0 };
	struct sl_svc_stats st = { 0 };
	__u64 refused = 0;
	__u32 tokens = 0;
	int limited = !sl_rl_tokens(m, &s->v, &tokens);

	sl_stats_read_service(m, s->v.id, &st);
	sl_xdp_stats_read(m, s->v.id, &xs);
	for (unsigned int r = 0; r < SL_REASON_COUNT; r++)
		refused += st.refused[r];
	return json_pack("{s:s,s:I,s:I,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:o,s:o}",
			 "service", s->v.name,
			 "accepted", (json_int_t)st.selected, "refused_total", (json_int_t)refused,
			 "refused", sl_json_reason_counts(st.refused), "rate_limit",
			 "connections_per_second", (json_int_t)s->v.connections_per_second,
			 "burst", (json_int_t)s->v.burst, "per_client_connections_per_second",
			 (json_int_t)s->v.per_client_connections_per_second, "per_client_burst",
			 (json_int_t)s->v.per_client_burst, "syn_per_second",
			 (json_int_t)s->v.syn_per_second, "syn_burst", (json_int_t)s->v.syn_burst,
			 "tokens", limited ? json_integer(tokens) : json_null(), "xdp",
			 xdp_stats_json(&xs));
}
