/*
 * libFuzzer target for the Anthropic wire's event reader (src/wire_anthropic.c):
 * any bytes, decoded as SSE, then every event read as the upstream call reads
 * it, and again by the jansson reading it replaced (wire_anthropic_ref.c) as
 * the oracle: the same result, error kind, problem and delta, event after
 * event (each with its own state). Never a crash; every string of a delta lies
 * in the event's data or its scratch (each exactly as large as wire.h promises,
 * so ASan sees a byte past either). The known differences of the scanner end
 * the comparison for the rest of the input, since the states part there: it
 * refuses nesting past SB_CHUNK_MAX_DEPTH (jansson allows 2048) and any NUL
 * byte (jansson 2.14 skips one after a number or literal), and checks only the
 * form of a real number (jansson refuses one past a double).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sse.h"
#include "wire.h"
#include "wire_anthropic_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long long state[1024], ref_state[1024];
static int parted; /* a known difference was met: the two states may differ from here on */

static int same_str(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base && a.len == b.len;
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

static int same(const sb_delta_t *a, const sb_delta_t *b)
{
    if (!same_str(a->content, b->content) || !same_str(a->finish_reason, b->finish_reason) || !same_str(a->model, b->model) ||
        !same_str(a->error_message, b->error_message) || a->ntools != b->ntools || a->has_usage != b->has_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || (a->problem == NULL) != (b->problem == NULL) ||
        (a->problem != NULL && strcmp(a->problem, b->problem) != 0))
        return 0;
    for (size_t i = 0; i < a->ntools && i < SB_CHUNK_MAX_TOOLS; ++i) {
        const sb_tool_delta_t *x = &a->tools[i], *y = &b->tools[i];
        if (x->index != y->index || !same_str(x->id, y->id) || !same_str(x->type, y->type) || !same_str(x->name, y->name) ||
            !same_str(x->arguments, y->arguments))
            return 0;
    }
    return 1;
}

/* A string the wire returns lies within the event's data or its scratch, or is one of the wire's literals. */
static int inside(sb_str_t s, const char *in, const char *scratch, size_t size)
{
    if (s.base == NULL)
        return s.len == 0;
    if ((s.base >= in && s.len <= size && s.base - in <= (ptrdiff_t)(size - s.len)) ||
        (s.base >= scratch && s.len <= size && s.base - scratch <= (ptrdiff_t)(size - s.len)))
        return 1;
    for (size_t i = 0; i < s.len; ++i) /* a literal (finish reason, "function"): ASan checks each byte */
        if (s.base[i] == '\0')
            return 0;
    return 1;
}

static int all_inside(const sb_delta_t *d, const char *in, const char *scratch, size_t size)
{
    int ok = inside(d->content, in, scratch, size) && inside(d->finish_reason, in, scratch, size) &&
             inside(d->model, in, scratch, size) && inside(d->error_message, in, scratch, size) && d->ntools <= SB_CHUNK_MAX_TOOLS;
    for (size_t i = 0; ok && i < d->ntools; ++i)
        ok = d->tools[i].index >= 0 && inside(d->tools[i].id, in, scratch, size) && inside(d->tools[i].type, in, scratch, size) &&
             inside(d->tools[i].name, in, scratch, size) && inside(d->tools[i].arguments, in, scratch, size);
    return ok;
}

/* Deepest nesting of arrays and objects, for input that is valid JSON. */
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
        } else if (p[i] == ']' || p[i] == '}') {
            --depth;
        }
    }
    return max;
}

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    (void)ctx;
    size_t size = ev->data_len ? ev->data_len : 1;
    /* exact-size copies, so that ASan sees a read past the data or a write past the scratch room */
    char *in = malloc(size), *scratch = malloc(size), *ref_scratch = malloc(size);
    if (in == NULL || scratch == NULL || ref_scratch == NULL)
        abort();
    memcpy(in, ev->data, ev->data_len);
    sb_sse_event_t copy = *ev;
    copy.data = in;

    sb_delta_t got, want;
    sb_error_t kind = SB_OK, ref_kind = SB_OK;
    json_error_t jerr;
    sb_wire_result_t rc = sb_wire_anthropic.event(state, &copy, scratch, &got, &kind);
    sb_wire_result_t ref = ref_anthropic_event(ref_state, &copy, ref_scratch, &want, &ref_kind, &jerr);

    if (rc != SB_WIRE_SKIP && rc != SB_WIRE_END && rc != SB_WIRE_DELTA && rc != SB_WIRE_ERROR)
        abort();
    if ((rc == SB_WIRE_ERROR) != (kind != SB_OK) || !all_inside(&got, in, scratch, ev->data_len))
        abort();
    if (got.prompt_tokens < 0 || got.completion_tokens < 0 || got.total_tokens < 0)
        abort();
    int nul = memchr(in, '\0', ev->data_len) != NULL;
    if (nul && rc != SB_WIRE_ERROR) /* never valid JSON, in a string or out of one */
        abort();
    if (nul || nesting(in, ev->data_len) > SB_CHUNK_MAX_DEPTH ||
        (ref == SB_WIRE_ERROR && strncmp(jerr.text, "real number overflow", 20) == 0))
        parted = 1;
    if (!parted && (rc != ref || kind != ref_kind || !same(&got, &want)))
        abort();
    free(in);
    free(scratch);
    free(ref_scratch);
    return 0; /* read on past an error or the end: the reader must hold up to what follows too */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sb_wire_anthropic.state_size > sizeof(state) || ref_anthropic_state_size > sizeof(ref_state))
        abort();
    memset(state, 0, sizeof(state));
    memset(ref_state, 0, sizeof(ref_state));
    parted = 0;
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 20);
    sb_sse_decoder_feed(&dec, (const char *)data, size, on_event, NULL);
    sb_sse_decoder_finish(&dec, on_event, NULL);
    sb_sse_decoder_dispose(&dec);
    return 0;
}
