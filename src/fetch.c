/*
 * The outbound HTTP client (sb/fetch.h). One function configures every easy
 * handle, so a call from retrieval, a tool or ingest is made the same way:
 * bounded answer, no 100-continue round trip, no signals, http(s) only.
 */
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "sb/alloc.h"
#include "sb/fetch.h"

struct sb_fetch {
    sb_xfer_t xfer;
    struct curl_slist *headers;
    char *body;
    sb_buf_t response;
    uv_timer_t *failed; /* set when the transfer could not start: the failure is reported from the loop */
    sb_fetch_cb done;   /* NULL once cancelled */
    void *data;
};

static size_t on_write(char *p, size_t size, size_t nmemb, void *userp)
{
    sb_buf_t *b = userp;
    size_t len = size * nmemb;
    /* returning short aborts the transfer with CURLE_WRITE_ERROR: the answer was too large */
    return sb_buf_append(b, p, len) == 0 ? len : 0;
}

/* Configures `e` for `req`; the headers gain what a body needs. Returns the header list to free when the call ends. */
static struct curl_slist *configure(CURL *e, sb_fetch_req_t *req, sb_buf_t *response)
{
    struct curl_slist *h = req->headers;
    req->headers = NULL;
    if (req->body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        /* never wait for "100 Continue" (a round trip, or a second): curl asks for it past a body size, 1 MB now but 1 KB
         * in older releases, where a 1536-dim vector (18 KB) would pay it on every query */
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
    }
    if (req->method != NULL)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (req->user != NULL) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, req->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, req->password);
    }
    sb_buf_init(response, req->max_response);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, response);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (req->connect_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    if (req->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, req->user_agent != NULL ? req->user_agent : "switchboard/" SB_VERSION);
    return h;
}

static void on_handle_closed(uv_handle_t *h)
{
    free(h);
}

static void fetch_free(sb_fetch_t *f)
{
    curl_easy_cleanup(f->xfer.easy);
    curl_slist_free_all(f->headers);
    free(f->body);
    sb_buf_dispose(&f->response);
    if (f->failed != NULL)
        uv_close((uv_handle_t *)f->failed, on_handle_closed);
    free(f);
}

static void on_xfer_done(sb_xfer_t *x, CURLcode result)
{
    sb_fetch_t *f = H2O_STRUCT_FROM_MEMBER(sb_fetch_t, xfer, x);
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (f->done != NULL) {
        char empty[1] = "";
        f->done(f->data, result, status, f->response.base != NULL ? f->response.base : empty, f->response.len);
    }
    fetch_free(f);
}

static void on_start_failed(uv_timer_t *t)
{
    sb_fetch_t *f = t->data;
    sb_fetch_cb done = f->done;
    void *data = f->data;
    fetch_free(f);
    char empty[1] = "";
    done(data, CURLE_FAILED_INIT, 0, empty, 0);
}

sb_fetch_t *sb_fetch_start(sb_curlm_t *m, sb_fetch_req_t *req, sb_fetch_cb done, void *data)
{
    sb_fetch_t *f = sb_alloc(sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->done = done;
    f->data = data;
    f->body = req->body;
    CURL *e = f->xfer.easy = curl_easy_init();
    if (e == NULL)
        h2o_fatal("curl_easy_init");
    f->headers = configure(e, req, &f->response);
    req->body = NULL;
    f->xfer.on_done = on_xfer_done;
    if (sb_curlm_add(m, &f->xfer) != 0) { /* the owner hears of it from the loop, never from in here */
        f->failed = sb_alloc(sizeof(*f->failed));
        uv_timer_init(sb_curlm_loop(m), f->failed);
        f->failed->data = f;
        uv_timer_start(f->failed, on_start_failed, 0, 0);
    }
    return f;
}

void sb_fetch_cancel(sb_fetch_t *f)
{
    f->done = NULL;
    if (f->failed != NULL) {
        uv_timer_stop(f->failed);
        fetch_free(f);
        return;
    }
    sb_curlm_cancel(&f->xfer); /* on_xfer_done frees it, now or once curl returns */
}

CURLcode sb_fetch_run(sb_fetch_req_t *req, long *status, sb_buf_t *response, char *errbuf)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        h2o_fatal("curl_easy_init");
    struct curl_slist *h = configure(e, req, response);
    errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    return rc;
}

int sb_fetch_append_escaped(sb_buf_t *out, const char *s)
{
    char *esc = curl_easy_escape(NULL, s, 0); /* RFC 3986: all but unreserved characters percent-encoded */
    if (esc == NULL)
        h2o_fatal("curl_easy_escape");
    int rc = sb_buf_appendz(out, esc);
    curl_free(esc);
    return rc;
}
