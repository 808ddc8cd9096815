/*
 * The HTTP surface: one h2o handler that dispatches on the route table below,
 * OpenAI-shaped error bodies for every failure (also the 413 h2o answers by
 * itself), and the access log.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "http.h"
#include "request.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "turn.h"
#include "llm.h"

typedef void (*route_cb)(h2o_req_t *req);

static void on_chat(h2o_req_t *req);
static void on_ping(h2o_req_t *req);
static void on_healthz(h2o_req_t *req);

/*
 * The route table. path: matched exactly (query string ignored); method: the
 * one method served ("GET" routes answer HEAD too); allow: the Allow header of
 * a 405; on_req: the handler.
 */
static const struct route {
    const char *path;
    const char *method;
    const char *allow;
    route_cb on_req;
} routes[] = {
    {"/v1/chat/completions", "POST", "POST", on_chat},
    {"/chat/completions", "POST", "POST", on_chat},
    {"/v1/chat/completion", "POST", "POST", on_chat}, /* the path users of the Node sample configured */
    {"/ping", "GET", "GET, HEAD", on_ping},
    {"/healthz", "GET", "GET, HEAD", on_healthz},
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void sb_http_new_id(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[32];
    size_t n = len - 1 < sizeof(raw) ? len - 1 : sizeof(raw);
    randombytes_buf(raw, n);
    for (size_t i = 0; i < n; ++i)
        out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[n] = '\0';
}

void sb_access_log(sb_worker_t *w, const sb_access_t *a)
{
    if (!w->config->access_log)
        return;
    sb_buf_t b;
    sb_buf_init(&b, 4096);
    sb_buf_appendf(&b, "{\"ts\":%.3f,\"request_id\":\"%s\",\"method\":\"", now_ms(), a->request_id);
    sb_buf_append_json_escaped(&b, a->method, strlen(a->method));
    sb_buf_appendz(&b, "\",\"route\":\"");
    sb_buf_append_json_escaped(&b, a->route, strlen(a->route));
    sb_buf_appendf(&b, "\",\"status\":%d,\"model\":", a->status);
    if (a->model != NULL) {
        sb_buf_append(&b, "\"", 1);
        sb_buf_append_json_escaped(&b, a->model, strlen(a->model));
        sb_buf_append(&b, "\"", 1);
    } else {
        sb_buf_appendz(&b, "null");
    }
    if (a->ttfb_ms >= 0)
        sb_buf_appendf(&b, ",\"ttfb_ms\":%.3f", a->ttfb_ms);
    else
        sb_buf_appendz(&b, ",\"ttfb_ms\":null");
    sb_buf_appendf(&b, ",\"total_ms\":%.3f,\"bytes\":%zu", a->total_ms, a->bytes);
    if (a->prompt_tokens >= 0)
        sb_buf_appendf(&b, ",\"prompt_tokens\":%lld,\"completion_tokens\":%lld", a->prompt_tokens, a->completion_tokens);
    if (a->retrieval != NULL)
        sb_buf_appendf(&b, ",\"retrieval\":\"%s\"", a->retrieval);
    if (a->shadowed != NULL) /* tool names: plain words from switchboard's own table */
        sb_buf_appendf(&b, ",\"shadowed_tools\":\"%s\"", a->shadowed);
    sb_buf_appendf(&b, ",\"end\":\"%s\",\"worker\":%u}\n", a->end, w->id);
    ssize_t wr = write(STDOUT_FILENO, b.base, b.len); /* one write per line: lines from workers never interleave */
    (void)wr;
    sb_buf_dispose(&b);
}

/* The OpenAI error body for `e`. Returned buffer is owned by the caller's pool. */
static h2o_iovec_t error_body(h2o_mem_pool_t *pool, sb_error_t e, const char *message, const char *param)
{
    sb_buf_t b;
    sb_buf_init(&b, 4096);
    const char *m = message ? message : sb_error_message(e);
    sb_buf_appendz(&b, "{\"error\":{\"message\":\"");
    sb_buf_append_json_escaped(&b, m, strlen(m));
    sb_buf_appendf(&b, "\",\"type\":\"%s\",\"param\":", sb_error_type(e));
    if (param != NULL && *param != '\0') {
        sb_buf_append(&b, "\"", 1);
        sb_buf_append_json_escaped(&b, param, strlen(param));
        sb_buf_append(&b, "\"", 1);
    } else {
        sb_buf_appendz(&b, "null");
    }
    sb_buf_appendf(&b, ",\"code\":\"%s\"}}\n", sb_error_code(e));
    h2o_iovec_t out = h2o_strdup(pool, b.base, b.len);
    sb_buf_dispose(&b);
    return out;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

void sb_http_send_json(h2o_req_t *req, const char *body, size_t len)
{
    /* h2o_send_inline leaves the length unset, and HTTP/1 then closes the connection after the body */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void sb_http_send_error(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *retry_after)
{
    h2o_iovec_t body = error_body(&req->pool, e, message, param);
    req->res.status = sb_error_status(e);
    req->res.reason = reason_phrase(req->res.status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (retry_after != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after, strlen(retry_after));
    sb_http_send_json(req, body.base, body.len);
}

/* Sends a fixed response and logs it. */
static void answer(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *json)
{
    char id[33];
    sb_http_new_id(id, sizeof(id));
    char method[16], route[128];
    snprintf(method, sizeof(method), "%.*s", (int)req->method.len, req->method.base);
    snprintf(route, sizeof(route), "%.*s", (int)req->path_normalized.len, req->path_normalized.base);
    size_t bytes = 0;
    if (e == SB_OK) {
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        bytes = strlen(json);
        sb_http_send_json(req, json, bytes);
    } else {
        sb_http_send_error(req, e, message, param, NULL);
    }
    sb_access_t a = {
        .request_id = id,
        .method = method,
        .route = route,
        .status = e == SB_OK ? 200 : sb_error_status(e),
        .ttfb_ms = -1,
        .bytes = bytes,
        .prompt_tokens = -1,
        .completion_tokens = -1,
        .end = e == SB_OK ? "done" : "rejected",
    };
    sb_access_log(sb_worker_of(req), &a);
}

static void on_ping(h2o_req_t *req)
{
    answer(req, SB_OK, NULL, NULL, "{\"message\":\"pong\"}");
}

static void on_healthz(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    char db[160] = "null";
    int degraded = 0;
    if (w->pg != NULL) {
        sb_pgpool_stats_t st;
        sb_pgpool_stats(w->pg, &st);
        degraded = !st.healthy;
        snprintf(db, sizeof(db), "{\"status\":\"%s\",\"open\":%u,\"busy\":%u,\"queued\":%u}", st.healthy ? "ok" : "unavailable",
                 st.open, st.busy, st.queued);
    }
    char body[512];
    snprintf(body, sizeof(body), "{\"status\":\"%s\",\"provider\":\"%s\",\"database\":%s,\"worker\":%u,\"active_turns\":%zu}",
             w->draining ? "draining"
             : degraded  ? "degraded"
                         : "ok",
             w->server->provider->name, db, w->id, w->nturns);
    /* degraded still answers 200: switchboard serves turns without the database, the model hears why */
    answer(req, SB_OK, NULL, NULL, h2o_strdup(&req->pool, body, strlen(body)).base);
}

/* The engine's ids for the call when it sends them as headers (Agora's custom LLM requests can carry them). */
static void engine_ids(h2o_req_t *req, sb_engine_ids_t *ids)
{
    static const h2o_iovec_t names[] = {
        {H2O_STRLIT("x-agora-customllm-appid")}, {H2O_STRLIT("x-agora-customllm-channel")}, {H2O_STRLIT("x-agora-customllm-uid")}};
    const char **base[] = {&ids->app_id, &ids->channel, &ids->uid};
    size_t *len[] = {&ids->app_id_len, &ids->channel_len, &ids->uid_len};
    for (size_t i = 0; i < 3; ++i) {
        ssize_t at = h2o_find_header_by_str(&req->headers, names[i].base, names[i].len, -1);
        *base[i] = at >= 0 ? req->headers.entries[at].value.base : NULL;
        *len[i] = at >= 0 ? req->headers.entries[at].value.len : 0;
    }
}

static void on_chat(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    if (w->draining) {
        answer(req, SB_E_SHUTTING_DOWN, NULL, NULL, NULL);
        return;
    }
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (!sb_auth_check(hi >= 0 ? req->headers.entries[hi].value.base : NULL, hi >= 0 ? req->headers.entries[hi].value.len : 0)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        answer(req, SB_E_UNAUTHORIZED, NULL, NULL, NULL);
        return;
    }
    if (req->entity.len > w->config->max_body_bytes) {
        answer(req, SB_E_BODY_TOO_LARGE, NULL, NULL, NULL);
        return;
    }
    if (req->entity.base == NULL || req->entity.len == 0) {
        answer(req, SB_E_INVALID_JSON, "request body is empty", NULL, NULL);
        return;
    }
    sb_engine_ids_t ids;
    engine_ids(req, &ids);
    sb_chat_request_t creq;
    sb_request_error_t err;
    if (sb_chat_request_parse_body(req->entity.base, req->entity.len, w->config->default_model, &ids, &creq, &err) != 0) {
        answer(req, err.kind, err.message, err.param, NULL);
        return;
    }
    char id[25];
    sb_http_new_id(id, sizeof(id));
    sb_turn_start(req, &creq, id);
}

/* The value of the header line at p (name and colon skipped), without surrounding whitespace. */
static h2o_iovec_t header_value(const char *p, const char *eol)
{
    while (p < eol && (*p == ' ' || *p == '\t'))
        ++p;
    while (eol > p && (eol[-1] == ' ' || eol[-1] == '\t' || eol[-1] == '\r'))
        --eol;
    return h2o_iovec_init(p, (size_t)(eol - p));
}

/*
 * Whether an HTTP/1 request's body length is ambiguous: Content-Length
 * headers that differ, or Content-Length beside Transfer-Encoding. h2o reads
 * the body by the first one and drops the header, so the request's header
 * block is read again here (h2o keeps it at the start of the socket's input,
 * names lower-cased, until the response is sent). A proxy in front that
 * honours the other header would see the rest of the body as a second,
 * smuggled request. Identical duplicates are harmless and pass.
 */
static int ambiguous_length(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->entity.base == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return 0;
    const char *p = sock->input->bytes, *end = p + sock->input->size;
    h2o_iovec_t length = {NULL, 0};
    int chunked = 0;
    for (const char *eol; p < end && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL; p = eol + 1) {
        if (eol == p || (eol == p + 1 && *p == '\r'))
            break; /* the blank line: the header block is over */
        if (eol - p > 15 && h2o_lcstris(p, 15, H2O_STRLIT("content-length:"))) {
            h2o_iovec_t v = header_value(p + 15, eol);
            if (length.base != NULL && !h2o_memis(v.base, v.len, length.base, length.len))
                return 1;
            length = v;
        } else if (eol - p > 18 && h2o_lcstris(p, 18, H2O_STRLIT("transfer-encoding:"))) {
            chunked = 1;
        }
    }
    return length.base != NULL && chunked;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    if (ambiguous_length(req)) {
        req->http1_is_persistent = 0; /* what follows on this connection cannot be told apart from the body */
        answer(req, SB_E_INVALID_REQUEST, "conflicting Content-Length or Transfer-Encoding headers", NULL, NULL);
        return 0;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); ++i) {
        const struct route *r = &routes[i];
        if (!h2o_memis(path.base, path.len, r->path, strlen(r->path)))
            continue;
        int get = strcmp(r->method, "GET") == 0;
        if (h2o_memis(req->method.base, req->method.len, r->method, strlen(r->method)) ||
            (get && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))) {
            r->on_req(req);
        } else {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, r->allow, strlen(r->allow));
            answer(req, SB_E_METHOD_NOT_ALLOWED, NULL, NULL, NULL);
        }
        return 0;
    }
    answer(req, SB_E_NOT_FOUND, NULL, NULL, NULL);
    return 0;
}

/* --- OpenAI-shaped bodies for the errors h2o sends by itself (413 on an oversized body) --- */

struct error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void on_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    struct error_ostream *os = H2O_STRUCT_FROM_MEMBER(struct error_ostream, super, self);
    h2o_iovec_t body = os->body;
    os->body = h2o_iovec_init(NULL, 0);
    h2o_ostream_send_next(&os->super, req, &body, body.len ? 1 : 0, state);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    int ours = ct >= 0 && h2o_memis(req->res.headers.entries[ct].value.base, req->res.headers.entries[ct].value.len,
                                    H2O_STRLIT("application/json"));
    if (req->res.status == 413 && !ours) {
        /* h2o refused the body before reading it: the client may still be sending it */
        h2o_socket_t *sock = req->version < 0x200 ? req->conn->callbacks->get_socket(req->conn) : NULL;
        if (sock != NULL)
            sb_worker_linger_on_close(sb_worker_of(req), h2o_socket_get_fd(sock));
        struct error_ostream *os = (void *)h2o_add_ostream(req, sizeof(*os), slot);
        os->super.do_send = on_error_send;
        os->body = error_body(&req->pool, SB_E_BODY_TOO_LARGE, NULL, NULL);
        req->res.content_length = os->body.len;
        if (ct >= 0)
            h2o_delete_header(&req->res.headers, ct);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

void sb_http_register(h2o_hostconf_t *hostconf)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
    /* h2o answers an oversized body before routing, on the host's fallback path */
    h2o_create_filter(&hostconf->fallback_path, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
}
