/*
 * The Chat Completions channel's two sinks (sink.h): the OpenAI SSE stream
 * (`stream: true`, what voice engines use) and the one JSON answer
 * (`stream: false`). They write into the h2o response of the request they
 * were made for; the channel (chat.c) owns both the sink and the turn.
 */
#ifndef SB_CHAT_SINKS_H
#define SB_CHAT_SINKS_H

#include <time.h>

#include <h2o.h>

#include "sb/buf.h"
#include "sb/config.h"
#include "sink.h"

/* What the channel and its sink share: the answer's identity, and what the access log reports. */
typedef struct sb_chat_out {
    h2o_req_t *req;
    const sb_config_t *config;
    uv_loop_t *loop;
    char id[48]; /* "chatcmpl-" and the request id */
    time_t created;
    int include_usage; /* stream_options.include_usage */
    /* written by the sink */
    int status;        /* the HTTP status sent, 0 before */
    uint64_t t_first;  /* uv_hrtime() of the first byte handed to h2o, 0 before */
    size_t bytes;      /* body bytes handed to h2o */
    const char *model; /* the model that answered (sb_chat_out_set_model), NULL before */
    /* set by the channel: h2o stopped the response (the client left); the sink writes nothing more */
    void (*gone)(struct sb_chat_out *out);
} sb_chat_out_t;

/* Keeps the name of the model that answered for the access log: at most 256 bytes of it, made printable, in the request's pool. */
static inline void sb_chat_out_set_model(sb_chat_out_t *out, sb_str_t model)
{
    size_t cap = (model.len < 256 ? model.len : 256) + 1;
    char *copy = h2o_mem_alloc_pool(&out->req->pool, cap);
    sb_copy_text(copy, cap, model.base, model.len);
    out->model = copy;
}

/* A sink writing the OpenAI SSE stream into out->req. Allocated from the request's pool; sb_chat_stream_dispose frees what it
 * holds. */
sb_sink_t *sb_chat_stream_sink(sb_chat_out_t *out);
/* Asks the client whether it still reads: a keep-alive comment, if the stream has started. 1 when one went out. */
int sb_chat_stream_ping(sb_sink_t *sink);
/* The client is gone (the hang-up watch saw it): ends the response as failed, at once. */
void sb_chat_stream_abort(sb_sink_t *sink);
/* Whether the stream has started (its head went out): before that, nothing of it is on the wire. */
int sb_chat_stream_started(sb_sink_t *sink);
void sb_chat_stream_dispose(sb_sink_t *sink);

/* A sink gathering one chat.completion, sent at done. Allocated from the request's pool. */
sb_sink_t *sb_chat_json_sink(sb_chat_out_t *out);
/* The client is gone before the answer: ends the response as failed, at once. */
void sb_chat_json_abort(sb_sink_t *sink);
void sb_chat_json_dispose(sb_sink_t *sink);

#endif
