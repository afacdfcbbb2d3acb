// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <bpf/bpf.h>

#include "batch.h"
#include "vipindex.h"

static __u32 slot_of(const struct sl_svc_key *key)
{
	return sl_xdp_vip_slot(sl_vip_filter_bit(&key->vip, key->port));
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

static const struct sl_svc_key *pass_key(const struct sl_vip_pass *p, size_t i)
{
	return (const void *)((const char *)p->keys + i * p->key_stride);
}

static const struct sl_service *pass_svc(const struct sl_vip_pass *p, size_t i)
{
	return (const void *)((const char *)p->svcs + i * p->svc_stride);
}

/* A slot written only when it differs: a slot left alone is never read torn. */
static void put_slot(struct sl_xdp_vip *index, __u32 slot, const struct sl_xdp_vip *v)
{
	if (memcmp(&index[slot], v, sizeof(*v)))
		memcpy(&index[slot], v, sizeof(*v));
}

int sl_vip_index_write(struct sl_xdp_vip *index, const struct sl_vip_pass *p, int every_slot)
{
	unsigned char *kept = calloc(SL_XDP_VIP_SLOTS, 1), *seen = calloc(SL_XDP_VIP_SLOTS, 1);
	const struct sl_reg_service **want_at = NULL;
	unsigned char *keep = p->n ? calloc(p->n, 1) : NULL;
	const struct sl_xdp_vip empty = { 0 };
	int err = 0;

	if (!kept || !seen || (p->n && !keep))
		err = -ENOMEM;
	if (!err && p->want) {
		want_at = calloc(SL_XDP_VIP_SLOTS, sizeof(*want_at));
		if (!want_at)
			err = -ENOMEM;
		for (size_t i = 0; !err && i < p->want->count; i++)
			want_at[slot_of(&p->want->services[i].key)] = &p->want->services[i];
	}
	for (size_t i = 0; !err && i < p->n; i++) {
		__u32 s = slot_of(pass_key(p, i));

		keep[i] = !p->want || wanted_as(want_at, pass_key(p, i), pass_svc(p, i)->name);
		kept[s] += keep[i] && kept[s] < 2;
		seen[s] = 1;
	}
	for (size_t i = 0; !err && i < p->n; i++) {
		__u32 s = slot_of(pass_key(p, i));
		struct sl_xdp_vip v;

		if (kept[s] == 1 && !keep[i])
			continue; /* another service's slot: written on its turn */
		v = kept[s] == 1 ? sl_xdp_vip_of(pass_key(p, i), pass_svc(p, i)) : empty;
		put_slot(index, s, &v);
	}
	for (__u32 s = 0; !err && every_slot && s < SL_XDP_VIP_SLOTS; s++)
		if (!seen[s])
			put_slot(index, s, &empty);
	free(want_at);
	free(keep);
	free(kept);
	free(seen);
	return err;
}

struct sl_xdp_vip *sl_vip_index_map(int index_fd)
{
	void *p = mmap(NULL, SL_XDP_VIP_SLOTS * sizeof(struct sl_xdp_vip), PROT_READ | PROT_WRITE,
		       MAP_SHARED, index_fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

void sl_vip_index_unmap(struct sl_xdp_vip *index)
{
	if (index)
		munmap(index, SL_XDP_VIP_SLOTS * sizeof(struct sl_xdp_vip));
}

int sl_vip_index_narrow(struct sl_xdp_vip *index, const struct sl_state *cur,
			const struct sl_registry *want)
{
	struct sl_vip_pass p = {
		.n = cur->count,
		.want = want,
		.key_stride = sizeof(cur->services[0]),
		.svc_stride = sizeof(cur->services[0]),
	};

	if (cur->count) {
		p.keys = &cur->services[0].key;
		p.svcs = &cur->services[0].v;
	}
	return sl_vip_index_write(index, &p, 0);
}

int sl_vip_index_set(int index_fd, const struct sl_batch *services)
{
	struct sl_xdp_vip *index = sl_vip_index_map(index_fd);
	struct sl_vip_pass p = {
		.keys = (const void *)services->keys,
		.svcs = (const void *)services->values,
		.key_stride = services->key_size,
		.svc_stride = services->value_size,
		.n = services->count,
	};
	int err;

	if (!index)
		return -errno;
	err = sl_vip_index_write(index, &p, 1);
	sl_vip_index_unmap(index);
	return err;
}
