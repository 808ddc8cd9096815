/*
 * Canonical padded base64, the reference the embedding tests encode with
 * (tests/unit/test_embed.c, tests/fuzz/fuzz_embed_base64.c): switchboard only
 * decodes it, so this writer lives with the tests.
 */
#ifndef SB_TEST_BASE64_ENC_H
#define SB_TEST_BASE64_ENC_H

#include <stddef.h>
#include <stdint.h>

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes the base64 of `n` bytes into `out` (4 * ceil(n / 3) bytes, no NUL) and returns its length. */
static inline size_t base64_encode(const unsigned char *in, size_t n, char *out)
{
    const char *abc = base64_alphabet;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[x >> 18 & 63];
        out[o++] = abc[x >> 12 & 63];
        out[o++] = i + 1 < n ? abc[x >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[x & 63] : '=';
    }
    return o;
}

#endif
