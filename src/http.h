/*
 * HTTP surface: the route table, OpenAI-shaped error responses and the
 * access log. Handlers run on the worker's loop thread.
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <h2o.h>

#include "sb/error.h"
#include "worker.h"

/* Registers switchboard's handler (and the error-body filter) on `hostconf`. */
void sb_http_register(h2o_hostconf_t *hostconf);

/*
 * Answers `req` with the error's status and {"error":{message,type,param,code}}.
 * message/param may be NULL (the kind's message, JSON null). retry_after, when
 * set, becomes a Retry-After header. Must be called before a response started.
 */
void sb_http_send_error(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *retry_after);

/* Sends `len` bytes of JSON (copied) as the whole response body, with its length, so the connection stays open. */
void sb_http_send_json(h2o_req_t *req, const char *body, size_t len);

typedef struct sb_access {
    const char *request_id;
    const char *method;
    const char *route;
    const char *model; /* NULL when none */
    int status;
    double ttfb_ms; /* < 0: no byte was sent */
    double total_ms;
    size_t bytes;
    long long prompt_tokens; /* < 0: unknown */
    long long completion_tokens;
    const char *end;       /* done, client_gone, timeout, upstream_error, rejected, shutdown */
    const char *retrieval; /* hit, miss, timeout, error, off; NULL for requests that are not turns */
    const char *shadowed;  /* switchboard's tools the client's own of the same name replaced, comma-separated, or NULL */
} sb_access_t;

/* Writes one access-log line (when ACCESS_LOG is on). Never includes a header or a body. */
void sb_access_log(sb_worker_t *w, const sb_access_t *a);

/* Fills `out` (at least 33 bytes) with a fresh random request id. */
void sb_http_new_id(char *out, size_t len);

#endif
