/*
 * Worker threads. Each owns a libuv loop with its h2o context, its own
 * SO_REUSEPORT listener (the kernel spreads connections over workers), its
 * curl multi handle and Postgres pool, the list of open work it drains on
 * SIGTERM, and the lingering close of connections whose body it refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eventlog.h"
#include "hangup.h"
#include "limit.h"
#include "memory.h"
#include "respond.h"
#include "summary.h"
#include "metrics.h"
#include "worker.h"
#include "sb/alloc.h"
#include "sb/log.h"

#define DRAIN_POLL_MS 10
/* After the drain deadline, how long the streams it ended have to take their last bytes before the process exits. */
#define DRAIN_FLUSH_MS 1000

/* A listening socket on HOST:`portno` shared with the other workers (SO_REUSEPORT) in *fd; 0 or -errno. */
static int open_listener(sb_worker_t *w, unsigned portno, int *out)
{
    const sb_config_t *c = w->config;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai;
    char port[8];
    snprintf(port, sizeof(port), "%u", portno);
    int rc = getaddrinfo(c->host, port, &hints, &ai);
    if (rc != 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, 4096) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -err;
    }
    freeaddrinfo(ai);
    *out = fd;
    return 0;
}

/* --- connections, and the lingering close of one whose request body was refused ---------------- */

/*
 * A client still sending a body that was refused (413 before it was read)
 * would get a reset instead of the answer if the socket closed with its bytes
 * unread: the kernel discards what the client has not read yet. So the
 * socket is kept (a duplicate descriptor outlives h2o's close), its sending
 * side shut once the answer is out, and what the client still sends read and
 * dropped, for at most LINGER_MS or LINGER_MAX_BYTES.
 */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (16u << 20)

struct conn {
    uv_tcp_t tcp;
    sb_worker_t *w;
    int fd;
    int linger_fd; /* >= 0: linger on this duplicate once h2o has closed the connection */
};

struct lingering {
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int ending, closed;
    size_t dropped;
};

static void on_linger_closed(uv_handle_t *h)
{
    struct lingering *l = h->data;
    if (++l->closed < 2)
        return;
    close(l->fd); /* only now: a descriptor must not close while libuv polls it */
    free(l);
}

static void linger_end(struct lingering *l)
{
    if (l->ending)
        return;
    l->ending = 1;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_linger_closed);
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_linger_closed);
}

static void on_linger_readable(uv_poll_t *poll, int status, int events)
{
    struct lingering *l = poll->data;
    char buf[16384];
    ssize_t n = 0;
    while (status == 0 && (n = read(l->fd, buf, sizeof(buf))) > 0)
        if ((l->dropped += (size_t)n) > LINGER_MAX_BYTES)
            break;
    if (status != 0 || l->dropped > LINGER_MAX_BYTES || n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        linger_end(l);
}

static void on_linger_timeout(uv_timer_t *timer)
{
    linger_end(timer->data);
}

static void linger(sb_worker_t *w, int fd)
{
    struct lingering *l = sb_calloc(1, sizeof(*l));
    l->fd = fd;
    shutdown(fd, SHUT_WR); /* FIN after the answer, which h2o has written in full */
    uv_poll_init(&w->loop, &l->poll, fd);
    uv_timer_init(&w->loop, &l->timer);
    l->poll.data = l->timer.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_linger_readable);
    uv_timer_start(&l->timer, on_linger_timeout, LINGER_MS, 0);
}

int sb_worker_check_port(const sb_config_t *c, unsigned portno)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai;
    char port[8];
    snprintf(port, sizeof(port), "%u", portno);
    if (getaddrinfo(c->host, port, &hints, &ai) != 0)
        return -EINVAL;
    /* Without SO_REUSEPORT this bind fails while anyone listens on the port, also another switchboard that would
     * otherwise share it (and its traffic) with this one. SO_REUSEADDR lets a restart reuse a port in TIME_WAIT. */
    int one = 1, rc = 0;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, tcp, (uv_tcp_t *)h);
    sb_worker_t *w = c->w;
    /* libuv closed the descriptor before this callback: its number may already be a new connection's */
    if (c->fd >= 0 && (size_t)c->fd < w->nconns && w->conns[c->fd] == c)
        w->conns[c->fd] = NULL;
    if (c->linger_fd >= 0)
        linger(w, c->linger_fd);
    free(c);
}

void sb_worker_linger_on_close(sb_worker_t *w, int fd)
{
    struct conn *c = fd >= 0 && (size_t)fd < w->nconns ? w->conns[fd] : NULL;
    if (c == NULL || c->linger_fd >= 0)
        return;
    c->linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* -1 on failure: the connection closes as h2o closes it */
}

/* A new connection on descriptor `fd`, taken by h2o. */
static void take(sb_listener_t *l, int fd)
{
    sb_worker_t *w = l->w;
    struct conn *c = sb_alloc(sizeof(*c));
    c->w = w;
    c->fd = c->linger_fd = -1;
    uv_tcp_t *conn = &c->tcp;
    uv_tcp_init(&w->loop, conn);
    if (uv_tcp_open(conn, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)conn, on_conn_closed);
        return;
    }
    if ((size_t)fd >= w->nconns) {
        size_t n = (size_t)fd + 1 > w->nconns * 2 ? (size_t)fd + 1 : w->nconns * 2;
        w->conns = sb_realloc(w->conns, n * sizeof(*w->conns));
        memset(w->conns + w->nconns, 0, (n - w->nconns) * sizeof(*w->conns));
        w->nconns = n;
    }
    c->fd = fd;
    w->conns[fd] = c;
    /* Every token is written as soon as it arrives: Nagle would hold small writes back. */
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_closed);
    h2o_accept(l->accept_ctx, sock);
}

static void on_listener(uv_poll_t *poll, int status, int events);

static void on_backoff_over(uv_timer_t *timer)
{
    sb_listener_t *l = timer->data;
    uv_poll_start(&l->poll, UV_READABLE, on_listener);
}

/*
 * Accepting here rather than through libuv's uv_listen: when descriptors run
 * out, libuv closes the connections it cannot take without telling anyone,
 * and a server turning callers away must say why. So: up to ACCEPT_BATCH
 * connections per readiness (the rest wait for the next loop iteration, so a
 * flood of connections does not hold up the streams already open), and on a
 * limit, one log line naming it (limit.c). Out of descriptors, the spare one
 * is let go of to accept and close what waits (the kernel would otherwise
 * report the listener ready on every iteration), then taken back; out of
 * kernel memory, accepting pauses for ACCEPT_BACKOFF_MS.
 */
#define ACCEPT_BATCH 256
#define ACCEPT_BACKOFF_MS 100

static void refuse_waiting(sb_listener_t *l)
{
    sb_worker_t *w = l->w;
    if (w->spare_fd < 0)
        return;
    close(w->spare_fd);
    int fd;
    while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 || errno == EINTR)
        if (fd >= 0)
            close(fd);
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_listener(uv_poll_t *poll, int status, int events)
{
    sb_listener_t *l = poll->data;
    if (status < 0)
        return;
    for (unsigned n = 0; n < ACCEPT_BATCH; ++n) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            take(l, fd);
            continue;
        }
        int err = errno;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        sb_limit_refused("accept a connection", err);
        if (err == EMFILE || err == ENFILE) {
            refuse_waiting(l);
        } else {
            uv_poll_stop(&l->poll);
            uv_timer_start(&l->backoff, on_backoff_over, ACCEPT_BACKOFF_MS, 0);
        }
        return;
    }
}

/* Starts taking connections on a listening socket (open_listener made it). */
static void listen_on(sb_worker_t *w, sb_listener_t *l, int fd, h2o_accept_ctx_t *accept_ctx)
{
    l->w = w;
    l->fd = fd;
    l->accept_ctx = accept_ctx;
    uv_poll_init(&w->loop, &l->poll, fd);
    uv_timer_init(&w->loop, &l->backoff);
    l->poll.data = l->backoff.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_listener);
}

static void on_listener_closed(uv_handle_t *h)
{
    sb_listener_t *l = h->data;
    if (h == (uv_handle_t *)&l->poll)
        close(l->fd); /* only now: a descriptor must not close while libuv polls it */
}

static void stop_listening(sb_listener_t *l)
{
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    uv_timer_stop(&l->backoff);
    uv_close((uv_handle_t *)&l->backoff, on_listener_closed);
}

sb_turn_env_t sb_worker_turn_env(sb_worker_t *w, int remembered)
{
    return (sb_turn_env_t){w->config, &w->loop, w->pg, w->curlm, w->server->provider, &w->llm, remembered ? w->memory : NULL};
}

void sb_worker_answer(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *json)
{
    sb_worker_t *w = sb_worker_of(req);
    sb_respond_answer(req, w->config->access_log, w->id, e, message, param, json);
}

void sb_worker_work_started(sb_worker_t *w, sb_open_work_t *work)
{
    h2o_linklist_insert(&w->open, &work->link);
    ++w->nopen;
}

void sb_worker_work_ended(sb_worker_t *w, sb_open_work_t *work)
{
    if (!h2o_linklist_is_linked(&work->link))
        return;
    h2o_linklist_unlink(&work->link);
    --w->nopen;
}

/*
 * Draining: streams may finish until the deadline. Then each open one is
 * ended for its caller (an error event and [DONE], or a 503), and given
 * DRAIN_FLUSH_MS to take those bytes; whatever is still open then is logged
 * and left to the kernel as the process exits.
 */
static void on_drain_poll(uv_timer_t *timer)
{
    sb_worker_t *w = timer->data;
    uint64_t now = sb_worker_now(w);
    if (w->nopen > 0 && now < w->drain_deadline)
        return;
    if (w->nopen > 0 && !w->drain_ending) {
        sb_log_warn("worker %u: drain deadline passed with %zu streams open; ending them", w->id, w->nopen);
        w->drain_ending = 1;
        for (h2o_linklist_t *node = w->open.next, *next; node != &w->open; node = next) {
            next = node->next;
            sb_open_work_t *work = H2O_STRUCT_FROM_MEMBER(sb_open_work_t, link, node);
            work->deadline(work);
        }
        return;
    }
    if (w->nopen > 0 && now < w->drain_deadline + DRAIN_FLUSH_MS)
        return;
    while (!h2o_linklist_is_empty(&w->open)) { /* readers that did not take their last bytes */
        sb_open_work_t *work = H2O_STRUCT_FROM_MEMBER(sb_open_work_t, link, w->open.next);
        work->exiting(work);
        sb_worker_work_ended(w, work);
    }
    uv_stop(&w->loop);
}

static void on_wake(uv_async_t *async)
{
    sb_worker_t *w = async->data;
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline = sb_worker_now(w) + w->config->drain_timeout_ms;
    stop_listening(&w->listener);          /* METRICS_PORT stays open: a drain can be watched */
    h2o_context_request_shutdown(&w->ctx); /* idle keep-alive connections close, HTTP/2 peers get GOAWAY */
    for (h2o_linklist_t *node = w->open.next, *next; node != &w->open; node = next) {
        next = node->next; /* the work may end itself in its callback */
        sb_open_work_t *work = H2O_STRUCT_FROM_MEMBER(sb_open_work_t, link, node);
        if (work->draining != NULL)
            work->draining(work);
    }
    uv_timer_start(&w->drain_timer, on_drain_poll, 0, DRAIN_POLL_MS);
}

int sb_worker_init(sb_worker_t *w, sb_server_t *server, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->server = server;
    w->config = server->config;
    w->id = id;
    w->metrics_fd = -1;
    int rc = open_listener(w, w->config->port, &w->listen_fd);
    if (rc == 0 && server->metrics != NULL && w->config->metrics_port != 0)
        rc = open_listener(w, w->config->metrics_port, &w->metrics_fd);
    if (rc != 0)
        return rc;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    return 0;
}

void sb_worker_request_drain(sb_worker_t *w)
{
    uv_async_send(&w->wake);
}

/* A conversation the idle close closed: its summary is written by a model now (it keeps its extract when summaries are busy). */
static int on_conversation_closed(void *data, const char *conversation_id)
{
    sb_worker_t *w = data;
    return sb_summaries_start(w->summaries, conversation_id);
}

/* The pool's numbers, for the metrics: a gauge read once a second is plenty, and keeps the pool free of metrics. */
static void on_metrics_tick(uv_timer_t *timer)
{
    sb_worker_t *w = timer->data;
    sb_pgpool_stats_t st;
    sb_pgpool_stats(w->pg, &st);
    sb_metrics_pool(st.open, st.busy, st.queued);
}

void *sb_worker_run(void *arg)
{
    sb_worker_t *w = arg;
    sb_metrics_bind(w->server->metrics, w->id);
    /*
     * h2o 2.2 reads each connection into a buffer of at least 8 KiB (twice
     * H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE), and an HTTP/1 request stays in it
     * until its answer is over, which for a voice turn is seconds. A turn's
     * request usually fits 4 KiB, the least h2o asks for per read; a larger one
     * grows the buffer as before. The prototype is h2o's public, per-thread
     * default, set here before this thread's loop takes a connection.
     */
    h2o_socket_buffer_prototype._initial_buf.capacity = H2O_SOCKET_INITIAL_INPUT_BUFFER_SIZE;
    h2o_context_init(&w->ctx, &w->loop, &w->server->h2o);
    w->accept_ctx.ctx = w->metrics_accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = w->metrics_accept_ctx.hosts = w->server->h2o.hosts;
    w->accept_ctx.ssl_ctx = w->server->tls; /* NULL: plain HTTP */
    w->curlm = sb_curlm_create(&w->loop, 0);
    w->hangups = sb_hangups_create(&w->loop);
    if (w->config->database_url != NULL) {
        sb_pgpool_config_t pc = {
            .conninfo = w->config->database_url,
            .size = w->config->pg_pool_size,
            .statement_timeout_ms = w->config->pg_statement_timeout_ms,
            .prepare = w->config->pg_prepared_statements,
            .connect_timeout_ms = w->config->pg_connect_timeout_ms,
            .queue_timeout_ms = w->config->pg_connect_timeout_ms,
            .max_queue = 10000,
        };
        w->pg = sb_pgpool_create(&w->loop, &pc);
        sb_turn_env_t env = sb_worker_turn_env(w, 0);
        w->summaries = sb_summaries_create(&env); /* w->llm is filled below, before the loop runs */
        /* one worker keeps the tables tidy */
        w->memory = sb_memory_create(&w->loop, w->pg, w->config, w->id == 0, on_conversation_closed, w);
        w->eventlog = sb_eventlog_create(&w->loop, w->pg, w->config);
    }
    h2o_linklist_init_anchor(&w->open);
    w->llm = (sb_llm_env_t){w->config, &w->loop, w->curlm, &w->server->routes};
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;

    if (w->server->metrics != NULL && w->pg != NULL) {
        uv_timer_init(&w->loop, &w->metrics_timer);
        w->metrics_timer.data = w;
        uv_timer_start(&w->metrics_timer, on_metrics_tick, 0, 1000);
    }
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    listen_on(w, &w->listener, w->listen_fd, &w->accept_ctx);
    if (w->metrics_fd >= 0) /* the metrics port speaks plain HTTP even when PORT speaks TLS: it is for a scraper inside */
        listen_on(w, &w->metrics_listener, w->metrics_fd, &w->metrics_accept_ctx);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* The process exits after the workers stop; open connections are closed by the kernel. */
    return NULL;
}
