/*
 * The Chroma backend (v2 HTTP API): a nearest-neighbour query with the
 * question's embedding against one collection, through the shared HTTP
 * client on the worker's curl multi, so the loop never waits.
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
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/fetch.h"
#include "sb/json.h"
#include "sb/log.h"
#include "store.h"

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
    uv_timer_t *defer;  /* reports a failure that happened inside search() on the next loop turn */
    sb_error_t pending; /* the failure the defer timer reports */
    sb_fetch_t *http;   /* the step's call, NULL between calls */
    char *body;         /* the query, built once: a retry after a fresh resolve sends the same */
    size_t body_len;
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
    free(s->body);
    free(s);
}

static void on_defer_closed(uv_handle_t *h)
{
    free(h);
}

/* Reports the outcome and frees the search. */
static void finish(struct search *s, const sb_passage_t *rows, size_t n, sb_error_t err)
{
    sb_rag_rows_cb done = s->done;
    void *data = s->data;
    free_search(s);
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
    s->defer = sb_alloc(sizeof(*s->defer));
    uv_timer_init(loop, s->defer);
    s->defer->data = s;
    uv_timer_start(s->defer, on_defer, 0, 0);
}

static void on_answer(void *data, CURLcode rc, long status, char *body, size_t len);

/* Starts the current step's call. */
static void start(struct search *s)
{
    const sb_config_t *c = s->config;
    sb_buf_t url;
    sb_buf_init(&url, 8192);
    sb_buf_appendz(&url, c->chroma_url);
    while (url.len > 0 && url.base[url.len - 1] == '/')
        --url.len;
    sb_buf_appendz(&url, "/api/v2/tenants/");
    sb_fetch_append_escaped(&url, c->chroma_tenant);
    sb_buf_appendz(&url, "/databases/");
    sb_fetch_append_escaped(&url, c->chroma_database);
    sb_buf_appendz(&url, "/collections/");
    if (s->step == STEP_RESOLVE) {
        sb_fetch_append_escaped(&url, c->chroma_collection);
    } else {
        sb_fetch_append_escaped(&url, cache.id);
        sb_buf_appendz(&url, "/query");
    }
    struct curl_slist *headers = NULL;
    if (c->chroma_api_key != NULL) {
        char h[1024];
        snprintf(h, sizeof(h), "x-chroma-token: %s", c->chroma_api_key);
        headers = curl_slist_append(NULL, h);
        sodium_memzero(h, sizeof(h));
    }
    char *body = NULL;
    if (s->step == STEP_QUERY) {
        body = sb_alloc(s->body_len + 1);
        memcpy(body, s->body, s->body_len + 1);
    }
    sb_fetch_req_t req = {.url = url.base != NULL ? url.base : "",
                          .headers = headers,
                          .body = body,
                          .len = s->body_len,
                          /* retrieve.c's budget ends the search sooner; these only bound a call that outlives a lost cancel */
                          .connect_timeout_ms = (long)c->rag_timeout_ms,
                          .timeout_ms = (long)c->rag_timeout_ms * 2,
                          .max_response = MAX_RESPONSE};
    s->http = sb_fetch_start(s->curlm, &req, on_answer, s);
    sb_buf_dispose(&url);
}

/* Maps a failed call (transport, or an HTTP status other than 200) to switchboard's errors. */
static sb_error_t error_for(CURLcode rc, long status)
{
    return rc == CURLE_OK && status == 200 ? SB_E_STORE_BAD_RESPONSE : sb_rag_store_error(rc, status);
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

static void on_answer(void *data, CURLcode rc, long status, char *body, size_t len)
{
    struct search *s = data;
    s->http = NULL;
    if (rc != CURLE_OK) {
        finish(s, NULL, 0, error_for(rc, status));
        return;
    }
    /* Responses are a collection or k passages: a few hundred values. The ceiling only bounds a misbehaving server. */
    sb_json_doc_t doc = {0};
    const sb_json_value_t *root = NULL;
    if (status == 200 && sb_json_parse(&doc, body, len, 1 << 18) == 0)
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
        start(s);
        return;
    }
    if (status == 404 && !s->retried) {
        /* the collection was re-created under a new id since it was resolved */
        cache.config = NULL;
        s->retried = 1;
        s->step = STEP_RESOLVE;
        sb_json_doc_dispose(&doc);
        start(s);
        return;
    }
    sb_passage_t rows[SB_RAG_MAX_ROWS];
    long n = root != NULL ? rows_from(root, rows) : -1; /* the rows point into body, which lives until this returns */
    finish(s, rows, n > 0 ? (size_t)n : 0, n >= 0 ? SB_OK : error_for(CURLE_OK, status));
    sb_json_doc_dispose(&doc);
}

/* {"query_embeddings": [[...]], "n_results": k, "include": [...]}, built once: a retry sends the same body. */
static char *query_body(const float *vec, size_t dim, unsigned k, size_t *len)
{
    sb_buf_t b;
    sb_buf_init(&b, MAX_BODY);
    sb_buf_appendz(&b, "{\"query_embeddings\":[");
    sb_json_append_floats(&b, vec, dim);
    sb_buf_appendf(&b, "],\"n_results\":%u,\"include\":[\"documents\",\"metadatas\",\"distances\"]}", k);
    *len = b.len;
    return b.base;
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    (void)question;
    struct search *s = sb_alloc(sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->super.backend = &sb_rag_chroma;
    s->config = env->config;
    s->curlm = env->curlm;
    s->done = done;
    s->data = data;
    if (vec == NULL || dim == 0 || env->curlm == NULL) {
        fail_later(s, env->loop, SB_E_INTERNAL);
        return &s->super;
    }
    s->body = query_body(vec, dim, k, &s->body_len);
    s->step = cache.config == env->config && cache.id[0] != '\0' ? STEP_QUERY : STEP_RESOLVE;
    start(s);
    return &s->super;
}

static void cancel(sb_rag_search_t *base)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, super, base);
    if (s->defer != NULL)
        uv_close((uv_handle_t *)s->defer, on_defer_closed);
    if (s->http != NULL)
        sb_fetch_cancel(s->http);
    free_search(s);
}

const sb_rag_backend_t sb_rag_chroma = {"chroma", 1, check, search, cancel};

/* --- administration, for switchboard-ingest ------------------------------------------------------------ */

/*
 * Finds the collection, creating it (cosine space, which the scores above
 * assume) unless this is a dry run. In a dry run a missing collection is left
 * missing: everything would be new.
 */
static int admin_open(sb_store_t *s)
{
    const sb_config_t *c = s->config;
    if (c->chroma_api_key != NULL)
        sb_store_add_header(s, "x-chroma-token", c->chroma_api_key);
    sb_buf_t base;
    sb_store_join(&base, c->chroma_url, "api/v2/tenants/");
    base.len--; /* the NUL */
    sb_fetch_append_escaped(&base, c->chroma_tenant);
    sb_buf_appendz(&base, "/databases/");
    sb_fetch_append_escaped(&base, c->chroma_database);
    sb_buf_appendz(&base, "/collections");
    sb_buf_t url;
    sb_buf_init(&url, (size_t)-1);
    sb_buf_append(&url, base.base, base.len);
    json_t *coll;
    long status;
    if (s->dry_run) {
        sb_buf_appendz(&url, "/");
        sb_fetch_append_escaped(&url, c->chroma_collection);
        coll = sb_store_json("finding the Chroma collection", NULL, url.base, s->headers, NULL, 404, &status, "CHROMA_URL",
                             "CHROMA_API_KEY");
        if (coll == NULL && status == 404) {
            s->missing = 1;
            sb_buf_dispose(&url);
            sb_buf_dispose(&base);
            return 0;
        }
    } else {
        json_t *body =
            json_pack("{s:s, s:b, s:{s:s}}", "name", c->chroma_collection, "get_or_create", 1, "metadata", "hnsw:space", "cosine");
        coll = sb_store_json("creating the Chroma collection", NULL, url.base, s->headers, body, 0, &status, "CHROMA_URL",
                             "CHROMA_API_KEY");
    }
    sb_buf_dispose(&url);
    const char *id = json_string_value(json_object_get(coll, "id"));
    if (coll != NULL && id == NULL)
        sb_store_say("Chroma's answer about collection %s (CHROMA_COLLECTION) has no id", c->chroma_collection);
    if (id != NULL) {
        sb_buf_appendz(&base, "/");
        sb_fetch_append_escaped(&base, id);
        s->url = sb_strndup(base.base, base.len);
    }
    json_decref(coll);
    sb_buf_dispose(&base);
    return id != NULL ? 0 : -1;
}

/* A point's id is the passage's content hash. */
static void admin_point_id(const char *source, const char *hash, char *out, size_t cap)
{
    (void)source;
    snprintf(out, cap, "%s", hash);
}

static json_t *admin_source_ids(sb_store_t *s, const char *source)
{
    if (s->missing)
        return json_array();
    json_t *res =
        sb_store_call(s, source, NULL, "/get", json_pack("{s:{s:s}, s:[]}", "where", "source", source, "include"), 0, NULL);
    json_t *ids = json_object_get(res, "ids");
    if (res != NULL && !json_is_array(ids))
        sb_store_bad_shape(s, source, "/get", "an \"ids\" list");
    ids = json_is_array(ids) ? json_incref(ids) : NULL;
    json_decref(res);
    return ids;
}

static json_t *admin_written(sb_store_t *s, const char *const *current, size_t ncurrent)
{
    (void)current, (void)ncurrent;
    json_t *out = json_array(), *v;
    if (s->missing)
        return out;
    json_t *res = sb_store_call(s, "--sync", NULL, "/get", json_pack("{s:[s]}", "include", "metadatas"), 0, NULL);
    if (res == NULL) {
        json_decref(out);
        return NULL;
    }
    json_t *ids = json_object_get(res, "ids"), *metas = json_object_get(res, "metadatas");
    size_t i;
    json_array_foreach(ids, i, v)
    {
        const char *src = json_string_value(json_object_get(json_array_get(metas, i), "source"));
        if (src != NULL) /* else not written by switchboard-ingest */
            json_array_append_new(out, json_pack("{s:O, s:s}", "id", v, "source", src));
    }
    json_decref(res);
    return out;
}

static int admin_upsert(sb_store_t *s, const sb_store_point_t *points, size_t n)
{
    json_t *ids = json_array(), *docs = json_array(), *metas = json_array(), *vecs = json_array();
    for (size_t i = 0; i < n; ++i) {
        json_array_append_new(ids, json_string(points[i].chunk->sid));
        json_array_append_new(docs, json_string(points[i].chunk->content));
        json_array_append_new(metas, sb_store_meta(points[i].doc, points[i].chunk));
        json_array_append(vecs, points[i].vector);
    }
    return sb_store_send(s, points[0].doc->source, NULL, "/upsert",
                         json_pack("{s:o, s:o, s:o, s:o}", "ids", ids, "embeddings", vecs, "documents", docs, "metadatas", metas));
}

static int admin_remove(sb_store_t *s, json_t *ids)
{
    return sb_store_send(s, "deleting", NULL, "/delete", json_pack("{s:O}", "ids", ids));
}

const sb_store_admin_t sb_store_chroma = {
    .url_setting = "CHROMA_URL",
    .key_setting = "CHROMA_API_KEY",
    .open = admin_open,
    .point_id = admin_point_id,
    .source_ids = admin_source_ids,
    .written = admin_written,
    .upsert = admin_upsert,
    .remove = admin_remove,
};
