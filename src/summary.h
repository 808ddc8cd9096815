/*
 * Post-call summaries: when a conversation closes (SESSION_IDLE_S of silence,
 * or Agora's end-of-call webhook), a short turn of the routed provider reads
 * its last messages and writes two to four sentences (what the caller wanted,
 * what was done, what is open) over the extract the close stored. Never on a
 * request's path; at most a few at once per worker.
 */
#ifndef SB_SUMMARY_H
#define SB_SUMMARY_H

#include "turn.h"

typedef struct sb_summaries sb_summaries_t;

/*
 * The worker's summary writer, running turns on `env` (copied; what it points
 * to is borrowed and outlives it). NULL when SUMMARIES is off or there is no
 * database.
 */
sb_summaries_t *sb_summaries_create(const sb_turn_env_t *env);
/* Stops the summaries in flight (their conversations keep the extract) and frees `s` once its handles are closed. */
void sb_summaries_destroy(sb_summaries_t *s);
/*
 * Starts the summary of the closed conversation whose id is `conversation`
 * (decimal text, copied). Returns 0 when it started or there is nothing to do
 * (`s` NULL), -1 when SUMMARIES_AT_ONCE (4) already run on this worker:
 * the conversation keeps its extract, and the caller logs it. May be called
 * from a callback; the work begins from the loop. A failure later is logged and
 * leaves the extract.
 */
int sb_summaries_start(sb_summaries_t *s, const char *conversation);

#endif
