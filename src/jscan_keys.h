/*
 * Repeated keys for the wire readers whose jansson predecessors loaded each
 * event with JSON_REJECT_DUPLICATES (wire_gemini.c, wire_responses.c): an
 * event that repeats a key is refused, not read with the last one winning.
 * sb_jscan_unique_member is sb_jscan_member that also remembers the keys of
 * the object it steps through and fails the scan on a repeat. It is used on
 * the objects a reader walks; values it skips (sb_jscan_skip) are not looked
 * into, and only the first SB_JSCAN_KEYS keys of an object are remembered:
 * a reader's own objects have a handful, and comparing every pair of a
 * hostile object's keys would cost the square of its size.
 */
#ifndef SB_JSCAN_KEYS_H
#define SB_JSCAN_KEYS_H

#include "jscan.h"

#define SB_JSCAN_KEYS 32

typedef struct {
    const unsigned char *src; /* the key as written, between its quotes */
    size_t len;               /* of src */
    int plain;                /* no escapes: src is the key itself */
} sb_jscan_key_t;

/* One object's keys so far. Set n to 0 before the object, and only that: the entries past n are never read, and
 * clearing them all would cost more than the scan of a small object. */
typedef struct {
    sb_jscan_key_t k[SB_JSCAN_KEYS];
    unsigned n;
} sb_jscan_keys_t;

/* The next byte of a key as decoded, from its escaped source; -1 at the end. */
static inline int sb_jscan_key_byte(const unsigned char **p, const unsigned char *end, char buf[4], unsigned *at, unsigned *n)
{
    if (*at == *n) {
        if (*p == end)
            return -1;
        char *o = buf;
        if (**p == '\\') {
            *p += sb_json_unescape(*p, end, &o); /* the key was scanned already: the escape is valid */
        } else {
            *o++ = (char)*(*p)++;
        }
        *at = 0;
        *n = (unsigned)(o - buf);
    }
    return (unsigned char)buf[(*at)++];
}

/* Whether two keys as written decode to the same bytes (jansson compares keys decoded). */
static inline int sb_jscan_same_key(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    const unsigned char *ae = a + alen, *be = b + blen;
    char x[4], y[4];
    unsigned xa = 0, xn = 0, ya = 0, yn = 0;
    for (;;) {
        int cx = sb_jscan_key_byte(&a, ae, x, &xa, &xn), cy = sb_jscan_key_byte(&b, be, y, &ya, &yn);
        if (cx != cy)
            return 0;
        if (cx < 0)
            return 1;
    }
}

/* sb_jscan_member, failing with SB_JSCAN_SYNTAX when the key repeats one of `seen` (zeroed before the object). */
static inline int sb_jscan_unique_member(sb_jscan_t *s, int *first, sb_str_t *key, sb_jscan_keys_t *seen)
{
    int c = sb_jscan_peek(s);
    if (c == '}') {
        ++s->p;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return SB_JSCAN_SYNTAX;
        ++s->p;
        c = sb_jscan_peek(s);
    }
    *first = 0;
    const unsigned char *src = s->p + 1;
    if (c != '"' || sb_jscan_string(s, key, 0) != SB_JSCAN_OK)
        return SB_JSCAN_SYNTAX;
    size_t len = (size_t)(s->p - 1 - src);
    int plain = key->base == (const char *)src;
    for (unsigned i = 0; i < seen->n; ++i) {
        if (seen->k[i].plain && plain) {
            if (seen->k[i].len == len && memcmp(seen->k[i].src, src, len) == 0)
                return SB_JSCAN_SYNTAX;
        } else if (sb_jscan_same_key(seen->k[i].src, seen->k[i].len, src, len)) {
            return SB_JSCAN_SYNTAX;
        }
    }
    if (seen->n < SB_JSCAN_KEYS)
        seen->k[seen->n++] = (sb_jscan_key_t){src, len, plain};
    if (sb_jscan_peek(s) != ':')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    return 1;
}

#endif
