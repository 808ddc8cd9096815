/*
 * An SSE response written into h2o (sse_out.h): one send in flight at a
 * time, back-pressure on the turn, keep-alive comments, and the two ways a
 * stream ends early (h2o stopped it; the hang-up watch saw the caller go).
 */
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sse_out.h"

static void send_pending(sb_sse_out_t *o);

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void on_keepalive(uv_timer_t *timer)
{
    sb_sse_out_t *o = timer->data;
    uint64_t now = uv_now(o->out->loop), every = o->out->config->keepalive_ms;
    if (now - o->last_write >= every) {
        /* A comment line: clients ignore it, proxies and the engine see the stream is alive. */
        sb_buf_appendz(&o->pending, ": keep-alive\n\n");
        send_pending(o);
        o->last_write = now;
    }
    uv_timer_start(timer, on_keepalive, o->last_write + every - now, 0);
}

/* Hands the pending bytes to h2o, unless a send is already in flight (one at a time). */
static void send_pending(sb_sse_out_t *o)
{
    if (o->sending || !o->started || o->finished || o->gone)
        return;
    if (o->pending.len == 0 && !o->final_queued)
        return;
    sb_buf_t swap = o->inflight;
    o->inflight = o->pending;
    o->pending = swap;
    sb_buf_reset(&o->pending);
    h2o_iovec_t iov = h2o_iovec_init(o->inflight.base, o->inflight.len);
    h2o_send_state_t state = o->final_queued ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    o->sending = 1;
    o->out->bytes += iov.len;
    o->last_write = uv_now(o->out->loop);
    if (state == H2O_SEND_STATE_FINAL)
        o->finished = 1;
    h2o_send(o->out->req, &iov, iov.len ? 1 : 0, state);
}

/* After a write: past the per-stream ceiling the turn holds the provider until the reader has taken half of it. */
static void regulate(sb_sse_out_t *o)
{
    size_t ceiling = o->out->config->stream_buffer_bytes;
    if (!o->held && o->pending.len > ceiling) {
        o->held = 1;
        o->sink->pause(o->sink->turn);
    } else if (o->held && o->pending.len < ceiling / 2) {
        o->held = 0;
        o->sink->resume(o->sink->turn); /* may deliver held deltas, and write them, right here */
    }
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    sb_sse_out_t *o = H2O_STRUCT_FROM_MEMBER(sb_sse_out_t, generator, g);
    o->sending = 0;
    sb_buf_reset(&o->inflight);
    if (o->pending.len == 0) {
        /* Nothing waits: a quiet stream holds no buffer until its next chunk. Thousands of streams spend most of their
         * time here, a token every 100 ms; a malloc per chunk costs less than 256 bytes kept by each of them. */
        sb_buf_dispose(&o->pending);
        sb_buf_dispose(&o->inflight);
    }
    if (!o->final_queued)
        regulate(o);
    send_pending(o);
}

/* h2o is abandoning the response (the client went away). */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    sb_sse_out_t *o = H2O_STRUCT_FROM_MEMBER(sb_sse_out_t, generator, g);
    if (o->finished || o->gone)
        return;
    o->gone = 1;
    o->out->gone(o->out);
}

void sb_sse_out_init(sb_sse_out_t *o, sb_chat_out_t *out, sb_sink_t *sink)
{
    memset(o, 0, sizeof(*o));
    o->generator.proceed = on_proceed;
    o->generator.stop = on_stop;
    o->out = out;
    o->sink = sink;
    /* The ceiling on unsent bytes is soft by one provider read (curl delivers at most 16 KiB at a time). */
    size_t ceiling = out->config->stream_buffer_bytes + out->config->max_event_bytes * 2 + 65536;
    sb_buf_init(&o->pending, ceiling);
    sb_buf_init(&o->inflight, ceiling);
}

void sb_sse_out_start(sb_sse_out_t *o)
{
    if (o->started)
        return;
    h2o_req_t *req = o->out->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_start_response(req, &o->generator);
    o->started = 1;
    o->out->status = 200;
    o->out->t_first = uv_hrtime();
    o->last_write = uv_now(o->out->loop);
    if (o->out->config->keepalive_ms > 0) {
        o->keepalive = sb_alloc(sizeof(*o->keepalive));
        uv_timer_init(o->out->loop, o->keepalive);
        o->keepalive->data = o;
        uv_timer_start(o->keepalive, on_keepalive, o->out->config->keepalive_ms, 0);
    }
}

void sb_sse_out_flush(sb_sse_out_t *o)
{
    send_pending(o);
    if (!o->final_queued)
        regulate(o);
}

void sb_sse_out_end(sb_sse_out_t *o)
{
    o->final_queued = 1;
    send_pending(o);
}

int sb_sse_out_ping(sb_sse_out_t *o)
{
    if (!o->started || o->finished || o->gone)
        return 0;
    if (o->sending)
        return 1; /* the write in flight is the question */
    sb_buf_appendz(&o->pending, ": keep-alive\n\n");
    send_pending(o);
    return 1;
}

void sb_sse_out_abort(sb_sse_out_t *o)
{
    if (o->gone || o->finished)
        return;
    o->gone = 1;
    /* h2o does not read an HTTP/1 socket while a response is pending, so it has not noticed: end the response as failed */
    h2o_req_t *req = o->out->req;
    req->http1_is_persistent = 0;
    if (!o->started) {
        req->res.status = 499;
        req->res.reason = "Client Closed Request";
        h2o_start_response(req, &o->generator);
        o->started = 1;
    }
    o->finished = 1;
    if (!o->sending)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

void sb_sse_out_dispose(sb_sse_out_t *o)
{
    if (o->keepalive != NULL) {
        uv_timer_stop(o->keepalive);
        uv_close((uv_handle_t *)o->keepalive, on_timer_closed);
        o->keepalive = NULL;
    }
    sb_buf_dispose(&o->pending);
    sb_buf_dispose(&o->inflight);
}
