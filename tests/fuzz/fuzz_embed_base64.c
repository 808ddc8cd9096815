/*
 * libFuzzer target for the decoding of base64 embeddings: what it accepts is
 * exactly the canonical base64 of whole, finite little-endian float32s within
 * the dimension limit, decoded bit for bit; everything else is refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../rag/embed.h"
#include "base64_enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DIM 64

/* Whether `s` is the canonical encoding of whole finite floats, at most MAX_DIM: decoded by brute force, re-encoded, compared. */
static int should_accept(const char *s, size_t len)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > MAX_DIM * 4 + 2)
        return 0;
    unsigned char raw[MAX_DIM * 4 + 3];
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t x = 0;
        size_t pad = 0;
        for (size_t j = 0; j < 4; ++j) {
            const char *p = s[i + j] != '\0' ? strchr(base64_alphabet, s[i + j]) : NULL;
            pad += s[i + j] == '=';
            x = x << 6 | (p != NULL ? (uint32_t)(p - base64_alphabet) : 0);
        }
        for (size_t j = 0; j < 3 - (pad < 3 ? pad : 2); ++j)
            raw[n++] = (unsigned char)(x >> (16 - 8 * j));
    }
    if (n % 4 != 0 || n == 0)
        return 0;
    char again[sizeof(raw) / 3 * 4 + 8];
    if (base64_encode(raw, n, again) != len || memcmp(again, s, len) != 0)
        return 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t u = (uint32_t)raw[i] | (uint32_t)raw[i + 1] << 8 | (uint32_t)raw[i + 2] << 16 | (uint32_t)raw[i + 3] << 24;
        float f;
        memcpy(&f, &u, sizeof(f));
        if (!isfinite(f))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1); /* its own allocation, so ASan sees where it ends */
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    float *out = malloc(MAX_DIM * sizeof(float));
    size_t dim = sb_embed_decode_base64(s, size, out, MAX_DIM);
    if ((dim > 0) != should_accept(s, size))
        abort();
    if (dim > 0) {
        unsigned char raw[MAX_DIM * 4];
        for (size_t i = 0; i < dim; ++i) {
            uint32_t u;
            memcpy(&u, &out[i], sizeof(u));
            for (int j = 0; j < 4; ++j)
                raw[i * 4 + (size_t)j] = (unsigned char)(u >> (8 * j));
        }
        char again[MAX_DIM * 4 / 3 * 4 + 8];
        if (dim * 4 / 3 * 4 > size || base64_encode(raw, dim * 4, again) != size || memcmp(again, s, size) != 0)
            abort();
    }
    free(out);
    free(s);
    return 0;
}
