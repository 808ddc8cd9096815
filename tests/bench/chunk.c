/*
 * Cost of reading upstream chunks: parses every JSON event of the recorded
 * streams named on the command line, `reps` times each, with the scanner
 * (src/chunk.c), with the jansson reading it replaced (tests/fuzz/chunk_ref.c),
 * or with a provider's wire (src/wire_*.c: every event, as a call reads it,
 * into the turn's delta). Meant to run under callgrind (tests/bench/chunk-run),
 * which counts the instructions spent inside parse_all only.
 *
 *   chunk-bench scanner|jansson|wire-NAME REPS FILE.sse...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/chunk_ref.h"
#include "chunk.h"
#include "sb/buf.h"
#include "sb/sse.h"
#include "wire.h"

/* The wires, by the name the command line gives them. */
static const sb_wire_t *const wires[] = {&sb_wire_openai, &sb_wire_anthropic, &sb_wire_gemini, &sb_wire_responses};

typedef struct {
    sb_buf_t data;             /* the events' data, one after the other */
    size_t len[4096];          /* and their lengths */
    char name[4096][48];       /* and their names (`event:`), for the wires */
    unsigned char first[4096]; /* the first event of a recording: a wire's state starts fresh there, as a call's does */
    size_t n;
    int keep_done;  /* a wire reads [DONE] itself */
    int next_first; /* the next event starts a recording */
} events_t;

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    events_t *e = ctx;
    if (!e->keep_done && ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return 0;
    if (e->n == sizeof(e->len) / sizeof(e->len[0]) || ev->event_len >= sizeof(e->name[0]) ||
        sb_buf_append(&e->data, ev->data, ev->data_len) != 0)
        return -1;
    memcpy(e->name[e->n], ev->event, ev->event_len);
    e->name[e->n][ev->event_len] = '\0';
    e->first[e->n] = (unsigned char)e->next_first;
    e->next_first = 0;
    e->len[e->n++] = ev->data_len;
    return 0;
}

/* What callgrind measures for a wire: every event through its reader, its state fresh at each pass as a call's is. */
__attribute__((noinline)) static size_t parse_all_wire(const events_t *e, const sb_wire_t *w, long reps, char *scratch)
{
    size_t failed = 0;
    void *state = w->state_size ? calloc(1, w->state_size) : NULL;
    for (long r = 0; r < reps; ++r) {
        const char *p = e->data.base;
        for (size_t i = 0; i < e->n; p += e->len[i++]) {
            if (e->first[i] && state != NULL)
                memset(state, 0, w->state_size);
            sb_delta_t d;
            sb_error_t error = SB_OK;
            sb_sse_event_t ev = {e->name[i], strlen(e->name[i]), p, e->len[i]};
            failed += w->event(state, &ev, scratch, &d, &error) == SB_WIRE_ERROR;
        }
    }
    free(state);
    return failed;
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
    const sb_wire_t *wire = NULL;
    for (size_t i = 0; argc > 1 && i < sizeof(wires) / sizeof(wires[0]); ++i)
        if (strncmp(argv[1], "wire-", 5) == 0 && strcmp(argv[1] + 5, wires[i]->name) == 0)
            wire = wires[i];
    if (argc < 4 || (strcmp(argv[1], "scanner") != 0 && strcmp(argv[1], "jansson") != 0 && wire == NULL)) {
        fprintf(stderr, "usage: %s scanner|jansson|wire-NAME REPS FILE.sse...\n", argv[0]);
        return 2;
    }
    long reps = strtol(argv[2], NULL, 10);
    static events_t e;
    e.keep_done = wire != NULL;
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
        e.next_first = 1;
        while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
            sb_sse_decoder_feed(&dec, buf, n, on_event, &e);
        sb_sse_decoder_finish(&dec, on_event, &e);
        sb_sse_decoder_dispose(&dec);
        fclose(fp);
    }
    char *scratch = malloc(e.data.len + 1);
    if (scratch == NULL)
        abort();
    size_t failed =
        wire != NULL ? parse_all_wire(&e, wire, reps, scratch) : parse_all(&e, strcmp(argv[1], "jansson") == 0, reps, scratch);
    /* events, bytes: for the per-chunk figures */
    /* the words a caller hears from these events, read once more outside what callgrind counts */
    size_t words = 0;
    void *state = wire != NULL && wire->state_size ? calloc(1, wire->state_size) : NULL;
    const char *p = e.data.base;
    for (size_t i = 0; i < e.n; p += e.len[i++]) {
        if (e.first[i] && state != NULL)
            memset(state, 0, wire->state_size);
        sb_delta_t d;
        sb_error_t error = SB_OK;
        sb_sse_event_t ev = {e.name[i], strlen(e.name[i]), p, e.len[i]};
        if (wire != NULL ? wire->event(state, &ev, scratch, &d, &error) == SB_WIRE_DELTA
                         : sb_chunk_parse(p, e.len[i], &d, scratch) == 0)
            words += d.content.len;
    }
    free(state);
    printf("%zu %zu %zu %zu\n", e.n, e.data.len, failed, words);
    free(scratch);
    sb_buf_dispose(&e.data);
    return failed != 0;
}
