/*
 * The Pinecone backend: POST {PINECONE_HOST}/query with the question's
 * embedding on the worker's curl multi. It reads the index the way the Node
 * sample writes it (the settings keep the sample's PINECONE_* names): the
 * passage in metadata.text (metadata.content is accepted too). The sample
 * stores no document name, only {text, timestamp} under a UUID, so the match's
 * id stands in when metadata.source is absent. Scores are used as Pinecone
 * gives them, which for the cosine and dotproduct metrics means higher is closer.
 * Below the search, the index's administration for switchboard-ingest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>
#include <h2o/string_.h>
#include <jansson.h>
#include <sodium.h>

#include "backend.h"
#include "embed.h"
#include "store.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/json.h"

extern const sb_rag_backend_t sb_rag_pinecone;

/* Header values are formatted into a buffer this big; the settings are checked to fit at start-up. */
#define MAX_HEADER 8192
/* The query's ceiling: room for SB_EMBED_MAX_DIM floats of at most 16 bytes and a namespace checked at start-up. */
#define MAX_BODY (1u << 20)

/* A value that goes into a header must not be able to start another one. */
static int has_control(const char *s)
{
    for (; *s != '\0'; ++s)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int check(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->pinecone_api_key == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=pinecone needs PINECONE_API_KEY");
        return -1;
    }
    if (c->pinecone_host == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=pinecone needs PINECONE_HOST, the index's host from the Pinecone console%s",
                 c->pinecone_index != NULL ? " (PINECONE_INDEX alone does not say where the index lives)" : "");
        return -1;
    }
    const char *scheme = strstr(c->pinecone_host, "://");
    if ((scheme != NULL && strncmp(c->pinecone_host, "http://", 7) != 0 && strncmp(c->pinecone_host, "https://", 8) != 0) ||
        strpbrk(c->pinecone_host, " \t") != NULL || has_control(c->pinecone_host)) {
        snprintf(err, errlen, "PINECONE_HOST must be a host name, optionally with https://");
        return -1;
    }
    if (has_control(c->pinecone_api_key) || strlen(c->pinecone_api_key) > MAX_HEADER / 2) {
        snprintf(err, errlen, "PINECONE_API_KEY must be at most %d characters, none of them control characters", MAX_HEADER / 2);
        return -1;
    }
    if (strlen(c->pinecone_host) > 2048) {
        snprintf(err, errlen, "PINECONE_HOST is longer than 2048 characters");
        return -1;
    }
    /* it goes into every query's JSON as it is: jansson says whether it is UTF-8 */
    json_t *ns = c->pinecone_namespace != NULL ? json_string(c->pinecone_namespace) : NULL;
    json_decref(ns);
    if (c->pinecone_namespace != NULL && (ns == NULL || strlen(c->pinecone_namespace) > 1024)) {
        snprintf(err, errlen, "PINECONE_NAMESPACE must be at most 1024 characters of UTF-8");
        return -1;
    }
    if (*c->pinecone_api_version == '\0' || has_control(c->pinecone_api_version) || strlen(c->pinecone_api_version) > 64) {
        snprintf(err, errlen, "PINECONE_API_VERSION must be a version such as 2024-07");
        return -1;
    }
    return 0;
}

/* A metadata string, or NULL when absent or not a string. */
static const char *meta(const sb_json_value_t *m, const char *key)
{
    return sb_json_string(sb_json_get(m, key));
}

/* {"matches":[{"id","score","metadata":{...}}]} → rows; -1 when the shape is wrong. */
static int rows_from(const sb_json_value_t *body, sb_rag_answer_t *out)
{
    const sb_json_value_t *matches = sb_json_get(body, "matches"), *m;
    size_t i;
    if (!sb_json_is(matches, SB_JSON_ARRAY))
        return -1;
    sb_json_array_foreach(matches, i, m)
    {
        const sb_json_value_t *score = sb_json_get(m, "score"), *md = sb_json_get(m, "metadata");
        if (!sb_json_is(m, SB_JSON_OBJECT) || !sb_json_is(score, SB_JSON_NUMBER))
            return -1;
        const char *text = meta(md, "text") != NULL ? meta(md, "text") : meta(md, "content");
        const char *source = meta(md, "source") != NULL ? meta(md, "source") : sb_json_string(sb_json_get(m, "id"));
        const char *heading = meta(md, "heading") != NULL ? meta(md, "heading") : "";
        if (text == NULL || source == NULL ||
            out->n == SB_RAG_MAX_ROWS) /* a vector stored without its passage has nothing to say */
            continue;
        out->rows[out->n++] = (sb_passage_t){source, heading, text, sb_json_number(score)};
    }
    return 0;
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    (void)question;
    const sb_config_t *c = env->config;

    sb_buf_t url, h;
    sb_buf_init(&url, 4096);
    sb_buf_init(&h, MAX_HEADER);
    const char *host = c->pinecone_host;
    size_t hlen = strlen(host);
    while (hlen > 0 && host[hlen - 1] == '/')
        --hlen;
    /* the console shows the bare host; the Node client accepts it either way */
    if (strncmp(host, "http://", 7) != 0 && strncmp(host, "https://", 8) != 0)
        sb_buf_appendz(&url, "https://");
    sb_buf_append(&url, host, hlen);
    sb_buf_appendz(&url, "/query");
    struct curl_slist *headers = NULL;
    sb_buf_appendf(&h, "Api-Key: %s", c->pinecone_api_key);
    headers = curl_slist_append(headers, h.base);
    sb_buf_reset(&h);
    sb_buf_appendf(&h, "X-Pinecone-Api-Version: %s", c->pinecone_api_version);
    headers = curl_slist_append(headers, h.base);
    sb_buf_dispose(&h);

    /* {"vector":[...],"topK":k,"includeMetadata":true[,"namespace":"..."]}, the vector written straight into the body */
    sb_buf_t body;
    sb_buf_init(&body, MAX_BODY);
    sb_buf_appendz(&body, "{\"vector\":");
    sb_json_append_floats(&body, vec, dim);
    sb_buf_appendf(&body, ",\"topK\":%u,\"includeMetadata\":true", k);
    if (c->pinecone_namespace != NULL) {
        sb_buf_appendz(&body, ",\"namespace\":\"");
        sb_buf_append_json_escaped(&body, c->pinecone_namespace, strlen(c->pinecone_namespace));
        sb_buf_appendz(&body, "\"");
    }
    sb_buf_appendz(&body, "}");
    sb_rag_search_t *s = sb_rag_store_query(env, &sb_rag_pinecone, url.base, headers, body.base, body.len, rows_from, done, data);
    sb_buf_dispose(&url);
    return s;
}

const sb_rag_backend_t sb_rag_pinecone = {"pinecone", 1, check, search, sb_rag_store_cancel};

/* --- administration, for switchboard-ingest ------------------------------------------------------------ */

#define FETCH_BATCH 50 /* ids per fetch: they go in the URL */

/* {PINECONE_HOST} (https:// unless it names its scheme, as the search does), and the two headers. */
static int admin_open(sb_store_t *s)
{
    const sb_config_t *c = s->config;
    const char *host = c->pinecone_host;
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '/')
        --n;
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    if (strncmp(host, "http://", 7) != 0 && strncmp(host, "https://", 8) != 0)
        sb_buf_appendz(&b, "https://");
    sb_buf_append(&b, host, n);
    s->url = b.base;
    sb_store_add_header(s, "Api-Key", c->pinecone_api_key);
    sb_store_add_header(s, "X-Pinecone-Api-Version", c->pinecone_api_version);
    return 0;
}

/* A hash of the source: the prefix of its points' ids, so that one listing by prefix finds a source's ids. */
static void source_prefix(const char *source, char out[33])
{
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)source, strlen(source), NULL, 0);
    sodium_bin2hex(out, 33, h, sizeof(h));
}

/* A point's id: "<hash of the source>#<content hash>". */
static void admin_point_id(const char *source, const char *hash, char *out, size_t cap)
{
    char prefix[33];
    source_prefix(source, prefix);
    snprintf(out, cap, "%s#%s", prefix, hash);
}

/* Is `id` one switchboard-ingest writes: 32 hex digits, '#', 64 hex digits? */
static int ours(const char *id)
{
    size_t n = strlen(id);
    if (n != 32 + 1 + 64 || id[32] != '#')
        return 0;
    for (size_t i = 0; i < n; ++i)
        if (i != 32 && !((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

/* The ids in the namespace that start with `prefix` (NULL: all of them), following the pagination. NULL after saying why. */
static json_t *list_ids(sb_store_t *s, const char *what, const char *prefix)
{
    json_t *ids = json_array();
    char *token = NULL;
    for (;;) {
        const char *params[] = {"prefix", prefix, "namespace", s->config->pinecone_namespace, "paginationToken", token, NULL};
        sb_buf_t url;
        sb_store_url(s, &url, "/vectors/list", params);
        long status;
        json_t *res = sb_store_json(what, NULL, url.base, s->headers, NULL, 0, &status, "PINECONE_HOST", "PINECONE_API_KEY");
        sb_buf_dispose(&url);
        json_t *vectors = json_object_get(res, "vectors"), *v;
        if (!json_is_array(vectors)) {
            if (res != NULL)
                sb_store_bad_shape(s, what, "/vectors/list", "a \"vectors\" list");
            json_decref(res);
            json_decref(ids);
            free(token);
            return NULL;
        }
        size_t i;
        json_array_foreach(vectors, i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (id != NULL)
                json_array_append_new(ids, json_string(id));
        }
        const char *next = json_string_value(json_object_get(json_object_get(res, "pagination"), "next"));
        int more = next != NULL && next[0] != '\0' && (token == NULL || strcmp(next, token) != 0);
        free(token);
        token = more ? sb_strdup(next) : NULL;
        json_decref(res);
        if (!more)
            return ids;
    }
}

static json_t *admin_source_ids(sb_store_t *s, const char *source)
{
    char prefix[34];
    source_prefix(source, prefix);
    prefix[32] = '#';
    prefix[33] = '\0';
    return list_ids(s, source, prefix);
}

/*
 * The ids of sources that no longer exist, as {"id","source"} pairs. The
 * listing gives ids only; a source's ids share the prefix of its hash, so
 * they are grouped by prefix, the groups of current sources dropped, and one
 * id of each remaining group fetched to name its source.
 */
static json_t *admin_written(sb_store_t *s, const char *const *current, size_t ncurrent)
{
    json_t *ids = list_ids(s, "--sync", NULL), *v;
    if (ids == NULL)
        return NULL;
    json_t *out = json_array();
    json_t *groups = json_object(); /* prefix → [ids] */
    size_t i;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        if (!ours(id))
            continue; /* not written by switchboard-ingest */
        char prefix[33];
        snprintf(prefix, sizeof(prefix), "%.32s", id);
        json_t *g = json_object_get(groups, prefix);
        if (g == NULL)
            json_object_set_new(groups, prefix, g = json_array());
        json_array_append(g, v);
    }
    for (size_t j = 0; j < ncurrent; ++j) {
        char prefix[33];
        source_prefix(current[j], prefix);
        json_object_del(groups, prefix);
    }
    const char *ns = s->config->pinecone_namespace;
    int rc = 0;
    void *it = json_object_iter(groups);
    while (it != NULL && rc == 0) {
        /* up to FETCH_BATCH groups per fetch: GET /vectors/fetch?ids=a&ids=b&namespace=... */
        void *first = it;
        sb_buf_t url;
        sb_store_url(s, &url, "/vectors/fetch", NULL);
        --url.len; /* the NUL */
        char sep = '?';
        for (size_t k = 0; it != NULL && k < FETCH_BATCH; ++k, it = json_object_iter_next(groups, it)) {
            sb_buf_appendf(&url, "%cids=", sep);
            sep = '&';
            sb_fetch_append_escaped(&url, json_string_value(json_array_get(json_object_iter_value(it), 0)));
        }
        if (ns != NULL) {
            sb_buf_appendz(&url, "&namespace=");
            sb_fetch_append_escaped(&url, ns);
        }
        long status;
        json_t *res = sb_store_json("--sync", NULL, url.base, s->headers, NULL, 0, &status, "PINECONE_HOST", "PINECONE_API_KEY");
        sb_buf_dispose(&url);
        json_t *vectors = json_object_get(res, "vectors");
        if (res != NULL && !json_is_object(vectors))
            sb_store_bad_shape(s, "--sync", "/vectors/fetch", "a \"vectors\" object");
        if (!json_is_object(vectors)) {
            rc = -1;
        } else {
            for (void *g = first; g != it; g = json_object_iter_next(groups, g)) {
                json_t *members = json_object_iter_value(g);
                const char *id = json_string_value(json_array_get(members, 0));
                const char *src =
                    json_string_value(json_object_get(json_object_get(json_object_get(vectors, id), "metadata"), "source"));
                sb_buf_t name;
                sb_buf_init(&name, (size_t)-1);
                if (src != NULL)
                    sb_buf_appendz(&name, src);
                else /* written by switchboard-ingest, but its metadata is gone: named by its ids */
                    sb_buf_appendf(&name, "(ids %s#...)", json_object_iter_key(g));
                json_array_foreach(members, i, v)
                {
                    json_array_append_new(out, json_pack("{s:O, s:s}", "id", v, "source", name.base));
                }
                sb_buf_dispose(&name);
            }
        }
        json_decref(res);
    }
    json_decref(groups);
    json_decref(ids);
    if (rc != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static int admin_upsert(sb_store_t *s, const sb_store_point_t *points, size_t n)
{
    json_t *vectors = json_array();
    for (size_t i = 0; i < n; ++i)
        json_array_append_new(vectors, json_pack("{s:s, s:O, s:o}", "id", points[i].chunk->sid, "values", points[i].vector,
                                                 "metadata", sb_store_meta(points[i].doc, points[i].chunk)));
    json_t *body = json_pack("{s:o}", "vectors", vectors);
    if (s->config->pinecone_namespace != NULL)
        json_object_set_new(body, "namespace", json_string(s->config->pinecone_namespace));
    return sb_store_send(s, points[0].doc->source, NULL, "/vectors/upsert", body);
}

static int admin_remove(sb_store_t *s, json_t *ids)
{
    json_t *body = json_pack("{s:O}", "ids", ids);
    if (s->config->pinecone_namespace != NULL)
        json_object_set_new(body, "namespace", json_string(s->config->pinecone_namespace));
    return sb_store_send(s, "deleting", NULL, "/vectors/delete", body);
}

_Static_assert(SB_STORE_BATCH <= 100, "Pinecone takes at most 100 vectors per upsert");

const sb_store_admin_t sb_store_pinecone = {
    .url_setting = "PINECONE_HOST",
    .key_setting = "PINECONE_API_KEY",
    .open = admin_open,
    .point_id = admin_point_id,
    .source_ids = admin_source_ids,
    .written = admin_written,
    .upsert = admin_upsert,
    .remove = admin_remove,
};
