/*
 * The hang-up watch (hangup.h). A FIN alone cannot tell a caller who left
 * from one that only closed its sending side, but a closed socket answers
 * bytes with a reset: after a FIN the watch has the channel ask (or sends an
 * interim response), then reads the connection's state RECHECK_MS later, and
 * asks again every ASK_EVERY_MS for as long as the half-closed caller stays.
 * The set reports the FIN level-triggered, so a socket leaves it once its FIN
 * was heard; from then on a timer, made then, does the asking.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o/memory.h>

#include "hangup.h"
#include "sb/alloc.h"
#include "sb/log.h"

#define RECHECK_MS 3       /* a reset answers within a round trip */
#define ASK_EVERY_MS 200   /* a half-closed caller is asked again this often */
#define EVENTS_PER_TICK 64 /* hang-ups handled per loop iteration; more wait for the next */

struct sb_hangups {
    uv_poll_t poll; /* on epfd: readable when a watched socket has news */
    int epfd;
    uv_loop_t *loop;
};

struct sb_hangup {
    sb_hangups_t *set;
    int fd;
    int http11;
    int in_set;        /* fd is in the set (until its FIN was heard) */
    int checking;      /* the timer looks for the reset an ask provoked (else it asks again) */
    uv_timer_t *timer; /* made when the FIN is heard */
    sb_hangup_cbs_t cbs;
    void *data;
};

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void stop(sb_hangup_t *w)
{
    if (w->in_set)
        epoll_ctl(w->set->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    if (w->timer != NULL) {
        uv_timer_stop(w->timer);
        uv_close((uv_handle_t *)w->timer, on_timer_closed);
    }
    free(w);
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
    uv_timer_start(w->timer, on_timer, RECHECK_MS, 0);
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
    uv_timer_start(w->timer, on_timer, ASK_EVERY_MS, 0);
}

/* The set says the caller on `w` sent a FIN, or its socket failed. */
static void on_news(sb_hangup_t *w, uint32_t events)
{
    if ((events & EPOLLERR) || reset(w) || !w->http11) { /* a reset, an error, or an HTTP/1.0 client's FIN: gone */
        gone(w);
        return;
    }
    epoll_ctl(w->set->epfd, EPOLL_CTL_DEL, w->fd, NULL); /* the FIN stays reported (level-triggered): the timer asks */
    w->in_set = 0;
    w->timer = sb_alloc(sizeof(*w->timer));
    uv_timer_init(w->set->loop, w->timer);
    w->timer->data = w;
    ask(w);
}

static void on_set_ready(uv_poll_t *poll, int status, int events)
{
    sb_hangups_t *set = poll->data;
    /* One at a time: a callback may stop other watches, and an event already read for one would then point at freed
     * memory; one taken from the set now is for a watch that is still in it. */
    for (int n = 0; n < EVENTS_PER_TICK; ++n) {
        struct epoll_event ev;
        if (epoll_wait(set->epfd, &ev, 1, 0) != 1)
            return;
        on_news(ev.data.ptr, ev.events);
    }
}

sb_hangups_t *sb_hangups_create(uv_loop_t *loop)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        sb_log_warn("cannot make the hang-up watch's epoll set (%s): callers who hang up are noticed at the next write",
                    strerror(errno));
        return NULL;
    }
    sb_hangups_t *set = sb_alloc(sizeof(*set));
    set->epfd = epfd;
    set->loop = loop;
    uv_poll_init(loop, &set->poll, epfd);
    set->poll.data = set;
    uv_poll_start(&set->poll, UV_READABLE, on_set_ready);
    return set;
}

sb_hangup_t *sb_hangup_watch(sb_hangups_t *set, int fd, int http11, const sb_hangup_cbs_t *cbs, void *data)
{
    if (set == NULL)
        return NULL;
    sb_hangup_t *w = sb_alloc(sizeof(*w));
    *w = (sb_hangup_t){.set = set, .fd = fd, .http11 = http11, .in_set = 1, .cbs = *cbs, .data = data};
    /* Only the peer's FIN (EPOLLRDHUP) and errors, always reported: a pipelined request's bytes wake nothing. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = w};
    if (epoll_ctl(set->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void sb_hangup_stop(sb_hangup_t *w)
{
    if (w != NULL)
        stop(w);
}
