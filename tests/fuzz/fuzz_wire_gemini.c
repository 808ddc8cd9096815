/*
 * libFuzzer target for the Gemini wire's event reader (src/wire_gemini.c),
 * with the jansson reader it replaced (wire_gemini_ref.c) as the oracle: the
 * input, cut at newlines, is a stream of event data read by both, each with
 * its own state and a scratch exactly as large as the data (so a write past
 * it is caught by the sanitizers), until one fails the stream. Every event
 * must give the same result, error kind and delta (a minted id's random part
 * aside), whose strings lie in the data, the scratch, the state or static
 * storage and whose calls are counted in order.
 *
 * The known differences end the comparison (the states may part from there):
 * an event with a NUL byte (jansson 2.14 skips one after a number or
 * literal), nesting past SB_JSCAN_MAX_DEPTH (jansson allows 2048), a real
 * number past a double outside a call's args (the scanner checks numbers for
 * form only) and a repeated key (jansson refused every repeat; the reader
 * refuses a repeat of a key it acts on and lets the others through, the rule
 * jscan.h states).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "wire.h"
#include "wire_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte of a string the delta hands out: out of bounds, the sanitizers say so. */
static size_t touch(sb_str_t s)
{
    size_t sum = 0;
    if (s.base == NULL)
        return s.len == 0 ? 0 : (abort(), 0);
    for (size_t i = 0; i < s.len; ++i)
        sum += (unsigned char)s.base[i];
    return sum;
}

static int same_str(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base;
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

/* Two minted ids alike but for their random part: "call_<index>_" and what follows the 12 random characters. */
static int same_id(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base;
    const char *u = a.len > 5 ? memchr(a.base + 5, '_', a.len - 5) : NULL;
    if (u == NULL || a.len != b.len)
        return 0;
    size_t head = (size_t)(u - a.base) + 1, tail = head + 12;
    return tail <= a.len && memcmp(a.base, b.base, head) == 0 && memcmp(a.base + tail, b.base + tail, a.len - tail) == 0;
}

static int same(const sb_delta_t *a, const sb_delta_t *b)
{
    if (!same_str(a->content, b->content) || !same_str(a->finish_reason, b->finish_reason) || !same_str(a->model, b->model) ||
        !same_str(a->error_message, b->error_message) || a->ntools != b->ntools || a->has_usage != b->has_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->is_error != b->is_error)
        return 0;
    for (size_t i = 0; i < a->ntools; ++i) {
        const sb_tool_delta_t *x = &a->tools[i], *y = &b->tools[i];
        if (x->index != y->index || !same_id(x->id, y->id) || !same_str(x->type, y->type) || !same_str(x->name, y->name) ||
            !same_str(x->arguments, y->arguments))
            return 0;
    }
    return 1;
}

/* Deepest nesting of arrays and objects (for input that may be JSON). */
static size_t nesting(const char *p, size_t n)
{
    size_t depth = 0, max = 0;
    int in_string = 0;
    for (size_t i = 0; i < n; ++i) {
        if (in_string) {
            if (p[i] == '\\')
                ++i;
            else if (p[i] == '"')
                in_string = 0;
        } else if (p[i] == '"') {
            in_string = 1;
        } else if (p[i] == '[' || p[i] == '{') {
            max = ++depth > max ? depth : max;
        } else if ((p[i] == ']' || p[i] == '}') && depth > 0) {
            --depth;
        }
    }
    return max;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *state = calloc(1, sb_wire_gemini.state_size), *ref_state = calloc(1, ref_gemini_state_size);
    long next_index = 0;
    int parted = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *copy = malloc(len ? len : 1), *scratch = malloc(len ? len : 1), *ref_scratch = malloc(len ? len : 1);
        memcpy(copy, p, len);
        sb_sse_event_t ev = {"message", 7, copy, len};
        sb_delta_t d, want;
        sb_error_t e = SB_OK, ref_e = SB_OK;
        sb_wire_result_t rc = sb_wire_gemini.event(state, &ev, scratch, &d, &e);
        volatile size_t sum = 0;
        switch (rc) {
        case SB_WIRE_ERROR:
            if (e == SB_OK)
                abort();
            sum += touch(d.error_message);
            break;
        case SB_WIRE_DELTA:
            sum += touch(d.content) + touch(d.model) + touch(d.finish_reason);
            if (d.ntools > SB_CHUNK_MAX_TOOLS)
                abort();
            for (size_t i = 0; i < d.ntools; ++i) {
                if (d.tools[i].index != next_index++ || d.tools[i].id.len == 0 || d.tools[i].arguments.len == 0)
                    abort();
                sum += touch(d.tools[i].id) + touch(d.tools[i].name) + touch(d.tools[i].arguments);
            }
            break;
        case SB_WIRE_SKIP:
        case SB_WIRE_END:
            break;
        default:
            abort();
        }
        (void)sum;
        if (!parted) {
            json_error_t jerr;
            jerr.text[0] = '\0';
            sb_wire_result_t ref = ref_gemini_event(ref_state, &ev, ref_scratch, &want, &ref_e, &jerr);
            int loaded = jerr.text[0] == '\0';
            if ((len != 0 && memchr(copy, '\0', len) != NULL) || nesting(copy, len) > SB_JSCAN_MAX_DEPTH ||
                (!loaded && (strstr(jerr.text, "duplicate") != NULL || strstr(jerr.text, "real number overflow") != NULL))) {
                parted = 1;
            } else if (rc != ref || (rc == SB_WIRE_ERROR && e != ref_e) ||
                       ((rc == SB_WIRE_DELTA || rc == SB_WIRE_ERROR) && !same(&d, &want))) {
                abort();
            }
        }
        free(copy);
        free(scratch);
        free(ref_scratch);
        if (nl == NULL || rc == SB_WIRE_ERROR) /* an error ends the stream, as in upstream.c */
            break;
        p = nl + 1;
    }
    free(state);
    free(ref_state);
    return 0;
}
