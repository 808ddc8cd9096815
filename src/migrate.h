/*
 * `switchboard migrate [--seed]`: brings the database named by DATABASE_URL
 * up to the schema this binary was built with, and optionally loads the demo
 * data. The SQL lives in tools/schema/NNN_name.sql and tools/seed.sql and is
 * compiled in (tools/embed.py), so the binary needs no files at run time.
 */
#ifndef SB_MIGRATE_H
#define SB_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include "sb/config.h"

/* One embedded migration. `sql` may use {{tickets_table}} and {{interactions_table}}. */
typedef struct sb_migration {
    int version;      /* 1, 2, 3, ... in order, no gaps */
    const char *name; /* the file name's part after "NNN_", without ".sql" */
    const char *sql;
} sb_migration_t;

/* Defined by the generated migrate_sql.c. */
extern const sb_migration_t sb_migrations[];
extern const size_t sb_migration_count;
extern const char *const sb_seed_sql;

/*
 * Runs every migration the database has not recorded in schema_migrations,
 * each in its own transaction together with its schema_migrations row, then,
 * when `seed` is non-zero, the demo data (again one transaction). A second
 * run applies nothing and says so; the seed adds only rows that are missing.
 *
 * Blocking: a command-line action, never for the server's event loop. Uses
 * config->database_url, tickets_table and interactions_table (table names are
 * always quoted) and pg_connect_timeout_ms. Concurrent runs against the same
 * database are safe: each transaction first takes the same advisory lock, so
 * they take turns and every migration is applied once.
 *
 * Progress and errors go to `log` (may be NULL: silent). The password in
 * DATABASE_URL is never printed. Returns 0 on success, 1 on any failure:
 * DATABASE_URL unset, malformed or unreachable, a failing migration (rolled
 * back whole; earlier ones stay applied), or configured table names that do
 * not exist after migrating (the tables were created under other names).
 */
int sb_migrate_run(const sb_config_t *config, int seed, FILE *log);

#endif
