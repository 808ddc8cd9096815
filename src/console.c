/*
 * Serving the browser console: the files tools/embed.py compiled in, each
 * with the headers that keep a page holding a session token safe (a policy
 * that runs only switchboard's own script and connects only to switchboard),
 * and an ETag so a browser asks again cheaply (the files change only with
 * the binary).
 */
#include <string.h>

#include "console.h"
#include "respond.h"
#include "worker.h"

/*
 * The page runs its own script and style and nothing else: no inline code
 * (a token in the page must not be readable by injected script), nothing
 * from another origin, no frames around it, no form posted anywhere. Its
 * socket goes to switchboard itself ('self' does not cover ws: in every
 * browser, hence the schemes).
 */
static const char policy[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                             "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static void refuse(h2o_req_t *req, const char *message)
{
    sb_worker_answer(req, SB_E_NOT_FOUND, message, NULL, NULL);
}

/* The file a path names: /console and /console/ the page, /console/<name> a file by name; NULL when none. */
static const sb_console_asset_t *asset_of(h2o_iovec_t path)
{
    size_t plen = sizeof(SB_CONSOLE_PREFIX) - 1;
    h2o_iovec_t name = h2o_iovec_init(H2O_STRLIT("index.html"));
    if (path.len > plen && memcmp(path.base, SB_CONSOLE_PREFIX, plen) == 0)
        name = h2o_iovec_init(path.base + plen, path.len - plen);
    else if (!h2o_memis(path.base, path.len, H2O_STRLIT(SB_CONSOLE_PATH)) &&
             !h2o_memis(path.base, path.len, H2O_STRLIT(SB_CONSOLE_PREFIX)))
        return NULL;
    for (size_t i = 0; i < sb_console_asset_count; ++i)
        if (h2o_memis(name.base, name.len, sb_console_assets[i].name, strlen(sb_console_assets[i].name)))
            return &sb_console_assets[i];
    return NULL;
}

/* Whether If-None-Match names the file's ETag (weak comparison, RFC 9110 13.1.2: a W/ prefix matches too) or is "*". */
static int not_modified(h2o_req_t *req, const sb_console_asset_t *a)
{
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (at < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[at].value;
    size_t n = strlen(a->etag);
    for (size_t i = 0; i < v.len; ++i)
        if (v.base[i] == '*' || (v.len - i >= n && memcmp(v.base + i, a->etag, n) == 0))
            return 1;
    return 0;
}

static void add(h2o_req_t *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 0, NULL, value, vlen);
}

void sb_console_handle(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    if (!c->console) {
        refuse(req, "the console is off (CONSOLE=true turns it on)");
        return;
    }
    if (!c->sessions) {
        refuse(req, "the console needs the session API (SESSIONS=true)");
        return;
    }
    const sb_console_asset_t *a = asset_of(req->path_normalized);
    if (a == NULL) {
        refuse(req, NULL);
        return;
    }
    add(req, H2O_STRLIT("etag"), a->etag, strlen(a->etag));
    add(req, H2O_STRLIT("cache-control"), H2O_STRLIT("no-cache")); /* kept, but asked about every time: a rebuild shows at once */
    add(req, H2O_STRLIT("x-content-type-options"), H2O_STRLIT("nosniff"));
    add(req, H2O_STRLIT("content-security-policy"), policy, sizeof(policy) - 1);
    add(req, H2O_STRLIT("referrer-policy"), H2O_STRLIT("no-referrer"));
    if (not_modified(req, a)) {
        sb_respond_body(req, c->access_log, w->id, 304, NULL, NULL, 0);
        return;
    }
    sb_respond_body(req, c->access_log, w->id, 200, a->content_type, a->data, a->len);
}
