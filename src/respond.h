/*
 * What every handler and channel answers with when it is not a turn's own
 * stream: OpenAI-shaped error bodies, whole JSON bodies, request ids, and
 * the access log line. Below the routes, the channels and the turn; knows
 * none of them.
 */
#ifndef SB_RESPOND_H
#define SB_RESPOND_H

#include <h2o.h>

#include "sb/error.h"

/*
 * Answers `req` with the error's status and {"error":{message,type,param,code}}.
 * message/param may be NULL (the kind's message, JSON null). retry_after, when
 * set, becomes a Retry-After header. Must be called before a response started.
 */
void sb_respond_error(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *retry_after);
/* The OpenAI error body for `e`, allocated from `pool`. */
h2o_iovec_t sb_respond_error_body(h2o_mem_pool_t *pool, sb_error_t e, const char *message, const char *param);
/* Sends `len` bytes of JSON (copied) as the whole 200 response, with its length, so the connection stays open. */
void sb_respond_json(h2o_req_t *req, const char *body, size_t len);
/* Fills `out` (len - 1 characters and a NUL, at most 32) with a fresh random request id. */
void sb_respond_new_id(char *out, size_t len);

/* One line of the access log: what a request was and how it ended. Never a header or a body. */
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
    const char *end;        /* done, client_gone, timeout, upstream_error, rejected, shutdown */
    const char *retrieval;  /* hit, miss, timeout, error, off; NULL for requests that are not turns */
    const char *shadowed;   /* switchboard's tools the client's own of the same name replaced, comma-separated, or NULL */
    const char *agent;      /* the turn's agent (agent_route.h), NULL with agents off or for requests that are not turns */
    const char *agent_from; /* the agent it took over from, NULL when none */
    const char *routed_by;  /* explicit, classifier, sticky, default, router */
    const char *strategy;   /* concise, analytical, tool-heavy, wrapping-up */
    const char *router;     /* the LLM router's outcome when it was asked (chosen, timeout, error, unusable), else NULL */
    double router_ms;       /* and how long it took */
    unsigned worker;
} sb_access_t;

/*
 * Answers a request that is not a turn with `json` (e == SB_OK, status 200)
 * or the error's body, and logs it (ending "done" or "rejected") when
 * `log` is set; `worker` names the worker in the line.
 */
void sb_respond_answer(h2o_req_t *req, int log, unsigned worker, sb_error_t e, const char *message, const char *param,
                       const char *json);

/*
 * Answers a request that is not a turn with a 2xx `status` and `len` bytes of
 * `body` (copied) of `content_type` (NULL when there is no body: a 204, or a
 * 304), and logs it like sb_respond_answer.
 */
void sb_respond_body(h2o_req_t *req, int log, unsigned worker, int status, const char *content_type, const char *body, size_t len);

/* Writes one access-log line to stdout (one write, so workers' lines never interleave) when `enabled`. Any thread. */
void sb_access_log(int enabled, const sb_access_t *a);

#endif
