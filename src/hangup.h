/*
 * Hearing from the kernel that an HTTP/1 caller hung up. h2o stops reading an
 * HTTP/1 socket while it handles a request, so a caller who barges in is
 * invisible to it until its next write. A worker's watches share one epoll
 * set of their own, polled by one libuv handle, that asks about each watched
 * socket for the peer's FIN or reset (EPOLLRDHUP and errors) only: no
 * descriptor, handle or timer per open stream, and no work for one until
 * something happens. HTTP/2 needs none: h2o reads its sockets throughout and
 * stops the streams itself.
 */
#ifndef SB_HANGUP_H
#define SB_HANGUP_H

#include <uv.h>

typedef struct sb_hangups sb_hangups_t;
typedef struct sb_hangup sb_hangup_t;

typedef struct sb_hangup_cbs {
    /* The caller is gone (a reset, or a full close). Called once; the watch is stopped by then. */
    void (*gone)(void *data);
    /*
     * The caller closed its sending side: it may be gone or only done
     * sending (shutdown(SHUT_WR)) and still reading. Ask it with bytes of
     * the answer's own format (a closed socket answers them with a reset):
     * return 1 when something went out, 0 when the channel has nothing to
     * send yet (the watch then sends an interim "100 Continue" itself).
     */
    int (*ask)(void *data);
} sb_hangup_cbs_t;

/* A worker's set of watches, on `loop`. NULL when the kernel will not make one (logged): watches are then not made. */
sb_hangups_t *sb_hangups_create(uv_loop_t *loop);

/*
 * Watches the HTTP/1 connection on `fd` (borrowed: it must stay open until
 * sb_hangup_stop, which h2o's order of disposing a request before closing its
 * socket gives). `http11`: the client speaks HTTP/1.1, so an interim response
 * may be sent to it; an HTTP/1.0 client's FIN is taken as its hang-up. NULL
 * when `set` is NULL or the descriptor cannot be watched (the caller then
 * goes without).
 */
sb_hangup_t *sb_hangup_watch(sb_hangups_t *set, int fd, int http11, const sb_hangup_cbs_t *cbs, void *data);
/* Stops watching and frees the watch; no callback follows. NULL does nothing. */
void sb_hangup_stop(sb_hangup_t *h);

#endif
