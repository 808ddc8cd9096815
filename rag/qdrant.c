/*
 * The Qdrant backend: POST {QDRANT_URL}/collections/{QDRANT_COLLECTION}/points/query
 * (the universal query API, Qdrant 1.10+) with the question's embedding on the
 * worker's curl multi. Points carry their passage in the payload: `text` (or
 * `content`, or LangChain's `page_content`), `source` and `heading`. Scores are
 * used as Qdrant gives them, which for Cosine and Dot means higher is closer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "embed.h"
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
    sb_rag_append_escaped(&url, c->qdrant_collection); /* the name is checked to fit at start-up */
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
