/*
 * Reads one upstream chat.completion.chunk (or an in-band error object) into
 * sb_delta_t in a single pass over the bytes, with a strict JSON scanner made
 * for this one shape: no allocation, no tree, strings left where they are
 * unless they hold escapes. Only choice 0 is read: switchboard always asks
 * for one choice.
 *
 * The rules are those of the jansson reading this replaced (json_loadb with
 * no flags, then typed lookups), which tests/fuzz/fuzz_chunk.c keeps as its
 * oracle and whose header lists the few deliberate differences. Two kinds
 * of failure are told apart while scanning: bad syntax stops at once, while
 * a field of the wrong type is only noted, because a later duplicate key may
 * replace it (the last one wins, as in a jansson object) and a non-null
 * "error" makes every other field irrelevant.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chunk.h"
#include "jsonlex.h"

enum {
    SYNTAX = -1, /* not strict JSON, or past a limit: give up */
    OK = 0,
    WRONG = 1,   /* valid JSON, but a field switchboard uses has the wrong type */
    ENTERED = 2, /* enter_or_null: inside the container */
};

typedef struct {
    const unsigned char *p, *end;
    char *scratch;       /* where the next decoded string goes */
    const char *problem; /* the last wrong field that can be named for the operator */
} scan_t;

/* What a byte means inside a string. */
enum { PLAIN, QUOTE, ESCAPE, CONTROL, MULTIBYTE };

static const unsigned char string_class[256] = {
    [0x00 ... 0x1F] = CONTROL, /* RFC 8259 section 7: must be escaped */
    ['"'] = QUOTE,
    ['\\'] = ESCAPE,
    [0x80 ... 0xFF] = MULTIBYTE,
};

/* Switchboard's own fields sit 7 levels deep at most: root, choices, choice, delta, tool_calls, call, function. */
_Static_assert(SB_CHUNK_MAX_DEPTH > 7, "the chunk's own shape must fit the depth limit");

#define IS_DIGIT(c) ((unsigned)(c) - '0' < 10)
#define IS_KEY(k, lit) ((k).len == sizeof(lit) - 1 && memcmp((k).base, lit, sizeof(lit) - 1) == 0)

/* Skips whitespace; returns the next byte without taking it, or -1 at the end. */
static inline int peek(scan_t *s)
{
    const unsigned char *p = s->p, *end = s->end;
    /* the four JSON whitespace bytes are all <= ' ', and other bytes there are errors anyway */
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        ++p;
    s->p = p;
    return p < end ? *p : -1;
}

/*
 * The rest of a string that holds an escape at p: copies what came before it
 * (from start) into scratch and decodes from there. Each escape is at least
 * as long as what it stands for, so the string never outgrows its source.
 */
static int decode_string(scan_t *s, const unsigned char *start, const unsigned char *p, sb_str_t *out, int keep)
{
    const unsigned char *end = s->end;
    char *o = s->scratch;
    memcpy(o, start, (size_t)(p - start));
    o += p - start;
    while (p < end) {
        size_t n;
        switch (string_class[*p]) {
        case PLAIN:
            *o++ = (char)*p++;
            continue;
        case QUOTE:
            out->base = s->scratch;
            out->len = (size_t)(o - s->scratch);
            if (keep)
                s->scratch = o;
            s->p = p + 1;
            return OK;
        case MULTIBYTE:
            if ((n = sb_utf8_len(p, end)) == 0)
                return SYNTAX;
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        case CONTROL:
            return SYNTAX;
        }
        if ((n = sb_json_unescape(p, end, &o)) == 0) /* an escape */
            return SYNTAX;
        p += n;
    }
    return SYNTAX;
}

/*
 * Whether any of the 8 bytes in v needs a closer look in a string: a quote, a
 * backslash, a control character or a byte >= 0x80 (the classic "has a zero
 * byte" test; exact about whether one exists, though not about which).
 */
static inline int any_special(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t quote = v ^ ones * '"', backslash = v ^ ones * '\\';
    return ((((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | v) & highs) != 0;
}

/*
 * Scans the string whose opening quote is at the cursor. A string without
 * escapes is left in the input; one with escapes is decoded into scratch,
 * which `keep` reserves for it (otherwise the next string may reuse the room).
 */
static int scan_string(scan_t *s, sb_str_t *out, int keep)
{
    const unsigned char *start = s->p + 1, *p = start, *end = s->end;
    for (;;) {
        uint64_t v;
        /* most of a chunk is plain ASCII text: pass over it 8 bytes at a time */
        while (end - p >= 8 && (memcpy(&v, p, 8), !any_special(v)))
            p += 8;
        while (p < end && string_class[*p] == PLAIN)
            ++p;
        if (p == end)
            return SYNTAX;
        size_t n;
        switch (string_class[*p]) {
        case QUOTE:
            out->base = (const char *)start;
            out->len = (size_t)(p - start);
            s->p = p + 1;
            return OK;
        case MULTIBYTE:
            if ((n = sb_utf8_len(p, end)) == 0)
                return SYNTAX;
            p += n;
            continue;
        case ESCAPE:
            return decode_string(s, start, p, out, keep);
        default:
            return SYNTAX;
        }
    }
}

/*
 * Scans a number (RFC 8259 grammar, nothing more). An integer literal must
 * fit a long long, as jansson requires; it is stored in *value and *integer
 * set. Fractions and exponents are checked for form only.
 */
static int scan_number(scan_t *s, int *integer, long long *value)
{
    const unsigned char *p = s->p, *end = s->end;
    int negative = *p == '-';
    p += negative;
    if (p == end || !IS_DIGIT(*p))
        return SYNTAX;
    const unsigned char *digits = p;
    uint64_t v = 0;
    if (*p == '0')
        ++p;
    else
        while (p < end && IS_DIGIT(*p))
            v = v * 10 + (*p++ - '0'); /* wraps past 19 digits: those are refused below */
    size_t ndigits = (size_t)(p - digits);
    *integer = 1;
    if (p < end && *p == '.') {
        if (++p == end || !IS_DIGIT(*p))
            return SYNTAX;
        while (p < end && IS_DIGIT(*p))
            ++p;
        *integer = 0;
    }
    if (p < end && (*p | 0x20) == 'e') {
        ++p;
        if (p < end && (*p == '+' || *p == '-'))
            ++p;
        if (p == end || !IS_DIGIT(*p))
            return SYNTAX;
        while (p < end && IS_DIGIT(*p))
            ++p;
        *integer = 0;
    }
    if (*integer) {
        uint64_t max = negative ? (uint64_t)LLONG_MAX + 1 : (uint64_t)LLONG_MAX;
        if (ndigits > 19 || v > max)
            return SYNTAX;
        *value = negative ? (long long)(0 - v) : (long long)v;
    }
    s->p = p;
    return OK;
}

static int scan_literal(scan_t *s, const char *lit, size_t len)
{
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, lit, len) != 0)
        return SYNTAX;
    s->p += len;
    return OK;
}

/*
 * Steps through an object's members. Call with *first set right after the
 * opening brace. Returns 1 with the member's key in *key (valid until the next
 * string is scanned) and the cursor at its value, 0 after the closing brace,
 * or SYNTAX.
 */
static int next_member(scan_t *s, int *first, sb_str_t *key)
{
    int c = peek(s);
    if (c == '}') {
        ++s->p;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return SYNTAX;
        ++s->p;
        c = peek(s);
    }
    *first = 0;
    if (c != '"' || scan_string(s, key, 0) != OK || peek(s) != ':')
        return SYNTAX;
    ++s->p;
    return 1;
}

/* Like next_member for an array: returns 1 with the cursor at the next element, 0 after the closing bracket, or SYNTAX. */
static int next_element(scan_t *s, int *first)
{
    int c = peek(s);
    if (c == ']') {
        ++s->p;
        return 0;
    }
    if (!*first) {
        if (c != ',')
            return SYNTAX;
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
static int skip_value(scan_t *s, unsigned depth)
{
    sb_str_t str;
    int first = 1, rc, integer;
    long long v;
    switch (peek(s)) {
    case '"':
        return scan_string(s, &str, 0);
    case '{':
        if (depth >= SB_CHUNK_MAX_DEPTH)
            return SYNTAX;
        ++s->p;
        while ((rc = next_member(s, &first, &str)) > 0)
            if (skip_value(s, depth + 1) != OK)
                return SYNTAX;
        return rc;
    case '[':
        if (depth >= SB_CHUNK_MAX_DEPTH)
            return SYNTAX;
        ++s->p;
        while ((rc = next_element(s, &first)) > 0)
            if (skip_value(s, depth + 1) != OK)
                return SYNTAX;
        return rc;
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    case '-':
    case '0' ... '9':
        return scan_number(s, &integer, &v);
    default:
        return SYNTAX;
    }
}

/* A value of the wrong type for its field: still has to be valid JSON. */
static int wrong(scan_t *s, unsigned depth)
{
    return skip_value(s, depth) == OK ? WRONG : SYNTAX;
}

/*
 * A field holding an object or array, or null: steps inside `open` ('{' or
 * '[') and returns ENTERED, or returns the field's result (OK for null, WRONG
 * for another type, SYNTAX).
 */
static int enter_or_null(scan_t *s, int open, unsigned depth)
{
    int c = peek(s);
    if (c == 'n')
        return scan_literal(s, "null", 4);
    if (c != open)
        return wrong(s, depth);
    ++s->p;
    return ENTERED;
}

/* A string or null; *out stays absent for null. */
static int read_str(scan_t *s, sb_str_t *out, unsigned depth)
{
    *out = (sb_str_t){NULL, 0};
    switch (peek(s)) {
    case '"':
        return scan_string(s, out, 1);
    case 'n':
        return scan_literal(s, "null", 4);
    default:
        return wrong(s, depth);
    }
}

/* An integer in [0, limit], or null (0) when null_ok. */
static int read_int(scan_t *s, long long limit, int null_ok, long long *out, unsigned depth)
{
    int c = peek(s), integer;
    if (c == 'n' && null_ok) {
        *out = 0;
        return scan_literal(s, "null", 4);
    }
    if (c != '-' && !IS_DIGIT(c))
        return wrong(s, depth);
    if (scan_number(s, &integer, out) != OK)
        return SYNTAX;
    return integer && *out >= 0 && *out <= limit ? OK : WRONG;
}

/* Folds a member's result into its object's: bad syntax ends the scan, a wrong type is remembered. */
#define MEMBER(call, bad)                                                                                                          \
    do {                                                                                                                           \
        int r_ = (call);                                                                                                           \
        if (r_ == SYNTAX)                                                                                                          \
            return SYNTAX;                                                                                                         \
        bad = r_;                                                                                                                  \
    } while (0)

static int read_function(scan_t *s, sb_tool_delta_t *t)
{
    int first = 1, rc, bad_name = OK, bad_args = OK;
    sb_str_t key;
    t->name = t->arguments = (sb_str_t){NULL, 0};
    if ((rc = enter_or_null(s, '{', 6)) != ENTERED)
        return rc;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "name"))
            MEMBER(read_str(s, &t->name, 7), bad_name);
        else if (IS_KEY(key, "arguments"))
            MEMBER(read_str(s, &t->arguments, 7), bad_args);
        else if (skip_value(s, 7) != OK)
            return SYNTAX;
    }
    return rc < 0 ? SYNTAX : bad_name | bad_args;
}

/* One element of tool_calls, at `position` in the array. */
static int read_tool(scan_t *s, sb_tool_delta_t *t, size_t position)
{
    int first = 1, rc, bad_index = OK, bad_id = OK, bad_type = OK, bad_fn = OK;
    sb_str_t key;
    long long index = (long long)position; /* a provider that streams whole calls may omit index */
    *t = (sb_tool_delta_t){0};
    if (peek(s) != '{')
        return wrong(s, 5);
    ++s->p;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "index")) {
            MEMBER(read_int(s, 1023, 0, &index, 6), bad_index);
            if (bad_index != OK)
                s->problem = "a tool call index that is not an integer from 0 to 1023";
        } else if (IS_KEY(key, "id"))
            MEMBER(read_str(s, &t->id, 6), bad_id);
        else if (IS_KEY(key, "type"))
            MEMBER(read_str(s, &t->type, 6), bad_type);
        else if (IS_KEY(key, "function"))
            MEMBER(read_function(s, t), bad_fn);
        else if (skip_value(s, 6) != OK)
            return SYNTAX;
    }
    t->index = (long)index;
    return rc < 0 ? SYNTAX : bad_index | bad_id | bad_type | bad_fn;
}

static int read_tool_calls(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad = OK;
    size_t position = 0;
    out->ntools = 0;
    if ((rc = enter_or_null(s, '[', 4)) != ENTERED)
        return rc;
    while ((rc = next_element(s, &first)) > 0) {
        if (bad != OK || out->ntools == SB_CHUNK_MAX_TOOLS) { /* the rest need only be valid JSON */
            if (skip_value(s, 5) != OK)
                return SYNTAX;
            if (bad == OK)
                s->problem = "more tool calls in one chunk than switchboard relays";
            bad = WRONG;
            continue;
        }
        MEMBER(read_tool(s, &out->tools[out->ntools++], position++), bad);
    }
    return rc < 0 ? SYNTAX : bad;
}

static int read_delta(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_content = OK, bad_tools = OK;
    sb_str_t key;
    out->content = (sb_str_t){NULL, 0};
    out->audio = (sb_str_t){NULL, 0};
    out->ntools = 0;
    if ((rc = enter_or_null(s, '{', 3)) != ENTERED)
        return rc;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "content")) {
            MEMBER(read_str(s, &out->content, 4), bad_content);
        } else if (IS_KEY(key, "audio") && peek(s) == '{') { /* audio output: its bytes go to the caller untouched */
            const unsigned char *from = s->p;
            if (skip_value(s, 4) != OK)
                return SYNTAX;
            out->audio = (sb_str_t){(const char *)from, (size_t)(s->p - from)};
        } else if (IS_KEY(key, "tool_calls"))
            MEMBER(read_tool_calls(s, out), bad_tools);
        else if (skip_value(s, 4) != OK)
            return SYNTAX;
    }
    return rc < 0 ? SYNTAX : bad_content | bad_tools;
}

static int read_choice(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_finish = OK, bad_delta = OK;
    sb_str_t key;
    if (peek(s) != '{')
        return wrong(s, 2);
    ++s->p;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "delta"))
            MEMBER(read_delta(s, out), bad_delta);
        else if (IS_KEY(key, "finish_reason"))
            MEMBER(read_str(s, &out->finish_reason, 3), bad_finish);
        else if (skip_value(s, 3) != OK)
            return SYNTAX;
    }
    return rc < 0 ? SYNTAX : bad_finish | bad_delta;
}

static int read_choices(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad = OK;
    size_t i = 0;
    out->finish_reason = out->content = (sb_str_t){NULL, 0};
    out->ntools = 0;
    if ((rc = enter_or_null(s, '[', 1)) != ENTERED)
        return rc;
    while ((rc = next_element(s, &first)) > 0) {
        if (i++ == 0)
            MEMBER(read_choice(s, out), bad);
        else if (skip_value(s, 2) != OK) /* other choices are never asked for */
            return SYNTAX;
    }
    return rc < 0 ? SYNTAX : bad;
}

static int read_usage(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_prompt = OK, bad_completion = OK, bad_total = OK;
    sb_str_t key;
    out->has_usage = 0;
    out->prompt_tokens = out->completion_tokens = out->total_tokens = 0;
    if ((rc = enter_or_null(s, '{', 1)) != ENTERED)
        return rc;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "prompt_tokens"))
            MEMBER(read_int(s, LLONG_MAX, 1, &out->prompt_tokens, 2), bad_prompt);
        else if (IS_KEY(key, "completion_tokens"))
            MEMBER(read_int(s, LLONG_MAX, 1, &out->completion_tokens, 2), bad_completion);
        else if (IS_KEY(key, "total_tokens"))
            MEMBER(read_int(s, LLONG_MAX, 1, &out->total_tokens, 2), bad_total);
        else if (skip_value(s, 2) != OK)
            return SYNTAX;
    }
    out->has_usage = 1;
    return rc < 0 ? SYNTAX : bad_prompt | bad_completion | bad_total;
}

/* "error": a string is the message; in an object, fields of other types (a numeric code) are left out. */
static int read_error(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, ignored;
    sb_str_t key;
    out->is_error = 0;
    out->error_message = out->error_type = out->error_code = (sb_str_t){NULL, 0};
    switch (peek(s)) {
    case 'n':
        return scan_literal(s, "null", 4);
    case '"':
        out->is_error = 1;
        return scan_string(s, &out->error_message, 1);
    case '{':
        out->is_error = 1;
        break;
    default:
        out->is_error = 1;
        return wrong(s, 1);
    }
    ++s->p;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "message"))
            MEMBER(read_str(s, &out->error_message, 2), ignored);
        else if (IS_KEY(key, "type"))
            MEMBER(read_str(s, &out->error_type, 2), ignored);
        else if (IS_KEY(key, "code"))
            MEMBER(read_str(s, &out->error_code, 2), ignored);
        else if (skip_value(s, 2) != OK)
            return SYNTAX;
    }
    (void)ignored;
    return rc < 0 ? SYNTAX : OK;
}

static int read_chunk(scan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_model = OK, bad_usage = OK, bad_choices = OK, bad_error = OK;
    sb_str_t key;
    if (peek(s) != '{')
        return SYNTAX;
    ++s->p;
    while ((rc = next_member(s, &first, &key)) > 0) {
        if (IS_KEY(key, "choices"))
            MEMBER(read_choices(s, out), bad_choices);
        else if (IS_KEY(key, "model"))
            MEMBER(read_str(s, &out->model, 1), bad_model);
        else if (IS_KEY(key, "usage"))
            MEMBER(read_usage(s, out), bad_usage);
        else if (IS_KEY(key, "error"))
            MEMBER(read_error(s, out), bad_error);
        else if (skip_value(s, 1) != OK)
            return SYNTAX;
    }
    if (rc < 0 || peek(s) != -1) /* exactly one value */
        return SYNTAX;
    if (out->is_error) { /* an error chunk carries nothing else, whatever its other fields hold */
        sb_str_t message = out->error_message, type = out->error_type, code = out->error_code;
        memset(out, 0, offsetof(sb_delta_t, tools));
        out->is_error = 1;
        out->error_message = message;
        out->error_type = type;
        out->error_code = code;
        return bad_error;
    }
    return bad_model | bad_usage | bad_choices;
}

int sb_chunk_parse(const char *data, size_t len, sb_delta_t *out, char *scratch)
{
    scan_t s = {(const unsigned char *)data, (const unsigned char *)data + len, scratch, NULL};
    memset(out, 0, offsetof(sb_delta_t, tools)); /* a delta is read only up to ntools: the entries need no clearing */
    int rc = read_chunk(&s, out);
    if (rc == OK)
        return 0;
    out->problem = rc == WRONG ? s.problem : NULL;
    return rc == WRONG ? -2 : -1;
}
