/*
 * What switchboard's two strict JSON readers share of lexing strings: the
 * general reader (src/json.c, which decodes in place) and the chunk scanner
 * (src/chunk.c, made for one message shape). Both take JSON exactly as
 * jansson reads it by default: UTF-8 only, no \u0000 (C strings downstream
 * would be cut there), UTF-16 surrogates only as a high-low pair.
 */
#ifndef SB_JSONLEX_H
#define SB_JSONLEX_H

#include <stddef.h>

/*
 * Length of the UTF-8 sequence starting at p (a byte >= 0x80), or 0 when it is
 * not well-formed: overlong forms, UTF-16 surrogates and code points past
 * U+10FFFF are refused (RFC 3629; Unicode's table 3-7).
 */
static inline size_t sb_utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    unsigned c = p[0];
    if (c >= 0xC2 && c <= 0xDF)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* The four hex digits at p, or -1. */
static inline long sb_hex4(const unsigned char *p)
{
    long v = 0;
    for (int i = 0; i < 4; ++i) {
        unsigned c = p[i];
        if (c - '0' < 10)
            c -= '0';
        else if ((c | 0x20) - 'a' < 6)
            c = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | c;
    }
    return v;
}

/*
 * Decodes the escape at p (its backslash; the string ends before `end`) into
 * *o and moves *o on. Returns how many bytes it read (2, 6 or 12), or 0 when
 * it is not a valid escape. It never writes more bytes than it reads, which
 * is what lets a string be decoded over itself.
 */
static inline size_t sb_json_unescape(const unsigned char *p, const unsigned char *end, char **o)
{
    if (end - p < 2)
        return 0;
    char c;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        c = (char)p[1];
        break;
    case 'b':
        c = '\b';
        break;
    case 'f':
        c = '\f';
        break;
    case 'n':
        c = '\n';
        break;
    case 'r':
        c = '\r';
        break;
    case 't':
        c = '\t';
        break;
    case 'u': {
        long cp = end - p >= 6 ? sb_hex4(p + 2) : -1;
        size_t n = 6;
        if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
            return 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* only a pair of surrogates makes a code point */
            long lo = end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? sb_hex4(p + 8) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return 0;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            n = 12;
        }
        char *w = *o;
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xC0 | cp >> 6);
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xE0 | cp >> 12);
            *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *w++ = (char)(0xF0 | cp >> 18);
            *w++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        }
        *o = w;
        return n;
    }
    default:
        return 0;
    }
    *(*o)++ = c;
    return 2;
}

#endif
