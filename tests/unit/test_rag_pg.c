/*
 * Retrieval quality and safety of the Postgres full-text backend: loads the
 * demo knowledge base (rag/knowledge/) with the built switchboard-ingest into
 * a fresh database at schema version 2, migrates it (003 indexes the chunks
 * already there), asks every question of tests/rag/eval.json through
 * SB_RAG_PG_SEARCH_SQL with K=4, and requires the expected document among the
 * sources returned for at least 90% of them (recall@4), and the very answers
 * of ranking every chunk (SB_RAG_PG_EXACT_SQL). Then feeds the statement
 * hostile text, and writes to rag_chunks every way a user could, checking the
 * index after each. SB_TEST_DATABASE_URL names a database whose user may
 * CREATE DATABASE; without it the file is skipped.
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

/*
 * Rows by which rag_postings, rag_lexemes and rag_corpus differ from the same
 * computed afresh from rag_chunks (0: the triggers kept the index right).
 */
#define INDEX_MISMATCHES_SQL                                                                                                       \
    "WITH want AS (SELECT c.num, l, ts_rank_cd(c.tsv, rag_lexeme_query(l), 32) AS impact"                                          \
    "  FROM rag_chunks c, unnest(tsvector_to_array(c.tsv)) AS l),"                                                                 \
    " have AS (SELECT p.chunk, x.lexeme, p.impact FROM rag_postings p JOIN rag_lexemes x ON x.id = p.lexeme),"                     \
    " want_df AS (SELECT l, count(*)::integer FROM want GROUP BY l)"                                                               \
    " SELECT (SELECT count(*) FROM ((TABLE want EXCEPT TABLE have) UNION ALL (TABLE have EXCEPT TABLE want)) d)"                   \
    " + (SELECT count(*) FROM ((TABLE want_df EXCEPT SELECT lexeme, df FROM rag_lexemes)"                                          \
    "    UNION ALL (SELECT lexeme, df FROM rag_lexemes EXCEPT TABLE want_df)) d)"                                                  \
    " + (SELECT count(*) FROM rag_corpus WHERE chunks <> (SELECT count(*) FROM rag_chunks))"                                       \
    " + (SELECT abs(count(*) - 1) FROM rag_corpus)"

/* Applies the embedded migrations up to `version` by hand, as `switchboard migrate` of that time would have. */
static int migrate_to(PGconn *c, int version)
{
    int rc = 0;
    PQclear(PQexec(c, "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())"));
    for (size_t i = 0; i < sb_migration_count && sb_migrations[i].version <= version && rc == 0; ++i) {
        static const char tickets[] = "{{tickets_table}}", interactions[] = "{{interactions_table}}";
        sb_buf_t sql;
        sb_buf_init(&sql, 1 << 24);
        for (const char *p = sb_migrations[i].sql; *p != '\0';) {
            if (strncmp(p, tickets, sizeof(tickets) - 1) == 0) {
                sb_buf_appendz(&sql, "support_tickets");
                p += sizeof(tickets) - 1;
            } else if (strncmp(p, interactions, sizeof(interactions) - 1) == 0) {
                sb_buf_appendz(&sql, "support_interactions");
                p += sizeof(interactions) - 1;
            } else {
                sb_buf_append(&sql, p++, 1);
            }
        }
        sb_buf_append(&sql, "", 1);
        PGresult *res = PQexec(c, sql.base);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            printf("# migration %d: %s", sb_migrations[i].version, PQerrorMessage(c));
            rc = -1;
        }
        PQclear(res);
        sb_buf_dispose(&sql);
        char version_text[16];
        snprintf(version_text, sizeof(version_text), "%d", sb_migrations[i].version);
        const char *params[] = {version_text, sb_migrations[i].name};
        res = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2, NULL, params, NULL, NULL,
                           0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = -1;
        PQclear(res);
    }
    return rc;
}

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

/* Runs a search statement; returns the parsed json array (decref it), or NULL after printing the error. */
static json_t *run_search(PGconn *c, const char *sql, const char *question, const char *k)
{
    const char *params[] = {question, k};
    PGresult *res = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
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

static json_t *search(PGconn *c, const char *question, const char *k)
{
    return run_search(c, SB_RAG_PG_SEARCH_SQL, question, k);
}

/* A number from a one-value query, or -1. */
static long number(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    long n = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    else
        printf("# %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    return n;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ok(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK, "%.60s%s", sql,
       PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK ? "" : PQerrorMessage(c));
    PQclear(res);
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

/*
 * The demo knowledge has no word in more than 100 chunks, so no posting list
 * is cut: every answer must be exactly that of ranking every chunk, scores
 * included.
 */
static void test_exact(PGconn *c)
{
    json_t *eval = json_load_file(SB_SOURCE_ROOT "/tests/rag/eval.json", 0, NULL);
    json_t *questions = json_object_get(eval, "questions");
    static const char *const ks[] = {"1", "4", "8"};
    size_t i, same = 0, n = 0;
    json_t *q;
    json_array_foreach(questions, i, q)
    {
        const char *text = json_string_value(json_object_get(q, "q"));
        for (size_t k = 0; k < sizeof(ks) / sizeof(ks[0]); ++k, ++n) {
            json_t *fast = search(c, text ? text : "", ks[k]);
            json_t *exact = run_search(c, SB_RAG_PG_EXACT_SQL, text ? text : "", ks[k]);
            if (fast != NULL && exact != NULL && json_equal(fast, exact))
                ++same;
            else
                printf("# differs from the exact ranking (K=%s): %s\n", ks[k], text ? text : "?");
            json_decref(fast);
            json_decref(exact);
        }
    }
    is_int(same, n, "every answer equals the exact ranking's, K = 1, 4 and 8 (%zu/%zu)", same, n);
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

/*
 * Every kind of write to rag_chunks, in a transaction rolled back at the end:
 * the triggers keep the index equal to one computed afresh after each.
 */
static void test_writes(PGconn *c)
{
    exec_ok(c, "BEGIN");
    exec_ok(c, "UPDATE rag_chunks SET title = title || ' Gadgets' WHERE source = 'refunds.md'");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "an UPDATE of the title re-indexes the chunks");
#define POSTINGS_WRITTEN "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables WHERE relname = 'rag_postings'"
    long written = number(c, POSTINGS_WRITTEN);
    exec_ok(c, "UPDATE rag_chunks SET position = position + 100 WHERE source = 'returns.md'");
    is_int(number(c, POSTINGS_WRITTEN), written, "an UPDATE that leaves tsv as it was writes no postings");
    exec_ok(c, "DELETE FROM rag_chunks WHERE source = 'shipping.md'");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "a DELETE takes the chunks out");
    exec_ok(c, "INSERT INTO rag_chunks (id, source, title, heading, content, position) VALUES "
               "('odd', 'odd.md', 'Odd', 'O''Brien \\ back\\slash', 'quokka''s quokka zebra:* a|b C:\\path\\x.txt', 0)");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "an INSERT of words with quotes and backslashes");
    json_t *r = search(c, "O'Brien's quokka at C:\\path\\x.txt", "4");
    const char *first = json_string_value(json_object_get(json_array_get(r, 0), "source"));
    ok(first != NULL && strcmp(first, "odd.md") == 0, "and the search finds it");
    json_decref(r);
    exec_ok(c, "UPDATE rag_chunks SET num = DEFAULT WHERE source = 'warranty.md'");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "a chunk numbered anew");
    exec_ok(c, "TRUNCATE rag_chunks");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "TRUNCATE empties the index");
    r = search(c, "refund paypal", "4");
    ok(r != NULL && json_array_size(r) == 0, "and nothing is found");
    json_decref(r);
    exec_ok(c, "ROLLBACK");
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "rolled back, the index is as before");
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

    PGconn *c = PQconnectdb(url);
    if (!ok(PQstatus(c) == CONNECTION_OK, "connected to the test database")) {
        PQfinish(c);
        goto out;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    /* A database that was at version 2, with chunks in it, when 003 came. */
    if (!ok(migrate_to(c, 2) == 0, "migrations 001 and 002 applied")) {
        PQfinish(c);
        goto out;
    }
    char *log = NULL;
    int rc = run_ingest(url, &log);
    diag(log);
    free(log);
    if (!ok(rc == 0, "switchboard-ingest rag/knowledge exits 0 (got %d)", rc) ||
        !ok(sb_migrate_run(&config, 0, NULL) == 0, "migrations applied over the ingested chunks")) {
        PQfinish(c);
        goto out;
    }
    ok(count_chunks(c) > 10, "chunks loaded (%ld)", count_chunks(c));
    is_int(number(c, INDEX_MISMATCHES_SQL), 0, "the migration indexed every chunk already there");
    test_recall(c);
    test_exact(c);
    test_hostile(c);
    test_writes(c);
    PQfinish(c);
out:
    free(url);
    exec_admin("DROP DATABASE IF EXISTS %s", dbname);
    PQfinish(admin);
    return done_testing();
}
