/*
 * The exchange of one turn over HTTP, shared by every turn channel: it lives
 * in the request's memory pool, holds the turn and the channel's sink, watches
 * an HTTP/1 caller for a hang-up, hears the drain deadline, and writes the
 * access-log line when the request is over. Its dispose hook lets go of
 * everything it holds, whichever way the request ended.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "exchange.h"
#include "hangup.h"
#include "metrics.h"
#include "respond.h"
#include "turn.h"
#include "watch.h"
#include "worker.h"

struct exchange {
    sb_open_work_t work; /* in the worker's list of open work, for draining */
    sb_worker_t *w;
    sb_chat_out_t out;
    sb_sink_t *sink;                   /* the channel's: the caller hears it */
    const sb_exchange_sink_ops_t *ops; /* the sink's transport hooks */
    sb_turn_watch_t watch;             /* the observers and the access-log line */
    sb_turn_t *turn;                   /* NULL once let go */
    sb_hangup_t *hangup;               /* HTTP/1 only */
};

static void log_access(struct exchange *x)
{
    sb_turn_watch_log(&x->watch, &(sb_turn_written_t){x->out.status, x->out.t_first, x->out.bytes, x->out.model});
}

/* Lets go of the turn (stopping it if it still runs), keeping what the access log reports of it. */
static void forget_turn(struct exchange *x)
{
    if (x->turn == NULL)
        return;
    sb_turn_watch_forget(&x->watch, x->turn);
    sb_turn_release(x->turn);
    x->turn = NULL;
}

/* The caller left (h2o stopped the response, or the hang-up watch heard it): nothing more is sent. */
static void client_gone(struct exchange *x)
{
    if (x->watch.end == NULL)
        x->watch.end = "client_gone";
    sb_hangup_stop(x->hangup);
    x->hangup = NULL;
    forget_turn(x);
}

static void on_sink_gone(sb_chat_out_t *out)
{
    client_gone(H2O_STRUCT_FROM_MEMBER(struct exchange, out, out));
}

static void on_hangup(void *data)
{
    struct exchange *x = data;
    x->hangup = NULL;                                                     /* the watch stopped itself */
    int over = x->turn == NULL || sb_turn_phase(x->turn) == SB_TURN_DONE; /* its last bytes are on their way */
    client_gone(x);
    if (over)
        return;
    /* h2o is not reading an HTTP/1 socket while it answers, so it has not noticed: end the response as failed */
    x->ops->abort(x->sink);
}

static int on_hangup_ask(void *data)
{
    struct exchange *x = data;
    return x->ops->ping != NULL && x->ops->ping(x->sink);
}

static const sb_hangup_cbs_t hangup_cbs = {on_hangup, on_hangup_ask};

/* --- draining ---------------------------------------------------------------------------------------- */

/* The drain deadline passed: the caller hears that the server is shutting down. */
static void on_deadline(sb_open_work_t *work)
{
    struct exchange *x = H2O_STRUCT_FROM_MEMBER(struct exchange, work, work);
    if (x->turn == NULL || sb_turn_phase(x->turn) == SB_TURN_DONE)
        return; /* gone, or ending already: its bytes are on their way */
    x->watch.end = "shutdown";
    sb_turn_stop(x->turn, SB_E_SHUTTING_DOWN, "server shutting down", "shutdown");
}

/* The process exits with the exchange still open (its reader did not take its last bytes). */
static void on_exiting(sb_open_work_t *work)
{
    struct exchange *x = H2O_STRUCT_FROM_MEMBER(struct exchange, work, work);
    if (x->watch.end == NULL || strcmp(x->watch.end, "done") != 0)
        x->watch.end = "shutdown";
    forget_turn(x);
    log_access(x);
}

/* --- lifetime ---------------------------------------------------------------------------------------- */

/* What tells the exchange that the request is over: h2o calls a pool's shared entries' dispose hooks before it frees the
 * pool's chunks, so the exchange itself can live in the chunk, which has room to spare (a malloc of its own cost an open
 * stream about 1 KiB). */
struct exchange_end {
    struct exchange *x;
};
/* h2o serves an allocation of a quarter of its 4 KiB chunk or more with a malloc of its own, which would undo the saving */
_Static_assert(sizeof(struct exchange) < 1000, "the exchange must fit in the request pool's chunk");

/* The request's pool is going away: whatever way the exchange ended, let go of everything it holds. */
static void on_dispose(void *p)
{
    struct exchange *x = ((struct exchange_end *)p)->x;
    sb_hangup_stop(x->hangup);
    x->hangup = NULL;
    forget_turn(x);
    if (x->sink != NULL) {
        x->ops->dispose(x->sink);
        log_access(x);
        sb_turn_watch_dispose(&x->watch);
    }
    if (x->sink != NULL)
        sb_worker_work_ended(x->w, &x->work);
}

/* The first value of header `name` (lowercase), base NULL when absent. */
static h2o_iovec_t header_value(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t at = h2o_find_header_by_str(&req->headers, name, len, -1);
    return at >= 0 ? req->headers.entries[at].value : h2o_iovec_init(NULL, 0);
}

/* --- public ------------------------------------------------------------------------------------------ */

void sb_exchange_engine_ids(h2o_req_t *req, sb_engine_ids_t *ids)
{
    /* Agora's custom LLM requests can carry the call's ids as headers */
    static const h2o_iovec_t names[] = {
        {H2O_STRLIT("x-agora-customllm-appid")}, {H2O_STRLIT("x-agora-customllm-channel")}, {H2O_STRLIT("x-agora-customllm-uid")}};
    ids->call_label = ids->call_id = NULL; /* Agora's engine names the call by its app, channel and user */
    const char **base[] = {&ids->app_id, &ids->channel, &ids->uid};
    size_t *len[] = {&ids->app_id_len, &ids->channel_len, &ids->uid_len};
    for (size_t i = 0; i < 3; ++i) {
        h2o_iovec_t v = header_value(req, names[i].base, names[i].len);
        *base[i] = v.base;
        *len[i] = v.len;
    }
}

void sb_exchange_refuse(h2o_req_t *req, sb_error_t e, const char *message, const char *param)
{
    char route[64];
    snprintf(route, sizeof(route), "%.*s", (int)req->path_normalized.len, req->path_normalized.base);
    sb_worker_answer(req, e, message, param, NULL);
    sb_metrics_request(route, sb_error_status(e), "rejected");
}

int sb_exchange_admit(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    if (w->draining) {
        sb_exchange_refuse(req, SB_E_SHUTTING_DOWN, NULL, NULL);
        return 0;
    }
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (!sb_auth_check(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        sb_exchange_refuse(req, SB_E_UNAUTHORIZED, NULL, NULL);
        return 0;
    }
    if (req->entity.len > w->config->max_body_bytes) {
        sb_exchange_refuse(req, SB_E_BODY_TOO_LARGE, NULL, NULL);
        return 0;
    }
    if (req->entity.base == NULL || req->entity.len == 0) {
        sb_exchange_refuse(req, SB_E_INVALID_JSON, "request body is empty", NULL);
        return 0;
    }
    return 1;
}

int sb_exchange_conversation(h2o_req_t *req, sb_chat_request_t *creq)
{
    h2o_iovec_t id = header_value(req, H2O_STRLIT("x-conversation-id"));
    sb_request_error_t err;
    if (sb_chat_request_set_conversation_id(creq, id.base, id.len, &err) != 0) {
        sb_chat_request_dispose(creq);
        sb_exchange_refuse(req, err.kind, err.message, err.param);
        return 0;
    }
    /* the bearer token as sent (admitted already): its digest owns the conversation */
    h2o_iovec_t auth = header_value(req, H2O_STRLIT("authorization"));
    size_t len;
    const char *token = sb_auth_token(auth.base, auth.len, &len);
    sb_conversation_key(token, len, creq->conversation_id, creq->identity, creq->memory_key, creq->owner);
    return 1;
}

sb_chat_out_t *sb_exchange_open(h2o_req_t *req, sb_chat_request_t *creq, const char *id_prefix)
{
    sb_worker_t *w = sb_worker_of(req);
    struct exchange *x = h2o_mem_alloc_pool(&req->pool, sizeof(*x));
    memset(x, 0, sizeof(*x));
    struct exchange_end *end = h2o_mem_alloc_shared(&req->pool, sizeof(*end), on_dispose);
    end->x = x;
    x->w = w;
    x->work.deadline = on_deadline;
    x->work.exiting = on_exiting;
    x->out.req = req;
    x->out.config = w->config;
    x->out.loop = &w->loop;
    x->out.created = time(NULL);
    x->out.include_usage = creq->include_usage;
    x->out.gone = on_sink_gone;
    char id[25];
    sb_respond_new_id(id, sizeof(id));
    snprintf(x->out.id, sizeof(x->out.id), "%s%s", id_prefix, id);
    h2o_iovec_t client_id = header_value(req, H2O_STRLIT("x-request-id"));
    h2o_iovec_t traceparent = header_value(req, H2O_STRLIT("traceparent"));
    sb_chat_request_set_trace(creq, client_id.base, client_id.len, id, traceparent.base, traceparent.len);
    ssize_t auth = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1); /* the key was checked: which team's is it */
    creq->team = auth >= 0 ? sb_auth_team(req->headers.entries[auth].value.base, req->headers.entries[auth].value.len) : NULL;
    /* h2o keeps the pointer, not a copy: the value must live as long as the request */
    h2o_iovec_t rid = h2o_strdup(&req->pool, creq->request_id, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, rid.base, rid.len);
    return &x->out;
}

void sb_exchange_start(sb_chat_out_t *out, sb_chat_request_t *creq, sb_sink_t *sink, const sb_exchange_sink_ops_t *ops)
{
    struct exchange *x = H2O_STRUCT_FROM_MEMBER(struct exchange, out, out);
    sb_worker_t *w = x->w;
    h2o_req_t *req = out->req;
    x->sink = sink;
    x->ops = ops;
    char route[64];
    snprintf(route, sizeof(route), "%.*s", (int)req->path_normalized.len, req->path_normalized.base);
    sb_sink_t *observer = sb_turn_watch_start(&x->watch, w, creq, route);
    sb_worker_work_started(w, &x->work);
    sb_turn_env_t env = sb_worker_turn_env(w, 1);
    x->turn = sb_turn_start(&env, creq, x->sink, observer);
    if (req->version < 0x200) {
        h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
        if (sock != NULL)
            x->hangup = sb_hangup_watch(w->hangups, h2o_socket_get_fd(sock), req->version >= 0x101, &hangup_cbs, x);
    }
}
