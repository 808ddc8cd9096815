/*
 * `switchboard forget` (forget.h): one caller's conversations, messages and
 * events deleted by one statement, so a failure leaves everything as it was
 * and a success leaves nothing of the caller behind.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "forget.h"
#include "pgtext.h"

/*
 * Which conversations: one of the three parameters is set, the others NULL. The client's
 * conversation id matches under every inbound key (the command has no key);
 * the stored key (32 hex digits, as GET /v1/conversations shows) matches one.
 * Messages and events are deleted with their conversations and counted.
 */
static const char forget_sql[] =
    "WITH t AS (SELECT id FROM conversations WHERE customer_id = $1::bigint OR lower(email) = lower($2::text) "
    "  OR client_id = $3::text OR key = $3::text), "
    "m AS (DELETE FROM messages WHERE conversation IN (SELECT id FROM t) RETURNING 1), "
    "e AS (DELETE FROM conversation_events WHERE conversation IN (SELECT id FROM t) RETURNING 1), "
    "c AS (DELETE FROM conversations WHERE id IN (SELECT id FROM t) RETURNING 1) "
    "SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM m), (SELECT count(*) FROM e)";

static int usage(FILE *log, const char *why)
{
    fprintf(log, "forget: %s\nusage: switchboard forget --customer-id N | --email ADDRESS | --conversation ID\n", why);
    return 2;
}

static int all_of(const char *s, const char *set)
{
    return s[0] != '\0' && strspn(s, set) == strlen(s);
}

int sb_forget_run(const sb_config_t *config, int argc, char **argv, FILE *out, FILE *log)
{
    if (argc != 2)
        return usage(log, "name exactly one caller");
    const char *value = argv[1];
    int which;
    if (strcmp(argv[0], "--customer-id") == 0) {
        which = 0;
        if (!all_of(value, "0123456789") || strlen(value) > 18 || strspn(value, "0") == strlen(value))
            return usage(log, "--customer-id must be a positive integer");
    } else if (strcmp(argv[0], "--email") == 0) {
        which = 1;
        if (strlen(value) < 3 || strlen(value) > 255 || strchr(value, '@') == NULL)
            return usage(log, "--email must be an email address");
    } else if (strcmp(argv[0], "--conversation") == 0) {
        which = 2;
        if (strlen(value) > 128 || !all_of(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"))
            return usage(log, "--conversation must be 1 to 128 letters, digits or ._:-");
    } else {
        return usage(log, "unknown option");
    }
    if (config->database_url == NULL) {
        fprintf(log, "forget: DATABASE_URL is not set\n");
        return 1;
    }
    char where[512] = "the database";
    sb_pg_describe_target(config->database_url, where, sizeof(where));
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%u", (config->pg_connect_timeout_ms + 999) / 1000);
    const char *keys[] = {"fallback_application_name", "connect_timeout", "dbname", "client_encoding", NULL};
    const char *vals[] = {"switchboard-forget", timeout, config->database_url, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    char buf[1024];
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        fprintf(log, "forget: cannot connect to %s (DATABASE_URL): %s\n", where,
                conn ? sb_pg_trimmed(PQerrorMessage(conn), buf, sizeof(buf)) : "out of memory");
        PQfinish(conn);
        return 1;
    }
    const char *params[3] = {NULL, NULL, NULL};
    params[which] = value;
    PGresult *res = PQexecParams(conn, forget_sql, 3, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(log, "forget: nothing removed: %s\n", sb_pg_trimmed(PQresultErrorMessage(res), buf, sizeof(buf)));
        rc = 1;
    } else {
        fprintf(out, "forget: removed %s conversations, %s messages, %s events (%s %s)\n", PQgetvalue(res, 0, 0),
                PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), argv[0] + 2, value);
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}
