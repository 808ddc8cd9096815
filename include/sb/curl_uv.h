/*
 * libcurl's multi-socket interface driven by a libuv loop: one sb_curlm_t per
 * worker carries every outbound HTTP call of that worker. Inside, the
 * transfers are spread over curl multi handles of at most a few hundred each,
 * so curl's walks over its connection cache stay short however many streams
 * are open; each keeps twice its transfers' connections (idle ones age out by
 * each transfer's CURLOPT_MAXAGE_CONN), and transfers to one host share
 * HTTP/2 connections. All entry points must be called on the loop's thread.
 */
#ifndef SB_CURL_UV_H
#define SB_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct sb_curlm sb_curlm_t;
typedef struct sb_xfer sb_xfer_t;

/*
 * Called exactly once per transfer that was added: when it completes (result is
 * curl's code), or after sb_curlm_cancel (result CURLE_ABORTED_BY_CALLBACK). The
 * easy handle has been removed from the multi handle by then, so the callee may
 * clean it up and free the object embedding the sb_xfer_t. Never called from
 * inside a curl callback.
 */
typedef void (*sb_xfer_done_cb)(sb_xfer_t *x, CURLcode result);

struct sb_xfer {
    CURL *easy;              /* set by the owner, configured before sb_curlm_add */
    sb_xfer_done_cb on_done; /* set by the owner */
    /* private */
    sb_curlm_t *_m;
    struct sb_curlm_shard *_shard;
    sb_xfer_t *_next_cancelled;
    unsigned _added : 1, _cancelling : 1;
};

/* Creates the multi handles for `loop`. max_host_connections caps connections per host and multi handle (0 = no cap). */
sb_curlm_t *sb_curlm_create(uv_loop_t *loop, long max_host_connections);
/* Closes the multi handle. All transfers must have completed or been cancelled; handles close asynchronously. */
void sb_curlm_destroy(sb_curlm_t *m);
/* Starts a configured transfer. Returns 0, or -1 (nothing started, on_done not called). */
int sb_curlm_add(sb_curlm_t *m, sb_xfer_t *x);
/*
 * Ends a running transfer at once (its connection is closed if mid-response).
 * Safe anywhere, also inside this transfer's own curl callbacks: there the
 * removal waits until curl returns. on_done follows (maybe before this returns).
 */
void sb_curlm_cancel(sb_xfer_t *x);
/* Resumes a transfer paused with CURL_WRITEFUNC_PAUSE; its write callback may run before this returns. */
void sb_curlm_unpause(sb_xfer_t *x);
/* The loop the multi handle runs on. */
uv_loop_t *sb_curlm_loop(sb_curlm_t *m);
/* Transfers currently added. */
unsigned sb_curlm_active(sb_curlm_t *m);

#endif
