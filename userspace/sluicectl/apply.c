// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/maps.h"
#include "lib/reconcile.h"
#include "lib/registry.h"
#include "sluicectl.h"

static json_t *changes_json(const struct sl_apply_result *res)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < res->change_count; i++) {
		const struct sl_change *ch = &res->changes[i];
		json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "op", sl_change_op_name(ch->op), "object",
				      sl_change_object_name(ch->object), "service", ch->service, "detail",
				      ch->detail);

		if (ch->object == SL_OBJ_BACKEND)
			json_object_set_new(o, "backend", json_string(ch->backend));
		json_array_append_new(arr, o);
	}
	return arr;
}

static void print_changes(const struct sl_apply_result *res)
{
	static const char marks[] = { [SL_CHANGE_ADD] = '+', [SL_CHANGE_REMOVE] = '-',
				      [SL_CHANGE_UPDATE] = '~' };

	for (size_t i = 0; i < res->change_count; i++) {
		const struct sl_change *ch = &res->changes[i];

		if (ch->object == SL_OBJ_GLOBAL)
			printf("%c global: %s\n", marks[ch->op], ch->detail);
		else if (ch->object == SL_OBJ_SERVICE)
			printf("%c service %s: %s\n", marks[ch->op], ch->service, ch->detail);
		else
			printf("%c backend %s of %s: %s\n", marks[ch->op], ch->backend,
			       ch->service[0] ? ch->service : "(no service)", ch->detail);
	}
}

static void sha_hex(const __u8 *sha, char *buf)
{
	for (int i = 0; i < 32; i++)
		sprintf(buf + 2 * i, "%02x", sha[i]);
}

int do_apply(struct ctl *c)
{
	struct sl_apply_result res = { 0 };
	struct sl_registry reg = { 0 };
	char err_text[SL_ERR_MAX], sha[65];
	struct sl_maps m;
	int err, lock_fd = -1, maps_open = 0;

	if (c->argc != 1) {
		fprintf(stderr, "sluicectl: apply takes exactly one FILE\n");
		usage();
		return CTL_EUSAGE;
	}
	err = sl_registry_load_file(c->argv[0], &reg, err_text, sizeof(err_text));
	if (err) {
		log_err("registry rejected, nothing changed: %s", err_text);
		return err;
	}
	if (!c->dry_run) {
		lock_fd = sl_lock_pin_root(c->pin_root);
		if (lock_fd < 0) {
			err = lock_fd;
			goto out;
		}
	}
	err = sl_maps_open(c->pin_root, &m);
	if (err)
		goto out;
	maps_open = 1;
	err = sl_reconcile(&m, &reg, c->dry_run, &res, err_text, sizeof(err_text));
	if (err) {
		log_err("apply of %s failed: %s", c->argv[0], err_text);
		goto out;
	}
	sha_hex(reg.sha256, sha);
	if (c->json) {
		json_t *gen = c->dry_run ? json_null() : json_integer(res.generation);

		ctl_print_json(c, json_pack("{s:b,s:o,s:s,s:o}", "dry_run", c->dry_run,
					    "generation", gen, "sha256", sha, "changes",
					    changes_json(&res)));
	} else {
		print_changes(&res);
		if (c->dry_run)
			printf("dry run: %zu changes would be made (%zu services, sha256 %s); nothing changed\n",
			       res.change_count, reg.count, sha);
		else
			printf("applied generation %llu: %zu changes, %zu services (sha256 %s)\n",
			       (unsigned long long)res.generation, res.change_count, reg.count, sha);
	}
out:
	if (maps_open)
		sl_maps_close(&m);
	if (lock_fd >= 0)
		close(lock_fd);
	sl_apply_result_free(&res);
	sl_registry_free(&reg);
	return err;
}
