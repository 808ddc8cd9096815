/*
 * A per-worker pool of Postgres connections on libpq's non-blocking API,
 * driven by the worker's libuv loop (one uv_poll_t per connection socket).
 * Every entry point must be called on the loop's thread. Statements are
 * always parameterized; one statement is one implicit transaction.
 */
#ifndef SB_PGPOOL_H
#define SB_PGPOOL_H

#include <libpq-fe.h>
#include <uv.h>

#include "sb/error.h"

typedef struct sb_pgpool sb_pgpool_t;
typedef struct sb_pgquery sb_pgquery_t;

typedef struct sb_pgpool_config {
    const char *conninfo;          /* DATABASE_URL (a URI or key=value string); borrowed, must outlive the pool */
    unsigned size;                 /* most connections this pool opens */
    unsigned statement_timeout_ms; /* sent as statement_timeout on every connection; 0 = none */
    unsigned connect_timeout_ms;   /* a connection attempt that takes longer fails */
    unsigned queue_timeout_ms;     /* a query waiting this long for a free connection fails with DB_UNAVAILABLE */
    unsigned max_queue;            /* queries waiting for a connection beyond this fail at once */
    int prepare;                   /* send statements as named prepared statements of each connection (parsed and planned once) */
} sb_pgpool_config_t;

/*
 * The outcome of a query. `res` is borrowed (cleared after the callback
 * returns) and non-NULL only when err is SB_OK (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK). On failure: SB_E_DB_UNAVAILABLE (no connection, or it
 * broke), SB_E_DB_TIMEOUT (statement_timeout, SQLSTATE 57014), SB_E_DB_CONFLICT
 * (unique/foreign-key/check violations, class 23), SB_E_DB_ERROR (anything
 * else); `sqlstate` is the five-character code when the server sent one, else "".
 * Never called from inside sb_pgpool_query.
 */
typedef void (*sb_pgquery_cb)(void *data, const PGresult *res, sb_error_t err, const char *sqlstate);

/*
 * Creates the pool. Connections open lazily; a down server is retried with
 * backoff. Never fails. A host name in the conninfo is resolved here, with a
 * blocking lookup (call it before the loop serves anything), and afterwards
 * only in the background, after a failed attempt, so connecting never blocks
 * the loop.
 */
sb_pgpool_t *sb_pgpool_create(uv_loop_t *loop, const sb_pgpool_config_t *config);
/* Closes every connection; queued queries are dropped without their callbacks. Handles close asynchronously. */
void sb_pgpool_destroy(sb_pgpool_t *pool);
/*
 * Queues `sql` with `nparams` text parameters (values copied; NULL = SQL NULL).
 * With config.prepare, the first 64 distinct statement texts a pool sees are
 * prepared on each connection at their first use there and only executed
 * afterwards, so `sql` should be one of a caller's fixed statements, never
 * text that varies per call (values go in parameters anyway). Returns a
 * handle for sb_pgquery_cancel; the callback runs exactly once unless
 * cancelled first.
 */
sb_pgquery_t *sb_pgpool_query(sb_pgpool_t *pool, const char *sql, int nparams, const char *const *values, sb_pgquery_cb cb,
                              void *data);
/*
 * Forgets a query whose caller is gone (the client hung up): its callback will
 * not run. A query already sent runs to completion (a statement is atomic:
 * its write lands whole or not at all) and its connection returns to the pool.
 * Safe inside any callback, including this query's own.
 */
void sb_pgquery_cancel(sb_pgquery_t *q);

typedef struct sb_pgpool_stats {
    unsigned open;   /* connections established */
    unsigned busy;   /* running a query */
    unsigned queued; /* queries waiting for a connection */
    int healthy;     /* the last connection attempt or query reached the server */
} sb_pgpool_stats_t;

void sb_pgpool_stats(const sb_pgpool_t *pool, sb_pgpool_stats_t *out);

#endif
