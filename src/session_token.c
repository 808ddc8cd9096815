/*
 * Session tokens: minted for a key holder, checked on every WebSocket
 * connect. The layout is in the header; the MAC covers every byte before it.
 */
#include <sodium.h>
#include <string.h>

#include "sb/log.h"
#include "session_token.h"

#define PREFIX "sbs1."
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define VERSION 1
#define MAC_BYTES crypto_auth_hmacsha256_BYTES
#define RAW_MAX (1 + 8 + 16 + 1 + SB_SESSION_ID_MAX + 1 + SB_SESSION_TEAM_MAX + MAC_BYTES)

_Static_assert(PREFIX_LEN + sodium_base64_ENCODED_LEN(RAW_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <= SB_SESSION_TOKEN_MAX,
               "a token fits SB_SESSION_TOKEN_MAX");

static unsigned char token_key[crypto_auth_hmacsha256_KEYBYTES];

void sb_session_token_init(const sb_config_t *config)
{
    static const char context[] = "switchboard session token v1";
    const char *secret = config->conversation_secret != NULL ? config->conversation_secret : config->api_keys_csv;
    if (secret == NULL || secret[0] == '\0') {
        randombytes_buf(token_key, sizeof(token_key));
        return; /* no deployment secret: tokens live as long as this process */
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(token_key));
    crypto_generichash_update(&st, (const unsigned char *)context, sizeof(context) - 1);
    crypto_generichash_update(&st, (const unsigned char *)secret, strlen(secret));
    crypto_generichash_final(&st, token_key, sizeof(token_key));
}

void sb_session_token_dispose(void)
{
    sodium_memzero(token_key, sizeof(token_key));
}

int sb_session_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > SB_SESSION_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

size_t sb_session_token_mint(const sb_session_claims_t *claims, char out[SB_SESSION_TOKEN_MAX])
{
    unsigned char raw[RAW_MAX], *p = raw;
    size_t idlen = strnlen(claims->id, SB_SESSION_ID_MAX), teamlen = strnlen(claims->team, SB_SESSION_TEAM_MAX);
    *p++ = VERSION;
    for (int i = 7; i >= 0; --i)
        *p++ = (unsigned char)(claims->expires >> (8 * i));
    if (sodium_hex2bin(p, 16, claims->owner, 32, NULL, NULL, NULL) != 0)
        memset(p, 0, 16);
    p += 16;
    *p++ = (unsigned char)idlen;
    memcpy(p, claims->id, idlen);
    p += idlen;
    *p++ = (unsigned char)teamlen;
    memcpy(p, claims->team, teamlen);
    p += teamlen;
    crypto_auth_hmacsha256(p, raw, (size_t)(p - raw), token_key);
    p += MAC_BYTES;
    memcpy(out, PREFIX, PREFIX_LEN);
    sodium_bin2base64(out + PREFIX_LEN, SB_SESSION_TOKEN_MAX - PREFIX_LEN, raw, (size_t)(p - raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return strlen(out);
}

sb_session_token_verdict_t sb_session_token_verify(const char *token, size_t len, uint64_t now, sb_session_claims_t *claims)
{
    unsigned char raw[RAW_MAX];
    size_t n;
    if (len <= PREFIX_LEN || len >= SB_SESSION_TOKEN_MAX || memcmp(token, PREFIX, PREFIX_LEN) != 0 ||
        sodium_base642bin(raw, sizeof(raw), token + PREFIX_LEN, len - PREFIX_LEN, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n < 1 + 8 + 16 + 1 + 1 + MAC_BYTES)
        return SB_TOKEN_FORGED;
    if (crypto_auth_hmacsha256_verify(raw + n - MAC_BYTES, raw, n - MAC_BYTES, token_key) != 0)
        return SB_TOKEN_FORGED;
    /* signed by this deployment: the layout is ours, but is still read with bounds */
    const unsigned char *p = raw, *end = raw + n - MAC_BYTES;
    if (*p++ != VERSION)
        return SB_TOKEN_FORGED;
    uint64_t expires = 0;
    for (int i = 0; i < 8; ++i)
        expires = expires << 8 | *p++;
    const unsigned char *owner = p;
    p += 16;
    size_t idlen = *p++;
    if (idlen > (size_t)(end - p) || !sb_session_id_valid((const char *)p, idlen))
        return SB_TOKEN_FORGED;
    memcpy(claims->id, p, idlen);
    claims->id[idlen] = '\0';
    p += idlen;
    if (p >= end || *p > SB_SESSION_TEAM_MAX || (size_t)*p != (size_t)(end - p - 1))
        return SB_TOKEN_FORGED;
    size_t teamlen = *p++;
    memcpy(claims->team, p, teamlen);
    claims->team[teamlen] = '\0';
    sodium_bin2hex(claims->owner, sizeof(claims->owner), owner, 16);
    claims->expires = expires;
    return now >= expires ? SB_TOKEN_EXPIRED : SB_TOKEN_OK;
}
