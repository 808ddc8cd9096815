/*
 * Knowledge retrieval for a turn: the caller's question goes to the configured
 * backend within a time budget, and the best passages come back to be handed
 * to the model as fenced reference material. A slow or broken store never
 * silences the caller: the turn goes on without context.
 */
#ifndef SB_RAG_H
#define SB_RAG_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/pgpool.h"

typedef struct sb_passage {
    const char *source;  /* the document it came from ("refunds.md") */
    const char *heading; /* its section, "" when none */
    const char *text;
    double score;
} sb_passage_t;

typedef struct sb_rag_query sb_rag_query_t;

/*
 * The outcome: passages (borrowed, valid during the call; best first, duplicates
 * and what exceeds the context ceiling dropped) and what happened: "hit",
 * "miss" (nothing matched), "timeout" (past RAG_TIMEOUT_MS) or "error" (the
 * store failed). Called exactly once, never from inside sb_rag_start.
 */
typedef void (*sb_rag_done_cb)(void *data, const sb_passage_t *passages, size_t n, const char *outcome);

/* Checks the retrieval settings at start-up (RAG_BACKEND and the backend's own); 0, or -1 with err. */
int sb_rag_check(const sb_config_t *config, char *err, size_t errlen);
/* Whether retrieval is configured at all (RAG_BACKEND, or DATABASE_URL for the postgres default). */
int sb_rag_enabled(const sb_config_t *config);
/* The configured backend's name ("postgres", "chroma", ...), or "none"; static. */
const char *sb_rag_backend_name(const sb_config_t *config);
/*
 * Starts retrieval for `question` (copied) on the worker's loop, with its pool
 * (NULL without DATABASE_URL) and curl multi (embeddings, vector stores).
 * Returns a handle for sb_rag_cancel.
 */
sb_rag_query_t *sb_rag_start(const sb_config_t *config, sb_pgpool_t *pg, sb_curlm_t *curlm, uv_loop_t *loop, const char *question,
                             sb_rag_done_cb done, void *data);
/* Forgets the query: done() will not run. */
void sb_rag_cancel(sb_rag_query_t *q);
/*
 * The system message that carries `n` passages to the model: numbered, with
 * their sources, inside a fence, and marked as reference material whose
 * instructions are not to be followed. New reference.
 */
json_t *sb_rag_context_message(const sb_passage_t *passages, size_t n);

#endif
