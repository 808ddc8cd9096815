/*
 * libFuzzer target for the Responses API wire's event reader
 * (src/wire_responses.c): any bytes, as an SSE stream, give skips, deltas,
 * an end or errors, and every string a delta holds lies within the event's
 * scratch buffer, with no more tool fragments than one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    _Alignas(max_align_t) unsigned char state[4096];
    char *scratch;
};

static int inside(sb_str_t s, const char *scratch, size_t cap)
{
    if (s.base == NULL)
        return 1;
    return s.base >= scratch && s.len <= cap && (size_t)(s.base - scratch) <= cap - s.len;
}

static int on_event(void *p, const sb_sse_event_t *ev)
{
    struct ctx *c = p;
    c->scratch = realloc(c->scratch, ev->data_len + 1);
    sb_delta_t d;
    sb_error_t e;
    sb_wire_result_t r = sb_wire_responses.event(c->state, ev, c->scratch, &d, &e);
    if (r == SB_WIRE_DELTA || r == SB_WIRE_ERROR) {
        int ok = inside(d.content, c->scratch, ev->data_len) && inside(d.model, c->scratch, ev->data_len) && d.ntools <= 1;
        if (r == SB_WIRE_ERROR)
            ok &= d.error_message.base == NULL || inside(d.error_message, c->scratch, ev->data_len);
        for (size_t i = 0; ok && i < d.ntools; ++i)
            ok = inside(d.tools[i].id, c->scratch, ev->data_len) && inside(d.tools[i].name, c->scratch, ev->data_len) &&
                 inside(d.tools[i].arguments, c->scratch, ev->data_len) && d.tools[i].index >= 0 &&
                 d.tools[i].index < SB_CHUNK_MAX_TOOLS;
        if (!ok)
            abort();
    }
    return 0; /* read on past errors and ends: the state must hold up to whatever follows */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {{0}, NULL};
    if (sb_wire_responses.state_size > sizeof(c.state))
        abort();
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 16);
    sb_sse_decoder_feed(&dec, (const char *)data, size, on_event, &c);
    sb_sse_decoder_finish(&dec, on_event, &c);
    sb_sse_decoder_dispose(&dec);
    free(c.scratch);
    return 0;
}
