/*
 * JSON on a turn's hot path, where jansson spent most of a vector-store turn's
 * own time: a strict reader for the answers of the embedding provider and the
 * stores that builds no jansson tree, the writer for the vectors sent to the
 * stores, and a faster json_dumps for the request sent to the provider.
 */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sb/buf.h"

typedef enum sb_json_kind {
    SB_JSON_NULL,
    SB_JSON_FALSE,
    SB_JSON_TRUE,
    SB_JSON_NUMBER,
    SB_JSON_STRING,
    SB_JSON_ARRAY,
    SB_JSON_OBJECT,
} sb_json_kind_t;

/*
 * One value of a parsed document. The values lie in one array in document
 * order: a container's first element (an object's first key, then its value)
 * comes right after it, and `span` counts the value with everything inside it,
 * so its next sibling is at v + v->span.
 */
typedef struct sb_json_value {
    const char *str; /* string: decoded, NUL-terminated; number: the token as written (not terminated) */
    uint32_t len;    /* string: bytes (it holds no NUL); number: token bytes; array: elements; object: members */
    uint32_t span;   /* 1 for a scalar, 1 + everything inside for a container */
    uint8_t kind;    /* sb_json_kind_t */
} sb_json_value_t;

typedef struct sb_json_doc {
    sb_json_value_t *values; /* values[0] is the root once parsed */
    size_t n, cap;
} sb_json_doc_t;

/*
 * Parses `text[0..len)` as one JSON value (RFC 8259; whitespace around it
 * only), with jansson's extra rules: strings are valid UTF-8 and hold neither
 * \u0000 nor lone surrogates; numbers must be finite doubles. Strings are
 * decoded in place, so `text` must stay alive (and untouched) while the values
 * are used. At most `max_values` values and 128 levels of nesting. Returns 0,
 * or -1 (then the document holds nothing). `doc` starts zeroed or disposed.
 */
int sb_json_parse(sb_json_doc_t *doc, char *text, size_t len, size_t max_values);
/* Frees the value array; the document is empty (and reusable) afterwards. */
void sb_json_doc_dispose(sb_json_doc_t *doc);

/* The root value, or NULL when nothing was parsed. */
const sb_json_value_t *sb_json_root(const sb_json_doc_t *doc);
/* The value of `key` in `object` (the first, if repeated), or NULL: also when `object` is NULL or not an object. */
const sb_json_value_t *sb_json_get(const sb_json_value_t *object, const char *key);
/* Element `i` of `array`, or NULL (out of range, NULL, or not an array). Walks i siblings. */
const sb_json_value_t *sb_json_at(const sb_json_value_t *array, size_t i);
/* The string, or NULL when `v` is NULL or not a string. */
const char *sb_json_string(const sb_json_value_t *v);
/* Whether `v` is of that kind (NULL is of none). */
int sb_json_is(const sb_json_value_t *v, sb_json_kind_t kind);
/* The number as the nearest double (0 when `v` is not a number). */
double sb_json_number(const sb_json_value_t *v);

/* Walks the elements of an array (none when it is NULL or not an array): `e` is each element, `i` its index. */
#define sb_json_array_foreach(array, i, e)                                                                                         \
    for ((i) = 0, (e) = sb_json_is((array), SB_JSON_ARRAY) ? (array) + 1 : NULL; (e) != NULL && (i) < (array)->len;                \
         ++(i), (e) += (e)->span)

/*
 * What json_loadb(text, len, JSON_REJECT_DUPLICATES, error) returns, the
 * same tree (new reference) or the same NULL and error, at about half the
 * cost: this reader checks the text and jansson only builds the tree. A
 * document this reader refuses or leaves to jansson (nesting past its
 * limit, an integer past json_int_t, a repeated key, any error) is read by
 * json_loadb itself, so its words about the error are jansson's own.
 */
json_t *sb_json_loadb(const char *text, size_t len, json_error_t *error);

/* The most bytes sb_json_format_float writes, with its NUL. */
#define SB_JSON_FLOAT_MAX 24

/*
 * Writes `f` as printf's "%.9g" does in the C locale (9 significant digits
 * bring every float back exactly), without printf's cost: NaN and infinities,
 * which JSON cannot carry, become 0. Returns the length; `out` is NUL-terminated.
 */
size_t sb_json_format_float(char out[SB_JSON_FLOAT_MAX], float f);
/* Appends `[v0,v1,...]` to `b`. 0, or -1 past the buffer's ceiling (then `b` holds a partial array). */
int sb_json_append_floats(sb_buf_t *b, const float *v, size_t n);

/* Whether s[0..len) is well-formed UTF-8 (as sb_json_parse and jansson require; NUL bytes are allowed). */
int sb_json_is_utf8(const char *s, size_t len);

/* The longest text sb_json_dumps writes. */
#define SB_JSON_MAX_DUMP (256u << 20)

/*
 * What json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision))
 * returns, byte for byte, for a tree of valid UTF-8 strings, at a fraction of
 * the cost: jansson decodes every character of every string and checks every
 * container for cycles. New string (free() it); NULL past 256 MB.
 */
char *sb_json_dumps(const json_t *json, int precision);
/* The same text appended to `b` (no NUL); 0, or -1 with `b` as it was when its ceiling would be passed. */
int sb_json_dump_append(sb_buf_t *b, const json_t *json, int precision);

#endif
