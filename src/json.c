/*
 * The hot-path JSON reader and vector writer (sb/json.h). The reader is one
 * recursive descent over the text that appends each value to a flat array;
 * strings are checked and decoded where they lie, numbers are only checked
 * until someone asks for their value. The writer prints floats with integer
 * arithmetic that gives printf's "%.9g" digit for digit, and dumps jansson
 * trees copying strings in runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonlex.h"
#include "sb/alloc.h"
#include "sb/json.h"

#define MAX_DEPTH 128

/* --- numbers ------------------------------------------------------------------------------------- */

/* A number's decimal digits as read, for the fast conversion: value = m x 10^exp10 when !inexact. */
struct decimal {
    uint64_t m;
    int digits;  /* significant digits in m */
    int exp10;   /* fractional digits taken off, plus the exponent */
    int inexact; /* digits were dropped: m is not the whole number */
};

/* Adds one digit to the decimal; `frac` says whether it comes after the point. */
static void add_digit(struct decimal *d, int c, int frac)
{
    if (d->m == 0 && c == 0) { /* a leading zero only says where the point is */
        d->exp10 -= frac;
    } else if (d->digits < 19) {
        d->m = d->m * 10 + (uint64_t)c;
        ++d->digits;
        d->exp10 -= frac;
    } else { /* past what 64 bits hold: the fast path is off, only the magnitude is kept */
        d->inexact = 1;
        d->exp10 += !frac;
    }
}

static int is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Scans a JSON number (RFC 8259 grammar) that starts at p; returns its end, or NULL when it is not one. */
static const char *scan_number(const char *p, const char *end, struct decimal *d)
{
    memset(d, 0, sizeof(*d));
    if (p < end && *p == '-')
        ++p;
    if (!is_digit(p, end))
        return NULL;
    if (*p == '0') /* no leading zeros: a 0 is the whole integer part */
        ++p;
    else
        while (is_digit(p, end))
            add_digit(d, *p++ - '0', 0);
    if (p < end && *p == '.') {
        if (!is_digit(++p, end))
            return NULL;
        while (is_digit(p, end))
            add_digit(d, *p++ - '0', 1);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        ++p;
        int neg = 0;
        if (p < end && (*p == '+' || *p == '-'))
            neg = *p++ == '-';
        if (!is_digit(p, end))
            return NULL;
        int e = 0;
        for (; is_digit(p, end); ++p)
            if (e < 100000) /* far past any double: beyond it only the sign matters */
                e = e * 10 + (*p - '0');
        d->exp10 += neg ? -e : e;
    }
    return p;
}

/*
 * The double nearest to the number of `len` bytes at `s` (already scanned).
 * With at most 15 digits and a power of ten up to 22 both operands are exact,
 * so one IEEE multiplication or division is correctly rounded (Clinger's fast
 * path); anything else goes to strtod.
 */
static double number_value(const char *s, size_t len)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    struct decimal d;
    scan_number(s, s + len, &d);
    if (d.m == 0 && !d.inexact)
        return *s == '-' ? -0.0 : 0.0;
    if (!d.inexact && d.digits <= 15 && d.exp10 >= -22 && d.exp10 <= 22) {
        double v = (double)d.m;
        v = d.exp10 < 0 ? v / p10[-d.exp10] : v * p10[d.exp10];
        return *s == '-' ? -v : v;
    }
    /* strtod wants a terminated string; switchboard never changes LC_NUMERIC, so the point is '.' */
    char small[64];
    char *copy = len < sizeof(small) ? small : sb_alloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    double v = strtod(copy, NULL);
    if (copy != small)
        free(copy);
    return v;
}

/* --- the reader ---------------------------------------------------------------------------------- */

struct parser {
    char *p, *end;
    sb_json_doc_t *doc;
    size_t max;
};

/* Bytes that stand for themselves inside a string: printable ASCII but the quote and the backslash. */
static const unsigned char plain[256] = {[0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1};

#define ONES 0x0101010101010101ull
#define HIGH_BITS 0x8080808080808080ull

/*
 * Whether none of the 8 bytes at p is a control character, a quote or a
 * backslash, nor (with high = HIGH_BITS) at or above 0x80: strings are mostly
 * such runs, and a word at a time they cost a fraction of a byte loop. Each
 * test flags a byte below a bound through the borrow it causes (the classic
 * zero-byte test); a flag may land on a wrong byte only after a right one, so
 * "none flagged" is exact.
 */
static inline int plain_word(const char *p, uint64_t high)
{
    uint64_t x, q, b;
    memcpy(&x, p, sizeof(x));
    q = x ^ (ONES * '"');
    b = x ^ (ONES * '\\');
    uint64_t flagged = ((x - ONES * 0x20) & ~x) | ((q - ONES) & ~q) | ((b - ONES) & ~b) | (x & high);
    return (flagged & HIGH_BITS) == 0;
}

static void skip_space(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ++ps->p;
}

/* Appends a value; its index, or -1 past max_values. */
static long push(struct parser *ps, sb_json_kind_t kind)
{
    sb_json_doc_t *doc = ps->doc;
    if (doc->n == ps->max)
        return -1;
    if (doc->n == doc->cap) {
        size_t cap = doc->cap ? doc->cap * 2 : 64;
        if (cap > ps->max)
            cap = ps->max;
        doc->values = sb_realloc(doc->values, cap * sizeof(*doc->values));
        doc->cap = cap;
    }
    sb_json_value_t *v = &doc->values[doc->n];
    v->str = NULL;
    v->len = 0;
    v->span = 1;
    v->kind = (uint8_t)kind;
    return (long)doc->n++;
}

/* A string at ps->p (its opening quote), decoded in place over itself and NUL-terminated where the closing quote was at the latest.
 */
static int parse_string(struct parser *ps, long idx)
{
    char *start = ps->p + 1, *r = start, *w = start, *end = ps->end;
    for (;;) {
        char *run = r; /* bytes that stand for themselves: moved only once something before them was decoded shorter */
        while (end - r >= 8 && plain_word(r, HIGH_BITS))
            r += 8;
        while (r < end && plain[(unsigned char)*r])
            ++r;
        if (w != run)
            memmove(w, run, (size_t)(r - run));
        w += r - run;
        if (r == end)
            return -1;
        unsigned char c = (unsigned char)*r;
        if (c == '"')
            break;
        if (c == '\\') {
            size_t n = sb_json_unescape((const unsigned char *)r, (const unsigned char *)end, &w);
            if (n == 0)
                return -1;
            r += n;
            continue;
        }
        size_t n = c < 0x80 ? 0 : sb_utf8_len((const unsigned char *)r, (const unsigned char *)end);
        if (n == 0) /* a control character, or bytes that are not UTF-8 */
            return -1;
        memmove(w, r, n);
        w += n;
        r += n;
    }
    if (w - start > UINT32_MAX)
        return -1;
    *w = '\0';
    sb_json_value_t *v = &ps->doc->values[idx];
    v->str = start;
    v->len = (uint32_t)(w - start);
    ps->p = r + 1;
    return 0;
}

static int parse_value(struct parser *ps, unsigned depth);

/* The elements of an array or the members of an object, after its opening bracket. */
static int parse_container(struct parser *ps, long idx, char close, unsigned depth)
{
    int object = close == '}';
    uint32_t count = 0;
    if (depth >= MAX_DEPTH)
        return -1;
    ++ps->p;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ++ps->p;
        return 0;
    }
    for (;;) {
        if (object) {
            skip_space(ps);
            long key = ps->p < ps->end && *ps->p == '"' ? push(ps, SB_JSON_STRING) : -1;
            if (key < 0 || parse_string(ps, key) != 0)
                return -1;
            skip_space(ps);
            if (ps->p == ps->end || *ps->p != ':')
                return -1;
            ++ps->p;
        }
        if (parse_value(ps, depth + 1) != 0)
            return -1;
        ++count;
        skip_space(ps);
        if (ps->p == ps->end)
            return -1;
        char c = *ps->p++;
        if (c == close)
            break;
        if (c != ',')
            return -1;
    }
    sb_json_value_t *v = &ps->doc->values[idx];
    v->len = count;
    v->span = (uint32_t)(ps->doc->n - (size_t)idx);
    return 0;
}

static int parse_literal(struct parser *ps, const char *word, sb_json_kind_t kind)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0 || push(ps, kind) < 0)
        return -1;
    ps->p += n;
    return 0;
}

static int parse_value(struct parser *ps, unsigned depth)
{
    skip_space(ps);
    if (ps->p == ps->end)
        return -1;
    long idx;
    switch (*ps->p) {
    case '{':
        return (idx = push(ps, SB_JSON_OBJECT)) < 0 ? -1 : parse_container(ps, idx, '}', depth);
    case '[':
        return (idx = push(ps, SB_JSON_ARRAY)) < 0 ? -1 : parse_container(ps, idx, ']', depth);
    case '"':
        return (idx = push(ps, SB_JSON_STRING)) < 0 ? -1 : parse_string(ps, idx);
    case 't':
        return parse_literal(ps, "true", SB_JSON_TRUE);
    case 'f':
        return parse_literal(ps, "false", SB_JSON_FALSE);
    case 'n':
        return parse_literal(ps, "null", SB_JSON_NULL);
    default: {
        struct decimal d;
        const char *e = scan_number(ps->p, ps->end, &d);
        if (e == NULL || e - ps->p > UINT32_MAX || (idx = push(ps, SB_JSON_NUMBER)) < 0)
            return -1;
        sb_json_value_t *v = &ps->doc->values[idx];
        v->str = ps->p;
        v->len = (uint32_t)(e - ps->p);
        ps->p = (char *)e;
        /* only a number outside the fast path can overflow; it is converted now to find out */
        if ((d.inexact || d.exp10 > 22) && isinf(number_value(v->str, v->len)))
            return -1;
        return 0;
    }
    }
}

int sb_json_parse(sb_json_doc_t *doc, char *text, size_t len, size_t max_values)
{
    struct parser ps = {text, text + len, doc, max_values < UINT32_MAX ? max_values : UINT32_MAX};
    doc->n = 0;
    if (parse_value(&ps, 0) == 0) {
        skip_space(&ps);
        if (ps.p == ps.end)
            return 0;
    }
    doc->n = 0;
    return -1;
}

void sb_json_doc_dispose(sb_json_doc_t *doc)
{
    free(doc->values);
    doc->values = NULL;
    doc->n = doc->cap = 0;
}

const sb_json_value_t *sb_json_root(const sb_json_doc_t *doc)
{
    return doc->n > 0 ? &doc->values[0] : NULL;
}

int sb_json_is(const sb_json_value_t *v, sb_json_kind_t kind)
{
    return v != NULL && v->kind == kind;
}

const sb_json_value_t *sb_json_get(const sb_json_value_t *object, const char *key)
{
    if (!sb_json_is(object, SB_JSON_OBJECT))
        return NULL;
    const sb_json_value_t *k = object + 1;
    for (uint32_t i = 0; i < object->len; ++i) {
        const sb_json_value_t *v = k + 1;
        if (strcmp(k->str, key) == 0) /* keys hold no NUL, so this compares them whole */
            return v;
        k = v + v->span;
    }
    return NULL;
}

const sb_json_value_t *sb_json_at(const sb_json_value_t *array, size_t i)
{
    size_t j;
    const sb_json_value_t *e;
    sb_json_array_foreach(array, j, e)
    {
        if (j == i)
            return e;
    }
    return NULL;
}

const char *sb_json_string(const sb_json_value_t *v)
{
    return sb_json_is(v, SB_JSON_STRING) ? v->str : NULL;
}

double sb_json_number(const sb_json_value_t *v)
{
    return sb_json_is(v, SB_JSON_NUMBER) ? number_value(v->str, v->len) : 0.0;
}

/* --- a jansson tree, read at this reader's speed ---------------------------------------------------- */

static json_t *to_jansson(const sb_json_value_t *v);

/* A number as jansson reads it: a token without fraction or exponent is an integer, NULL past json_int_t. */
static json_t *number_to_jansson(const sb_json_value_t *v)
{
    const char *p = v->str, *end = v->str + v->len;
    if (memchr(p, '.', v->len) != NULL || memchr(p, 'e', v->len) != NULL || memchr(p, 'E', v->len) != NULL)
        return json_real(number_value(v->str, v->len));
    int negative = *p == '-';
    p += negative;
    uint64_t magnitude = 0, limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < end; ++p) {
        if (magnitude > (limit - (uint64_t)(*p - '0')) / 10)
            return NULL; /* jansson refuses it ("too big integer"): it says so */
        magnitude = magnitude * 10 + (uint64_t)(*p - '0');
    }
    json_int_t i = negative ? (magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)magnitude) : (json_int_t)magnitude;
    return json_integer(i);
}

static json_t *container_to_jansson(const sb_json_value_t *v)
{
    const sb_json_value_t *e = v + 1;
    if (v->kind == SB_JSON_ARRAY) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < v->len; ++i, e += e->span) {
            json_t *x = to_jansson(e);
            if (x == NULL || json_array_append_new(a, x) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    for (uint32_t i = 0; i < v->len; ++i) { /* a key (a string: one value), then its value */
        const sb_json_value_t *value = e + 1;
        /* a repeated key: jansson's JSON_REJECT_DUPLICATES refuses the document, and says so */
        json_t *x = json_object_getn(o, e->str, e->len) == NULL ? to_jansson(value) : NULL;
        if (x == NULL || json_object_setn_new_nocheck(o, e->str, e->len, x) != 0) {
            json_decref(o);
            return NULL;
        }
        e = value + value->span;
    }
    return o;
}

/* The jansson value of `v` and everything inside it, or NULL where jansson would refuse the document. */
static json_t *to_jansson(const sb_json_value_t *v)
{
    switch ((sb_json_kind_t)v->kind) {
    case SB_JSON_NULL:
        return json_null();
    case SB_JSON_FALSE:
        return json_false();
    case SB_JSON_TRUE:
        return json_true();
    case SB_JSON_NUMBER:
        return number_to_jansson(v);
    case SB_JSON_STRING: /* checked as jansson checks it: valid UTF-8, no NUL */
        return json_stringn_nocheck(v->str, v->len);
    case SB_JSON_ARRAY:
    case SB_JSON_OBJECT:
        return container_to_jansson(v);
    }
    return NULL;
}

json_t *sb_json_loadb(const char *text, size_t len, json_error_t *error)
{
    /* the reader decodes strings in place: a copy, so that `text` stays as it was */
    char *copy = sb_alloc(len + 1);
    memcpy(copy, text, len);
    sb_json_doc_t doc = {0};
    json_t *root = NULL;
    /* without JSON_DECODE_ANY jansson wants an array or an object, and says so of anything else */
    if (sb_json_parse(&doc, copy, len, len + 1) == 0 && sb_json_root(&doc)->kind >= SB_JSON_ARRAY)
        root = to_jansson(sb_json_root(&doc));
    sb_json_doc_dispose(&doc);
    free(copy);
    /* what this reader refuses or leaves to jansson (deeper nesting, a big integer, a repeated key, bad syntax): jansson
     * reads it, and its tree or its words about the error are the answer, as they always were */
    return root != NULL ? root : json_loadb(text, len, JSON_REJECT_DUPLICATES, error);
}

/* --- the writer ---------------------------------------------------------------------------------- */

typedef unsigned __int128 u128;

static const uint64_t pow10_64[] = {1ull,
                                    10ull,
                                    100ull,
                                    1000ull,
                                    10000ull,
                                    100000ull,
                                    1000000ull,
                                    10000000ull,
                                    100000000ull,
                                    1000000000ull,
                                    10000000000ull,
                                    100000000000ull,
                                    1000000000000ull,
                                    10000000000000ull,
                                    100000000000000ull,
                                    1000000000000000ull,
                                    10000000000000000ull,
                                    100000000000000000ull,
                                    1000000000000000000ull,
                                    10000000000000000000ull};

/*
 * floor(|f| x 10^q) and what the rest is (-2: nothing, -1: under 1/2, 0: 1/2,
 * 1: over), for |f| = m x 2^-sh: exact, in 64 bits while the product fits
 * (|f| above about 1e-4, the embeddings' range), else in 128. -1 when it fits
 * neither.
 */
static int scale(uint32_t m, unsigned sh, int q, uint64_t *ip, int *cmp)
{
    if (q < 0 || q > 31 || sh >= 128)
        return -1;
    if (q <= 12 && sh < 64) { /* m x 10^12 < 2^64 */
        uint64_t num = (uint64_t)m * pow10_64[q], i = num >> sh, rem = num - (i << sh), half = sh ? 1ull << (sh - 1) : 0;
        *ip = i;
        *cmp = rem == 0 ? -2 : rem < half ? -1 : rem > half;
        return 0;
    }
    u128 num = (u128)m * (q <= 19 ? (u128)pow10_64[q] : (u128)pow10_64[19] * pow10_64[q - 19]); /* < 2^24 x 10^31 < 2^128 */
    u128 i = num >> sh, rem = num - (i << sh), half = sh ? (u128)1 << (sh - 1) : 0;
    if (i > UINT64_MAX)
        return -1;
    *ip = (uint64_t)i;
    *cmp = rem == 0 ? -2 : rem < half ? -1 : rem > half;
    return 0;
}

/*
 * The 9 significant digits of |f| = m x 2^e2 (e2 <= 0), rounded half to even
 * from the exact value as glibc's printf does, and the decimal exponent of
 * the first: |f| ~ digits x 10^(k - 8). 0, or -1 when the exact product would
 * not fit 128 bits (|f| below about 1e-23).
 */
static int nine_digits(uint32_t m, int e2, uint32_t *digits, int *k)
{
    unsigned sh = (unsigned)-e2;
    int bits = e2 + 32 - __builtin_clz(m); /* |f| lies in [2^(bits-1), 2^bits) */
    int kk = ((bits - 1) * 1233) >> 12;    /* floor((bits-1) log10 2): floor(log10 |f|) or one less */
    uint64_t ip;
    int cmp;
    for (;;) {
        if (scale(m, sh, 8 - kk, &ip, &cmp) != 0)
            return -1;
        if (ip < 100000000u) { /* the estimate's rounding was off: never seen, but cheap to allow */
            --kk;
            continue;
        }
        if (ip >= 10000000000u) {
            ++kk;
            continue;
        }
        break;
    }
    if (ip >= 1000000000u) { /* ten digits: drop the last, which with the rest below it decides the rounding */
        unsigned r10 = (unsigned)(ip % 10);
        ip /= 10;
        cmp = r10 > 5 ? 1 : r10 < 5 ? -1 : cmp == -2 ? 0 : 1;
        ++kk;
    }
    if (cmp > 0 || (cmp == 0 && (ip & 1)))
        ++ip;
    if (ip == 1000000000u) /* 9.99999999x rounded up to 10 */
        ip = 100000000u, ++kk;
    *digits = (uint32_t)ip;
    *k = kk;
    return 0;
}

size_t sb_json_format_float(char out[SB_JSON_FLOAT_MAX], float f)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    if (!isfinite(f))
        f = 0.0f;
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    uint32_t be = (bits >> 23) & 0xFF, m = bits & 0x7FFFFF;
    int e2 = be != 0 ? (int)be - 150 : -149;
    if (be != 0)
        m |= 0x800000;
    char *o = out;
    if (bits >> 31)
        *o++ = '-';
    if (m == 0) { /* common in sparse vectors */
        *o++ = '0';
        *o = '\0';
        return (size_t)(o - out);
    }
    uint32_t digits;
    int k;
    if (e2 > 0 || nine_digits(m, e2, &digits, &k) != 0) /* |f| >= 2^24 or below ~1e-23: printf it is */
        return (size_t)snprintf(out, SB_JSON_FLOAT_MAX, "%.9g", (double)f);

    char d[9]; /* the digits, two at a time from a table: a division by 100 is a multiplication, by 10 twice as many */
    uint32_t hi = digits % 100000000u / 10000u, lo = digits % 10000u;
    d[0] = (char)('0' + digits / 100000000u);
    memcpy(d + 1, pairs + 2 * (hi / 100), 2);
    memcpy(d + 3, pairs + 2 * (hi % 100), 2);
    memcpy(d + 5, pairs + 2 * (lo / 100), 2);
    memcpy(d + 7, pairs + 2 * (lo % 100), 2);
    /* %g's rule: plain notation for exponents from -4 to the precision - 1, trailing zeros (and a bare point) dropped */
    if (k < 0 && k >= -4) { /* the embeddings' range: 0.0001 to 1 */
        memcpy(o, "0.0000", 6);
        o += 1 - k;
        memcpy(o, d, 9);
        o += 9;
    } else if (k >= 0 && k < 9) {
        for (int i = 0; i < 9; ++i) {
            if (i == k + 1)
                *o++ = '.';
            *o++ = d[i];
        }
    } else {
        *o++ = d[0];
        *o++ = '.';
        memcpy(o, d + 1, 8);
        o += 8;
    }
    if (k != 8) {            /* with k 8 the nine digits are all before the point, and there is no point */
        while (o[-1] == '0') /* stops at the point, or at the first digit, which is not 0 */
            --o;
        if (o[-1] == '.')
            --o;
    }
    if (k < -4 || k >= 9) {
        *o++ = 'e';
        *o++ = k < 0 ? '-' : '+';
        int a = k < 0 ? -k : k; /* a float's exponent has two digits */
        *o++ = (char)('0' + a / 10);
        *o++ = (char)('0' + a % 10);
    }
    *o = '\0';
    return (size_t)(o - out);
}

int sb_json_append_floats(sb_buf_t *b, const float *v, size_t n)
{
    char chunk[4096]; /* written in chunks: one append per float would cost more than the formatting */
    size_t len = 0;
    chunk[len++] = '[';
    for (size_t i = 0; i < n; ++i) {
        if (len > sizeof(chunk) - SB_JSON_FLOAT_MAX - 2) {
            if (sb_buf_append(b, chunk, len) != 0)
                return -1;
            len = 0;
        }
        if (i > 0)
            chunk[len++] = ',';
        len += sb_json_format_float(chunk + len, v[i]);
    }
    chunk[len++] = ']';
    return sb_buf_append(b, chunk, len);
}

int sb_json_is_utf8(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while (p < end) {
        uint64_t x;
        if (end - p >= 8 && (memcpy(&x, p, sizeof(x)), (x & HIGH_BITS) == 0)) { /* eight ASCII bytes at once */
            p += 8;
        } else if ((unsigned char)*p < 0x80) {
            ++p;
        } else {
            size_t n = sb_utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (n == 0)
                return 0;
            p += n;
        }
    }
    return 1;
}

/* --- dumping jansson trees ----------------------------------------------------------------------- */

/* A string as jansson dumps it: quotes, backslashes and control characters escaped (these with upper-case hex), the rest as is. */
static int dump_string(sb_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (sb_buf_append(b, "\"", 1) != 0)
        return -1;
    size_t run = 0; /* bytes s[i - run, i) that stand for themselves */
    for (size_t i = 0; i < len; ++i) {
        if (len - i >= 8 && plain_word(s + i, 0)) {
            run += 8;
            i += 7;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            ++run;
            continue;
        }
        char esc[6] = {'\\', (char)c, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            n = 6;
        }
        if (sb_buf_append(b, s + i - run, run) != 0 || sb_buf_append(b, esc, n) != 0)
            return -1;
        run = 0;
    }
    return sb_buf_append(b, s + len - run, run) != 0 || sb_buf_append(b, "\"", 1) != 0 ? -1 : 0;
}

static int dump(sb_buf_t *b, const json_t *j, int precision, unsigned depth)
{
    char num[64];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        /* the trees come from jansson's parser, 2048 levels at most: deeper is refused, not a risk to the stack */
        if (depth > 2048 || sb_buf_append(b, "{", 1) != 0)
            return -1;
        for (void *it = json_object_iter((json_t *)j); it != NULL;) {
            if (dump_string(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0 || sb_buf_append(b, ":", 1) != 0 ||
                dump(b, json_object_iter_value(it), precision, depth + 1) != 0)
                return -1;
            if ((it = json_object_iter_next((json_t *)j, it)) != NULL && sb_buf_append(b, ",", 1) != 0)
                return -1;
        }
        return sb_buf_append(b, "}", 1);
    }
    case JSON_ARRAY: {
        if (depth > 2048 || sb_buf_append(b, "[", 1) != 0)
            return -1;
        for (size_t i = 0, n = json_array_size(j); i < n; ++i)
            if ((i > 0 && sb_buf_append(b, ",", 1) != 0) || dump(b, json_array_get(j, i), precision, depth + 1) != 0)
                return -1;
        return sb_buf_append(b, "]", 1);
    }
    case JSON_STRING:
        return dump_string(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return sb_buf_append(b, num, (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j)));
    case JSON_REAL: {
        /* rare in a request, and jansson's real formatting differs between its versions: jansson writes it */
        size_t n = json_dumpb(j, num, sizeof(num), JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(precision));
        return n == 0 || n > sizeof(num) ? -1 : sb_buf_append(b, num, n);
    }
    case JSON_TRUE:
        return sb_buf_append(b, "true", 4);
    case JSON_FALSE:
        return sb_buf_append(b, "false", 5);
    case JSON_NULL:
        return sb_buf_append(b, "null", 4);
    }
    return -1;
}

int sb_json_dump_append(sb_buf_t *b, const json_t *json, int precision)
{
    size_t at = b->len;
    if (json == NULL || dump(b, json, precision, 0) != 0) {
        b->len = at;
        return -1;
    }
    return 0;
}

char *sb_json_dumps(const json_t *json, int precision)
{
    sb_buf_t b;
    sb_buf_init(&b, SB_JSON_MAX_DUMP);
    if (sb_json_dump_append(&b, json, precision) != 0 || sb_buf_append(&b, "", 1) != 0) {
        sb_buf_dispose(&b);
        return NULL;
    }
    return b.base;
}
