/*
 * libFuzzer target for session tokens (src/session_token.c), which a browser
 * sends on every WebSocket connect: any bytes are forged, expired or a token
 * whose claims mint back to the very same bytes, never a crash. Without the
 * key a fuzzer reaches everything before the signature check (the prefix,
 * the base64, the lengths); the claims' reading after it is the unit test's.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "session_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    if (sodium_init() < 0)
        abort();
    sb_config_t c;
    memset(&c, 0, sizeof(c));
    c.api_keys_csv = (char *)"fuzz-key";
    sb_session_token_init(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    sb_session_claims_t claims;
    sb_session_token_verdict_t v = sb_session_token_verify((const char *)data, size, 1000, &claims);
    if (v == SB_TOKEN_FORGED)
        return 0;
    if (v != SB_TOKEN_OK && v != SB_TOKEN_EXPIRED)
        abort();
    /* it verified: its claims are well-formed and mint back to the same token */
    if (!sb_session_id_valid(claims.id, strlen(claims.id)) || strlen(claims.owner) != 32)
        abort();
    char again[SB_SESSION_TOKEN_MAX];
    size_t n = sb_session_token_mint(&claims, again);
    if (n != size || memcmp(again, data, size) != 0)
        abort();
    return 0;
}
