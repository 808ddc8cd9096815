/*
 * A borrowed run of bytes: a string inside a buffer someone else owns, not
 * NUL-terminated. What the readers of outside bytes hand on.
 */
#ifndef SB_STR_H
#define SB_STR_H

#include <stddef.h>

typedef struct sb_str {
    const char *base; /* NULL when absent; not NUL-terminated */
    size_t len;
} sb_str_t;

#endif
