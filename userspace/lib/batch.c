// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

#include "batch.h"

/* Entries per syscall: bounded so the kernel's copy of keys and values stays small. */
#define BATCH_CHUNK 8192

void sl_batch_init(struct sl_batch *b, size_t key_size, size_t value_size)
{
	memset(b, 0, sizeof(*b));
	b->key_size = key_size;
	b->value_size = value_size;
}

int sl_batch_add(struct sl_batch *b, const void *key, const void *value)
{
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		char *keys = realloc(b->keys, cap * b->key_size);

		if (!keys)
			return -ENOMEM;
		b->keys = keys;
		if (b->value_size) {
			char *values = realloc(b->values, cap * b->value_size);

			if (!values)
				return -ENOMEM;
			b->values = values;
		}
		b->cap = cap;
	}
	memcpy(b->keys + b->count * b->key_size, key, b->key_size);
	if (b->value_size) {
		if (value)
			memcpy(b->values + b->count * b->value_size, value, b->value_size);
		else
			memset(b->values + b->count * b->value_size, 0, b->value_size);
	}
	b->count++;
	return 0;
}

int sl_batch_update(int fd, struct sl_batch *b, __u64 elem_flags)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
	int err = 0;

	for (size_t done = 0; done < b->count && !err;) {
		__u32 n = b->count - done > BATCH_CHUNK ? BATCH_CHUNK : b->count - done;

		if (bpf_map_update_batch(fd, b->keys + done * b->key_size,
					 b->values + done * b->value_size, &n, &opts))
			err = -errno;
		done += n;
	}
	return err;
}

int sl_batch_delete(int fd, struct sl_batch *b)
{
	int err = 0;

	for (size_t done = 0; done < b->count && !err;) {
		__u32 n = b->count - done > BATCH_CHUNK ? BATCH_CHUNK : b->count - done;

		/* The kernel stops at the first missing key: step over it and go on. */
		if (bpf_map_delete_batch(fd, b->keys + done * b->key_size, &n, NULL)) {
			if (errno != ENOENT)
				err = -errno;
			n++;
		}
		done += n;
	}
	return err;
}

static int batch_reserve(struct sl_batch *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 64;
	char *keys, *values;

	if (b->count + more <= b->cap)
		return 0;
	while (cap < b->count + more)
		cap *= 2;
	keys = realloc(b->keys, cap * b->key_size);
	if (!keys)
		return -ENOMEM;
	b->keys = keys;
	values = realloc(b->values, cap * b->value_size);
	if (!values)
		return -ENOMEM;
	b->values = values;
	b->cap = cap;
	return 0;
}

int sl_batch_dump(int fd, struct sl_batch *b)
{
	__u64 token = 0; /* a hash map's batch position: a bucket index */
	void *in = NULL;
	int err;

	for (;;) {
		__u32 n = BATCH_CHUNK;

		err = batch_reserve(b, BATCH_CHUNK);
		if (err)
			return err;
		err = bpf_map_lookup_batch(fd, in, &token, b->keys + b->count * b->key_size,
					   b->values + b->count * b->value_size, &n, NULL);
		if (err && errno != ENOENT)
			return -errno;
		b->count += n;
		if (err) /* ENOENT: that was the last chunk */
			return 0;
		in = &token;
	}
}

void sl_batch_free(struct sl_batch *b)
{
	free(b->keys);
	free(b->values);
	memset(b, 0, sizeof(*b));
}
