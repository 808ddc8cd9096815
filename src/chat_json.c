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

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct answer *a = H2O_STRUCT_FROM_MEMBER(struct answer, super, sink);
    sb_chat_out_t *out = a->out;
    if (end->error != SB_OK) {
        out->status = sb_error_status(end->error);
        sb_respond_error(out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    json_t *message = json_pack("{s:s, s:s%}", "role", "assistant", "content", a->text.base ? a->text.base : "", a->text.len);
    if (end->ncalls > 0) {
        json_t *calls = json_array();
        for (size_t i = 0; i < end->ncalls; ++i) {
            const sb_sink_call_t *c = &end->calls[i];
            json_array_append_new(calls, json_pack("{s:s%, s:s, s:{s:s%, s:s%}}", "id", c->id.base, c->id.len, "type", "function",
                                                   "function", "name", c->name.base, c->name.len, "arguments", c->arguments.base,
                                                   c->arguments.len));
        }
        json_object_set_new(message, "tool_calls", calls);
        if (a->text.len == 0)
            json_object_set_new(message, "content", json_null());
    }
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s}], s:{s:I, s:I, s:I}}", "id", out->id, "object",
                             "chat.completion", "created", (json_int_t)out->created, "model", out->model != NULL ? out->model : "",
                             "choices", "index", 0, "message", message, "finish_reason", end->finish ? end->finish : "stop",
                             "usage", "prompt_tokens", (json_int_t)end->prompt_tokens, "completion_tokens",
                             (json_int_t)end->completion_tokens, "total_tokens", (json_int_t)end->total_tokens);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) { /* words that are not UTF-8 cannot come from a parsed chunk: a provider fault */
        out->status = sb_error_status(SB_E_UPSTREAM_BAD_RESPONSE);
        sb_respond_error(out->req, SB_E_UPSTREAM_BAD_RESPONSE, NULL, NULL, NULL);
        return;
    }
    size_t len = strlen(text);
    out->status = 200;
    out->bytes = len;
    out->t_first = uv_hrtime();
    sb_respond_json(out->req, text, len);
    free(text);
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
