/*
 * The HTTP surface: one h2o handler that dispatches on the route table below,
 * refuses requests whose body length is ambiguous, and gives the 413 h2o
 * answers by itself an OpenAI-shaped body (and a lingering close).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "agora_events.h"
#include "auth.h"
#include "chat.h"
#include "console.h"
#include "conversations.h"
#include "cors.h"
#include "sessions.h"
#include "http.h"
#include "llm.h"
#include "metrics.h"
#include "models.h"
#include "respond.h"
#include "responses.h"
#include "retell.h"

typedef void (*route_cb)(h2o_req_t *req);

static void on_ping(h2o_req_t *req);
static void on_healthz(h2o_req_t *req);
static void on_readyz(h2o_req_t *req);
static void on_metrics(h2o_req_t *req);

/*
 * The route table. path: matched exactly (query string ignored), or as a
 * prefix when `prefix` is set (the handler reads the rest); method: the
 * one method served ("GET" routes answer HEAD too); allow: the Allow header of
 * a 405, and the methods a CORS preflight may ask for; on_req: the handler.
 * OPTIONS is answered for every route (sb_cors_preflight).
 */
static const struct route {
    const char *path;
    const char *method;
    const char *allow;
    route_cb on_req;
    int prefix;
} routes[] = {
    {"/v1/chat/completions", "POST", "POST", sb_chat_handle, 0},
    {"/chat/completions", "POST", "POST", sb_chat_handle, 0},
    {"/v1/chat/completion", "POST", "POST", sb_chat_handle, 0},      /* the path users of the Node sample configured */
    {"/v1/responses", "POST", "POST", sb_responses_handle, 0},       /* OpenAI's Responses API, for clients that speak it */
    {"/v1/models", "GET", "GET, HEAD", sb_models_handle, 0},         /* the models a caller may name; bearer key */
    {"/v1/agora/events", "POST", "POST", sb_agora_events_handle, 0}, /* Agora's webhooks; signed, AGORA_WEBHOOK_SECRET */
    {SB_CONVERSATIONS_PREFIX, "GET", "GET, HEAD", sb_conversations_handle, 1}, /* one stored conversation; bearer key */
    {SB_SESSIONS_PATH, "POST", "POST", sb_sessions_create, 0},                 /* a session and its token; bearer key */
    {SB_SESSIONS_PREFIX, "GET", "GET", sb_sessions_connect, 1},                /* a session's WebSocket; its token */
    {SB_CONSOLE_PATH, "GET", "GET, HEAD", sb_console_handle, 0},               /* the browser console; CONSOLE=true */
    {SB_CONSOLE_PATH, "GET", "GET, HEAD", sb_console_handle, 1},               /* its files (/console/<name>) */
    {SB_RETELL_PREFIX, "GET", "GET", sb_retell_connect, 1},                    /* Retell AI's LLM WebSocket; RETELL_SECRET */
    {"/ping", "GET", "GET, HEAD", on_ping, 0},
    {"/healthz", "GET", "GET, HEAD", on_healthz, 0},
    {"/readyz", "GET", "GET, HEAD", on_readyz, 0},
    {"/metrics", "GET", "GET, HEAD", on_metrics, 0}, /* Prometheus; on METRICS_PORT instead when that is set */
};

static void on_ping(h2o_req_t *req)
{
    sb_worker_answer(req, SB_OK, NULL, NULL, "{\"message\":\"pong\"}");
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
             sb_routes_match(&w->server->routes, "*")->to.provider, db, w->id, w->nopen);
    /* degraded still answers 200: switchboard serves turns without the database, the model hears why */
    sb_worker_answer(req, SB_OK, NULL, NULL, h2o_strdup(&req->pool, body, strlen(body)).base);
}

/*
 * Readiness, for a load balancer or Kubernetes: 503 while this process drains
 * or while its configured database is unreachable (turns would still answer,
 * but without their tools: send them to a replica that has them), else 200.
 * /healthz keeps answering 200 when degraded: it says alive, this says ready.
 */
static void on_readyz(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    if (w->draining) {
        sb_worker_answer(req, SB_E_SHUTTING_DOWN, NULL, NULL, NULL);
        return;
    }
    if (w->pg != NULL) {
        sb_pgpool_stats_t st;
        sb_pgpool_stats(w->pg, &st);
        if (!st.healthy) {
            sb_worker_answer(req, SB_E_DB_UNAVAILABLE, "not ready: the database (DATABASE_URL) is unreachable", NULL, NULL);
            return;
        }
    }
    sb_worker_answer(req, SB_OK, NULL, NULL, "{\"status\":\"ready\"}");
}

/* The local port the request came in on, 0 when unknown. */
static unsigned local_port(h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t n = req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&ss);
    if (n == 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

#define METRICS_MAX_BYTES (16u << 20)

/*
 * The Prometheus scrape: every worker's counts, summed. With METRICS_PORT it
 * is served there only (PORT answers 404), and with METRICS_TOKEN only to a
 * scraper that sends it as a bearer token.
 */
static void on_metrics(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    if (w->server->metrics == NULL || (c->metrics_port != 0 && local_port(req) != c->metrics_port)) {
        sb_worker_answer(req, SB_E_NOT_FOUND, NULL, NULL, NULL);
        return;
    }
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (!sb_auth_check_metrics(hi >= 0 ? req->headers.entries[hi].value.base : NULL,
                               hi >= 0 ? req->headers.entries[hi].value.len : 0)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        sb_worker_answer(req, SB_E_UNAUTHORIZED, "missing or invalid metrics token (METRICS_TOKEN)", NULL, NULL);
        return;
    }
    sb_buf_t text;
    sb_buf_init(&text, METRICS_MAX_BYTES);
    sb_metrics_render(w->server->metrics, &text);
    sb_respond_body(req, c->access_log, w->id, 200, "text/plain; version=0.0.4; charset=utf-8", text.base, text.len);
    sb_buf_dispose(&text);
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
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "conflicting Content-Length or Transfer-Encoding headers", NULL, NULL);
        return 0;
    }
    sb_worker_t *w = sb_worker_of(req);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); ++i) {
        const struct route *r = &routes[i];
        size_t plen = strlen(r->path);
        if (r->prefix ? path.len <= plen || memcmp(path.base, r->path, plen) != 0 : !h2o_memis(path.base, path.len, r->path, plen))
            continue;
        if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"))) {
            sb_cors_preflight(req, w->config, w->id, r->allow);
            return 0;
        }
        sb_cors_headers(req, w->config);
        int get = strcmp(r->method, "GET") == 0;
        if (h2o_memis(req->method.base, req->method.len, r->method, strlen(r->method)) ||
            (get && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))) {
            r->on_req(req);
        } else {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, r->allow, strlen(r->allow));
            sb_worker_answer(req, SB_E_METHOD_NOT_ALLOWED, NULL, NULL, NULL);
        }
        return 0;
    }
    sb_worker_answer(req, SB_E_NOT_FOUND, NULL, NULL, NULL);
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
        os->body = sb_respond_error_body(&req->pool, SB_E_BODY_TOO_LARGE, NULL, NULL);
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
