/*
 * A strict one-pass JSON scanner for reading provider events into the turn's
 * delta (chunk.c's chat.completion.chunk, and each wire's events), and
 * Retell's events into what its channel needs (retell_event.c): no
 * allocation, no tree; strings stay in the input unless they hold escapes,
 * which are decoded into scratch. The rules are jansson's defaults: UTF-8
 * only, no \u0000, integers within long long. A reader walks an object with
 * sb_jscan_member (or, knowing its keys, jscan_keys.h's SB_JSCAN_NEXT_MEMBER),
 * reads the members it knows and skips the rest; a skipped value is checked
 * as strictly as a read one. Failures come in two kinds: bad syntax stops the
 * scan at once; a field of the wrong type is only noted (SB_JSCAN_WRONG),
 * since a later duplicate key may replace it. Static inline: the scanner is
 * the per-token hot path.
 *
 * Repeated keys, one rule for every reader. A key the reader acts on (reads,
 * or looks at to decide anything), repeated in the object it is in, is
 * treated as the jansson reading the reader replaced treated it: chunk.c and
 * wire_anthropic.c take the last copy (jansson's default: hence SB_JSCAN_WRONG
 * above), wire_gemini.c and wire_responses.c refuse the event (their
 * predecessors loaded with JSON_REJECT_DUPLICATES; jscan_keys.h gives each
 * such key a bit), and so does retell_event.c, which had no predecessor. A
 * repeat of any other key, in an object walked or in a value skipped, is
 * never looked for: whichever copy counted, what is read would be the same,
 * and remembering every key of every object costs more than reading it (the
 * square of its size, compared pairwise, on hostile input). So the two wires
 * take events jansson refused, which their fuzz targets know.
 */
#ifndef SB_JSCAN_H
#define SB_JSCAN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && !defined(SB_JSCAN_PORTABLE) /* SB_JSCAN_PORTABLE: the 8-byte test everywhere, to test it */
#define SB_JSCAN_SSE2 1
#include <emmintrin.h>
#endif

#include "jsonlex.h"
#include "sb/str.h"

/* The scanner's smallest steps, inlined wherever they are used: a call would cost as much as the step. */
#define SB_JSCAN_INLINE __attribute__((always_inline))

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

/* What the one-letter escapes stand for, by the letter after the backslash (0: not one of them). */
static const char sb_jscan_unescaped[256] __attribute__((unused)) = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

#define SB_JSCAN_DIGIT(c) ((unsigned)(c) - '0' < 10)
#define SB_JSCAN_KEY(k, lit) ((k).len == sizeof(lit) - 1 && memcmp((k).base, lit, sizeof(lit) - 1) == 0)

/* Skips whitespace; returns the next byte without taking it, or -1 at the end. */
static inline int sb_jscan_peek(sb_jscan_t *s)
{
    const unsigned char *p = s->p, *end = s->end;
    if (p<end && * p> ' ') /* most often: no whitespace at all */
        return *p;
    if (end - p >= 2 && *p == ' ' && p[1] > ' ') { /* or one space (after a colon, in some providers' JSON) */
        s->p = p + 1;
        return p[1];
    }
    /* the four JSON whitespace bytes are all <= ' ', and other bytes there are errors anyway */
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        ++p;
    s->p = p;
    return p < end ? *p : -1;
}

/*
 * The bytes of v (8 bytes as loaded from memory, the first in the low bits)
 * that need a closer look in a string: a quote, a backslash, a control
 * character or a byte >= 0x80, each flagged by its high bit (the classic "has
 * a zero byte" test). A borrow can flag a byte past a real one, never before
 * it: the lowest flag is exact, and so is whether there is any.
 */
static inline SB_JSCAN_INLINE uint64_t sb_jscan_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t quote = v ^ ones * '"', backslash = v ^ ones * '\\';
    return (((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | v) & highs;
}

/* 8 bytes at p, the first in the low bits whatever the machine's byte order. */
static inline SB_JSCAN_INLINE uint64_t sb_jscan_load8(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#if defined(SB_JSCAN_SSE2)
#define SB_JSCAN_BLOCK 16
/* How many of the 16 bytes at p come before the first that needs a closer look in a string: 16 when none does. */
static inline SB_JSCAN_INLINE unsigned sb_jscan_plain_prefix(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    /* as signed bytes, a control character and a byte >= 0x80 are both below ' ' */
    __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                   _mm_cmplt_epi8(v, _mm_set1_epi8(' ')));
    return (unsigned)__builtin_ctz((unsigned)_mm_movemask_epi8(special) | 0x10000u);
}
#else
#define SB_JSCAN_BLOCK 8
/* How many of the 8 bytes at p come before the first that needs a closer look in a string: 8 when none does. */
static inline SB_JSCAN_INLINE unsigned sb_jscan_plain_prefix(const unsigned char *p)
{
    uint64_t special = sb_jscan_special(sb_jscan_load8(p));
    return special != 0 ? (unsigned)__builtin_ctzll(special) >> 3 : 8;
}
#endif

/* The first byte at or after p that a string scan must look at (see sb_jscan_special), or end. */
static inline SB_JSCAN_INLINE const unsigned char *sb_jscan_plain_run(const unsigned char *p, const unsigned char *end)
{
    /* most of a chunk is plain ASCII text: pass over it a block at a time, then land on the byte that ends the run */
    while (end - p >= SB_JSCAN_BLOCK) {
        unsigned n = sb_jscan_plain_prefix(p);
        p += n;
        if (n < SB_JSCAN_BLOCK)
            return p;
    }
    while (p < end && sb_jscan_class[*p] == SB_JSCAN_PLAIN)
        ++p;
    return p;
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
        /* text between escapes (a model's words with line breaks) is mostly plain: copy it a block at a time */
        while (end - p >= SB_JSCAN_BLOCK) {
            n = sb_jscan_plain_prefix(p);
            if (n == SB_JSCAN_BLOCK) {
                memcpy(o, p, SB_JSCAN_BLOCK);
                o += SB_JSCAN_BLOCK;
                p += SB_JSCAN_BLOCK;
                continue;
            }
            /* the bytes before the one that ends the run, and no more: past them the scratch may hold no room */
            for (size_t piece = SB_JSCAN_BLOCK / 2; piece > 0; piece /= 2)
                if (n & piece) {
                    memcpy(o, p, piece);
                    o += piece;
                    p += piece;
                }
            break;
        }
        if (p == end)
            break;
        if (*p == '\\' && end - p >= 2 && sb_jscan_unescaped[p[1]] != 0) { /* \n, \" and the like: most escapes in words */
            *o++ = sb_jscan_unescaped[p[1]];
            p += 2;
            continue;
        }
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

/* The rest of sb_jscan_string from p, a byte that is not plain ASCII: apart, so that the common case stays small. */
static __attribute__((noinline, unused)) int sb_jscan_string_rest(sb_jscan_t *s, const unsigned char *start, const unsigned char *p,
                                                                  sb_str_t *out, int keep)
{
    const unsigned char *end = s->end;
    for (;;) {
        size_t n;
        if (p == end)
            return SB_JSCAN_SYNTAX;
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
            break;
        case SB_JSCAN_ESCAPE:
            return sb_jscan_decode_string(s, start, p, out, keep);
        default:
            return SB_JSCAN_SYNTAX;
        }
        p = sb_jscan_plain_run(p, end);
    }
}

/*
 * Scans the string whose opening quote is at the cursor. A string without
 * escapes is left in the input; one with escapes is decoded into scratch,
 * which `keep` reserves for it (otherwise the next string may reuse the room).
 */
static inline int sb_jscan_string(sb_jscan_t *s, sb_str_t *out, int keep)
{
    const unsigned char *start = s->p + 1, *p = sb_jscan_plain_run(start, s->end);
    if (p < s->end && *p == '"') { /* plain ASCII: most strings, and nearly every key */
        out->base = (const char *)start;
        out->len = (size_t)(p - start);
        s->p = p + 1;
        return SB_JSCAN_OK;
    }
    return sb_jscan_string_rest(s, start, p, out, keep);
}

/*
 * Scans a number (RFC 8259 grammar, nothing more). An integer literal must
 * fit a long long, as jansson requires; it is stored in *value and *integer
 * set. Fractions and exponents are checked for form only.
 */
static __attribute__((noinline, unused)) int sb_jscan_number_rest(sb_jscan_t *s, int *integer, long long *value)
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

static inline int sb_jscan_number(sb_jscan_t *s, int *integer, long long *value)
{
    /* most numbers in an event are counts: a few digits, no sign, no fraction, no exponent */
    const unsigned char *p = s->p, *end = s->end, *stop = end - p > 18 ? p + 18 : end; /* 18 digits always fit */
    uint64_t v = 0;
    unsigned digit;
    if (p < end && *p == '0')
        ++p;
    else
        while (p < stop && (digit = (unsigned)*p - '0') < 10) {
            v = v * 10 + digit;
            ++p;
        }
    if (p == s->p || (p < end && (SB_JSCAN_DIGIT(*p) || *p == '.' || (*p | 0x20) == 'e')))
        return sb_jscan_number_rest(s, integer, value);
    *integer = 1;
    *value = (long long)v;
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

/* Checks and skips a value that is not an array or object, whose first byte c is at the cursor. */
static inline int sb_jscan_skip_scalar(sb_jscan_t *s, int c)
{
    sb_str_t str;
    int integer;
    long long v;
    switch (c) {
    case '"':
        return sb_jscan_string(s, &str, 0);
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

_Static_assert(SB_JSCAN_MAX_DEPTH <= 64, "sb_jscan_skip_nested keeps a bit per level in 64");

/* Past the JSON whitespace at p (the cursor of sb_jscan_peek, held in a register). */
static inline SB_JSCAN_INLINE const unsigned char *sb_jscan_space(const unsigned char *p, const unsigned char *end)
{
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        ++p;
    return p;
}

/*
 * Checks and skips the array or object whose bracket is at the cursor, in a
 * loop rather than by recursion: which of the levels open are objects is a
 * bit each. `depth` counts the arrays and objects around it; one past the
 * limit is refused, which keeps hostile input (up to MAX_EVENT_BYTES of
 * brackets) from mattering and the bits within 64. The cursor is kept in a
 * register, and plain strings and short counts, most of what is skipped,
 * are passed over inline.
 */
static __attribute__((noinline, unused)) int sb_jscan_skip_nested(sb_jscan_t *s, unsigned depth)
{
    const unsigned char *p = sb_jscan_space(s->p, s->end), *end = s->end, *q;
    uint64_t objects = 0; /* bit 0: the innermost level open, bit 1 the one around it, ... */
    unsigned level = 0;
    int c = p < end ? *p : -1;
    sb_str_t str;
open: /* c, at p, opens a level */
    if (depth + level >= SB_JSCAN_MAX_DEPTH)
        return SB_JSCAN_SYNTAX;
    ++level;
    objects = objects << 1 | (c == '{');
    if ((p = sb_jscan_space(p + 1, end)) == end)
        return SB_JSCAN_SYNTAX;
    if ((c = *p) == ((objects & 1) ? '}' : ']'))
        goto close;
element: /* c, at p, starts an element, or a member's key */
    if (objects & 1) {
        if (c != '"')
            return SB_JSCAN_SYNTAX;
        if ((q = sb_jscan_plain_run(p + 1, end)) < end && *q == '"') {
            p = q + 1;
        } else {
            s->p = p;
            if (sb_jscan_string_rest(s, p + 1, q, &str, 0) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            p = s->p;
        }
        if ((p = sb_jscan_space(p, end)) == end || *p != ':' || (p = sb_jscan_space(p + 1, end)) == end)
            return SB_JSCAN_SYNTAX;
        c = *p;
    }
    switch (c) {
    case '{':
    case '[':
        goto open;
    case '"':
        if ((q = sb_jscan_plain_run(p + 1, end)) < end && *q == '"') {
            p = q + 1;
            break;
        }
        s->p = p;
        if (sb_jscan_string_rest(s, p + 1, q, &str, 0) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        p = s->p;
        break;
    default:
        s->p = p;
        if (sb_jscan_skip_scalar(s, c) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        p = s->p;
    }
next: /* after a value */
    if ((p = sb_jscan_space(p, end)) == end)
        return SB_JSCAN_SYNTAX;
    if ((c = *p) == ',') {
        if ((p = sb_jscan_space(p + 1, end)) == end)
            return SB_JSCAN_SYNTAX;
        c = *p;
        goto element;
    }
    if (c != ((objects & 1) ? '}' : ']'))
        return SB_JSCAN_SYNTAX;
close: /* c, at p, closes the innermost level */
    ++p;
    objects >>= 1;
    if (--level > 0)
        goto next;
    s->p = p;
    return SB_JSCAN_OK;
}

/* Checks and skips any value. `depth` counts the arrays and objects around it (see sb_jscan_skip_nested). */
static inline int sb_jscan_skip(sb_jscan_t *s, unsigned depth)
{
    int c = sb_jscan_peek(s);
    if (c == '{' || c == '[')
        return sb_jscan_skip_nested(s, depth);
    return sb_jscan_skip_scalar(s, c);
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
