/*
 * The turn a WebSocket channel has in progress (session.c, retell.c): at most
 * one per socket. What those channels share lives here: a turn started for a
 * chat request the channel built, with its observers (watch.h); its messages
 * written to the socket with back-pressure on the turn; a turn that finished
 * released from the loop, never inside its own done; the drain hooks (an idle
 * socket leaves when the drain starts, a busy one once its answer is out, and
 * the deadline ends what is left); the close of the socket's conversation,
 * after its last turns are written; and the access-log lines (the upgrade's,
 * and each turn's). Each channel keeps its protocol: its turn struct embeds
 * sb_live_turn_t as `super`, whose own `super` is the sink the turn tells.
 * Loop thread only.
 */
#ifndef SB_LIVE_H
#define SB_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "request.h"
#include "sink.h"
#include "turn.h"
#include "watch.h"
#include "worker.h"
#include "ws.h"

typedef struct sb_live sb_live_t;

/* One turn of a socket. The channel allocates it (zeroed) inside its own struct and gets it back in `ended`. */
typedef struct sb_live_turn {
    sb_sink_t super; /* what the turn tells: the channel's sink operations */
    sb_live_t *live;
    sb_turn_t *turn; /* NULL once released */
    sb_turn_watch_t watch;
    uint64_t t_first; /* uv_hrtime() of its first words out, 0 before */
    size_t bytes;     /* sent while it was the socket's turn */
    char model[257];  /* the model that answers, "" until the turn names it */
    int done;         /* the turn told done: it is released from the loop */
    int paused;       /* the socket's output is over its high-water mark: the turn's provider is held */
} sb_live_turn_t;

/* What a channel does at the ends of its turns and of its socket. One const table per channel. */
typedef struct sb_live_ops {
    /* The turn was let go (its line written): free what embeds it. May not start another turn. */
    void (*ended)(sb_live_turn_t *lt);
    /*
     * The worker drains and the socket has no answer in progress (at the
     * drain's start, or once the answer it let finish is out): tell the peer
     * and close (sb_ws_close, going away) so it reconnects to another process.
     */
    void (*leave)(sb_live_t *live);
    /* The drain deadline passed: end the socket for its peer now (sb_live_stop, sb_ws_close). */
    void (*deadline)(sb_live_t *live);
    /* After sb_live_dispose, from the loop: free what embeds `live`. */
    void (*disposed)(sb_live_t *live);
} sb_live_ops_t;

/* A socket's live side, embedded by the channel's connection. */
struct sb_live {
    sb_open_work_t work; /* in the worker's open work, for draining */
    sb_worker_t *w;
    const sb_live_ops_t *ops;
    sb_ws_t *ws;          /* set by the channel once accepted; NULL once closed */
    sb_live_turn_t *turn; /* the turn in progress (or done and not yet released), or NULL */
    uv_timer_t reap;      /* releases a finished turn from the loop */
    int closing;          /* its conversation's close is on its way (sb_live_close_conversation) */
};

/* Sets `live` up on worker `w` and puts it in the worker's open work. `ops` is static. */
void sb_live_init(sb_live_t *live, sb_worker_t *w, const sb_live_ops_t *ops);

/*
 * Starts `lt` as the socket's turn for `creq` (its contents taken; a fresh
 * request id is set here), telling the sink `ops` (static), heard on `route`
 * in the access log and the metrics. A turn still in progress must have
 * been ended (sb_live_end) first. The sink's first events come from the loop.
 */
void sb_live_start(sb_live_t *live, sb_live_turn_t *lt, const sb_sink_ops_t *ops, sb_chat_request_t *creq, const char *route);

/*
 * Sends one text message (copied) on the socket, counted to the turn in
 * progress; when the socket's output passes its high-water mark that turn is
 * paused until sb_live_drained. Returns sb_ws_send's result (-1 when the
 * socket is closing or gone: nothing sent).
 */
int sb_live_send(sb_live_t *live, const char *text, size_t len);

/* Marks the turn's first words out (what the access log's ttfb_ms measures), once. */
void sb_live_first(sb_live_turn_t *lt);

/* The socket's `drained`: a paused turn goes on. */
void sb_live_drained(sb_live_t *live);

/* For the sink's `model`: keeps the answering model's name for the access-log line. */
void sb_live_model(sb_live_turn_t *lt, sb_str_t model);

/* For the sink's `done`, last: the turn is over and is let go from the loop (sb_live_end with "done"). */
void sb_live_done(sb_live_turn_t *lt);

/*
 * Lets go of the socket's turn now: stopped silently if it still runs, its
 * access-log line written (ending `end`, e.g. interrupted, client_gone,
 * shutdown, when it did not finish by itself), then the channel's `ended`.
 * Nothing when there is no turn.
 */
void sb_live_end(sb_live_t *live, const char *end);

/*
 * Ends the turn in progress at once with `error` (its sink's done follows
 * inside this call), `message` and `how` for the log. Returns 1 when a turn
 * was running, 0 when there was none or it had finished.
 */
int sb_live_stop(sb_live_t *live, sb_error_t error, const char *message, const char *how);

/*
 * The socket is gone (call from the channel's `closed`): the turn is let go
 * (client_gone), the open work ends, and `disposed` follows from the loop.
 */
void sb_live_dispose(sb_live_t *live);

/*
 * Whether `req` is a WebSocket handshake (its key into *key): 1. Otherwise it
 * has been answered, 0: a request without the upgrade gets 426 with
 * Upgrade: websocket, a malformed handshake 400.
 */
int sb_live_handshake(h2o_req_t *req, h2o_iovec_t *key);

/*
 * The socket's conversation (`memory_key`) is over for good: it is closed and
 * summarised (sb_memory_close, with `reason`) once every turn already queued
 * for the event log is written, since a turn written after the close would
 * open it again. Once per socket; nothing without memory.
 */
void sb_live_close_conversation(sb_live_t *live, const char *memory_key, const char *reason);

/* The access-log line of an accepted upgrade: GET `route`, 101, ending `end` (upgraded, expired). */
void sb_live_log_upgrade(sb_worker_t *w, const char *route, const char *end);

#endif
