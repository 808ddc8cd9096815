/*
 * A worker: one thread, one libuv loop, one h2o context, one SO_REUSEPORT
 * listener and one curl multi handle. Workers share only the read-only config.
 */
#ifndef SB_WORKER_H
#define SB_WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include <h2o.h>

#include "llm.h"
#include "route.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/pgpool.h"
#include "turn.h"

struct sb_provider;
struct sb_metrics;
struct sb_memory;
struct sb_eventlog;
struct sb_summaries;
struct sb_hangups;

typedef struct sb_server {
    const sb_config_t *config;
    h2o_globalconf_t h2o;
    const struct sb_provider *provider;
    sb_routes_t routes; /* the provider table: read-only after start-up */
    unsigned nworkers;
    struct sb_worker *workers;
    struct sb_metrics *metrics; /* NULL when METRICS=false */
    SSL_CTX *tls;               /* PORT's TLS (TLS_CERT_FILE), or NULL */
} sb_server_t;

/* A listening socket: polled for readiness, its connections accepted by the worker (worker.c says why). */
typedef struct sb_listener {
    uv_poll_t poll;
    uv_timer_t backoff; /* accepting paused while the kernel has no memory for another socket */
    struct sb_worker *w;
    h2o_accept_ctx_t *accept_ctx;
    int fd;
} sb_listener_t;

typedef struct sb_worker {
    sb_server_t *server;
    const sb_config_t *config;
    unsigned id;
    pthread_t thread;
    uv_loop_t loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_accept_ctx_t metrics_accept_ctx; /* METRICS_PORT's: never TLS */
    sb_listener_t listener;
    sb_listener_t metrics_listener; /* METRICS_PORT's, when set */
    int spare_fd;                   /* kept open to be let go of when descriptors run out (worker.c) */
    uv_timer_t metrics_timer;       /* copies the pool's numbers into the metrics */
    uv_async_t wake;                /* main thread -> worker: start draining */
    uv_timer_t drain_timer;
    sb_curlm_t *curlm;
    struct sb_hangups *hangups;     /* the HTTP/1 callers' hang-up watches (hangup.h); NULL without epoll */
    sb_pgpool_t *pg;                /* NULL without DATABASE_URL */
    struct sb_memory *memory;       /* conversation memory on pg, NULL when off */
    struct sb_eventlog *eventlog;   /* the queue and writer of turn records on pg, NULL when off */
    struct sb_summaries *summaries; /* post-call summaries (summary.h) on pg, NULL when off */
    sb_llm_env_t llm;               /* what provider calls on this worker use */
    h2o_linklist_t open;            /* open work (chat exchanges), for draining */
    size_t nopen;
    struct conn **conns; /* open connections by descriptor, for a lingering close */
    size_t nconns;
    uint64_t drain_deadline;
    int draining;
    int drain_ending; /* the deadline passed: open streams were told the server is shutting down */
    int listen_fd;
    int metrics_fd; /* -1 without METRICS_PORT */
} sb_worker_t;

/*
 * Work a worker holds open, such as a chat exchange: what it does when the
 * drain starts (work that only waits, such as an idle session socket, ends
 * itself now; NULL: nothing), when the drain deadline passes (end itself for
 * its caller now), and when the process exits with it still open (log it:
 * nothing else will). Embedded by its owner; the worker only keeps the list.
 */
typedef struct sb_open_work sb_open_work_t;
struct sb_open_work {
    h2o_linklist_t link;
    void (*draining)(sb_open_work_t *work);
    void (*deadline)(sb_open_work_t *work);
    void (*exiting)(sb_open_work_t *work);
};

/* The worker that owns a request's context. */
static inline sb_worker_t *sb_worker_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(sb_worker_t, ctx, req->conn->ctx);
}

/* What a turn on this worker uses: its loop, pool, curl multi, provider, and its memory unless the turn must not be
 * remembered (`remembered` 0: a summary). */
sb_turn_env_t sb_worker_turn_env(sb_worker_t *w, int remembered);
/* Answers a request that is not a turn (sb_respond_answer), logged as the request's worker logs, under its id. */
void sb_worker_answer(h2o_req_t *req, sb_error_t e, const char *message, const char *param, const char *json);

/* Milliseconds on the worker's loop clock (cached per loop iteration). */
static inline uint64_t sb_worker_now(sb_worker_t *w)
{
    return uv_now(&w->loop);
}

/* Whether HOST:`port` is free: 0, or -errno (-EADDRINUSE: another process listens there). */
int sb_worker_check_port(const sb_config_t *c, unsigned port);
/*
 * Prepares worker `id`: its loop, and its own listening socket (SO_REUSEPORT,
 * so the kernel spreads connections over workers). Returns 0 or -errno.
 */
int sb_worker_init(sb_worker_t *w, sb_server_t *server, unsigned id);
/* Thread body: runs the loop until drained. */
void *sb_worker_run(void *arg);
/* Asks the worker to stop accepting and drain. Any thread. */
void sb_worker_request_drain(sb_worker_t *w);
/*
 * The HTTP/1 connection on `fd` answered a request whose body it did not
 * read: when h2o closes it, close it lingering (shut the sending side, drop
 * what the client still sends for a while) so the client reads the answer
 * instead of a reset.
 */
void sb_worker_linger_on_close(sb_worker_t *w, int fd);
/* Open work starts and ends (ended may be called again, or for work that never started: it does nothing then). */
void sb_worker_work_started(sb_worker_t *w, sb_open_work_t *work);
void sb_worker_work_ended(sb_worker_t *w, sb_open_work_t *work);

#endif
