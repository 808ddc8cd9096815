/*
 * Cross-origin requests from browsers: the origins in CORS_ORIGINS get the
 * Access-Control-* headers on every answer, and their preflight (OPTIONS)
 * is answered with what the route allows. Other origins get no CORS headers
 * (the browser then withholds the answer) and a 403 to their preflight.
 * Authentication is unchanged: a browser still sends a bearer key.
 */
#include <string.h>

#include "cors.h"
#include "respond.h"
#include "worker.h"

#define ORIGIN_MAX 256
#define REQUEST_HEADERS_MAX 1024
/* What a preflight may ask to send when it names nothing unusual. */
static const char default_headers[] = "authorization, content-type, x-request-id, traceparent";
/* What a page may read of an answer beyond the simple headers. */
static const char exposed_headers[] = "x-request-id, retry-after";

/* The first value of header `name` (lowercase), base NULL when absent. */
static h2o_iovec_t header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t at = h2o_find_header_by_str(&req->headers, name, len, -1);
    return at >= 0 ? req->headers.entries[at].value : h2o_iovec_init(NULL, 0);
}

/* Whether `origin` is one of the comma-separated origins in `list` (exactly), or the list is "*". */
static int listed(const char *list, h2o_iovec_t origin)
{
    for (const char *p = list; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            ++p;
        size_t n = strcspn(p, ", ");
        if (n == 1 && *p == '*')
            return 1;
        if (n > 0 && h2o_memis(p, n, origin.base, origin.len))
            return 1;
        p += n;
    }
    return 0;
}

/* A header list a preflight asks for, when it is plainly a list of header names: passed back as allowed. */
static int sane_header_list(h2o_iovec_t v)
{
    if (v.len == 0 || v.len > REQUEST_HEADERS_MAX)
        return 0;
    for (size_t i = 0; i < v.len; ++i) {
        char c = v.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ',' ||
              c == ' '))
            return 0;
    }
    return 1;
}

/* The request's Origin when CORS_ORIGINS allows it, else base NULL. */
static h2o_iovec_t allowed_origin(h2o_req_t *req, const sb_config_t *c)
{
    h2o_iovec_t origin = header(req, H2O_STRLIT("origin"));
    if (c->cors_origins == NULL || origin.base == NULL || origin.len == 0 || origin.len > ORIGIN_MAX ||
        !listed(c->cors_origins, origin))
        return h2o_iovec_init(NULL, 0);
    return origin;
}

/* Whether `origin` is this server as the request reached it: scheme://Host. */
static int same_origin(h2o_req_t *req, h2o_iovec_t origin)
{
    const h2o_url_scheme_t *scheme = req->scheme != NULL ? req->scheme : &H2O_URL_SCHEME_HTTP;
    size_t n = scheme->name.len;
    return origin.len == n + 3 + req->authority.len && memcmp(origin.base, scheme->name.base, n) == 0 &&
           memcmp(origin.base + n, "://", 3) == 0 &&
           h2o_lcstris(origin.base + n + 3, req->authority.len, req->authority.base, req->authority.len);
}

static void add(h2o_req_t *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, value, vlen);
}

void sb_cors_headers(h2o_req_t *req, const sb_config_t *c)
{
    if (c->cors_origins == NULL)
        return;
    /* a cache in between must not hand one origin's answer to another */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    h2o_iovec_t origin = allowed_origin(req, c);
    if (origin.base == NULL)
        return;
    add(req, H2O_STRLIT("access-control-allow-origin"), origin.base, origin.len);
    add(req, H2O_STRLIT("access-control-expose-headers"), exposed_headers, sizeof(exposed_headers) - 1);
}

void sb_cors_preflight(h2o_req_t *req, const sb_config_t *c, unsigned worker, const char *methods)
{
    h2o_iovec_t origin = header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL) { /* a plain OPTIONS: what the route allows */
        size_t n = strlen(methods);
        char *allow = h2o_mem_alloc_pool(&req->pool, n + sizeof(", OPTIONS"));
        memcpy(allow, methods, n);
        memcpy(allow + n, ", OPTIONS", sizeof(", OPTIONS"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, n + sizeof(", OPTIONS") - 1);
        sb_respond_body(req, c->access_log, worker, 204, NULL, NULL, 0);
        return;
    }
    if (allowed_origin(req, c).base == NULL) {
        sb_respond_answer(req, c->access_log, worker, SB_E_ORIGIN_NOT_ALLOWED, NULL, NULL, NULL);
        return;
    }
    sb_cors_headers(req, c);
    add(req, H2O_STRLIT("access-control-allow-methods"), methods, strlen(methods));
    h2o_iovec_t asked = header(req, H2O_STRLIT("access-control-request-headers"));
    if (sane_header_list(asked))
        add(req, H2O_STRLIT("access-control-allow-headers"), asked.base, asked.len);
    else
        add(req, H2O_STRLIT("access-control-allow-headers"), default_headers, sizeof(default_headers) - 1);
    add(req, H2O_STRLIT("access-control-max-age"), H2O_STRLIT("600"));
    sb_respond_body(req, c->access_log, worker, 204, NULL, NULL, 0);
}

int sb_cors_check(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->cors_origins == NULL)
        return 0;
    for (const char *p = c->cors_origins; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            ++p;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        int star = n == 1 && *p == '*';
        const char *host = n > 8 && strncmp(p, "https://", 8) == 0 ? p + 8 : n > 7 && strncmp(p, "http://", 7) == 0 ? p + 7 : NULL;
        /* an origin is scheme://host[:port]: a path or a trailing slash would never match what a browser sends */
        if (!star && (host == NULL || memchr(host, '/', n - (size_t)(host - p)) != NULL || n > ORIGIN_MAX)) {
            snprintf(err, errlen, "CORS_ORIGINS: \"%.*s\" is not an origin (write https://app.example.com, no path, or *)",
                     (int)(n < 80 ? n : 80), p);
            return -1;
        }
        p += n;
    }
    return 0;
}

int sb_cors_socket_allowed(h2o_req_t *req, const sb_config_t *c)
{
    h2o_iovec_t origin = header(req, H2O_STRLIT("origin"));
    if (origin.base == NULL)
        return 1; /* not a browser: the token is the whole check */
    return allowed_origin(req, c).base != NULL || same_origin(req, origin);
}
