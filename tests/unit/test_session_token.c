/* Unit tests for src/session_token.c: a token round-trips, and any change to it, a wrong key or its time running out is caught. */
#include <sodium.h>
#include <string.h>

#include "session_token.h"
#include "tap.h"

static sb_config_t config_with(const char *keys)
{
    sb_config_t c;
    memset(&c, 0, sizeof(c));
    c.api_keys_csv = (char *)keys;
    return c;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    sb_config_t c = config_with("key-one,key-two");
    sb_session_token_init(&c);

    sb_session_claims_t in = {.id = "sess_abc-123", .owner = "00112233445566778899aabbccddeeff", .team = "north", .expires = 2000};
    char token[SB_SESSION_TOKEN_MAX];
    size_t n = sb_session_token_mint(&in, token);
    ok(n > 5 && n < SB_SESSION_TOKEN_MAX && strncmp(token, "sbs1.", 5) == 0, "a token is sbs1. and base64url (%zu bytes)", n);
    ok(strspn(token + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n - 5,
       "only URL- and subprotocol-safe characters");

    sb_session_claims_t out;
    is_int(sb_session_token_verify(token, n, 1999, &out), SB_TOKEN_OK, "it verifies before its expiry");
    is_str(out.id, "sess_abc-123", "the session id comes back");
    is_str(out.owner, "00112233445566778899aabbccddeeff", "the owner comes back");
    is_str(out.team, "north", "the team comes back");
    is_int((long long)out.expires, 2000, "the expiry comes back");
    is_int(sb_session_token_verify(token, n, 2000, &out), SB_TOKEN_EXPIRED, "at its expiry it is expired, not forged");

    int caught = 1;
    for (size_t i = 5; i < n; ++i) { /* every character changed is caught */
        char t[SB_SESSION_TOKEN_MAX];
        memcpy(t, token, n + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        caught &= sb_session_token_verify(t, n, 1000, &out) == SB_TOKEN_FORGED;
    }
    ok(caught, "a token with any character changed is forged");
    is_int(sb_session_token_verify(token, n - 1, 1000, &out), SB_TOKEN_FORGED, "a cut token is forged");
    is_int(sb_session_token_verify("sbs1.", 5, 1000, &out), SB_TOKEN_FORGED, "an empty token is forged");
    is_int(sb_session_token_verify("Bearer x", 8, 1000, &out), SB_TOKEN_FORGED, "anything else is forged");

    sb_config_t other = config_with("key-three");
    sb_session_token_init(&other);
    is_int(sb_session_token_verify(token, n, 1000, &out), SB_TOKEN_FORGED, "another deployment's key does not verify it");
    sb_session_token_init(&c);
    is_int(sb_session_token_verify(token, n, 1000, &out), SB_TOKEN_OK, "the same keys derive the same key: a restart keeps it");

    sb_session_claims_t bare = {.id = "x", .owner = "ffffffffffffffffffffffffffffffff", .team = "", .expires = 5};
    n = sb_session_token_mint(&bare, token);
    is_int(sb_session_token_verify(token, n, 1, &out), SB_TOKEN_OK, "no team round-trips");
    is_str(out.team, "", "as an empty team");

    ok(sb_session_id_valid("sess_Az09-_", 11), "letters, digits, _ and - make an id");
    ok(!sb_session_id_valid("", 0) && !sb_session_id_valid("a b", 3) && !sb_session_id_valid("a/b", 3), "nothing else does");
    char long_id[66];
    memset(long_id, 'a', 65);
    ok(!sb_session_id_valid(long_id, 65) && sb_session_id_valid(long_id, 64), "64 bytes at most");
    sb_session_token_dispose();
    return done_testing();
}
