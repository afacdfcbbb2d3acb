/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef SL_BPF_HASH_H
#define SL_BPF_HASH_H

#include <linux/types.h>

/*
 * Murmur3's 64-bit finaliser: spreads sequential inputs (netns cookies are
 * small consecutive integers) over the whole range before they are reduced
 * modulo a table size.
 */
static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

#endif
