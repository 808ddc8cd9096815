/*
 * Drives a curl multi handle from a libuv loop (the shape of curl's
 * docs/examples/multi-uv.c): one uv_poll_t per socket curl asks about, one
 * uv_timer_t for curl's timeout, and completion handling after every call
 * into curl, never inside curl's own callbacks. Keeps curl's connection
 * cache as large as the most transfers that ran at once.
 */
#include <stdlib.h>

#include <h2o/memory.h>

#include "sb/alloc.h"
#include "sb/curl_uv.h"
#include "sb/log.h"

/* The connection cache never holds fewer than this many connections, and grows in steps of it. */
#define CACHE_STEP 256
/* Streams one HTTP/2 connection to a provider carries before curl opens another (the provider's own limit may be lower). */
#define MAX_STREAMS_PER_CONNECTION 100

struct sb_curlm {
    CURLM *multi;
    uv_loop_t *loop;
    uv_timer_t *timer;
    unsigned depth;       /* > 0 while we are inside a call into curl */
    sb_xfer_t *cancelled; /* cancels requested from inside curl, removed when depth drops to 0 */
    unsigned active;
    unsigned cache_size; /* CURLMOPT_MAXCONNECTS now */
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    sb_curlm_t *m;
};

static void finish(sb_xfer_t *x, CURLcode result)
{
    sb_curlm_t *m = x->_m;
    curl_multi_remove_handle(m->multi, x->easy);
    x->_added = 0;
    --m->active;
    x->on_done(x, result);
}

/* Reaps completed transfers and carries out cancels requested while curl was running. */
static void after_curl(sb_curlm_t *m)
{
    if (m->depth != 0)
        return;
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(m->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        sb_xfer_t *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL && !x->_cancelling)
            finish(x, msg->data.result);
    }
    while (m->cancelled != NULL) {
        sb_xfer_t *x = m->cancelled;
        m->cancelled = x->_next_cancelled;
        finish(x, CURLE_ABORTED_BY_CALLBACK);
    }
}

static void socket_action(sb_curlm_t *m, curl_socket_t fd, int events)
{
    int running;
    ++m->depth;
    curl_multi_socket_action(m->multi, fd, events, &running);
    --m->depth;
    after_curl(m);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    struct sock_ctx *s = (struct sock_ctx *)poll;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(s->m, s->fd, flags);
}

static void on_timer(uv_timer_t *timer)
{
    socket_action(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the timer; curl must not be re-entered from here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    sb_curlm_t *m = userp;
    if (timeout_ms < 0)
        uv_timer_stop(m->timer);
    else
        uv_timer_start(m->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/*
 * curl keeps at most CURLMOPT_MAXCONNECTS connections, in use or idle, and
 * closes the oldest idle one whenever a transfer ends above that. Over HTTP/1.1
 * every running transfer holds a connection of its own, so a cache smaller
 * than the transfers running closes connections as turns end, just before the
 * next turns need them, and each of those pays a new TCP (and TLS) handshake
 * before its first token. The cache is kept as large as the most transfers
 * that ran at once; idle connections are closed after their maximum age
 * instead (CURLOPT_MAXAGE_CONN, set by the transfer's owner).
 */
static void size_cache(sb_curlm_t *m)
{
    if (m->active <= m->cache_size)
        return;
    m->cache_size = (m->active + CACHE_STEP - 1) / CACHE_STEP * CACHE_STEP;
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)m->cache_size);
}

/* CURLMOPT_SOCKETFUNCTION: one poll handle per socket, created on first use. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    sb_curlm_t *m = userp;
    struct sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, (uv_close_cb)free);
            curl_multi_assign(m->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = sb_calloc(1, sizeof(*s));
        s->fd = fd;
        s->m = m;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(m->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

sb_curlm_t *sb_curlm_create(uv_loop_t *loop, long max_host_connections)
{
    sb_curlm_t *m = sb_calloc(1, sizeof(*m));
    m->loop = loop;
    m->multi = curl_multi_init();
    if (m->multi == NULL)
        h2o_fatal("curl_multi_init failed");
    m->timer = sb_calloc(1, sizeof(*m->timer));
    uv_timer_init(loop, m->timer);
    m->timer->data = m;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    /* Several concurrent turns to one provider share HTTP/2 connections when offered. */
    curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(m->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)MAX_STREAMS_PER_CONNECTION);
    /* curl's default cache is 4 x the transfers running now: it shrinks whenever load dips and the next turns pay a
     * new TCP and TLS handshake to the provider before their first token. It grows with the transfers instead. */
    m->cache_size = CACHE_STEP;
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)m->cache_size);
    if (max_host_connections > 0)
        curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    return m;
}

void sb_curlm_destroy(sb_curlm_t *m)
{
    if (m == NULL)
        return;
    ++m->depth; /* socket callbacks fired by cleanup must not reap */
    curl_multi_cleanup(m->multi);
    uv_close((uv_handle_t *)m->timer, (uv_close_cb)free);
    free(m);
}

int sb_curlm_add(sb_curlm_t *m, sb_xfer_t *x)
{
    x->_m = m;
    x->_next_cancelled = NULL;
    x->_cancelling = 0;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    if (curl_multi_add_handle(m->multi, x->easy) != CURLM_OK)
        return -1;
    x->_added = 1;
    ++m->active;
    size_cache(m);
    /* curl_multi_add_handle arms the timer; the transfer starts from the loop, so on_done never runs in here. */
    return 0;
}

void sb_curlm_cancel(sb_xfer_t *x)
{
    sb_curlm_t *m = x->_m;
    if (!x->_added || x->_cancelling)
        return;
    x->_cancelling = 1;
    if (m->depth == 0) {
        finish(x, CURLE_ABORTED_BY_CALLBACK);
        return;
    }
    x->_next_cancelled = m->cancelled;
    m->cancelled = x;
}

void sb_curlm_unpause(sb_xfer_t *x)
{
    sb_curlm_t *m = x->_m;
    if (!x->_added || x->_cancelling)
        return;
    ++m->depth;
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
    --m->depth;
    after_curl(m);
}

unsigned sb_curlm_active(sb_curlm_t *m)
{
    return m->active;
}

uv_loop_t *sb_curlm_loop(sb_curlm_t *m)
{
    return m->loop;
}
