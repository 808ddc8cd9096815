/*
 * Cost of reading upstream chunks: parses every JSON event of the recorded
 * streams named on the command line, `reps` times each, with the scanner
 * (src/chunk.c) or with the jansson reading it replaced (tests/fuzz/chunk_ref.c).
 * Meant to run under callgrind (tests/bench/chunk-run), which counts the
 * instructions spent inside parse_all only.
 *
 *   chunk-bench scanner|jansson REPS FILE.sse...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/chunk_ref.h"
#include "chunk.h"
#include "sb/buf.h"
#include "sb/sse.h"

typedef struct {
    sb_buf_t data;    /* the events' data, one after the other */
    size_t len[4096]; /* and their lengths */
    size_t n;
} events_t;

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    events_t *e = ctx;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return 0;
    if (e->n == sizeof(e->len) / sizeof(e->len[0]) || sb_buf_append(&e->data, ev->data, ev->data_len) != 0)
        return -1;
    e->len[e->n++] = ev->data_len;
    return 0;
}

/* What callgrind measures. Returns how many events failed to parse (there should be none). */
__attribute__((noinline)) static size_t parse_all(const events_t *e, int jansson, long reps, char *scratch)
{
    size_t failed = 0;
    for (long r = 0; r < reps; ++r) {
        const char *p = e->data.base;
        for (size_t i = 0; i < e->n; p += e->len[i++]) {
            sb_delta_t d;
            if (jansson) {
                json_t *holder;
                json_error_t error;
                failed += ref_chunk_parse(p, e->len[i], &d, &holder, &error) != 0;
                json_decref(holder);
            } else {
                failed += sb_chunk_parse(p, e->len[i], &d, scratch) != 0;
            }
        }
    }
    return failed;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "scanner") != 0 && strcmp(argv[1], "jansson") != 0)) {
        fprintf(stderr, "usage: %s scanner|jansson REPS FILE.sse...\n", argv[0]);
        return 2;
    }
    long reps = strtol(argv[2], NULL, 10);
    static events_t e;
    sb_buf_init(&e.data, (size_t)64 << 20);
    sb_sse_decoder_t dec;
    for (int i = 3; i < argc; ++i) {
        FILE *fp = fopen(argv[i], "rb");
        if (fp == NULL) {
            perror(argv[i]);
            return 1;
        }
        char buf[1 << 16];
        size_t n;
        sb_sse_decoder_init(&dec, sizeof(buf));
        while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
            sb_sse_decoder_feed(&dec, buf, n, on_event, &e);
        sb_sse_decoder_finish(&dec, on_event, &e);
        sb_sse_decoder_dispose(&dec);
        fclose(fp);
    }
    char *scratch = malloc(e.data.len + 1);
    if (scratch == NULL)
        abort();
    size_t failed = parse_all(&e, strcmp(argv[1], "jansson") == 0, reps, scratch);
    /* events, bytes: for the per-chunk figures */
    printf("%zu %zu %zu\n", e.n, e.data.len, failed);
    free(scratch);
    sb_buf_dispose(&e.data);
    return failed != 0;
}
