/* SPDX-License-Identifier: MIT */
/*
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: each
 * backend walks its own permutation of the table and claims the next free
 * entry on its turns; a backend of weight w gets w turns for every w_max.
 */
#ifndef SL_MAGLEV_H
#define SL_MAGLEV_H

#include <stddef.h>
#include <linux/types.h>

/* The table size for n backends: a prime with at least ~320 entries per backend. */
__u32 sl_maglev_size(size_t n);

/* Fewest table entries per backend before a table is rebuilt at a larger size. */
#define SL_MAGLEV_MIN_SHARE 100

/* current if it is one of the table sizes and holds n backends well, else sl_maglev_size(n). */
__u32 sl_maglev_size_keep(size_t n, __u32 current);

/*
 * Fills table[0..m) with indexes into keys[] (one stable string per backend,
 * such as "10.0.0.1:80"); weights[i] >= 1. m must be prime. Returns 0, or
 * -EINVAL for n == 0, or -ENOMEM.
 * Also -EINVAL for a zero weight or m < n.
 */
int sl_maglev_build(const char *const *keys, const __u32 *weights, size_t n, __u32 m,
		    __u32 *table);

/* 64-bit hash of a byte string with a seed, used for the permutations. */
__u64 sl_hash64(const void *data, size_t len, __u64 seed);

#endif
