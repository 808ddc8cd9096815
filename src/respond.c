/*
 * Error bodies, whole JSON answers, request ids and the access log. Every
 * error a client sees has OpenAI's shape; every line of the access log is
 * one write(2), so the lines of different workers never interleave.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "respond.h"
#include "sb/buf.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
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

/* Random bytes for ids, drawn from the kernel 512 at a time and kept per thread: one draw per id was a system call per turn.
 * Ids are not secrets; they only must not repeat. */
static void id_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char reserve[512];
    static _Thread_local size_t left;
    if (n > left) {
        randombytes_buf(reserve, sizeof(reserve));
        left = sizeof(reserve);
    }
    memcpy(out, reserve + sizeof(reserve) - left, n);
    left -= n;
}

void sb_respond_new_id(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[32];
    size_t n = len - 1 < sizeof(raw) ? len - 1 : sizeof(raw);
    id_bytes(raw, n);
    for (size_t i = 0; i < n; ++i)
        out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[n] = '\0';
}

h2o_iovec_t sb_respond_error_body(h2o_mem_pool_t *pool, sb_error_t e, const char *message, const char *param)
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

static void send_body(h2o_req_t *req, const char *body, size_t len)
{
    /* h2o_send_inline leaves the length unset, and HTTP/1 then closes the connection after the body */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void sb_respond_json(h2o_req_t *req, const char *body, size_t len)
{
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    send_body(req, body, len);
}

void sb_respond_error(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *retry_after)
{
    h2o_iovec_t body = sb_respond_error_body(&req->pool, e, message, param);
    req->res.status = sb_error_status(e);
    req->res.reason = reason_phrase(req->res.status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (retry_after != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after, strlen(retry_after));
    send_body(req, body.base, body.len);
}

void sb_access_log(int enabled, const sb_access_t *a)
{
    if (!enabled)
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
    if (a->agent != NULL) /* agent names are [a-z0-9_-] (agents.c); the rest are fixed words */
        sb_buf_appendf(&b, ",\"agent\":\"%s\",\"routed_by\":\"%s\",\"strategy\":\"%s\"", a->agent, a->routed_by, a->strategy);
    if (a->agent_from != NULL)
        sb_buf_appendf(&b, ",\"agent_from\":\"%s\"", a->agent_from);
    if (a->router != NULL) /* a fixed word */
        sb_buf_appendf(&b, ",\"router\":\"%s\",\"router_ms\":%.3f", a->router, a->router_ms);
    sb_buf_appendf(&b, ",\"end\":\"%s\",\"worker\":%u}\n", a->end, a->worker);
    ssize_t wr = write(STDOUT_FILENO, b.base, b.len);
    (void)wr;
    sb_buf_dispose(&b);
}

/* The access-log line of a request answered whole, not a turn. */
static void log_answer(h2o_req_t *req, int log, unsigned worker, int status, size_t bytes)
{
    char id[33];
    sb_respond_new_id(id, sizeof(id));
    char method[16], route[128];
    snprintf(method, sizeof(method), "%.*s", (int)req->method.len, req->method.base);
    snprintf(route, sizeof(route), "%.*s", (int)req->path_normalized.len, req->path_normalized.base);
    sb_access_t a = {
        .request_id = id,
        .method = method,
        .route = route,
        .status = status,
        .ttfb_ms = -1,
        .bytes = bytes,
        .prompt_tokens = -1,
        .completion_tokens = -1,
        .end = status < 400 ? "done" : "rejected",
        .worker = worker,
    };
    sb_access_log(log, &a);
}

void sb_respond_answer(h2o_req_t *req, int log, unsigned worker, sb_error_t e, const char *message, const char *param,
                       const char *json)
{
    size_t bytes = 0;
    if (e == SB_OK) {
        bytes = strlen(json);
        sb_respond_json(req, json, bytes);
    } else {
        sb_respond_error(req, e, message, param, NULL);
    }
    log_answer(req, log, worker, e == SB_OK ? 200 : sb_error_status(e), bytes);
}

void sb_respond_body(h2o_req_t *req, int log, unsigned worker, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status == 204 ? "No Content" : status == 304 ? "Not Modified" : "OK";
    if (content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    if (status == 204 || status == 304) /* no body, and no Content-Length either (RFC 9110 8.6) */
        h2o_send_inline(req, "", 0);
    else
        send_body(req, body, len);
    log_answer(req, log, worker, status, len);
}
