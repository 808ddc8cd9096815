/*
 * libFuzzer target for the SSE decoder: any bytes, fed in pieces chosen by the
 * input itself, must decode safely and to the same events however they are split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LARGE ((size_t)1 << 30)

/* Events serialised as (name length, name, data length, data) so that sequences compare with memcmp. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    size_t n;          /* events seen */
    size_t stop_after; /* return 1 from this event on (0: never) */
} trace_t;

static void put(trace_t *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n)
            cap *= 2;
        t->p = realloc(t->p, cap);
        if (t->p == NULL)
            abort();
        t->cap = cap;
    }
    if (n != 0)
        memcpy(t->p + t->len, p, n);
    t->len += n;
}

static int record(void *ctx, const sb_sse_event_t *ev)
{
    trace_t *t = ctx;
    /* An event always has a name (at most 63 bytes, "message" by default) and readable data. */
    if (ev->event == NULL || ev->event_len == 0 || ev->event_len > 63 || ev->data == NULL)
        abort();
    put(t, &ev->event_len, sizeof(ev->event_len));
    put(t, ev->event, ev->event_len);
    put(t, &ev->data_len, sizeof(ev->data_len));
    put(t, ev->data, ev->data_len);
    ++t->n;
    return t->stop_after != 0 && t->n >= t->stop_after;
}

/* Feeds `in` in pieces of 1..span bytes (span 0: whole), each in its own allocation so ASan sees its bounds. */
static int run(const uint8_t *in, size_t len, size_t max, unsigned span, uint32_t seed, trace_t *t)
{
    sb_sse_decoder_t d;
    sb_sse_decoder_init(&d, max);
    size_t off = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        size_t n = len - off;
        if (span != 0) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % span;
            n = k < n ? k : n;
        }
        char *piece = malloc(n);
        if (piece == NULL)
            abort();
        memcpy(piece, in + off, n);
        rc = sb_sse_decoder_feed(&d, piece, n, record, t);
        free(piece);
        off += n;
        if (d.line_cap > max || d.data_cap > max)
            abort();
    }
    if (rc == 0)
        rc = sb_sse_decoder_finish(&d, record, t);
    sb_sse_decoder_dispose(&d);
    return rc;
}

static int same(const trace_t *a, const trace_t *b)
{
    return a->n == b->n && a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static int prefix(const trace_t *a, const trace_t *b)
{
    return a->n <= b->n && a->len <= b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/*
 * Input: 4 header bytes (piece span, split seed, small ceiling, stop-after count),
 * then the stream. Missing header bytes count as 0.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t h[4] = {0};
    size_t k = size < sizeof(h) ? size : sizeof(h);
    memcpy(h, data, k);
    const uint8_t *in = data + k;
    size_t len = size - k;
    unsigned span = h[0];
    uint32_t seed = h[1];
    size_t small = h[2] >= 128 ? 4096 : 16 + (size_t)h[2] * 16;
    size_t stop = h[3] % 8;

    trace_t whole = {0}, pieces = {0}, big = {0}, stopped = {.stop_after = stop};
    int rc_whole = run(in, len, small, 0, 0, &whole);
    int rc_pieces = run(in, len, small, span ? span : 1, seed, &pieces);
    int rc_big = run(in, len, LARGE, 0, 0, &big);
    int rc_stopped = run(in, len, LARGE, span ? span : 1, seed + 1, &stopped);

    /* With the same ceiling, splitting changes nothing, not even where the ceiling is hit. */
    if (rc_whole != rc_pieces || !same(&whole, &pieces))
        abort();
    if (rc_big != 0 || (rc_pieces != 0 && rc_pieces != SB_SSE_ERR_TOO_LARGE))
        abort();
    /* Below the ceiling the events are those of an unbounded decoder; above it, a prefix of them. */
    if (rc_pieces == 0 ? !same(&pieces, &big) : !prefix(&pieces, &big))
        abort();
    /* A callback that says stop is obeyed at once. */
    if (stop != 0 && big.n >= stop) {
        if (rc_stopped != 1 || stopped.n != stop || !prefix(&stopped, &big))
            abort();
    } else if (rc_stopped != 0 || !same(&stopped, &big)) {
        abort();
    }

    free(whole.p);
    free(pieces.p);
    free(big.p);
    free(stopped.p);
    return 0;
}
