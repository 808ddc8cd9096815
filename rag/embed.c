/*
 * Embeddings for retrieval: an OpenAI-compatible POST {EMBEDDING_BASE_URL}/embeddings
 * on the worker's curl multi (sb/fetch.h), with a small per-thread cache in
 * front so that a caller who repeats a question costs no second round trip.
 */
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "embed.h"
#include "sb/alloc.h"
#include "sb/buf.h"

/* Responses are small (a vector, or k passages); anything bigger is a misbehaving server. */
#define MAX_RESPONSE_BYTES (4u << 20)
#define MAX_KEY 1024

static void on_handle_closed(uv_handle_t *h)
{
    free(h);
}

/* A zero-delay timer: how a result known at start time still reaches its owner from the loop. */
static uv_timer_t *defer(uv_loop_t *loop, uv_timer_cb cb, void *data)
{
    uv_timer_t *t = sb_alloc(sizeof(*t));
    uv_timer_init(loop, t);
    t->data = data;
    uv_timer_start(t, cb, 0, 0);
    return t;
}

/* --- the cache ----------------------------------------------------------------------------------- */

/*
 * One cache per worker thread, so no locking: the entries are looked up by a
 * hash and evicted by the clock algorithm (an entry used since the hand last
 * passed gets a second chance). A thread-specific key frees it when the worker
 * thread exits.
 */
struct entry {
    uint64_t hash;
    char *key;
    float *vec;
    size_t dim;
    int used;
};

struct cache {
    struct entry *entries;
    size_t n, cap, hand;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *p)
{
    struct cache *c = p;
    for (size_t i = 0; i < c->n; ++i) {
        free(c->entries[i].key);
        free(c->entries[i].vec);
    }
    free(c->entries);
    free(c);
}

static void cache_key_create(void)
{
    if (pthread_key_create(&cache_key, cache_free) != 0)
        h2o_fatal("pthread_key_create failed");
}

/* This thread's cache, or NULL when EMBEDDING_CACHE_ENTRIES is 0. */
static struct cache *cache_get(const sb_config_t *config)
{
    if (config->embedding_cache_entries == 0)
        return NULL;
    pthread_once(&cache_once, cache_key_create);
    struct cache *c = pthread_getspecific(cache_key);
    if (c == NULL) {
        c = sb_calloc(1, sizeof(*c));
        c->entries = sb_calloc(config->embedding_cache_entries, sizeof(*c->entries));
        c->cap = config->embedding_cache_entries;
        pthread_setspecific(cache_key, c);
    }
    return c;
}

static uint64_t hash_key(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *s != '\0'; ++s)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct entry *cache_find(struct cache *c, const char *key)
{
    uint64_t h = hash_key(key);
    for (size_t i = 0; i < c->n; ++i)
        if (c->entries[i].hash == h && strcmp(c->entries[i].key, key) == 0) {
            c->entries[i].used = 1;
            return &c->entries[i];
        }
    return NULL;
}

static void cache_put(struct cache *c, const char *key, const float *vec, size_t dim)
{
    if (cache_find(c, key) != NULL) /* two turns asked at once; the first answer stays */
        return;
    struct entry *e;
    if (c->n < c->cap) {
        e = &c->entries[c->n++];
    } else {
        while (c->entries[c->hand].used) {
            c->entries[c->hand].used = 0;
            c->hand = (c->hand + 1) % c->cap;
        }
        e = &c->entries[c->hand];
        c->hand = (c->hand + 1) % c->cap;
        free(e->key);
        free(e->vec);
    }
    e->hash = hash_key(key);
    e->key = sb_strdup(key);
    e->vec = sb_calloc(dim, sizeof(float));
    memcpy(e->vec, vec, dim * sizeof(float));
    e->dim = dim;
    e->used = 0;
}

size_t sb_embed_normalize(const char *text, char *out, size_t cap)
{
    size_t n = 0;
    int space = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0' && cap > 0; ++p) {
        if (isspace(*p)) {
            space = n > 0;
            continue;
        }
        if (n + space + 1 >= cap)
            break;
        if (space)
            out[n++] = ' ';
        space = 0;
        out[n++] = (char)tolower(*p);
    }
    /* a cut must not leave half a UTF-8 sequence in the key */
    if (*text != '\0' && n + 1 >= cap)
        while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80)
            --n;
    if (cap > 0)
        out[n] = '\0';
    return n;
}

/* --- embeddings ---------------------------------------------------------------------------------- */

struct sb_embed {
    const sb_config_t *config;
    sb_fetch_t *http;
    uv_timer_t *early; /* a cached vector or a failure known at start, delivered from the loop */
    float *vec;
    size_t dim;
    sb_error_t err;
    sb_embed_cb done;
    void *data;
    char key[MAX_KEY];
};

static const char *base_url(const sb_config_t *c)
{
    return c->embedding_base_url != NULL ? c->embedding_base_url : c->llm_base_url;
}

static const char *api_key(const sb_config_t *c)
{
    return c->embedding_api_key != NULL ? c->embedding_api_key : c->llm_api_key;
}

int sb_embed_check(const sb_config_t *c, char *err, size_t errlen)
{
    const char *url = base_url(c);
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "EMBEDDING_BASE_URL must start with http:// or https://");
        return -1;
    }
    /* as for the model: a keyless local server is fine, the default OpenAI URL without a key is not */
    if (api_key(c) == NULL && c->embedding_base_url == NULL && c->sandbox) {
        snprintf(err, errlen, "RAG_BACKEND=%s needs embeddings: set EMBEDDING_API_KEY or OPENAI_API_KEY (or EMBEDDING_BASE_URL)",
                 c->rag_backend);
        return -1;
    }
    const char *key = api_key(c);
    for (const char *p = key; p != NULL && *p != '\0'; ++p)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || p - key >= 4096) {
            snprintf(err, errlen, "%s must be at most 4096 characters, none of them control characters",
                     c->embedding_api_key != NULL ? "EMBEDDING_API_KEY" : "OPENAI_API_KEY");
            return -1;
        }
    if (strlen(url) > 2048) {
        snprintf(err, errlen, "EMBEDDING_BASE_URL is longer than 2048 characters");
        return -1;
    }
    if (strlen(c->embedding_model) > 256) {
        snprintf(err, errlen, "OPENAI_EMBEDDING_MODEL is longer than 256 characters");
        return -1;
    }
    return 0;
}

static void embed_free(sb_embed_t *e)
{
    if (e->early != NULL)
        uv_close((uv_handle_t *)e->early, on_handle_closed);
    free(e->vec);
    free(e);
}

static void on_early(uv_timer_t *t)
{
    sb_embed_t *e = t->data;
    e->done(e->data, e->vec, e->dim, e->err);
    embed_free(e);
}

/*
 * The standard base64 alphabet's values; 255 for every other byte. A table
 * rather than libsodium's sodium_base642bin: that one is written for secrets
 * and runs in constant time, about ten times slower (48 µs against 5 for a
 * 1536-dimension embedding, on every retrieval), and an embedding is public.
 */
static const unsigned char base64_values[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 62,  255, 255, 255, 63,
    52,  53,  54,  55,  56,  57,  58,  59,  60,  61,  255, 255, 255, 255, 255, 255, 255, 0,   1,   2,   3,   4,   5,   6,
    7,   8,   9,   10,  11,  12,  13,  14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25,  255, 255, 255, 255, 255,
    255, 26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,  41,  42,  43,  44,  45,  46,  47,  48,
    49,  50,  51,  255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

size_t sb_embed_decode_base64(const char *s, size_t len, float *out, size_t max_dim)
{
    size_t pad = len >= 2 && s[len - 1] == '=' ? 1 + (s[len - 2] == '=') : 0;
    size_t bytes = len / 4 * 3 - pad;
    if (len == 0 || len % 4 != 0 || bytes % 4 != 0 || bytes / 4 > max_dim)
        return 0;
    const unsigned char *in = (const unsigned char *)s;
    unsigned char *b = (unsigned char *)out; /* decoded where the floats go, then put together in place */
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned v0 = base64_values[in[i]], v1 = base64_values[in[i + 1]];
        unsigned v2 = i + 4 == len && pad == 2 ? 0 : base64_values[in[i + 2]];
        unsigned v3 = i + 4 == len && pad >= 1 ? 0 : base64_values[in[i + 3]];
        if ((v0 | v1 | v2 | v3) & 0x80) /* not in the alphabet, or '=' before the end */
            return 0;
        uint32_t quad = v0 << 18 | v1 << 12 | v2 << 6 | v3;
        if (i + 4 == len && pad > 0 &&
            (quad & (0xFFFFu >> (8 * (2 - pad)))) != 0) /* the padded bits must be 0: one spelling only */
            return 0;
        b[o++] = (unsigned char)(quad >> 16);
        if (o < bytes)
            b[o++] = (unsigned char)(quad >> 8);
        if (o < bytes)
            b[o++] = (unsigned char)quad;
    }
    for (size_t i = 0; i < bytes / 4; ++i) { /* little-endian float32s, whatever this machine's order */
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        memcpy(&out[i], &u, sizeof(u));
        if (!isfinite(out[i]))
            return 0;
    }
    return bytes / 4;
}

/*
 * Reads data[0].embedding: 1..SB_EMBED_MAX_DIM floats, as the base64 asked
 * for, or as the array of numbers a server that ignores encoding_format sends
 * (finite, within a float's range). Returns 0, or -1.
 */
static int parse_embedding(char *body, size_t len, sb_embed_t *e)
{
    sb_json_doc_t doc = {0};
    int rc = -1;
    if (sb_json_parse(&doc, body, len, SB_EMBED_MAX_DIM + 256) != 0)
        return -1;
    const sb_json_value_t *emb = sb_json_get(sb_json_at(sb_json_get(sb_json_root(&doc), "data"), 0), "embedding");
    size_t cap = sb_json_is(emb, SB_JSON_STRING) ? emb->len / 4 * 3 / 4 : sb_json_is(emb, SB_JSON_ARRAY) ? emb->len : 0;
    if (cap == 0 || cap > SB_EMBED_MAX_DIM) {
        sb_json_doc_dispose(&doc);
        return -1;
    }
    e->vec = sb_alloc(cap * sizeof(float));
    if (sb_json_is(emb, SB_JSON_STRING)) {
        e->dim = sb_embed_decode_base64(emb->str, emb->len, e->vec, cap);
        rc = e->dim > 0 ? 0 : -1;
    } else {
        size_t i;
        const sb_json_value_t *v;
        rc = 0;
        sb_json_array_foreach(emb, i, v)
        {
            double d = sb_json_number(v);
            if (!sb_json_is(v, SB_JSON_NUMBER) || fabs(d) > FLT_MAX) /* the reader lets only finite numbers through */
                rc = -1;
            e->vec[i] = (float)d;
        }
        e->dim = emb->len;
    }
    sb_json_doc_dispose(&doc);
    return rc;
}

static void on_embedded(void *data, CURLcode result, long status, char *body, size_t len)
{
    sb_embed_t *e = data;
    e->http = NULL;
    sb_error_t err = SB_OK;
    if (result == CURLE_OPERATION_TIMEDOUT)
        err = SB_E_UPSTREAM_TIMEOUT;
    else if (result == CURLE_WRITE_ERROR)
        err = SB_E_UPSTREAM_TOO_LARGE;
    else if (result != CURLE_OK)
        err = SB_E_UPSTREAM_UNAVAILABLE;
    else if (status != 200)
        err = sb_error_for_provider_status(status);
    else if (parse_embedding(body, len, e) != 0)
        err = SB_E_UPSTREAM_BAD_RESPONSE;
    if (err == SB_OK) {
        struct cache *c = cache_get(e->config);
        if (c != NULL)
            cache_put(c, e->key, e->vec, e->dim);
    }
    e->done(e->data, err == SB_OK ? e->vec : NULL, err == SB_OK ? e->dim : 0, err);
    embed_free(e);
}

sb_embed_t *sb_embed_start(const sb_config_t *config, sb_curlm_t *m, const char *text, sb_embed_cb done, void *data)
{
    sb_embed_t *e = sb_calloc(1, sizeof(*e));
    e->config = config;
    e->done = done;
    e->data = data;
    sb_embed_normalize(text, e->key, sizeof(e->key));
    struct cache *c = cache_get(config);
    struct entry *hit = c != NULL ? cache_find(c, e->key) : NULL;
    if (hit != NULL) {
        /* a copy: another turn's answer may evict the entry before the timer runs */
        e->vec = sb_alloc(hit->dim * sizeof(float));
        memcpy(e->vec, hit->vec, hit->dim * sizeof(float));
        e->dim = hit->dim;
        e->early = defer(sb_curlm_loop(m), on_early, e);
        return e;
    }
    sb_buf_t url;
    sb_buf_init(&url, 4096);
    const char *base = base_url(config);
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        --blen;
    sb_buf_append(&url, base, blen);
    sb_buf_appendz(&url, "/embeddings");
    struct curl_slist *headers = NULL;
    const char *key = api_key(config);
    if (key != NULL) {
        sb_buf_t auth;
        sb_buf_init(&auth, 8192);
        if (sb_buf_appendf(&auth, "Authorization: Bearer %s", key) == 0)
            headers = curl_slist_append(NULL, auth.base);
        sb_buf_dispose(&auth);
    }
    /* base64, as the official OpenAI clients ask: a third of the bytes, and decoding it costs far less than strtod */
    json_t *body = json_pack("{s:s, s:s, s:s}", "model", config->embedding_model, "input", text, "encoding_format", "base64");
    char *payload = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (payload == NULL || url.len == 0) { /* text that is not UTF-8 cannot go into JSON */
        curl_slist_free_all(headers);
        sb_buf_dispose(&url);
        e->err = SB_E_INVALID_REQUEST;
        e->early = defer(sb_curlm_loop(m), on_early, e);
        return e;
    }
    /* with a timeout above the budget's: the budget, not curl, decides when retrieval gives up */
    sb_fetch_req_t req = {.url = url.base,
                          .headers = headers,
                          .body = payload,
                          .len = strlen(payload),
                          .timeout_ms = (long)config->rag_timeout_ms + 1000,
                          .max_response = MAX_RESPONSE_BYTES};
    e->http = sb_fetch_start(m, &req, on_embedded, e);
    sb_buf_dispose(&url);
    return e;
}

void sb_embed_cancel(sb_embed_t *e)
{
    if (e->http != NULL)
        sb_fetch_cancel(e->http);
    if (e->early != NULL)
        uv_timer_stop(e->early);
    embed_free(e);
}
