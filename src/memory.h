/*
 * Conversation memory: what a turn recalls of its stored conversation before
 * it asks the provider (the history a client did not send, a summary of what
 * the engine dropped, the caller's earlier calls), and the upkeep of the
 * stored conversations (closing idle ones, purging old ones). Turns are
 * written by the event log's writer (eventlog.h). One per worker, on its loop.
 */
#ifndef SB_MEMORY_H
#define SB_MEMORY_H

#include <uv.h>

#include "request.h"
#include "sb/config.h"
#include "sb/pgpool.h"

/*
 * The summary a conversation gets when it closes without a model-written one:
 * an SQL expression, an extract of the last eight messages with words of the
 * conversation whose id is the SQL expression `conv` ("Caller: ..." and
 * "Assistant: ..." lines, each cut to 200 characters; NULL when there are
 * none). The idle close and the Agora webhook's close both write it.
 */
#define SB_MEMORY_EXTRACT_SQL(conv)                                                                                                \
    "(SELECT string_agg(CASE x.role WHEN 'user' THEN 'Caller: ' ELSE 'Assistant: ' END || left(x.content, 200), E'\\n' "           \
    "ORDER BY x.seq) FROM (SELECT role, content, seq FROM messages m WHERE m.conversation = " conv " AND m.role <> 'tool' "        \
    "AND m.content IS NOT NULL ORDER BY seq DESC LIMIT 8) x)"

typedef struct sb_memory sb_memory_t;
typedef struct sb_memory_load sb_memory_load_t;

/*
 * The worker's memory on `pg` (borrowed, outlives it). NULL when MEMORY is
 * off or there is no pool. With `upkeep`, this worker also closes idle
 * conversations (SESSION_IDLE_S) and purges old ones (MEMORY_RETENTION_DAYS)
 * on a timer: one worker does it, one bounded statement at a time. Each
 * conversation it closes (its id, a decimal string) is told to `closed`
 * (may be NULL), which returns 0, or non-zero when the conversation keeps
 * its extract summary (the worker has it summarised: summary.c).
 */
typedef int (*sb_memory_closed_cb)(void *data, const char *conversation_id);
sb_memory_t *sb_memory_create(uv_loop_t *loop, sb_pgpool_t *pg, const sb_config_t *config, int upkeep, sb_memory_closed_cb closed,
                              void *data);
void sb_memory_destroy(sb_memory_t *m);

/*
 * Heard once a load is over: outcome is "hit" (something was added to the
 * request), "miss", "timeout" (MEMORY_TIMEOUT_MS passed) or "error". The
 * turn goes on whatever it is.
 */
typedef void (*sb_memory_loaded_cb)(void *data, const char *outcome);

/*
 * Loads what `r` (borrowed until the callback or a cancel) should recall of
 * its conversation (r->memory_key) with one indexed query, and adds it to
 * r's messages before calling `cb` (from the loop, never from inside this
 * call). It also sets r->stored_agent to the agent of the conversation's
 * last stored turn, unless the client sent more of the conversation than is
 * stored (a turn not written yet: the stored agent would be an older one's). NULL when there is nothing to load (no memory, no
 * conversation): the callback will not run.
 */
sb_memory_load_t *sb_memory_load_start(sb_memory_t *m, sb_chat_request_t *r, sb_memory_loaded_cb cb, void *data);
/* Forgets a load: its callback will not run. */
void sb_memory_load_cancel(sb_memory_load_t *l);

/*
 * Closes the stored conversation whose key is `key` now, as the idle close
 * does (extract summary, a session_end event with `reason`), and hands its id
 * to the `closed` callback for its summary. Nothing when `m` is NULL or the
 * conversation is closed or unknown. Fire and forget: failures are logged.
 */
void sb_memory_close(sb_memory_t *m, const char *key, const char *reason);

#endif
