/*
 * The Chroma backend (v2 HTTP API): a nearest-neighbour query with the
 * question's embedding against one collection, over the worker's curl multi
 * handle so the loop never waits.
 *
 * Chroma addresses a collection by id in its query route, while switchboard is
 * configured with the collection's name. The id is resolved with one GET and
 * cached per worker thread; a query answered 404 (the collection was dropped
 * and re-created by an ingest) forgets the id and resolves it once more.
 *
 * Chroma answers distances, lower is closer. They are turned into scores where
 * higher is better, by the collection's distance space: cosine and ip
 * (Chroma's ip distance is 1 - dot) give score = 1 - distance, i.e. the cosine
 * similarity for normalised vectors, on the same scale as RAG_MIN_SCORE; l2
 * gives score = 1 / (1 + distance). switchboard-ingest creates cosine
 * collections.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>
#include <sodium.h>

#include "backend.h"
#include "sb/buf.h"
#include "sb/json.h"
#include "sb/log.h"

extern const sb_rag_backend_t sb_rag_chroma;

#define MAX_RESPONSE (4u << 20) /* k passages of at most a few KB each, with room for large metadata */
#define MAX_ID 128              /* collection ids are UUIDs; anything longer is not one */
#define MAX_BODY (1u << 20)     /* the query: room for SB_EMBED_MAX_DIM floats of at most 16 bytes */

enum step { STEP_RESOLVE, STEP_QUERY };

struct search {
    sb_rag_search_t super;
    const sb_config_t *config;
    sb_curlm_t *curlm;
    sb_rag_rows_cb done;
    void *data;
    enum step step;
    int retried;        /* a query answered 404 already led to one fresh resolve */
    int running;        /* xfer is added to the multi handle */
    int cancelled;      /* done() must not run; on_xfer_done only frees */
    uv_timer_t *defer;  /* reports a failure that happened inside search() on the next loop turn */
    sb_error_t pending; /* the failure the defer timer reports */
    sb_xfer_t xfer;
    struct curl_slist *headers;
    char *body;
    sb_buf_t resp;
};

/*
 * The collection id this worker thread resolved, for this config. Workers are
 * threads with a loop each, so a thread-local cache is a per-worker cache
 * without a hook in the worker.
 */
static _Thread_local struct {
    const sb_config_t *config;
    char id[MAX_ID + 1];
    int l2; /* the collection's space is l2: distances are not 1 - similarity */
} cache;

static int check(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->chroma_url == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=chroma needs CHROMA_URL (e.g. http://127.0.0.1:8000)");
        return -1;
    }
    if (strncmp(c->chroma_url, "http://", 7) != 0 && strncmp(c->chroma_url, "https://", 8) != 0) {
        snprintf(err, errlen, "CHROMA_URL must start with http:// or https://");
        return -1;
    }
    return 0;
}

static void free_search(struct search *s)
{
    curl_slist_free_all(s->headers);
    sb_buf_dispose(&s->resp);
    free(s->body);
    free(s);
}

static void on_defer_closed(uv_handle_t *h)
{
    free(h);
}

/* Reports the outcome (unless cancelled) and frees the search. */
static void finish(struct search *s, const sb_passage_t *rows, size_t n, sb_error_t err)
{
    sb_rag_rows_cb done = s->done;
    void *data = s->data;
    int cancelled = s->cancelled;
    free_search(s);
    if (!cancelled)
        done(data, rows, n, err);
}

static void on_defer(uv_timer_t *t)
{
    struct search *s = t->data;
    uv_close((uv_handle_t *)t, on_defer_closed);
    s->defer = NULL;
    finish(s, NULL, 0, s->pending);
}

/* A failure before any transfer ran: done() may not run inside search(), so it waits for the loop. */
static void fail_later(struct search *s, uv_loop_t *loop, sb_error_t err)
{
    s->pending = err;
    if ((s->defer = malloc(sizeof(*s->defer))) == NULL)
        abort();
    uv_timer_init(loop, s->defer);
    s->defer->data = s;
    uv_timer_start(s->defer, on_defer, 0, 0);
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *userp)
{
    struct search *s = userp;
    return sb_buf_append(&s->resp, p, size * nmemb) == 0 ? size * nmemb : 0; /* 0 aborts an oversized answer */
}

/* Appends `s` percent-encoded as one path segment. */
static void append_segment(sb_buf_t *b, CURL *e, const char *s)
{
    char *esc = curl_easy_escape(e, s, 0);
    if (esc == NULL)
        abort();
    sb_buf_appendz(b, esc);
    curl_free(esc);
}

/* Starts the current step's request. 0, or -1 with nothing started. */
static int start(struct search *s)
{
    const sb_config_t *c = s->config;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return -1;
    sb_buf_t url;
    sb_buf_init(&url, 8192);
    sb_buf_appendz(&url, c->chroma_url);
    while (url.len > 0 && url.base[url.len - 1] == '/')
        --url.len;
    sb_buf_appendz(&url, "/api/v2/tenants/");
    append_segment(&url, e, c->chroma_tenant);
    sb_buf_appendz(&url, "/databases/");
    append_segment(&url, e, c->chroma_database);
    sb_buf_appendz(&url, "/collections/");
    if (s->step == STEP_RESOLVE) {
        append_segment(&url, e, c->chroma_collection);
    } else {
        append_segment(&url, e, cache.id);
        sb_buf_appendz(&url, "/query");
    }
    if (sb_buf_append(&url, "", 1) != 0) {
        sb_buf_dispose(&url);
        curl_easy_cleanup(e);
        return -1;
    }
    sb_buf_reset(&s->resp);
    curl_easy_setopt(e, CURLOPT_URL, url.base);
    sb_buf_dispose(&url);
    if (s->step == STEP_QUERY) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(s->body));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* retrieve.c's budget ends the search sooner; these only bound a transfer that outlives a lost cancel */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->rag_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->rag_timeout_ms * 2);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "switchboard/" SB_VERSION);
    s->xfer.easy = e;
    if (sb_curlm_add(s->curlm, &s->xfer) != 0) {
        curl_easy_cleanup(e);
        return -1;
    }
    s->running = 1;
    return 0;
}

/* Maps a failed call (transport, or an HTTP status other than 200) to switchboard's errors. */
static sb_error_t error_for(CURLcode rc, long status)
{
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return SB_E_STORE_TIMEOUT;
    if (rc != CURLE_OK)
        return rc == CURLE_WRITE_ERROR ? SB_E_STORE_BAD_RESPONSE : SB_E_STORE_UNAVAILABLE; /* write error: over MAX_RESPONSE */
    if (status == 401 || status == 403)
        return SB_E_STORE_AUTH;
    if (status == 408 || status == 504)
        return SB_E_STORE_TIMEOUT;
    if (status == 502 || status == 503)
        return SB_E_STORE_UNAVAILABLE;
    return status == 200 ? SB_E_STORE_BAD_RESPONSE : SB_E_STORE_ERROR;
}

/* The collection's distance space, from the metadata Chroma 0.x used or the configuration Chroma 1.x added. */
static int space_is_l2(const sb_json_value_t *coll)
{
    const char *space = sb_json_string(sb_json_get(sb_json_get(coll, "metadata"), "hnsw:space"));
    if (space == NULL)
        space = sb_json_string(sb_json_get(sb_json_get(sb_json_get(coll, "configuration_json"), "hnsw"), "space"));
    /* Chroma's default space is l2 */
    return space == NULL || strcmp(space, "l2") == 0;
}

/* The query's answer as rows, best first as Chroma ordered them; how many, or -1 when the shape is wrong. */
static long rows_from(const sb_json_value_t *root, sb_passage_t *rows)
{
    const sb_json_value_t *docs = sb_json_at(sb_json_get(root, "documents"), 0);
    const sb_json_value_t *metas = sb_json_at(sb_json_get(root, "metadatas"), 0);
    const sb_json_value_t *dists = sb_json_at(sb_json_get(root, "distances"), 0);
    if (!sb_json_is(docs, SB_JSON_ARRAY) || !sb_json_is(dists, SB_JSON_ARRAY))
        return -1;
    /* walked side by side: sb_json_at from the start for each row would be quadratic */
    const sb_json_value_t *doc = docs + 1, *meta = sb_json_is(metas, SB_JSON_ARRAY) ? metas + 1 : NULL, *dist = dists + 1;
    size_t n = 0;
    for (uint32_t i = 0; i < dists->len && n < SB_RAG_MAX_ROWS; ++i, dist += dist->span) {
        const sb_json_value_t *d = i < docs->len ? doc : NULL, *m = meta != NULL && i < metas->len ? meta : NULL;
        if (d != NULL)
            doc += doc->span;
        if (m != NULL)
            meta += meta->span;
        const char *text = sb_json_string(d) != NULL ? sb_json_string(d) : sb_json_string(sb_json_get(m, "text"));
        const char *source = sb_json_string(sb_json_get(m, "source")), *heading = sb_json_string(sb_json_get(m, "heading"));
        if (text == NULL || source == NULL || !sb_json_is(dist, SB_JSON_NUMBER))
            continue; /* not written by switchboard-ingest: nothing to cite */
        double distance = sb_json_number(dist);
        double score = cache.l2 ? 1.0 / (1.0 + distance) : 1.0 - distance;
        rows[n++] = (sb_passage_t){source, heading != NULL ? heading : "", text, isfinite(score) ? score : 0.0};
    }
    return (long)n;
}

static void on_xfer_done(sb_xfer_t *x, CURLcode rc)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, xfer, x);
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(x->easy);
    s->xfer.easy = NULL;
    s->running = 0;
    if (s->cancelled) {
        free_search(s);
        return;
    }
    if (rc != CURLE_OK) {
        finish(s, NULL, 0, error_for(rc, status));
        return;
    }
    /* Responses are a collection or k passages: a few hundred values. The ceiling only bounds a misbehaving server. */
    sb_json_doc_t doc = {0};
    const sb_json_value_t *root = NULL;
    if (status == 200 && s->resp.base != NULL && sb_json_parse(&doc, s->resp.base, s->resp.len, 1 << 18) == 0)
        root = sb_json_root(&doc);
    if (s->step == STEP_RESOLVE) {
        const sb_json_value_t *id = sb_json_get(root, "id");
        if (!sb_json_is(id, SB_JSON_STRING) || id->len == 0 || id->len > MAX_ID) {
            /* worth saying once per try: the turn goes on without context, and only the log says why */
            sb_log_warn("chroma: collection %s not found in %s/%s (HTTP %ld); run switchboard-ingest with RAG_BACKEND=chroma",
                        s->config->chroma_collection, s->config->chroma_tenant, s->config->chroma_database, status);
            sb_json_doc_dispose(&doc);
            finish(s, NULL, 0, error_for(CURLE_OK, status));
            return;
        }
        cache.config = s->config;
        snprintf(cache.id, sizeof(cache.id), "%s", id->str);
        cache.l2 = space_is_l2(root);
        sb_json_doc_dispose(&doc);
        s->step = STEP_QUERY;
        if (start(s) != 0)
            finish(s, NULL, 0, SB_E_INTERNAL);
        return;
    }
    if (status == 404 && !s->retried) {
        /* the collection was re-created under a new id since it was resolved */
        cache.config = NULL;
        s->retried = 1;
        s->step = STEP_RESOLVE;
        sb_json_doc_dispose(&doc);
        if (start(s) != 0)
            finish(s, NULL, 0, SB_E_INTERNAL);
        return;
    }
    sb_passage_t rows[SB_RAG_MAX_ROWS];
    long n = root != NULL ? rows_from(root, rows) : -1;
    sb_buf_t resp = s->resp; /* the rows point into it: it outlives the search */
    sb_buf_init(&s->resp, 0);
    finish(s, rows, n > 0 ? (size_t)n : 0, n >= 0 ? SB_OK : error_for(CURLE_OK, status));
    sb_json_doc_dispose(&doc);
    sb_buf_dispose(&resp);
}

/* {"query_embeddings": [[...]], "n_results": k, "include": [...]}, built once: a retry sends the same body. */
static char *query_body(const float *vec, size_t dim, unsigned k)
{
    sb_buf_t b;
    sb_buf_init(&b, MAX_BODY);
    sb_buf_appendz(&b, "{\"query_embeddings\":[");
    sb_json_append_floats(&b, vec, dim);
    sb_buf_appendf(&b, "],\"n_results\":%u,\"include\":[\"documents\",\"metadatas\",\"distances\"]}", k);
    return b.base;
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    (void)question;
    struct search *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->super.backend = &sb_rag_chroma;
    s->config = env->config;
    s->curlm = env->curlm;
    s->done = done;
    s->data = data;
    s->xfer.on_done = on_xfer_done;
    sb_buf_init(&s->resp, MAX_RESPONSE);
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (env->config->chroma_api_key != NULL) {
        char h[1024];
        snprintf(h, sizeof(h), "x-chroma-token: %s", env->config->chroma_api_key);
        s->headers = curl_slist_append(s->headers, h);
        sodium_memzero(h, sizeof(h));
    }
    if (vec == NULL || dim == 0 || env->curlm == NULL) {
        fail_later(s, env->loop, SB_E_INTERNAL);
        return &s->super;
    }
    s->body = query_body(vec, dim, k);
    s->step = cache.config == env->config && cache.id[0] != '\0' ? STEP_QUERY : STEP_RESOLVE;
    if (start(s) != 0)
        fail_later(s, env->loop, SB_E_INTERNAL);
    return &s->super;
}

static void cancel(sb_rag_search_t *base)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, super, base);
    s->cancelled = 1;
    if (s->defer != NULL) {
        uv_close((uv_handle_t *)s->defer, on_defer_closed);
        free_search(s);
    } else if (s->running) {
        sb_curlm_cancel(&s->xfer); /* on_xfer_done frees the search, maybe before this returns */
    } else {
        free_search(s);
    }
}

const sb_rag_backend_t sb_rag_chroma = {"chroma", 1, check, search, cancel};
