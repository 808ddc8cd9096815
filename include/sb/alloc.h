/*
 * switchboard's one allocation family, on h2o's: a failed allocation ends
 * the process with a message (as h2o_mem_alloc does), so no caller checks for
 * NULL. Outside input never decides a size here without a ceiling first.
 * Everything allocated here is released with free().
 */
#ifndef SB_ALLOC_H
#define SB_ALLOC_H

#include <stddef.h>

/* `n` bytes (at least one). */
void *sb_alloc(size_t n);
/* `n` zeroed elements of `size` bytes; a product that overflows ends the process too. */
void *sb_calloc(size_t n, size_t size);
void *sb_realloc(void *p, size_t n);
/* The first `n` bytes of `s`, terminated. */
char *sb_strndup(const char *s, size_t n);
char *sb_strdup(const char *s);

#endif
