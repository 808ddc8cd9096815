/*
 * Text about a Postgres connection for the command-line tools' messages:
 * where DATABASE_URL points without its password, and libpq's messages on
 * one line.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "pgtext.h"

/* libpq messages end in a newline (sometimes several lines); we print them inside our own lines. */
const char *sb_pg_trimmed(const char *msg, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", msg != NULL ? msg : "");
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    return out;
}

/*
 * Writes "user@host:port/dbname" for messages: what the URL points at,
 * without its password. Returns -1 when libpq cannot parse the URL; its
 * message is not shown because it may quote any part of the URL.
 */
int sb_pg_describe_target(const char *url, char *out, size_t outlen)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    if (opts == NULL)
        return -1;
    const char *user = NULL, *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; ++o) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    snprintf(out, outlen, "%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
             host       ? host
             : hostaddr ? hostaddr
                        : "(local socket)",
             port ? ":" : "", port ? port : "", db ? db : "(default database)");
    PQconninfoFree(opts);
    return 0;
}
