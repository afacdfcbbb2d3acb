// SPDX-License-Identifier: MIT
/*
 * Prometheus text exposition (format 0.0.4). Each family is one contiguous
 * block under its HELP and TYPE lines, so the services and backends are read
 * into a snapshot first and then walked once per family. Label sets are
 * escaped and formatted once per service and backend, then copied per series.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "lib/state.h"
#include "metrics.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct out {
	FILE *f;
	int err;
	size_t len;
	char buf[32768];
};

static void out_raw(struct out *o, const void *s, size_t n)
{
	if (!n || o->err)
		return;
	errno = 0;
	if (fwrite(s, 1, n, o->f) != n)
		o->err = errno ? -errno : -EIO;
}

static void out_flush(struct out *o)
{
	out_raw(o, o->buf, o->len);
	o->len = 0;
}

static void out_mem(struct out *o, const void *s, size_t n)
{
	if (n > sizeof(o->buf) - o->len) {
		out_flush(o);
		if (n > sizeof(o->buf)) {
			out_raw(o, s, n);
			return;
		}
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

static void out_u64(struct out *o, __u64 v)
{
	char tmp[24], *p = tmp + sizeof(tmp);

	do {
		*--p = '0' + v % 10;
		v /= 10;
	} while (v);
	out_mem(o, p, tmp + sizeof(tmp) - p);
}

/* Unix nanoseconds as seconds, digit for digit: a double would lose the nanoseconds. */
static void out_unix_ns(struct out *o, __u64 ns)
{
	unsigned int rest = ns % 1000000000;
	char frac[16];
	int n = 1;

	out_u64(o, ns / 1000000000);
	if (!rest)
		return;
	frac[0] = '.';
	for (unsigned int div = 100000000; rest; div /= 10) {
		frac[n++] = '0' + rest / div;
		rest %= div;
	}
	out_mem(o, frac, n);
}

/* The shortest of %.15g..%.17g that reads back as v. */
static void out_double(struct out *o, double v)
{
	char tmp[40];

	if (isnan(v)) {
		out_str(o, "NaN");
		return;
	}
	if (isinf(v)) {
		out_str(o, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	out_str(o, tmp);
}

/* HELP texts are constants without backslashes or newlines: they need no escaping. */
static void out_family(struct out *o, const char *name, const char *type, const char *help)
{
	out_str(o, "# HELP ");
	out_str(o, name);
	out_mem(o, " ", 1);
	out_str(o, help);
	out_str(o, "\n# TYPE ");
	out_str(o, name);
	out_mem(o, " ", 1);
	out_str(o, type);
	out_mem(o, "\n", 1);
}

/* One label set in labels.buf; len 0 marks a duplicate that is left out. */
struct span {
	size_t off;
	size_t len;
};

struct labels {
	char *buf;
	size_t len;
	size_t cap;
	struct span *svc; /* per service: service="..." */
	struct span *be;  /* per backend, in walk order: service="...",backend="..." */
};

/* "name{labels,reason="r"} " with the labels already escaped; reason may be NULL. */
static void out_series(struct out *o, const char *name, size_t name_len, const struct labels *l,
		       struct span sp, const char *reason)
{
	out_mem(o, name, name_len);
	out_mem(o, "{", 1);
	out_mem(o, l->buf + sp.off, sp.len);
	if (reason) {
		out_str(o, ",reason=\"");
		out_str(o, reason);
		out_mem(o, "\"", 1);
	}
	out_mem(o, "} ", 2);
}

static void out_gauge_u64(struct out *o, const char *name, const char *help, __u64 v)
{
	out_family(o, name, "gauge", help);
	out_str(o, name);
	out_mem(o, " ", 1);
	out_u64(o, v);
	out_mem(o, "\n", 1);
}

static void out_gauge_unix_ns(struct out *o, const char *name, const char *help, __u64 ns)
{
	out_family(o, name, "gauge", help);
	out_str(o, name);
	out_mem(o, " ", 1);
	out_unix_ns(o, ns);
	out_mem(o, "\n", 1);
}

static int labels_reserve(struct labels *l, size_t n)
{
	size_t cap = l->cap ? l->cap : 4096;
	char *p;

	if (l->len + n <= l->cap)
		return 0;
	while (cap < l->len + n)
		cap *= 2;
	p = realloc(l->buf, cap);
	if (!p)
		return -ENOMEM;
	l->buf = p;
	l->cap = cap;
	return 0;
}

static int labels_append(struct labels *l, const void *s, size_t n)
{
	int err = labels_reserve(l, n);

	if (err)
		return err;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return 0;
}

/* Length of the well-formed UTF-8 sequence at s (NUL-terminated), or 0. */
static size_t utf8_seq_len(const unsigned char *s)
{
	size_t len;
	__u32 cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * A label value as the text format wants it: backslash, double quote and
 * newline escaped. Prometheus rejects a scrape that is not UTF-8, so a byte
 * that does not start a well-formed sequence becomes U+FFFD.
 */
static int labels_escape(struct labels *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int err = 0;

	while (*p && !err) {
		size_t n = utf8_seq_len(p);

		if (!n) {
			err = labels_append(l, "\xef\xbf\xbd", 3);
			p++;
			continue;
		}
		if (*p == '\\')
			err = labels_append(l, "\\\\", 2);
		else if (*p == '"')
			err = labels_append(l, "\\\"", 2);
		else if (*p == '\n')
			err = labels_append(l, "\\n", 2);
		else
			err = labels_append(l, p, n);
		p += n;
	}
	return err;
}

static int same_endpoint(const struct metrics_backend *a, const struct metrics_backend *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

static int labels_add_backend(struct labels *l, struct span svc, const struct metrics_backend *b,
			      struct span *out)
{
	char ep[SL_ENDPOINT_STRLEN];
	size_t off = l->len;
	int err;

	sl_endpoint_format(&b->addr, b->family, b->port, ep, sizeof(ep));
	err = labels_reserve(l, svc.len);
	if (err)
		return err;
	memcpy(l->buf + l->len, l->buf + svc.off, svc.len);
	l->len += svc.len;
	err = labels_append(l, ",backend=\"", 10);
	if (!err)
		err = labels_append(l, ep, strlen(ep));
	if (!err)
		err = labels_append(l, "\"", 1);
	out->off = off;
	out->len = l->len - off;
	return err;
}

static int labels_build(struct labels *l, const struct metrics_snapshot *snap, size_t nbe)
{
	const char *prev = NULL;
	size_t k = 0;
	int err;

	l->svc = calloc(snap->count ? snap->count : 1, sizeof(*l->svc));
	l->be = calloc(nbe ? nbe : 1, sizeof(*l->be));
	if (!l->svc || !l->be)
		return -ENOMEM;
	for (size_t i = 0; i < snap->count; i++) {
		const struct metrics_service *s = &snap->services[i];
		const char *name = s->name ? s->name : "";
		struct span *sv = &l->svc[i];

		if (prev && !strcmp(prev, name)) {
			k += s->nbackends;
			continue;
		}
		prev = name;
		sv->off = l->len;
		err = labels_append(l, "service=\"", 9);
		if (!err)
			err = labels_escape(l, name);
		if (!err)
			err = labels_append(l, "\"", 1);
		if (err)
			return err;
		sv->len = l->len - sv->off;
		for (size_t j = 0; j < s->nbackends; j++, k++) {
			if (j && same_endpoint(&s->backends[j], &s->backends[j - 1]))
				continue;
			err = labels_add_backend(l, *sv, &s->backends[j], &l->be[k]);
			if (err)
				return err;
		}
	}
	return 0;
}

static void write_agent(struct out *o, const struct agent_status *st)
{
	const char *h = "sluice_reconcile_duration_seconds";

	out_gauge_unix_ns(o, "sluice_agent_start_time_seconds",
			  "When the agent started, in seconds since the Unix epoch.",
			  st->start_unix_ns);
	out_gauge_unix_ns(o, "sluice_registry_last_sync_timestamp_seconds",
			  "When the agent last programmed a registry document into the maps, in seconds since the Unix epoch (0: not yet).",
			  st->last_sync_unix_ns);
	out_gauge_unix_ns(o, "sluice_registry_last_error_timestamp_seconds",
			  "When the agent last rejected a registry document or failed to apply it, in seconds since the Unix epoch (0: never).",
			  st->last_error_unix_ns);
	out_family(o, "sluice_registry_errors_total", "counter",
		   "Registry documents the agent rejected or failed to apply.");
	out_str(o, "sluice_registry_errors_total ");
	out_u64(o, st->registry_errors_total);
	out_mem(o, "\n", 1);
	out_gauge_u64(o, "sluice_registry_degraded",
		      "1 when the last registry document was rejected and the previous one is still in force, else 0.",
		      st->degraded ? 1 : 0);
	out_gauge_u64(o, "sluice_registry_stale",
		      "1 while the registry source has lost its server (Redis) and the maps keep the last state applied, else 0.",
		      st->stale ? 1 : 0);
	out_gauge_unix_ns(o, "sluice_registry_stale_since_timestamp_seconds",
			  "Since when the registry source has been stale, in seconds since the Unix epoch (0: it is not).",
			  st->stale ? st->stale_since_unix_ns : 0);

	out_family(o, h, "histogram",
		   "Time the agent took to validate a registry document and program it into the maps.");
	for (int i = 0; i < RECONCILE_BUCKETS; i++) {
		/* The +Inf bucket is the count by definition; saying so keeps them equal. */
		int inf = isinf(reconcile_bucket_le[i]);

		out_str(o, h);
		out_str(o, "_bucket{le=\"");
		out_double(o, reconcile_bucket_le[i]);
		out_mem(o, "\"} ", 3);
		out_u64(o, inf ? st->reconcile_count : st->reconcile_buckets[i]);
		out_mem(o, "\n", 1);
	}
	if (!isinf(reconcile_bucket_le[RECONCILE_BUCKETS - 1])) {
		out_str(o, h);
		out_str(o, "_bucket{le=\"+Inf\"} ");
		out_u64(o, st->reconcile_count);
		out_mem(o, "\n", 1);
	}
	out_str(o, h);
	out_str(o, "_sum ");
	out_double(o, st->reconcile_seconds_sum);
	out_mem(o, "\n", 1);
	out_str(o, h);
	out_str(o, "_count ");
	out_u64(o, st->reconcile_count);
	out_mem(o, "\n", 1);
}

static void write_generation(struct out *o, const struct sl_generation *g)
{
	out_gauge_u64(o, "sluice_registry_generation",
		      "Generation of the configuration in the maps, bumped by every successful apply (agent or sluicectl).",
		      g->generation);
	out_gauge_unix_ns(o, "sluice_registry_applied_timestamp_seconds",
			  "When the configuration in the maps was applied, in seconds since the Unix epoch (0: never).",
			  g->applied_unix_ns);
}

struct svc_family {
	const char *name;
	const char *type;
	const char *help;
	__u64 (*value)(const struct metrics_service *s);
};

static __u64 svc_backends(const struct metrics_service *s)
{
	return s->backend_count;
}

static __u64 svc_unhealthy(const struct metrics_service *s)
{
	return s->unhealthy;
}

static __u64 svc_ejected(const struct metrics_service *s)
{
	return s->ejected;
}

static __u64 svc_selected(const struct metrics_service *s)
{
	return s->stats.selected;
}

static __u64 svc_panic(const struct metrics_service *s)
{
	return s->stats.panic_selected;
}

static __u64 svc_xdp_packets(const struct metrics_service *s)
{
	return s->xdp.packets;
}

static __u64 svc_xdp_bytes(const struct metrics_service *s)
{
	return s->xdp.bytes;
}

static __u64 svc_xdp_syns(const struct metrics_service *s)
{
	return s->xdp.syns;
}

static __u64 svc_xdp_forwarded(const struct metrics_service *s)
{
	return s->xdp.forwarded;
}

static __u64 svc_xdp_forwarded_bytes(const struct metrics_service *s)
{
	return s->xdp.forwarded_bytes;
}

static __u64 svc_xdp_new_flows(const struct metrics_service *s)
{
	return s->xdp.new_flows;
}

static __u64 svc_xdp_flow_hits(const struct metrics_service *s)
{
	return s->xdp.flow_hits;
}

static __u64 svc_xdp_flow_misses(const struct metrics_service *s)
{
	return s->xdp.flow_misses;
}

static const struct svc_family svc_families[] = {
	{ "sluice_service_backends", "gauge",
	  "Backends of the service in the maps.", svc_backends },
	{ "sluice_service_unhealthy_backends", "gauge",
	  "Backends of the service that the health checks hold down.", svc_unhealthy },
	{ "sluice_service_ejected_backends", "gauge",
	  "Backends of the service whose breaker is open or half-open (bounded by max_ejection_percent).",
	  svc_ejected },
	{ "sluice_service_connections_selected_total", "counter",
	  "Connections and datagrams sent to a backend of the service.", svc_selected },
	{ "sluice_service_panic_selections_total", "counter",
	  "Selections made in panic mode, with breakers and health ignored.", svc_panic },
	{ "sluice_xdp_packets_total", "counter",
	  "Packets to the service's VIP seen by sl_xdp on the interfaces it is attached to.",
	  svc_xdp_packets },
	{ "sluice_xdp_bytes_total", "counter",
	  "Bytes of frames to the service's VIP seen by sl_xdp.", svc_xdp_bytes },
	{ "sluice_xdp_syns_total", "counter",
	  "TCP SYNs to the service's VIP seen by sl_xdp.", svc_xdp_syns },
	{ "sluice_xdp_forwarded_total", "counter",
	  "Packets to the service's VIP that sl_xdp forwarded to a backend.", svc_xdp_forwarded },
	{ "sluice_xdp_forwarded_bytes_total", "counter",
	  "Bytes of frames to the service's VIP that sl_xdp forwarded.", svc_xdp_forwarded_bytes },
	{ "sluice_xdp_new_flows_total", "counter",
	  "Flows to the service's VIP that sl_xdp gave a backend (TCP SYNs and flow-table misses).",
	  svc_xdp_new_flows },
	{ "sluice_xdp_flow_hits_total", "counter",
	  "Packets to the service's VIP whose flow was in sl_xdp's flow table.", svc_xdp_flow_hits },
	{ "sluice_xdp_flow_misses_total", "counter",
	  "Non-SYN packets to the service's VIP whose flow was not in the flow table (evicted, or older than the table).",
	  svc_xdp_flow_misses },
};

/* Why connect() to a service can fail; unhealthy only ever skips a backend. */
static const unsigned int svc_refused_reasons[] = {
	SL_REASON_NO_BACKEND,	    SL_REASON_NONE_USABLE,  SL_REASON_BREAKER_OPEN,
	SL_REASON_MAX_CONNECTIONS, SL_REASON_RATE_SERVICE, SL_REASON_RATE_CLIENT,
};

static void write_services(struct out *o, const struct metrics_snapshot *snap,
			   const struct labels *l)
{
	const char *refused = "sluice_service_refused_total";
	const char *xdp_dropped = "sluice_xdp_dropped_total";
	const char *xdp_passed = "sluice_xdp_passed_total";
	size_t refused_len = strlen(refused);

	for (size_t f = 0; f < ARRAY_SIZE(svc_families); f++) {
		const struct svc_family *fam = &svc_families[f];
		size_t name_len = strlen(fam->name);

		out_family(o, fam->name, fam->type, fam->help);
		for (size_t i = 0; i < snap->count; i++) {
			if (!l->svc[i].len)
				continue;
			out_series(o, fam->name, name_len, l, l->svc[i], NULL);
			out_u64(o, fam->value(&snap->services[i]));
			out_mem(o, "\n", 1);
		}
	}

	out_family(o, xdp_dropped, "counter",
		   "Packets to the service's VIP that sl_xdp dropped, by reason.");
	for (size_t i = 0; i < snap->count; i++) {
		if (!l->svc[i].len)
			continue;
		for (unsigned int r = 0; r < SL_XDP_DROP_COUNT; r++) {
			const char *rname = sl_xdp_drop_name(r);

			if (!rname)
				continue;
			out_series(o, xdp_dropped, strlen(xdp_dropped), l, l->svc[i], rname);
			out_u64(o, snap->services[i].xdp.dropped[r]);
			out_mem(o, "\n", 1);
		}
	}

	out_family(o, xdp_passed, "counter",
		   "Packets to the service's VIP that sl_xdp handed to the kernel's stack instead of forwarding, by reason.");
	for (size_t i = 0; i < snap->count; i++) {
		if (!l->svc[i].len)
			continue;
		for (unsigned int r = 0; r < SL_XDP_PASS_COUNT; r++) {
			if (!sl_xdp_pass_name(r))
				continue;
			out_series(o, xdp_passed, strlen(xdp_passed), l, l->svc[i],
				   sl_xdp_pass_name(r));
			out_u64(o, snap->services[i].xdp.passed[r]);
			out_mem(o, "\n", 1);
		}
	}

	out_family(o, refused, "counter",
		   "Connections to the service refused at connect(), by reason.");
	for (size_t i = 0; i < snap->count; i++) {
		if (!l->svc[i].len)
			continue;
		for (size_t r = 0; r < ARRAY_SIZE(svc_refused_reasons); r++) {
			unsigned int reason = svc_refused_reasons[r];
			const char *rname = sl_reason_name(reason);

			if (!rname)
				continue;
			out_series(o, refused, refused_len, l, l->svc[i], rname);
			out_u64(o, snap->services[i].stats.refused[reason]);
			out_mem(o, "\n", 1);
		}
	}
}

struct be_family {
	const char *name;
	const char *type;
	const char *help;
	__u64 (*value)(const struct metrics_backend *b);
};

static __u64 be_selected(const struct metrics_backend *b)
{
	return b->stats.selected;
}

static __u64 be_established(const struct metrics_backend *b)
{
	return b->stats.established;
}

static __u64 be_connect_failed(const struct metrics_backend *b)
{
	return b->stats.connect_failed;
}

static __u64 be_closed(const struct metrics_backend *b)
{
	return b->stats.closed;
}

static __u64 be_panic(const struct metrics_backend *b)
{
	return b->stats.panic_selected;
}

static __u64 be_probes(const struct metrics_backend *b)
{
	return b->stats.probes;
}

static __u64 be_ejections(const struct metrics_backend *b)
{
	return b->stats.ejections;
}

static __u64 be_live(const struct metrics_backend *b)
{
	return b->live;
}

static __u64 be_breaker_state(const struct metrics_backend *b)
{
	return b->breaker_state;
}

static __u64 be_consecutive_failures(const struct metrics_backend *b)
{
	return b->consecutive_failures;
}

static __u64 be_health(const struct metrics_backend *b)
{
	return b->health;
}

static __u64 be_xdp_packets(const struct metrics_backend *b)
{
	return b->xdp.packets;
}

static __u64 be_xdp_bytes(const struct metrics_backend *b)
{
	return b->xdp.bytes;
}

static __u64 be_xdp_new_flows(const struct metrics_backend *b)
{
	return b->xdp.new_flows;
}

static const struct be_family be_families[] = {
	{ "sluice_backend_connections_selected_total", "counter",
	  "Connections and datagrams sent to the backend.", be_selected },
	{ "sluice_backend_connections_established_total", "counter",
	  "TCP handshakes with the backend that completed.", be_established },
	{ "sluice_backend_connect_failures_total", "counter",
	  "TCP connects to the backend that failed: refused, reset, timed out, unreachable or given up.",
	  be_connect_failed },
	{ "sluice_backend_connections_closed_total", "counter",
	  "Established TCP connections to the backend that ended.", be_closed },
	{ "sluice_backend_panic_selections_total", "counter",
	  "Times the backend was selected while its service was in panic mode.", be_panic },
	{ "sluice_backend_probes_total", "counter",
	  "Half-open probe connections the backend's breaker admitted.", be_probes },
	{ "sluice_backend_ejections_total", "counter",
	  "Times the backend's breaker opened (a failed probe reopens it).", be_ejections },
	{ "sluice_backend_live_connections", "gauge",
	  "Live TCP connections to the backend.", be_live },
	{ "sluice_backend_breaker_state", "gauge",
	  "Breaker state of the backend: 0 closed, 1 open, 2 half_open.", be_breaker_state },
	{ "sluice_backend_breaker_consecutive_failures", "gauge",
	  "Connect failures in a row the backend's breaker has counted.", be_consecutive_failures },
	{ "sluice_backend_health", "gauge",
	  "Health check state of the backend: 0 unknown (not checked), 1 up, 2 down.", be_health },
	{ "sluice_backend_xdp_packets_total", "counter",
	  "Packets sl_xdp forwarded to the backend.", be_xdp_packets },
	{ "sluice_backend_xdp_bytes_total", "counter",
	  "Bytes of frames sl_xdp forwarded to the backend.", be_xdp_bytes },
	{ "sluice_backend_xdp_new_flows_total", "counter",
	  "Flows sl_xdp gave to the backend.", be_xdp_new_flows },
};

/* Why selection passes a backend over (none_usable is only counted against stale ids). */
static const unsigned int be_skipped_reasons[] = {
	SL_REASON_BREAKER_OPEN,
	SL_REASON_MAX_CONNECTIONS,
	SL_REASON_UNHEALTHY,
};

static void write_backends(struct out *o, const struct metrics_snapshot *snap,
			   const struct labels *l)
{
	const char *skipped = "sluice_backend_skipped_total";
	size_t skipped_len = strlen(skipped);
	size_t k;

	for (size_t f = 0; f < ARRAY_SIZE(be_families); f++) {
		const struct be_family *fam = &be_families[f];
		size_t name_len = strlen(fam->name);

		out_family(o, fam->name, fam->type, fam->help);
		k = 0;
		for (size_t i = 0; i < snap->count; i++) {
			const struct metrics_service *s = &snap->services[i];

			for (size_t j = 0; j < s->nbackends; j++, k++) {
				if (!l->be[k].len)
					continue;
				out_series(o, fam->name, name_len, l, l->be[k], NULL);
				out_u64(o, fam->value(&s->backends[j]));
				out_mem(o, "\n", 1);
			}
		}
	}

	out_family(o, skipped, "counter",
		   "Times selection passed the backend over for a connection, by reason.");
	k = 0;
	for (size_t i = 0; i < snap->count; i++) {
		const struct metrics_service *s = &snap->services[i];

		for (size_t j = 0; j < s->nbackends; j++, k++) {
			if (!l->be[k].len)
				continue;
			for (size_t r = 0; r < ARRAY_SIZE(be_skipped_reasons); r++) {
				unsigned int reason = be_skipped_reasons[r];
				const char *rname = sl_reason_name(reason);

				if (!rname)
					continue;
				out_series(o, skipped, skipped_len, l, l->be[k], rname);
				out_u64(o, s->backends[j].stats.skipped[reason]);
				out_mem(o, "\n", 1);
			}
		}
	}
}

int metrics_format(FILE *out, const struct metrics_snapshot *snap, const struct agent_status *st)
{
	struct labels l = { 0 };
	struct out o = { .f = out };
	size_t nbe = 0;
	int err;

	for (size_t i = 0; i < snap->count; i++)
		nbe += snap->services[i].nbackends;
	err = labels_build(&l, snap, nbe);
	if (err)
		goto out;

	if (st)
		write_agent(&o, st);
	if (snap->generation)
		write_generation(&o, snap->generation);
	write_services(&o, snap, &l);
	write_backends(&o, snap, &l);

	out_flush(&o);
	err = o.err;
	if (!err && fflush(out))
		err = -errno;
out:
	free(l.buf);
	free(l.svc);
	free(l.be);
	return err;
}

/*
 * The map-reading layer: one sl_state_read, then the per-id arrays read in
 * batches of consecutive ids, since one syscall per id and map is most of
 * the cost of a scrape with 100k backends.
 */

struct id_pos {
	__u32 id;
	__u32 pos; /* index in the snapshot's services or backends */
};

struct reader {
	struct metrics_service *svcs;
	struct metrics_backend *bes;
	int ncpus;
	__u32 *keys;
	void *values;
	size_t chunk; /* ids per batch */
};

/* Takes one map value (all CPUs' copies for a per-CPU map) for snapshot entry pos. */
typedef void (*take_fn)(struct reader *r, __u32 pos, const void *value);

static int cmp_id_pos(const void *a, const void *b)
{
	const struct id_pos *x = a, *y = b;

	return x->id == y->id ? 0 : (x->id < y->id ? -1 : 1);
}

/*
 * Reads keys base + ids[0..n) (ids ascending) from an array map, at most
 * r->chunk consecutive ids per BPF_MAP_LOOKUP_BATCH. An array's batch starts
 * after the key passed in, so the first key of a run goes in as key - 1.
 */
static int read_array_at(struct reader *r, int fd, const char *map, size_t value_size,
			 __u64 elem_flags, __u32 base, const struct id_pos *ids, size_t n,
			 take_fn take)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
	size_t i = 0, j;
	int err;

	while (i < n) {
		__u32 first = base + ids[i].id, prev = first - 1, next, count;

		for (j = i; j < n && base + ids[j].id - first < r->chunk; j++)
			;
		count = base + ids[j - 1].id - first + 1;
		err = bpf_map_lookup_batch(fd, first ? &prev : NULL, &next, r->keys, r->values,
					   &count, &opts);
		if (err && err != -ENOENT) {
			log_warn("cannot read %s for metrics: %s", map, strerror(-err));
			return err;
		}
		for (; i < j; i++) {
			__u32 off = base + ids[i].id - first;

			if (off >= count || r->keys[off] != base + ids[i].id) {
				log_warn("cannot read %s for metrics: id %u missing", map,
					 ids[i].id);
				return -ENOENT;
			}
			take(r, ids[i].pos, (const char *)r->values + off * value_size);
		}
	}
	return 0;
}

static int read_array(struct reader *r, int fd, const char *map, size_t value_size,
		      __u64 elem_flags, const struct id_pos *ids, size_t n, take_fn take)
{
	return read_array_at(r, fd, map, value_size, elem_flags, 0, ids, n, take);
}

/* Reads ids from each CPU's block of one of sl_xdp's per-CPU maps (sluice/xdp.h). */
static int read_cpu_blocks(struct reader *r, int fd, const char *map, size_t value_size,
			   __u32 stride, const struct id_pos *ids, size_t n, take_fn take)
{
	int err = 0;

	for (int cpu = 0; cpu < r->ncpus && !err; cpu++)
		err = read_array_at(r, fd, map, value_size, 0, sl_xdp_cpu_key(cpu, 0, stride), ids,
				    n, take);
	return err;
}

/* Adds one CPU's counters to out. */
static void add_counters(__u64 *out, const void *value, size_t counters)
{
	const __u64 *v = value;

	for (size_t c = 0; c < counters; c++)
		out[c] += v[c];
}

static void sum_percpu(__u64 *out, const void *value, size_t counters, int ncpus)
{
	const __u64 *v = value;

	memset(out, 0, counters * sizeof(*out));
	for (int cpu = 0; cpu < ncpus; cpu++)
		add_counters(out, v + (size_t)cpu * counters, counters);
}

static void take_svc_stats(struct reader *r, __u32 pos, const void *value)
{
	struct sl_svc_stats *s = &r->svcs[pos].stats;

	sum_percpu((__u64 *)s, value, sizeof(*s) / sizeof(__u64), r->ncpus);
}

static void take_xdp_stats(struct reader *r, __u32 pos, const void *value)
{
	struct sl_xdp_stats *s = &r->svcs[pos].xdp;

	add_counters((__u64 *)s, value, sizeof(*s) / sizeof(__u64));
}

static void take_svc_state(struct reader *r, __u32 pos, const void *value)
{
	r->svcs[pos].ejected = ((const struct sl_svc_state *)value)->ejected;
}

static void take_be_stats(struct reader *r, __u32 pos, const void *value)
{
	struct sl_be_stats *s = &r->bes[pos].stats;

	sum_percpu((__u64 *)s, value, sizeof(*s) / sizeof(__u64), r->ncpus);
}

static void take_xdp_be_stats(struct reader *r, __u32 pos, const void *value)
{
	const struct sl_xdp_backend *b = value;
	struct sl_xdp_be_stats *s = &r->bes[pos].xdp;

	add_counters((__u64 *)s, &b->stats, sizeof(*s) / sizeof(__u64));
}

static void take_breaker(struct reader *r, __u32 pos, const void *value)
{
	const struct sl_breaker *b = value;

	r->bes[pos].breaker_state = b->state;
	r->bes[pos].consecutive_failures = b->consecutive_failures;
}

static void take_live(struct reader *r, __u32 pos, const void *value)
{
	__s32 live = *(const __s32 *)value;

	/* Transiently negative while a close races the connect that counted it. */
	r->bes[pos].live = live > 0 ? live : 0;
}

#define BATCH_BYTES (4U << 20)
#define BATCH_IDS 4096

static int read_arrays(const struct sl_maps *m, struct reader *r, struct id_pos *svc_ids,
		       size_t nsvc, struct id_pos *be_ids, size_t nbe)
{
	size_t svc_stats = (size_t)r->ncpus * sizeof(struct sl_svc_stats);
	size_t xdp_stats = sizeof(struct sl_xdp_stats);
	size_t be_stats = (size_t)r->ncpus * sizeof(struct sl_be_stats);
	size_t xdp_backend = sizeof(struct sl_xdp_backend);
	size_t sizes[] = { svc_stats, xdp_stats, be_stats, xdp_backend, sizeof(struct sl_breaker) };
	size_t widest = 0;
	int err;

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
		if (sizes[i] > widest)
			widest = sizes[i];
	r->chunk = BATCH_BYTES / widest;
	if (r->chunk > BATCH_IDS)
		r->chunk = BATCH_IDS;
	if (!r->chunk)
		r->chunk = 1;
	r->keys = calloc(r->chunk, sizeof(*r->keys));
	r->values = malloc(r->chunk * widest);
	if (!r->keys || !r->values)
		return -ENOMEM;

	qsort(svc_ids, nsvc, sizeof(*svc_ids), cmp_id_pos);
	qsort(be_ids, nbe, sizeof(*be_ids), cmp_id_pos);
	err = read_array(r, m->svc_stats, "sl_svc_stats", svc_stats, 0, svc_ids, nsvc,
			 take_svc_stats);
	if (!err)
		err = read_array(r, m->svc_state, "sl_svc_state", sizeof(struct sl_svc_state), 0,
				 svc_ids, nsvc, take_svc_state);
	if (!err)
		err = read_cpu_blocks(r, m->xdp_stats, "sl_xdp_stats", xdp_stats,
				      SL_XDP_STATS_STRIDE, svc_ids, nsvc, take_xdp_stats);
	if (!err)
		err = read_array(r, m->be_stats, "sl_be_stats", be_stats, 0, be_ids, nbe,
				 take_be_stats);
	if (!err)
		err = read_array(r, m->breakers, "sl_breakers", sizeof(struct sl_breaker),
				 BPF_F_LOCK, be_ids, nbe, take_breaker);
	if (!err)
		err = read_array(r, m->live, "sl_live", sizeof(__s32), 0, be_ids, nbe, take_live);
	if (!err)
		err = read_cpu_blocks(r, m->xdp_backend, "sl_xdp_backend", xdp_backend,
				      SL_XDP_BE_STRIDE, be_ids, nbe, take_xdp_be_stats);
	return err;
}

int metrics_write(FILE *out, const struct sl_maps *maps, const struct agent_status *st)
{
	struct metrics_snapshot snap = { 0 };
	struct id_pos *svc_ids = NULL, *be_ids = NULL;
	struct reader r = { 0 };
	struct sl_state state = { 0 };
	struct sl_generation gen;
	size_t nbe = 0, k = 0;
	int err = 0;

	if (!maps)
		goto format;
	err = sl_state_read(maps, &state);
	if (err) {
		log_warn("cannot read services and backends for metrics: %s", strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < state.count; i++)
		nbe += state.services[i].backend_count;
	r.ncpus = libbpf_num_possible_cpus();
	if (r.ncpus < 0) {
		err = r.ncpus;
		goto out;
	}
	r.svcs = calloc(state.count ? state.count : 1, sizeof(*r.svcs));
	r.bes = calloc(nbe ? nbe : 1, sizeof(*r.bes));
	svc_ids = calloc(state.count ? state.count : 1, sizeof(*svc_ids));
	be_ids = calloc(nbe ? nbe : 1, sizeof(*be_ids));
	if (!r.svcs || !r.bes || !svc_ids || !be_ids) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < state.count; i++) {
		const struct sl_state_service *ss = &state.services[i];
		struct metrics_service *s = &r.svcs[i];

		s->name = ss->v.name;
		s->backend_count = ss->backend_count;
		s->unhealthy = ss->v.unhealthy_count;
		s->backends = &r.bes[k];
		s->nbackends = ss->backend_count;
		svc_ids[i] = (struct id_pos){ ss->v.id, i };
		for (size_t j = 0; j < ss->backend_count; j++, k++) {
			const struct sl_state_backend *sb = &ss->backends[j];
			struct metrics_backend *b = &r.bes[k];

			b->addr = sb->v.addr;
			b->port = ntohs(sb->v.port);
			b->family = sb->v.family;
			b->health = sb->v.health;
			be_ids[k] = (struct id_pos){ sb->id, k };
		}
	}
	err = read_arrays(maps, &r, svc_ids, state.count, be_ids, nbe);
	if (err)
		goto out;
	snap.services = r.svcs;
	snap.count = state.count;
	if (!sl_generation_read(maps, &gen))
		snap.generation = &gen;
format:
	err = metrics_format(out, &snap, st);
out:
	free(r.values);
	free(r.keys);
	free(be_ids);
	free(svc_ids);
	free(r.bes);
	free(r.svcs);
	sl_state_free(&state);
	return err;
}
