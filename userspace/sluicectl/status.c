// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>

#include "lib/loader.h"
#include "lib/log.h"
#include "lib/maps.h"
#include "sluicectl.h"

static void format_time(__u64 unix_ns, char *buf, size_t size)
{
	time_t secs = unix_ns / 1000000000ULL;
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void format_sha(const __u8 *sha, char *buf)
{
	for (int i = 0; i < 32; i++)
		sprintf(buf + 2 * i, "%02x", sha[i]);
}

static const char *attach_name(const struct sl_prog_status *p)
{
	const char *s = p->link_id ? libbpf_bpf_attach_type_str(p->attach_type) : NULL;

	return s ? s : "";
}

static json_t *status_json(const char *pin_root, const struct sl_status *st,
			   const struct sl_generation *g)
{
	json_t *progs = json_array(), *maps = json_array(), *gen = json_null();
	char when[32], sha[65];

	for (size_t i = 0; i < st->prog_count; i++) {
		const struct sl_prog_status *p = &st->progs[i];

		json_array_append_new(progs, json_pack("{s:s,s:I,s:s,s:s,s:I,s:I,s:I}", "name",
						       p->name, "id", (json_int_t)p->prog_id,
						       "attach_type", attach_name(p), "cgroup",
						       p->cgroup, "link_id", (json_int_t)p->link_id,
						       "run_cnt", (json_int_t)p->run_cnt, "run_time_ns",
						       (json_int_t)p->run_time_ns));
	}
	for (size_t i = 0; i < st->map_count; i++) {
		const struct sl_map_status *m = &st->maps[i];
		const char *type = m->map_id ? libbpf_bpf_map_type_str(m->type) : NULL;

		json_array_append_new(maps, json_pack("{s:s,s:I,s:s,s:I}", "name", m->name, "id",
						      (json_int_t)m->map_id, "type", type ? type : "",
						      "max_entries", (json_int_t)m->max_entries));
	}
	if (g) {
		format_time(g->applied_unix_ns, when, sizeof(when));
		format_sha(g->sha256, sha);
		json_decref(gen);
		gen = json_pack("{s:I,s:s,s:I,s:s,s:I,s:I}", "generation",
				(json_int_t)g->generation, "applied_at", when, "applied_unix_ns",
				(json_int_t)g->applied_unix_ns, "sha256", sha, "service_count",
				(json_int_t)g->service_count, "backend_count",
				(json_int_t)g->backend_count);
	}
	json_t *xdp = json_array();

	for (size_t i = 0; i < st->xdp_count; i++)
		json_array_append_new(xdp, json_pack("{s:s,s:I,s:I,s:I,s:I,s:s,s:b}", "interface",
						     st->xdp[i].ifname, "netns",
						     (json_int_t)st->xdp[i].netns, "ifindex",
						     (json_int_t)st->xdp[i].ifindex, "link_id",
						     (json_int_t)st->xdp[i].link_id, "prog_id",
						     (json_int_t)st->xdp[i].prog_id, "program",
						     st->xdp[i].prog_name, "forward",
						     !strcmp(st->xdp[i].prog_name, "sl_xdp")));
	return json_pack("{s:s,s:b,s:b,s:o,s:o,s:o,s:o}", "pin_root", pin_root, "loaded",
			 st->loaded, "conn_tracking", st->conn_tracking, "programs", progs,
			 "maps", maps, "xdp", xdp, "generation", gen);
}

static void status_print(const char *pin_root, const struct sl_status *st,
			 const struct sl_generation *g)
{
	char when[32], sha[65];

	printf("pin root   %s (%s%s)\n", pin_root, st->loaded ? "loaded" : "not loaded",
	       st->loaded && !st->conn_tracking ? ", connection tracking off" : "");
	printf("%-16s %-8s %-8s %-26s %s\n", "PROGRAM", "PROG_ID", "LINK_ID", "ATTACH_TYPE",
	       "CGROUP");
	for (size_t i = 0; i < st->prog_count; i++) {
		const struct sl_prog_status *p = &st->progs[i];

		printf("%-16s %-8u %-8u %-26s %s\n", p->name, p->prog_id, p->link_id,
		       p->link_id ? attach_name(p) : "-", p->link_id ? p->cgroup : "(not attached)");
	}
	printf("%-16s %-8s %-22s %s\n", "MAP", "MAP_ID", "TYPE", "MAX_ENTRIES");
	for (size_t i = 0; i < st->map_count; i++) {
		const struct sl_map_status *m = &st->maps[i];
		const char *type = m->map_id ? libbpf_bpf_map_type_str(m->type) : NULL;

		printf("%-16s %-8u %-22s %u\n", m->name, m->map_id, type ? type : "(not pinned)",
		       m->max_entries);
	}
	for (size_t i = 0; i < st->xdp_count; i++)
		printf("xdp        %s on %s (netns %llu, ifindex %u, link %u, prog %u)\n",
		       st->xdp[i].prog_name[0] ? st->xdp[i].prog_name : "(unknown program)",
		       st->xdp[i].ifname, (unsigned long long)st->xdp[i].netns, st->xdp[i].ifindex,
		       st->xdp[i].link_id, st->xdp[i].prog_id);
	if (!g) {
		printf("config     none applied\n");
		return;
	}
	format_time(g->applied_unix_ns, when, sizeof(when));
	format_sha(g->sha256, sha);
	printf("config     generation %llu applied %s, %u services, %u backends\n",
	       (unsigned long long)g->generation, when, g->service_count, g->backend_count);
	printf("           sha256 %s\n", sha);
}

int do_status(struct ctl *c)
{
	struct sl_generation g = { 0 };
	struct sl_status st;
	struct sl_maps m;
	int err, have_gen = 0;

	if (ctl_take_show_verb(c) || c->argc) {
		usage();
		return CTL_EUSAGE;
	}
	err = sl_status_read(c->pin_root, &st);
	if (err) {
		log_err("cannot read status: %s", strerror(-err));
		return err;
	}
	log_set_quiet(1); /* a missing pin is a fact to report here, not an error */
	if (!sl_maps_open(c->pin_root, &m)) {
		have_gen = !sl_generation_read(&m, &g) && g.generation > 0;
		sl_maps_close(&m);
	}
	log_set_quiet(c->json);
	if (c->json)
		ctl_print_json(c, status_json(c->pin_root, &st, have_gen ? &g : NULL));
	else
		status_print(c->pin_root, &st, have_gen ? &g : NULL);
	return 0;
}
