/*
 * Session tokens: what a browser shows instead of an API key. A server that
 * holds a key creates a session (POST /v1/sessions) and gets a token that
 * names the session, the owner of its conversation, the key's team and an
 * expiry, signed with HMAC-SHA-256 (libsodium) under a key derived from
 * CONVERSATION_SECRET, else from the inbound keys, so every replica of a
 * deployment accepts every replica's tokens and a restart keeps them valid.
 * With neither, the key is random per process (tokens end with it).
 *
 *     "sbs1." base64url( 1 | expiry (8, big-endian seconds) | owner (16) | len | id | len | team | mac (32) )
 */
#ifndef SB_SESSION_TOKEN_H
#define SB_SESSION_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "sb/config.h"

#define SB_SESSION_ID_MAX 64     /* bytes of a session id: [A-Za-z0-9_-] */
#define SB_SESSION_TEAM_MAX 64   /* bytes of a team name carried */
#define SB_SESSION_TOKEN_MAX 320 /* bytes of a token, its NUL included */

typedef struct sb_session_claims {
    char id[SB_SESSION_ID_MAX + 1];
    char owner[33]; /* hex, as sb_conversation_owner writes it */
    char team[SB_SESSION_TEAM_MAX + 1];
    uint64_t expires; /* unix seconds */
} sb_session_claims_t;

typedef enum sb_session_token_verdict {
    SB_TOKEN_OK = 0,
    SB_TOKEN_FORGED = -1,  /* malformed, or its signature is wrong */
    SB_TOKEN_EXPIRED = -2, /* signed, but its time is over */
} sb_session_token_verdict_t;

/* Derives the signing key. Start-up only, after sodium_init. */
void sb_session_token_init(const sb_config_t *config);
/* Wipes the key. */
void sb_session_token_dispose(void);
/* Whether a session id is well-formed: 1 to SB_SESSION_ID_MAX bytes of letters, digits, '_' and '-'. */
int sb_session_id_valid(const char *id, size_t len);
/* Writes the token of `claims` (id and team well-formed) into `out` (SB_SESSION_TOKEN_MAX bytes). Returns its length. */
size_t sb_session_token_mint(const sb_session_claims_t *claims, char out[SB_SESSION_TOKEN_MAX]);
/*
 * Checks `token` (`len` bytes, outside input) at time `now` and fills
 * `claims` when it is OK. The signature is checked in constant time before
 * anything in it is believed.
 */
sb_session_token_verdict_t sb_session_token_verify(const char *token, size_t len, uint64_t now, sb_session_claims_t *claims);

#endif
