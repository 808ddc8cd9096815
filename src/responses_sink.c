/*
 * The Responses API sinks. Both keep the answer as a list of output items (a
 * message per run of words, a function_call per call of the client's tool),
 * bounded by MAX_ANSWER_BYTES for words and MAX_UPSTREAM_BYTES per call's
 * arguments. The live sink also writes each change as it comes:
 * output_item.added, content_part.added, output_text.delta ... done events,
 * function_call_arguments.delta / .done, and at the end response.completed
 * (or .incomplete) with the whole response object, each event numbered by
 * sequence_number; a failure after the stream began is an `error` event and
 * response.failed. The other sink sends that response object alone.
 */
#include <stdlib.h>
#include <string.h>

#include "respond.h"
#include "responses_sink.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sse_out.h"

#define MAX_ITEMS 300 /* a round's calls (SB_CHUNK_MAX_TOOLS) and the words between them, with room to spare */

enum item_kind { ITEM_MESSAGE, ITEM_CALL };

struct item {
    enum item_kind kind;
    long index;             /* the call's index in its round */
    sb_buf_t text;          /* message: its words; call: its arguments */
    sb_buf_t call_id, name; /* call only */
    unsigned announced : 1; /* output_item.added went out (a call needs its name first) */
    unsigned closed : 1;
};

struct responses {
    sb_sink_t super;
    sb_sse_out_t w; /* live only */
    sb_chat_out_t *out;
    char *echo;
    int live;
    long long seq;
    char model[320]; /* JSON-escaped */
    struct item *items;
    size_t nitems;
    struct item *open; /* the item changes go to, NULL when none */
    char finish[32];
};

/* --- JSON text ---------------------------------------------------------------------------------- */

static void append_buf_str(sb_buf_t *b, const sb_buf_t *s)
{
    sb_buf_append_json_string(b, s->base ? s->base : "", s->len);
}

/* The item's id: msg_/fc_ and the response's own id, and its place in the output. */
static void append_item_id(sb_buf_t *b, const struct responses *r, const struct item *it)
{
    const char *id = r->out->id + (strncmp(r->out->id, "resp_", 5) == 0 ? 5 : 0);
    sb_buf_appendf(b, "\"%s_%s_%zu\"", it->kind == ITEM_MESSAGE ? "msg" : "fc", id, (size_t)(it - r->items));
}

static void append_part(sb_buf_t *b, const struct item *it, int whole)
{
    sb_buf_appendz(b, "{\"type\":\"output_text\",\"text\":");
    if (whole)
        append_buf_str(b, &it->text);
    else
        sb_buf_appendz(b, "\"\"");
    sb_buf_appendz(b, ",\"annotations\":[]}");
}

static void append_item(sb_buf_t *b, const struct responses *r, const struct item *it, int whole)
{
    sb_buf_appendz(b, "{\"id\":");
    append_item_id(b, r, it);
    if (it->kind == ITEM_MESSAGE) {
        sb_buf_appendf(b, ",\"type\":\"message\",\"status\":\"%s\",\"role\":\"assistant\",\"content\":[",
                       whole ? "completed" : "in_progress");
        if (whole)
            append_part(b, it, 1);
        sb_buf_appendz(b, "]}");
        return;
    }
    sb_buf_appendf(b, ",\"type\":\"function_call\",\"status\":\"%s\",\"call_id\":", whole ? "completed" : "in_progress");
    append_buf_str(b, &it->call_id);
    sb_buf_appendz(b, ",\"name\":");
    append_buf_str(b, &it->name);
    sb_buf_appendz(b, ",\"arguments\":");
    if (whole)
        append_buf_str(b, &it->text);
    else
        sb_buf_appendz(b, "\"\"");
    sb_buf_appendz(b, "}");
}

/* The response object; `end` NULL while in progress. */
static void append_response(sb_buf_t *b, const struct responses *r, const char *status, const sb_turn_end_t *end)
{
    sb_buf_appendf(b, "{\"id\":\"%s\",\"object\":\"response\",\"created_at\":%lld,\"status\":\"%s\",\"error\":", r->out->id,
                   (long long)r->out->created, status);
    if (end != NULL && end->error != SB_OK) {
        const char *m = end->message ? end->message : sb_error_message(end->error);
        sb_buf_appendf(b, "{\"code\":\"%s\",\"message\":", sb_error_code(end->error));
        sb_buf_append_json_string(b, m, strlen(m));
        sb_buf_appendz(b, "}");
    } else {
        sb_buf_appendz(b, "null");
    }
    if (strcmp(status, "incomplete") == 0)
        sb_buf_appendf(b, ",\"incomplete_details\":{\"reason\":\"%s\"}",
                       strcmp(r->finish, "length") == 0 ? "max_output_tokens" : "content_filter");
    else
        sb_buf_appendz(b, ",\"incomplete_details\":null");
    sb_buf_appendf(b, ",\"model\":\"%s\",\"output\":[", r->model[0] ? r->model : "unknown");
    int comma = 0;
    for (size_t i = 0; end != NULL && i < r->nitems; ++i) {
        if (!r->items[i].announced)
            continue; /* a call whose name never came: nothing the client could answer */
        if (comma++)
            sb_buf_appendz(b, ",");
        append_item(b, r, &r->items[i], 1);
    }
    sb_buf_appendz(b, "],\"parallel_tool_calls\":true,\"previous_response_id\":null,\"store\":false,"
                      "\"text\":{\"format\":{\"type\":\"text\"}},\"truncation\":\"disabled\",\"usage\":");
    if (end != NULL && end->error == SB_OK)
        sb_buf_appendf(b,
                       "{\"input_tokens\":%lld,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":%lld,"
                       "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":%lld}",
                       end->prompt_tokens, end->completion_tokens, end->total_tokens);
    else
        sb_buf_appendz(b, "null");
    sb_buf_appendf(b, ",%s,\"metadata\":{}}", r->echo);
}

/* --- events ------------------------------------------------------------------------------------- */

/* `event: <type>` and the opening of its data, up to the members after sequence_number. */
static sb_buf_t *open_event(struct responses *r, const char *type)
{
    sb_buf_t *b = &r->w.pending;
    sb_buf_appendf(b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%lld", type, type, r->seq++);
    return b;
}

static void close_event(sb_buf_t *b)
{
    sb_buf_appendz(b, "}\n\n");
}

/* The members that place an event in an item: item_id, output_index (and content_index for a message). */
static void append_place(sb_buf_t *b, const struct responses *r, const struct item *it)
{
    sb_buf_appendz(b, ",\"item_id\":");
    append_item_id(b, r, it);
    sb_buf_appendf(b, ",\"output_index\":%zu", (size_t)(it - r->items));
    if (it->kind == ITEM_MESSAGE)
        sb_buf_appendz(b, ",\"content_index\":0");
}

static void write_response_event(struct responses *r, const char *type, const char *status, const sb_turn_end_t *end)
{
    sb_buf_t *b = open_event(r, type);
    sb_buf_appendz(b, ",\"response\":");
    append_response(b, r, status, end);
    close_event(b);
}

static void announce(struct responses *r, struct item *it)
{
    it->announced = 1;
    if (!r->live)
        return;
    sb_buf_t *b = open_event(r, "response.output_item.added");
    sb_buf_appendf(b, ",\"output_index\":%zu,\"item\":", (size_t)(it - r->items));
    append_item(b, r, it, 0);
    close_event(b);
    if (it->kind == ITEM_MESSAGE) {
        b = open_event(r, "response.content_part.added");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"part\":");
        append_part(b, it, 0);
        close_event(b);
    } else if (it->text.len > 0) { /* arguments that came before the name */
        b = open_event(r, "response.function_call_arguments.delta");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"delta\":");
        append_buf_str(b, &it->text);
        close_event(b);
    }
}

static void close_item(struct responses *r, struct item *it)
{
    if (it->closed)
        return;
    it->closed = 1;
    if (!r->live || !it->announced)
        return;
    sb_buf_t *b;
    if (it->kind == ITEM_MESSAGE) {
        b = open_event(r, "response.output_text.done");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"text\":");
        append_buf_str(b, &it->text);
        close_event(b);
        b = open_event(r, "response.content_part.done");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"part\":");
        append_part(b, it, 1);
        close_event(b);
    } else {
        b = open_event(r, "response.function_call_arguments.done");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"arguments\":");
        append_buf_str(b, &it->text);
        close_event(b);
    }
    b = open_event(r, "response.output_item.done");
    sb_buf_appendf(b, ",\"output_index\":%zu,\"item\":", (size_t)(it - r->items));
    append_item(b, r, it, 1);
    close_event(b);
}

/* A new item, after the open one is closed; NULL past MAX_ITEMS. */
static struct item *new_item(struct responses *r, enum item_kind kind, long index)
{
    if (r->nitems == MAX_ITEMS)
        return NULL;
    if (r->open != NULL)
        close_item(r, r->open);
    struct item *it = &r->items[r->nitems++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->index = index;
    const sb_config_t *cf = r->out->config;
    sb_buf_init(&it->text, kind == ITEM_MESSAGE ? cf->max_answer_bytes : cf->max_upstream_bytes);
    sb_buf_init(&it->call_id, 256);
    sb_buf_init(&it->name, 256);
    r->open = it;
    return it;
}

/* The call item at `index` in this run of calls, new when unseen. */
static struct item *call_item(struct responses *r, long index)
{
    for (size_t i = r->nitems; i-- > 0 && r->items[i].kind == ITEM_CALL;)
        if (r->items[i].index == index)
            return &r->items[i];
    return new_item(r, ITEM_CALL, index);
}

static sb_error_t add_text(struct responses *r, sb_str_t text)
{
    struct item *it = r->open != NULL && r->open->kind == ITEM_MESSAGE ? r->open : new_item(r, ITEM_MESSAGE, 0);
    if (it == NULL)
        return SB_E_TOO_MANY_TOOL_CALLS;
    if (!it->announced)
        announce(r, it);
    if (sb_buf_append(&it->text, text.base, text.len) != 0)
        return SB_E_ANSWER_TOO_LARGE;
    if (r->live) {
        sb_buf_t *b = open_event(r, "response.output_text.delta");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"delta\":");
        sb_buf_append_json_string(b, text.base, text.len);
        sb_buf_appendz(b, ",\"logprobs\":[]");
        close_event(b);
    }
    return SB_OK;
}

static sb_error_t add_fragment(struct responses *r, const sb_tool_delta_t *f)
{
    struct item *it = call_item(r, f->index);
    if (it == NULL)
        return SB_E_TOO_MANY_TOOL_CALLS;
    r->open = it; /* fragments of calls that came before it go to their own items */
    if (f->id.base != NULL && it->call_id.len == 0)
        sb_buf_append(&it->call_id, f->id.base, f->id.len);
    if (f->name.base != NULL)
        sb_buf_append(&it->name, f->name.base, f->name.len);
    if (f->arguments.base != NULL && sb_buf_append(&it->text, f->arguments.base, f->arguments.len) != 0)
        return SB_E_ANSWER_TOO_LARGE;
    if (!it->announced && it->name.len > 0) {
        if (it->call_id.len == 0) /* some providers leave ids out: the client's output must still name its call */
            sb_buf_appendf(&it->call_id, "call_%s_%zu", r->out->id, (size_t)(it - r->items));
        announce(r, it); /* with the arguments so far */
    } else if (it->announced && r->live && f->arguments.base != NULL && f->arguments.len > 0) {
        sb_buf_t *b = open_event(r, "response.function_call_arguments.delta");
        append_place(b, r, it);
        sb_buf_appendz(b, ",\"delta\":");
        sb_buf_append_json_string(b, f->arguments.base, f->arguments.len);
        close_event(b);
    }
    return SB_OK;
}

/* --- the sink's operations ---------------------------------------------------------------------- */

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    sb_chat_out_set_model(r->out, model);
    sb_buf_t b;
    sb_buf_init(&b, sizeof(r->model) - 1);
    if (sb_buf_append_json_escaped(&b, model.base, model.len) == 0 && b.base != NULL)
        memcpy(r->model, b.base, b.len + 1);
    else
        memcpy(r->model, "unknown", 8);
    sb_buf_dispose(&b);
}

/* The stream's head and its first two events, once. */
static void begin(struct responses *r)
{
    if (r->w.started)
        return;
    sb_sse_out_start(&r->w);
    write_response_event(r, "response.created", "in_progress", NULL);
    write_response_event(r, "response.in_progress", "in_progress", NULL);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    if (r->live && r->w.gone)
        return SB_OK;
    if (r->live)
        begin(r);
    sb_error_t e = SB_OK;
    if (d->text.base != NULL && d->text.len > 0)
        e = add_text(r, d->text);
    for (size_t i = 0; e == SB_OK && i < d->nfragments; ++i)
        e = add_fragment(r, d->fragments[i]);
    if (d->finish != NULL)
        sb_copy_text(r->finish, sizeof(r->finish), d->finish, strlen(d->finish));
    if (r->live)
        sb_sse_out_flush(&r->w);
    return e;
}

static const char *final_status(const struct responses *r)
{
    return strcmp(r->finish, "length") == 0 || strcmp(r->finish, "content_filter") == 0 ? "incomplete" : "completed";
}

static void on_live_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    if (r->w.gone)
        return;
    if (end->error != SB_OK && !r->w.started) {
        /* Nothing was sent yet: an HTTP error, as the API answers one */
        r->out->status = sb_error_status(end->error);
        r->w.finished = 1;
        sb_respond_error(r->out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    begin(r);
    if (end->finish != NULL)
        sb_copy_text(r->finish, sizeof(r->finish), end->finish, strlen(end->finish));
    if (r->open != NULL)
        close_item(r, r->open);
    if (end->error != SB_OK) {
        const char *m = end->message ? end->message : sb_error_message(end->error);
        sb_buf_t *b = open_event(r, "error");
        sb_buf_appendf(b, ",\"code\":\"%s\",\"message\":", sb_error_code(end->error));
        sb_buf_append_json_string(b, m, strlen(m));
        sb_buf_appendf(b, ",\"param\":null,\"error\":{\"type\":\"%s\",\"code\":\"%s\",\"message\":", sb_error_type(end->error),
                       sb_error_code(end->error));
        sb_buf_append_json_string(b, m, strlen(m));
        sb_buf_appendz(b, ",\"param\":null}");
        close_event(b);
        write_response_event(r, "response.failed", "failed", end);
    } else {
        const char *status = final_status(r);
        write_response_event(r, strcmp(status, "completed") == 0 ? "response.completed" : "response.incomplete", status, end);
    }
    sb_sse_out_end(&r->w);
}

static void on_json_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    sb_chat_out_t *out = r->out;
    if (end->error != SB_OK) {
        out->status = sb_error_status(end->error);
        sb_respond_error(out->req, end->error, end->message, NULL, end->retry_after);
        return;
    }
    if (end->finish != NULL)
        sb_copy_text(r->finish, sizeof(r->finish), end->finish, strlen(end->finish));
    for (size_t i = 0; i < end->ncalls; ++i) { /* the turn kept the client's calls whole for this sink */
        const sb_sink_call_t *c = &end->calls[i];
        sb_tool_delta_t f = {.index = (long)i, .id = c->id, .name = c->name, .arguments = c->arguments};
        if (add_fragment(r, &f) != SB_OK) {
            out->status = sb_error_status(SB_E_ANSWER_TOO_LARGE);
            sb_respond_error(out->req, SB_E_ANSWER_TOO_LARGE, NULL, NULL, NULL);
            return;
        }
    }
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    append_response(&b, r, final_status(r), end);
    out->status = 200;
    out->bytes = b.len;
    out->t_first = uv_hrtime();
    sb_respond_json(out->req, b.base, b.len);
    sb_buf_dispose(&b);
}

static const sb_sink_ops_t live_ops = {
    .name = "responses-sse",
    .live = 1,
    .model = on_model,
    .delta = on_delta,
    .tool_started = NULL, /* switchboard's own tools stay inside the turn: the client never sees them */
    .tool_finished = NULL,
    .retrieval = NULL,
    .done = on_live_done,
};

static const sb_sink_ops_t json_ops = {
    .name = "responses-json",
    .live = 0, /* one response object at the end */
    .model = on_model,
    .delta = on_delta,
    .tool_started = NULL,
    .tool_finished = NULL,
    .retrieval = NULL,
    .done = on_json_done,
};

/* --- public ------------------------------------------------------------------------------------- */

sb_sink_t *sb_responses_sink(sb_chat_out_t *out, const char *echo, int live)
{
    struct responses *r = h2o_mem_alloc_pool(&out->req->pool, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->super.ops = live ? &live_ops : &json_ops;
    r->out = out;
    r->live = live;
    r->echo = h2o_strdup(&out->req->pool, echo, strlen(echo)).base;
    r->items = sb_calloc(MAX_ITEMS, sizeof(*r->items));
    sb_sse_out_init(&r->w, out, &r->super); /* allocates nothing until written to */
    return &r->super;
}

int sb_responses_sink_ping(sb_sink_t *sink)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    return r->live && sb_sse_out_ping(&r->w);
}

void sb_responses_sink_abort(sb_sink_t *sink)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    if (r->live) {
        sb_sse_out_abort(&r->w);
        return;
    }
    h2o_req_t *req = r->out->req;
    if (r->out->status != 0)
        return; /* answered already */
    req->http1_is_persistent = 0;
    req->res.status = 499;
    req->res.reason = "Client Closed Request";
    h2o_start_response(req, &r->w.generator);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

void sb_responses_sink_dispose(sb_sink_t *sink)
{
    struct responses *r = H2O_STRUCT_FROM_MEMBER(struct responses, super, sink);
    for (size_t i = 0; i < r->nitems; ++i) {
        sb_buf_dispose(&r->items[i].text);
        sb_buf_dispose(&r->items[i].call_id);
        sb_buf_dispose(&r->items[i].name);
    }
    free(r->items);
    sb_sse_out_dispose(&r->w);
}
