/*
 * A strict one-pass JSON scanner for reading provider events into the turn's
 * delta (chunk.c's chat.completion.chunk, and each wire's events): no
 * allocation, no tree; strings stay in the input unless they hold escapes,
 * which are decoded into scratch. The rules are jansson's defaults: UTF-8
 * only, no \u0000, integers within long long. A reader walks an object with
 * sb_jscan_member, reads the members it knows and skips the rest. Failures
 * come in two kinds: bad syntax stops the scan at once; a field of the wrong
 * type is only noted (SB_JSCAN_WRONG), since a later duplicate key may
 * replace it. Static inline: the scanner is the per-token hot path.
 */
#ifndef SB_JSCAN_H
#define SB_JSCAN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jsonlex.h"
#include "sb/str.h"

#define SB_JSCAN_MAX_DEPTH 64 /* nested arrays and objects: hostile input cannot exhaust the stack (real events use < 10) */

enum {
    SB_JSCAN_SYNTAX = -1, /* not strict JSON, or past a limit: give up */
    SB_JSCAN_OK = 0,
    SB_JSCAN_WRONG = 1,   /* valid JSON, but a field switchboard uses has the wrong type */
    SB_JSCAN_ENTERED = 2, /* sb_jscan_enter_or_null: inside the container */
};

typedef struct {
    const unsigned char *p, *end;
    char *scratch;       /* where the next decoded string goes */
    const char *problem; /* the last wrong field that can be named for the operator */
} sb_jscan_t;

/* What a byte means inside a string. */
enum { SB_JSCAN_PLAIN, SB_JSCAN_QUOTE, SB_JSCAN_ESCAPE, SB_JSCAN_CONTROL, SB_JSCAN_MULTIBYTE };

static const unsigned char sb_jscan_class[256] __attribute__((unused)) = {
    [0x00 ... 0x1F] = SB_JSCAN_CONTROL, /* RFC 8259 section 7: must be escaped */
    ['"'] = SB_JSCAN_QUOTE,
    ['\\'] = SB_JSCAN_ESCAPE,
    [0x80 ... 0xFF] = SB_JSCAN_MULTIBYTE,
};

#define SB_JSCAN_DIGIT(c) ((unsigned)(c) - '0' < 10)
#define SB_JSCAN_KEY(k, lit) ((k).len == sizeof(lit) - 1 && memcmp((k).base, lit, sizeof(lit) - 1) == 0)

/* Skips whitespace; returns the next byte without taking it, or -1 at the end. */
static inline int sb_jscan_peek(sb_jscan_t *s)
{
    const unsigned char *p = s->p, *end = s->end;
    /* the four JSON whitespace bytes are all <= ' ', and other bytes there are errors anyway */
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        ++p;
    s->p = p;
    return p < end ? *p : -1;
}

/*
 * Whether any of the 8 bytes in v needs a closer look in a string: a quote, a
 * backslash, a control character or a byte >= 0x80 (the classic "has a zero
 * byte" test; exact about whether one exists, though not about which).
 */
static inline int sb_jscan_any_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t quote = v ^ ones * '"', backslash = v ^ ones * '\\';
    return ((((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | v) & highs) != 0;
}

/*
 * The rest of a string that holds an escape at p: copies what came before it
 * (from start) into scratch and decodes from there. Each escape is at least
 * as long as what it stands for, so the string never outgrows its source.
 */
static inline int sb_jscan_decode_string(sb_jscan_t *s, const unsigned char *start, const unsigned char *p, sb_str_t *out, int keep)
{
    const unsigned char *end = s->end;
    char *o = s->scratch;
    memcpy(o, start, (size_t)(p - start));
    o += p - start;
    while (p < end) {
        size_t n;
        uint64_t v;
        /* text between escapes (a model's words with line breaks) is mostly plain: copy it 8 bytes at a time */
        while (end - p >= 8 && (memcpy(&v, p, 8), !sb_jscan_any_special(v))) {
            memcpy(o, &v, 8);
            o += 8;
            p += 8;
        }
        if (p == end)
            break;
        switch (sb_jscan_class[*p]) {
        case SB_JSCAN_PLAIN:
            *o++ = (char)*p++;
            continue;
        case SB_JSCAN_QUOTE:
            out->base = s->scratch;
            out->len = (size_t)(o - s->scratch);
            if (keep)
                s->scratch = o;
            s->p = p + 1;
            return SB_JSCAN_OK;
        case SB_JSCAN_MULTIBYTE:
            if ((n = sb_utf8_len(p, end)) == 0)
                return SB_JSCAN_SYNTAX;
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        case SB_JSCAN_CONTROL:
            return SB_JSCAN_SYNTAX;
        }
        if ((n = sb_json_unescape(p, end, &o)) == 0) /* an escape */
            return SB_JSCAN_SYNTAX;
        p += n;
    }
    return SB_JSCAN_SYNTAX;
}

/*
 * Scans the string whose opening quote is at the cursor. A string without
 * escapes is left in the input; one with escapes is decoded into scratch,
 * which `keep` reserves for it (otherwise the next string may reuse the room).
 */
static inline int sb_jscan_string(sb_jscan_t *s, sb_str_t *out, int keep)
{
    const unsigned char *start = s->p + 1, *p = start, *end = s->end;
    for (;;) {
        uint64_t v;
        /* most of a chunk is plain ASCII text: pass over it 8 bytes at a time */
        while (end - p >= 8 && (memcpy(&v, p, 8), !sb_jscan_any_special(v)))
            p += 8;
        while (p < end && sb_jscan_class[*p] == SB_JSCAN_PLAIN)
            ++p;
        if (p == end)
            return SB_JSCAN_SYNTAX;
        size_t n;
        switch (sb_jscan_class[*p]) {
        case SB_JSCAN_QUOTE:
            out->base = (const char *)start;
            out->len = (size_t)(p - start);
            s->p = p + 1;
            return SB_JSCAN_OK;
        case SB_JSCAN_MULTIBYTE:
            if ((n = sb_utf8_len(p, end)) == 0)
                return SB_JSCAN_SYNTAX;
            p += n;
            continue;
        case SB_JSCAN_ESCAPE:
            return sb_jscan_decode_string(s, start, p, out, keep);
        default:
            return SB_JSCAN_SYNTAX;
        }
    }
}

/*
 * Scans a number (RFC 8259 grammar, nothing more). An integer literal must
 * fit a long long, as jansson requires; it is stored in *value and *integer
 * set. Fractions and exponents are checked for form only.
 */
static inline int sb_jscan_number(sb_jscan_t *s, int *integer, long long *value)
{
    const unsigned char *p = s->p, *end = s->end;
    int negative = *p == '-';
    p += negative;
    if (p == end || !SB_JSCAN_DIGIT(*p))
        return SB_JSCAN_SYNTAX;
    const unsigned char *digits = p;
    uint64_t v = 0;
    if (*p == '0')
        ++p;
    else
        while (p < end && SB_JSCAN_DIGIT(*p))
            v = v * 10 + (*p++ - '0'); /* wraps past 19 digits: those are refused below */
    size_t ndigits = (size_t)(p - digits);
    *integer = 1;
    if (p < end && *p == '.') {
        if (++p == end || !SB_JSCAN_DIGIT(*p))
            return SB_JSCAN_SYNTAX;
        while (p < end && SB_JSCAN_DIGIT(*p))
            ++p;
        *integer = 0;
    }
    if (p < end && (*p | 0x20) == 'e') {
        ++p;
        if (p < end && (*p == '+' || *p == '-'))
            ++p;
        if (p == end || !SB_JSCAN_DIGIT(*p))
            return SB_JSCAN_SYNTAX;
        while (p < end && SB_JSCAN_DIGIT(*p))
            ++p;
        *integer = 0;
    }
    if (*integer) {
        uint64_t max = negative ? (uint64_t)LLONG_MAX + 1 : (uint64_t)LLONG_MAX;
        if (ndigits > 19 || v > max)
            return SB_JSCAN_SYNTAX;
        *value = negative ? (long long)(0 - v) : (long long)v;
    }
    s->p = p;
    return SB_JSCAN_OK;
}

static inline int sb_jscan_literal(sb_jscan_t *s, const char *lit, size_t len)
{
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, lit, len) != 0)
        return SB_JSCAN_SYNTAX;
    s->p += len;
    return SB_JSCAN_OK;
}

/*
 * Steps through an object's members. Call with *first set right after the
 * opening brace. Returns 1 with the member's key in *key (valid until the next
 * string is scanned) and the cursor at its value, 0 after the closing brace,
 * or SB_JSCAN_SYNTAX.
 */
static inline int sb_jscan_member(sb_jscan_t *s, int *first, sb_str_t *key)
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
    if (c != '"' || sb_jscan_string(s, key, 0) != SB_JSCAN_OK || sb_jscan_peek(s) != ':')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    return 1;
}

/* Like sb_jscan_member for an array: returns 1 with the cursor at the next element, 0 after the closing bracket, or
 * SB_JSCAN_SYNTAX. */
static inline int sb_jscan_element(sb_jscan_t *s, int *first)
{
    int c = sb_jscan_peek(s);
    if (c == ']') {
        ++s->p;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return SB_JSCAN_SYNTAX;
        ++s->p;
    }
    *first = 0;
    return 1;
}

/*
 * Checks and skips any value. `depth` counts the arrays and objects around it;
 * the limit keeps hostile input (up to MAX_EVENT_BYTES of brackets) from
 * exhausting the stack, since this is the one recursive function.
 */
static inline int sb_jscan_skip(sb_jscan_t *s, unsigned depth)
{
    sb_str_t str;
    int first = 1, rc, integer;
    long long v;
    switch (sb_jscan_peek(s)) {
    case '"':
        return sb_jscan_string(s, &str, 0);
    case '{':
        if (depth >= SB_JSCAN_MAX_DEPTH)
            return SB_JSCAN_SYNTAX;
        ++s->p;
        while ((rc = sb_jscan_member(s, &first, &str)) > 0)
            if (sb_jscan_skip(s, depth + 1) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
        return rc;
    case '[':
        if (depth >= SB_JSCAN_MAX_DEPTH)
            return SB_JSCAN_SYNTAX;
        ++s->p;
        while ((rc = sb_jscan_element(s, &first)) > 0)
            if (sb_jscan_skip(s, depth + 1) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
        return rc;
    case 't':
        return sb_jscan_literal(s, "true", 4);
    case 'f':
        return sb_jscan_literal(s, "false", 5);
    case 'n':
        return sb_jscan_literal(s, "null", 4);
    case '-':
    case '0' ... '9':
        return sb_jscan_number(s, &integer, &v);
    default:
        return SB_JSCAN_SYNTAX;
    }
}

/* A value of the wrong type for its field: still has to be valid JSON. */
static inline int sb_jscan_wrong(sb_jscan_t *s, unsigned depth)
{
    return sb_jscan_skip(s, depth) == SB_JSCAN_OK ? SB_JSCAN_WRONG : SB_JSCAN_SYNTAX;
}

/*
 * A field holding an object or array, or null: steps inside `open` ('{' or
 * '[') and returns SB_JSCAN_ENTERED, or returns the field's result (SB_JSCAN_OK for null, SB_JSCAN_WRONG
 * for another type, SB_JSCAN_SYNTAX).
 */
static inline int sb_jscan_enter_or_null(sb_jscan_t *s, int open, unsigned depth)
{
    int c = sb_jscan_peek(s);
    if (c == 'n')
        return sb_jscan_literal(s, "null", 4);
    if (c != open)
        return sb_jscan_wrong(s, depth);
    ++s->p;
    return SB_JSCAN_ENTERED;
}

/* A string or null; *out stays absent for null. */
static inline int sb_jscan_str_or_null(sb_jscan_t *s, sb_str_t *out, unsigned depth)
{
    *out = (sb_str_t){NULL, 0};
    switch (sb_jscan_peek(s)) {
    case '"':
        return sb_jscan_string(s, out, 1);
    case 'n':
        return sb_jscan_literal(s, "null", 4);
    default:
        return sb_jscan_wrong(s, depth);
    }
}

/* An integer in [0, limit], or null (0) when null_ok. */
static inline int sb_jscan_int(sb_jscan_t *s, long long limit, int null_ok, long long *out, unsigned depth)
{
    int c = sb_jscan_peek(s), integer;
    if (c == 'n' && null_ok) {
        *out = 0;
        return sb_jscan_literal(s, "null", 4);
    }
    if (c != '-' && !SB_JSCAN_DIGIT(c))
        return sb_jscan_wrong(s, depth);
    if (sb_jscan_number(s, &integer, out) != SB_JSCAN_OK)
        return SB_JSCAN_SYNTAX;
    return integer && *out >= 0 && *out <= limit ? SB_JSCAN_OK : SB_JSCAN_WRONG;
}

/* Folds a member's result into its object's: bad syntax ends the scan, a wrong type is remembered. */
#define SB_JSCAN_MEMBER(call, bad)                                                                                                 \
    do {                                                                                                                           \
        int r_ = (call);                                                                                                           \
        if (r_ == SB_JSCAN_SYNTAX)                                                                                                 \
            return SB_JSCAN_SYNTAX;                                                                                                \
        bad = r_;                                                                                                                  \
    } while (0)

#endif
