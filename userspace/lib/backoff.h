/* SPDX-License-Identifier: MIT */
/* Reconnect delays: exponential with jitter, so a fleet does not reconnect in step. */
#ifndef SL_BACKOFF_H
#define SL_BACKOFF_H

#include <stdint.h>

/*
 * The delay before reconnect attempt `attempt` (0 = the first after a loss):
 * base_ms doubled per attempt, at most cap_ms, of which the upper half is
 * random ("equal jitter": never less than half the step, so a dead server is
 * not hammered, and never in step across agents). rnd is any random word.
 */
unsigned int sl_backoff_ms(unsigned int attempt, unsigned int base_ms, unsigned int cap_ms,
			   uint32_t rnd);

#endif
