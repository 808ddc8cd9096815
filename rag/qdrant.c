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

extern const sb_rag_backend_t sb_rag_qdrant;

/* Header values are formatted into a buffer this big; the settings are checked to fit at start-up. */
#define MAX_HEADER 8192

struct search {
    sb_rag_search_t super; /* first: the backend hands out &super and gets it back */
    sb_rag_http_t *http;
    sb_rag_rows_cb done;
    void *data;
};

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
static const char *first_string(json_t *o, const char *const *keys)
{
    for (; *keys != NULL; ++keys)
        if (json_is_string(json_object_get(o, *keys)))
            return json_string_value(json_object_get(o, *keys));
    return NULL;
}

/* {"result":{"points":[{"id","score","payload":{...}}]}} → rows; NULL when the shape is wrong. */
static json_t *rows_from(json_t *body)
{
    static const char *const text_keys[] = {"text", "content", "page_content", NULL};
    static const char *const source_keys[] = {"source", NULL};
    static const char *const heading_keys[] = {"heading", NULL};
    json_t *points = json_object_get(json_object_get(body, "result"), "points");
    if (!json_is_array(points))
        return NULL;
    json_t *rows = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(points, i, p)
    {
        json_t *score = json_object_get(p, "score");
        json_t *payload = json_object_get(p, "payload");
        if (!json_is_object(p) || !json_is_number(score)) {
            json_decref(rows);
            return NULL;
        }
        const char *text = first_string(payload, text_keys);
        const char *source = first_string(payload, source_keys);
        if (source == NULL) /* LangChain keeps it one level down */
            source = first_string(json_object_get(payload, "metadata"), source_keys);
        const char *heading = first_string(payload, heading_keys);
        char id[32];
        json_t *jid = json_object_get(p, "id");
        if (source == NULL && json_is_integer(jid)) {
            snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, json_integer_value(jid));
            source = id;
        } else if (source == NULL) {
            source = json_string_value(jid); /* a UUID */
        }
        if (text == NULL || source == NULL) /* a point stored without its passage has nothing to say */
            continue;
        json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:f}", "source", source, "heading", heading ? heading : "", "text",
                                              text, "score", json_number_value(score)));
    }
    return rows;
}

static void on_answer(void *data, CURLcode result, long status, json_t *body)
{
    struct search *s = data;
    sb_rag_rows_cb done = s->done;
    void *cbdata = s->data;
    free(s);
    sb_rag_store_answer(result, status, body, rows_from, done, cbdata);
}

static sb_rag_search_t *search(const sb_rag_env_t *env, const char *question, const float *vec, size_t dim, unsigned k,
                               sb_rag_rows_cb done, void *data)
{
    (void)question;
    const sb_config_t *c = env->config;
    struct search *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->super.backend = &sb_rag_qdrant;
    s->done = done;
    s->data = data;

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

    json_t *query = json_array();
    for (size_t i = 0; i < dim; ++i)
        json_array_append_new(query, json_real(vec[i]));
    json_t *body = json_pack("{s:o, s:I, s:b}", "query", query, "limit", (json_int_t)k, "with_payload", 1);
    /* the budget decides when retrieval gives up; curl's own limit only keeps a lost transfer from living on */
    s->http = sb_rag_http_post(env->curlm, url.base, headers, body, c->rag_timeout_ms + 1000, on_answer, s);
    json_decref(body);
    sb_buf_dispose(&url);
    return &s->super;
}

static void cancel(sb_rag_search_t *base)
{
    struct search *s = (struct search *)base;
    sb_rag_http_cancel(s->http);
    free(s);
}

const sb_rag_backend_t sb_rag_qdrant = {"qdrant", 1, check, search, cancel};
