/*
 * A socket channel's turn (live.h): started with its observers, paused and
 * resumed by the socket's back-pressure, released from the loop once done,
 * logged once. The channel's protocol stays in the channel.
 */
#include <stdio.h>
#include <string.h>

#include "eventlog.h"
#include "live.h"
#include "memory.h"
#include "respond.h"
#include "sb/alloc.h"

/* --- the reaper ---------------------------------------------------------------------------------- */

static void on_reap(uv_timer_t *timer)
{
    sb_live_t *live = timer->data;
    if (live->turn != NULL && live->turn->done)
        sb_live_end(live, "done");
    if (live->turn == NULL && live->ws != NULL && live->w->draining) /* the answer the drain waited for is out */
        live->ops->leave(live);
}

static void on_reap_closed(uv_handle_t *h)
{
    sb_live_t *live = h->data;
    live->ops->disposed(live);
}

/* --- draining ------------------------------------------------------------------------------------ */

/* The drain starts: an idle socket only waits, so it goes now; an answer in progress may finish first (on_reap). */
static void on_draining(sb_open_work_t *work)
{
    sb_live_t *live = H2O_STRUCT_FROM_MEMBER(sb_live_t, work, work);
    if (live->ws != NULL && live->turn == NULL)
        live->ops->leave(live);
}

static void on_deadline(sb_open_work_t *work)
{
    sb_live_t *live = H2O_STRUCT_FROM_MEMBER(sb_live_t, work, work);
    if (live->ws != NULL)
        live->ops->deadline(live);
}

/* The process exits with the socket still open: the turn's line is written now, since nothing else will. */
static void on_exiting(sb_open_work_t *work)
{
    sb_live_end(H2O_STRUCT_FROM_MEMBER(sb_live_t, work, work), "shutdown");
}

/* --- the end of a conversation ------------------------------------------------------------------- */

/* A conversation to close once its last turns are written: a close before them would be opened again by them. */
struct closing {
    sb_memory_t *memory;
    char key[33];
    const char *reason;
};

static void on_turns_written(void *data, int written)
{
    struct closing *c = data;
    if (written)
        sb_memory_close(c->memory, c->key, c->reason);
    free(c);
}

/* --- public -------------------------------------------------------------------------------------- */

void sb_live_init(sb_live_t *live, sb_worker_t *w, const sb_live_ops_t *ops)
{
    live->w = w;
    live->ops = ops;
    live->work.draining = on_draining;
    live->work.deadline = on_deadline;
    live->work.exiting = on_exiting;
    uv_timer_init(&w->loop, &live->reap);
    live->reap.data = live;
    sb_worker_work_started(w, &live->work);
}

void sb_live_start(sb_live_t *live, sb_live_turn_t *lt, const sb_sink_ops_t *ops, sb_chat_request_t *creq, const char *route)
{
    sb_worker_t *w = live->w;
    char id[25];
    sb_respond_new_id(id, sizeof(id));
    sb_chat_request_set_trace(creq, NULL, 0, id, NULL, 0);
    lt->super.ops = ops;
    lt->live = live;
    live->turn = lt;
    sb_sink_t *observer = sb_turn_watch_start(&lt->watch, w, creq, route);
    sb_turn_env_t env = sb_worker_turn_env(w, 1);
    lt->turn = sb_turn_start(&env, creq, &lt->super, observer);
}

int sb_live_send(sb_live_t *live, const char *text, size_t len)
{
    if (live->ws == NULL)
        return -1;
    int rc = sb_ws_send(live->ws, text, len);
    sb_live_turn_t *lt = live->turn;
    if (rc < 0 || lt == NULL)
        return rc;
    lt->bytes += len;
    if (rc == 1 && lt->turn != NULL && !lt->done && !lt->paused) {
        lt->paused = 1;
        lt->super.pause(lt->super.turn);
    }
    return rc;
}

void sb_live_first(sb_live_turn_t *lt)
{
    if (lt->t_first == 0)
        lt->t_first = uv_hrtime();
}

void sb_live_drained(sb_live_t *live)
{
    sb_live_turn_t *lt = live->turn;
    if (lt != NULL && lt->paused && lt->turn != NULL) {
        lt->paused = 0;
        lt->super.resume(lt->super.turn); /* may deliver held deltas, and the sink send them, right here */
    }
}

void sb_live_model(sb_live_turn_t *lt, sb_str_t model)
{
    sb_copy_text(lt->model, sizeof(lt->model), model.base, model.len);
}

void sb_live_done(sb_live_turn_t *lt)
{
    lt->done = 1;
    uv_timer_start(&lt->live->reap, on_reap, 0, 0); /* the turn is inside this call: it is released from the loop */
}

void sb_live_end(sb_live_t *live, const char *end)
{
    sb_live_turn_t *lt = live->turn;
    if (lt == NULL)
        return;
    live->turn = NULL;
    if (lt->turn != NULL) {
        if (!lt->done && lt->watch.end == NULL)
            lt->watch.end = end;
        sb_turn_watch_forget(&lt->watch, lt->turn);
        sb_turn_release(lt->turn);
        lt->turn = NULL;
    }
    sb_turn_watch_log(&lt->watch, &(sb_turn_written_t){101, lt->t_first, lt->bytes, lt->model});
    sb_turn_watch_dispose(&lt->watch);
    live->ops->ended(lt);
}

int sb_live_stop(sb_live_t *live, sb_error_t error, const char *message, const char *how)
{
    sb_live_turn_t *lt = live->turn;
    if (lt == NULL || lt->done || lt->turn == NULL)
        return 0;
    sb_turn_stop(lt->turn, error, message, how);
    return 1;
}

void sb_live_dispose(sb_live_t *live)
{
    live->ws = NULL;
    sb_live_end(live, "client_gone");
    sb_worker_work_ended(live->w, &live->work);
    uv_close((uv_handle_t *)&live->reap, on_reap_closed);
}

void sb_live_close_conversation(sb_live_t *live, const char *memory_key, const char *reason)
{
    sb_worker_t *w = live->w;
    if (w->memory == NULL || live->closing)
        return;
    live->closing = 1;
    struct closing *c = sb_alloc(sizeof(*c));
    c->memory = w->memory;
    snprintf(c->key, sizeof(c->key), "%s", memory_key);
    c->reason = reason;
    sb_eventlog_after(w->eventlog, on_turns_written, c);
}

int sb_live_handshake(h2o_req_t *req, h2o_iovec_t *key)
{
    int hs = sb_ws_is_handshake(req, key);
    if (hs == 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    if (hs <= 0)
        sb_worker_answer(req, hs == 0 ? SB_E_UPGRADE_REQUIRED : SB_E_INVALID_REQUEST,
                         hs == 0 ? NULL : "malformed WebSocket handshake (version 13, a 24-byte key)", NULL, NULL);
    return hs > 0;
}

void sb_live_log_upgrade(sb_worker_t *w, const char *route, const char *end)
{
    sb_access_t a = {.request_id = "",
                     .method = "GET",
                     .route = route,
                     .status = 101,
                     .ttfb_ms = -1,
                     .total_ms = 0,
                     .prompt_tokens = -1,
                     .completion_tokens = -1,
                     .end = end,
                     .worker = w->id};
    sb_access_log(w->config->access_log, &a);
}
