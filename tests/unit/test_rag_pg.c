/*
 * Retrieval quality and safety of the Postgres full-text backend: loads the
 * demo knowledge base (rag/knowledge/) into a fresh database with the built
 * switchboard-ingest, asks every question of tests/rag/eval.json through
 * SB_RAG_PG_SEARCH_SQL with K=4, and requires the expected document among the
 * sources returned for at least 90% of them (recall@4). Then feeds the
 * statement hostile text. SB_TEST_DATABASE_URL names a database whose user
 * may CREATE DATABASE; without it the file is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "migrate.h"
#include "../../rag/pg_search.h"
#include "sb/buf.h"
#include "pgtest.h"
#include "tap.h"

#define K "4"
#define MIN_RECALL 0.9

static char dbname[64];

/* Runs switchboard-ingest on rag/knowledge with DATABASE_URL=url; returns its exit status and its output in *out (free it). */
static int run_ingest(const char *url, char **out)
{
    int fds[2];
    if (pipe(fds) != 0)
        abort();
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        setenv("DATABASE_URL", url, 1);
        setenv("SWITCHBOARD_ENV_FILE", "/nonexistent/.env", 1); /* no stray .env in the build folder */
        unsetenv("RAG_BACKEND");
        execl(SB_BUILD_ROOT "/rag/switchboard-ingest", "switchboard-ingest", SB_SOURCE_ROOT "/rag/knowledge", (char *)NULL);
        perror("exec " SB_BUILD_ROOT "/rag/switchboard-ingest");
        _exit(127);
    }
    close(fds[1]);
    sb_buf_t b;
    sb_buf_init(&b, 1 << 20);
    char block[4096];
    ssize_t n;
    while ((n = read(fds[0], block, sizeof(block))) > 0)
        sb_buf_append(&b, block, (size_t)n);
    close(fds[0]);
    sb_buf_append(&b, "", 1);
    int status;
    waitpid(pid, &status, 0);
    *out = b.base;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void diag(const char *text)
{
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        printf("# %.*s\n", len, p);
        p += len + (nl != NULL);
    }
}

/* Runs the search; returns the parsed json array (decref it), or NULL after printing the error. */
static json_t *search(PGconn *c, const char *question, const char *k)
{
    const char *params[] = {question, k};
    PGresult *res = PQexecParams(c, SB_RAG_PG_SEARCH_SQL, 2, NULL, params, NULL, NULL, 0);
    json_t *j = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        printf("# search failed: %s", PQerrorMessage(c));
    } else if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        printf("# search returned %d rows of %d columns\n", PQntuples(res), PQnfields(res));
    } else {
        json_error_t err;
        j = json_loads(PQgetvalue(res, 0, 0), 0, &err);
        if (j == NULL || !json_is_array(j)) {
            printf("# search returned no json array: %s\n", err.text);
            json_decref(j);
            j = NULL;
        }
    }
    PQclear(res);
    return j;
}

/* Every passage has the five fields, and they come best first. */
static int well_formed(json_t *arr)
{
    size_t i;
    json_t *p;
    double prev = 1e300;
    json_array_foreach(arr, i, p)
    {
        if (!json_is_string(json_object_get(p, "source")) || !json_is_string(json_object_get(p, "title")) ||
            !json_is_string(json_object_get(p, "heading")) || !json_is_string(json_object_get(p, "text")) ||
            !json_is_number(json_object_get(p, "score")))
            return 0;
        double s = json_number_value(json_object_get(p, "score"));
        if (s > prev)
            return 0;
        prev = s;
    }
    return 1;
}

static void test_recall(PGconn *c)
{
    json_error_t err;
    json_t *eval = json_load_file(SB_SOURCE_ROOT "/tests/rag/eval.json", 0, &err);
    json_t *questions = json_object_get(eval, "questions");
    if (!ok(json_is_array(questions) && json_array_size(questions) > 0, "tests/rag/eval.json has questions")) {
        printf("# %s\n", err.text);
        json_decref(eval);
        return;
    }
    size_t i, hits = 0, n = json_array_size(questions), shapes = 0;
    json_t *q;
    json_array_foreach(questions, i, q)
    {
        const char *text = json_string_value(json_object_get(q, "q"));
        const char *doc = json_string_value(json_object_get(q, "doc"));
        json_t *res = search(c, text ? text : "", K);
        int hit = 0;
        size_t j;
        json_t *p;
        sb_buf_t got;
        sb_buf_init(&got, 4096);
        json_array_foreach(res, j, p)
        {
            const char *src = json_string_value(json_object_get(p, "source"));
            if (src != NULL && doc != NULL && strcmp(src, doc) == 0)
                hit = 1;
            sb_buf_appendf(&got, " %s", src ? src : "?");
        }
        sb_buf_append(&got, "", 1);
        shapes += res != NULL && well_formed(res) && json_array_size(res) <= 4;
        if (!hit)
            printf("# miss: want %s, got%s: %s\n", doc ? doc : "?", got.base ? got.base : " nothing", text ? text : "?");
        hits += hit;
        sb_buf_dispose(&got);
        json_decref(res);
    }
    double recall = (double)hits / (double)n;
    printf("# recall@4 = %.3f (%zu/%zu)\n", recall, hits, n);
    ok(shapes == n, "every answer is at most 4 well-formed passages, best first (%zu/%zu)", shapes, n);
    ok(recall >= MIN_RECALL, "recall@4 %.3f >= %.2f", recall, MIN_RECALL);
    json_decref(eval);
}

static long count_chunks(PGconn *c)
{
    PGresult *res = PQexec(c, "SELECT count(*) FROM rag_chunks");
    long n = PQresultStatus(res) == PGRES_TUPLES_OK ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return n;
}

static void test_hostile(PGconn *c)
{
    long before = count_chunks(c);
    static const char *const nothing[] = {"", "   ", "the and of to is", "!!! ??? ... ---", "'", "''", "\\", "&|!():*<->"};
    for (size_t i = 0; i < sizeof(nothing) / sizeof(nothing[0]); ++i) {
        json_t *r = search(c, nothing[i], K);
        ok(r != NULL && json_array_size(r) == 0, "no passages and no error for \"%s\"", nothing[i]);
        json_decref(r);
    }
    static const char *const odd[] = {"'); drop table rag_chunks; --",
                                      "refund' | 'paypal",
                                      "refund\\' & !paypal:* <-> (warranty",
                                      "O'Brien's kettle isn't \"working\" \\ refund\\\\",
                                      "rückerstattung für den wasserkocher 退款 🫖 refund",
                                      "refund:* & paypal:A"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); ++i) {
        json_t *r = search(c, odd[i], K);
        ok(r != NULL && well_formed(r) && json_array_size(r) <= 4, "well-formed answer for \"%s\" (%zu passages)", odd[i],
           r ? json_array_size(r) : 0);
        json_decref(r);
    }

    /* 10 KB of text: every word of the knowledge base's vocabulary at once, and many distinct lexemes. */
    sb_buf_t big;
    sb_buf_init(&big, 1 << 20);
    for (int i = 0; big.len < 10240; ++i)
        sb_buf_appendf(&big, "refund paypal warranty kettle' grinder%d \"toaster\" \\ don't; ", i);
    sb_buf_append(&big, "", 1);
    json_t *r = search(c, big.base, K);
    ok(r != NULL && well_formed(r) && json_array_size(r) == 4, "10 KB question: 4 passages");
    json_decref(r);
    sb_buf_dispose(&big);

    r = search(c, "refund paypal", "0");
    ok(r != NULL && json_array_size(r) == 0, "K=0: no passages");
    json_decref(r);
    r = search(c, "refund paypal", "-3");
    ok(r != NULL && json_array_size(r) == 0, "negative K: no passages, no error");
    json_decref(r);
    r = search(c, "refund paypal", "100");
    ok(r != NULL && well_formed(r) && json_array_size(r) > 4, "a large K returns every match (%zu)", r ? json_array_size(r) : 0);
    json_decref(r);

    is_int(count_chunks(c), before, "rag_chunks untouched by the hostile questions");
}

int main(void)
{
    pgtest_start();

    snprintf(dbname, sizeof(dbname), "sb_rag_pg_test_%ld", (long)getpid());
    exec_admin("DROP DATABASE IF EXISTS %s", dbname);
    exec_admin("CREATE DATABASE %s", dbname);
    char *url = conninfo_for(dbname);

    sb_config_t config;
    memset(&config, 0, sizeof(config));
    config.database_url = url;
    config.tickets_table = "support_tickets";
    config.interactions_table = "support_interactions";
    config.pg_connect_timeout_ms = 3000;
    if (!ok(sb_migrate_run(&config, 0, NULL) == 0, "migrations applied"))
        goto out;

    char *log = NULL;
    int rc = run_ingest(url, &log);
    diag(log);
    free(log);
    if (!ok(rc == 0, "switchboard-ingest rag/knowledge exits 0 (got %d)", rc))
        goto out;

    PGconn *c = PQconnectdb(url);
    if (!ok(PQstatus(c) == CONNECTION_OK, "connected to the test database")) {
        PQfinish(c);
        goto out;
    }
    ok(count_chunks(c) > 10, "chunks loaded (%ld)", count_chunks(c));
    test_recall(c);
    test_hostile(c);
    PQfinish(c);
out:
    free(url);
    exec_admin("DROP DATABASE IF EXISTS %s", dbname);
    PQfinish(admin);
    return done_testing();
}
