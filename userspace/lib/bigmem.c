// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bigmem.h"

#define BIG_MIN (2u << 20) /* one huge page */

static size_t round_big(size_t n)
{
	return (n + BIG_MIN - 1) & ~(size_t)(BIG_MIN - 1);
}

static void *map_big(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Advice only: without THP the buffer still works, with 4 KB pages. */
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

void *sl_big_realloc(void *p, size_t old_size, size_t new_size)
{
	void *q;

	if (new_size < BIG_MIN && old_size < BIG_MIN)
		return realloc(p, new_size);
	if (new_size < BIG_MIN) { /* shrinks back onto the heap */
		q = malloc(new_size ? new_size : 1);
		if (q) {
			memcpy(q, p, new_size);
			munmap(p, round_big(old_size));
		}
		return q;
	}
	if (old_size < BIG_MIN) {
		q = map_big(round_big(new_size));
		if (q && p)
			memcpy(q, p, old_size < new_size ? old_size : new_size);
		if (q)
			free(p);
		return q;
	}
	if (round_big(new_size) == round_big(old_size))
		return p;
	q = mremap(p, round_big(old_size), round_big(new_size), MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		return NULL;
	madvise(q, round_big(new_size), MADV_HUGEPAGE);
	return q;
}

void sl_big_free(void *p, size_t size)
{
	if (!p)
		return;
	if (size < BIG_MIN)
		free(p);
	else
		munmap(p, round_big(size));
}
