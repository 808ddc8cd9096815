/*
 * switchboard's one client for outbound HTTP calls other than the model's
 * stream: retrieval (embeddings, vector stores), tools (Agora Signaling) and
 * switchboard-ingest (its stores' administration). One request, its whole
 * answer kept, bounded. On a worker it runs on the worker's curl multi and
 * never blocks; in a command-line tool it may block.
 */
#ifndef SB_FETCH_H
#define SB_FETCH_H

#include <curl/curl.h>
#include <stddef.h>

#include "sb/buf.h"
#include "sb/curl_uv.h"

typedef struct sb_fetch_req {
    const char *method;         /* NULL: POST when there is a body, else GET ("PUT", "DELETE" send a body too) */
    const char *url;            /* copied by curl */
    struct curl_slist *headers; /* taken (freed when the call ends); NULL: none. A body adds "Content-Type: application/json". */
    char *body;                 /* sb_fetch_start: taken (free()); sb_fetch_run: borrowed. NULL: none */
    size_t len;
    const char *user, *password; /* Basic auth, copied by curl; NULL: none */
    long connect_timeout_ms;     /* 0: curl's own */
    long timeout_ms;             /* the whole call; 0: no limit */
    size_t max_response;         /* bytes of the answer kept: past them the call ends with CURLE_WRITE_ERROR */
    const char *user_agent;      /* NULL: "switchboard/" SB_VERSION */
} sb_fetch_req_t;

typedef struct sb_fetch sb_fetch_t;

/*
 * How a call ended: curl's code (CURLE_OK when a whole answer arrived, of any
 * status), the HTTP status (0 without an answer) and the answer, `len` bytes
 * and a NUL ("" without one). The body is the callee's to change in place
 * until it returns. Called exactly once unless cancelled, always from the loop.
 */
typedef void (*sb_fetch_cb)(void *data, CURLcode result, long status, char *body, size_t len);

/* Starts `req` (its headers and body taken) on the worker's curl multi. */
sb_fetch_t *sb_fetch_start(sb_curlm_t *m, sb_fetch_req_t *req, sb_fetch_cb done, void *data);
/* Forgets the call: done() will not run; the transfer ends at once. */
void sb_fetch_cancel(sb_fetch_t *f);

/*
 * Runs `req` to its end, blocking (command-line tools only): its headers are
 * taken, its body borrowed. The answer goes to `response` (initialized here,
 * with max_response as its ceiling; the caller disposes of it), the status to
 * *status; curl's words for a failure to errbuf (CURL_ERROR_SIZE bytes).
 */
CURLcode sb_fetch_run(sb_fetch_req_t *req, long *status, sb_buf_t *response, char *errbuf);

/* Appends `s` with everything but RFC 3986's unreserved characters percent-encoded (a path segment or query value). */
int sb_fetch_append_escaped(sb_buf_t *out, const char *s);

#endif
