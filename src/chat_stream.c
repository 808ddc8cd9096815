/*
 * The OpenAI SSE sink: every event of the turn becomes switchboard's own
 * chat.completion.chunk, handed to the stream's writer (sse_out.c) at once;
 * the writer paces the turn to the reader and keeps a quiet stream alive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_sinks.h"
#include "respond.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sse_out.h"

/* The longest JSON-escaped model name a chunk carries; a longer one is written "unknown". */
#define MAX_MODEL_ESCAPED 319

struct stream {
    sb_sink_t super;
    sb_sse_out_t w;
    sb_chat_out_t *out;
    h2o_iovec_t prefix; /* every chunk's opening, made once the model is known: from the request's pool */
    unsigned role_sent : 1;
};

/* --- switchboard's chunks ------------------------------------------------------------------------- */

/* `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...,`, the same for every chunk of the stream. */
static void make_prefix(struct stream *s, sb_str_t model)
{
    sb_buf_t b;
    sb_buf_init(&b, 256 + MAX_MODEL_ESCAPED);
    sb_buf_appendf(&b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":\"", s->out->id,
                   (long long)s->out->created);
    size_t at = b.len;
    if (sb_buf_append_json_escaped(&b, model.base, model.len) != 0 || b.len - at > MAX_MODEL_ESCAPED) {
        b.len = at;
        sb_buf_appendz(&b, "unknown");
    }
    sb_buf_appendz(&b, "\",");
    s->prefix = h2o_strdup(&s->out->req->pool, b.base, b.len);
    sb_buf_dispose(&b);
}

static void open_chunk(struct stream *s, sb_buf_t *b)
{
    if (s->prefix.base == NULL) /* the turn names the model before anything else; this is only a guard */
        make_prefix(s, (sb_str_t){"unknown", 7});
    sb_buf_append(b, s->prefix.base, s->prefix.len);
}

/* `"name":"value"` (after a comma unless it is the first field); no printf: this runs for every token. */
static void append_str_field(sb_buf_t *b, const char *name, sb_str_t v, int *comma)
{
    if (v.base == NULL)
        return;
    if (*comma)
        sb_buf_append(b, ",", 1);
    sb_buf_append(b, "\"", 1);
    sb_buf_appendz(b, name);
    sb_buf_append(b, "\":\"", 3);
    sb_buf_append_json_escaped(b, v.base, v.len);
    sb_buf_append(b, "\"", 1);
    *comma = 1;
}

/* One choice-0 chunk with the delta's words and/or tool-call fragments, and maybe a finish reason. */
static void write_delta(struct stream *s, const sb_sink_delta_t *d)
{
    sb_buf_t *b = &s->w.pending;
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
    open_chunk(s, &s->w.pending);
    sb_buf_appendf(&s->w.pending,
                   "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n\n",
                   end->prompt_tokens, end->completion_tokens, end->total_tokens);
}

static void write_error(struct stream *s, sb_error_t e, const char *message)
{
    sb_buf_t *b = &s->w.pending;
    sb_buf_appendz(b, "data: {\"error\":{\"message\":\"");
    const char *m = message ? message : sb_error_message(e);
    sb_buf_append_json_escaped(b, m, strlen(m));
    sb_buf_appendf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n", sb_error_type(e), sb_error_code(e));
}

/* --- the sink's operations -------------------------------------------------------------------------- */

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    sb_chat_out_set_model(s->out, model);
    make_prefix(s, model);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->w.gone)
        return SB_OK;
    int empty = (d->text.base == NULL || d->text.len == 0) && d->audio.base == NULL && d->nfragments == 0 && d->finish == NULL;
    if (empty && s->role_sent)
        return SB_OK; /* nothing the caller needs: role-only, usage-only, vendor-only or own-tool chunks */
    /* the first delta, empty or not, starts the stream and sends the role: the caller knows the answer has begun */
    sb_sse_out_start(&s->w);
    write_delta(s, d);
    sb_sse_out_flush(&s->w);
    return SB_OK;
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct stream *s = H2O_STRUCT_FROM_MEMBER(struct stream, super, sink);
    if (s->w.gone)
        return;
    if (end->error != SB_OK && !s->w.started) {
        /* Nothing was sent yet: an HTTP error the engine turns into its failure message. */
        s->out->status = sb_error_status(end->error);
        s->w.finished = 1;
        sb_respond_error(s->out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    sb_sse_out_start(&s->w);
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
    sb_buf_appendz(&s->w.pending, "data: [DONE]\n\n");
    sb_sse_out_end(&s->w);
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
    s->out = out;
    sb_sse_out_init(&s->w, out, &s->super);
    return &s->super;
}

int sb_chat_stream_ping(sb_sink_t *sink)
{
    return sb_sse_out_ping(&H2O_STRUCT_FROM_MEMBER(struct stream, super, sink)->w);
}

int sb_chat_stream_started(sb_sink_t *sink)
{
    return H2O_STRUCT_FROM_MEMBER(struct stream, super, sink)->w.started;
}

void sb_chat_stream_abort(sb_sink_t *sink)
{
    sb_sse_out_abort(&H2O_STRUCT_FROM_MEMBER(struct stream, super, sink)->w);
}

void sb_chat_stream_dispose(sb_sink_t *sink)
{
    sb_sse_out_dispose(&H2O_STRUCT_FROM_MEMBER(struct stream, super, sink)->w);
}
