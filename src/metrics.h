/*
 * Prometheus metrics. Each worker counts into its own shard, which only its
 * thread writes (plain single-writer stores, no locks, no atomic
 * read-modify-write on the hot path); a scrape, on any thread, reads every
 * shard and sums them. Label sets are kept per shard in small fixed tables:
 * when a table is full, new label sets count under one "other" series, so a
 * stream of new model names cannot grow the output without bound.
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sink.h"

typedef struct sb_metrics sb_metrics_t;

/* The process's metrics: one shard per worker, all zero. Freed with sb_metrics_destroy. */
sb_metrics_t *sb_metrics_create(unsigned nshards);
void sb_metrics_destroy(sb_metrics_t *m);
/*
 * Binds the calling thread to shard `shard`: the counting functions below
 * count there. On a thread never bound (the main thread, the ingest tool)
 * they do nothing, and so does everything with `m` NULL (METRICS=false).
 */
void sb_metrics_bind(sb_metrics_t *m, unsigned shard);
/*
 * Appends the text exposition format (version 0.0.4) of every shard, summed,
 * to `out`. Returns 0, or -1 when `out`'s ceiling was reached (the text is
 * cut). Any thread, while the workers count.
 */
int sb_metrics_render(sb_metrics_t *m, sb_buf_t *out);

/* --- counting, on the bound thread ------------------------------------------------------------- */

/* A request on a turn's route ended: its route, HTTP status (499: the client left first) and how it ended. */
void sb_metrics_request(const char *route, int status, const char *end);
/* The provider call failed and is tried again. */
void sb_metrics_provider_retry(const char *provider);
/* A connection to the provider was opened (+1) or closed (-1). */
void sb_metrics_provider_connection(int delta);
/* The worker's Postgres pool now: connections open, leased, and requests waiting for one. */
void sb_metrics_pool(unsigned open, unsigned busy, unsigned waiting);

/* Turns whose record the event log could not write (queue full, database away), and the events they held. */
void sb_metrics_events_dropped(unsigned turns, unsigned events);

/*
 * A turn's metrics: an observer (sink.h) of one turn, embedded by the channel
 * that runs it. It counts the turn as open from start until finish, the
 * time to its first words, its duration, tokens, the tools it ran (and each
 * round's time) and its retrieval, under the provider and the model that
 * answered.
 */
typedef struct sb_metrics_turn {
    sb_sink_t super;
    const char *provider;               /* static */
    const char *backend;                /* retrieval backend, static */
    uint64_t t_start, t_first, t_round; /* uv_hrtime() */
    int series;                         /* the (provider, model) series, -1 before the model is known */
    unsigned tools_running;
    int started, finished;
} sb_metrics_turn_t;

/* Starts observing a turn about to start; pass &m->super to the turn as an observer. */
void sb_metrics_turn_start(sb_metrics_turn_t *m, const char *provider, const char *backend);
/* The turn is over (its done event, or the caller left first): counted once, later calls do nothing. */
void sb_metrics_turn_finish(sb_metrics_turn_t *m);

#endif
