/* SPDX-License-Identifier: MIT */
/*
 * Map writes gathered and sent in BPF_MAP_*_BATCH calls: a few syscalls for
 * a hundred thousand entries, and for a map of maps one RCU wait for all its
 * updates instead of one per update.
 */
#ifndef SL_BATCH_H
#define SL_BATCH_H

#include <stddef.h>
#include <linux/types.h>

struct sl_batch {
	char *keys;
	char *values; /* NULL for a batch of deletes, or of zeroes */
	size_t key_size;
	size_t value_size;
	int zeroes; /* every value is zero: none is stored */
	size_t count;
	size_t cap;	     /* entries both arrays hold */
	size_t keys_bytes;   /* the arrays' sizes, for sl_big_realloc */
	size_t values_bytes;
};

void sl_batch_init(struct sl_batch *b, size_t key_size, size_t value_size);
/*
 * A batch that writes zeroes (fresh counters for new backends): only its keys
 * take memory, the values come from one shared read-only zero mapping.
 */
void sl_batch_init_zeroes(struct sl_batch *b, size_t key_size, size_t value_size);
/* value may be NULL: a zeroed value (or none, for deletes). Returns 0 or -ENOMEM. */
int sl_batch_add(struct sl_batch *b, const void *key, const void *value);
/* Writes every entry (elem_flags: BPF_F_LOCK or 0); -errno on failure. */
int sl_batch_update(int fd, struct sl_batch *b, __u64 elem_flags);
/* Deletes every key (missing keys are fine). */
int sl_batch_delete(int fd, struct sl_batch *b);
/* Appends every entry of a hash map to b (BPF_MAP_LOOKUP_BATCH); -errno on failure. */
int sl_batch_dump(int fd, struct sl_batch *b);
void sl_batch_free(struct sl_batch *b);

#endif
