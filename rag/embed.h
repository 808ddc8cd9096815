/*
 * Embeddings for the vector stores, and the small JSON-over-HTTP call they
 * share with the embedding call. Everything runs on the worker's curl multi
 * and never blocks the loop; no function here calls back from inside its start
 * call, so an owner never hears of the result before it holds the handle.
 */
#ifndef SB_RAG_EMBED_H
#define SB_RAG_EMBED_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

#include "sb/buf.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/error.h"
#include "sb/json.h"
#include "backend.h"

/* The largest embedding accepted from a provider (text-embedding-3-large has 3072). */
#define SB_EMBED_MAX_DIM 8192

/* --- JSON over HTTP ------------------------------------------------------------------------------ */

typedef struct sb_rag_http sb_rag_http_t;

/*
 * How a POST ended: curl's code (CURLE_OK when a whole response arrived, even an
 * error status), the HTTP status (0 without a response) and the response body,
 * `len` bytes and a NUL ("" without one; CURLE_WRITE_ERROR past the size limit).
 * The body is the callee's to change in place (sb_json_parse decodes there)
 * until it returns. Called exactly once unless cancelled, always from the loop.
 */
typedef void (*sb_rag_http_cb)(void *data, CURLcode result, long status, char *body, size_t len);

/*
 * POSTs the JSON `body` (`len` bytes, taken: freed with free()) to `url`.
 * `headers` is taken, Content-Type is added; `timeout_ms` bounds the whole transfer.
 */
sb_rag_http_t *sb_rag_http_post(sb_curlm_t *m, const char *url, struct curl_slist *headers, char *body, size_t len,
                                unsigned timeout_ms, sb_rag_http_cb done, void *data);
/* Forgets the call: done() will not run. */
void sb_rag_http_cancel(sb_rag_http_t *h);
/* Maps a store call that did not succeed (transport failure, non-2xx status, no JSON) to switchboard's errors. */
sb_error_t sb_rag_store_error(CURLcode result, long status);

/* A store's answer read into rows: passages that point into the parsed body, best first. */
typedef struct sb_rag_answer {
    sb_passage_t rows[SB_RAG_MAX_ROWS];
    size_t n;
    char ids[SB_RAG_MAX_ROWS][32]; /* numeric ids written out, for rows whose source is their id */
} sb_rag_answer_t;

/* Reads a store's 2xx JSON answer into rows; -1 when the body has the wrong shape. Stops at SB_RAG_MAX_ROWS. */
typedef int (*sb_rag_rows_from_fn)(const sb_json_value_t *root, sb_rag_answer_t *out);

/*
 * A vector store's search: POSTs the JSON `body` (`len` bytes, taken) with
 * `headers` (taken) to `url`, and answers done() once with the rows
 * `rows_from` reads out of a 2xx answer, else the store's error. Curl's own
 * limit is the retrieval budget plus a second: the budget decides when
 * retrieval gives up, curl's limit only keeps a lost transfer from living on.
 * The search belongs to `backend`, whose cancel is sb_rag_store_cancel.
 */
sb_rag_search_t *sb_rag_store_query(const sb_rag_env_t *env, const sb_rag_backend_t *backend, const char *url,
                                    struct curl_slist *headers, char *body, size_t len, sb_rag_rows_from_fn rows_from,
                                    sb_rag_rows_cb done, void *data);
void sb_rag_store_cancel(sb_rag_search_t *search);
/* Appends `s` to `out` with everything but unreserved characters (RFC 3986) percent-encoded; -1 past the ceiling. */
int sb_rag_append_escaped(sb_buf_t *out, const char *s);

/* --- embeddings ---------------------------------------------------------------------------------- */

typedef struct sb_embed sb_embed_t;

/* The embedding (borrowed for the call), or NULL/0 with err set. Called exactly once unless cancelled. */
typedef void (*sb_embed_cb)(void *data, const float *vec, size_t dim, sb_error_t err);

/* Checks the embedding settings at start-up for a backend that needs them; 0, or -1 with err naming the variable. */
int sb_embed_check(const sb_config_t *config, char *err, size_t errlen);
/*
 * Embeds `text` (copied) with POST {EMBEDDING_BASE_URL}/embeddings, or answers
 * from this thread's cache, keyed by the normalized text. Either way done()
 * runs from the loop, never from inside this call.
 */
sb_embed_t *sb_embed_start(const sb_config_t *config, sb_curlm_t *m, const char *text, sb_embed_cb done, void *data);
/* Forgets the embedding: done() will not run. */
void sb_embed_cancel(sb_embed_t *e);
/*
 * Decodes an embedding sent as base64 (encoding_format "base64": the standard
 * alphabet, padded, of little-endian float32s) into `out`. Strict: canonical
 * base64 only, whole floats, all finite, at most `max_dim`. The dimension, or 0.
 */
size_t sb_embed_decode_base64(const char *s, size_t len, float *out, size_t max_dim);
/* The cache key: ASCII letters lowercased, whitespace runs made one space, trimmed; cut to fit `cap` (with the NUL). */
size_t sb_embed_normalize(const char *text, char *out, size_t cap);

#endif
