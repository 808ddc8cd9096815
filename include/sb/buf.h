/*
 * A growable byte buffer with a ceiling fixed at creation. Appending past the
 * ceiling fails instead of growing; allocation failure aborts the process.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stddef.h>

typedef struct sb_buf {
    char *base;
    size_t len;
    size_t cap;
    size_t max; /* hard ceiling on len */
} sb_buf_t;

/* Sets up an empty buffer that may hold at most `max` bytes. Allocates nothing yet. */
void sb_buf_init(sb_buf_t *b, size_t max);
/* Frees the storage; the buffer is empty (and reusable) afterwards. */
void sb_buf_dispose(sb_buf_t *b);
/* Appends `len` bytes. Returns 0, or -1 (buffer unchanged) when the ceiling would be passed. */
int sb_buf_append(sb_buf_t *b, const void *p, size_t len);
/* Appends a NUL-terminated string; same contract as sb_buf_append. */
int sb_buf_appendz(sb_buf_t *b, const char *s);
/* Appends printf-formatted text; same contract as sb_buf_append. */
int sb_buf_appendf(sb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as the body of a JSON string (escaped, without quotes); same contract. */
int sb_buf_append_json_escaped(sb_buf_t *b, const char *s, size_t len);
/* Appends `s` as a JSON string: quoted and escaped (`s` may be NULL when `len` is 0). Same contract. */
int sb_buf_append_json_string(sb_buf_t *b, const char *s, size_t len);
/* Appends ,"key":"s" with `s` escaped: a member of the JSON object being written (`key` is a plain word). Same contract. */
int sb_buf_append_json_member(sb_buf_t *b, const char *key, const char *s, size_t len);
/*
 * Appends `s` with every byte that does not begin a well-formed UTF-8
 * sequence replaced by U+FFFD, so the result is always valid UTF-8 (text cut
 * at a fixed length, names from outside). Same contract as sb_buf_append.
 */
int sb_buf_append_utf8(sb_buf_t *b, const char *s, size_t len);
/* Copies `len` bytes of `s` into `dst` (`cap` > 0 bytes), cut at a UTF-8 boundary to fit, terminated. */
void sb_copy_text(char *dst, size_t cap, const char *s, size_t len);
/* Drops the first `n` bytes (n <= len). */
void sb_buf_consume(sb_buf_t *b, size_t n);
/* Empties the buffer, keeping its storage. */
static inline void sb_buf_reset(sb_buf_t *b)
{
    b->len = 0;
}

#endif
