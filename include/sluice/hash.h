/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <linux/types.h>

/*
 * MurmurHash3's 64-bit finaliser: every input bit affects every output bit,
 * so sequential inputs (netns cookies, ports) spread over the whole range
 * before they are reduced modulo a table size. Shared by the BPF programs,
 * the Maglev builder and the tests, which must agree on it bit for bit.
 */
static inline __u64 sl_mix64(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

#endif
