/*
 * `switchboard migrate [--seed]`: applies the embedded SQL migrations
 * (tools/schema/, compiled in by tools/embed.py) that the database has not
 * recorded in schema_migrations, then optionally the demo seed. A one-shot
 * command, so it uses libpq's blocking calls on a connection of its own.
 *
 * Each migration is one transaction holding an advisory lock: BEGIN, lock,
 * check schema_migrations again, run the file, record it, COMMIT. A second
 * run that started at the same time waits at the lock and then finds the
 * migration recorded, so nothing is applied twice and a failure leaves no
 * half-made schema behind.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "migrate.h"
#include "pgtext.h"
#include "sb/buf.h"

/* pg_advisory_xact_lock key shared by every migrate run: "SWBMIGRT" as a big-endian int64. */
#define LOCK_KEY "6005341527831171668"
#define MAX_SQL_BYTES (64u << 20)

/* One run's connection, its log, and the configurable table names quoted for SQL by PQescapeIdentifier. */
struct session {
    PGconn *conn;
    FILE *log;
    char *tickets;
    char *interactions;
    int said_waiting; /* "waiting for the lock" is said once per run, not per transaction */
};

__attribute__((format(printf, 2, 3))) static void say(FILE *log, const char *fmt, ...)
{
    if (log == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
    fflush(log);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Counts lines up to a server error position (1-based, in characters) so errors point into the .sql file. */
static int line_of(const char *sql, const char *position)
{
    if (sql == NULL || position == NULL)
        return 0;
    char *end;
    long pos = strtol(position, &end, 10);
    if (*end != '\0' || pos < 1)
        return 0;
    int line = 1;
    long chars = 0;
    for (const unsigned char *p = (const unsigned char *)sql; *p != '\0'; ++p) {
        if ((*p & 0xC0) != 0x80 && ++chars >= pos) /* a UTF-8 lead byte starts a character */
            break;
        if (*p == '\n')
            ++line;
    }
    return line;
}

/*
 * Logs a failed statement: `what` failed, the server's message and SQLSTATE,
 * and its detail, hint and context when given. With `sql` and `file`, also
 * where in the file the error was (substitution changes no line numbers).
 */
static void report(FILE *log, PGconn *conn, const PGresult *res, const char *what, const char *sql, const char *file)
{
    char buf[1024];
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int line = res ? line_of(sql, PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION)) : 0;
    if (msg == NULL)
        msg = sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf));
    if (line > 0 && file != NULL)
        say(log, "migrate: %s failed at %s line %d: %s%s%s%s", what, file, line, msg, state ? " (SQLSTATE " : "",
            state ? state : "", state ? ")" : "");
    else
        say(log, "migrate: %s failed: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
    static const struct {
        int field;
        const char *label;
    } extra[] = {{PG_DIAG_MESSAGE_DETAIL, "detail"}, {PG_DIAG_MESSAGE_HINT, "hint"}, {PG_DIAG_CONTEXT, "context"}};
    for (size_t i = 0; res != NULL && i < sizeof(extra) / sizeof(extra[0]); ++i) {
        const char *v = PQresultErrorField(res, extra[i].field);
        if (v != NULL)
            say(log, "migrate:   %s: %s", extra[i].label, v);
    }
}

/*
 * Runs one statement (nparams >= 0, through PQexecParams) or a script of
 * several (nparams < 0, PQexec). Returns the result, or NULL after logging
 * the failure; the caller clears a non-NULL result. `file` names the source
 * of a script, for error positions.
 */
static PGresult *query(struct session *s, const char *what, const char *sql, int nparams, const char *const *params,
                       const char *file)
{
    PGresult *res = nparams < 0 ? PQexec(s->conn, sql) : PQexecParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    report(s->log, s->conn, res, what, sql, file);
    PQclear(res);
    return NULL;
}

static int command(struct session *s, const char *what, const char *sql)
{
    PGresult *res = query(s, what, sql, 0, NULL, NULL);
    PQclear(res);
    return res != NULL ? 0 : -1;
}

static void rollback(struct session *s)
{
    PQclear(PQexec(s->conn, "ROLLBACK"));
}

/*
 * BEGIN and take the migrate lock, which the COMMIT or ROLLBACK releases.
 * Says so when another run holds it, so a waiting command does not look hung.
 */
static int begin_locked(struct session *s)
{
    const char *key[] = {LOCK_KEY};
    if (command(s, "BEGIN", "BEGIN") != 0)
        return -1;
    PGresult *res = query(s, "taking the migrate lock", "SELECT pg_try_advisory_xact_lock($1::bigint)", 1, key, NULL);
    if (res == NULL)
        goto fail;
    int got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!got) {
        if (!s->said_waiting++)
            say(s->log, "migrate: another migrate run holds the lock; waiting for it");
        if ((res = query(s, "waiting for the migrate lock", "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL)) == NULL)
            goto fail;
        PQclear(res);
    }
    return 0;
fail:
    rollback(s);
    return -1;
}

static int commit(struct session *s, const char *what)
{
    PGresult *res = PQexec(s->conn, "COMMIT");
    /* A COMMIT of a failed transaction "succeeds" as a ROLLBACK; that is a failure here. */
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
    if (!ok)
        report(s->log, s->conn, res, what, NULL, NULL);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Copies `sql` with {{tickets_table}} and {{interactions_table}} replaced by the quoted names. NULL on an unknown placeholder. */
static char *render(struct session *s, const char *sql, const char *what)
{
    static const char tickets[] = "{{tickets_table}}", interactions[] = "{{interactions_table}}";
    sb_buf_t b;
    sb_buf_init(&b, MAX_SQL_BYTES);
    const char *p = sql, *open;
    int rc = 0;
    while (rc == 0 && (open = strstr(p, "{{")) != NULL) {
        rc |= sb_buf_append(&b, p, (size_t)(open - p));
        if (strncmp(open, tickets, sizeof(tickets) - 1) == 0) {
            rc |= sb_buf_appendz(&b, s->tickets);
            p = open + sizeof(tickets) - 1;
        } else if (strncmp(open, interactions, sizeof(interactions) - 1) == 0) {
            rc |= sb_buf_appendz(&b, s->interactions);
            p = open + sizeof(interactions) - 1;
        } else {
            /* tools/embed.py refuses these at build time; this guards the run-time side of the same contract. */
            say(s->log, "migrate: %s: unknown placeholder %.40s", what, open);
            sb_buf_dispose(&b);
            return NULL;
        }
    }
    if (rc != 0 || sb_buf_append(&b, p, strlen(p) + 1) != 0) {
        say(s->log, "migrate: %s: SQL longer than %u bytes", what, MAX_SQL_BYTES);
        sb_buf_dispose(&b);
        return NULL;
    }
    return b.base;
}

/* The configured names must be distinct and not one of the fixed tables, or the migration would collide with itself. */
static int check_names(const sb_config_t *config, FILE *log)
{
    static const char *const fixed[] = {"customers",         "orders",        "escalations", "change_log",         "agent_events",
                                        "schema_migrations", "conversations", "messages",    "conversation_events"};
    const char *vars[2][2] = {{"SUPPORT_TICKETS_TABLE", config->tickets_table},
                              {"SUPPORT_INTERACTIONS_TABLE", config->interactions_table}};
    for (size_t i = 0; i < 2; ++i) {
        if (vars[i][1] == NULL || vars[i][1][0] == '\0') {
            say(log, "migrate: %s is not set", vars[i][0]);
            return -1;
        }
        for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); ++j) {
            if (strcmp(vars[i][1], fixed[j]) == 0) {
                say(log, "migrate: %s=%s names one of switchboard's other tables; choose another name", vars[i][0], vars[i][1]);
                return -1;
            }
        }
    }
    if (strcmp(config->tickets_table, config->interactions_table) == 0) {
        say(log, "migrate: SUPPORT_TICKETS_TABLE and SUPPORT_INTERACTIONS_TABLE are both %s; they must differ",
            config->tickets_table);
        return -1;
    }
    return 0;
}

static void on_notice(void *arg, const char *message)
{
    char buf[1024];
    say(arg, "migrate: postgres: %s", sb_pg_trimmed(message, buf, sizeof(buf)));
}

static PGconn *connect_db(const sb_config_t *config, const char *where, FILE *log)
{
    char timeout[16] = "";
    if (config->pg_connect_timeout_ms > 0)
        snprintf(timeout, sizeof(timeout), "%u", (config->pg_connect_timeout_ms + 999) / 1000);
    /*
     * The URL is expanded in place of dbname: a connect_timeout in it wins
     * over ours (it comes later), while client_encoding comes after it
     * because the embedded SQL is UTF-8 whatever the URL says.
     */
    const char *keys[] = {"fallback_application_name", "connect_timeout", "dbname", "client_encoding", NULL};
    const char *vals[] = {"switchboard-migrate", timeout, config->database_url, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        say(log, "migrate: out of memory connecting to %s (DATABASE_URL)", where);
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char buf[1024];
        say(log, "migrate: cannot connect to the database at %s (DATABASE_URL): %s", where,
            sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)));
        PQfinish(conn);
        return NULL;
    }
    /* Warnings reach the log; the NOTICEs of "IF NOT EXISTS" would only be noise. */
    PQsetNoticeProcessor(conn, on_notice, log);
    PGresult *res = PQexec(conn, "SET client_min_messages = warning");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        report(log, conn, res, "setting up the session", NULL, NULL);
    PQclear(res);
    if (!ok) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Creates schema_migrations if needed and reads the newest recorded version. */
static int ensure_ledger(struct session *s, long *db_version)
{
    if (begin_locked(s) != 0)
        return -1;
    if (command(s, "creating schema_migrations",
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())") != 0)
        goto fail;
    PGresult *res = query(s, "reading schema_migrations", "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, NULL);
    if (res == NULL)
        goto fail;
    *db_version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return commit(s, "creating schema_migrations");
fail:
    rollback(s);
    return -1;
}

/* Applies migration `m` unless recorded. *applied says whether this run applied it. */
static int apply_one(struct session *s, const sb_migration_t *m, int *applied)
{
    char label[128], file[160], version[16];
    snprintf(label, sizeof(label), "%03d_%.100s", m->version, m->name);
    snprintf(file, sizeof(file), "tools/schema/%s.sql", label);
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = {version, m->name};
    *applied = 0;

    char *sql = render(s, m->sql, label);
    if (sql == NULL)
        return -1;
    double t0 = now_ms();
    if (begin_locked(s) != 0) {
        free(sql);
        return -1;
    }
    /* Checked again under the lock: a run that held it before us may have applied this one meanwhile. */
    PGresult *res =
        query(s, "reading schema_migrations", "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1, params, NULL);
    if (res == NULL)
        goto fail;
    int done = PQntuples(res) > 0;
    PQclear(res);
    if (done) {
        free(sql);
        return commit(s, label);
    }
    if ((res = query(s, label, sql, -1, NULL, file)) == NULL)
        goto fail;
    PQclear(res);
    if ((res = query(s, "recording the migration", "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2,
                     params, NULL)) == NULL)
        goto fail;
    PQclear(res);
    free(sql);
    if (commit(s, label) != 0)
        return -1;
    *applied = 1;
    say(s->log, "migrate: applied %s (%.0f ms)", label, now_ms() - t0);
    return 0;
fail:
    free(sql);
    rollback(s);
    say(s->log, "migrate: %s rolled back; the schema stays at the version before it", label);
    return -1;
}

/*
 * After migrating, the configured tables must exist. They do not when the
 * names were changed after the first migration: the schema was made under
 * the old names, and migrations never run twice.
 */
static int check_tables(struct session *s, const sb_config_t *config)
{
    const char *params[] = {s->tickets, s->interactions};
    PGresult *res =
        query(s, "checking the support tables", "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL", 2, params, NULL);
    if (res == NULL)
        return -1;
    const char *vars[] = {"SUPPORT_TICKETS_TABLE", "SUPPORT_INTERACTIONS_TABLE"};
    const char *names[] = {config->tickets_table, config->interactions_table};
    int rc = 0;
    for (int i = 0; i < 2; ++i) {
        if (strcmp(PQgetvalue(res, 0, i), "t") != 0) {
            say(s->log,
                "migrate: %s is %s but there is no such table: the schema was created under another name. "
                "Rename the table (ALTER TABLE ... RENAME TO %s) or set %s back",
                vars[i], names[i], names[i], vars[i]);
            rc = -1;
        }
    }
    PQclear(res);
    return rc;
}

#define SEEDED_TABLES 5

/* Row counts of the seeded tables, for saying what the seed added. */
static int count_rows(struct session *s, const char *count_sql, long counts[SEEDED_TABLES])
{
    PGresult *res = query(s, "counting rows", count_sql, 0, NULL, NULL);
    if (res == NULL)
        return -1;
    for (int i = 0; i < SEEDED_TABLES; ++i)
        counts[i] = strtol(PQgetvalue(res, 0, i), NULL, 10);
    PQclear(res);
    return 0;
}

static int run_seed(struct session *s)
{
    static const char count_tmpl[] = "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "
                                     "(SELECT count(*) FROM {{tickets_table}}), (SELECT count(*) FROM {{interactions_table}}), "
                                     "(SELECT count(*) FROM escalations)";
    static const char *const what[SEEDED_TABLES] = {"customer", "order", "ticket", "interaction", "escalation"};
    char *sql = render(s, sb_seed_sql, "seed");
    char *count_sql = render(s, count_tmpl, "seed");
    long before[SEEDED_TABLES], after[SEEDED_TABLES];
    int rc = -1;
    if (sql == NULL || count_sql == NULL)
        goto out;
    double t0 = now_ms();
    if (begin_locked(s) != 0)
        goto out;
    if (count_rows(s, count_sql, before) != 0)
        goto fail;
    PGresult *res = query(s, "seed", sql, -1, NULL, "tools/seed.sql");
    if (res == NULL)
        goto fail;
    PQclear(res);
    if (count_rows(s, count_sql, after) != 0)
        goto fail;
    if (commit(s, "seed") != 0)
        goto out;
    char added[256] = "";
    size_t len = 0;
    for (int i = 0; i < SEEDED_TABLES && len < sizeof(added); ++i) {
        long n = after[i] - before[i];
        if (n != 0)
            len += (size_t)snprintf(added + len, sizeof(added) - len, "%s%ld %s%s", len ? ", " : "", n, what[i], n == 1 ? "" : "s");
    }
    if (len == 0)
        say(s->log, "migrate: seed: the demo data is already there; nothing added");
    else
        say(s->log, "migrate: seed: added %s (%.0f ms)", added, now_ms() - t0);
    rc = 0;
    goto out;
fail:
    rollback(s);
    say(s->log, "migrate: seed rolled back; nothing from it was kept");
out:
    free(sql);
    free(count_sql);
    return rc;
}

int sb_migrate_run(const sb_config_t *config, int seed, FILE *log)
{
    if (config->database_url == NULL || config->database_url[0] == '\0') {
        say(log, "migrate: DATABASE_URL is not set: set it to the Postgres database to migrate, "
                 "e.g. postgresql://user:password@localhost:5432/switchboard");
        return 1;
    }
    char where[512];
    if (sb_pg_describe_target(config->database_url, where, sizeof(where)) != 0) {
        say(log, "migrate: DATABASE_URL is not a valid Postgres URI (postgresql://user:password@host:port/dbname) "
                 "or key=value connection string");
        return 1;
    }
    if (check_names(config, log) != 0)
        return 1;
    struct session s = {.log = log};
    if ((s.conn = connect_db(config, where, log)) == NULL)
        return 1;
    say(log, "migrate: connected to %s", where);

    int rc = 1, applied = 0;
    long db_version = 0;
    s.tickets = PQescapeIdentifier(s.conn, config->tickets_table, strlen(config->tickets_table));
    s.interactions = PQescapeIdentifier(s.conn, config->interactions_table, strlen(config->interactions_table));
    if (s.tickets == NULL || s.interactions == NULL) {
        char buf[512];
        say(log, "migrate: quoting the table names: %s", sb_pg_trimmed(PQerrorMessage(s.conn), buf, sizeof(buf)));
        goto out;
    }
    if (ensure_ledger(&s, &db_version) != 0)
        goto out;
    if (db_version > (long)sb_migration_count)
        say(log, "migrate: the database has migration %ld but this switchboard knows only %zu; a newer version ran here",
            db_version, sb_migration_count);
    for (size_t i = 0; i < sb_migration_count; ++i) {
        int one;
        if (apply_one(&s, &sb_migrations[i], &one) != 0)
            goto out;
        applied += one;
    }
    long version = db_version > (long)sb_migration_count ? db_version : (long)sb_migration_count;
    if (applied == 0)
        say(log, "migrate: nothing to apply; the schema is up to date at version %ld", version);
    else
        say(log, "migrate: applied %d migration%s; the schema is at version %ld", applied, applied == 1 ? "" : "s", version);
    if (check_tables(&s, config) != 0)
        goto out;
    if (seed && run_seed(&s) != 0)
        goto out;
    rc = 0;
out:
    PQfreemem(s.tickets);
    PQfreemem(s.interactions);
    PQfinish(s.conn);
    return rc;
}
