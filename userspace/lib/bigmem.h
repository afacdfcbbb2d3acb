/* SPDX-License-Identifier: MIT */
/*
 * Growable buffers for the big, short-lived arrays of one apply (a parsed
 * document, map batches of a hundred thousand entries). In this VM a page
 * fault costs several microseconds, and a 100,000-backend apply touches
 * over 100 MB: from 2 MB up, buffers are anonymous mappings advised to use
 * transparent huge pages (THP is "madvise" here), grown with mremap so that
 * growth copies nothing. Smaller ones stay on malloc, where the sanitizers
 * see them.
 */
#ifndef SL_BIGMEM_H
#define SL_BIGMEM_H

#include <stddef.h>

/* Like realloc, but the caller passes the old size (0 with p == NULL). */
void *sl_big_realloc(void *p, size_t old_size, size_t new_size);
void sl_big_free(void *p, size_t size);

#endif
