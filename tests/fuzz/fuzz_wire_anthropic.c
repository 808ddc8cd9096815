/*
 * libFuzzer target for the Anthropic wire's event reader (src/wire_anthropic.c):
 * any bytes, decoded as SSE, then every event read as the upstream call reads
 * it. Never a crash; every string of a delta lies in memory the wire may hand
 * out (each event's scratch is exactly as large as wire.h promises, so ASan
 * sees a byte past it); indexes and token counts stay in range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sse.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long long state[1024];
static unsigned sink;

static void touch(sb_str_t s)
{
    if (s.base == NULL && s.len != 0)
        abort();
    for (size_t i = 0; i < s.len; ++i)
        sink += (unsigned char)s.base[i];
}

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    (void)ctx;
    char *scratch = malloc(ev->data_len ? ev->data_len : 1);
    if (scratch == NULL)
        abort();
    sb_delta_t d;
    sb_error_t kind = SB_OK;
    sb_wire_result_t rc = sb_wire_anthropic.event(state, ev, scratch, &d, &kind);
    if (rc == SB_WIRE_ERROR) {
        if (kind == SB_OK)
            abort();
        touch(d.error_message);
    } else if (rc == SB_WIRE_DELTA) {
        if (d.ntools > SB_CHUNK_MAX_TOOLS || d.prompt_tokens < 0 || d.completion_tokens < 0 || d.total_tokens < 0)
            abort();
        touch(d.content);
        touch(d.model);
        touch(d.finish_reason);
        for (size_t i = 0; i < d.ntools; ++i) {
            if (d.tools[i].index < 0)
                abort();
            touch(d.tools[i].id);
            touch(d.tools[i].name);
            touch(d.tools[i].type);
            touch(d.tools[i].arguments);
        }
    } else if (rc != SB_WIRE_SKIP && rc != SB_WIRE_END) {
        abort();
    }
    free(scratch);
    return 0; /* read on past an error or the end: the reader must hold up to what follows too */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sb_wire_anthropic.state_size > sizeof(state))
        abort();
    memset(state, 0, sizeof(state));
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 20);
    sb_sse_decoder_feed(&dec, (const char *)data, size, on_event, NULL);
    sb_sse_decoder_finish(&dec, on_event, NULL);
    sb_sse_decoder_dispose(&dec);
    return 0;
}
