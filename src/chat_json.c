/*
 * The `stream: false` sink: gathers the answer's words (at most
 * MAX_ANSWER_BYTES) and sends one chat.completion when the turn is done,
 * with the client's tool calls, the finish reason and the usage. A failure
 * is an HTTP error with an OpenAI error body.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat_sinks.h"
#include "respond.h"
#include "sb/buf.h"
#include "sb/json.h"

struct answer {
    sb_sink_t super;
    h2o_generator_t generator; /* only to end the response as failed when the client leaves first */
    sb_chat_out_t *out;
    sb_buf_t text;
};

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    sb_chat_out_set_model(a->out, model);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    if (d->text.base == NULL || d->text.len == 0)
        return SB_OK;
    return sb_buf_append(&a->text, d->text.base, d->text.len) == 0 ? SB_OK : SB_E_ANSWER_TOO_LARGE;
}

/*
 * The one chat.completion, written straight into `b` (initialised here): id,
 * object, created, model, the message (its words, null beside tool calls when
 * there are none, and the client's calls whole), the finish reason, usage.
 * -1 when a string is not UTF-8, which JSON cannot carry.
 */
static int write_answer(sb_buf_t *b, const sb_chat_out_t *out, const sb_buf_t *text, const sb_turn_end_t *end)
{
    sb_str_t words = {text->base != NULL ? text->base : "", text->len};
    size_t in = words.len;
    for (size_t i = 0; i < end->ncalls; ++i)
        in += end->calls[i].id.len + end->calls[i].name.len + end->calls[i].arguments.len;
    sb_buf_init(b, 6 * in + 4096); /* an escape is at most 6 bytes for 1 */
    int utf8 = sb_json_is_utf8(words.base, words.len);
    sb_buf_appendf(b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", out->id,
                   (long long)out->created);
    sb_buf_append_json_string(b, out->model != NULL ? out->model : "", out->model != NULL ? strlen(out->model) : 0);
    sb_buf_appendz(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (end->ncalls > 0 && words.len == 0)
        sb_buf_appendz(b, "null");
    else
        sb_buf_append_json_string(b, words.base, words.len);
    if (end->ncalls > 0) {
        sb_buf_appendz(b, ",\"tool_calls\":[");
        for (size_t i = 0; i < end->ncalls; ++i) {
            const sb_sink_call_t *c = &end->calls[i];
            utf8 &= sb_json_is_utf8(c->id.base, c->id.len) && sb_json_is_utf8(c->name.base, c->name.len) &&
                    sb_json_is_utf8(c->arguments.base, c->arguments.len);
            sb_buf_appendz(b, i ? ",{\"id\":" : "{\"id\":");
            sb_buf_append_json_string(b, c->id.base, c->id.len);
            sb_buf_appendz(b, ",\"type\":\"function\",\"function\":{\"name\":");
            sb_buf_append_json_string(b, c->name.base, c->name.len);
            sb_buf_appendz(b, ",\"arguments\":");
            sb_buf_append_json_string(b, c->arguments.base, c->arguments.len);
            sb_buf_appendz(b, "}}");
        }
        sb_buf_appendz(b, "]");
    }
    sb_buf_appendf(
        b, "},\"finish_reason\":\"%s\"}],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}",
        end->finish ? end->finish : "stop", end->prompt_tokens, end->completion_tokens, end->total_tokens);
    return utf8 && b->base != NULL ? 0 : -1;
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    sb_chat_out_t *out = a->out;
    if (end->error != SB_OK) {
        out->status = sb_error_status(end->error);
        sb_respond_error(out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    sb_buf_t b;
    if (write_answer(&b, out, &a->text, end) != 0) { /* words not UTF-8 cannot come from a parsed chunk: a provider fault */
        sb_buf_dispose(&b);
        out->status = sb_error_status(SB_E_UPSTREAM_BAD_RESPONSE);
        sb_respond_error(out->req, SB_E_UPSTREAM_BAD_RESPONSE, NULL, NULL, NULL);
        return;
    }
    out->status = 200;
    out->bytes = b.len;
    out->t_first = uv_hrtime();
    sb_respond_json(out->req, b.base, b.len);
    sb_buf_dispose(&b);
}

static const sb_sink_ops_t ops = {
    .name = "chat-json",
    .live = 0, /* one answer at the end */
    .model = on_model,
    .delta = on_delta,
    .tool_started = NULL,
    .tool_finished = NULL,
    .retrieval = NULL,
    .done = on_done,
};

sb_sink_t *sb_chat_json_sink(sb_chat_out_t *out)
{
    struct answer *a = h2o_mem_alloc_pool(&out->req->pool, sizeof(*a));
    memset(a, 0, sizeof(*a));
    a->super.ops = &ops;
    a->out = out;
    sb_buf_init(&a->text, out->config->max_answer_bytes);
    return &a->super;
}

void sb_chat_json_abort(sb_sink_t *sink)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    h2o_req_t *req = a->out->req;
    if (a->out->status != 0)
        return; /* answered already */
    req->http1_is_persistent = 0;
    req->res.status = 499;
    req->res.reason = "Client Closed Request";
    h2o_start_response(req, &a->generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

void sb_chat_json_dispose(sb_sink_t *sink)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    sb_buf_dispose(&a->text);
}
