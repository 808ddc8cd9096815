/*
 * Unit tests for src/pgpool.c against a real server (SB_TEST_DATABASE_URL;
 * skipped without one): parameters, concurrency under the size limit, error
 * mapping, cancel, queue limits, connect timeouts, a socket that changes while
 * connecting, host names resolved without blocking the loop, and, with
 * SB_TEST_PG_DIR, an outage and recovery of the cluster.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb/log.h"
#include "sb/pgpool.h"
#include "tap.h"

static uv_loop_t *loop;
static const char *db_url;

struct result {
    int called;
    sb_error_t err;
    int has_res;
    int ntuples;
    int isnull;
    char value[256];
    char sqlstate[8];
    uint64_t at; /* uv_hrtime() of the callback */
    sb_pgquery_t *self;
    /* optional re-entrant behaviour */
    sb_pgpool_t *pool;
    int cancel_self;
    sb_pgquery_t *cancel_other;
    struct result *then; /* issue "select 'then'" with this result */
    int destroy_pool;
    unsigned *max_open; /* record the largest stats.open seen */
    int *pids;          /* record pg_backend_pid() here */
    int *done_count;
};

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

/*
 * getaddrinfo, interposed for the whole program (libpq's and libuv's calls
 * land here too): counts the lookups of `watched` on the loop's thread and on
 * others, and those of numeric addresses on the loop's thread (what libpq
 * does with hostaddr). FAKE_HOST resolves to `fake_target` (NULL: no such
 * host) after `fake_delay_ms`, so a test can move the database or make DNS
 * slow without touching the system's resolver.
 */
#define FAKE_HOST "db.sb-pgpool-test.invalid"

static pthread_t loop_thread;
static const char *_Atomic watched; /* set while a test watches a host name */
static const char *_Atomic fake_target;
static _Atomic unsigned fake_delay_ms;
static _Atomic unsigned lookups_on_loop, lookups_elsewhere, numeric_on_loop;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (real == NULL)
        real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    int on_loop = pthread_equal(pthread_self(), loop_thread);
    if (node != NULL && watched != NULL && strcmp(node, watched) == 0)
        ++*(on_loop ? &lookups_on_loop : &lookups_elsewhere);
    else if (node != NULL && on_loop && hints != NULL && (hints->ai_flags & AI_NUMERICHOST))
        ++numeric_on_loop;
    if (node == NULL || strcmp(node, FAKE_HOST) != 0)
        return real(node, service, hints, res);
    if (fake_delay_ms > 0)
        usleep(fake_delay_ms * 1000);
    const char *target = fake_target;
    if (target == NULL)
        return EAI_NONAME;
    struct addrinfo h = {.ai_socktype = SOCK_STREAM};
    if (hints != NULL)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return real(target, service, &h, res);
}

static void watch(const char *host)
{
    watched = host;
    lookups_on_loop = lookups_elsewhere = numeric_on_loop = 0;
}

static uint64_t longest_turn; /* the longest uv_run(UV_RUN_ONCE) in run_until, in ns: a blocked loop shows here */

static void on_result(void *data, const PGresult *res, sb_error_t err, const char *sqlstate);

static sb_pgquery_t *query(sb_pgpool_t *pool, const char *sql, int n, const char *const *values, struct result *r)
{
    memset(r, 0, sizeof(*r));
    r->pool = pool;
    r->self = sb_pgpool_query(pool, sql, n, values, on_result, r);
    return r->self;
}

static void on_result(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct result *r = data;
    ++r->called;
    r->err = err;
    r->at = uv_hrtime();
    snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", sqlstate != NULL ? sqlstate : "(null)");
    r->has_res = res != NULL;
    if (res != NULL) {
        r->ntuples = PQntuples(res);
        if (r->ntuples > 0 && PQnfields(res) > 0) {
            r->isnull = PQgetisnull(res, 0, 0);
            snprintf(r->value, sizeof(r->value), "%s", PQgetvalue(res, 0, 0));
        }
    }
    if (r->max_open != NULL) {
        sb_pgpool_stats_t st;
        sb_pgpool_stats(r->pool, &st);
        if (st.open > *r->max_open)
            *r->max_open = st.open;
    }
    if (r->pids != NULL && res != NULL)
        *r->pids = (int)strtol(r->value, NULL, 10);
    if (r->done_count != NULL)
        ++*r->done_count;
    if (r->cancel_self)
        sb_pgquery_cancel(r->self);
    if (r->cancel_other != NULL)
        sb_pgquery_cancel(r->cancel_other);
    if (r->then != NULL)
        query(r->pool, "select 'then'", 0, NULL, r->then);
    if (r->destroy_pool)
        sb_pgpool_destroy(r->pool);
}

static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until cond(arg) holds or timeout_ms passes; returns whether it holds. */
static int run_until(int (*cond)(void *), void *arg, unsigned timeout_ms)
{
    uv_timer_t *tick = calloc(1, sizeof(*tick));
    uv_timer_init(loop, tick);
    uv_timer_start(tick, on_tick, 5, 5);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    int held;
    while (!(held = cond(arg)) && uv_now(loop) < deadline) {
        uint64_t t0 = uv_hrtime();
        uv_run(loop, UV_RUN_ONCE);
        if (uv_hrtime() - t0 > longest_turn)
            longest_turn = uv_hrtime() - t0;
    }
    uv_close((uv_handle_t *)tick, (uv_close_cb)free);
    return held;
}

static int called(void *arg)
{
    return ((struct result *)arg)->called > 0;
}

static int never(void *arg)
{
    return 0;
}

struct count_goal {
    int *count;
    int want;
};

static int counted(void *arg)
{
    struct count_goal *g = arg;
    return *g->count >= g->want;
}

static int pool_idle(void *arg)
{
    sb_pgpool_stats_t st;
    sb_pgpool_stats(arg, &st);
    return st.busy == 0 && st.queued == 0;
}

static int pool_busy(void *arg)
{
    sb_pgpool_stats_t st;
    sb_pgpool_stats(arg, &st);
    return st.busy > 0;
}

static void wait_for(struct result *r, unsigned timeout_ms)
{
    run_until(called, r, timeout_ms);
}

static sb_pgpool_config_t config(const char *conninfo, unsigned size)
{
    sb_pgpool_config_t c = {
        .conninfo = conninfo,
        .size = size,
        .statement_timeout_ms = 5000,
        .connect_timeout_ms = 2000,
        .queue_timeout_ms = 5000,
        .max_queue = 1000,
        .prepare = 1,
    };
    return c;
}

static void test_basics(sb_pgpool_t *pool)
{
    struct result r;
    const char *v[] = {"41"};
    query(pool, "select $1::int + 1", 1, v, &r);
    ok(!r.called, "the callback does not run inside sb_pgpool_query");
    wait_for(&r, 5000);
    is_int(r.called, 1, "the callback runs once");
    is_int(r.err, SB_OK, "select $1::int + 1 succeeds");
    is_str(r.value, "42", "and returns 42");
    is_str(r.sqlstate, "", "no sqlstate on success");
    ok(r.has_res, "a result is passed on success");

    sb_pgpool_stats_t st;
    sb_pgpool_stats(pool, &st);
    ok(st.open >= 1 && st.open <= 4 && st.busy == 0 && st.queued == 0 && st.healthy, "connections open, idle, healthy (open %u)",
       st.open);

    query(pool, "create temporary table t(x int)", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_OK && r.has_res && r.ntuples == 0, "a command without rows is SB_OK with a result");
}

static void test_parameters(sb_pgpool_t *pool)
{
    static const char *const tricky[] = {
        "Robert'); DROP TABLE students;--",
        "' OR '1'='1",
        "O'Reilly \"quoted\" back\\slash $1 %s %n",
        "multi\nline\ttab\r\n",
        "caf\xc3\xa9 \xe2\x9c\x93 $$dollar$$ E'\\x41'",
        "",
    };
    for (size_t i = 0; i < sizeof(tricky) / sizeof(*tricky); ++i) {
        struct result r;
        query(pool, "select $1::text", 1, &tricky[i], &r);
        wait_for(&r, 5000);
        ok(r.err == SB_OK && !r.isnull && strcmp(r.value, tricky[i]) == 0, "parameter %zu comes back verbatim", i);
    }

    struct result r;
    const char *null_param[] = {NULL};
    query(pool, "select $1::text is null, $1::text", 1, null_param, &r);
    wait_for(&r, 5000);
    is_str(r.value, "t", "a NULL value is SQL NULL");

    char buf[16];
    memcpy(buf, "original", 9);
    const char *mine[] = {buf, "2"};
    query(pool, "select $1::text || $2::text", 2, mine, &r);
    memcpy(buf, "changed!", 9);
    wait_for(&r, 5000);
    is_str(r.value, "original2", "values are copied by sb_pgpool_query");
}

#define NCONC 200

static void test_concurrency(sb_pgpool_t *pool)
{
    static struct result rs[NCONC];
    static int pids[NCONC];
    unsigned max_open = 0;
    int done = 0;
    struct result activity;
    for (int i = 0; i < NCONC; ++i) {
        query(pool, "select pg_backend_pid()::text from pg_sleep(0.002)", 0, NULL, &rs[i]);
        rs[i].max_open = &max_open;
        rs[i].pids = &pids[i];
        rs[i].done_count = &done;
        if (i == NCONC / 2)
            query(pool, "select count(*)::text from pg_stat_activity where application_name = 'switchboard'", 0, NULL, &activity);
    }
    sb_pgpool_stats_t st;
    sb_pgpool_stats(pool, &st);
    ok(st.open <= 4 && st.busy <= 4 && st.queued >= NCONC - 4, "200 queries wait for 4 connections (open %u, busy %u, queued %u)",
       st.open, st.busy, st.queued);
    struct count_goal g = {&done, NCONC};
    uint64_t t0 = uv_hrtime();
    run_until(counted, &g, 30000);
    wait_for(&activity, 5000);
    printf("# %d queries in %.0f ms\n", NCONC, ms_since(t0));
    int good = 0, distinct = 0;
    int seen[8] = {0};
    for (int i = 0; i < NCONC; ++i) {
        if (rs[i].called == 1 && rs[i].err == SB_OK)
            ++good;
        int known = 0;
        for (int j = 0; j < distinct && j < 8; ++j)
            known |= seen[j] == pids[i];
        if (!known) {
            if (distinct < 8)
                seen[distinct] = pids[i];
            ++distinct;
        }
    }
    is_int(good, NCONC, "all 200 queries succeed, each callback once");
    ok(distinct >= 1 && distinct <= 4, "they ran on at most 4 server sessions (%d)", distinct);
    ok(max_open >= 1 && max_open <= 4, "never more than 4 connections open (max %u)", max_open);
    long sessions = strtol(activity.value, NULL, 10);
    ok(activity.err == SB_OK && sessions >= 1 && sessions <= 4,
       "pg_stat_activity shows at most 4 switchboard sessions under load (%s)", activity.value);
    sb_pgpool_stats(pool, &st);
    ok(st.busy == 0 && st.queued == 0 && st.open <= 4, "afterwards all idle (open %u)", st.open);
}

/* Runs `sql` on `pool` and waits for it; the result in *r. */
static void run(sb_pgpool_t *pool, const char *sql, int n, const char *const *values, struct result *r)
{
    query(pool, sql, n, values, r);
    wait_for(r, 5000);
}

/*
 * Statements are prepared once per connection and only executed afterwards;
 * a session that lost them, or a plan whose result type changed under it,
 * costs one reconnect and no failed query.
 */
static void test_prepared(void)
{
    sb_pgpool_config_t c = config(db_url, 1);
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    struct result r, pid1, pid2;
    const char *count_sql =
        "select count(*) from pg_prepared_statements where name like 'sb%' and statement = 'select $1::int * 2'";
    const char *v[] = {"21"};

    run(pool, "select $1::int * 2", 1, v, &r);
    is_str(r.value, "42", "a statement's first use prepares and executes it");
    run(pool, count_sql, 0, NULL, &r);
    is_str(r.value, "1", "it is a prepared statement of the session");
    const char *v2[] = {"50"};
    run(pool, "select $1::int * 2", 1, v2, &r);
    is_str(r.value, "100", "its next use executes it with new values");
    run(pool, count_sql, 0, NULL, &r);
    is_str(r.value, "1", "without preparing it again");

    query(pool, "selec $1::int", 1, v, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_E_DB_ERROR && strcmp(r.sqlstate, "42601") == 0, "a statement that does not parse fails its query (%s)",
       r.sqlstate);
    run(pool, "select $1::int * 2", 1, v, &r);
    is_str(r.value, "42", "and the connection goes on");

    /* the session loses the statement behind the pool's back */
    run(pool, "select pg_backend_pid()", 0, NULL, &pid1);
    run(pool, "deallocate all", 0, NULL, &r);
    is_int(r.err, SB_OK, "deallocate all");
    run(pool, "select $1::int * 2", 1, v, &r);
    ok(r.err == SB_OK && strcmp(r.value, "42") == 0, "a statement the session lost runs on a fresh session (%s)", r.sqlstate);
    run(pool, "select pg_backend_pid()", 0, NULL, &pid2);
    ok(strcmp(pid1.value, pid2.value) != 0, "the old session was closed");

    /* a migration changes a table under a prepared plan */
    char table[64], sql[256];
    snprintf(table, sizeof(table), "sb_pgpool_prep_%d", (int)getpid());
    snprintf(sql, sizeof(sql), "create table %s (a int)", table);
    run(pool, sql, 0, NULL, &r);
    snprintf(sql, sizeof(sql), "insert into %s values (7)", table);
    run(pool, sql, 0, NULL, &r);
    char select_sql[128];
    snprintf(select_sql, sizeof(select_sql), "select * from %s", table);
    run(pool, select_sql, 0, NULL, &r);
    is_str(r.value, "7", "a prepared select of the table");
    snprintf(sql, sizeof(sql), "alter table %s alter column a type text", table);
    run(pool, sql, 0, NULL, &r);
    is_int(r.err, SB_OK, "its column changes type");
    run(pool, select_sql, 0, NULL, &r);
    ok(r.err == SB_OK && strcmp(r.value, "7") == 0, "the select still answers (%s)", r.sqlstate);
    snprintf(sql, sizeof(sql), "drop table %s", table);
    run(pool, sql, 0, NULL, &r);

    /* a query cancelled while its statement is being prepared: the Prepare still counts, the connection goes on */
    run(pool, "select pg_backend_pid()", 0, NULL, &pid1);
    query(pool, "select $1::int + 1000", 1, v, &r); /* the connection is idle: the Prepare is on its way */
    sb_pgquery_cancel(r.self);
    struct result after;
    run(pool, "select $1::int + 1000", 1, v, &after);
    ok(after.err == SB_OK && strcmp(after.value, "1021") == 0 && !r.called, "a query cancelled during its Prepare is forgotten");
    run(pool, "select pg_backend_pid()", 0, NULL, &pid2);
    is_str(pid2.value, pid1.value, "and the next use of the statement found it prepared, on the same session");
    sb_pgpool_destroy(pool);

    c.prepare = 0;
    pool = sb_pgpool_create(loop, &c);
    run(pool, "select $1::int * 3", 1, v, &r);
    is_str(r.value, "63", "with prepare off, statements are sent unnamed");
    run(pool, "select count(*) from pg_prepared_statements", 0, NULL, &r);
    is_str(r.value, "0", "and nothing is prepared");
    sb_pgpool_destroy(pool);
}

static void test_errors(void)
{
    sb_pgpool_config_t c = config(db_url, 2);
    c.statement_timeout_ms = 100;
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    struct result r;

    uint64_t t0 = uv_hrtime();
    query(pool, "select pg_sleep(2)", 0, NULL, &r);
    wait_for(&r, 5000);
    double took = ms_since(t0);
    is_int(r.err, SB_E_DB_TIMEOUT, "statement_timeout maps to SB_E_DB_TIMEOUT");
    is_str(r.sqlstate, "57014", "with sqlstate 57014");
    ok(!r.has_res, "no result on failure");
    ok(took < 1500, "the statement was stopped by the 100 ms timeout (%.0f ms)", took);

    char table[64];
    snprintf(table, sizeof(table), "sb_pgpool_test_%d", (int)getpid());
    char sql[256];
    snprintf(sql, sizeof(sql), "create table %s (id int primary key)", table);
    query(pool, sql, 0, NULL, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_OK, "create a table");
    snprintf(sql, sizeof(sql), "insert into %s values ($1::int)", table);
    const char *one[] = {"1"};
    query(pool, sql, 1, one, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_OK, "first insert");
    query(pool, sql, 1, one, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_E_DB_CONFLICT, "a duplicate key is SB_E_DB_CONFLICT");
    is_str(r.sqlstate, "23505", "with sqlstate 23505");
    snprintf(sql, sizeof(sql), "drop table %s", table);
    query(pool, sql, 0, NULL, &r);
    wait_for(&r, 5000);

    query(pool, "selec 1", 0, NULL, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_E_DB_ERROR, "a syntax error is SB_E_DB_ERROR");
    is_str(r.sqlstate, "42601", "with sqlstate 42601");

    query(pool, "select 1/0", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_E_DB_ERROR && strcmp(r.sqlstate, "22012") == 0, "division by zero is SB_E_DB_ERROR 22012");

    query(pool, "copy (select 1) to stdout", 0, NULL, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_E_DB_ERROR, "COPY is refused as SB_E_DB_ERROR");

    query(pool, "select 'still fine'", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_OK && strcmp(r.value, "still fine") == 0, "the pool works after errors");
    sb_pgpool_stats_t st;
    sb_pgpool_stats(pool, &st);
    ok(st.healthy && st.busy == 0 && st.open >= 1, "errors from the server leave the pool healthy");
    sb_pgpool_destroy(pool);
}

static void test_cancel(void)
{
    sb_pgpool_config_t c = config(db_url, 1);
    c.max_queue = 2;
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    struct result a, b, d, e, f, g, h, x;
    sb_pgpool_stats_t st;

    /* a queued query */
    query(pool, "select 'a' from pg_sleep(0.1)", 0, NULL, &a);
    query(pool, "select 'b'", 0, NULL, &b);
    sb_pgquery_cancel(b.self);
    query(pool, "select 'e'", 0, NULL, &e);
    wait_for(&e, 5000);
    ok(a.called == 1 && a.err == SB_OK && e.called == 1 && strcmp(e.value, "e") == 0, "queries around a cancelled one run");
    is_int(b.called, 0, "a cancelled queued query's callback never runs");

    /* a query in flight: the connection is idle, so it is sent at once */
    query(pool, "select 'orphan' from pg_sleep(0.2)", 0, NULL, &d);
    ok(pool_busy(pool), "the query is in flight");
    sb_pgquery_cancel(d.self);
    query(pool, "select 'after'", 0, NULL, &e);
    wait_for(&e, 5000);
    is_str(e.value, "after", "the next query gets its own result, not the orphan's");
    run_until(never, NULL, 50);
    is_int(d.called, 0, "a cancelled in-flight query's callback never runs");
    sb_pgpool_stats(pool, &st);
    ok(st.open == 1 && st.busy == 0 && st.queued == 0, "the connection went back to idle (open %u busy %u)", st.open, st.busy);

    /* an in-flight query cancelled with nothing behind it: the pool drains to idle on its own */
    query(pool, "select pg_sleep(0.1)", 0, NULL, &d);
    sb_pgquery_cancel(d.self);
    ok(run_until(pool_idle, pool, 5000), "an orphaned query completes and frees its connection");
    is_int(d.called, 0, "and its callback never runs");

    /* re-entrancy: cancel itself (no-op), cancel a queued sibling, issue a new query */
    query(pool, "select 'f'", 0, NULL, &f);
    query(pool, "select 'h'", 0, NULL, &h);
    f.cancel_self = 1;
    f.cancel_other = h.self;
    f.then = &g;
    wait_for(&f, 5000);
    ok(f.called == 1 && f.err == SB_OK, "a callback may cancel its own query (no-op)");
    wait_for(&g, 5000);
    ok(g.called == 1 && strcmp(g.value, "then") == 0, "a callback may issue a query");
    run_until(never, NULL, 50);
    is_int(h.called, 0, "a callback may cancel a queued query");

    /* max_queue: one in flight, two waiting, the rest fail at once (from the loop) */
    struct result q1, q2, q3, q4, q5;
    query(pool, "select 1 from pg_sleep(0.05)", 0, NULL, &q1);
    query(pool, "select 2", 0, NULL, &q2);
    query(pool, "select 3", 0, NULL, &q3);
    query(pool, "select 4", 0, NULL, &q4);
    query(pool, "select 5", 0, NULL, &q5);
    ok(!q4.called, "a query over max_queue is not failed inside sb_pgpool_query");
    sb_pgquery_cancel(q5.self);
    wait_for(&q3, 5000);
    wait_for(&q4, 5000);
    ok(q1.err == SB_OK && q2.err == SB_OK && q3.err == SB_OK, "queries within max_queue run");
    ok(q4.called == 1 && q4.err == SB_E_DB_UNAVAILABLE, "a query beyond max_queue fails with SB_E_DB_UNAVAILABLE");
    ok(q4.at < q1.at, "at once, not after waiting");
    is_int(q5.called, 0, "cancelling a failed query before delivery suppresses its callback");

    /* queue timeout */
    sb_pgpool_destroy(pool);
    c = config(db_url, 1);
    c.queue_timeout_ms = 200;
    pool = sb_pgpool_create(loop, &c);
    query(pool, "select 1", 0, NULL, &x);
    wait_for(&x, 5000);
    query(pool, "select pg_sleep(1)", 0, NULL, &a);
    uint64_t t0 = uv_hrtime();
    query(pool, "select 2", 0, NULL, &b);
    wait_for(&b, 5000);
    double took = ms_since(t0);
    ok(b.err == SB_E_DB_UNAVAILABLE && took >= 150 && took < 900, "a query waiting past queue_timeout fails (%.0f ms)", took);
    wait_for(&a, 5000);
    is_int(a.err, SB_OK, "the query holding the connection completes");

    /* destroy drops queued and in-flight queries without callbacks */
    query(pool, "select pg_sleep(0.1)", 0, NULL, &a);
    query(pool, "select 2", 0, NULL, &b);
    sb_pgpool_destroy(pool);
    run_until(never, NULL, 200);
    ok(!a.called && !b.called, "destroy runs no callbacks");

    /* destroy from inside a callback */
    pool = sb_pgpool_create(loop, &c);
    query(pool, "select 1", 0, NULL, &a);
    query(pool, "select 2", 0, NULL, &b);
    a.destroy_pool = 1;
    wait_for(&a, 5000);
    run_until(never, NULL, 100);
    ok(a.called == 1 && !b.called, "a callback may destroy the pool; later queries are dropped");
}

/* A TCP port on 127.0.0.1 that refuses connections (bound, not listening) or accepts and never answers (listening). */
static int local_port(int listening, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    if (listening && listen(fd, 1) != 0)
        return -1;
    *fd_out = fd;
    return ntohs(sa.sin_port);
}

static void test_connect_paths(void)
{
    /* libpq moves to the second host after the first refuses: a new socket during PQconnectPoll */
    PQconninfoOption *opts = PQconninfoParse(db_url, NULL);
    const char *port = NULL, *user = NULL, *dbname = NULL;
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; ++o) {
        if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            dbname = o->val;
    }
    int closed_fd = -1;
    int closed = local_port(0, &closed_fd);
    char conninfo[512];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1,127.0.0.1 port=%d,%s user=%s dbname=%s sslmode=disable", closed,
             port ? port : "5432", user ? user : "postgres", dbname ? dbname : "postgres");
    sb_pgpool_config_t c = config(conninfo, 1);
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    struct result r;
    query(pool, "select 'second host'", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_OK && strcmp(r.value, "second host") == 0, "connects when the socket changes during PQconnectPoll");
    query(pool, "select 'again'", 0, NULL, &r);
    wait_for(&r, 5000);
    is_str(r.value, "again", "and keeps working on the new socket");
    sb_pgpool_destroy(pool);
    run_until(never, NULL, 20);

    /* the same, but the second socket gets a different (lower) descriptor number: a new poll handle */
    int spare = open("/dev/null", O_RDONLY);
    pool = sb_pgpool_create(loop, &c);
    query(pool, "select 'new descriptor'", 0, NULL, &r);
    close(spare); /* the refused socket above it closes next; libpq's new socket takes this number */
    wait_for(&r, 5000);
    ok(r.err == SB_OK && strcmp(r.value, "new descriptor") == 0, "connects when the socket's descriptor number changes");
    sb_pgpool_destroy(pool);

    /* options already in the conninfo are kept next to the statement timeout; application_name is set */
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%s user=%s dbname=%s options='-c search_path=sb_pgpool_test'",
             port ? port : "5432", user ? user : "postgres", dbname ? dbname : "postgres");
    c = config(conninfo, 1);
    c.statement_timeout_ms = 1234;
    pool = sb_pgpool_create(loop, &c);
    query(pool,
          "select current_setting('search_path') || ' ' || current_setting('statement_timeout') || ' ' || "
          "current_setting('application_name')",
          0, NULL, &r);
    wait_for(&r, 5000);
    is_str(r.value, "sb_pgpool_test 1234ms switchboard", "conninfo options are kept beside statement_timeout");
    sb_pgpool_destroy(pool);
    PQconninfoFree(opts);

    /* a server that accepts and never answers: the attempt is abandoned at connect_timeout */
    int silent_fd = -1;
    int silent = local_port(1, &silent_fd);
    snprintf(conninfo, sizeof(conninfo), "postgresql://nobody@127.0.0.1:%d/x?sslmode=disable", silent);
    c = config(conninfo, 2);
    c.connect_timeout_ms = 150;
    c.queue_timeout_ms = 600;
    pool = sb_pgpool_create(loop, &c);
    uint64_t t0 = uv_hrtime();
    query(pool, "select 1", 0, NULL, &r);
    wait_for(&r, 5000);
    double took = ms_since(t0);
    ok(r.err == SB_E_DB_UNAVAILABLE && took >= 550 && took < 1500, "no answer: SB_E_DB_UNAVAILABLE after queue_timeout (%.0f ms)",
       took);
    sb_pgpool_stats_t st;
    sb_pgpool_stats(pool, &st);
    ok(!st.healthy && st.open == 0, "the pool reports unhealthy, nothing open");
    sb_pgpool_destroy(pool);

    /* refused: a query still waits out queue_timeout while attempts back off */
    snprintf(conninfo, sizeof(conninfo), "postgresql://nobody@127.0.0.1:%d/x?sslmode=disable", closed);
    c = config(conninfo, 2);
    c.queue_timeout_ms = 300;
    c.max_queue = 0;
    pool = sb_pgpool_create(loop, &c);
    t0 = uv_hrtime();
    query(pool, "select 1", 0, NULL, &r);
    wait_for(&r, 5000);
    took = ms_since(t0);
    ok(r.err == SB_E_DB_UNAVAILABLE && took >= 250 && took < 1000, "refused: SB_E_DB_UNAVAILABLE after queue_timeout (%.0f ms)",
       took);
    sb_pgpool_destroy(pool);

    close(closed_fd);
    close(silent_fd);
}

/* db_url with its host replaced by `host`; 0 when db_url does not name 127.0.0.1 (the test cluster's address). */
static int url_with_host(char *out, size_t len, const char *host)
{
    const char *at = strstr(db_url, "127.0.0.1");
    if (at == NULL)
        return 0;
    snprintf(out, len, "%.*s%s%s", (int)(at - db_url), db_url, host, at + strlen("127.0.0.1"));
    return 1;
}

static void test_host_names(void)
{
    char url[512];
    if (!url_with_host(url, sizeof(url), "localhost")) {
        ok(1, "# SKIP host name tests: SB_TEST_DATABASE_URL does not use 127.0.0.1");
        return;
    }
    struct result r;
    sb_pgpool_stats_t st;

    /* a name: resolved once at creation, then libpq only gets addresses */
    watch("localhost");
    sb_pgpool_config_t c = config(url, 2);
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    is_int(lookups_on_loop, 1, "sb_pgpool_create looks the host name up once");
    watch("localhost");
    query(pool, "select host(inet_server_addr())", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_OK && strcmp(r.value, "127.0.0.1") == 0, "a host name connects (server address %s)", r.value);
    query(pool, "select 'by name'", 0, NULL, &r);
    wait_for(&r, 5000);
    is_str(r.value, "by name", "and keeps working");
    is_int(lookups_on_loop, 0, "libpq did not look the name up on the loop's thread");
    ok(numeric_on_loop >= 1, "libpq was given the address as hostaddr (%u numeric lookups)", numeric_on_loop);
    sb_pgpool_destroy(pool);

    /* the database moves (failover changes DNS): a background lookup after a failed attempt finds it */
    char fake[512];
    url_with_host(fake, sizeof(fake), FAKE_HOST);
    fake_target = "127.0.0.2"; /* loopback, but the server listens on 127.0.0.1 only: refused */
    fake_delay_ms = 400;       /* a lookup on the loop would stall it this long: far past a sanitizer build's slowest turn */
    watch(FAKE_HOST);
    c = config(fake, 2);
    c.queue_timeout_ms = 1000; /* past the background lookup a failed attempt starts */
    pool = sb_pgpool_create(loop, &c);
    uv_update_time(loop); /* the start-up lookup blocked for fake_delay_ms: queue deadlines count from now */
    watch(FAKE_HOST);
    longest_turn = 0;
    query(pool, "select 'old address'", 0, NULL, &r);
    wait_for(&r, 5000);
    ok(r.err == SB_E_DB_UNAVAILABLE, "at the old address queries fail with SB_E_DB_UNAVAILABLE");
    ok(lookups_elsewhere >= 1, "failed attempts re-resolve the name in the background (%u lookups)", lookups_elsewhere);
    fake_target = "127.0.0.1";
    uint64_t t0 = uv_hrtime();
    do {
        query(pool, "select host(inet_server_addr())", 0, NULL, &r);
        wait_for(&r, 5000);
    } while (r.err != SB_OK && ms_since(t0) < 5000);
    ok(r.err == SB_OK && strcmp(r.value, "127.0.0.1") == 0, "once the name points at the server, the same pool connects (%.0f ms)",
       ms_since(t0));
    is_int(lookups_on_loop, 0, "no lookup ran on the loop's thread");
    ok(longest_turn < fake_delay_ms * 3 / 4 * 1000000ull, "and the loop never waited for DNS (longest turn %.1f ms)",
       (double)longest_turn / 1e6);
    sb_pgpool_destroy(pool);

    /* a name that does not resolve, on slow DNS: attempts fail without a lookup on the loop, queries at queue_timeout */
    fake_target = NULL;
    fake_delay_ms = 200;
    c = config(fake, 2);
    c.queue_timeout_ms = 500;
    pool = sb_pgpool_create(loop, &c);
    uv_update_time(loop); /* the start-up lookup blocked for fake_delay_ms: queue deadlines count from now */
    watch(FAKE_HOST);
    longest_turn = 0;
    t0 = uv_hrtime();
    query(pool, "select 1", 0, NULL, &r);
    double call = ms_since(t0);
    wait_for(&r, 5000);
    double took = ms_since(t0);
    ok(r.err == SB_E_DB_UNAVAILABLE && took >= 450 && took < 800,
       "slow DNS, no such host: SB_E_DB_UNAVAILABLE at queue_timeout (%.0f ms)", took);
    ok(call < 20, "sb_pgpool_query returned at once (%.1f ms)", call);
    ok(lookups_on_loop == 0 && lookups_elsewhere >= 1, "lookups ran only in the background (%u on the loop, %u elsewhere)",
       lookups_on_loop, lookups_elsewhere);
    ok(longest_turn < fake_delay_ms * 3 / 4 * 1000000ull, "the loop never waited for DNS (longest turn %.1f ms)",
       (double)longest_turn / 1e6);
    sb_pgpool_stats(pool, &st);
    ok(!st.healthy && st.open == 0, "the pool reports unhealthy, nothing open");

    sb_pgpool_destroy(pool);

    /*
     * Destroyed while a lookup is in flight, queued (cancelled) or running:
     * its callback must not touch the pool (ASan watches).
     */
    pool = sb_pgpool_create(loop, &c);
    query(pool, "select 2", 0, NULL, &r); /* a fresh pool's first attempt fails at once and starts a lookup */
    sb_pgpool_destroy(pool);
    run_until(never, NULL, 50);
    ok(!r.called, "destroy right after a lookup started runs no callback");
    pool = sb_pgpool_create(loop, &c);
    watch(FAKE_HOST);
    query(pool, "select 3", 0, NULL, &r);
    run_until(never, NULL, 50);
    unsigned started = lookups_elsewhere;
    sb_pgpool_destroy(pool);
    run_until(never, NULL, 400);
    ok(!r.called && started == 1, "destroy while a lookup runs (%u started) runs no callback", started);
    fake_delay_ms = 0;

    /* the real resolver, a name that cannot exist */
    if (!url_with_host(url, sizeof(url), "no-such-host.invalid"))
        return;
    c = config(url, 2);
    c.queue_timeout_ms = 400;
    pool = sb_pgpool_create(loop, &c);
    watch("no-such-host.invalid");
    longest_turn = 0;
    t0 = uv_hrtime();
    query(pool, "select 1", 0, NULL, &r);
    wait_for(&r, 5000);
    took = ms_since(t0);
    ok(r.err == SB_E_DB_UNAVAILABLE && took >= 350 && took < 700,
       "no-such-host.invalid: SB_E_DB_UNAVAILABLE at queue_timeout (%.0f ms)", took);
    ok(lookups_on_loop == 0 && longest_turn < 50 * 1000000ull, "without a lookup on the loop (longest turn %.1f ms)",
       (double)longest_turn / 1e6);
    sb_pgpool_destroy(pool);
    watch(NULL);
}

static int cluster(const char *cmd, const char *dir)
{
    char line[1024];
    snprintf(line, sizeof(line), "'%s/tests/pg/cluster.sh' %s '%s' >/dev/null", SB_SOURCE_ROOT, cmd, dir);
    int rc = system(line);
    uv_update_time(loop);
    return rc;
}

static void test_outage(const char *dir)
{
    sb_pgpool_config_t c = config(db_url, 2);
    c.connect_timeout_ms = 1000;
    c.queue_timeout_ms = 1000;
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    struct result r, inflight;
    sb_pgpool_stats_t st;

    query(pool, "select 1", 0, NULL, &r);
    wait_for(&r, 5000);
    is_int(r.err, SB_OK, "outage: the pool works before");

    query(pool, "select pg_sleep(30)", 0, NULL, &inflight);
    run_until(pool_busy, pool, 1000);
    is_int(cluster("stop", dir), 0, "outage: cluster stopped");
    uint64_t t0 = uv_hrtime();
    wait_for(&inflight, 5000);
    ok(inflight.err == SB_E_DB_UNAVAILABLE, "a query in flight when the server dies fails with SB_E_DB_UNAVAILABLE (%.0f ms)",
       ms_since(t0));

    t0 = uv_hrtime();
    query(pool, "select 2", 0, NULL, &r);
    wait_for(&r, 5000);
    double took = ms_since(t0);
    ok(r.err == SB_E_DB_UNAVAILABLE && took < 1500,
       "a query while down fails with SB_E_DB_UNAVAILABLE within queue_timeout (%.0f ms)", took);
    sb_pgpool_stats(pool, &st);
    ok(!st.healthy && st.open == 0, "the pool reports unhealthy with no connection open");

    is_int(cluster("restart", dir), 0, "outage: cluster restarted");
    t0 = uv_hrtime();
    int tries = 0;
    do {
        ++tries;
        query(pool, "select 'back'", 0, NULL, &r);
        wait_for(&r, 5000);
    } while (r.err != SB_OK && ms_since(t0) < 20000);
    ok(r.err == SB_OK && strcmp(r.value, "back") == 0, "the same pool serves queries again (%.0f ms after restart, %d tries)",
       ms_since(t0), tries);
    sb_pgpool_stats(pool, &st);
    ok(st.healthy && st.open >= 1, "and reports healthy");
    sb_pgpool_destroy(pool);
}

int main(void)
{
    db_url = getenv("SB_TEST_DATABASE_URL");
    if (db_url == NULL || *db_url == '\0') {
        printf("1..0 # SKIP no database\n");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    loop_thread = pthread_self();
    if (getenv("SB_TEST_DEBUG") != NULL)
        sb_log_set_level(SB_LOG_DEBUG); /* every connection attempt and its outcome on stderr */
    loop = calloc(1, sizeof(*loop));
    uv_loop_init(loop);

    sb_pgpool_config_t c = config(db_url, 4);
    sb_pgpool_t *pool = sb_pgpool_create(loop, &c);
    test_concurrency(pool);
    test_basics(pool);
    test_parameters(pool);
    sb_pgpool_destroy(pool);

    test_prepared();
    test_errors();
    test_cancel();
    test_connect_paths();
    test_host_names();

    const char *dir = getenv("SB_TEST_PG_DIR");
    if (dir != NULL && *dir != '\0')
        test_outage(dir);
    else
        ok(1, "# SKIP outage test: SB_TEST_PG_DIR unset");

    uv_run(loop, UV_RUN_DEFAULT); /* returns once every handle is closed */
    is_int(uv_loop_close(loop), 0, "every handle was closed");
    free(loop);
    return done_testing();
}
