// SPDX-License-Identifier: MIT
#include "backoff.h"

unsigned int sl_backoff_ms(unsigned int attempt, unsigned int base_ms, unsigned int cap_ms,
			   uint32_t rnd)
{
	uint64_t step = base_ms ? base_ms : 1;
	unsigned int half;

	/* Doubling stops at the cap: no shift can overflow past it. */
	while (attempt-- && step < cap_ms)
		step <<= 1;
	if (step > cap_ms)
		step = cap_ms;
	half = step / 2;
	return (unsigned int)(step - half) + (half ? rnd % (half + 1) : 0);
}
