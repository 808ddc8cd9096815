/*
 * A live session: the client's messages parsed strictly, one turn at a time
 * through the turn core, and the turn's events written as the protocol's
 * JSON messages (the session sink). The socket is ws.c's; the session's
 * memory lives in the conversation the token names, so a client that
 * reconnects, or another worker, finds it again.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "conversation.h"
#include "live.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "session.h"

#define FRAME_MAX (256u << 10) /* one server message: a tool result is the biggest */
#define ANSWER_MAX (64u << 10) /* an answer's words kept for this socket's history */
#define HISTORY_ROWS "50"      /* stored messages sent to a client that (re)connects */
#define MESSAGE_ID_MAX 64      /* bytes of a client's id for its message */
#define SUBPROTOCOL "switchboard.v1"

/* One answer in progress: the turn with its sink (what the client hears), and what the protocol adds. */
struct live_turn {
    sb_live_turn_t super;
    char id[24];                       /* "t1", "t2", ...: every message about the turn names it */
    char reply_to[MESSAGE_ID_MAX + 1]; /* the client's id for its message, "" when none */
    sb_buf_t words;                    /* what the model said, for this socket's history */
    int stray;                         /* the model called a tool nobody offered it: a session's client has none */
};

struct session {
    sb_live_t live; /* the socket and the answer in progress */
    sb_session_claims_t claims;
    const char *team;    /* static (auth.h) */
    char memory_key[33]; /* the stored conversation: the owner's and the session id's digest */
    json_t *history;     /* this socket's messages, oldest first, at most HISTORY_MAX: what the next turn sends */
    unsigned nturns;
    sb_pgquery_t *history_query;
    int expired;
};

/* --- writing messages -------------------------------------------------------------------------- */

/* Starts a message {"type":"<type>" into `b`. */
static void begin(sb_buf_t *b, const char *type)
{
    sb_buf_init(b, FRAME_MAX);
    sb_buf_appendf(b, "{\"type\":\"%s\"", type);
}

static void add_strz(sb_buf_t *b, const char *key, const char *v)
{
    if (v != NULL)
        sb_buf_append_json_member(b, key, v, strlen(v));
}

static struct live_turn *live_of(sb_sink_t *sink)
{
    return H2O_STRUCT_FROM_MEMBER(struct live_turn, super, H2O_STRUCT_FROM_MEMBER(sb_live_turn_t, super, sink));
}

/* The answer in progress, or NULL. */
static struct live_turn *current(struct session *s)
{
    return s->live.turn != NULL ? H2O_STRUCT_FROM_MEMBER(struct live_turn, super, s->live.turn) : NULL;
}

/* Sends the message in `b` (closed here) and frees it. */
static void send_text(struct session *s, sb_buf_t *b)
{
    if (sb_buf_appendz(b, "}") == 0)
        sb_live_send(&s->live, b->base, b->len);
    sb_buf_dispose(b);
}

/*
 * An error the client shows a person: `category` for code, `message` for
 * people. `turn` is the turn it ended, or NULL.
 */
static void send_error(struct session *s, const char *turn, const char *category, const char *message)
{
    sb_buf_t b;
    begin(&b, "error");
    add_strz(&b, "turn", turn);
    add_strz(&b, "category", category);
    add_strz(&b, "message", message);
    send_text(s, &b);
}

/* What a turn's error means for a person, and its category. */
static const char *friendly(sb_error_t e, const char **category)
{
    switch (e) {
    case SB_E_UPSTREAM_RATE_LIMITED:
        *category = "busy";
        return "the assistant is busy, try again in a moment";
    case SB_E_UPSTREAM_TIMEOUT:
    case SB_E_UPSTREAM_UNAVAILABLE:
    case SB_E_UPSTREAM_ERROR:
    case SB_E_UPSTREAM_BAD_RESPONSE:
    case SB_E_UPSTREAM_AUTH:
    case SB_E_UPSTREAM_TOO_LARGE:
    case SB_E_ANSWER_TOO_LARGE:
    case SB_E_TOO_MANY_TOOL_CALLS:
        *category = "unavailable";
        return "the assistant could not answer just now, try again in a moment";
    case SB_E_SHUTTING_DOWN:
        *category = "restarting";
        return "the assistant is restarting: you will be reconnected";
    case SB_E_UPSTREAM_REJECTED:
    case SB_E_INVALID_REQUEST:
        *category = "bad_message";
        return "the assistant could not take that message";
    default:
        *category = "internal";
        return "something went wrong on our side, try again";
    }
}

/* Tells the client switchboard is restarting and closes (1001): it reconnects to another process. */
static void leave_for_restart(struct session *s)
{
    const char *category, *message = friendly(SB_E_SHUTTING_DOWN, &category);
    send_error(s, NULL, category, message);
    sb_ws_close(s->live.ws, SB_WS_GOING_AWAY, "server shutting down");
}

/* --- the session sink ------------------------------------------------------------------------- */

static struct session *session_of(struct live_turn *lt)
{
    return H2O_STRUCT_FROM_MEMBER(struct session, live, lt->super.live);
}

static void on_agent(sb_sink_t *sink, const sb_agent_decision_t *d)
{
    struct live_turn *lt = live_of(sink);
    sb_buf_t b;
    begin(&b, "agent");
    add_strz(&b, "turn", lt->id);
    add_strz(&b, "agent", d->agent->name);
    if (d->previous != NULL && d->previous != d->agent)
        add_strz(&b, "previous", d->previous->name);
    add_strz(&b, "routed_by", sb_routed_by_name(d->routed_by));
    add_strz(&b, "strategy", sb_strategy_name(d->strategy));
    send_text(session_of(lt), &b);
}

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    sb_live_model(&live_of(sink)->super, model);
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct live_turn *lt = live_of(sink);
    if (d->nfragments > 0)
        lt->stray = 1; /* a session's client declares no tools of its own: the call goes nowhere */
    if (d->text.base == NULL || d->text.len == 0)
        return SB_OK; /* nor does it hear audio */
    sb_live_first(&lt->super);
    sb_buf_append(&lt->words, d->text.base, d->text.len); /* past ANSWER_MAX the history keeps the start */
    sb_buf_t b;
    begin(&b, "token");
    add_strz(&b, "turn", lt->id);
    sb_buf_append_json_member(&b, "text", d->text.base, d->text.len);
    send_text(session_of(lt), &b);
    return SB_OK;
}

static void tool_message(struct live_turn *lt, const char *type, const sb_sink_tool_t *call)
{
    sb_live_first(&lt->super);
    sb_buf_t b;
    begin(&b, type);
    add_strz(&b, "turn", lt->id);
    sb_buf_append_json_member(&b, "id", call->id.base, call->id.len);
    sb_buf_append_json_member(&b, "name", call->name.base, call->name.len);
    sb_buf_append_json_member(&b, "arguments", call->arguments.base, call->arguments.len);
    if (call->result.base != NULL) {
        sb_buf_append_json_member(&b, "result", call->result.base, call->result.len);
        sb_buf_appendz(&b, call->failed ? ",\"failed\":true" : ",\"failed\":false");
    }
    send_text(session_of(lt), &b);
}

static void on_tool_started(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    tool_message(live_of(sink), "tool_call", call);
}

static void on_tool_finished(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    tool_message(live_of(sink), "tool_result", call);
}

static void on_retrieval(sb_sink_t *sink, const char *outcome, const sb_passage_t *passages, size_t n)
{
    struct live_turn *lt = live_of(sink);
    sb_buf_t b;
    begin(&b, "retrieval");
    add_strz(&b, "turn", lt->id);
    add_strz(&b, "outcome", outcome);
    sb_buf_appendz(&b, ",\"passages\":[");
    for (size_t i = 0; i < n; ++i) {
        sb_buf_appendz(&b, i ? ",{" : "{");
        sb_buf_appendf(&b, "\"score\":%.4f", passages[i].score);
        add_strz(&b, "source", passages[i].source);
        add_strz(&b, "heading", passages[i].heading);
        add_strz(&b, "text", passages[i].text);
        sb_buf_appendz(&b, "}");
    }
    sb_buf_appendz(&b, "]");
    send_text(session_of(lt), &b);
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct live_turn *lt = live_of(sink);
    struct session *s = session_of(lt);
    sb_live_first(&lt->super);
    sb_error_t error = end->error;
    if (error == SB_OK && lt->stray && lt->words.len == 0)
        error = SB_E_UPSTREAM_BAD_RESPONSE; /* nothing to say but a call of a tool it does not have: no answer */
    if (error != SB_OK) {
        const char *category, *message = friendly(error, &category);
        send_error(s, lt->id, category, message);
    }
    sb_buf_t b;
    begin(&b, "done");
    add_strz(&b, "turn", lt->id);
    if (lt->reply_to[0])
        add_strz(&b, "reply_to", lt->reply_to);
    add_strz(&b, "finish", error == SB_OK ? (end->finish != NULL ? end->finish : "stop") : "error");
    if (lt->super.model[0])
        add_strz(&b, "model", lt->super.model);
    if (end->has_usage)
        sb_buf_appendf(&b, ",\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}",
                       end->prompt_tokens, end->completion_tokens, end->total_tokens);
    send_text(s, &b);
    sb_live_done(&lt->super);
}

static const sb_sink_ops_t session_sink_ops = {
    .name = "session",
    .live = 1, /* the client hears words as they come */
    .model = on_model,
    .delta = on_delta,
    .tool_started = on_tool_started,
    .tool_finished = on_tool_finished,
    .retrieval = on_retrieval,
    .done = on_done,
    .agent = on_agent,
};

/* --- turns ------------------------------------------------------------------------------------- */

/* Adds a message to this socket's history, dropping the oldest past HISTORY_MAX. */
static void remember(struct session *s, const char *role, const char *text, size_t len)
{
    if (len == 0)
        return;
    json_array_append_new(s->history, json_pack("{s:s, s:s%}", "role", role, "content", text, len));
    size_t max = s->live.w->config->history_max > 0 ? s->live.w->config->history_max : 1;
    while (json_array_size(s->history) > max)
        json_array_remove(s->history, 0);
}

/* The answer was let go (live.h): its words are kept in the history. */
static void on_ended(sb_live_turn_t *super)
{
    struct live_turn *lt = H2O_STRUCT_FROM_MEMBER(struct live_turn, super, super);
    remember(session_of(lt), "assistant", lt->words.base, lt->words.len);
    sb_buf_dispose(&lt->words);
    free(lt);
}

/* The request a message makes: this socket's history and the new words, in the session's conversation. */
static int build_request(struct session *s, const char *text, const char *agent, const char *model_asked, sb_chat_request_t *creq,
                         sb_request_error_t *err)
{
    json_t *messages = json_deep_copy(s->history);
    json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", text));
    char model[257] = "";
    if (agent != NULL)
        snprintf(model, sizeof(model), "agent:%s", agent);
    else if (model_asked != NULL)
        snprintf(model, sizeof(model), "%s", model_asked);
    json_t *root = json_pack("{s:o, s:b, s:s, s:{s:b}}", "messages", messages, "stream", 1, "conversation_id", s->claims.id,
                             "stream_options", "include_usage", 1);
    if (model[0])
        json_object_set_new(root, "model", json_string(model));
    int rc = sb_chat_request_parse(root, s->live.w->config->default_model, NULL, creq, err);
    json_decref(root);
    if (rc != 0)
        return -1;
    creq->team = s->team;
    memcpy(creq->owner, s->claims.owner, sizeof(creq->owner));
    memcpy(creq->memory_key, s->memory_key, sizeof(creq->memory_key));
    return 0;
}

/* Stops the answer in progress, telling the client it ended with `finish` (interrupted, cancelled). */
static void stop_live(struct session *s, const char *finish)
{
    struct live_turn *lt = current(s);
    if (lt == NULL)
        return;
    if (!lt->super.done) {
        sb_buf_t b;
        begin(&b, "done");
        add_strz(&b, "turn", lt->id);
        add_strz(&b, "finish", finish);
        send_text(s, &b);
    }
    sb_live_end(&s->live, finish);
}

static void start_turn(struct session *s, const char *text, size_t len, const char *agent, const char *model, const char *reply_to)
{
    stop_live(s, "interrupted"); /* a new message stops the answer in progress: barge-in */
    sb_chat_request_t creq;
    sb_request_error_t err;
    if (build_request(s, text, agent, model, &creq, &err) != 0) {
        send_error(s, NULL, "bad_message", err.message);
        return;
    }
    remember(s, "user", text, len);
    struct live_turn *lt = sb_calloc(1, sizeof(*lt));
    snprintf(lt->id, sizeof(lt->id), "t%u", ++s->nturns);
    snprintf(lt->reply_to, sizeof(lt->reply_to), "%s", reply_to != NULL ? reply_to : "");
    sb_buf_init(&lt->words, ANSWER_MAX);
    sb_live_start(&s->live, &lt->super, &session_sink_ops, &creq, "/v1/sessions/ws");
}

/* --- the client's messages --------------------------------------------------------------------- */

static void on_message(sb_ws_t *ws, void *data, const char *text, size_t len)
{
    struct session *s = data;
    json_error_t jerr;
    json_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = NULL, *words = NULL, *agent = NULL, *model = NULL, *id = NULL;
    size_t nwords = 0;
    json_t *stamp = NULL;
    if (m == NULL || json_unpack_ex(m, &jerr, JSON_STRICT, "{s:s, s?s%, s?s, s?s, s?s, s?o}", "type", &type, "text", &words,
                                    &nwords, "agent", &agent, "model", &model, "id", &id, "t", &stamp) != 0) {
        send_error(s, NULL, "bad_message", "a message is a JSON object with a type: message, cancel, ping or end");
        json_decref(m);
        return;
    }
    if (strcmp(type, "message") == 0) {
        if (s->live.w->draining) /* a new answer would hold the drain up: the next process takes it */
            leave_for_restart(s);
        else if (words == NULL || nwords == 0 || memchr(words, '\0', nwords) != NULL)
            send_error(s, NULL, "bad_message", "a message needs some text");
        else if (id != NULL && strlen(id) > MESSAGE_ID_MAX)
            send_error(s, NULL, "bad_message", "a message id is at most 64 bytes");
        else if (s->expired)
            send_error(s, NULL, "session_expired", "your session expired: reload the page to start a new one");
        else
            start_turn(s, words, nwords, agent, model, id);
    } else if (strcmp(type, "cancel") == 0) {
        if (current(s) != NULL && !current(s)->super.done)
            stop_live(s, "cancelled");
    } else if (strcmp(type, "ping") == 0) {
        sb_buf_t b;
        begin(&b, "pong");
        if (stamp != NULL && (json_is_number(stamp) || json_is_string(stamp))) {
            char *t = json_dumps(stamp, JSON_ENCODE_ANY);
            sb_buf_appendf(&b, ",\"t\":%s", t);
            free(t);
        }
        send_text(s, &b);
    } else if (strcmp(type, "end") == 0) {
        sb_live_end(&s->live, "cancelled");
        sb_live_close_conversation(&s->live, s->memory_key, "client_end");
        sb_ws_close(ws, SB_WS_NORMAL, "session ended");
    } else {
        send_error(s, NULL, "bad_message", "unknown message type: message, cancel, ping or end");
    }
    json_decref(m);
}

static void on_drained(sb_ws_t *ws, void *data)
{
    struct session *s = data;
    sb_live_drained(&s->live);
}

static void on_closed(sb_ws_t *ws, void *data, unsigned code, const char *why)
{
    struct session *s = data;
    if (s->history_query != NULL)
        sb_pgquery_cancel(s->history_query);
    if (code == SB_WS_NORMAL && !s->expired) /* the client ended the session: it is over for good */
        sb_live_close_conversation(&s->live, s->memory_key, "client_closed");
    if (why != NULL)
        sb_log_info("session %s closed: %s (%u)", s->claims.id, why, code);
    sb_live_dispose(&s->live); /* on_disposed follows */
}

static const sb_ws_ops_t session_ws_ops = {
    .message = on_message,
    .drained = on_drained,
    .closed = on_closed,
};

/* --- connecting -------------------------------------------------------------------------------- */

/* The stored conversation's last messages, for a client that reconnects, oldest first. */
static const char history_sql[] =
    "SELECT coalesce(json_agg(json_build_object('role', m.role, 'content', m.content, 'agent', m.agent) ORDER BY m.seq), '[]') "
    "FROM (SELECT seq, role, content, agent FROM messages WHERE conversation = (SELECT id FROM conversations WHERE key = $1) "
    "  AND role <> 'tool' AND content IS NOT NULL AND content <> '' ORDER BY seq DESC LIMIT " HISTORY_ROWS ") m";

static void on_history(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct session *s = data;
    s->history_query = NULL;
    sb_buf_t b;
    begin(&b, "history");
    if (err == SB_OK && PQntuples(res) == 1)
        sb_buf_appendf(&b, ",\"messages\":%s", PQgetvalue(res, 0, 0));
    else
        sb_buf_appendz(&b, ",\"messages\":[],\"incomplete\":true");
    send_text(s, &b);
}

/* The drain found the socket idle, or the answer it let finish is out: the client hears restarting now. */
static void on_leave(sb_live_t *live)
{
    leave_for_restart(H2O_STRUCT_FROM_MEMBER(struct session, live, live));
}

/* The drain deadline: the answer in progress ends with the restarting error (its done says so), and the socket closes. */
static void on_deadline(sb_live_t *live)
{
    if (sb_live_stop(live, SB_E_SHUTTING_DOWN, "server shutting down", "shutdown"))
        sb_ws_close(live->ws, SB_WS_GOING_AWAY, "server shutting down");
    else
        leave_for_restart(H2O_STRUCT_FROM_MEMBER(struct session, live, live));
}

static void on_disposed(sb_live_t *live)
{
    struct session *s = H2O_STRUCT_FROM_MEMBER(struct session, live, live);
    json_decref(s->history);
    free(s);
}

static const sb_live_ops_t session_live_ops = {
    .ended = on_ended,
    .leave = on_leave,
    .deadline = on_deadline,
    .disposed = on_disposed,
};

void sb_session_accept(h2o_req_t *req, h2o_iovec_t key, const char *protocol, const sb_session_claims_t *claims, int expired)
{
    sb_worker_t *w = sb_worker_of(req);
    struct session *s = sb_calloc(1, sizeof(*s));
    s->claims = *claims;
    s->expired = expired;
    s->team = claims->team[0] ? sb_auth_team_named(claims->team, strlen(claims->team)) : NULL;
    sb_conversation_key_of(claims->owner, claims->id, NULL, s->memory_key);
    s->history = json_array();
    sb_live_init(&s->live, w, &session_live_ops);
    const sb_config_t *c = w->config;
    sb_ws_limits_t limits = {c->ws_max_message_bytes, c->ws_messages_per_s, (uint64_t)c->ws_idle_s * 1000};
    s->live.ws = sb_ws_accept(req, key, protocol, &limits, &session_ws_ops, s);
    if (expired) {
        send_error(s, NULL, "session_expired", "your session expired: reload the page to start a new one");
        sb_ws_close(s->live.ws, 4001, "session expired");
        return;
    }
    sb_buf_t b;
    begin(&b, "ready");
    add_strz(&b, "session", claims->id);
    sb_buf_appendf(&b, ",\"expires_at\":%llu", (unsigned long long)claims->expires);
    send_text(s, &b);
    if (w->memory != NULL && c->memory)
        s->history_query = sb_pgpool_query(w->pg, history_sql, 1, (const char *const[]){s->memory_key}, on_history, s);
}
