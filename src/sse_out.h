/*
 * The byte side of a streamed answer: an SSE response written into h2o, one
 * send at a time. A channel's stream sink (chat_stream.c, responses_sink.c)
 * encodes its events into `pending` and flushes; this writer hands the bytes
 * on, holds the turn when the reader falls STREAM_BUFFER_BYTES behind and
 * lets it go on at half that, and keeps a quiet stream alive with comment
 * lines every SSE_KEEPALIVE_MS. Shaped like h2o's proxy generator
 * (lib/core/proxy.c): `pending` gathers while a send is in flight, proceed
 * swaps it in. Loop thread only.
 */
#ifndef SB_SSE_OUT_H
#define SB_SSE_OUT_H

#include <h2o.h>

#include "chat_sinks.h"
#include "sb/buf.h"
#include "sink.h"

typedef struct sb_sse_out {
    h2o_generator_t generator;
    sb_chat_out_t *out;
    sb_sink_t *sink;   /* the sink whose turn is held while the reader is behind */
    sb_buf_t pending;  /* encoded, not yet handed to h2o: the sink appends here, then calls sb_sse_out_flush */
    sb_buf_t inflight; /* handed to h2o, kept until proceed */
    uv_timer_t *keepalive;
    uint64_t last_write; /* loop ms */
    unsigned sending : 1, started : 1, final_queued : 1, finished : 1, held : 1, gone : 1;
} sb_sse_out_t;

/* Prepares the writer for out->req, on behalf of `sink`. Allocates nothing outside the buffers' ceilings. */
void sb_sse_out_init(sb_sse_out_t *o, sb_chat_out_t *out, sb_sink_t *sink);
/* Sends the response head (200, text/event-stream, no caching or proxy buffering) once; starts the keep-alive. */
void sb_sse_out_start(sb_sse_out_t *o);
/* Hands the pending bytes to h2o unless a send is in flight, then holds or resumes the turn by how far the reader is behind. */
void sb_sse_out_flush(sb_sse_out_t *o);
/* What is pending is the last of the stream: it goes out with the final send. */
void sb_sse_out_end(sb_sse_out_t *o);
/* A keep-alive comment, if the stream has started, asking an HTTP/1 caller whether it still reads. 1 when one went out. */
int sb_sse_out_ping(sb_sse_out_t *o);
/* The caller is gone and h2o has not noticed: ends the response as failed, at once. */
void sb_sse_out_abort(sb_sse_out_t *o);
/* Stops the keep-alive and frees the buffers. */
void sb_sse_out_dispose(sb_sse_out_t *o);

#endif
