// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include "batch.h"
#include "bigmem.h"
#include "vipindex.h"

static __u32 slot_of(const struct sl_svc_key *key)
{
	return sl_xdp_vip_slot(sl_vip_filter_bit(&key->vip, key->port));
}

int sl_vip_index_build(struct sl_xdp_vip *slots, const struct sl_svc_key *keys,
		       const struct sl_service *svcs, size_t n, size_t *shared)
{
	unsigned char *vips = calloc(SL_XDP_VIP_SLOTS, 1); /* VIP:ports per slot, up to 2 */

	if (!vips)
		return -ENOMEM;
	*shared = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char *c = &vips[slot_of(&keys[i])];

		*shared += *c == 1;
		*c += *c < 2;
	}
	for (size_t i = 0; i < n; i++) {
		__u32 s = slot_of(&keys[i]);

		if (vips[s] == 1)
			slots[s] = sl_xdp_vip_of(&keys[i], &svcs[i]);
	}
	free(vips);
	return 0;
}

/* want's service at key with the same name, or NULL. */
static const struct sl_reg_service *wanted_as(const struct sl_reg_service **want_at,
					      const struct sl_svc_key *key, const char *name)
{
	const struct sl_reg_service *w = want_at[slot_of(key)];

	if (!w || memcmp(&w->key, key, sizeof(*key)) ||
	    strncmp(w->settings.name, name, sizeof(w->settings.name)))
		return NULL;
	return w;
}

/*
 * Writes the index of sl_services' entries (all, or with want those want
 * keeps under the same VIP and name), changing only the slots that differ.
 */
static int write_index(int svc_fd, int index_fd, const struct sl_registry *want)
{
	size_t bytes = SL_XDP_VIP_SLOTS * sizeof(struct sl_xdp_vip);
	const struct sl_reg_service **want_at = NULL;
	struct sl_batch services, now, changes;
	struct sl_svc_key *keys = NULL;
	struct sl_service *svcs = NULL;
	struct sl_xdp_vip *slots;
	size_t n = 0, shared;
	int err;

	sl_batch_init(&services, sizeof(struct sl_svc_key), sizeof(struct sl_service));
	sl_batch_init(&now, sizeof(__u32), sizeof(struct sl_xdp_vip));
	sl_batch_init(&changes, sizeof(__u32), sizeof(struct sl_xdp_vip));
	slots = sl_big_realloc(NULL, 0, bytes);
	if (!slots)
		return -ENOMEM;
	memset(slots, 0, bytes);
	err = sl_batch_dump(svc_fd, &services);
	if (!err)
		err = sl_batch_dump(index_fd, &now);
	if (!err && now.count != SL_XDP_VIP_SLOTS)
		err = -EINVAL;
	if (!err && services.count) {
		keys = calloc(services.count, sizeof(*keys));
		svcs = calloc(services.count, sizeof(*svcs));
		if (!keys || !svcs)
			err = -ENOMEM;
	}
	if (!err && want) {
		want_at = calloc(SL_XDP_VIP_SLOTS, sizeof(*want_at));
		if (!want_at)
			err = -ENOMEM;
		for (size_t i = 0; !err && i < want->count; i++)
			want_at[slot_of(&want->services[i].key)] = &want->services[i];
	}
	for (size_t i = 0; !err && i < services.count; i++) {
		const struct sl_svc_key *key = (const void *)(services.keys + i * services.key_size);
		const struct sl_service *svc = (const void *)(services.values + i * services.value_size);

		if (want && !wanted_as(want_at, key, svc->name))
			continue;
		keys[n] = *key;
		svcs[n++] = *svc;
	}
	if (!err)
		err = sl_vip_index_build(slots, keys, svcs, n, &shared);
	for (size_t i = 0; !err && i < now.count; i++) {
		__u32 slot = *(const __u32 *)(now.keys + i * now.key_size);
		const void *was = now.values + i * now.value_size;

		if (slot < SL_XDP_VIP_SLOTS && memcmp(was, &slots[slot], sizeof(slots[slot])))
			err = sl_batch_add(&changes, &slot, &slots[slot]);
	}
	if (!err && changes.count)
		err = sl_batch_update(index_fd, &changes, 0);
	free(want_at);
	free(keys);
	free(svcs);
	sl_big_free(slots, bytes);
	sl_batch_free(&services);
	sl_batch_free(&now);
	sl_batch_free(&changes);
	return err;
}

int sl_vip_index_narrow(int svc_fd, int index_fd, const struct sl_registry *want)
{
	return write_index(svc_fd, index_fd, want);
}

int sl_vip_index_set(int svc_fd, int index_fd)
{
	return write_index(svc_fd, index_fd, NULL);
}
