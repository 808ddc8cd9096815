/*
 * For the unit tests that need a database: each case gets a throwaway
 * database on the test cluster (SB_TEST_DATABASE_URL), made and dropped
 * through one admin connection.
 */
#ifndef SB_PGTEST_H
#define SB_PGTEST_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/buf.h"

static PGconn *admin;         /* connected to admin_url by the test's main */
static const char *admin_url; /* SB_TEST_DATABASE_URL */

/*
 * Connects `admin` to SB_TEST_DATABASE_URL. Without one the test is skipped
 * (a TAP SKIP plan, exit 0); an unreachable one bails out (exit 1).
 */
static void pgtest_start(void)
{
    admin_url = getenv("SB_TEST_DATABASE_URL");
    if (admin_url == NULL || admin_url[0] == '\0') {
        printf("1..0 # SKIP no database\n");
        exit(0);
    }
    admin = PQconnectdb(admin_url);
    if (PQstatus(admin) != CONNECTION_OK) {
        printf("Bail out! SB_TEST_DATABASE_URL: %s", PQerrorMessage(admin));
        exit(1);
    }
    PQclear(PQexec(admin, "SET client_min_messages = warning"));
}

/* admin_url with its database swapped for `db`, as a key=value string (works whether admin_url is a URI or key=value). */
static char *conninfo_for(const char *db)
{
    PQconninfoOption *opts = PQconninfoParse(admin_url, NULL);
    if (opts == NULL)
        abort();
    sb_buf_t b;
    sb_buf_init(&b, 8192);
    for (PQconninfoOption *o = opts; o->keyword != NULL; ++o) {
        if (o->val == NULL || strcmp(o->keyword, "dbname") == 0)
            continue;
        sb_buf_appendf(&b, "%s='", o->keyword);
        for (const char *p = o->val; *p != '\0'; ++p) {
            if (*p == '\'' || *p == '\\')
                sb_buf_append(&b, "\\", 1);
            sb_buf_append(&b, p, 1);
        }
        sb_buf_appendz(&b, "' ");
    }
    sb_buf_appendf(&b, "dbname='%s'", db);
    sb_buf_append(&b, "", 1);
    PQconninfoFree(opts);
    return b.base;
}

/* Runs `fmt` (one %s: the quoted identifier `name`) on the admin connection, e.g. "create database %s". */
static void exec_admin(const char *fmt, const char *name)
{
    char *quoted = PQescapeIdentifier(admin, name, strlen(name));
    char sql[256];
    snprintf(sql, sizeof(sql), fmt, quoted);
    PQfreemem(quoted);
    PGresult *res = PQexec(admin, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        printf("# %s: %s", sql, PQerrorMessage(admin));
    PQclear(res);
}

#endif
