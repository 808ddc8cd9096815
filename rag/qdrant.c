/*
 * The Qdrant backend: POST {QDRANT_URL}/collections/{QDRANT_COLLECTION}/points/query
 * (the universal query API, Qdrant 1.10+) with the question's embedding on the
 * worker's curl multi. Points carry their passage in the payload: `text` (or
 * `content`, or LangChain's `page_content`), `source` and `heading`. Scores are
 * used as Qdrant gives them, which for Cosine and Dot means higher is closer.
 * Below the search, the collection's administration for switchboard-ingest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backend.h"
#include "embed.h"
#include "store.h"
#include "sb/buf.h"
#include "sb/json.h"

extern const sb_rag_backend_t sb_rag_qdrant;

/* Header values are formatted into a buffer this big; the settings are checked to fit at start-up. */
#define MAX_HEADER 8192
/* The query's ceiling: room for SB_EMBED_MAX_DIM floats of at most 16 bytes. */
#define MAX_BODY (1u << 20)

static int check(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->qdrant_url == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=qdrant needs QDRANT_URL (e.g. http://127.0.0.1:6333)");
        return -1;
    }
    if (strncmp(c->qdrant_url, "http://", 7) != 0 && strncmp(c->qdrant_url, "https://", 8) != 0) {
        snprintf(err, errlen, "QDRANT_URL must start with http:// or https://");
        return -1;
    }
    if (c->qdrant_collection == NULL) {
        snprintf(err, errlen, "RAG_BACKEND=qdrant needs QDRANT_COLLECTION");
        return -1;
    }
    if (strlen(c->qdrant_collection) > 255) {
        snprintf(err, errlen, "QDRANT_COLLECTION is longer than 255 characters");
        return -1;
    }
    if (strlen(c->qdrant_url) > 2048) {
        snprintf(err, errlen, "QDRANT_URL is longer than 2048 characters");
        return -1;
    }
    /* a value that goes into a header must not be able to start another one */
    for (const char *p = c->qdrant_api_key; p != NULL && *p != '\0'; ++p)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || p - c->qdrant_api_key >= MAX_HEADER / 2) {
            snprintf(err, errlen, "QDRANT_API_KEY must be at most %d characters, none of them control characters", MAX_HEADER / 2);
            return -1;
        }
    return 0;
}

/* The first of `keys` that is a string in `o`, or NULL. */
static const char *first_string(const sb_json_value_t *o, const char *const *keys)
{
    for (; *keys != NULL; ++keys)
        if (sb_json_string(sb_json_get(o, *keys)) != NULL)
            return sb_json_string(sb_json_get(o, *keys));
    return NULL;
}

/* A point's id as the passage's source: a UUID as it is, an unsigned integer written out into `buf`; NULL otherwise. */
static const char *id_source(const sb_json_value_t *id, char *buf, size_t cap)
{
    if (sb_json_is(id, SB_JSON_STRING))
        return id->str;
    if (!sb_json_is(id, SB_JSON_NUMBER) || id->len >= cap)
        return NULL;
    for (uint32_t i = 0; i < id->len; ++i)
        if (id->str[i] < '0' || id->str[i] > '9')
            return NULL;
    memcpy(buf, id->str, id->len);
    buf[id->len] = '\0';
    return buf;
}

/* {"result":{"points":[{"id","score","payload":{...}}]}} → rows; -1 when the shape is wrong. */
static int rows_from(const sb_json_value_t *body, sb_rag_answer_t *out)
{
    static const char *const text_keys[] = {"text", "content", "page_content", NULL};
    static const char *const source_keys[] = {"source", NULL};
    static const char *const heading_keys[] = {"heading", NULL};
    const sb_json_value_t *points = sb_json_get(sb_json_get(body, "result"), "points"), *p;
    size_t i;
    if (!sb_json_is(points, SB_JSON_ARRAY))
        return -1;
    sb_json_array_foreach(points, i, p)
    {
        const sb_json_value_t *score = sb_json_get(p, "score"), *payload = sb_json_get(p, "payload");
        if (!sb_json_is(p, SB_JSON_OBJECT) || !sb_json_is(score, SB_JSON_NUMBER))
            return -1;
        if (out->n == SB_RAG_MAX_ROWS)
            continue;
        const char *text = first_string(payload, text_keys);
        const char *source = first_string(payload, source_keys);
        if (source == NULL) /* LangChain keeps it one level down */
            source = first_string(sb_json_get(payload, "metadata"), source_keys);
        if (source == NULL)
            source = id_source(sb_json_get(p, "id"), out->ids[out->n], sizeof(out->ids[out->n]));
        const char *heading = first_string(payload, heading_keys);
        if (text == NULL || source == NULL) /* a point stored without its passage has nothing to say */
            continue;
        out->rows[out->n++] = (sb_passage_t){source, heading ? heading : "", text, sb_json_number(score)};
    }
    return 0;
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    (void)question;
    const sb_config_t *c = env->config;

    sb_buf_t url;
    sb_buf_init(&url, 4096);
    size_t ulen = strlen(c->qdrant_url);
    while (ulen > 0 && c->qdrant_url[ulen - 1] == '/')
        --ulen;
    sb_buf_append(&url, c->qdrant_url, ulen);
    sb_buf_appendz(&url, "/collections/");
    sb_fetch_append_escaped(&url, c->qdrant_collection); /* the name is checked to fit at start-up */
    sb_buf_appendz(&url, "/points/query");
    struct curl_slist *headers = NULL;
    if (c->qdrant_api_key != NULL) {
        sb_buf_t h;
        sb_buf_init(&h, MAX_HEADER);
        sb_buf_appendf(&h, "api-key: %s", c->qdrant_api_key);
        headers = curl_slist_append(headers, h.base);
        sb_buf_dispose(&h);
    }

    /* {"query":[...],"limit":k,"with_payload":true}, the vector written straight into the body */
    sb_buf_t body;
    sb_buf_init(&body, MAX_BODY);
    sb_buf_appendz(&body, "{\"query\":");
    sb_json_append_floats(&body, vec, dim);
    sb_buf_appendf(&body, ",\"limit\":%u,\"with_payload\":true}", k);
    sb_rag_search_t *s = sb_rag_store_query(env, &sb_rag_qdrant, url.base, headers, body.base, body.len, rows_from, done, data);
    sb_buf_dispose(&url);
    return s;
}

const sb_rag_backend_t sb_rag_qdrant = {"qdrant", 1, check, search, sb_rag_store_cancel};

/* --- administration, for switchboard-ingest ------------------------------------------------------------ */

/* A collection's vector size, or 0 when it does not say (-1: it has only named vectors, which switchboard does not use). */
static long collection_size(json_t *info)
{
    json_t *vectors =
        json_object_get(json_object_get(json_object_get(json_object_get(info, "result"), "config"), "params"), "vectors");
    json_t *size = json_object_get(vectors, "size");
    if (json_is_integer(size) && json_integer_value(size) > 0)
        return (long)json_integer_value(size);
    return json_is_object(vectors) && json_object_size(vectors) > 0 ? -1 : 0;
}

/* {QDRANT_URL}/collections/{QDRANT_COLLECTION}, and whether it exists yet (it is created at the first upsert, which knows the
 * dimension). */
static int admin_open(sb_store_t *s)
{
    const sb_config_t *c = s->config;
    if (c->qdrant_api_key != NULL)
        sb_store_add_header(s, "api-key", c->qdrant_api_key);
    sb_buf_t b;
    sb_store_join(&b, c->qdrant_url, "collections/");
    b.len--; /* the NUL */
    sb_fetch_append_escaped(&b, c->qdrant_collection);
    s->url = b.base;
    long status;
    json_t *info = sb_store_call(s, "finding the Qdrant collection", NULL, "", NULL, 404, &status);
    if (info == NULL && status == 404) {
        s->missing = 1;
        return 0;
    }
    if (info == NULL)
        return -1;
    long size = collection_size(info);
    json_decref(info);
    if (size < 0) {
        sb_store_say("Qdrant collection %s (QDRANT_COLLECTION) has only named vectors; switchboard reads and writes the unnamed "
                     "vector: name a new collection and it is created",
                     c->qdrant_collection);
        return -1;
    }
    s->dim = (size_t)size;
    return 0;
}

/* Creates the collection (cosine distance, which the scores above assume) for `dim`-dimensional vectors. */
static int create(sb_store_t *s, size_t dim)
{
    long status;
    json_t *body = json_pack("{s:{s:I, s:s}}", "vectors", "size", (json_int_t)dim, "distance", "Cosine");
    json_t *res = sb_store_call(s, "creating the Qdrant collection", "PUT", "", body, 409, &status);
    if (res == NULL && status != 409) /* 409: created meanwhile by someone else */
        return -1;
    json_decref(res);
    s->missing = 0;
    s->dim = status == 409 ? 0 : dim;
    return 0;
}

/* Qdrant takes only UUIDs and integers as ids: the content hash's first 16 bytes, written as a UUID. */
static void admin_point_id(const char *source, const char *hash, char *out, size_t cap)
{
    (void)source;
    snprintf(out, cap, "%.8s-%.4s-%.4s-%.4s-%.12s", hash, hash + 8, hash + 12, hash + 16, hash + 20);
}

/*
 * The points matching `filter` (NULL: all of them) with the payload keys
 * `with`, following next_page_offset. Takes both. An array of points
 * {id, payload}, or NULL after saying why.
 */
static json_t *scroll(sb_store_t *s, const char *what, json_t *filter, json_t *with)
{
    json_t *points = json_array(), *offset = NULL;
    for (;;) {
        json_t *body = json_object();
        if (filter != NULL)
            json_object_set(body, "filter", filter);
        json_object_set_new(body, "limit", json_integer(256));
        json_object_set(body, "with_payload", with);
        json_object_set_new(body, "with_vector", json_false());
        if (offset != NULL)
            json_object_set(body, "offset", offset);
        json_t *res = sb_store_call(s, what, NULL, "/points/scroll", body, 0, NULL);
        json_t *result = json_object_get(res, "result"), *page = json_object_get(result, "points");
        if (!json_is_array(page)) {
            if (res != NULL)
                sb_store_bad_shape(s, what, "/points/scroll", "a \"result.points\" list");
            json_decref(res);
            json_decref(points);
            points = NULL;
            break;
        }
        json_array_extend(points, page);
        json_t *next = json_object_get(result, "next_page_offset");
        int more =
            next != NULL && !json_is_null(next) && json_array_size(page) > 0 && !(offset != NULL && json_equal(next, offset));
        json_decref(offset);
        offset = more ? json_incref(next) : NULL;
        json_decref(res);
        if (!more)
            break;
    }
    json_decref(offset);
    json_decref(filter);
    json_decref(with);
    return points;
}

static json_t *admin_source_ids(sb_store_t *s, const char *source)
{
    if (s->missing)
        return json_array();
    json_t *filter = json_pack("{s:[{s:s, s:{s:s}}]}", "must", "key", "source", "match", "value", source);
    json_t *points = scroll(s, source, filter, json_pack("[s]", "chunk_id")), *p;
    json_t *ids = points != NULL ? json_array() : NULL;
    size_t i;
    json_array_foreach(points, i, p)
    {
        /* a point without a chunk_id was not written by switchboard-ingest: it is left alone */
        if (json_is_string(json_object_get(json_object_get(p, "payload"), "chunk_id")) && json_object_get(p, "id") != NULL)
            json_array_append(ids, json_object_get(p, "id"));
    }
    json_decref(points);
    return ids;
}

static json_t *admin_written(sb_store_t *s, const char *const *current, size_t ncurrent)
{
    (void)current, (void)ncurrent;
    json_t *out = json_array(), *v;
    if (s->missing)
        return out;
    json_t *points = scroll(s, "--sync", NULL, json_pack("[s, s]", "source", "chunk_id"));
    if (points == NULL) {
        json_decref(out);
        return NULL;
    }
    size_t i;
    json_array_foreach(points, i, v)
    {
        json_t *payload = json_object_get(v, "payload"), *id = json_object_get(v, "id");
        const char *src = json_string_value(json_object_get(payload, "source"));
        if (src != NULL && id != NULL && json_is_string(json_object_get(payload, "chunk_id")))
            json_array_append_new(out, json_pack("{s:O, s:s}", "id", id, "source", src));
    }
    json_decref(points);
    return out;
}

static int admin_upsert(sb_store_t *s, const sb_store_point_t *points, size_t n)
{
    size_t dim = json_array_size(points[0].vector);
    if (s->missing && create(s, dim) != 0)
        return -1;
    if (s->dim != 0 && s->dim != dim) {
        sb_store_say("%s: the embedding model %s (OPENAI_EMBEDDING_MODEL) gives %zu-dimensional vectors, but Qdrant collection %s "
                     "(QDRANT_COLLECTION) holds %zu-dimensional ones; use the model it was loaded with, or a new collection",
                     points[0].doc->source, s->config->embedding_model, dim, s->config->qdrant_collection, s->dim);
        return -1;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; ++i) {
        json_t *payload = sb_store_meta(points[i].doc, points[i].chunk);
        json_object_set_new(payload, "chunk_id", json_string(points[i].chunk->id));
        json_array_append_new(
            list, json_pack("{s:s, s:O, s:o}", "id", points[i].chunk->sid, "vector", points[i].vector, "payload", payload));
    }
    return sb_store_send(s, points[0].doc->source, "PUT", "/points?wait=true", json_pack("{s:o}", "points", list));
}

static int admin_remove(sb_store_t *s, json_t *ids)
{
    return sb_store_send(s, "deleting", NULL, "/points/delete?wait=true", json_pack("{s:O}", "points", ids));
}

const sb_store_admin_t sb_store_qdrant = {
    .url_setting = "QDRANT_URL",
    .key_setting = "QDRANT_API_KEY",
    .open = admin_open,
    .point_id = admin_point_id,
    .source_ids = admin_source_ids,
    .written = admin_written,
    .upsert = admin_upsert,
    .remove = admin_remove,
};
