/*
 * Retell's LLM WebSocket (retell.h): the checks before the upgrade, the
 * call's socket, and the sink that writes a turn as Retell's `response`
 * events. Each response_required or reminder_required is one turn of the
 * turn core, built from the transcript Retell sends with it; a newer
 * response_id abandons the answer in progress at once (its provider call
 * ends here), since Retell would drop what it says anyway. The call tools
 * (end_call, transfer_call) are offered on this channel, and their results
 * become the last response's end_call or transfer_number.
 */
#include <stdio.h>
#include <string.h>

#include "agents.h"
#include "auth.h"
#include "conversation.h"
#include "live.h"
#include "respond.h"
#include "retell.h"
#include "retell_event.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "sb/tools.h"

#define ROUTE "/v1/retell/llm-websocket" /* what the access log and the metrics say: no call id, never the secret */
#define CALL_ID_MAX 128
#define FRAME_MAX (96u << 10) /* one message to Retell: a tool's result (SB_TOOL_MAX_RESULT) escaped is the biggest */
/* A reminder is a turn like the others, with this line after the transcript (as the caller's: every provider takes it). */
#define REMINDER "(the caller has been silent; check in briefly)"
/* What the caller hears when an answer fails before it said anything: never silence, which Retell waits out. */
#define APOLOGY "Sorry, I can't answer that just now. Could you say it again?"

/* One answer: the turn, and the response_id it answers. */
struct retell_turn {
    sb_live_turn_t super;
    long long response_id;
    int said;     /* words of it went out */
    int stray;    /* the model called a tool nobody offered it: Retell's agent declares none */
    int end_call; /* end_call ran: the last response ends the call */
    int transfer; /* transfer_call ran: the last response transfers it */
};

/* One call's socket. */
struct retell {
    sb_live_t live;
    char call_id[CALL_ID_MAX + 1];
    char agent[SB_AGENT_NAME_MAX + 1]; /* ?agent=: every turn's agent; "" when each turn is routed */
    char owner[33];                    /* the owner of the call's stored conversation: RETELL_SECRET's digest */
    char memory_key[33];               /* the stored conversation, "" until a turn names it */
    long long latest;                  /* the newest response_id asked for, -1 before any */
    unsigned ignored;                  /* events that could not be read; the first is logged */
    int ending;                        /* a response that ends or transfers the call went out */
};

/* --- writing events ------------------------------------------------------------------------------- */

static struct retell *retell_of(sb_live_t *live)
{
    return H2O_STRUCT_FROM_MEMBER(struct retell, live, live);
}

static struct retell_turn *turn_of(sb_sink_t *sink)
{
    return H2O_STRUCT_FROM_MEMBER(struct retell_turn, super, H2O_STRUCT_FROM_MEMBER(sb_live_turn_t, super, sink));
}

/* Starts an event {"response_type":"<type>" into `b`. */
static void begin(sb_buf_t *b, const char *type)
{
    sb_buf_init(b, FRAME_MAX);
    sb_buf_appendf(b, "{\"response_type\":\"%s\"", type);
}

/* Sends the event in `b` (closed here) and frees it. */
static void send_event(struct retell *r, sb_buf_t *b)
{
    if (sb_buf_appendz(b, "}") == 0)
        sb_live_send(&r->live, b->base, b->len);
    else
        sb_log_warn("retell call %s: an event past %u bytes was not sent", r->call_id, FRAME_MAX);
    sb_buf_dispose(b);
}

/* A `response` event: part of the answer to `id`, or (complete) its end. Its end may carry what the call does next. */
static void send_response(struct retell *r, long long id, const char *content, size_t len, int complete, const char *more)
{
    sb_buf_t b;
    begin(&b, "response");
    sb_buf_appendf(&b, ",\"response_id\":%lld", id);
    sb_buf_append_json_member(&b, "content", content, len);
    sb_buf_appendz(&b, complete ? ",\"content_complete\":true" : ",\"content_complete\":false");
    if (more != NULL)
        sb_buf_appendz(&b, more);
    send_event(r, &b);
}

/*
 * switchboard is draining (live.h): the socket closes going away, never 1000,
 * which would read as the end of the call; Retell reconnects to another process.
 */
static void on_leave(sb_live_t *live)
{
    sb_ws_close(live->ws, SB_WS_GOING_AWAY, "server restarting");
}

/* --- the sink: one answer as response events ------------------------------------------------------- */

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    sb_live_model(&turn_of(sink)->super, model);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct retell_turn *rt = turn_of(sink);
    if (d->nfragments > 0)
        rt->stray = 1; /* Retell's agent declares no tools of its own: the call goes nowhere */
    if (d->text.base == NULL || d->text.len == 0)
        return SB_OK; /* nor does it take audio from here */
    sb_live_first(&rt->super);
    rt->said = 1;
    send_response(retell_of(rt->super.live), rt->response_id, d->text.base, d->text.len, 0, NULL);
    return SB_OK;
}

/*
 * A call of switchboard's tools as Retell records it in its transcript
 * (transcript_with_tool_calls): its invocation, or (with its result) its result.
 */
static void send_tool(struct retell_turn *rt, const sb_sink_tool_t *call)
{
    int done = call->result.base != NULL;
    sb_buf_t b;
    begin(&b, done ? "tool_call_result" : "tool_call_invocation");
    sb_buf_append_json_member(&b, "tool_call_id", call->id.base, call->id.len);
    if (done) {
        sb_buf_append_json_member(&b, "content", call->result.base, call->result.len);
        sb_buf_appendz(&b, call->failed ? ",\"successful\":false" : ",\"successful\":true");
    } else {
        sb_buf_append_json_member(&b, "name", call->name.base, call->name.len);
        sb_buf_append_json_member(&b, "arguments", call->arguments.base, call->arguments.len);
    }
    send_event(retell_of(rt->super.live), &b);
}

static void on_tool_started(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    send_tool(turn_of(sink), call);
}

static void on_tool_finished(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    struct retell_turn *rt = turn_of(sink);
    send_tool(rt, call);
    if (call->failed)
        return;
    /* the agent decided what becomes of the call: it happens once its next words are spoken (the last response) */
    if (call->name.len == sizeof(SB_TOOL_END_CALL) - 1 && memcmp(call->name.base, SB_TOOL_END_CALL, call->name.len) == 0)
        rt->end_call = 1;
    else if (call->name.len == sizeof(SB_TOOL_TRANSFER_CALL) - 1 &&
             memcmp(call->name.base, SB_TOOL_TRANSFER_CALL, call->name.len) == 0)
        rt->transfer = 1;
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct retell_turn *rt = turn_of(sink);
    struct retell *r = retell_of(rt->super.live);
    const sb_config_t *c = r->live.w->config;
    sb_live_first(&rt->super);
    char more[64 + 24] = "";
    if (rt->end_call) /* Retell acts on one of them, end_call first */
        snprintf(more, sizeof(more), ",\"end_call\":true");
    else if (rt->transfer && c->transfer_number != NULL) /* E.164, checked at start-up: nothing to escape */
        snprintf(more, sizeof(more), ",\"transfer_number\":\"%s\"", c->transfer_number);
    /* a failed answer that said nothing apologises, unless the call is ending anyway or the server is; so does one
     * whose only act was a call of a tool nobody offered */
    int failed = end->error != SB_OK ? end->error != SB_E_SHUTTING_DOWN : rt->stray;
    int apologise = failed && !rt->said && more[0] == '\0';
    send_response(r, rt->response_id, apologise ? APOLOGY : "", apologise ? sizeof(APOLOGY) - 1 : 0, 1, more[0] ? more : NULL);
    r->ending |= more[0] != '\0';
    sb_live_done(&rt->super);
}

static const sb_sink_ops_t retell_sink_ops = {
    .name = "retell",
    .live = 1, /* Retell speaks words as they come */
    .model = on_model,
    .delta = on_delta,
    .tool_started = on_tool_started,
    .tool_finished = on_tool_finished,
    .retrieval = NULL, /* Retell has no event for it */
    .done = on_done,
    .agent = NULL, /* nor for routing */
};

/* --- answers ------------------------------------------------------------------------------------- */

/* The turn for a response or reminder: the transcript (taken), in the call's conversation, with the call tools. */
static int build_request(struct retell *r, const sb_retell_event_t *ev, json_t *messages, sb_chat_request_t *creq,
                         sb_request_error_t *err)
{
    if (ev->kind == SB_RETELL_REMINDER_REQUIRED)
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", REMINDER));
    /* the turn id is the transcript's length: a response Retell asks for again over the same words (after
     * superseding it) keys its tool writes as the first did, so a write that already landed is not made twice */
    json_t *root = json_pack("{s:o, s:b, s:I}", "messages", messages, "stream", 1, "turn_id", (json_int_t)ev->utterances);
    if (r->agent[0])
        json_object_set_new(root, "agent", json_string(r->agent));
    sb_engine_ids_t ids = {.call_label = "retell_call", .call_id = r->call_id};
    int rc = sb_chat_request_parse(root, r->live.w->config->default_model, &ids, creq, err);
    json_decref(root);
    if (rc != 0)
        return -1;
    creq->call_control = 1;
    memcpy(creq->owner, r->owner, sizeof(creq->owner));
    sb_conversation_key_of(r->owner, NULL, creq->identity, creq->memory_key);
    memcpy(r->memory_key, creq->memory_key, sizeof(r->memory_key));
    if (ev->kind == SB_RETELL_REMINDER_REQUIRED)
        creq->question[0] = '\0'; /* a check-in looks nothing up */
    return 0;
}

static void answer(struct retell *r, sb_retell_event_t *ev)
{
    if (ev->response_id <= r->latest)
        return; /* an older ask, or one already answered: Retell has moved on */
    r->latest = ev->response_id;
    sb_live_end(&r->live, "interrupted"); /* the older answer stops now: nothing more goes out for its response_id */
    if (r->live.w->draining) { /* a new answer would hold the drain up: the next process answers once Retell reconnects */
        on_leave(&r->live);
        return;
    }
    if (json_array_size(ev->messages) == 0 && ev->kind == SB_RETELL_RESPONSE_REQUIRED) {
        send_response(r, ev->response_id, "", 0, 1, NULL); /* nothing said yet: nothing to answer */
        return;
    }
    json_t *messages = ev->messages;
    ev->messages = NULL;
    sb_chat_request_t creq;
    sb_request_error_t err;
    if (build_request(r, ev, messages, &creq, &err) != 0) {
        sb_log_warn("retell call %s: response %lld not answered: %s", r->call_id, ev->response_id, err.message);
        send_response(r, ev->response_id, "", 0, 1, NULL); /* Retell waits for content_complete: never leave it hanging */
        return;
    }
    struct retell_turn *rt = sb_calloc(1, sizeof(*rt));
    rt->response_id = ev->response_id;
    sb_live_start(&r->live, &rt->super, &retell_sink_ops, &creq, ROUTE);
}

/* --- Retell's events ------------------------------------------------------------------------------ */

static void on_message(sb_ws_t *ws, void *data, const char *text, size_t len)
{
    struct retell *r = data;
    sb_retell_event_t ev;
    const char *why;
    if (sb_retell_event_read(text, len, &ev, &why) != 0) {
        if (r->ignored++ == 0) /* one line per call: a flood of bad events is bounded by WS_MESSAGES_PER_S, not logged */
            sb_log_warn("retell call %s: an event was ignored: %s", r->call_id, why);
        return;
    }
    switch (ev.kind) {
    case SB_RETELL_PING_PONG: { /* the keep-alive auto_reconnect asked for: echoed at once, also while an answer runs */
        char pong[96];
        int n = snprintf(pong, sizeof(pong), "{\"response_type\":\"ping_pong\",\"timestamp\":%.*s}", (int)ev.timestamp.len,
                         ev.timestamp.base);
        if (n > 0 && (size_t)n < sizeof(pong))
            sb_live_send(&r->live, pong, (size_t)n);
        break;
    }
    case SB_RETELL_RESPONSE_REQUIRED:
    case SB_RETELL_REMINDER_REQUIRED:
        answer(r, &ev);
        break;
    case SB_RETELL_CALL_DETAILS: /* the call as Retell registered it: the call id already names the conversation */
    case SB_RETELL_UPDATE_ONLY:  /* the transcript so far: the next ask brings it whole again */
    case SB_RETELL_OTHER:
        break;
    }
    sb_retell_event_dispose(&ev);
}

static void on_drained(sb_ws_t *ws, void *data)
{
    struct retell *r = data;
    sb_live_drained(&r->live);
}

static void on_closed(sb_ws_t *ws, void *data, unsigned code, const char *why)
{
    struct retell *r = data;
    /* Retell closes 1000 when the call is over; another close is a dropped connection it reconnects */
    if (r->memory_key[0] && (code == SB_WS_NORMAL || r->ending))
        sb_live_close_conversation(&r->live, r->memory_key, r->ending ? "agent_ended" : "call_ended");
    if (why != NULL || r->ignored > 1)
        sb_log_info("retell call %s closed (%u)%s%s; %u events ignored", r->call_id, code, why != NULL ? ": " : "",
                    why != NULL ? why : "", r->ignored);
    sb_live_dispose(&r->live); /* on_disposed follows */
}

static const sb_ws_ops_t retell_ws_ops = {
    .message = on_message,
    .drained = on_drained,
    .closed = on_closed,
};

/* --- the socket's life ---------------------------------------------------------------------------- */

static void on_ended(sb_live_turn_t *lt)
{
    free(H2O_STRUCT_FROM_MEMBER(struct retell_turn, super, lt));
}

/* The drain deadline: the answer in progress completes empty, and the socket closes going away. */
static void on_deadline(sb_live_t *live)
{
    sb_live_stop(live, SB_E_SHUTTING_DOWN, "server shutting down", "shutdown");
    on_leave(live);
}

static void on_disposed(sb_live_t *live)
{
    free(retell_of(live));
}

static const sb_live_ops_t retell_live_ops = {
    .ended = on_ended,
    .leave = on_leave,
    .deadline = on_deadline,
    .disposed = on_disposed,
};

/* Takes the call's socket over: Retell hears config and the begin message first. */
static void accept_call(h2o_req_t *req, h2o_iovec_t key, h2o_iovec_t call_id, h2o_iovec_t agent, h2o_iovec_t secret)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    struct retell *r = sb_calloc(1, sizeof(*r));
    memcpy(r->call_id, call_id.base, call_id.len);
    memcpy(r->agent, agent.base, agent.len);
    sb_conversation_owner(secret.base, secret.len, r->owner);
    r->latest = -1;
    sb_live_init(&r->live, w, &retell_live_ops);
    sb_ws_limits_t limits = {c->retell_max_message_bytes, c->ws_messages_per_s, (uint64_t)c->ws_idle_s * 1000};
    r->live.ws = sb_ws_accept(req, key, NULL, &limits, &retell_ws_ops, r);
    static const char config[] = "{\"response_type\":\"config\",\"config\":{\"auto_reconnect\":true,\"call_details\":true}}";
    sb_live_send(&r->live, config, sizeof(config) - 1);
    const char *hello = c->retell_begin_message != NULL ? c->retell_begin_message : "";
    send_response(r, 0, hello, strlen(hello), 1, NULL); /* response 0 begins the call; empty: the caller speaks first */
}

/* --- GET /v1/retell/llm-websocket/{call_id} ------------------------------------------------------- */

/* Retell's call ids are letters and digits; '_' and '-' are let through too, nothing that could mean a path. */
static int valid_call_id(h2o_iovec_t id)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    if (id.len == 0 || id.len > CALL_ID_MAX)
        return 0;
    for (size_t i = 0; i < id.len; ++i)
        if (id.base[i] == '\0' || strchr(ok, id.base[i]) == NULL)
            return 0;
    return 1;
}

void sb_retell_connect(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    h2o_iovec_t path = req->path_normalized;
    h2o_iovec_t call_id = h2o_iovec_init(path.base + sizeof(SB_RETELL_PREFIX) - 1, path.len - (sizeof(SB_RETELL_PREFIX) - 1));
    if (!c->sessions || c->retell_secret == NULL || !valid_call_id(call_id)) {
        sb_worker_answer(req, SB_E_NOT_FOUND, NULL, NULL, NULL);
        return;
    }
    h2o_iovec_t secret = sb_ws_query_param(req, "secret");
    if (!sb_auth_check_retell(secret.base, secret.len)) {
        sb_worker_answer(req, SB_E_UNAUTHORIZED,
                         "missing or invalid secret: the URL in Retell's dashboard ends ?secret=<RETELL_SECRET>", NULL, NULL);
        return;
    }
    if (w->draining) {
        sb_worker_answer(req, SB_E_SHUTTING_DOWN, NULL, NULL, NULL);
        return;
    }
    h2o_iovec_t agent = sb_ws_query_param(req, "agent");
    if (agent.base != NULL && sb_agents() != NULL && sb_agents_find(agent.base, agent.len) == NULL) {
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "agent= must name one of the agents", NULL, NULL);
        return;
    }
    if (agent.base == NULL || sb_agents() == NULL || agent.len > SB_AGENT_NAME_MAX)
        agent = h2o_iovec_init("", 0); /* none asked for, or agents off: every turn is routed, or the one prompt's */
    h2o_iovec_t key;
    if (!sb_live_handshake(req, &key))
        return;
    sb_live_log_upgrade(w, ROUTE, "upgraded");
    accept_call(req, key, call_id, agent, secret);
}
