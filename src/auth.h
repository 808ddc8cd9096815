/*
 * Inbound authentication: the `Authorization: Bearer` key the engine sends
 * (its llm.api_key), checked against SWITCHBOARD_API_KEYS in constant time;
 * and a scraper's METRICS_TOKEN and Retell's RETELL_SECRET, the same way.
 */
#ifndef SB_AUTH_H
#define SB_AUTH_H

#include <stddef.h>

#include "sb/config.h"

/* Derives the key digests from the config. Call once at start-up, after sodium_init. */
void sb_auth_init(const sb_config_t *config);
/* Forgets the digests. */
void sb_auth_dispose(void);
/*
 * Checks an Authorization header value (NULL when absent). Returns 1 when it is
 * "Bearer <a configured key>" or when no key is configured and unauthenticated
 * use is allowed, else 0. Time depends on neither the key nor how much matched.
 */
int sb_auth_check(const char *value, size_t len);
/*
 * The team of the key in an Authorization header value (a SWITCHBOARD_API_KEYS
 * entry team:key, with TEAM_INSTRUCTIONS_FILE), or NULL: no team, no key, or
 * a wrong one. Every key is compared, as in sb_auth_check.
 */
const char *sb_auth_team(const char *value, size_t len);
/*
 * The token of an Authorization header value: what follows its first seven
 * bytes ("Bearer "), surrounding spaces trimmed; "" (length 0) when there is
 * none. The prefix is not checked here: sb_auth_check did that. Borrowed from
 * `value`. Its digest owns a caller's conversations (conversation.h).
 */
const char *sb_auth_token(const char *value, size_t len, size_t *tlen);
/* The team named `name` (the same static string sb_auth_team returns), or NULL when no key has it. */
const char *sb_auth_team_named(const char *name, size_t len);
/* The same for a scrape of /metrics: "Bearer <METRICS_TOKEN>", or anything when METRICS_TOKEN is not set. */
int sb_auth_check_metrics(const char *value, size_t len);
/* Whether `secret` (`len` bytes; NULL when absent) is RETELL_SECRET; 0 when that is not set. Constant time, as above. */
int sb_auth_check_retell(const char *secret, size_t len);

#endif
