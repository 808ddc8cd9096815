/*
 * The retrieval backend interface. A backend turns a question (and, for
 * vector stores, its embedding) into rows of passages; the orchestration in
 * retrieve.c owns the budget, filtering and the context message. A concrete
 * search embeds sb_rag_search_t as its first member named `super`.
 */
#ifndef SB_RAG_BACKEND_H
#define SB_RAG_BACKEND_H

#include <uv.h>

#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/error.h"
#include "sb/pgpool.h"
#include "sb/rag.h"

/* What a backend may use: the worker's loop, pool and curl multi. Borrowed. */
typedef struct sb_rag_env {
    const sb_config_t *config;
    uv_loop_t *loop;
    sb_pgpool_t *pg;
    sb_curlm_t *curlm;
} sb_rag_env_t;

typedef struct sb_rag_search {
    const struct sb_rag_backend *backend;
} sb_rag_search_t;

/* The most rows a backend hands over, above the most asked for (twice RAG_TOP_K's 20); a store's further rows are dropped. */
#define SB_RAG_MAX_ROWS 64

/*
 * The backend's answer: `n` passages, best first, higher scores better (a
 * store that returns distances converts them); borrowed for the call, strings
 * never NULL. None with `err` set on failure. Called once, never from inside
 * search(); the search is freed by then.
 */
typedef void (*sb_rag_rows_cb)(void *data, const sb_passage_t *rows, size_t n, sb_error_t err);

typedef struct sb_rag_backend {
    const char *name;    /* the RAG_BACKEND value */
    int needs_embedding; /* search() wants the question's embedding */
    /* Checks the backend's settings at start-up; 0, or -1 with a message naming the variable. */
    int (*check)(const sb_config_t *config, char *err, size_t errlen);
    /* Starts a search for the `k` best passages. `vec`/`dim` are NULL/0 for text backends. */
    sb_rag_search_t *(*search)(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data);
    /* Forgets a search: done() will not run. */
    void (*cancel)(sb_rag_search_t *search);
} sb_rag_backend_t;

extern const sb_rag_backend_t sb_rag_postgres;

#endif
