/*
 * The embedding call's decoding of base64 vectors (encoding_format "base64"):
 * whole little-endian float32s in canonical, padded standard base64, and
 * nothing else.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../rag/embed.h"
#include "../fuzz/base64_enc.h"
#include "tap.h"

/* The little-endian bytes of `v`. */
static void bytes_of(const float *v, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof(u));
        for (int j = 0; j < 4; ++j)
            out[i * 4 + (size_t)j] = (unsigned char)(u >> (8 * j));
    }
}

static size_t decode(const char *s, float *out, size_t max)
{
    return sb_embed_decode_base64(s, strlen(s), out, max);
}

int main(void)
{
    float out[2048];
    ok(decode("AACAPw==", out, 8) == 1 && out[0] == 1.0f, "one float, two pad characters");
    ok(decode("AACAPwAAgL4=", out, 8) == 2 && out[0] == 1.0f && out[1] == -0.25f, "two floats, one pad character");
    ok(decode("AACAPwAAgL7NzMw9", out, 8) == 3 && out[2] == 0.1f, "three floats, no padding");

    float v[1536];
    unsigned char raw[sizeof(v)];
    char text[sizeof(raw) / 3 * 4 + 8];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < 1536; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) / 10;
    }
    bytes_of(v, 1536, raw);
    text[base64_encode(raw, sizeof(raw), text)] = '\0';
    ok(decode(text, out, 2048) == 1536 && memcmp(out, v, sizeof(v)) == 0, "1536 dimensions come back bit for bit");
    ok(decode(text, out, 1535) == 0, "one dimension past max_dim: refused");

    static const char *const bad[] = {
        "",           /* nothing */
        "AACAP",      /* not a multiple of 4 */
        "AACAPwAA",   /* 6 bytes: not whole floats */
        "AACAPx==",   /* the bits under the padding are not 0 */
        "AACAPw=A",   /* padding in the middle */
        "AAC=Pw==",   /* padding in the middle */
        "AACAPw===",  /* too much padding */
        "AACA Pw=",   /* a space */
        "AACAPw==\n", /* a line break */
        "AACA-w==",   /* the URL-safe alphabet */
        "AADAfw==",   /* NaN */
        "AACAfw==",   /* infinity */
        "AACA/w==",   /* minus infinity */
        "====",       /* padding only */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        ok(decode(bad[i], out, 8) == 0, "refused: '%s'", strchr(bad[i], '\n') != NULL ? "AACAPw==\\n" : bad[i]);
    return done_testing();
}
