/*
 * A pool of Postgres connections on libpq's non-blocking API, driven by a
 * libuv loop: one uv_poll_t per connection socket, a timer per connection
 * attempt (connect timeout), and three pool timers: a zero-delay kick that
 * delivers results owed to callers outside any call into the pool, the
 * reconnect backoff, and the queue-timeout sweep. Finished queries go on a
 * done list that is drained at the end of every loop callback, never inside
 * an entry point, so a callback may query, cancel or destroy re-entrantly.
 *
 * A statement is sent as a named prepared statement of its connection: the
 * first use on a connection prepares it (one extra round trip, once), every
 * later use only binds and executes it, so Postgres parses and plans the
 * pool's few fixed statements once per connection instead of on every call.
 * Prepared plans live and die with their session; a statement the session
 * lost (a pooler in front of Postgres, DISCARD) or whose result type changed
 * under it (a migration) fails before it runs: the connection is closed and
 * the query sent once more on a fresh one. `prepare = 0` sends every
 * statement unnamed instead, for poolers that cannot keep them.
 *
 * libpq resolves a host name with a blocking getaddrinfo inside
 * PQconnectStartParams, so the pool resolves it itself: once at creation,
 * then in the background (uv_getaddrinfo) after an attempt fails, and hands
 * libpq the addresses as hostaddr.
 *
 * Why one file of this length: the connections, the query queue, the
 * statement cache and the address lookup all work on the pool's private
 * state under one re-entrancy rule (`depth`, the done list), which splitting
 * would have to export; each has its section below, read top-down.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "sb/alloc.h"
#include "sb/log.h"
#include "sb/pgpool.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_ADDRS 8       /* addresses of the host name tried per attempt */
#define MAX_STATEMENTS 64 /* distinct statements prepared per connection; others are sent unnamed */

enum query_state {
    Q_QUEUED,  /* on pool->queue, waiting for a connection */
    Q_SENT,    /* running on q->conn */
    Q_DONE,    /* on pool->done, its outcome known, callback not yet run */
    Q_CALLING, /* its callback is running */
};

struct conn;

struct sb_pgquery {
    sb_pgpool_t *pool;
    sb_pgquery_t *prev, *next; /* links in pool->queue or pool->done */
    enum query_state state;
    struct conn *conn; /* Q_SENT */
    char *sql;         /* an unnamed statement's text (a prepared one's lives in pool->statements) */
    int stmt;          /* index in pool->statements, -1: sent unnamed */
    int nparams;
    char **values;
    uint64_t deadline; /* loop time at which waiting for a connection fails; 0 = never */
    int retried;       /* sent once on a connection that turned out dead, or had lost its prepared statement */
    sb_pgquery_cb cb;
    void *data;
    PGresult *res; /* Q_DONE: the outcome */
    sb_error_t err;
    char sqlstate[6];
};

struct query_list {
    sb_pgquery_t *head, *tail;
    unsigned n;
};

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
    sb_pgpool_t *pool;
    unsigned slot; /* index in pool->conns */
    PGconn *pg;
    enum conn_state state;
    uv_poll_t *poll; /* on `fd`; replaced when libpq's socket changes */
    int fd;
    uv_timer_t *connect_timer;
    sb_pgquery_t *query; /* C_BUSY: the running query, NULL once it was cancelled (the result is then discarded) */
    PGresult *result;    /* the running query's first result (or its first error) */
    int flushing;        /* PQflush returned 1: wait for writable too */
    int desynced;        /* the server started COPY: the connection cannot be reused */
    int preparing;       /* the running command is the Prepare of statement `preparing_stmt`; c->query's Execute follows */
    int preparing_stmt;
    uint64_t prepared; /* bit i: pool->statements[i] is prepared on this session */
};

/* A statement the pool prepares on its connections, named "sb<index>". */
struct statement {
    char *sql;
    size_t len;
    uint64_t hash;
};

/* A background lookup of the host name, in its own allocation: the pool may be destroyed while it runs. */
struct lookup {
    uv_getaddrinfo_t req;
    sb_pgpool_t *pool; /* NULL once the pool is gone: the callback then only frees */
};

struct sb_pgpool {
    uv_loop_t *loop;
    sb_pgpool_config_t config;
    const char *keys[8], *vals[8]; /* PQconnectStartParams arguments */
    char *options;                 /* "-c statement_timeout=N", after any options from the conninfo */
    char connect_timeout[16];
    char *host;              /* the host name the pool resolves for libpq; NULL when libpq needs no lookup */
    char *hosts;             /* `host` once per address, "h,h,...": the host keyword, matching hostaddr's list */
    char *addrs;             /* the addresses last resolved, "a,b,...": the hostaddr keyword; NULL while none is known */
    int addr_key;            /* index of "host" in keys, "hostaddr" follows; valid when host != NULL */
    const char *resolve_err; /* why the last lookup failed (a static string) */
    struct lookup *lookup;   /* the lookup in flight, at most one */
    struct conn **conns;     /* config.size slots, NULL when free */
    unsigned nconns, connecting;
    struct query_list queue, done;
    uv_timer_t *kick, *retry, *expiry;
    unsigned backoff_ms;
    uint64_t rng;
    struct statement statements[MAX_STATEMENTS];
    unsigned nstatements;
    int healthy;
    unsigned depth; /* > 0 while inside a loop callback of the pool */
    int destroying; /* sb_pgpool_destroy was called from a callback; freed when depth drops to 0 */
};

/* --- queries and the lists they wait on ------------------------------------------------------- */

static void list_push(struct query_list *l, sb_pgquery_t *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    ++l->n;
}

static void list_push_front(struct query_list *l, sb_pgquery_t *q)
{
    q->prev = NULL;
    q->next = l->head;
    if (l->head != NULL)
        l->head->prev = q;
    else
        l->tail = q;
    l->head = q;
    ++l->n;
}

static void list_remove(struct query_list *l, sb_pgquery_t *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->prev = q->next = NULL;
    --l->n;
}

/* The parameters stay with the query until it is done: a query refused by its connection is sent again. */
static void query_free(sb_pgquery_t *q)
{
    for (int i = 0; i < q->nparams; ++i)
        free(q->values[i]);
    free(q->values);
    free(q->sql);
    PQclear(q->res);
    free(q);
}

/* --- the statement cache ---------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; ++i)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

/* The index of `sql` among the pool's statements, registering it on first sight; -1 when it is to be sent unnamed. */
static int statement_of(sb_pgpool_t *pool, const char *sql)
{
    if (!pool->config.prepare)
        return -1;
    size_t len = strlen(sql);
    uint64_t h = fnv1a(sql, len);
    for (unsigned i = 0; i < pool->nstatements; ++i) {
        const struct statement *st = &pool->statements[i];
        if (st->hash == h && st->len == len && memcmp(st->sql, sql, len) == 0)
            return (int)i;
    }
    if (pool->nstatements == MAX_STATEMENTS)
        return -1;
    struct statement *st = &pool->statements[pool->nstatements];
    st->sql = sb_strdup(sql);
    st->len = len;
    st->hash = h;
    return (int)pool->nstatements++;
}

static void statement_name(int stmt, char out[16])
{
    snprintf(out, 16, "sb%d", stmt);
}

/* --- outcomes and health ---------------------------------------------------------------------- */

static void on_kick(uv_timer_t *timer);

/* Puts a query's outcome on the done list; `res` (owned) is kept only on success. */
static void query_finish(sb_pgquery_t *q, PGresult *res, sb_error_t err, const char *sqlstate)
{
    sb_pgpool_t *pool = q->pool;
    snprintf(q->sqlstate, sizeof(q->sqlstate), "%s", sqlstate != NULL ? sqlstate : ""); /* may point into res */
    if (err != SB_OK) {
        PQclear(res);
        res = NULL;
    }
    q->res = res;
    q->err = err;
    q->conn = NULL;
    q->state = Q_DONE;
    list_push(&pool->done, q);
    /* Delivered at the end of the current loop callback, or by the kick when the user called us from outside one. */
    if (pool->depth == 0 && !uv_is_active((uv_handle_t *)pool->kick))
        uv_timer_start(pool->kick, on_kick, 0, 0);
}

static sb_error_t map_sqlstate(const char *st)
{
    if (strcmp(st, "57014") == 0)
        return SB_E_DB_TIMEOUT;
    if (strncmp(st, "23", 2) == 0)
        return SB_E_DB_CONFLICT;
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0)
        return SB_E_DB_UNAVAILABLE;
    return SB_E_DB_ERROR;
}

static int is_error_status(ExecStatusType st)
{
    return st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK;
}

/* libpq's messages end in newlines and may span lines: one line for the log, cut to the buffer. */
static void one_line(char *out, size_t outlen, const char *msg)
{
    snprintf(out, outlen, "%s", msg != NULL && *msg ? msg : "unknown error");
    for (char *p = out; *p; ++p)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == ' ')
        out[--n] = '\0';
}

static void set_healthy(sb_pgpool_t *pool, int healthy, const char *why)
{
    if (pool->healthy && !healthy)
        sb_log_warn("postgres unavailable: %s", why);
    else if (!pool->healthy && healthy)
        sb_log_info("postgres reachable again");
    pool->healthy = healthy;
}

/* Notices (warnings the server attaches to statements) are not the caller's business and must not reach stderr raw. */
static void on_notice(void *arg, const PGresult *res)
{
}

/* --- connections and the address lookup ------------------------------------------------------- */

static void on_poll(uv_poll_t *poll, int status, int events);

/*
 * Watches the connection's current socket. libpq may replace the socket
 * while connecting (next host or address, SSL retry): a new descriptor gets
 * a new poll handle. A new socket that reuses the old number is covered by
 * uv_poll_start, which re-registers the descriptor with the kernel each time.
 */
static int conn_watch(struct conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->poll != NULL && c->fd != fd) {
        uv_poll_stop(c->poll);
        uv_close((uv_handle_t *)c->poll, (uv_close_cb)free);
        c->poll = NULL;
    }
    if (c->poll == NULL) {
        c->poll = sb_calloc(1, sizeof(*c->poll));
        if (uv_poll_init_socket(c->pool->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return -1;
        }
        c->poll->data = c;
        c->fd = fd;
    }
    return uv_poll_start(c->poll, events, on_poll) == 0 ? 0 : -1;
}

static void stop_connect_timer(struct conn *c)
{
    if (c->connect_timer != NULL) {
        uv_close((uv_handle_t *)c->connect_timer, (uv_close_cb)free);
        c->connect_timer = NULL;
    }
}

/* Closes the socket and frees the connection; its query, if any, must already be detached. */
static void conn_close(struct conn *c)
{
    sb_pgpool_t *pool = c->pool;
    pool->conns[c->slot] = NULL;
    --pool->nconns;
    if (c->state == C_CONNECTING)
        --pool->connecting;
    if (c->poll != NULL) {
        uv_poll_stop(c->poll); /* takes the descriptor out of epoll before PQfinish closes it */
        uv_close((uv_handle_t *)c->poll, (uv_close_cb)free);
    }
    stop_connect_timer(c);
    PQclear(c->result);
    PQfinish(c->pg);
    free(c);
}

static void on_retry(uv_timer_t *timer);

/* Waits before the next connection attempt: 100 ms doubling to 5 s, each wait drawn from [b/2, b]. */
static void schedule_retry(sb_pgpool_t *pool)
{
    if (uv_is_active((uv_handle_t *)pool->retry))
        return; /* several attempts of one round failed: one wait */
    pool->backoff_ms = pool->backoff_ms == 0 ? BACKOFF_MIN_MS : pool->backoff_ms * 2;
    if (pool->backoff_ms > BACKOFF_MAX_MS)
        pool->backoff_ms = BACKOFF_MAX_MS;
    pool->rng ^= pool->rng << 13;
    pool->rng ^= pool->rng >> 7;
    pool->rng ^= pool->rng << 17;
    unsigned half = pool->backoff_ms / 2;
    uv_timer_start(pool->retry, on_retry, half + pool->rng % (half + 1), 0);
}

/* The hints libpq itself uses for a host name: every family, stream sockets. */
static const struct addrinfo lookup_hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

/*
 * Takes the distinct addresses of a lookup (at most MAX_ADDRS, in the
 * resolver's order) as the next attempts' hostaddr list. All of them, not
 * just the first: libpq tries each address of a name in turn, and a
 * dual-stack name whose first address is unreachable from here must still
 * connect. `host` is repeated once per address because libpq pairs the two
 * lists; it stays the name, for TLS verification and error messages.
 * Returns 0 when the lookup held no usable address.
 */
static int use_addrs(sb_pgpool_t *pool, const struct addrinfo *ai)
{
    char text[MAX_ADDRS][INET6_ADDRSTRLEN + 16]; /* room for a scope id (fe80::1%eth0) */
    size_t n = 0, len = 0;
    for (; ai != NULL && n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            getnameinfo(ai->ai_addr, ai->ai_addrlen, text[n], sizeof(text[n]), NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        int seen = 0;
        for (size_t i = 0; i < n; ++i)
            seen |= strcmp(text[i], text[n]) == 0;
        if (!seen)
            len += strlen(text[n++]) + 1;
    }
    if (n == 0)
        return 0;
    char *addrs = sb_calloc(1, len);
    size_t hlen = n * (strlen(pool->host) + 1);
    char *hosts = sb_calloc(1, hlen);
    for (size_t i = 0, a = 0, h = 0; i < n; ++i) {
        a += (size_t)snprintf(addrs + a, len - a, "%s%s", i > 0 ? "," : "", text[i]);
        h += (size_t)snprintf(hosts + h, hlen - h, "%s%s", i > 0 ? "," : "", pool->host);
    }
    if (pool->addrs != NULL && strcmp(pool->addrs, addrs) == 0) {
        free(addrs);
        free(hosts);
        return 1;
    }
    if (pool->addrs != NULL)
        sb_log_info("postgres host %s now resolves to %s", pool->host, addrs);
    else
        sb_log(SB_LOG_DEBUG, "postgres host %s resolves to %s", pool->host, addrs);
    free(pool->addrs);
    free(pool->hosts);
    pool->addrs = addrs;
    pool->hosts = hosts;
    pool->vals[pool->addr_key] = hosts; /* libpq copies its arguments: attempts under way keep the old ones */
    pool->vals[pool->addr_key + 1] = addrs;
    return 1;
}

static void enter(sb_pgpool_t *pool);
static void leave(sb_pgpool_t *pool);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *l = req->data;
    sb_pgpool_t *pool = l->pool;
    free(l);
    if (pool == NULL) { /* destroyed meanwhile */
        uv_freeaddrinfo(res);
        return;
    }
    pool->lookup = NULL;
    enter(pool);
    if (status != 0 || !use_addrs(pool, res)) {
        /* Known addresses are kept: a resolver hiccup must not stop a pool that can still connect. */
        pool->resolve_err = status != 0 ? uv_strerror(status) : "no usable address";
        sb_log(SB_LOG_DEBUG, "postgres host %s did not resolve: %s", pool->host, pool->resolve_err);
    }
    uv_freeaddrinfo(res);
    leave(pool);
}

/* Looks the host name up again on libuv's thread pool, so a database that moved (failover changes DNS) is found. */
static void resolve_later(sb_pgpool_t *pool)
{
    if (pool->host == NULL || pool->lookup != NULL || pool->destroying)
        return;
    struct lookup *l = sb_calloc(1, sizeof(*l));
    l->pool = pool;
    l->req.data = l;
    int rc = uv_getaddrinfo(pool->loop, &l->req, on_resolved, pool->host, NULL, &lookup_hints);
    if (rc != 0) {
        sb_log(SB_LOG_DEBUG, "could not start a lookup of postgres host %s: %s", pool->host, uv_strerror(rc));
        free(l);
        return;
    }
    pool->lookup = l;
}

static void connect_failed(struct conn *c, const char *why)
{
    sb_pgpool_t *pool = c->pool;
    char msg[256];
    one_line(msg, sizeof(msg), why != NULL ? why : PQerrorMessage(c->pg));
    sb_log(SB_LOG_DEBUG, "postgres connection attempt failed: %s", msg);
    set_healthy(pool, 0, msg);
    conn_close(c);
    resolve_later(pool); /* the server may have moved; the next attempt, after the backoff, uses what this finds */
    schedule_retry(pool);
}

static void conn_connected(struct conn *c)
{
    sb_pgpool_t *pool = c->pool;
    stop_connect_timer(c);
    c->state = C_IDLE;
    --pool->connecting;
    if (PQsetnonblocking(c->pg, 1) != 0 || conn_watch(c, UV_READABLE) != 0) {
        set_healthy(pool, 0, "could not set up the connection");
        conn_close(c);
        schedule_retry(pool);
        return;
    }
    set_healthy(pool, 1, NULL);
    pool->backoff_ms = 0;
}

static void conn_connect_step(struct conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_connected(c);
        break;
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE) != 0)
            connect_failed(c, NULL);
        break;
    case PGRES_POLLING_WRITING:
    case PGRES_POLLING_ACTIVE:
        if (conn_watch(c, UV_WRITABLE) != 0)
            connect_failed(c, NULL);
        break;
    default:
        connect_failed(c, NULL);
        break;
    }
}

static void on_connect_timeout(uv_timer_t *timer);

static void conn_open(sb_pgpool_t *pool)
{
    if (pool->host != NULL && pool->addrs == NULL) {
        /* No address known yet: libpq would look the name up itself, blocking the loop. A failed attempt instead. */
        char msg[256];
        snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", pool->host,
                 pool->resolve_err != NULL ? pool->resolve_err : "unknown error");
        sb_log(SB_LOG_DEBUG, "postgres connection attempt failed: %s", msg);
        set_healthy(pool, 0, msg);
        resolve_later(pool);
        schedule_retry(pool);
        return;
    }
    unsigned slot = 0;
    while (pool->conns[slot] != NULL)
        ++slot;
    struct conn *c = sb_calloc(1, sizeof(*c));
    c->pool = pool;
    c->slot = slot;
    c->fd = -1;
    c->state = C_CONNECTING;
    pool->conns[slot] = c;
    ++pool->nconns;
    ++pool->connecting;
    /* Starts a non-blocking connect. A host name comes with its addresses as hostaddr, so libpq does no lookup of its own. */
    c->pg = PQconnectStartParams(pool->keys, pool->vals, 1);
    if (c->pg == NULL)
        h2o_fatal("PQconnectStartParams: out of memory");
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        connect_failed(c, NULL);
        return;
    }
    PQsetNoticeReceiver(c->pg, on_notice, NULL);
    if (pool->config.connect_timeout_ms > 0) {
        c->connect_timer = sb_calloc(1, sizeof(*c->connect_timer));
        uv_timer_init(pool->loop, c->connect_timer);
        c->connect_timer->data = c;
        uv_timer_start(c->connect_timer, on_connect_timeout, pool->config.connect_timeout_ms, 0);
    }
    /* libpq's protocol: start as if PQconnectPoll had asked for a writable socket. */
    if (conn_watch(c, UV_WRITABLE) != 0)
        connect_failed(c, NULL);
}

/* --- running a query on a connection ---------------------------------------------------------- */

static void conn_flush(struct conn *c);

/* Puts the query's next command in libpq's buffer: its statement's Prepare on first use here, else its Execute. */
static int conn_send_command(struct conn *c, sb_pgquery_t *q)
{
    if (q->stmt < 0)
        return PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->values, NULL, NULL, 0);
    char name[16];
    statement_name(q->stmt, name);
    if (!(c->prepared & (UINT64_C(1) << q->stmt))) {
        c->preparing = 1;
        c->preparing_stmt = q->stmt;
        return PQsendPrepare(c->pg, name, c->pool->statements[q->stmt].sql, q->nparams, NULL);
    }
    return PQsendQueryPrepared(c->pg, name, q->nparams, (const char *const *)q->values, NULL, NULL, 0);
}

/*
 * The Prepare sent ahead of a statement's first use on this connection is
 * back. Returns 1 when the connection went on (the Execute is out, or the
 * query was cancelled meanwhile and the connection is idle again), 0 when the
 * query ends with what came back: the Prepare's error (a statement that does
 * not parse fails like any other), or a send that failed.
 */
static int conn_prepared(struct conn *c, int broken)
{
    c->preparing = 0;
    if (broken || c->desynced || PQstatus(c->pg) == CONNECTION_BAD || c->result == NULL ||
        PQresultStatus(c->result) != PGRES_COMMAND_OK)
        return 0;
    PQclear(c->result);
    c->result = NULL;
    c->prepared |= UINT64_C(1) << c->preparing_stmt;
    sb_pgquery_t *q = c->query;
    if (q == NULL) {
        c->state = C_IDLE;
        if (conn_watch(c, UV_READABLE) != 0)
            conn_close(c);
        return 1;
    }
    if (!conn_send_command(c, q))
        return 0;
    conn_flush(c);
    return 1;
}

/* A prepared statement failed before it ran because the session no longer holds it as the pool believes. */
static int lost_statement(const char *sqlstate)
{
    return strcmp(sqlstate, "26000") == 0     /* prepared statement does not exist */
           || strcmp(sqlstate, "42P05") == 0  /* prepared statement already exists */
           || strcmp(sqlstate, "0A000") == 0; /* cached plan must not change result type */
}

/* The running query is over: hand its outcome on and return the connection to the pool or close it. */
static void conn_query_done(struct conn *c, int broken)
{
    sb_pgpool_t *pool = c->pool;
    if (c->preparing && conn_prepared(c, broken))
        return;
    c->preparing = 0;
    sb_pgquery_t *q = c->query;
    PGresult *res = c->result;
    c->query = NULL;
    c->result = NULL;
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (st == NULL)
        st = "";
    int close = broken || c->desynced || PQstatus(c->pg) == CONNECTION_BAD;
    sb_error_t err;
    if (c->desynced)
        err = SB_E_DB_ERROR;
    else if (close)
        err = SB_E_DB_UNAVAILABLE;
    else if (res == NULL)
        err = SB_E_DB_ERROR;
    else if (!is_error_status(PQresultStatus(res)))
        err = SB_OK;
    else if ((err = map_sqlstate(st)) == SB_E_DB_UNAVAILABLE)
        close = 1; /* the server is shutting this session down */

    if (err == SB_E_DB_ERROR && q != NULL && q->stmt >= 0 && !q->retried && lost_statement(st)) {
        /* nothing ran: start the session afresh and send the query once more */
        sb_log(SB_LOG_DEBUG, "postgres session lost a prepared statement (%s): reconnecting", st);
        PQclear(res);
        c->query = NULL;
        conn_close(c);
        q->retried = 1;
        q->conn = NULL;
        q->state = Q_QUEUED;
        list_push_front(&pool->queue, q);
        return;
    }

    if (err == SB_E_DB_UNAVAILABLE) {
        char msg[256];
        one_line(msg, sizeof(msg), res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
        set_healthy(pool, 0, msg);
    } else {
        set_healthy(pool, 1, NULL);
    }

    if (q != NULL)
        query_finish(q, res, err, st);
    else
        PQclear(res); /* cancelled: nobody wants it */

    if (close) {
        conn_close(c);
        return;
    }
    c->state = C_IDLE;
    c->flushing = 0;
    if (conn_watch(c, UV_READABLE) != 0)
        conn_close(c);
}

/* Sends what libpq buffered; the rest goes out as the socket becomes writable. */
static void conn_flush(struct conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_query_done(c, 1);
        return;
    }
    c->flushing = r == 1;
    if (conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0)
        conn_query_done(c, 1);
}

/* Hands `q` to the idle connection `c`. A connection found dead before sending is closed and `q` requeued. */
static void conn_send(struct conn *c, sb_pgquery_t *q)
{
    sb_pgpool_t *pool = c->pool;
    /* Reads whatever arrived while idle (an EOF the loop has not reported yet). */
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_close(c);
        q->state = Q_QUEUED;
        list_push_front(&pool->queue, q);
        return;
    }
    if (!conn_send_command(c, q)) {
        c->preparing = 0;
        if (PQstatus(c->pg) != CONNECTION_BAD) {
            /* refused before sending anything (too many parameters, ...); the connection is fine */
            char msg[256];
            one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
            sb_log(SB_LOG_DEBUG, "postgres refused a statement: %s", msg);
            query_finish(q, NULL, SB_E_DB_ERROR, "");
            return;
        }
        conn_close(c);
        if (!q->retried) {
            /* an incomplete message is never executed: safe to try once more on another connection */
            q->retried = 1;
            q->state = Q_QUEUED;
            list_push_front(&pool->queue, q);
        } else {
            query_finish(q, NULL, SB_E_DB_UNAVAILABLE, "");
        }
        return;
    }
    c->state = C_BUSY;
    c->query = q;
    q->conn = c;
    q->state = Q_SENT;
    conn_flush(c);
}

/* The socket of a busy connection is ready: flush, read, and collect results until libpq has no more. */
static void conn_query_step(struct conn *c, int status)
{
    int broken = !PQconsumeInput(c->pg);
    if (!broken && c->flushing) {
        int r = PQflush(c->pg);
        if (r < 0) {
            broken = 1;
        } else if (r == 0) {
            c->flushing = 0;
            if (conn_watch(c, UV_READABLE) != 0)
                broken = 1;
        }
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            conn_query_done(c, broken);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* PQgetResult would return COPY forever; a statement pool does not speak COPY */
            PQclear(r);
            c->desynced = 1;
            conn_query_done(c, broken);
            return;
        }
        if (c->result == NULL) {
            c->result = r;
        } else if (is_error_status(st) && !is_error_status(PQresultStatus(c->result))) {
            PQclear(c->result);
            c->result = r;
        } else {
            PQclear(r);
        }
    }
    /* libuv stops a poll handle that reports an error: do not wait on it */
    if (broken || status < 0)
        conn_query_done(c, 1);
}

/* An idle connection's socket is readable: the server closed it, or sent a notice. */
static void conn_idle_input(struct conn *c, int status)
{
    if (status < 0 || !PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        char msg[256];
        one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
        sb_log(SB_LOG_DEBUG, "postgres closed an idle connection: %s", msg);
        conn_close(c);
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n);
}

/* --- the pool: queue, dispatch, the re-entrancy rule, timers ---------------------------------- */

static struct conn *find_idle(sb_pgpool_t *pool)
{
    for (unsigned i = 0; i < pool->config.size; ++i)
        if (pool->conns[i] != NULL && pool->conns[i]->state == C_IDLE)
            return pool->conns[i];
    return NULL;
}

static void on_expiry(uv_timer_t *timer);

/* The queue is in arrival order (a requeued query goes back to the front, being the oldest), so the head expires first. */
static void arm_expiry(sb_pgpool_t *pool)
{
    if (pool->queue.head == NULL || pool->config.queue_timeout_ms == 0) {
        uv_timer_stop(pool->expiry);
        return;
    }
    uint64_t now = uv_now(pool->loop), deadline = pool->queue.head->deadline;
    uv_timer_start(pool->expiry, on_expiry, deadline > now ? deadline - now : 0, 0);
}

/* Gives waiting queries to idle connections and opens connections for the rest. Never runs a callback. */
static void pump(sb_pgpool_t *pool)
{
    if (pool->destroying)
        return;
    struct conn *c;
    while (pool->queue.head != NULL && (c = find_idle(pool)) != NULL) {
        sb_pgquery_t *q = pool->queue.head;
        list_remove(&pool->queue, q);
        conn_send(c, q);
    }
    while (pool->queue.n > pool->connecting && pool->nconns < pool->config.size && !uv_is_active((uv_handle_t *)pool->retry)) {
        if (!pool->healthy && pool->connecting > 0)
            break; /* while the server looks down, one attempt at a time */
        conn_open(pool);
    }
    arm_expiry(pool);
}

/* Runs the callbacks of finished queries, oldest first; each is unlinked before its callback runs. */
static void deliver(sb_pgpool_t *pool)
{
    while (!pool->destroying && pool->done.head != NULL) {
        sb_pgquery_t *q = pool->done.head;
        list_remove(&pool->done, q);
        q->state = Q_CALLING;
        if (q->cb != NULL)
            q->cb(q->data, q->res, q->err, q->sqlstate);
        query_free(q);
    }
}

static void pool_free(sb_pgpool_t *pool);

static void enter(sb_pgpool_t *pool)
{
    ++pool->depth;
}

/* Every loop callback ends here: a destroy requested by a callback takes effect now. */
static void leave(sb_pgpool_t *pool)
{
    pump(pool);
    deliver(pool);
    if (--pool->depth == 0 && pool->destroying)
        pool_free(pool);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    struct conn *c = poll->data;
    sb_pgpool_t *pool = c->pool;
    enter(pool);
    if (c->state == C_CONNECTING)
        conn_connect_step(c); /* a failed connect() shows up as a poll error; PQconnectPoll reads it */
    else if (c->state == C_IDLE)
        conn_idle_input(c, status);
    else
        conn_query_step(c, status);
    leave(pool);
}

static void on_connect_timeout(uv_timer_t *timer)
{
    struct conn *c = timer->data;
    sb_pgpool_t *pool = c->pool;
    enter(pool);
    char why[64];
    snprintf(why, sizeof(why), "connection attempt timed out after %u ms", pool->config.connect_timeout_ms);
    connect_failed(c, why);
    leave(pool);
}

static void on_kick(uv_timer_t *timer)
{
    sb_pgpool_t *pool = timer->data;
    enter(pool);
    leave(pool);
}

static void on_retry(uv_timer_t *timer)
{
    sb_pgpool_t *pool = timer->data;
    enter(pool);
    leave(pool);
}

static void on_expiry(uv_timer_t *timer)
{
    sb_pgpool_t *pool = timer->data;
    enter(pool);
    uint64_t now = uv_now(pool->loop);
    while (pool->queue.head != NULL && pool->queue.head->deadline <= now) {
        sb_pgquery_t *q = pool->queue.head;
        list_remove(&pool->queue, q);
        query_finish(q, NULL, SB_E_DB_UNAVAILABLE, "");
    }
    leave(pool);
}

static uv_timer_t *new_timer(sb_pgpool_t *pool)
{
    uv_timer_t *t = sb_calloc(1, sizeof(*t));
    uv_timer_init(pool->loop, t);
    t->data = pool;
    return t;
}

static void pool_free(sb_pgpool_t *pool)
{
    if (pool->lookup != NULL) {
        /* Its callback still runs (cancelled or not) and frees the request; it must not touch the pool. */
        pool->lookup->pool = NULL;
        uv_cancel((uv_req_t *)&pool->lookup->req);
        pool->lookup = NULL;
    }
    sb_pgquery_t *q;
    while ((q = pool->queue.head) != NULL) {
        list_remove(&pool->queue, q);
        query_free(q);
    }
    while ((q = pool->done.head) != NULL) {
        list_remove(&pool->done, q);
        query_free(q);
    }
    for (unsigned i = 0; i < pool->config.size; ++i) {
        struct conn *c = pool->conns[i];
        if (c == NULL)
            continue;
        if (c->query != NULL)
            query_free(c->query);
        c->query = NULL;
        conn_close(c);
    }
    uv_close((uv_handle_t *)pool->kick, (uv_close_cb)free);
    uv_close((uv_handle_t *)pool->retry, (uv_close_cb)free);
    uv_close((uv_handle_t *)pool->expiry, (uv_close_cb)free);
    free(pool->conns);
    free(pool->options);
    free(pool->host);
    free(pool->hosts);
    free(pool->addrs);
    for (unsigned i = 0; i < pool->nstatements; ++i)
        free(pool->statements[i].sql);
    free(pool);
}

/* --- creating, querying, destroying ----------------------------------------------------------- */

static const char *opt_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; ++o)
        if (strcmp(o->keyword, keyword) == 0)
            return o->val;
    return NULL;
}

/*
 * The host name libpq would resolve with a blocking getaddrinfo, or NULL when
 * it does no lookup: hostaddr given, no host (the default socket), a socket
 * directory, a multi-host list (left to libpq), or a numeric address. What the
 * conninfo leaves unset comes from the environment (PGHOST, PGHOSTADDR), as in
 * libpq. A host set only in a pg_service.conf entry is not seen here.
 */
static char *host_to_resolve(const PQconninfoOption *opts)
{
    PQconninfoOption *defaults = PQconndefaults();
    const char *host = opt_value(opts, "host"), *hostaddr = opt_value(opts, "hostaddr");
    if (host == NULL)
        host = opt_value(defaults, "host");
    if (hostaddr == NULL)
        hostaddr = opt_value(defaults, "hostaddr");
    unsigned char buf[sizeof(struct in6_addr)];
    char *name = NULL;
    if ((hostaddr == NULL || *hostaddr == '\0') && host != NULL && *host != '\0' && *host != '/' && *host != '@' &&
        strchr(host, ',') == NULL && inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
        name = sb_strdup(host);
    PQconninfoFree(defaults);
    return name;
}

sb_pgpool_t *sb_pgpool_create(uv_loop_t *loop, const sb_pgpool_config_t *config)
{
    sb_pgpool_t *pool = sb_calloc(1, sizeof(*pool));
    pool->loop = loop;
    pool->config = *config;
    if (pool->config.conninfo == NULL)
        pool->config.conninfo = "";
    if (pool->config.size == 0)
        pool->config.size = 1;
    pool->conns = sb_calloc(pool->config.size, sizeof(*pool->conns));
    pool->healthy = 1; /* until an attempt says otherwise */
    pool->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)pool) | 1;
    pool->kick = new_timer(pool);
    pool->retry = new_timer(pool);
    pool->expiry = new_timer(pool);

    /* Later keywords override what the expanded conninfo sets; options from the conninfo are kept. */
    PQconninfoOption *opts = PQconninfoParse(pool->config.conninfo, NULL); /* NULL when invalid: libpq reports it on connect */
    int k = 0;
    pool->keys[k] = "dbname";
    pool->vals[k++] = pool->config.conninfo;
    pool->keys[k] = "application_name";
    pool->vals[k++] = "switchboard";
    if (pool->config.connect_timeout_ms > 0) {
        unsigned s = (pool->config.connect_timeout_ms + 999) / 1000;
        snprintf(pool->connect_timeout, sizeof(pool->connect_timeout), "%u", s < 2 ? 2 : s);
        pool->keys[k] = "connect_timeout";
        pool->vals[k++] = pool->connect_timeout;
    }
    if (pool->config.statement_timeout_ms > 0) {
        const char *prior = opt_value(opts, "options");
        if (prior == NULL)
            prior = "";
        size_t len = strlen(prior) + 48;
        pool->options = sb_calloc(1, len);
        snprintf(pool->options, len, "%s%s-c statement_timeout=%u", prior, *prior ? " " : "", pool->config.statement_timeout_ms);
        pool->keys[k] = "options";
        pool->vals[k++] = pool->options;
    }
    pool->host = host_to_resolve(opts);
    PQconninfoFree(opts);
    if (pool->host != NULL) {
        pool->addr_key = k;
        pool->keys[k++] = "host"; /* values set by use_addrs */
        pool->keys[k++] = "hostaddr";
        /*
         * The one blocking lookup: sb_pgpool_create runs at worker start-up,
         * before the loop serves anything. Later lookups run in the background.
         */
        struct addrinfo *ai = NULL;
        int rc = getaddrinfo(pool->host, NULL, &lookup_hints, &ai);
        if (rc != 0 || !use_addrs(pool, ai)) {
            pool->resolve_err = rc != 0 ? gai_strerror(rc) : "no usable address";
            sb_log_warn("postgres host %s does not resolve (%s); retrying in the background", pool->host, pool->resolve_err);
        }
        if (ai != NULL)
            freeaddrinfo(ai);
    }
    pool->keys[k] = NULL;
    pool->vals[k] = NULL;
    return pool;
}

void sb_pgpool_destroy(sb_pgpool_t *pool)
{
    if (pool == NULL)
        return;
    pool->destroying = 1;
    if (pool->depth == 0)
        pool_free(pool);
}

sb_pgquery_t *sb_pgpool_query(sb_pgpool_t *pool, const char *sql, int nparams, const char *const *values, sb_pgquery_cb cb,
                              void *data)
{
    sb_pgquery_t *q = sb_calloc(1, sizeof(*q));
    q->pool = pool;
    q->cb = cb;
    q->data = data;
    q->stmt = statement_of(pool, sql);
    q->sql = q->stmt < 0 ? sb_strdup(sql) : NULL;
    q->nparams = nparams;
    if (nparams > 0) {
        q->values = sb_calloc((size_t)nparams, sizeof(*q->values));
        for (int i = 0; i < nparams; ++i)
            q->values[i] = values[i] != NULL ? sb_strdup(values[i]) : NULL;
    }
    if (pool->config.max_queue > 0 && pool->queue.n >= pool->config.max_queue) {
        query_finish(q, NULL, SB_E_DB_UNAVAILABLE, "");
        return q;
    }
    q->deadline = pool->config.queue_timeout_ms > 0 ? uv_now(pool->loop) + pool->config.queue_timeout_ms : 0;
    q->state = Q_QUEUED;
    list_push(&pool->queue, q);
    pump(pool); /* sends at once when a connection is idle; outcomes still arrive from the loop */
    return q;
}

void sb_pgquery_cancel(sb_pgquery_t *q)
{
    if (q == NULL)
        return;
    switch (q->state) {
    case Q_QUEUED:
        list_remove(&q->pool->queue, q);
        query_free(q);
        break;
    case Q_DONE:
        list_remove(&q->pool->done, q);
        query_free(q);
        break;
    case Q_SENT:
        q->conn->query = NULL; /* the statement runs to completion; its result is discarded */
        query_free(q);
        break;
    case Q_CALLING:
        break; /* freed when its callback returns */
    }
}

void sb_pgpool_stats(const sb_pgpool_t *pool, sb_pgpool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < pool->config.size; ++i) {
        const struct conn *c = pool->conns[i];
        if (c == NULL || c->state == C_CONNECTING)
            continue;
        ++out->open;
        if (c->state == C_BUSY)
            ++out->busy;
    }
    out->queued = pool->queue.n;
    out->healthy = pool->healthy;
}
