/*
 * The hang-up watch (hangup.h). A FIN alone cannot tell a caller who left
 * from one that only closed its sending side, but a closed socket answers
 * bytes with a reset: after a FIN the watch has the channel ask (or sends an
 * interim response), then reads the connection's state RECHECK_MS later, and
 * asks again every ASK_EVERY_MS for as long as the half-closed caller stays.
 * epoll reports the FIN level-triggered, so the poll stops once it was heard.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o/memory.h>

#include "hangup.h"
#include "sb/alloc.h"

#define RECHECK_MS 3     /* a reset answers within a round trip */
#define ASK_EVERY_MS 200 /* a half-closed caller is asked again this often */

struct sb_hangup {
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int http11;
    int fin;      /* the caller closed its sending side */
    int checking; /* the timer looks for the reset an ask provoked (else it asks again) */
    int closing;  /* handles still to close before the descriptor may go */
    sb_hangup_cbs_t cbs;
    void *data;
};

static void on_closed(uv_handle_t *h)
{
    sb_hangup_t *w = h->data;
    if (--w->closing > 0)
        return;
    close(w->fd); /* only now: a descriptor must not close while libuv polls it */
    free(w);
}

static void stop(sb_hangup_t *w)
{
    w->closing = 2;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

static void gone(sb_hangup_t *w)
{
    void (*cb)(void *) = w->cbs.gone;
    void *data = w->data;
    stop(w);
    cb(data);
}

/* Whether a reset has come since the FIN: the connection is then CLOSE. */
static int reset(sb_hangup_t *w)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(w->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE;
}

static void on_timer(uv_timer_t *timer);

/* Asks the half-closed caller whether it still reads, and looks at the answer soon. */
static void ask(sb_hangup_t *w)
{
    if (!w->cbs.ask(w->data)) {
        /* Nothing of the answer is on the wire yet: only an interim response may go out, and clients must read (and
         * skip) any number of them. h2o writes nothing on the connection before the answer starts. */
        static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send(w->fd, interim, sizeof(interim) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            gone(w);
            return;
        }
    }
    w->checking = 1;
    uv_timer_start(&w->timer, on_timer, RECHECK_MS, 0);
}

static void on_timer(uv_timer_t *timer)
{
    sb_hangup_t *w = timer->data;
    if (!w->checking) {
        ask(w);
        return;
    }
    if (reset(w)) {
        gone(w);
        return;
    }
    /* still there: it only closed its sending side. It may close for good later: ask again then. */
    w->checking = 0;
    uv_timer_start(&w->timer, on_timer, ASK_EVERY_MS, 0);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    sb_hangup_t *w = poll->data;
    if (status < 0 || reset(w) || !w->http11) { /* a reset, an error, or an HTTP/1.0 client's FIN: gone */
        gone(w);
        return;
    }
    uv_poll_stop(&w->poll); /* the FIN stays reported (level-triggered): from here on the timer asks */
    w->fin = 1;
    ask(w);
}

sb_hangup_t *sb_hangup_watch(uv_loop_t *loop, int fd, int http11, const sb_hangup_cbs_t *cbs, void *data)
{
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* libuv polls a descriptor once: h2o's is taken */
    if (dup < 0)
        return NULL;
    sb_hangup_t *w = sb_alloc(sizeof(*w));
    *w = (sb_hangup_t){.fd = dup, .http11 = http11, .cbs = *cbs, .data = data};
    if (uv_poll_init(loop, &w->poll, dup) != 0) {
        close(dup);
        free(w);
        return NULL;
    }
    uv_timer_init(loop, &w->timer);
    w->poll.data = w->timer.data = w;
    uv_poll_start(&w->poll, UV_DISCONNECT, on_poll);
    return w;
}

void sb_hangup_stop(sb_hangup_t *w)
{
    if (w != NULL)
        stop(w);
}
