/*
 * switchboard's one allocation family, on h2o's: a failed allocation ends
 * the process with a message (as h2o_mem_alloc does), so no caller checks for
 * NULL. Outside input never decides a size here without a ceiling first.
 */
#ifndef SB_ALLOC_H
#define SB_ALLOC_H

#include <stdint.h>
#include <string.h>

#include <h2o/memory.h>

static inline void *sb_alloc(size_t n)
{
    return h2o_mem_alloc(n ? n : 1);
}

/* `n` zeroed elements of `size` bytes. */
static inline void *sb_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        h2o_fatal("allocation size overflows");
    size_t bytes = n * size;
    void *p = sb_alloc(bytes);
    memset(p, 0, bytes != 0 ? bytes : 1);
    return p;
}

static inline void *sb_realloc(void *p, size_t n)
{
    return h2o_mem_realloc(p, n ? n : 1);
}

static inline char *sb_strndup(const char *s, size_t n)
{
    char *d = sb_alloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static inline char *sb_strdup(const char *s)
{
    return sb_strndup(s, strlen(s));
}

#endif
