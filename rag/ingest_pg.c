/*
 * switchboard-ingest's Postgres writer: rag_chunks, where the Postgres
 * retrieval backend (pg_search.h) searches. Each source's changes are one
 * transaction; an unchanged file inserts and deletes nothing. A
 * command-line tool: libpq's blocking calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "ingest.h"
#include "pgtext.h"
#include "sb/buf.h"

static PGconn *connect_db(const sb_config_t *config)
{
    char where[512], timeout[16] = "", buf[1024];
    if (sb_pg_describe_target(config->database_url, where, sizeof(where)) != 0) {
        /* libpq's parse error may quote the URL, password and all, so it is not shown. */
        sb_store_say("DATABASE_URL is not a valid Postgres connection URI");
        return NULL;
    }
    if (config->pg_connect_timeout_ms > 0)
        snprintf(timeout, sizeof(timeout), "%u", (config->pg_connect_timeout_ms + 999) / 1000);
    /* client_encoding after the URL: the text we send is UTF-8 whatever the URL says. */
    const char *keys[] = {"fallback_application_name", "connect_timeout", "dbname", "client_encoding", NULL};
    const char *vals[] = {"switchboard-ingest", timeout, config->database_url, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL)
        h2o_fatal("PQconnectdbParams");
    if (PQstatus(conn) != CONNECTION_OK) {
        sb_store_say("cannot connect to the database at %s (DATABASE_URL): %s", where,
                     sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)));
        PQfinish(conn);
        return NULL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

/* Runs a parameterized statement; NULL after printing the server's message. */
static PGresult *query(PGconn *conn, const char *what, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    char buf[1024];
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    sb_store_say("%s failed: %s", what, msg ? msg : sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)));
    PQclear(res);
    return NULL;
}

static int exec_ok(PGconn *conn, const char *what, const char *sql, int n, const char *const *params, long *affected)
{
    PGresult *res = query(conn, what, sql, n, params);
    if (res == NULL)
        return -1;
    if (affected != NULL)
        *affected = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

/* Ends a source's transaction: COMMIT, or ROLLBACK for --dry-run. A COMMIT that turned into a ROLLBACK is a failure. */
static int finish_tx(sb_ingest_t *r, const char *what)
{
    PGresult *res = PQexec(r->conn, r->dry_run ? "ROLLBACK" : "COMMIT");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), r->dry_run ? "ROLLBACK" : "COMMIT") == 0;
    if (!ok) {
        char buf[1024];
        sb_store_say("%s: committing failed: %s", what, sb_pg_trimmed(PQerrorMessage(r->conn), buf, sizeof(buf)));
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* The ids as a Postgres array literal; hex needs no quoting. */
static char *id_array(const sb_kb_doc_t *d)
{
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_append(&b, "{", 1);
    for (size_t i = 0; i < d->nchunks; ++i) {
        if (i > 0)
            sb_buf_append(&b, ",", 1);
        sb_buf_appendz(&b, d->chunks[i].id);
    }
    sb_buf_append(&b, "}", 2);
    return b.base;
}

/*
 * Writes one document: inserts the chunks that are new, keeps title and
 * position current on the others (writing only when they changed), and
 * deletes the source's chunks this run no longer produces. One transaction.
 */
int sb_ingest_pg_store(sb_ingest_t *r, const sb_kb_doc_t *d, long *added, long *removed)
{
    *added = *removed = 0;
    if (exec_ok(r->conn, d->source, "BEGIN", 0, NULL, NULL) != 0)
        return -1;
    for (size_t i = 0; i < d->nchunks; ++i) {
        const sb_kb_chunk_t *c = &d->chunks[i];
        char pos[24];
        snprintf(pos, sizeof(pos), "%zu", i);
        const char *p[] = {c->id, d->source, d->title, c->heading, c->content, pos};
        long n;
        if (exec_ok(r->conn, d->source,
                    "INSERT INTO rag_chunks (id, source, title, heading, content, position) "
                    "VALUES ($1, $2, $3, $4, $5, $6::integer) ON CONFLICT (id) DO NOTHING",
                    6, p, &n) != 0)
            goto fail;
        *added += n;
        /* An unchanged chunk moved by an edit elsewhere in the file, or a new title: the id stays, these columns follow. */
        const char *u[] = {c->id, d->title, pos};
        if (n == 0 && exec_ok(r->conn, d->source,
                              "UPDATE rag_chunks SET title = $2, position = $3::integer WHERE id = $1 "
                              "AND (title, position) IS DISTINCT FROM ($2, $3::integer)",
                              3, u, NULL) != 0)
            goto fail;
    }
    char *ids = id_array(d);
    const char *p[] = {d->source, ids};
    int rc = exec_ok(r->conn, d->source, "DELETE FROM rag_chunks WHERE source = $1 AND id <> ALL ($2::text[])", 2, p, removed);
    free(ids);
    if (rc != 0)
        goto fail;
    return finish_tx(r, d->source);
fail:
    PQclear(PQexec(r->conn, "ROLLBACK"));
    return -1;
}

/* --sync: deletes the chunks of every source this run did not find. One transaction; prints each source removed. */
int sb_ingest_pg_sync(sb_ingest_t *r, long *sources, long *chunks)
{
    *sources = *chunks = 0;
    sb_buf_t b;
    sb_buf_init(&b, (size_t)-1);
    sb_buf_append(&b, "{", 1);
    for (size_t i = 0; i < r->ndocs; ++i) {
        if (i > 0)
            sb_buf_append(&b, ",", 1);
        sb_buf_append(&b, "\"", 1);
        for (const char *s = r->docs[i].source; *s != '\0'; ++s) {
            if (*s == '"' || *s == '\\')
                sb_buf_append(&b, "\\", 1);
            sb_buf_append(&b, s, 1);
        }
        sb_buf_append(&b, "\"", 1);
    }
    sb_buf_append(&b, "}", 2);
    const char *p[] = {b.base};
    int rc = -1;
    if (exec_ok(r->conn, "--sync", "BEGIN", 0, NULL, NULL) != 0)
        goto out;
    PGresult *res = query(r->conn, "--sync",
                          "WITH gone AS (DELETE FROM rag_chunks WHERE source <> ALL ($1::text[]) RETURNING source) "
                          "SELECT source, count(*) FROM gone GROUP BY source ORDER BY source",
                          1, p);
    if (res == NULL) {
        PQclear(PQexec(r->conn, "ROLLBACK"));
        goto out;
    }
    for (int i = 0; i < PQntuples(res); ++i) {
        long n = strtol(PQgetvalue(res, i, 1), NULL, 10);
        printf("%s %s: %ld chunks (source no longer exists)\n", r->dry_run ? "would remove" : "removed", PQgetvalue(res, i, 0), n);
        ++*sources;
        *chunks += n;
    }
    PQclear(res);
    rc = finish_tx(r, "--sync");
out:
    sb_buf_dispose(&b);
    return rc;
}

/* The table comes from `switchboard migrate`; this tool never changes the schema. */
static int check_table(PGconn *conn)
{
    PGresult *res = query(conn, "checking for rag_chunks", "SELECT to_regclass('rag_chunks') IS NOT NULL", 0, NULL);
    if (res == NULL)
        return -1;
    int have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!have)
        sb_store_say("the database has no rag_chunks table; run `switchboard migrate` first");
    return have ? 0 : -1;
}

PGconn *sb_ingest_pg_connect(const sb_config_t *config)
{
    PGconn *conn = connect_db(config);
    if (conn != NULL && check_table(conn) != 0) {
        PQfinish(conn);
        conn = NULL;
    }
    return conn;
}
