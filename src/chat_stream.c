/*
 * The OpenAI SSE sink: every event of the turn becomes switchboard's own
 * chat.completion.chunk, handed to h2o at once. Shaped like h2o's proxy
 * generator (lib/core/proxy.c): bytes gather in `pending` while one send is
 * in flight, `on_proceed` swaps them in; a reader that falls behind by
 * STREAM_BUFFER_BYTES has the turn hold the provider until it catches up.
 * After SSE_KEEPALIVE_MS of silence a comment line keeps the stream alive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_sinks.h"
#include "respond.h"
#include "sb/alloc.h"
#include "sb/buf.h"

struct stream {
    sb_sink_t super;
    h2o_generator_t generator;
    sb_chat_out_t *out;
    char model[320];   /* the answering model, JSON-escaped, for the chunk prefix */
    sb_buf_t pending;  /* encoded, not yet handed to h2o */
    sb_buf_t inflight; /* handed to h2o, kept until proceed */
    uv_timer_t *keepalive;
    uint64_t last_write; /* loop ms */
    unsigned sending : 1, started : 1, final_queued : 1, finished : 1, held : 1, role_sent : 1, gone : 1;
};

static void flush(struct stream *s);

/* --- switchboard's chunks ------------------------------------------------------------------------- */

/* `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...,` */
static void open_chunk(struct stream *s, sb_buf_t *b)
{
    sb_buf_appendf(b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":\"%s\",", s->out->id,
                   (long long)s->out->created, s->model);
}

static void append_str_field(sb_buf_t *b, const char *name, sb_str_t v, int *comma)
{
    if (v.base == NULL)
        return;
    sb_buf_appendf(b, "%s\"%s\":\"", *comma ? "," : "", name);
    sb_buf_append_json_escaped(b, v.base, v.len);
    sb_buf_append(b, "\"", 1);
    *comma = 1;
}

/* One choice-0 chunk with the delta's words and/or tool-call fragments, and maybe a finish reason. */
static void write_delta(struct stream *s, const sb_sink_delta_t *d)
{
    sb_buf_t *b = &s->pending;
    int comma = 0;
    open_chunk(s, b);
    sb_buf_appendz(b, "\"choices\":[{\"index\":0,\"delta\":{");
    if (!s->role_sent) {
        sb_buf_appendz(b, "\"role\":\"assistant\"");
        s->role_sent = 1;
        comma = 1;
    }
    append_str_field(b, "content", d->text, &comma);
    if (d->audio.base != NULL) { /* the provider's object, byte for byte: the engine plays its data */
        sb_buf_appendz(b, comma ? ",\"audio\":" : "\"audio\":");
        sb_buf_append(b, d->audio.base, d->audio.len);
        comma = 1;
    }
    if (d->nfragments > 0) {
        sb_buf_appendf(b, "%s\"tool_calls\":[", comma ? "," : "");
        for (size_t i = 0; i < d->nfragments; ++i) {
            const sb_tool_delta_t *f = d->fragments[i];
            int c2 = 1, fc = 0;
            sb_buf_appendf(b, "%s{\"index\":%ld", i ? "," : "", f->index);
            append_str_field(b, "id", f->id, &c2);
            if (f->id.base != NULL)
                sb_buf_appendz(b, ",\"type\":\"function\"");
            if (f->name.base != NULL || f->arguments.base != NULL) {
                sb_buf_appendz(b, ",\"function\":{");
                append_str_field(b, "name", f->name, &fc);
                append_str_field(b, "arguments", f->arguments, &fc);
                sb_buf_append(b, "}", 1);
            }
            sb_buf_append(b, "}", 1);
        }
        sb_buf_append(b, "]", 1);
    }
    if (d->finish != NULL)
        sb_buf_appendf(b, "},\"finish_reason\":\"%s\"}]}\n\n", d->finish);
    else
        sb_buf_appendz(b, "},\"finish_reason\":null}]}\n\n");
}

static void write_usage(struct stream *s, const sb_turn_end_t *end)
{
    open_chunk(s, &s->pending);
    sb_buf_appendf(&s->pending,
                   "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n\n",
                   end->prompt_tokens, end->completion_tokens, end->total_tokens);
}

static void write_error(struct stream *s, sb_error_t e, const char *message)
{
    sb_buf_t *b = &s->pending;
    sb_buf_appendz(b, "data: {\"error\":{\"message\":\"");
    const char *m = message ? message : sb_error_message(e);
    sb_buf_append_json_escaped(b, m, strlen(m));
    sb_buf_appendf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n", sb_error_type(e), sb_error_code(e));
}

/* --- the stream ----------------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void on_keepalive(uv_timer_t *timer)
{
    struct stream *s = timer->data;
    uint64_t now = uv_now(s->out->loop), every = s->out->config->keepalive_ms;
    if (now - s->last_write >= every) {
        /* A comment line: clients ignore it, proxies and the engine see the stream is alive. */
        sb_buf_appendz(&s->pending, ": keep-alive\n\n");
        flush(s);
        s->last_write = now;
    }
    uv_timer_start(timer, on_keepalive, s->last_write + every - now, 0);
}

static void start(struct stream *s)
{
    if (s->started)
        return;
    h2o_req_t *req = s->out->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_start_response(req, &s->generator);
    s->started = 1;
    s->out->status = 200;
    s->out->t_first = uv_hrtime();
    s->last_write = uv_now(s->out->loop);
    if (s->out->config->keepalive_ms > 0) {
        s->keepalive = sb_alloc(sizeof(*s->keepalive));
        uv_timer_init(s->out->loop, s->keepalive);
        s->keepalive->data = s;
        uv_timer_start(s->keepalive, on_keepalive, s->out->config->keepalive_ms, 0);
    }
}

/* Hands the pending bytes to h2o, unless a send is already in flight (one at a time). */
static void flush(struct stream *s)
{
    if (s->sending || !s->started || s->finished || s->gone)
        return;
    if (s->pending.len == 0 && !s->final_queued)
        return;
    sb_buf_t swap = s->inflight;
    s->inflight = s->pending;
    s->pending = swap;
    sb_buf_reset(&s->pending);
    h2o_iovec_t iov = h2o_iovec_init(s->inflight.base, s->inflight.len);
    h2o_send_state_t state = s->final_queued ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    s->sending = 1;
    s->out->bytes += iov.len;
    s->last_write = uv_now(s->out->loop);
    if (state == H2O_SEND_STATE_FINAL)
        s->finished = 1;
    h2o_send(s->out->req, &iov, iov.len ? 1 : 0, state);
}

/* After a write: past the per-stream ceiling the turn holds the provider until the reader has taken half of it. */
static void regulate(struct stream *s)
{
    size_t ceiling = s->out->config->stream_buffer_bytes;
    if (!s->held && s->pending.len > ceiling) {
        s->held = 1;
        s->super.pause(s->super.turn);
    } else if (s->held && s->pending.len < ceiling / 2) {
        s->held = 0;
        s->super.resume(s->super.turn); /* may deliver held deltas, and write them, right here */
    }
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, generator, g);
    s->sending = 0;
    sb_buf_reset(&s->inflight);
    if (!s->final_queued)
        regulate(s);
    flush(s);
}

/* h2o is abandoning the response (the client went away). */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, generator, g);
    if (s->finished || s->gone)
        return;
    s->gone = 1;
    s->out->gone(s->out);
}

/* --- the sink's operations -------------------------------------------------------------------------- */

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    size_t n = model.len < sizeof(s->out->model) - 1 ? model.len : sizeof(s->out->model) - 1;
    memcpy(s->out->model, model.base, n);
    s->out->model[n] = '\0';
    sb_buf_t b;
    sb_buf_init(&b, sizeof(s->model) - 1);
    if (sb_buf_append_json_escaped(&b, model.base, model.len) == 0)
        memcpy(s->model, b.base, b.len + 1);
    else
        memcpy(s->model, "unknown", 8);
    sb_buf_dispose(&b);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->gone)
        return SB_OK;
    int empty = (d->text.base == NULL || d->text.len == 0) && d->audio.base == NULL && d->nfragments == 0 && d->finish == NULL;
    if (empty && s->role_sent)
        return SB_OK; /* nothing the caller needs: role-only, usage-only, vendor-only or own-tool chunks */
    /* the first delta, empty or not, starts the stream and sends the role: the caller knows the answer has begun */
    start(s);
    write_delta(s, d);
    flush(s);
    regulate(s);
    return SB_OK;
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->gone)
        return;
    if (end->error != SB_OK && !s->started) {
        /* Nothing was sent yet: an HTTP error the engine turns into its failure message. */
        s->out->status = sb_error_status(end->error);
        s->finished = 1;
        sb_respond_error(s->out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    start(s);
    if (end->error != SB_OK) {
        write_error(s, end->error, end->message);
    } else {
        if (end->finish != NULL) {
            sb_sink_delta_t last = {.finish = end->finish};
            write_delta(s, &last);
        }
        if (s->out->include_usage && end->has_usage)
            write_usage(s, end);
    }
    sb_buf_appendz(&s->pending, "data: [DONE]\n\n");
    s->final_queued = 1;
    flush(s);
}

static const sb_sink_ops_t ops = {
    .name = "chat-sse",
    .live = 1,
    .model = on_model,
    .delta = on_delta,
    .tool_started = NULL, /* the engine only ever hears words */
    .tool_finished = NULL,
    .retrieval = NULL,
    .done = on_done,
};

sb_sink_t *sb_chat_stream_sink(sb_chat_out_t *out)
{
    struct stream *s = h2o_mem_alloc_pool(&out->req->pool, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->super.ops = &ops;
    s->generator.proceed = on_proceed;
    s->generator.stop = on_stop;
    s->out = out;
    /* The ceiling on unsent bytes is soft by one provider read (curl delivers at most 16 KiB at a time). */
    size_t ceiling = out->config->stream_buffer_bytes + out->config->max_event_bytes * 2 + 65536;
    sb_buf_init(&s->pending, ceiling);
    sb_buf_init(&s->inflight, ceiling);
    return &s->super;
}

int sb_chat_stream_ping(sb_sink_t *sink)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (!s->started || s->finished || s->gone)
        return 0;
    if (s->sending)
        return 1; /* the write in flight is the question */
    sb_buf_appendz(&s->pending, ": keep-alive\n\n");
    flush(s);
    return 1;
}

int sb_chat_stream_started(sb_sink_t *sink)
{
    return H2O_STRUCT_FROM_MEMBER(struct stream, super, sink)->started;
}

void sb_chat_stream_abort(sb_sink_t *sink)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->gone || s->finished)
        return;
    s->gone = 1;
    /* h2o does not read an HTTP/1 socket while a response is pending, so it has not noticed: end the response as failed */
    h2o_req_t *req = s->out->req;
    req->http1_is_persistent = 0;
    if (!s->started) {
        req->res.status = 499;
        req->res.reason = "Client Closed Request";
        h2o_start_response(req, &s->generator);
        s->started = 1;
    }
    s->finished = 1;
    if (!s->sending)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

void sb_chat_stream_dispose(sb_sink_t *sink)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->keepalive != NULL) {
        uv_timer_stop(s->keepalive);
        uv_close((uv_handle_t *)s->keepalive, on_timer_closed);
        s->keepalive = NULL;
    }
    sb_buf_dispose(&s->pending);
    sb_buf_dispose(&s->inflight);
}
