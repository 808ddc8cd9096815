/*
 * Bearer key check. Keys and the presented token are compared as BLAKE2b
 * digests with sodium_memcmp against every configured key, so neither the
 * key's length nor the position of a mismatch shows in the timing.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <h2o/memory.h>

#include "auth.h"
#include "sb/alloc.h"

#define MAX_TOKEN 4096

static unsigned char (*digests)[crypto_generichash_BYTES];
static size_t ndigests;
static int allow_anyone;
static char *const *teams; /* the config's api_key_teams: the team of each key, NULL when none */
static unsigned char metrics_digest[crypto_generichash_BYTES];
static int metrics_token_set;
static unsigned char retell_digest[crypto_generichash_BYTES];
static int retell_secret_set;

void sb_auth_init(const sb_config_t *config)
{
    ndigests = config->api_key_count;
    teams = config->team_instructions_file != NULL ? config->api_key_teams : NULL; /* no teams: no second digest per turn */
    allow_anyone = ndigests == 0 && config->allow_unauthenticated;
    digests = sodium_malloc(ndigests ? ndigests * sizeof(*digests) : 1);
    if (digests == NULL)
        h2o_fatal("sodium_malloc failed");
    for (size_t i = 0; i < ndigests; ++i)
        crypto_generichash(digests[i], sizeof(digests[i]), (const unsigned char *)config->api_keys[i], strlen(config->api_keys[i]),
                           NULL, 0);
    metrics_token_set = config->metrics_token != NULL;
    if (metrics_token_set)
        crypto_generichash(metrics_digest, sizeof(metrics_digest), (const unsigned char *)config->metrics_token,
                           strlen(config->metrics_token), NULL, 0);
    retell_secret_set = config->retell_secret != NULL;
    if (retell_secret_set)
        crypto_generichash(retell_digest, sizeof(retell_digest), (const unsigned char *)config->retell_secret,
                           strlen(config->retell_secret), NULL, 0);
}

void sb_auth_dispose(void)
{
    sodium_free(digests);
    digests = NULL;
    ndigests = 0;
}

/*
 * The digest of the bearer token in an Authorization header value into d;
 * 0 when there is none. Comparing digests keeps the time independent of how
 * long the token is and of how much of it matched.
 */
const char *sb_auth_token(const char *value, size_t len, size_t *tlen)
{
    if (value == NULL || len <= 7) {
        *tlen = 0;
        return "";
    }
    const char *token = value + 7;
    size_t n = len - 7;
    while (n > 0 && *token == ' ')
        ++token, --n;
    while (n > 0 && token[n - 1] == ' ')
        --n;
    *tlen = n;
    return token;
}

static int bearer_digest(const char *value, size_t len, unsigned char d[crypto_generichash_BYTES])
{
    if (value == NULL || len < 7 || len > MAX_TOKEN || strncasecmp(value, "bearer ", 7) != 0)
        return 0;
    size_t tlen;
    const char *token = sb_auth_token(value, len, &tlen);
    if (tlen == 0)
        return 0;
    crypto_generichash(d, crypto_generichash_BYTES, (const unsigned char *)token, tlen, NULL, 0);
    return 1;
}

int sb_auth_check(const char *value, size_t len)
{
    if (allow_anyone)
        return 1;
    unsigned char d[crypto_generichash_BYTES];
    if (!bearer_digest(value, len, d))
        return 0;
    int match = 0;
    for (size_t i = 0; i < ndigests; ++i) /* no early exit: every key is compared */
        match |= sodium_memcmp(d, digests[i], sizeof(d)) == 0;
    sodium_memzero(d, sizeof(d));
    return match;
}

const char *sb_auth_team(const char *value, size_t len)
{
    unsigned char d[crypto_generichash_BYTES];
    if (teams == NULL || !bearer_digest(value, len, d))
        return NULL;
    size_t which = 0; /* the matching key's index + 1, picked without a branch on the comparison */
    for (size_t i = 0; i < ndigests; ++i) {
        size_t match = (size_t)(sodium_memcmp(d, digests[i], sizeof(d)) == 0);
        which |= (i + 1) & ((size_t)0 - match);
    }
    sodium_memzero(d, sizeof(d));
    return which > 0 ? teams[which - 1] : NULL;
}

const char *sb_auth_team_named(const char *name, size_t len)
{
    for (size_t i = 0; teams != NULL && i < ndigests; ++i)
        if (teams[i] != NULL && strlen(teams[i]) == len && memcmp(teams[i], name, len) == 0)
            return teams[i];
    return NULL;
}

int sb_auth_check_retell(const char *secret, size_t len)
{
    if (!retell_secret_set || secret == NULL || len == 0 || len > MAX_TOKEN)
        return 0;
    unsigned char d[crypto_generichash_BYTES];
    crypto_generichash(d, sizeof(d), (const unsigned char *)secret, len, NULL, 0);
    int match = sodium_memcmp(d, retell_digest, sizeof(d)) == 0;
    sodium_memzero(d, sizeof(d));
    return match;
}

int sb_auth_check_metrics(const char *value, size_t len)
{
    if (!metrics_token_set)
        return 1;
    unsigned char d[crypto_generichash_BYTES];
    int match = bearer_digest(value, len, d) && sodium_memcmp(d, metrics_digest, sizeof(d)) == 0;
    sodium_memzero(d, sizeof(d));
    return match;
}
