/*
 * The turn: relays one completion from the provider to the client. In
 * streaming mode every delta is re-encoded as switchboard's own chunk and
 * handed to h2o at once; a slow reader pauses the provider once the unsent
 * bytes pass the per-stream ceiling. In JSON mode the deltas are gathered
 * into one chat.completion. The client leaving ends the provider call at once.
 */
#include <inttypes.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <sodium.h>

#include "http.h"
#include "llm.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "sb/rag.h"
#include "sb/tools.h"
#include "turn.h"
#include "worker.h"

/* Tool calls per round, relayed or run: past this the turn ends with an error, never a silent drop. */
#define MAX_TOOL_CALLS SB_CHUNK_MAX_TOOLS

/*
 * A tool call gathered from its fragments. switchboard's own calls are run
 * between rounds and never shown to the client; the client's are relayed.
 */
struct tool_acc {
    struct turn *turn;
    long index;
    sb_buf_t id, name, arguments;
    int owned; /* -1 until the name is known */
    const sb_tool_t *tool;
    sb_tool_call_t *running;
    char *result;
    size_t result_len;
};

typedef struct turn {
    sb_llm_sink_t sink;
    h2o_generator_t generator;
    h2o_linklist_t link; /* in the worker's list of active turns */
    h2o_req_t *req;
    sb_worker_t *w;
    sb_llm_call_t *call; /* NULL once the provider is done */
    sb_chat_request_t creq;
    char id[48];
    char model_raw[257]; /* the model the provider named (else the requested one) */
    char model[320];     /* the same, JSON-escaped, for the chunk prefix */
    char route[64];      /* for the access log, which is written after the request is gone */
    time_t created;
    /* output */
    sb_buf_t pending;  /* encoded, not yet handed to h2o */
    sb_buf_t inflight; /* handed to h2o, kept until proceed */
    uv_timer_t *keepalive;
    uint64_t last_write;    /* loop ms */
    uint64_t fin_probed_at; /* loop ms: the HTTP/1 client closed its sending side and was last asked whether it still reads */
    unsigned sending : 1, started : 1, final_queued : 1, finished : 1, paused : 1, role_sent : 1, finish_sent : 1, client_gone : 1,
        relayed_tools : 1, said_anything : 1, keep_rounds : 1, round_overflow : 1, ended : 1, logged : 1;
    /* the tool loop */
    unsigned round;         /* provider rounds finished */
    unsigned n_owned;       /* this round's calls of switchboard's tools */
    unsigned n_client;      /* this round's calls of the client's tools */
    unsigned pending_tools; /* calls still running */
    sb_rag_query_t *rag;    /* retrieval in flight before the first round */
    uv_timer_t *rag_wait;   /* says RAG_WAIT_TEXT if retrieval runs long */
    const char *retrieval;  /* its outcome for the access log: hit, miss, timeout, error, off */
    char finish_reason[32];
    /*
     * What the model said that the turn must keep, never more than
     * MAX_ANSWER_BYTES: in JSON mode the whole answer (this round's words
     * start at round_from); when streaming only the words of a round that
     * may end in switchboard's tools (keep_rounds), for its assistant
     * message. A streamed answer is otherwise relayed and forgotten.
     */
    sb_buf_t said;
    size_t round_from;
    struct tool_acc *tools; /* this round's calls, grown as they come, at most MAX_TOOL_CALLS */
    size_t ntools, tools_cap;
    long long prompt_tokens, completion_tokens, total_tokens;
    int has_usage;
    /* access log */
    uint64_t t_start, t_first; /* hrtime ns */
    size_t bytes_out;
    int status;
    const char *end;
} turn_t;

static void flush(turn_t *t);

static double ms_since(uint64_t from_ns, uint64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e6;
}

/* --- encoding switchboard's chunks ------------------------------------------------------------ */

/* `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...,` */
static void open_chunk(turn_t *t, sb_buf_t *b)
{
    sb_buf_appendf(b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":\"%s\",", t->id,
                   (long long)t->created, t->model);
}

static void append_str_field(sb_buf_t *b, const char *name, sb_str_t s, int *comma)
{
    if (s.base == NULL)
        return;
    sb_buf_appendf(b, "%s\"%s\":\"", *comma ? "," : "", name);
    sb_buf_append_json_escaped(b, s.base, s.len);
    sb_buf_append(b, "\"", 1);
    *comma = 1;
}

/* One choice-0 chunk carrying content and/or tool-call fragments (content.base NULL: none), and maybe a finish reason. */
static int emit_delta(turn_t *t, sb_str_t content, const sb_tool_delta_t *const *tools, size_t ntools, const char *finish)
{
    sb_buf_t *b = &t->pending;
    size_t mark = b->len;
    int comma = 0;
    open_chunk(t, b);
    sb_buf_appendz(b, "\"choices\":[{\"index\":0,\"delta\":{");
    if (!t->role_sent) {
        sb_buf_appendz(b, "\"role\":\"assistant\"");
        t->role_sent = 1;
        comma = 1;
    }
    append_str_field(b, "content", content, &comma);
    if (ntools > 0) {
        sb_buf_appendf(b, "%s\"tool_calls\":[", comma ? "," : "");
        for (size_t i = 0; i < ntools; ++i) {
            const sb_tool_delta_t *tc = tools[i];
            int c2 = 1, fc = 0;
            sb_buf_appendf(b, "%s{\"index\":%ld", i ? "," : "", tc->index);
            append_str_field(b, "id", tc->id, &c2);
            if (tc->id.base != NULL)
                sb_buf_appendz(b, ",\"type\":\"function\"");
            if (tc->name.base != NULL || tc->arguments.base != NULL) {
                sb_buf_appendz(b, ",\"function\":{");
                append_str_field(b, "name", tc->name, &fc);
                append_str_field(b, "arguments", tc->arguments, &fc);
                sb_buf_append(b, "}", 1);
            }
            sb_buf_append(b, "}", 1);
        }
        sb_buf_append(b, "]", 1);
    }
    if (finish != NULL)
        sb_buf_appendf(b, "},\"finish_reason\":\"%s\"}]}\n\n", finish);
    else
        sb_buf_appendz(b, "},\"finish_reason\":null}]}\n\n");
    if (b->len == mark) /* an append failed halfway: the ceiling is far above one chunk, so this is a bug */
        return -1;
    return 0;
}

static void emit_usage(turn_t *t)
{
    open_chunk(t, &t->pending);
    sb_buf_appendf(&t->pending,
                   "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}}\n\n",
                   t->prompt_tokens, t->completion_tokens, t->total_tokens);
}

static void emit_error(turn_t *t, sb_error_t e, const char *message)
{
    sb_buf_t *b = &t->pending;
    sb_buf_appendz(b, "data: {\"error\":{\"message\":\"");
    const char *m = message ? message : sb_error_message(e);
    sb_buf_append_json_escaped(b, m, strlen(m));
    sb_buf_appendf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n", sb_error_type(e), sb_error_code(e));
}

/* --- gathering for JSON responses -------------------------------------------------------------- */

/* The call at `index`, new if unseen; NULL when the round already holds MAX_TOOL_CALLS calls. */
static struct tool_acc *tool_for(turn_t *t, long index)
{
    for (size_t i = t->ntools; i-- > 0;) /* fragments come for the newest call */
        if (t->tools[i].index == index)
            return &t->tools[i];
    if (t->ntools == MAX_TOOL_CALLS)
        return NULL;
    if (t->ntools == t->tools_cap) {
        /* nothing points into the array until the round's calls run, so it may move while they are gathered */
        t->tools_cap = t->tools_cap ? t->tools_cap * 2 : 4;
        t->tools = h2o_mem_realloc(t->tools, t->tools_cap * sizeof(*t->tools));
    }
    struct tool_acc *a = &t->tools[t->ntools++];
    size_t max = t->w->config->max_upstream_bytes;
    memset(a, 0, sizeof(*a));
    a->turn = t;
    a->index = index;
    a->owned = -1;
    sb_buf_init(&a->id, 256);
    sb_buf_init(&a->name, 256);
    sb_buf_init(&a->arguments, max);
    return a;
}

/*
 * Adds a call's fragment; the first fragment naming a tool decides whose call
 * it is. A streamed call of the client's is relayed as it comes, so its
 * arguments are not kept. NULL when the round has too many calls.
 */
static struct tool_acc *gather_tool(turn_t *t, const sb_tool_delta_t *tc)
{
    struct tool_acc *a = tool_for(t, tc->index);
    if (a == NULL)
        return NULL;
    if (tc->id.base != NULL && a->id.len == 0)
        sb_buf_append(&a->id, tc->id.base, tc->id.len);
    if (tc->name.base != NULL)
        sb_buf_append(&a->name, tc->name.base, tc->name.len);
    if (tc->arguments.base != NULL && (a->owned != 0 || !t->creq.stream))
        sb_buf_append(&a->arguments, tc->arguments.base, tc->arguments.len);
    if (a->owned < 0 && a->name.len > 0) {
        a->tool = sb_tools_find_offered(a->name.base, a->name.len, t->creq.shadowed);
        a->owned = a->tool != NULL;
        if (a->owned)
            ++t->n_owned;
        else
            ++t->n_client;
    }
    return a;
}

static void reset_tools(turn_t *t)
{
    for (size_t i = 0; i < t->ntools; ++i) {
        struct tool_acc *a = &t->tools[i];
        if (a->running != NULL)
            sb_tool_call_cancel(a->running);
        sb_buf_dispose(&a->id);
        sb_buf_dispose(&a->name);
        sb_buf_dispose(&a->arguments);
        free(a->result);
    }
    t->ntools = 0;
    t->n_owned = t->n_client = t->pending_tools = 0;
}

static void free_tools(turn_t *t)
{
    reset_tools(t);
    free(t->tools);
    t->tools = NULL;
    t->tools_cap = 0;
}

static void send_completion(turn_t *t)
{
    json_t *message = json_pack("{s:s, s:s%}", "role", "assistant", "content", t->said.base ? t->said.base : "", t->said.len);
    if (t->n_client > 0) {
        json_t *calls = json_array();
        for (size_t i = 0; i < t->ntools; ++i) {
            struct tool_acc *a = &t->tools[i];
            if (a->owned == 1)
                continue;
            json_array_append_new(calls,
                                  json_pack("{s:s%, s:s, s:{s:s%, s:s%}}", "id", a->id.base ? a->id.base : "", a->id.len, "type",
                                            "function", "function", "name", a->name.base ? a->name.base : "", a->name.len,
                                            "arguments", a->arguments.base ? a->arguments.base : "", a->arguments.len));
        }
        json_object_set_new(message, "tool_calls", calls);
        if (t->said.len == 0)
            json_object_set_new(message, "content", json_null());
    }
    const char *finish = t->finish_reason[0] ? t->finish_reason : (t->n_client ? "tool_calls" : "stop");
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s}], s:{s:I, s:I, s:I}}", "id", t->id, "object",
                             "chat.completion", "created", (json_int_t)t->created, "model", t->creq.model, "choices", "index", 0,
                             "message", message, "finish_reason", finish, "usage", "prompt_tokens", (json_int_t)t->prompt_tokens,
                             "completion_tokens", (json_int_t)t->completion_tokens, "total_tokens", (json_int_t)t->total_tokens);
    if (body == NULL) { /* content that is not UTF-8 cannot come from a parsed chunk; treat as a provider fault */
        sb_http_send_error(t->req, SB_E_UPSTREAM_BAD_RESPONSE, NULL, NULL, NULL);
        t->status = 502;
        t->end = "upstream_error";
        return;
    }
    if (t->model_raw[0] != '\0')
        json_object_set_new(body, "model", json_string(t->model_raw));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t len = strlen(text);
    h2o_req_t *req = t->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    t->status = 200;
    t->bytes_out = len;
    t->t_first = uv_hrtime();
    t->finished = 1;
    sb_http_send_json(req, text, len);
    free(text);
}

/* --- the stream to the client ------------------------------------------------------------------ */

static void on_keepalive(uv_timer_t *timer)
{
    turn_t *t = timer->data;
    uint64_t now = sb_worker_now(t->w), every = t->w->config->keepalive_ms;
    if (now - t->last_write >= every) {
        /* A comment line: clients ignore it, proxies and the engine see the stream is alive. */
        sb_buf_appendz(&t->pending, ": keep-alive\n\n");
        flush(t);
        t->last_write = now;
    }
    uv_timer_start(timer, on_keepalive, t->last_write + every - now, 0);
}

static void start_stream(turn_t *t)
{
    h2o_req_t *req = t->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_start_response(req, &t->generator);
    t->started = 1;
    t->status = 200;
    t->t_first = uv_hrtime();
    t->last_write = sb_worker_now(t->w);
    if (t->w->config->keepalive_ms > 0) {
        t->keepalive = malloc(sizeof(*t->keepalive));
        if (t->keepalive == NULL)
            abort();
        uv_timer_init(&t->w->loop, t->keepalive);
        t->keepalive->data = t;
        uv_timer_start(t->keepalive, on_keepalive, t->w->config->keepalive_ms, 0);
    }
}

/* Hands the pending bytes to h2o, unless a send is already in flight (one at a time). */
static void flush(turn_t *t)
{
    if (t->sending || !t->started || t->finished || t->req == NULL)
        return;
    if (t->pending.len == 0 && !t->final_queued)
        return;
    sb_buf_t swap = t->inflight;
    t->inflight = t->pending;
    t->pending = swap;
    sb_buf_reset(&t->pending);
    h2o_iovec_t iov = h2o_iovec_init(t->inflight.base, t->inflight.len);
    h2o_send_state_t state = t->final_queued ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    t->sending = 1;
    t->bytes_out += iov.len;
    t->last_write = sb_worker_now(t->w);
    if (state == H2O_SEND_STATE_FINAL)
        t->finished = 1;
    h2o_send(t->req, &iov, iov.len ? 1 : 0, state);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, generator, g);
    t->sending = 0;
    sb_buf_reset(&t->inflight);
    if (t->paused && t->call != NULL && t->pending.len < t->w->config->stream_buffer_bytes / 2) {
        t->paused = 0;
        t->call->provider->resume(t->call); /* may deliver buffered deltas, and send, right here */
    }
    flush(t);
}

static void cancel_call(turn_t *t)
{
    if (t->call == NULL)
        return;
    sb_llm_call_t *call = t->call;
    t->call = NULL;
    call->provider->cancel(call);
}

static void reset_tools(turn_t *t);
static void stop_rag_wait(turn_t *t);

/* Lets go of everything the turn has running: retrieval, the provider call, tool calls. */
static void abandon(turn_t *t)
{
    if (t->rag != NULL) {
        sb_rag_cancel(t->rag);
        t->rag = NULL;
    }
    stop_rag_wait(t);
    cancel_call(t);
    reset_tools(t);
}

/* h2o is abandoning the response (the client went away). */
static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, generator, g);
    if (!t->finished) {
        t->client_gone = 1;
        t->end = "client_gone";
    }
    abandon(t);
}

/* --- what the provider tells us ------------------------------------------------------------- */

static void set_model(turn_t *t, sb_str_t model)
{
    if (t->model[0] != '\0')
        return;
    sb_buf_t b;
    sb_buf_init(&b, sizeof(t->model) - 1);
    if (model.base == NULL || model.len == 0 || model.len > 256)
        model = (sb_str_t){t->creq.model, strlen(t->creq.model)};
    memcpy(t->model_raw, model.base, model.len);
    t->model_raw[model.len] = '\0';
    if (sb_buf_append_json_escaped(&b, model.base, model.len) == 0)
        memcpy(t->model, b.base, b.len + 1);
    else
        memcpy(t->model, "unknown", 8);
    sb_buf_dispose(&b);
}

static void fail_turn(turn_t *t, sb_error_t e, const char *message);

/* Keeps what the model said when the turn needs it (see `said`). Returns 0 when that ended the turn (JSON past the ceiling). */
static int keep_said(turn_t *t, sb_str_t text)
{
    if (!t->creq.stream) {
        if (sb_buf_append(&t->said, text.base, text.len) == 0)
            return 1;
        fail_turn(t, SB_E_ANSWER_TOO_LARGE, NULL);
        return 0;
    }
    if (!t->keep_rounds || t->round_overflow)
        return 1;
    if (sb_buf_append(&t->said, text.base, text.len) != 0) {
        /* too long to repeat to the model: harmless unless this round turns out to call switchboard's tools */
        t->round_overflow = 1;
        sb_buf_dispose(&t->said);
    }
    return 1;
}

static void on_delta(sb_llm_sink_t *sink, const sb_delta_t *d)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, sink, sink);
    set_model(t, d->model);
    if (d->has_usage) { /* summed over tool rounds */
        t->has_usage = 1;
        t->prompt_tokens += d->prompt_tokens;
        t->completion_tokens += d->completion_tokens;
        t->total_tokens += d->total_tokens ? d->total_tokens : d->prompt_tokens + d->completion_tokens;
    }
    /* switchboard's own tool calls are gathered and run; only the client's are relayed */
    const sb_tool_delta_t *relay[SB_CHUNK_MAX_TOOLS];
    size_t nrelay = 0;
    for (size_t i = 0; i < d->ntools; ++i) {
        struct tool_acc *a = gather_tool(t, &d->tools[i]);
        if (a == NULL) {
            char msg[128];
            snprintf(msg, sizeof(msg), "the model asked for more than %d tool calls in one round", MAX_TOOL_CALLS);
            fail_turn(t, SB_E_TOO_MANY_TOOL_CALLS, msg);
            return;
        }
        if (a->owned != 1)
            relay[nrelay++] = &d->tools[i];
    }
    if (d->content.base != NULL) {
        if (!keep_said(t, d->content))
            return;
        t->said_anything |= d->content.len > 0;
    }
    /* Providers may repeat finish_reason (OpenRouter does): the first one counts. A round that ends in
     * switchboard's tools is not the end of the turn. */
    const char *finish = NULL;
    if (d->finish_reason.base != NULL && !t->finish_sent && !(t->n_owned > 0 && t->n_client == 0)) {
        size_t n = d->finish_reason.len < sizeof(t->finish_reason) - 1 ? d->finish_reason.len : sizeof(t->finish_reason) - 1;
        memcpy(t->finish_reason, d->finish_reason.base, n);
        t->finish_reason[n] = '\0';
        for (size_t i = 0; i < n; ++i) /* it goes into JSON unescaped: keep it to a plain word */
            if (!((t->finish_reason[i] >= 'a' && t->finish_reason[i] <= 'z') || t->finish_reason[i] == '_'))
                t->finish_reason[i] = '_';
        t->finish_sent = 1;
        finish = t->finish_reason;
    }
    if (!t->creq.stream)
        return;
    if (d->content.base == NULL && nrelay == 0 && finish == NULL && t->role_sent)
        return; /* nothing the client needs: role-only, usage-only, vendor-only or own-tool chunks */
    if (!t->started)
        start_stream(t);
    if (d->content.base != NULL && d->content.len == 0 && nrelay == 0 && finish == NULL && t->role_sent)
        return;
    emit_delta(t, d->content, relay, nrelay, finish);
    t->relayed_tools |= nrelay > 0;
    flush(t);
    if (t->pending.len > t->w->config->stream_buffer_bytes && !t->paused && t->call != NULL) {
        t->paused = 1;
        t->call->provider->pause(t->call);
    }
}

static void start_round(turn_t *t);

/* --- retrieval ----------------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h);
static void say(turn_t *t, const char *text);

static void stop_rag_wait(turn_t *t)
{
    if (t->rag_wait == NULL)
        return;
    uv_timer_stop(t->rag_wait);
    uv_close((uv_handle_t *)t->rag_wait, on_timer_closed);
    t->rag_wait = NULL;
}

/* Retrieval is taking long: a short phrase tells the caller someone is there. */
static void on_rag_wait(uv_timer_t *timer)
{
    turn_t *t = timer->data;
    stop_rag_wait(t);
    if (t->rag != NULL && !t->said_anything)
        say(t, t->w->config->rag_wait_text);
}

/* The passages go in one system message right after the caller's own system messages. */
static void on_retrieved(void *data, const sb_passage_t *passages, size_t n, const char *outcome)
{
    turn_t *t = data;
    t->rag = NULL;
    t->retrieval = outcome;
    stop_rag_wait(t);
    if (n > 0) {
        json_t *messages = json_object_get(t->creq.upstream, "messages");
        size_t at = 0;
        while (at < json_array_size(messages)) {
            const char *role = json_string_value(json_object_get(json_array_get(messages, at), "role"));
            if (strcmp(role, "system") != 0 && strcmp(role, "developer") != 0)
                break;
            ++at;
        }
        json_array_insert_new(messages, at, sb_rag_context_message(passages, n));
    }
    start_round(t);
}

/* --- the tool loop ------------------------------------------------------------------------------ */

static void on_end(sb_llm_sink_t *sink, const sb_llm_end_t *e);
static void finish(turn_t *t, const sb_llm_end_t *e);

/* Asks the provider for the next round (the first, or the one after a tool round). */
static void start_round(turn_t *t)
{
    t->call = t->w->server->provider->start(t->w, &t->creq, &t->sink);
    if (t->call == NULL) {
        sb_llm_end_t e = {SB_E_INTERNAL, NULL, NULL, 0};
        on_end(&t->sink, &e);
    }
}

/* Says `text` to the caller as part of the answer (a filler while tools run, or an apology). */
static void say(turn_t *t, const char *text)
{
    sb_str_t s = {text, strlen(text)};
    if (!t->creq.stream) {
        sb_buf_append(&t->said, s.base, s.len); /* a few words: past the ceiling they are left out */
        return;
    }
    if (!t->started)
        start_stream(t);
    emit_delta(t, s, NULL, 0, NULL);
    flush(t);
    t->said_anything = 1;
}

/* One field of a key, length-prefixed, so that no two sequences of fields give the same bytes. */
static void key_field(crypto_generichash_state *st, const void *p, size_t len)
{
    uint64_t n = len;
    crypto_generichash_update(st, (const unsigned char *)&n, sizeof(n));
    crypto_generichash_update(st, p, len);
}

/*
 * A write's idempotency key: the conversation (its ids and every message so
 * far, sb_chat_request_parse), the engine's turn id, the call's place in the
 * turn, the tool, the bound caller, and the arguments (compact, keys sorted).
 * The engine retrying a turn makes the same key, so its write finds the
 * first one; another conversation, another caller or other arguments make
 * another. No turn id, no key.
 */
static char *idempotency_key(turn_t *t, const struct tool_acc *a, char *out, size_t cap)
{
    if (t->creq.turn_id[0] == '\0' || !a->tool->writes)
        return NULL;
    crypto_generichash_state st;
    unsigned char hash[16];
    crypto_generichash_init(&st, NULL, 0, sizeof(hash));
    key_field(&st, t->creq.conversation, sizeof(t->creq.conversation));
    key_field(&st, t->creq.turn_id, strlen(t->creq.turn_id));
    uint64_t place[2] = {t->round, (uint64_t)a->index};
    key_field(&st, place, sizeof(place));
    key_field(&st, a->tool->name, strlen(a->tool->name));
    int64_t bound = t->creq.caller.customer_id;
    key_field(&st, &bound, sizeof(bound));
    key_field(&st, t->creq.caller.email, strlen(t->creq.caller.email));
    json_t *args = a->arguments.len ? json_loadb(a->arguments.base, a->arguments.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    char *canonical = args != NULL ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (canonical != NULL)
        key_field(&st, canonical, strlen(canonical));
    else /* arguments the tool will refuse, or none: as they came */
        key_field(&st, a->arguments.base ? a->arguments.base : "", a->arguments.len);
    free(canonical);
    json_decref(args);
    crypto_generichash_final(&st, hash, sizeof(hash));
    sodium_bin2hex(out, cap, hash, sizeof(hash));
    return out;
}

static void on_tool_done(void *data, const char *result, size_t len)
{
    struct tool_acc *a = data;
    turn_t *t = a->turn;
    a->running = NULL;
    a->result = strndup(result, len);
    a->result_len = len;
    if (a->result == NULL)
        abort();
    if (--t->pending_tools > 0)
        return;
    /* every call of the round is back: hand the results to the model, in call order */
    json_t *messages = json_object_get(t->creq.upstream, "messages");
    for (size_t i = 0; i < t->ntools; ++i) {
        struct tool_acc *c = &t->tools[i];
        if (c->owned == 1)
            json_array_append_new(messages, json_pack("{s:s, s:s%, s:s%}", "role", "tool", "tool_call_id", c->id.base, c->id.len,
                                                      "content", c->result, c->result_len));
    }
    reset_tools(t);
    ++t->round;
    t->round_overflow = 0;
    start_round(t);
}

/*
 * The round asked for switchboard's tools: run them at once (at most
 * TOOL_MAX_CALLS; the model is told which of the rest were not run), then ask
 * the model again. Ends the turn itself when it cannot go on.
 */
static void run_tools(turn_t *t)
{
    const sb_config_t *cf = t->w->config;
    if (t->round + 1 >= cf->tool_max_rounds) {
        reset_tools(t);
        say(t, t->said_anything ? " Sorry, I could not finish looking that up. Could you ask me again?"
                                : "Sorry, I could not finish looking that up. Could you ask me again?");
        sb_llm_end_t done = {SB_OK, NULL, NULL, 0};
        finish(t, &done);
        return;
    }
    if (t->round_overflow) { /* the assistant message would have to repeat words no longer kept */
        fail_turn(t, SB_E_ANSWER_TOO_LARGE, "the model said more than MAX_ANSWER_BYTES before calling a tool");
        return;
    }
    if (!t->said_anything && t->creq.stream && strcmp(cf->tool_filler_text, "none") != 0)
        say(t, cf->tool_filler_text);

    json_t *calls = json_array();
    for (size_t i = 0; i < t->ntools; ++i) {
        struct tool_acc *a = &t->tools[i];
        if (a->owned != 1)
            continue;
        if (a->id.len == 0) /* some providers leave ids out; the tool message must still match its call */
            sb_buf_appendf(&a->id, "call_sb_%u_%ld", t->round, a->index);
        json_array_append_new(calls,
                              json_pack("{s:s%, s:s, s:{s:s%, s:s%}}", "id", a->id.base, a->id.len, "type", "function", "function",
                                        "name", a->name.base, a->name.len, "arguments",
                                        a->arguments.base ? a->arguments.base : "{}", a->arguments.len ? a->arguments.len : 2));
    }
    /* the round's words: all that is kept when streaming, the part after round_from of a JSON answer */
    size_t from = t->creq.stream ? 0 : t->round_from;
    json_t *assistant = json_pack("{s:s, s:o}", "role", "assistant", "tool_calls", calls);
    json_object_set_new(assistant, "content",
                        t->said.len > from ? json_stringn(t->said.base + from, t->said.len - from) : json_null());
    json_array_append_new(json_object_get(t->creq.upstream, "messages"), assistant);
    if (t->creq.stream)
        sb_buf_reset(&t->said);
    else
        t->round_from = t->said.len;

    sb_tool_env_t env = {cf, t->w->pg, t->w->curlm, &t->creq.caller};
    unsigned run = 0;
    for (size_t i = 0; i < t->ntools; ++i) {
        struct tool_acc *a = &t->tools[i];
        if (a->owned != 1)
            continue;
        if (run++ >= cf->tool_max_calls) {
            char text[160];
            int n = snprintf(text, sizeof(text),
                             "{\"error\":\"not run: at most %u calls of these tools run in one round; call it again\"}",
                             cf->tool_max_calls);
            a->result = strndup(text, (size_t)n);
            a->result_len = (size_t)n;
            if (a->result == NULL)
                abort();
            continue;
        }
        char key[33];
        ++t->pending_tools;
        a->running =
            sb_tool_call_start(a->tool, &env, a->arguments.base ? a->arguments.base : "{}", a->arguments.len ? a->arguments.len : 2,
                               idempotency_key(t, a, key, sizeof(key)), on_tool_done, a);
    }
}

/* Ends the turn once: an HTTP error if nothing was sent, else the last chunks and [DONE] (or the JSON answer). */
static void finish(turn_t *t, const sb_llm_end_t *e)
{
    if (t->ended || t->req == NULL || t->client_gone)
        return;
    t->ended = 1;
    t->end = e->error == SB_OK ? "done" : e->timed_out ? "timeout" : "upstream_error";
    if (e->error != SB_OK && (!t->creq.stream || !t->started)) {
        /* Nothing was sent yet: an HTTP error the engine turns into its failure message. */
        t->status = sb_error_status(e->error);
        sb_http_send_error(t->req, e->error, e->message, NULL, e->retry_after);
        t->finished = 1;
        return;
    }
    if (!t->creq.stream) {
        send_completion(t);
        return;
    }
    if (!t->started) {
        set_model(t, (sb_str_t){NULL, 0});
        start_stream(t);
    }
    if (e->error != SB_OK) {
        emit_error(t, e->error, e->message);
    } else {
        if (!t->finish_sent) {
            t->finish_sent = 1;
            emit_delta(t, (sb_str_t){NULL, 0}, NULL, 0, t->relayed_tools ? "tool_calls" : "stop");
        }
        if (t->creq.include_usage && t->has_usage)
            emit_usage(t);
    }
    sb_buf_appendz(&t->pending, "data: [DONE]\n\n");
    t->final_queued = 1;
    flush(t);
}

/* A limit was passed mid-answer: the provider call and the tools stop, and the caller gets a clean ending. */
static void fail_turn(turn_t *t, sb_error_t e, const char *message)
{
    cancel_call(t); /* providers allow this from inside on_delta */
    reset_tools(t);
    sb_llm_end_t end = {e, message, NULL, 0};
    finish(t, &end);
}

static void on_end(sb_llm_sink_t *sink, const sb_llm_end_t *e)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, sink, sink);
    t->call = NULL;
    if (t->req == NULL || t->client_gone || t->ended)
        return;
    if (e->error == SB_OK && t->n_owned > 0 && t->n_client == 0) {
        run_tools(t); /* the turn goes on when the tools are back, or ends there */
        return;
    }
    finish(t, e);
}

/* --- lifetime ------------------------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void log_access(turn_t *t)
{
    uint64_t now = uv_hrtime();
    char shadowed[512];
    sb_tools_names(t->creq.shadowed, shadowed, sizeof(shadowed));
    sb_access_t a = {
        .request_id = t->id + sizeof("chatcmpl-") - 1,
        .method = "POST",
        .route = t->route,
        .model = t->model_raw[0] ? t->model_raw : t->creq.model,
        .status = t->status ? t->status : 499,
        .ttfb_ms = t->t_first ? ms_since(t->t_start, t->t_first) : -1,
        .total_ms = ms_since(t->t_start, now),
        .bytes = t->bytes_out,
        .prompt_tokens = t->has_usage ? t->prompt_tokens : -1,
        .completion_tokens = t->has_usage ? t->completion_tokens : -1,
        .end = t->end ? t->end : "client_gone",
        .retrieval = t->retrieval,
        .shadowed = shadowed[0] ? shadowed : NULL,
    };
    sb_access_log(t->w, &a);
}

/* The request's pool is going away: whatever way the turn ended, release everything it holds. */
static void on_dispose(void *p)
{
    turn_t *t = p;
    if (t->rag != NULL)
        sb_rag_cancel(t->rag);
    stop_rag_wait(t);
    cancel_call(t);
    if (!t->logged)
        log_access(t);
    sb_worker_turn_ended(t->w, &t->link);
    if (t->keepalive != NULL) {
        uv_timer_stop(t->keepalive);
        uv_close((uv_handle_t *)t->keepalive, on_timer_closed);
    }
    sb_buf_dispose(&t->pending);
    sb_buf_dispose(&t->inflight);
    sb_buf_dispose(&t->said);
    free_tools(t); /* a tool still running is forgotten: its statement lands whole or not at all */
    sb_chat_request_dispose(&t->creq);
    t->req = NULL;
}

void sb_turn_start(h2o_req_t *req, sb_chat_request_t *creq, const char *request_id)
{
    sb_worker_t *w = sb_worker_of(req);
    turn_t *t = h2o_mem_alloc_shared(&req->pool, sizeof(*t), on_dispose);
    memset(t, 0, sizeof(*t));
    t->sink.on_delta = on_delta;
    t->sink.on_end = on_end;
    t->generator.proceed = on_proceed;
    t->generator.stop = on_stop;
    t->req = req;
    t->w = w;
    t->creq = *creq;
    memset(creq, 0, sizeof(*creq));
    t->t_start = uv_hrtime();
    t->created = time(NULL);
    size_t rlen = req->path_normalized.len < sizeof(t->route) - 1 ? req->path_normalized.len : sizeof(t->route) - 1;
    memcpy(t->route, req->path_normalized.base, rlen);
    snprintf(t->id, sizeof(t->id), "chatcmpl-%s", request_id);
    /* The ceiling on unsent bytes is soft by one provider read (curl delivers at most 16 KiB at a time). */
    size_t ceiling = w->config->stream_buffer_bytes + w->config->max_event_bytes * 2 + 65536;
    sb_buf_init(&t->pending, ceiling);
    sb_buf_init(&t->inflight, ceiling);
    sb_buf_init(&t->said, w->config->max_answer_bytes);
    sb_worker_turn_started(w, &t->link);
    t->creq.offered_tools = sb_tools_offer(t->creq.upstream, &t->creq.shadowed); /* settled at start-up by each tool's settings */
    t->keep_rounds = sb_tools_offered(); /* a round may end in switchboard's tools only when they are offered */
    t->retrieval = "off";
    /* h2o keeps the pointer, not a copy: the value must live in the turn */
    const char *rid = t->id + sizeof("chatcmpl-") - 1;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid, strlen(rid));

    if (sb_rag_enabled(w->config) && t->creq.question[0] != '\0') {
        t->rag = sb_rag_start(w->config, w->pg, w->curlm, &w->loop, t->creq.question, on_retrieved, t);
        if (t->creq.stream && w->config->rag_wait_ms > 0 && strcmp(w->config->rag_wait_text, "none") != 0) {
            t->rag_wait = malloc(sizeof(*t->rag_wait));
            if (t->rag_wait == NULL)
                abort();
            uv_timer_init(&w->loop, t->rag_wait);
            t->rag_wait->data = t;
            uv_timer_start(t->rag_wait, on_rag_wait, w->config->rag_wait_ms, 0);
        }
        return;
    }
    start_round(t);
}

void sb_turn_shutdown(h2o_linklist_t *link)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, link, link);
    if (t->req == NULL || t->client_gone || t->ended)
        return; /* gone, or already ending: its bytes are on their way */
    abandon(t);
    sb_llm_end_t e = {SB_E_SHUTTING_DOWN, "server shutting down", NULL, 0};
    finish(t, &e);
    t->end = "shutdown";
}

void sb_turn_exiting(h2o_linklist_t *link)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, link, link);
    if (t->end == NULL || strcmp(t->end, "done") != 0)
        t->end = "shutdown";
    log_access(t);
    t->logged = 1;
    sb_worker_turn_ended(t->w, &t->link);
}

/* How often a client that closed its sending side is asked again whether it still reads. */
#define FIN_PROBE_EVERY_MS 200

int sb_turn_client_fin(h2o_linklist_t *link, int fd, uint64_t now)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, link, link);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    /* after the FIN, a reset (the answer to bytes sent to a closed socket) leaves the connection CLOSE */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
        return -1;
    if (t->req->version < 0x101)
        return -1; /* nothing may be sent to an HTTP/1.0 client before its answer: a FIN is all there is to go by */
    if (t->fin_probed_at != 0 && now - t->fin_probed_at < FIN_PROBE_EVERY_MS)
        return 0;
    t->fin_probed_at = now ? now : 1;
    if (t->started) {
        if (t->sending)
            return 0; /* that write is the question */
        sb_buf_appendz(&t->pending, ": keep-alive\n\n");
        flush(t);
        return 1;
    }
    /* Before the answer only an interim response may go out; clients must read (and skip) any number of them. h2o
     * is writing nothing on this connection until the answer starts, so the bytes cannot interleave. */
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (send(fd, interim, sizeof(interim) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    return 1;
}

void sb_turn_client_gone(h2o_linklist_t *link)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, link, link);
    if (t->req == NULL || t->client_gone || t->finished)
        return;
    t->client_gone = 1;
    t->end = "client_gone";
    abandon(t);
    /* h2o does not read an HTTP/1 socket while a response is pending, so it has not noticed: end the response as failed. */
    h2o_req_t *req = t->req;
    req->http1_is_persistent = 0;
    if (!t->started) {
        req->res.status = 499;
        req->res.reason = "Client Closed Request";
        h2o_start_response(req, &t->generator);
        t->started = 1;
    }
    t->finished = 1;
    if (!t->sending)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

int sb_turn_probe_fd(h2o_linklist_t *link, uint64_t now, uint64_t quiet_ms)
{
    turn_t *t = H2O_STRUCT_FROM_MEMBER(turn_t, link, link);
    if (t->req == NULL || t->finished || t->client_gone || t->req->version >= 0x200)
        return -1;
    if (t->started && now - t->last_write < quiet_ms && t->fin_probed_at == 0)
        return -1; /* a write a moment ago would have failed had the client gone */
    h2o_socket_t *sock = t->req->conn->callbacks->get_socket(t->req->conn);
    return sock != NULL ? h2o_socket_get_fd(sock) : -1;
}
