// SPDX-License-Identifier: MIT
/* Maglev table builder (Eisenbud et al., NSDI 2016, section 3.4) with weighted turns. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "maglev.h"

#define HASH_P1 0x9e3779b97f4a7c15ULL
#define HASH_P2 0xc2b2ae3d27d4eb4fULL
#define HASH_P3 0x165667b19e3779f9ULL
#define HASH_C1 0x87c37b91114253d5ULL
#define HASH_C2 0x4cf5ad432745937fULL

/* Independent seeds for a backend's offset and skip. */
#define MAGLEV_SEED_OFFSET 0x736c7569636530ULL
#define MAGLEV_SEED_SKIP 0x736c7569636531ULL

#define MAGLEV_EMPTY ((__u32)-1)

static const __u32 maglev_primes[] = { 1021, 2053, 4099, 8191, 16381, 32771, 65537, 131071 };

static inline __u64 rotl64(__u64 x, unsigned int r)
{
	return (x << r) | (x >> (64 - r));
}

/*
 * Bytes are assembled little-endian by hand rather than loaded as a word, so a
 * key hashes to the same value on every host whatever its byte order: tables
 * built on two nodes for the same backends are identical.
 */
static inline __u64 load_le(const unsigned char *p, size_t len)
{
	__u64 v = 0;
	size_t i;

	for (i = 0; i < len; i++)
		v |= (__u64)p[i] << (8 * i);
	return v;
}

static inline __u64 hash_round(__u64 h, __u64 k)
{
	k *= HASH_C1;
	k = rotl64(k, 31);
	k *= HASH_C2;
	h ^= k;
	return rotl64(h, 27) * HASH_P1 + HASH_P3;
}

__u64 sl_hash64(const void *data, size_t len, __u64 seed)
{
	const unsigned char *p = data;
	__u64 h = seed ^ HASH_P1 ^ (len * HASH_P2);
	size_t rest = len;

	for (; rest >= 8; rest -= 8, p += 8)
		h = hash_round(h, load_le(p, 8));
	if (rest)
		h = hash_round(h, load_le(p, rest) ^ ((__u64)rest << 56));
	return sl_mix64(h ^ seed);
}

__u32 sl_maglev_size(size_t n)
{
	size_t want = n * 320;
	size_t i;

	if (n > SIZE_MAX / 320)
		want = SIZE_MAX;
	for (i = 0; i < sizeof(maglev_primes) / sizeof(maglev_primes[0]); i++) {
		if (maglev_primes[i] >= want)
			return maglev_primes[i];
	}
	return maglev_primes[sizeof(maglev_primes) / sizeof(maglev_primes[0]) - 1];
}

__u32 sl_maglev_size_keep(size_t n, __u32 current)
{
	size_t i;

	for (i = 0; i < sizeof(maglev_primes) / sizeof(maglev_primes[0]); i++) {
		if (maglev_primes[i] == current && n <= current / SL_MAGLEV_MIN_SHARE)
			return current;
	}
	return sl_maglev_size(n);
}

/*
 * Backend i walks permutation (offset + j * skip) % m; skip is in [1, m - 1]
 * and m is prime, so the walk visits every entry and a turn always finds a
 * free one while the table is not full.
 *
 * Turns: a backend whose weight is the largest takes one every round; one of
 * weight w takes one in round r when floor((r + 1) * w / w_max) >
 * floor(r * w / w_max). credit[i] holds r * w mod w_max, which makes that test
 * an addition and a comparison instead of two divisions per backend per round.
 */
int sl_maglev_build(const char *const *keys, const __u32 *weights, size_t n, __u32 m,
		    __u32 *table)
{
	__u32 *pos = NULL, *skip = NULL;
	__u64 *credit = NULL;
	__u32 w_max = 0, filled = 0;
	size_t i, len;
	int err = 0;

	if (n == 0 || m < n)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (weights[i] == 0)
			return -EINVAL;
		if (weights[i] > w_max)
			w_max = weights[i];
	}

	pos = calloc(n, sizeof(*pos));
	skip = calloc(n, sizeof(*skip));
	credit = calloc(n, sizeof(*credit));
	if (!pos || !skip || !credit) {
		err = -ENOMEM;
		goto out;
	}

	for (i = 0; i < n; i++) {
		len = strlen(keys[i]);
		pos[i] = sl_hash64(keys[i], len, MAGLEV_SEED_OFFSET) % m;
		skip[i] = m > 1 ? sl_hash64(keys[i], len, MAGLEV_SEED_SKIP) % (m - 1) + 1 : 1;
	}
	for (i = 0; i < m; i++)
		table[i] = MAGLEV_EMPTY;

	for (;;) {
		for (i = 0; i < n; i++) {
			credit[i] += weights[i];
			if (credit[i] < w_max)
				continue;
			credit[i] -= w_max;

			while (table[pos[i]] != MAGLEV_EMPTY)
				pos[i] = ((__u64)pos[i] + skip[i]) % m;
			table[pos[i]] = i;
			pos[i] = ((__u64)pos[i] + skip[i]) % m;
			if (++filled == m)
				goto out;
		}
	}
out:
	free(credit);
	free(skip);
	free(pos);
	return err;
}
