/*
 * Text about a Postgres connection for the command-line tools' messages
 * (switchboard migrate, switchboard-ingest): where DATABASE_URL points,
 * without its password, and libpq's messages fitted into one line.
 */
#ifndef SB_PGTEXT_H
#define SB_PGTEXT_H

#include <stddef.h>

/*
 * Writes "user@host:port/dbname" into `out`. Returns -1 when libpq cannot
 * parse the URL; its message is not shown because it may quote any part of
 * the URL, the password included.
 */
int sb_pg_describe_target(const char *url, char *out, size_t outlen);
/* Copies libpq's message (which ends in newlines, sometimes several lines) without its trailing newlines. Returns out. */
const char *sb_pg_trimmed(const char *msg, char *out, size_t outlen);

#endif
