/*
 * The vector stores' search (store.h): one POST through the shared HTTP
 * client, its answer parsed by switchboard's JSON reader and read into rows
 * by the store's own function.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>
#include <sodium.h>

#include "store.h"
#include "sb/alloc.h"

/* Answers hold k passages with their metadata: a few hundred values; the ceilings only bound a misbehaving store. */
#define MAX_RESPONSE_BYTES (4u << 20)
#define MAX_VALUES (1u << 18)

struct store_query {
    sb_rag_search_t super; /* first: handed out as the search */
    sb_fetch_t *http;
    sb_rag_rows_from_fn rows_from;
    sb_rag_rows_cb done;
    void *data;
};

sb_error_t sb_rag_store_error(CURLcode result, long status)
{
    if (result == CURLE_OPERATION_TIMEDOUT)
        return SB_E_STORE_TIMEOUT;
    if (result == CURLE_WRITE_ERROR || (result == CURLE_OK && status >= 200 && status < 300))
        return SB_E_STORE_BAD_RESPONSE; /* too large, or not the JSON it should be */
    if (result != CURLE_OK)
        return SB_E_STORE_UNAVAILABLE;
    if (status == 401 || status == 403)
        return SB_E_STORE_AUTH;
    if (status == 408 || status == 504)
        return SB_E_STORE_TIMEOUT;
    if (status == 502 || status == 503)
        return SB_E_STORE_UNAVAILABLE;
    return SB_E_STORE_ERROR;
}

static void on_answer(void *data, CURLcode result, long status, char *body, size_t len)
{
    struct store_query q = *(struct store_query *)data;
    free(data);
    sb_json_doc_t doc = {0};
    sb_rag_answer_t answer;
    answer.n = 0;
    int ok = result == CURLE_OK && status / 100 == 2;
    int parsed = ok && sb_json_parse(&doc, body, len, MAX_VALUES) == 0;
    int read = parsed && q.rows_from(sb_json_root(&doc), &answer) == 0;
    sb_error_t err = read ? SB_OK : ok ? SB_E_STORE_BAD_RESPONSE : sb_rag_store_error(result, status);
    q.done(q.data, answer.rows, answer.n, err);
    sb_json_doc_dispose(&doc);
}

sb_rag_search_t *sb_rag_store_query(const sb_rag_env_t *env, const sb_rag_backend_t *backend, const char *url,
                                    struct curl_slist *headers, char *body, size_t len, sb_rag_rows_from_fn rows_from,
                                    sb_rag_rows_cb done, void *data)
{
    struct store_query *q = sb_alloc(sizeof(*q));
    memset(q, 0, sizeof(*q));
    q->super.backend = backend;
    q->rows_from = rows_from;
    q->done = done;
    q->data = data;
    sb_fetch_req_t req = {.url = url,
                          .headers = headers,
                          .body = body,
                          .len = len,
                          .timeout_ms = (long)env->config->rag_timeout_ms + 1000,
                          .max_response = MAX_RESPONSE_BYTES};
    q->http = sb_fetch_start(env->curlm, &req, on_answer, q);
    return &q->super;
}

void sb_rag_store_cancel(sb_rag_search_t *search)
{
    struct store_query *q = (struct store_query *)search;
    sb_fetch_cancel(q->http);
    free(q);
}

/* --- administration, for switchboard-ingest ---------------------------------------------------------- */

#define MAX_ADMIN_RESPONSE (256u << 20) /* a --sync listing of a large collection, or a batch of 3072-dim embeddings */

void sb_store_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("switchboard-ingest: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * The message in an error body: Chroma's {"error","message"}, Pinecone's
 * {"message"}, Qdrant's {"status":{"error"}}, OpenAI's {"error":{"message"}},
 * or the text itself. A refused key names its setting.
 */
static void say_error_body(const char *what, const char *url, long status, const sb_buf_t *b, const char *key_setting)
{
    json_t *root = json_loadb(b->base ? b->base : "", b->len, 0, NULL);
    json_t *err = json_object_get(root, "error");
    json_t *msg = json_object_get(json_is_object(err) ? err : root, "message");
    if (!json_is_string(msg))
        msg = json_is_string(err) ? err : NULL;
    if (msg == NULL && json_is_string(json_object_get(json_object_get(root, "status"), "error")))
        msg = json_object_get(json_object_get(root, "status"), "error");
    char hint[128] = "";
    if (status == 401 || status == 403)
        snprintf(hint, sizeof(hint), " (check %s)", key_setting);
    if (msg != NULL)
        sb_store_say("%s failed: HTTP %ld from %s: %.300s%s", what, status, url, json_string_value(msg), hint);
    else
        sb_store_say("%s failed: HTTP %ld from %s: %.300s%s", what, status, url, b->len ? b->base : "(empty answer)", hint);
    json_decref(root);
}

json_t *sb_store_json(const char *what, const char *method, const char *url, char *const *headers, json_t *body, long quiet,
                      long *status, const char *url_setting, const char *key_setting)
{
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; ++i)
        h = curl_slist_append(h, headers[i]);
    char *payload = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (payload == NULL) /* the stores' APIs are JSON throughout: a GET says so too (a body adds it by itself) */
        h = curl_slist_append(h, "Content-Type: application/json");
    json_decref(body);
    sb_fetch_req_t req = {.method = method,
                          .url = url,
                          .headers = h,
                          .body = payload,
                          .len = payload != NULL ? strlen(payload) : 0,
                          .connect_timeout_ms = 10000,
                          .timeout_ms = 300000, /* a large embeddings batch on a slow provider */
                          .max_response = MAX_ADMIN_RESPONSE,
                          .user_agent = "switchboard-ingest/" SB_VERSION};
    sb_buf_t resp;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode rc = sb_fetch_run(&req, status, &resp, errbuf);
    json_t *out = NULL;
    if (rc != CURLE_OK) {
        sb_store_say("%s failed: %s: %s (check %s)", what, url, errbuf[0] ? errbuf : curl_easy_strerror(rc), url_setting);
    } else if (*status < 200 || *status > 299) {
        if (*status != quiet)
            say_error_body(what, url, *status, &resp, key_setting);
    } else if ((out = json_loadb(resp.base ? resp.base : "{}", resp.base ? resp.len : 2, 0, NULL)) == NULL) {
        sb_store_say("%s failed: %s answered something that is not JSON (check %s)", what, url, url_setting);
    }
    sb_buf_dispose(&resp);
    free(payload);
    return out;
}

void sb_store_url(sb_store_t *s, sb_buf_t *url, const char *path, const char *const *params)
{
    sb_buf_init(url, (size_t)-1);
    sb_buf_appendz(url, s->url);
    sb_buf_appendz(url, path);
    char sep = strchr(path, '?') != NULL ? '&' : '?';
    for (; params != NULL && params[0] != NULL; params += 2) {
        if (params[1] == NULL)
            continue;
        sb_buf_append(url, &sep, 1);
        sep = '&';
        sb_buf_appendz(url, params[0]);
        sb_buf_append(url, "=", 1);
        sb_fetch_append_escaped(url, params[1]);
    }
    sb_buf_append(url, "", 1);
}

void sb_store_join(sb_buf_t *b, const char *base, const char *path)
{
    sb_buf_init(b, (size_t)-1);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        --n;
    sb_buf_append(b, base, n);
    sb_buf_appendf(b, "/%s%c", path, '\0');
}

json_t *sb_store_call(sb_store_t *s, const char *what, const char *method, const char *path, json_t *body, long quiet, long *status)
{
    sb_buf_t url;
    sb_store_url(s, &url, path, NULL);
    long st;
    json_t *out = sb_store_json(what, method, url.base, s->headers, body, quiet, status != NULL ? status : &st,
                                s->admin->url_setting, s->admin->key_setting);
    sb_buf_dispose(&url);
    return out;
}

int sb_store_send(sb_store_t *s, const char *what, const char *method, const char *path, json_t *body)
{
    json_t *res = sb_store_call(s, what, method, path, body, 0, NULL);
    json_decref(res);
    return res != NULL ? 0 : -1;
}

void sb_store_add_header(sb_store_t *s, const char *name, const char *value)
{
    size_t i = 0;
    while (s->headers[i] != NULL)
        ++i;
    if (i + 1 >= sizeof(s->headers) / sizeof(s->headers[0]))
        h2o_fatal("a store with more than two credential headers");
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_appendf(&b, "%s: %s", name, value);
    s->headers[i] = b.base;
}

json_t *sb_store_meta(const sb_kb_doc_t *d, const sb_kb_chunk_t *c)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "source", d->source, "heading", c->heading, "title", d->title, "text", c->content);
}

void sb_store_bad_shape(sb_store_t *s, const char *what, const char *path, const char *expected)
{
    sb_store_say("%s failed: %s%s answered without %s", what, s->url, path, expected);
}

int sb_store_open(sb_store_t *s, const sb_store_admin_t *admin, const sb_config_t *config, int dry_run)
{
    memset(s, 0, sizeof(*s));
    s->admin = admin;
    s->config = config;
    s->dry_run = dry_run;
    return admin->open(s);
}

void sb_store_close(sb_store_t *s)
{
    for (size_t i = 0; s->headers[i] != NULL; ++i) { /* they hold keys */
        sodium_memzero(s->headers[i], strlen(s->headers[i]));
        free(s->headers[i]);
    }
    free(s->url);
    memset(s, 0, sizeof(*s));
}
