// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <bpf/bpf.h>

#include "batch.h"
#include "bigmem.h"

/* Entries per syscall: bounded so the kernel's copy of keys and values stays small. */
#define BATCH_CHUNK 8192

void sl_batch_init(struct sl_batch *b, size_t key_size, size_t value_size)
{
	memset(b, 0, sizeof(*b));
	b->key_size = key_size;
	b->value_size = value_size;
}

void sl_batch_init_zeroes(struct sl_batch *b, size_t key_size, size_t value_size)
{
	sl_batch_init(b, key_size, value_size);
	b->zeroes = 1;
}

static int stores_values(const struct sl_batch *b)
{
	return b->value_size && !b->zeroes;
}

/* Room for `more` entries past count; capacity doubles. */
static int batch_reserve(struct sl_batch *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 64;
	char *keys, *values;

	if (b->count + more <= b->cap)
		return 0;
	while (cap < b->count + more)
		cap *= 2;
	keys = sl_big_realloc(b->keys, b->keys_bytes, cap * b->key_size);
	if (!keys)
		return -ENOMEM;
	b->keys = keys;
	b->keys_bytes = cap * b->key_size;
	if (stores_values(b)) {
		values = sl_big_realloc(b->values, b->values_bytes, cap * b->value_size);
		if (!values)
			return -ENOMEM; /* cap stays: the keys array is merely larger than needed */
		b->values = values;
		b->values_bytes = cap * b->value_size;
	}
	b->cap = cap;
	return 0;
}

int sl_batch_add(struct sl_batch *b, const void *key, const void *value)
{
	int err = batch_reserve(b, 1);

	if (err)
		return err;
	memcpy(b->keys + b->count * b->key_size, key, b->key_size);
	if (stores_values(b)) {
		if (value)
			memcpy(b->values + b->count * b->value_size, value, b->value_size);
		else
			memset(b->values + b->count * b->value_size, 0, b->value_size);
	}
	b->count++;
	return 0;
}

/*
 * BATCH_CHUNK zero values of the largest size asked for so far, never written:
 * its pages are all the kernel's shared zero page.
 */
static const void *zero_values(size_t value_size)
{
	static void *zeroes;
	static size_t zeroes_size;
	size_t want = BATCH_CHUNK * value_size;

	if (want > zeroes_size) {
		void *p = mmap(NULL, want, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return NULL;
		if (zeroes)
			munmap(zeroes, zeroes_size);
		zeroes = p;
		zeroes_size = want;
	}
	return zeroes;
}

int sl_batch_update(int fd, struct sl_batch *b, __u64 elem_flags)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
	const char *zeroes = NULL;
	int err = 0;

	if (b->zeroes && b->count) {
		zeroes = zero_values(b->value_size);
		if (!zeroes)
			return -ENOMEM;
	}
	for (size_t done = 0; done < b->count && !err;) {
		__u32 n = b->count - done > BATCH_CHUNK ? BATCH_CHUNK : b->count - done;
		const void *values = zeroes ? zeroes : b->values + done * b->value_size;

		if (bpf_map_update_batch(fd, b->keys + done * b->key_size, values, &n, &opts))
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
	sl_big_free(b->keys, b->keys_bytes);
	sl_big_free(b->values, b->values_bytes);
	memset(b, 0, sizeof(*b));
}
