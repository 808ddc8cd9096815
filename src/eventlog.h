/*
 * The event log and the writing of turns. An observer of each turn (sink.h)
 * collects, in memory and bounded, what happened (the caller's words, tool
 * calls and results, retrieval, routing, the answer or the error) and the
 * turn's messages; at done it hands them to its worker's bounded queue, and
 * a writer on the worker's loop stores queued turns in batches, one
 * statement per batch (a turn lands whole or not at all). Nothing here is on
 * a stream's path: a full queue or an absent database drops the turn's
 * record, counted (switchboard_events_dropped_total) and logged at most once
 * a minute. Loop thread only.
 */
#ifndef SB_EVENTLOG_H
#define SB_EVENTLOG_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "request.h"
#include "sb/config.h"
#include "sb/pgpool.h"
#include "sink.h"

typedef struct sb_eventlog sb_eventlog_t;

/* Told that what was queued before it is written (`written` 1), or that the log stopped first (0: let go of `data`). */
typedef void (*sb_eventlog_after_cb)(void *data, int written);

/* The worker's queue and writer on `pg` (borrowed). NULL when there is no pool, or neither MEMORY nor EVENT_LOG is on. */
sb_eventlog_t *sb_eventlog_create(uv_loop_t *loop, sb_pgpool_t *pg, const sb_config_t *config);
/* Drops what is queued (counted) and stops; a batch in flight lands or not on its own. */
void sb_eventlog_destroy(sb_eventlog_t *log);
/*
 * Calls `after` once every turn queued on `log` so far has been written or
 * dropped, so that what follows (a conversation's close) lands after them;
 * at once when nothing is queued or `log` is NULL (maybe from inside this call).
 */
void sb_eventlog_after(sb_eventlog_t *log, sb_eventlog_after_cb after, void *data);

/* One turn's observer, embedded by the exchange that runs the turn. */
typedef struct sb_eventlog_turn {
    sb_sink_t super;
    sb_eventlog_t *log; /* NULL: observes nothing, writes nothing */
    json_t *record;     /* the turn's row: conversation, messages, events */
    json_t *messages, *events, *round_calls;
    char *answer; /* what the caller heard, bounded */
    size_t answer_len, answer_cap;
    size_t bytes;     /* an estimate of what the record holds, against its ceiling */
    unsigned dropped; /* events past the turn's ceiling */
    int ok;           /* the turn ended with its answer */
} sb_eventlog_turn_t;

/*
 * Starts observing the turn about to start for `r` (borrowed for this call
 * only: what the record needs is copied): its conversation, its caller and
 * its new messages. Does nothing when `log` is NULL or nothing names the
 * conversation (r->memory_key ""). Pass &t->super to the turn as an observer.
 */
void sb_eventlog_turn_start(sb_eventlog_turn_t *t, sb_eventlog_t *log, const sb_chat_request_t *r);
/* The turn ended without done (the caller left): what was collected is let go. Safe after done too. */
void sb_eventlog_turn_dispose(sb_eventlog_turn_t *t);

/*
 * Adds an event of `kind` (a short word, copied) with `data` (an object,
 * taken; NULL: {}) to the turn's log, timed now. Past the turn's ceiling the
 * event is counted as dropped. For events the turn core does not emit itself
 * (routing, agent switches). Safe on a turn that observes nothing.
 */
void sb_eventlog_add(sb_eventlog_turn_t *t, const char *kind, json_t *data);

/* A routing decision, as the agent router reports it. Strings borrowed for the call; NULL when not known. */
typedef struct sb_eventlog_route {
    const char *agent;    /* the agent that answers */
    const char *previous; /* the agent before it in this conversation */
    const char *how;      /* explicit, classifier, sticky, default, router */
    const char *strategy; /* the turn's response strategy */
    double score;         /* the classifier's score for the agent; < 0: none */
    const char *router;   /* the LLM router's outcome when it was asked (chosen, timeout, error, unusable); NULL: not asked */
    double router_ms;     /* and how long it took */
} sb_eventlog_route_t;

/* Logs a routing decision (kind "routing", and "agent_switch" when the agent changed) and names the turn's agent. */
void sb_eventlog_routing(sb_eventlog_turn_t *t, const sb_eventlog_route_t *route);

#endif
