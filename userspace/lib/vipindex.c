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

/* Adds slot's desired entry to changes when the index holds another there. */
static int compare_slot(struct sl_batch *changes, __u32 slot, const void *was,
			const struct sl_xdp_vip *want)
{
	return memcmp(was, want, sizeof(*want)) ? sl_batch_add(changes, &slot, want) : 0;
}

/*
 * Below this many services an apply reads their slots one by one; above, the
 * whole index in batches costs less than a syscall per slot.
 */
#define READ_SLOTS_MAX 2048

/*
 * Writes the index of n services (all, or with want those want keeps under
 * the same VIP and name), changing only the slots that differ. Every slot
 * the index may hold an entry in is one of these services' (the index only
 * ever names services sl_services holds), so only those need reading; a
 * load, which may find an index it did not write, reads all (every_slot).
 */
static int write_index(int index_fd, const struct sl_svc_key *keys, const struct sl_service *svcs,
		       size_t n, const struct sl_registry *want, int every_slot)
{
	size_t bytes = SL_XDP_VIP_SLOTS * sizeof(struct sl_xdp_vip), kept = 0, shared;
	const struct sl_reg_service **want_at = NULL;
	struct sl_svc_key *kkeys = NULL;
	struct sl_service *ksvcs = NULL;
	unsigned char *read = NULL;
	struct sl_batch now, changes;
	struct sl_xdp_vip *slots;
	int err = 0;

	sl_batch_init(&now, sizeof(__u32), sizeof(struct sl_xdp_vip));
	sl_batch_init(&changes, sizeof(__u32), sizeof(struct sl_xdp_vip));
	slots = sl_big_realloc(NULL, 0, bytes);
	if (!slots)
		return -ENOMEM;
	memset(slots, 0, bytes);
	if (n) {
		kkeys = calloc(n, sizeof(*kkeys));
		ksvcs = calloc(n, sizeof(*ksvcs));
		read = calloc(SL_XDP_VIP_SLOTS, 1);
		if (!kkeys || !ksvcs || !read)
			err = -ENOMEM;
	}
	if (!err && want) {
		want_at = calloc(SL_XDP_VIP_SLOTS, sizeof(*want_at));
		if (!want_at)
			err = -ENOMEM;
		for (size_t i = 0; !err && i < want->count; i++)
			want_at[slot_of(&want->services[i].key)] = &want->services[i];
	}
	for (size_t i = 0; !err && i < n; i++) {
		if (want && !wanted_as(want_at, &keys[i], svcs[i].name))
			continue;
		kkeys[kept] = keys[i];
		ksvcs[kept++] = svcs[i];
	}
	if (!err)
		err = sl_vip_index_build(slots, kkeys, ksvcs, kept, &shared);
	every_slot |= n > READ_SLOTS_MAX;
	if (!err && every_slot) {
		err = sl_batch_dump(index_fd, &now);
		for (size_t i = 0; !err && i < now.count; i++) {
			__u32 slot = *(const __u32 *)(now.keys + i * now.key_size);

			if (slot < SL_XDP_VIP_SLOTS)
				err = compare_slot(&changes, slot, now.values + i * now.value_size,
						   &slots[slot]);
		}
	}
	for (size_t i = 0; !err && !every_slot && i < n; i++) {
		__u32 slot = slot_of(&keys[i]);
		struct sl_xdp_vip was;

		if (read[slot]++)
			continue;
		if (bpf_map_lookup_elem(index_fd, &slot, &was))
			err = -errno;
		else
			err = compare_slot(&changes, slot, &was, &slots[slot]);
	}
	if (!err && changes.count)
		err = sl_batch_update(index_fd, &changes, 0);
	free(want_at);
	free(kkeys);
	free(ksvcs);
	free(read);
	sl_big_free(slots, bytes);
	sl_batch_free(&now);
	sl_batch_free(&changes);
	return err;
}

int sl_vip_index_narrow(int index_fd, const struct sl_state *cur, const struct sl_registry *want)
{
	struct sl_svc_key *keys = cur->count ? calloc(cur->count, sizeof(*keys)) : NULL;
	struct sl_service *svcs = cur->count ? calloc(cur->count, sizeof(*svcs)) : NULL;
	int err = -ENOMEM;

	if (!cur->count || (keys && svcs)) {
		for (size_t i = 0; i < cur->count; i++) {
			keys[i] = cur->services[i].key;
			svcs[i] = cur->services[i].v;
		}
		err = write_index(index_fd, keys, svcs, cur->count, want, 0);
	}
	free(keys);
	free(svcs);
	return err;
}

int sl_vip_index_set(int svc_fd, int index_fd, int every_slot)
{
	struct sl_batch services;
	int err;

	sl_batch_init(&services, sizeof(struct sl_svc_key), sizeof(struct sl_service));
	err = sl_batch_dump(svc_fd, &services);
	if (!err)
		err = write_index(index_fd, (const struct sl_svc_key *)services.keys,
				  (const struct sl_service *)services.values, services.count, NULL,
				  every_slot);
	sl_batch_free(&services);
	return err;
}
