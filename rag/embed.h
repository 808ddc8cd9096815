/*
 * Embeddings for the vector stores. Everything runs on the worker's curl multi
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
#include "sb/fetch.h"
#include "sb/json.h"
#include "backend.h"

/* The largest embedding accepted from a provider (text-embedding-3-large has 3072). */
#define SB_EMBED_MAX_DIM 8192

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
