/*
 * libFuzzer target for the Responses API wire's event reader
 * (src/wire_responses.c), with the jansson reader it replaced
 * (wire_responses_ref.c) as the oracle: any bytes, as an SSE stream, are read
 * by both, each with its own state, and every event must give the same
 * result, error kind and delta; every string the delta holds lies within the
 * event's data or its scratch, with no more tool fragments than one.
 *
 * The known differences end the comparison of a stream (the states may part
 * from there): an event with a NUL byte (jansson 2.14 skips one after a number
 * or literal), nesting past SB_JSCAN_MAX_DEPTH (jansson allows 2048), a real
 * number past a double (the scanner checks numbers for form only) and a
 * repeated key (jansson refused every repeat; the reader refuses a repeat of
 * a key it acts on and lets the others through, the rule jscan.h states).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "wire.h"
#include "wire_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    _Alignas(max_align_t) unsigned char state[4096]; /* aligned as a call's calloc gives it */
    _Alignas(max_align_t) unsigned char ref_state[4096];
    char *scratch, *ref_scratch;
    int parted; /* a known difference came: stop comparing */
};

static int inside(sb_str_t s, const char *in, const char *scratch, size_t cap)
{
    if (s.base == NULL)
        return s.len == 0;
    return (s.base >= scratch && s.len <= cap && (size_t)(s.base - scratch) <= cap - s.len) ||
           (s.base >= in && s.len <= cap && (size_t)(s.base - in) <= cap - s.len);
}

static int same_str(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base;
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

static int same(const sb_delta_t *a, const sb_delta_t *b)
{
    if (!same_str(a->content, b->content) || !same_str(a->finish_reason, b->finish_reason) || !same_str(a->model, b->model) ||
        !same_str(a->error_message, b->error_message) || a->ntools != b->ntools || a->has_usage != b->has_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->is_error != b->is_error)
        return 0;
    if ((a->problem == NULL) != (b->problem == NULL) || (a->problem != NULL && strcmp(a->problem, b->problem) != 0))
        return 0;
    for (size_t i = 0; i < a->ntools; ++i) {
        const sb_tool_delta_t *x = &a->tools[i], *y = &b->tools[i];
        if (x->index != y->index || !same_str(x->id, y->id) || !same_str(x->type, y->type) || !same_str(x->name, y->name) ||
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

static int on_event(void *p, const sb_sse_event_t *ev)
{
    struct ctx *c = p;
    size_t n = ev->data_len;
    /* exact-size copies, so that the sanitizers see a read past the data or a write past the scratch */
    char *in = malloc(n ? n : 1);
    memcpy(in, ev->data, n);
    c->scratch = realloc(c->scratch, n ? n : 1);
    c->ref_scratch = realloc(c->ref_scratch, n + 1);
    sb_sse_event_t e = {ev->event, ev->event_len, in, n};
    sb_delta_t d, want;
    sb_error_t err = SB_OK, ref_err = SB_OK;
    json_error_t jerr;
    sb_wire_result_t r = sb_wire_responses.event(c->state, &e, c->scratch, &d, &err);
    if (r == SB_WIRE_DELTA || r == SB_WIRE_ERROR) {
        int ok = inside(d.content, in, c->scratch, n) && inside(d.model, in, c->scratch, n) && d.ntools <= 1 &&
                 inside(d.error_message, in, c->scratch, n);
        for (size_t i = 0; ok && i < d.ntools; ++i)
            ok = inside(d.tools[i].id, in, c->scratch, n) && inside(d.tools[i].name, in, c->scratch, n) &&
                 inside(d.tools[i].arguments, in, c->scratch, n) && d.tools[i].index >= 0 && d.tools[i].index < SB_CHUNK_MAX_TOOLS;
        if (!ok)
            abort();
    }
    if (!c->parted) {
        jerr.text[0] = '\0';
        sb_wire_result_t ref = ref_responses_event(c->ref_state, &e, c->ref_scratch, &want, &ref_err, &jerr);
        int loaded = jerr.text[0] == '\0';
        if ((n != 0 && memchr(in, '\0', n) != NULL) || nesting(in, n) > SB_JSCAN_MAX_DEPTH ||
            (!loaded && (strstr(jerr.text, "duplicate") != NULL || strstr(jerr.text, "real number overflow") != NULL))) {
            c->parted = 1;
        } else if (r != ref || (r == SB_WIRE_ERROR && err != ref_err) ||
                   ((r == SB_WIRE_DELTA || r == SB_WIRE_ERROR) && !same(&d, &want))) {
            abort();
        }
    }
    free(in);
    return 0; /* read on past errors and ends: the state must hold up to whatever follows */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {{0}, {0}, NULL, NULL, 0};
    if (sb_wire_responses.state_size > sizeof(c.state) || ref_responses_state_size > sizeof(c.ref_state))
        abort();
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 16);
    sb_sse_decoder_feed(&dec, (const char *)data, size, on_event, &c);
    sb_sse_decoder_finish(&dec, on_event, &c);
    sb_sse_decoder_dispose(&dec);
    free(c.scratch);
    free(c.ref_scratch);
    return 0;
}
