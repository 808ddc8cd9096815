/*
 * The Pinecone backend: POST {PINECONE_HOST}/query with the question's
 * embedding on the worker's curl multi. It reads the index the way the Node
 * sample writes it (the settings keep the sample's PINECONE_* names): the
 * passage in metadata.text (metadata.content is accepted too). The sample
 * stores no document name, only {text, timestamp} under a UUID, so the match's
 * id stands in when metadata.source is absent. Scores are used as Pinecone
 * gives them, which for the cosine and dotproduct metrics means higher is closer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backend.h"
#include "embed.h"
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
