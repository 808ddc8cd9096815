/*
 * Drives curl's multi-socket interface from a libuv loop (the shape of curl's
 * docs/examples/multi-uv.c): one uv_poll_t per socket curl asks about, one
 * uv_timer_t per multi handle for curl's timeout, and completion handling
 * after every call into curl, never inside curl's own callbacks. The
 * transfers are spread over as many multi handles ("shards") as they need,
 * SHARD_TRANSFERS at most each.
 */
#include <stdlib.h>

#include <h2o/memory.h>

#include "sb/alloc.h"
#include "sb/curl_uv.h"
#include "sb/log.h"

/*
 * Why shards. curl looks through every connection in a multi handle's cache
 * when a transfer is removed (for connect-only ones to close) and through the
 * host's connections when one starts (for one to reuse). With one multi
 * handle and thousands of kept provider connections that is thousands of
 * steps for every turn, and it grows with the open streams. A shard holds at
 * most SHARD_TRANSFERS transfers, so those walks stay that short however many
 * streams are open; a new transfer goes to the first shard with room,
 * preferring one where a transfer ended lately and left its connection idle
 * (so turns reuse connections across the shards), and a new shard is made
 * when all are full. Few transfers fill the first shard only, so over HTTP/2
 * they share its few connections.
 */
#define SHARD_TRANSFERS 512
/*
 * curl keeps at most CURLMOPT_MAXCONNECTS connections, in use or idle, and
 * closes the oldest idle one whenever a transfer ends above that. Over
 * HTTP/1.1 each transfer holds a connection of its own, so a cache smaller
 * than the transfers running closes connections as turns end, just before
 * the next turns need them, and each of those pays a new TCP (and TLS)
 * handshake before its first token. A shard's cache holds twice its transfers
 * (its idle connections stay until their maximum age, CURLOPT_MAXAGE_CONN,
 * set by the transfer's owner).
 */
#define SHARD_CONNECTIONS (2 * SHARD_TRANSFERS)
/*
 * Streams one HTTP/2 connection to a provider carries before curl opens
 * another; the provider's own SETTINGS_MAX_CONCURRENT_STREAMS may be lower
 * (100 to 256 is common), and then it decides. curl 7.88 runs every transfer
 * on a connection whenever its socket is readable, so more streams per
 * connection cost more per event, yet fewer connections cost less overall:
 * with 2,000 open streams to an HTTP/2 provider allowing 1,000 per
 * connection, 20 per connection made 732 connections (TLS handshakes, and
 * 74 KiB a stream), 100 made 75, 256 made 9 and 512 made 5, each larger
 * setting using less CPU and a lower first-token p99. A shard's transfers
 * fit one connection.
 */
#define MAX_STREAMS_PER_CONNECTION SHARD_TRANSFERS

struct sb_curlm_shard {
    CURLM *multi;
    uv_timer_t *timer;
    sb_curlm_t *m;
    unsigned active; /* transfers added */
    unsigned idle;   /* transfers that ended well since a transfer was last added here: connections likely idle */
    struct sb_curlm_shard *next_called; /* in m->called: curl ran in this shard since its transfers were last reaped */
    unsigned called : 1;
};

struct sb_curlm {
    uv_loop_t *loop;
    struct sb_curlm_shard **shards;
    unsigned nshards;
    long max_host_connections;
    unsigned depth;                /* > 0 while we are inside a call into curl */
    sb_xfer_t *cancelled;          /* cancels requested from inside curl, removed when depth drops to 0 */
    struct sb_curlm_shard *called; /* the shards to reap: only where curl ran can a transfer have completed */
    unsigned active;
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sb_curlm_shard *shard;
};

static void finish(sb_xfer_t *x, CURLcode result)
{
    struct sb_curlm_shard *s = x->_shard;
    curl_multi_remove_handle(s->multi, x->easy);
    x->_added = 0;
    --s->active;
    --s->m->active;
    if (result == CURLE_OK)
        ++s->idle;
    x->on_done(x, result);
}

/* Curl is about to run in `s`: its completed transfers are reaped afterwards. */
static void calling(struct sb_curlm_shard *s)
{
    if (s->called)
        return;
    s->called = 1;
    s->next_called = s->m->called;
    s->m->called = s;
}

/* Reaps completed transfers in the shards curl ran in, and carries out cancels requested while curl was running. */
static void after_curl(sb_curlm_t *m)
{
    if (m->depth != 0)
        return;
    while (m->called != NULL) { /* not every shard on every event: that would be work per shard per tick */
        struct sb_curlm_shard *s = m->called;
        m->called = s->next_called;
        s->called = 0;
        CURLMsg *msg;
        int pending;
        while ((msg = curl_multi_info_read(s->multi, &pending)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            sb_xfer_t *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (x != NULL && !x->_cancelling)
                finish(x, msg->data.result);
        }
    }
    while (m->cancelled != NULL) {
        sb_xfer_t *x = m->cancelled;
        m->cancelled = x->_next_cancelled;
        finish(x, CURLE_ABORTED_BY_CALLBACK);
    }
}

static void socket_action(struct sb_curlm_shard *s, curl_socket_t fd, int events)
{
    sb_curlm_t *m = s->m;
    int running;
    calling(s);
    ++m->depth;
    curl_multi_socket_action(s->multi, fd, events, &running);
    --m->depth;
    after_curl(m);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    struct sock_ctx *c = (struct sock_ctx *)poll;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(c->shard, c->fd, flags);
}

static void on_timer(uv_timer_t *timer)
{
    socket_action(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the shard's timer; curl must not be re-entered from here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct sb_curlm_shard *s = userp;
    if (timeout_ms < 0)
        uv_timer_stop(s->timer);
    else
        uv_timer_start(s->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one poll handle per socket, created on first use. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct sb_curlm_shard *s = userp;
    struct sock_ctx *c = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (c != NULL) {
            uv_poll_stop(&c->poll);
            uv_close((uv_handle_t *)&c->poll, (uv_close_cb)free);
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (c == NULL) {
        c = sb_calloc(1, sizeof(*c));
        c->fd = fd;
        c->shard = s;
        if (uv_poll_init_socket(s->m->loop, &c->poll, fd) != 0) {
            free(c);
            return -1;
        }
        curl_multi_assign(s->multi, fd, c);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&c->poll, events, on_poll);
    return 0;
}

static struct sb_curlm_shard *new_shard(sb_curlm_t *m)
{
    struct sb_curlm_shard *s = sb_calloc(1, sizeof(*s));
    s->m = m;
    s->multi = curl_multi_init();
    if (s->multi == NULL)
        h2o_fatal("curl_multi_init failed");
    s->timer = sb_calloc(1, sizeof(*s->timer));
    uv_timer_init(m->loop, s->timer);
    s->timer->data = s;
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    /* Several concurrent turns to one provider share HTTP/2 connections when offered. */
    curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)MAX_STREAMS_PER_CONNECTION);
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)SHARD_CONNECTIONS);
    if (m->max_host_connections > 0)
        curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, m->max_host_connections);
    m->shards = sb_realloc(m->shards, (m->nshards + 1) * sizeof(*m->shards));
    m->shards[m->nshards++] = s;
    return s;
}

/* The shard a new transfer goes to: the first with room where a connection is likely idle, else the first with room. */
static struct sb_curlm_shard *pick_shard(sb_curlm_t *m)
{
    struct sb_curlm_shard *room = NULL;
    for (unsigned i = 0; i < m->nshards; ++i) {
        struct sb_curlm_shard *s = m->shards[i];
        if (s->active >= SHARD_TRANSFERS)
            continue;
        if (s->idle > 0)
            return s;
        if (room == NULL)
            room = s;
    }
    return room != NULL ? room : new_shard(m);
}

sb_curlm_t *sb_curlm_create(uv_loop_t *loop, long max_host_connections)
{
    sb_curlm_t *m = sb_calloc(1, sizeof(*m));
    m->loop = loop;
    m->max_host_connections = max_host_connections;
    new_shard(m);
    return m;
}

void sb_curlm_destroy(sb_curlm_t *m)
{
    if (m == NULL)
        return;
    ++m->depth; /* socket callbacks fired by cleanup must not reap */
    for (unsigned i = 0; i < m->nshards; ++i) {
        curl_multi_cleanup(m->shards[i]->multi);
        uv_close((uv_handle_t *)m->shards[i]->timer, (uv_close_cb)free);
        free(m->shards[i]);
    }
    free(m->shards);
    free(m);
}

int sb_curlm_add(sb_curlm_t *m, sb_xfer_t *x)
{
    struct sb_curlm_shard *s = pick_shard(m);
    x->_m = m;
    x->_shard = s;
    x->_next_cancelled = NULL;
    x->_cancelling = 0;
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    if (curl_multi_add_handle(s->multi, x->easy) != CURLM_OK)
        return -1;
    x->_added = 1;
    ++s->active;
    ++m->active;
    if (s->idle > 0)
        --s->idle;
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
    calling(x->_shard);
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
