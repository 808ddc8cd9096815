/*
 * libFuzzer target for the Gemini wire's event reader (src/wire_gemini.c):
 * the input, cut at newlines, is a stream of event data read with one state,
 * each event with a scratch exactly as large as its data (so a write past it
 * is caught by the sanitizers), until one fails the stream. Whatever comes, the reader answers with a
 * result, and a delta whose strings lie in the scratch, the state or static
 * storage and whose calls are counted in order.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *state = calloc(1, sb_wire_gemini.state_size);
    long next_index = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *copy = malloc(len ? len : 1), *scratch = malloc(len ? len : 1);
        memcpy(copy, p, len);
        sb_sse_event_t ev = {"message", 7, copy, len};
        sb_delta_t d;
        sb_error_t e = SB_OK;
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
        free(copy);
        free(scratch);
        if (nl == NULL || rc == SB_WIRE_ERROR) /* an error ends the stream, as in upstream.c */
            break;
        p = nl + 1;
    }
    free(state);
    return 0;
}
