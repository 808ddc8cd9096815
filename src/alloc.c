/* The allocation family (sb/alloc.h). */
#include <stdint.h>
#include <string.h>

#include <h2o/memory.h>

#include "sb/alloc.h"

void *sb_alloc(size_t n)
{
    return h2o_mem_alloc(n ? n : 1);
}

void *sb_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        h2o_fatal("allocation size overflows");
    size_t bytes = n * size;
    void *p = sb_alloc(bytes);
    memset(p, 0, bytes != 0 ? bytes : 1);
    return p;
}

void *sb_realloc(void *p, size_t n)
{
    return h2o_mem_realloc(p, n ? n : 1);
}

char *sb_strndup(const char *s, size_t n)
{
    char *d = sb_alloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sb_strdup(const char *s)
{
    return sb_strndup(s, strlen(s));
}
