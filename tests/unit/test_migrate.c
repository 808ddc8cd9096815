/*
 * Unit tests for src/migrate.c against a real Postgres: SB_TEST_DATABASE_URL
 * names a database whose user may CREATE DATABASE (tests/pg/cluster.sh start
 * DIR prints one). Each case gets a fresh, uniquely named database, dropped
 * at the end. Without SB_TEST_DATABASE_URL the whole file is skipped.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "migrate.h"
#include "sb/buf.h"
#include "pgtest.h"
#include "tap.h"

static char created[4][64];
static size_t ncreated;

/* A fresh database for one case; returns its conninfo (free it). */
static char *fresh_db(const char *tag)
{
    char *name = created[ncreated++];
    snprintf(name, sizeof(created[0]), "sb_migrate_test_%ld_%s", (long)getpid(), tag);
    exec_admin("DROP DATABASE IF EXISTS %s", name);
    exec_admin("CREATE DATABASE %s", name);
    return conninfo_for(name);
}

static PGconn *open_db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        printf("Bail out! cannot connect: %s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

/* The first column of the first row of a one-value query, as a malloc'd string ("(error)" on failure). */
static char *value(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    char *v;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
        v = strdup(PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    else {
        printf("# %s: %s", sql, PQerrorMessage(c));
        v = strdup("(error)");
    }
    PQclear(res);
    return v;
}

static long number(PGconn *c, const char *sql)
{
    char *v = value(c, sql);
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0')
        n = -1;
    free(v);
    return n;
}

/* The SQLSTATE a statement fails with, or "" when it succeeds. */
static const char *sqlstate_of(PGconn *c, const char *sql)
{
    static char state[6];
    PGresult *res = PQexec(c, sql);
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, sizeof(state), "%s", s ? s : "");
    PQclear(res);
    return state;
}

/* Prints a captured log as TAP comments. */
static void diag(const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        printf("#   %.*s\n", (int)n, text);
        text += n + (text[n] == '\n');
    }
}

/* Runs sb_migrate_run, capturing its log in *out (free it). */
static int migrate(const sb_config_t *c, int seed, char **out)
{
    size_t len;
    FILE *log = open_memstream(out, &len);
    int rc = sb_migrate_run(c, seed, log);
    fclose(log);
    diag(*out);
    return rc;
}

static sb_config_t config_for(char *url, char *tickets, char *interactions)
{
    sb_config_t c;
    memset(&c, 0, sizeof(c));
    c.database_url = url;
    c.tickets_table = tickets;
    c.interactions_table = interactions;
    c.pg_connect_timeout_ms = 3000;
    return c;
}

/* One line with every seeded table's row count and sequence position: equal before and after a rerun means nothing changed. */
#define SNAPSHOT_SQL                                                                                                               \
    "SELECT concat_ws(' ', (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), "                                      \
    "(SELECT count(*) FROM support_tickets), (SELECT count(*) FROM support_interactions), (SELECT count(*) FROM escalations), "    \
    "(SELECT last_value FROM customers_id_seq), (SELECT last_value FROM orders_id_seq), "                                          \
    "(SELECT last_value FROM support_tickets_id_seq), (SELECT last_value FROM support_interactions_id_seq), "                      \
    "(SELECT last_value FROM escalations_id_seq), (SELECT max(updated_at) FROM orders))"

static void test_without_database(void)
{
    char *log;
    sb_config_t c = config_for(NULL, "support_tickets", "support_interactions");
    is_int(migrate(&c, 0, &log), 1, "no DATABASE_URL fails");
    ok(strstr(log, "DATABASE_URL is not set") != NULL, "and says DATABASE_URL is not set");
    free(log);

    c.database_url = "postgresql://alice:hunter2-secret@127.0.0.1:1/shop";
    is_int(migrate(&c, 0, &log), 1, "an unreachable database fails");
    ok(strstr(log, "DATABASE_URL") != NULL && strstr(log, "alice@127.0.0.1:1/shop") != NULL,
       "naming DATABASE_URL and where it points");
    ok(strstr(log, "hunter2") == NULL, "without the password");
    free(log);

    c.database_url = "postgresql://alice:hunter2%zz@127.0.0.1/shop";
    is_int(migrate(&c, 0, &log), 1, "a malformed DATABASE_URL fails");
    ok(strstr(log, "DATABASE_URL is not a valid") != NULL && strstr(log, "hunter2") == NULL, "saying so, without the password");
    free(log);

    c = config_for("postgresql://127.0.0.1:1/shop", "orders", "support_interactions");
    is_int(migrate(&c, 0, &log), 1, "a tickets table named like a fixed table is refused");
    ok(strstr(log, "SUPPORT_TICKETS_TABLE=orders") != NULL, "naming the setting");
    free(log);
}

static void test_migrate_and_seed(void)
{
    char *url = fresh_db("main"), *log;
    sb_config_t c = config_for(url, "support_tickets", "support_interactions");
    PGconn *db = open_db(url);

    is_int(migrate(&c, 0, &log), 0, "migrate on an empty database");
    ok(strstr(log, "applied 001_support_desk") != NULL, "applies the first migration");
    free(log);
    is_int(number(db, "SELECT count(*) FROM schema_migrations"), sb_migration_count, "every migration is recorded");
    is_int(number(db,
                  "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('customers', 'orders', "
                  "'support_tickets', 'support_interactions', 'escalations', 'change_log', 'agent_events', 'schema_migrations')"),
           8, "all eight tables exist");
    char *applied_at = value(db, "SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations");

    is_int(migrate(&c, 0, &log), 0, "a second run succeeds");
    ok(strstr(log, "nothing to apply") != NULL && strstr(log, "applied 0") == NULL, "and applies nothing");
    free(log);
    char *applied_at2 = value(db, "SELECT string_agg(applied_at::text, ',' ORDER BY version) FROM schema_migrations");
    is_str(applied_at2, applied_at, "schema_migrations is untouched");
    free(applied_at);
    free(applied_at2);

    is_int(migrate(&c, 1, &log), 0, "seed");
    ok(strstr(log, "added 40 customers") != NULL, "the seed reports what it added");
    free(log);
    char *before = value(db, SNAPSHOT_SQL);
    is_int(migrate(&c, 1, &log), 0, "seed again");
    ok(strstr(log, "nothing added") != NULL, "the second seed adds nothing");
    free(log);
    char *after = value(db, SNAPSHOT_SQL);
    is_str(after, before, "same counts and sequences after seeding twice");
    free(before);
    free(after);

    ok(number(db, "SELECT count(*) FROM customers") >= 40, "at least 40 customers");
    ok(number(db, "SELECT count(*) FROM orders") >= 300, "at least 300 orders");
    is_int(number(db, "SELECT count(DISTINCT status) FROM orders"), 8, "orders in every status");
    is_int(number(db, "SELECT count(*) FROM orders WHERE status IN ('shipped', 'delivered') AND (carrier IS NULL OR "
                      "tracking_number IS NULL)"),
           0, "shipped and delivered orders have a carrier and tracking number");
    is_int(number(db, "SELECT count(*) FROM orders WHERE total_cents <= 0 OR jsonb_array_length(items) = 0"), 0,
           "every order has items and a total");
    char *demo = value(db, "SELECT concat_ws('|', c.id, c.name, c.email, o.status, o.carrier, o.tracking_number IS NOT NULL) "
                           "FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.order_number = '4417'");
    is_str(demo, "1|Maya Patel|maya.patel@example.com|shipped|UPS|t", "order 4417 is Maya Patel's, shipped, with tracking");
    free(demo);
    char *accented = value(db, "SELECT name FROM customers WHERE email = 'mateo.garcia@example.com'");
    is_str(accented, "Mateo García", "non-ASCII names arrive intact");
    free(accented);
    ok(number(db, "SELECT count(*) FROM support_tickets") >= 5 && number(db, "SELECT count(*) FROM support_interactions") >= 5,
       "a handful of tickets and interactions");
    is_int(number(db,
                  "SELECT count(*) FROM support_tickets t JOIN orders o ON o.id = t.order_id WHERE o.customer_id <> t.customer_id"),
           0, "tickets point at their own customer's orders");

    is_str(sqlstate_of(db, "INSERT INTO orders (order_number, customer_id, status, total_cents) VALUES ('99999', 1, 'lost', 100)"),
           "23514", "an unknown order status violates the check constraint");
    is_str(sqlstate_of(db, "INSERT INTO orders (order_number, customer_id, status, total_cents) VALUES ('99999', 1, 'paid', -1)"),
           "23514", "a negative total is refused");
    is_str(sqlstate_of(db, "INSERT INTO support_tickets (subject, priority) VALUES ('x', 'whenever')"), "23514",
           "an unknown ticket priority is refused");
    is_str(sqlstate_of(db, "INSERT INTO support_tickets (subject) VALUES ('')"), "23514", "an empty ticket subject is refused");
    is_str(sqlstate_of(db, "INSERT INTO support_interactions (kind, summary) VALUES ('fax', 'x')"), "23514",
           "an unknown interaction kind is refused");
    is_str(sqlstate_of(db, "INSERT INTO customers (name, email) VALUES ('Maya Again', 'MAYA.PATEL@example.com')"), "23505",
           "emails are unique whatever their case");
    is_str(sqlstate_of(db, "INSERT INTO support_tickets (subject, customer_id) VALUES ('x', 99999)"), "23503",
           "a ticket for a missing customer is refused");

    sb_config_t renamed = config_for(url, "helpdesk_tickets", "helpdesk_notes");
    is_int(migrate(&renamed, 0, &log), 1, "renaming the tables after migrating is caught");
    ok(strstr(log, "SUPPORT_TICKETS_TABLE is helpdesk_tickets but there is no such table") != NULL,
       "with a message naming the setting");
    free(log);

    PQfinish(db);
    free(url);
}

static void test_custom_names(void)
{
    char *url = fresh_db("custom"), *log;
    sb_config_t c = config_for(url, "helpdesk_tickets", "helpdesk_notes");
    PGconn *db = open_db(url);
    is_int(migrate(&c, 1, &log), 0, "migrate and seed with custom table names");
    free(log);
    char *tables = value(db, "SELECT concat_ws(',', to_regclass('helpdesk_tickets'), to_regclass('helpdesk_notes'), "
                             "to_regclass('support_tickets'), to_regclass('support_interactions'))");
    is_str(tables, "helpdesk_tickets,helpdesk_notes", "the tables have the configured names and the defaults do not exist");
    free(tables);
    ok(number(db, "SELECT count(*) FROM helpdesk_tickets") >= 5 && number(db, "SELECT count(*) FROM helpdesk_notes") >= 5,
       "the seed fills them");
    is_int(number(db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'helpdesk_notes'::regclass "
                      "AND confrelid = 'helpdesk_tickets'::regclass"),
           1, "the notes reference the renamed tickets table");
    is_int(number(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'helpdesk_tickets'"), 5,
           "its indexes are made (primary key, idempotency key, three lookups)");
    is_str(sqlstate_of(db, "INSERT INTO helpdesk_tickets (subject, status) VALUES ('x', 'forgotten')"), "23514",
           "and its check constraints");
    is_int(migrate(&c, 0, &log), 0, "a second run with the same names");
    ok(strstr(log, "nothing to apply") != NULL, "applies nothing");
    free(log);
    PQfinish(db);
    free(url);
}

struct racer {
    const sb_config_t *config;
    int rc;
    char *log;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    size_t len;
    FILE *log = open_memstream(&r->log, &len);
    r->rc = sb_migrate_run(r->config, 1, log);
    fclose(log);
    return NULL;
}

static void test_concurrent_runs(void)
{
    char *url = fresh_db("race");
    sb_config_t c = config_for(url, "support_tickets", "support_interactions");
    struct racer r[3] = {{&c, -1, NULL}, {&c, -1, NULL}, {&c, -1, NULL}};
    pthread_t t[3];
    for (int i = 0; i < 3; ++i)
        pthread_create(&t[i], NULL, race, &r[i]);
    for (int i = 0; i < 3; ++i)
        pthread_join(t[i], NULL);
    int applied = 0;
    for (int i = 0; i < 3; ++i) {
        printf("# run %d:\n", i);
        diag(r[i].log);
        applied += strstr(r[i].log, "applied 001_support_desk") != NULL;
    }
    ok(r[0].rc == 0 && r[1].rc == 0 && r[2].rc == 0, "three runs at once all succeed");
    is_int(applied, 1, "exactly one of them applies the migration");
    PGconn *db = open_db(url);
    is_int(number(db, "SELECT count(*) FROM customers"), 40, "and the seed lands once");
    is_int(number(db, "SELECT count(*) FROM support_tickets"), 8, "tickets too");
    PQfinish(db);
    for (int i = 0; i < 3; ++i)
        free(r[i].log);
    free(url);
}

int main(void)
{
    pgtest_start();

    test_without_database();
    test_migrate_and_seed();
    test_custom_names();
    test_concurrent_runs();

    for (size_t i = 0; i < ncreated; ++i)
        exec_admin("DROP DATABASE IF EXISTS %s", created[i]);
    PQfinish(admin);
    return done_testing();
}
