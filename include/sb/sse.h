/*
 * Server-sent events decoder for upstream streams (the WHATWG event-stream
 * format as LLM providers actually send it). Bytes may arrive split anywhere;
 * the decoder never allocates past the ceiling given at init.
 */
#ifndef SB_SSE_H
#define SB_SSE_H

#include <stddef.h>

/*
 * One dispatched event. Pointers are borrowed and valid only during the
 * callback. `data` is not NUL-terminated (it may point into the fed bytes):
 * use data_len. `event` is NUL-terminated.
 */
typedef struct sb_sse_event {
    const char *event; /* value of the last `event:` field, or "message" when none */
    size_t event_len;
    const char *data; /* `data:` lines joined with '\n' (no trailing newline) */
    size_t data_len;
} sb_sse_event_t;

/*
 * Called once per complete event that has at least one `data:` line (events with
 * no data are not dispatched, as the spec says). Return 0 to go on; any other
 * value stops decoding and is returned by sb_sse_decoder_feed / _finish.
 */
typedef int (*sb_sse_on_event_cb)(void *ctx, const sb_sse_event_t *ev);

#define SB_SSE_ERR_TOO_LARGE (-1) /* an event (or a line) exceeded max_event_bytes */

typedef struct sb_sse_decoder {
    /* private */
    char *line; /* the incomplete current line */
    size_t line_len, line_cap;
    char *data; /* data of the event being built */
    size_t data_len, data_cap;
    char event[64]; /* event name (longer names are truncated) */
    size_t event_len;
    size_t max; /* ceiling for line + data bytes */
    unsigned has_data : 1;
    unsigned last_was_cr : 1; /* a CR ended the previous chunk; a leading LF belongs to it */
    unsigned bom_checked : 1;
} sb_sse_decoder_t;

/*
 * Prepares a decoder whose pending line plus event data never exceed
 * `max_event_bytes` (its two buffers together hold at most twice that).
 */
void sb_sse_decoder_init(sb_sse_decoder_t *d, size_t max_event_bytes);
/* Frees the decoder's buffers. It may be initialised again afterwards. */
void sb_sse_decoder_dispose(sb_sse_decoder_t *d);
/*
 * Feeds `len` bytes. Lines end with LF, CRLF or CR (a CRLF split across two
 * feeds counts once). Lines starting with ':' are comments. Field names other
 * than `data` and `event` (`id`, `retry`, unknown) are ignored. One optional
 * space after the colon is removed. Returns 0, SB_SSE_ERR_TOO_LARGE, or the
 * callback's non-zero return value. After a non-zero return the stream is
 * over: the rest of the bytes are unread, and after SB_SSE_ERR_TOO_LARGE the
 * decoder keeps failing until initialised again. Never call it on the same
 * decoder from inside its own event callback.
 */
int sb_sse_decoder_feed(sb_sse_decoder_t *d, const char *bytes, size_t len, sb_sse_on_event_cb cb, void *ctx);
/*
 * Ends the stream: a final line without its newline is processed, and an event
 * that was not closed by a blank line is dispatched (providers that close the
 * connection right after the last `data:` line lose nothing). Same returns.
 */
int sb_sse_decoder_finish(sb_sse_decoder_t *d, sb_sse_on_event_cb cb, void *ctx);

#endif
