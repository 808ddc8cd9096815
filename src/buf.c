/*
 * Bounded growable buffer: every buffer has a ceiling chosen by its owner, so
 * outside input can never make switchboard allocate without limit.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonlex.h"
#include "sb/alloc.h"
#include "sb/buf.h"

/* Makes room for `extra` more bytes, or returns -1 when the ceiling forbids it. */
static int reserve(sb_buf_t *b, size_t extra)
{
    if (extra > b->max - b->len)
        return -1;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    b->base = sb_realloc(b->base, cap + 1); /* +1 keeps room for a terminating NUL */
    b->cap = cap;
    return 0;
}

void sb_buf_init(sb_buf_t *b, size_t max)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sb_buf_dispose(sb_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

int sb_buf_append(sb_buf_t *b, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    if (reserve(b, len) != 0)
        return -1;
    memcpy(b->base + b->len, p, len);
    b->len += len;
    b->base[b->len] = '\0';
    return 0;
}

int sb_buf_appendz(sb_buf_t *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

int sb_buf_appendf(sb_buf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(small))
        return sb_buf_append(b, small, (size_t)n);
    if (reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Takes back what a failed append wrote past `start`; returns -1, the append's result. */
static int undo(sb_buf_t *b, size_t start)
{
    b->len = start;
    if (b->base != NULL)
        b->base[b->len] = '\0';
    return -1;
}

int sb_buf_append_json_escaped(sb_buf_t *b, const char *s, size_t len)
{
    static const char short_escape[256] = {
        ['"'] = '"', ['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't', ['\b'] = 'b', ['\f'] = 'f'};
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    size_t run = 0; /* bytes at s[i - run, i) that need no escaping */
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            ++run;
            continue;
        }
        char esc[6] = {'\\', short_escape[c], 0};
        size_t elen = 2;
        if (esc[1] == 0) {
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            elen = 6;
        }
        if (sb_buf_append(b, s + i - run, run) != 0 || sb_buf_append(b, esc, elen) != 0)
            goto fail;
        run = 0;
    }
    if (sb_buf_append(b, s + len - run, run) != 0)
        goto fail;
    return 0;
fail:
    return undo(b, start);
}

int sb_buf_append_json_string(sb_buf_t *b, const char *s, size_t len)
{
    size_t start = b->len;
    if (sb_buf_append(b, "\"", 1) == 0 && (len == 0 || sb_buf_append_json_escaped(b, s, len) == 0) &&
        sb_buf_append(b, "\"", 1) == 0)
        return 0;
    return undo(b, start);
}

int sb_buf_append_json_member(sb_buf_t *b, const char *key, const char *s, size_t len)
{
    size_t start = b->len;
    if (sb_buf_appendf(b, ",\"%s\":", key) == 0 && sb_buf_append_json_string(b, s, len) == 0)
        return 0;
    return undo(b, start);
}

int sb_buf_append_utf8(sb_buf_t *b, const char *s, size_t len)
{
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    size_t start = b->len;
    while (p < end) {
        if (*p < 0x80) {
            ++p;
            continue;
        }
        size_t n = sb_utf8_len(p, end);
        if (n > 0) {
            p += n;
            continue;
        }
        if (sb_buf_append(b, run, (size_t)(p - run)) != 0 || sb_buf_append(b, replacement, 3) != 0)
            goto fail;
        run = ++p;
    }
    if (sb_buf_append(b, run, (size_t)(p - run)) == 0)
        return 0;
fail:
    return undo(b, start);
}

void sb_buf_consume(sb_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
    b->base[b->len] = '\0';
}

/* Copies `len` bytes of `s` into `dst` (size `cap`), cut at a UTF-8 boundary. */
void sb_copy_text(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap) {
        len = cap - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            --len;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
}
