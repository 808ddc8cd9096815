/*
 * A turn's observers, for every channel: the access log's recorder, the
 * metrics, and the event log (memory's record of the turn), chained in that
 * order behind the channel's sink (sink.h `next`), and the access-log line
 * when the channel is done with the turn. An HTTP exchange (exchange.c) and
 * a socket channel's turn (live.c) each embed one per turn. Loop thread only.
 */
#ifndef SB_WATCH_H
#define SB_WATCH_H

#include <stdint.h>

#include "eventlog.h"
#include "metrics.h"
#include "turn.h"
#include "worker.h"

typedef struct sb_turn_watch {
    sb_worker_t *w;
    sb_sink_t recorder;          /* the first observer: what the access log reports */
    sb_metrics_turn_t metrics;   /* the next, when metrics are on */
    sb_eventlog_turn_t eventlog; /* the last: the turn's record for memory and the event log */
    uint64_t t_start;            /* uv_hrtime() */
    char route[64];
    char request_id[65];
    char model[257]; /* asked for, when no answer named one */
    const char *end; /* how it ended: client_gone, shutdown, or the turn's own */
    const char *retrieval;
    uint32_t shadowed;
    sb_agent_decision_t agent;
    int has_usage, logged;
    long long prompt_tokens, completion_tokens;
} sb_turn_watch_t;

/* What the channel's sink wrote, for the line. */
typedef struct sb_turn_written {
    int status;       /* the HTTP status (101 for a socket's turn); 0: none was sent */
    uint64_t t_first; /* uv_hrtime() of the first byte out, 0 before */
    size_t bytes;
    const char *model; /* the model that answered, "" when none did */
} sb_turn_written_t;

/*
 * Sets `tw` up for the turn of `creq` on worker `w`, heard on `route`, and
 * returns the first observer to give sb_turn_start.
 */
sb_sink_t *sb_turn_watch_start(sb_turn_watch_t *tw, sb_worker_t *w, const sb_chat_request_t *creq, const char *route);
/* Before the turn is released: keeps what the line reports of it. */
void sb_turn_watch_forget(sb_turn_watch_t *tw, sb_turn_t *turn);
/* Writes the access-log line (once) and counts the request and the turn. */
void sb_turn_watch_log(sb_turn_watch_t *tw, const sb_turn_written_t *written);
/* Lets go of the event log's record (a turn that never reached done is not stored). */
void sb_turn_watch_dispose(sb_turn_watch_t *tw);

#endif
