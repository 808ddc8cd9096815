/*
 * Tests for the SSE decoder: hand-made edge cases, and the recorded provider
 * streams decoded whole, byte by byte and at random split points.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sse.h"
#include "tap.h"

#define FIXTURES SB_SOURCE_ROOT "/tests/fixtures/upstream-streams/"
#define BIG ((size_t)1 << 24)
#define WHOLE SIZE_MAX

typedef struct {
    char *name, *data;
    size_t name_len, data_len;
} rec_t;

typedef struct {
    rec_t *ev;
    size_t n, cap;
    size_t stop_after; /* return stop_rc from this event on (0: never) */
    int stop_rc;
} col_t;

static char *dup(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int collect(void *ctx, const sb_sse_event_t *ev)
{
    col_t *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->ev = realloc(c->ev, c->cap * sizeof(*c->ev));
        if (c->ev == NULL)
            abort();
    }
    c->ev[c->n++] = (rec_t){dup(ev->event, ev->event_len), dup(ev->data, ev->data_len), ev->event_len, ev->data_len};
    return c->stop_after != 0 && c->n >= c->stop_after ? c->stop_rc : 0;
}

static void col_free(col_t *c)
{
    for (size_t i = 0; i < c->n; ++i) {
        free(c->ev[i].name);
        free(c->ev[i].data);
    }
    free(c->ev);
    *c = (col_t){0};
}

static int same(const col_t *a, const col_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; ++i) {
        const rec_t *x = &a->ev[i], *y = &b->ev[i];
        if (x->name_len != y->name_len || x->data_len != y->data_len || memcmp(x->name, y->name, x->name_len) != 0 ||
            memcmp(x->data, y->data, x->data_len) != 0)
            return 0;
    }
    return 1;
}

/* "name=data" per event, joined by '|'; caller frees. */
static char *render(const col_t *c)
{
    size_t len = 1;
    for (size_t i = 0; i < c->n; ++i)
        len += c->ev[i].name_len + c->ev[i].data_len + 2;
    char *s = malloc(len), *p = s;
    if (s == NULL)
        abort();
    for (size_t i = 0; i < c->n; ++i) {
        if (i != 0)
            *p++ = '|';
        memcpy(p, c->ev[i].name, c->ev[i].name_len);
        p += c->ev[i].name_len;
        *p++ = '=';
        memcpy(p, c->ev[i].data, c->ev[i].data_len);
        p += c->ev[i].data_len;
    }
    *p = '\0';
    return s;
}

static size_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    /* Mostly small pieces, like TLS records cut by the kernel; now and then a big one. */
    return *s % 8 == 0 ? 1 + *s % 4096 : 1 + *s % 97;
}

/*
 * Decodes `in` fed in pieces of `fixed` bytes, or of pseudo-random sizes when
 * fixed is 0. Each piece is a separate allocation freed right after its feed,
 * so ASan catches the decoder keeping a pointer into the caller's buffer.
 */
static int decode(const char *in, size_t len, size_t max, size_t fixed, uint32_t seed, col_t *c)
{
    sb_sse_decoder_t d;
    sb_sse_decoder_init(&d, max);
    size_t off = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        size_t n = fixed ? fixed : rnd(&seed);
        if (n > len - off)
            n = len - off;
        char *piece = dup(in + off, n);
        rc = sb_sse_decoder_feed(&d, piece, n, collect, c);
        free(piece);
        off += n;
    }
    if (rc == 0)
        rc = sb_sse_decoder_finish(&d, collect, c);
    sb_sse_decoder_dispose(&d);
    return rc;
}

/* Decodes `in` every way: whole, byte by byte, split in two at every offset, random pieces. */
static void check_n(const char *label, const char *in, size_t len, size_t max, int want_rc, const char *want)
{
    col_t c = {0};
    int rc = decode(in, len, max, WHOLE, 0, &c);
    char *got = render(&c);
    is_int(rc, want_rc, "%s: whole: return", label);
    is_str(got, want, "%s: whole: events", label);
    free(got);
    col_free(&c);

    rc = decode(in, len, max, 1, 0, &c);
    got = render(&c);
    is_int(rc, want_rc, "%s: 1 byte per feed: return", label);
    is_str(got, want, "%s: 1 byte per feed: events", label);
    free(got);
    col_free(&c);

    int bad = 0;
    for (size_t i = 1; i < len; ++i) {
        sb_sse_decoder_t d;
        sb_sse_decoder_init(&d, max);
        char *a = dup(in, i), *b = dup(in + i, len - i);
        rc = sb_sse_decoder_feed(&d, a, i, collect, &c);
        if (rc == 0)
            rc = sb_sse_decoder_feed(&d, b, len - i, collect, &c);
        if (rc == 0)
            rc = sb_sse_decoder_finish(&d, collect, &c);
        sb_sse_decoder_dispose(&d);
        got = render(&c);
        if (rc != want_rc || strcmp(got, want) != 0) {
            if (bad++ == 0)
                printf("# split at %zu: rc %d, events '%s'\n", i, rc, got);
        }
        free(a);
        free(b);
        free(got);
        col_free(&c);
    }
    ok(bad == 0, "%s: split in two at every offset", label);

    bad = 0;
    for (uint32_t seed = 1; seed <= 8; ++seed) {
        rc = decode(in, len, max, 0, seed * 2654435761u, &c);
        got = render(&c);
        bad += rc != want_rc || strcmp(got, want) != 0;
        free(got);
        col_free(&c);
    }
    ok(bad == 0, "%s: random pieces", label);
}

static void check(const char *label, const char *in, int want_rc, const char *want)
{
    check_n(label, in, strlen(in), BIG, want_rc, want);
}

static void check_max(const char *label, const char *in, size_t max, int want_rc, const char *want)
{
    check_n(label, in, strlen(in), max, want_rc, want);
}

static void test_framing(void)
{
    check("LF", "data: a\n\ndata: b\n\n", 0, "message=a|message=b");
    check("CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", 0, "message=a|message=b");
    check("lone CR", "data: a\r\rdata: b\r\r", 0, "message=a|message=b");
    check("mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", 0, "message=a\nb\nc");
    /* A CR then LF is one line end even when the two arrive in different feeds (the split checks cover it). */
    check("CRLF between data lines", "data: a\r\ndata: b\r\n\r\n", 0, "message=a\nb");
    check("CR CR is two line ends", "data: a\r\rdata: b\r\n\r\n", 0, "message=a|message=b");
    check("LF CR is two line ends", "data: a\n\rdata: b\n\n", 0, "message=a|message=b");
    check("multi-line data", "data: a\ndata: b\n\n", 0, "message=a\nb");
    check("data: without space", "data:a\n\n", 0, "message=a");
    check("only one space removed", "data:  a \n\n", 0, "message= a ");
    check("tab is not removed", "data:\ta\n\n", 0, "message=\ta");
    check("data without colon", "data\n\n", 0, "message=");
    check("two empty data lines", "data\ndata:\n\n", 0, "message=\n");
    check("empty data then text", "data:\ndata: x\n\n", 0, "message=\nx");
    check("colon in value kept", "data: {\"a\":\"b: c\"}\n\n", 0, "message={\"a\":\"b: c\"}");
    check("event name", "event: delta\ndata: x\n\n", 0, "delta=x");
    check("event name without space", "event:delta\ndata: x\n\n", 0, "delta=x");
    check("last event field wins", "event: a\nevent: b\ndata: x\n\n", 0, "b=x");
    check("empty event name is message", "event:\ndata: x\n\n", 0, "message=x");
    check("event without data not dispatched", "event: ping\n\n", 0, "");
    check("event name reset after blank line", "event: ping\n\ndata: x\n\n", 0, "message=x");
    check("event name reset after dispatch", "event: a\ndata: x\n\ndata: y\n\n", 0, "a=x|message=y");
    check("comments", ": OPENROUTER PROCESSING\n\n:\n: x\ndata: y\n: between\n\n", 0, "message=y");
    check("ignored fields", "id: 7\nretry: 100\nfoo: bar\nbaz\ndata: x\nid\n\n", 0, "message=x");
    check("field names are case-sensitive", "Data: x\nDATA: y\n\n", 0, "");
    check("leading space makes another field", " data: x\n\n", 0, "");
    check("blank lines only", "\n\n\r\n\r\r\n", 0, "");
    check("empty stream", "", 0, "");
    check("blank line closes only once", "data: a\n\n\n\ndata: b\n\n", 0, "message=a|message=b");
}

static void test_bom(void)
{
    check("BOM skipped",
          "\xEF\xBB\xBF"
          "data: a\n\n",
          0, "message=a");
    check("BOM then comment", "\xEF\xBB\xBF: hi\n\ndata: a\n\n", 0, "message=a");
    check("BOM then blank line", "\xEF\xBB\xBF\ndata: a\n\n", 0, "message=a");
    check("BOM only at stream start",
          "data: a\n\n\xEF\xBB\xBF"
          "data: b\n\n",
          0, "message=a");
    check("second BOM is content",
          "\xEF\xBB\xBF\xEF\xBB\xBF"
          "data: a\n\n",
          0, "");
    check("partial BOM is content",
          "\xEF\xBB"
          "data: a\n\n",
          0, "");
    check("partial BOM in value", "data: \xEF\xBB\n\n", 0, "message=\xEF\xBB");
    check("lone BOM", "\xEF\xBB\xBF", 0, "");
    check("partial BOM at end", "\xEF\xBB", 0, "");
    check("BOM then unterminated data",
          "\xEF\xBB\xBF"
          "data: z",
          0, "message=z");
}

static void test_bytes(void)
{
    /* "héllo 🎉 日本" - multibyte sequences get cut by the split checks at every offset. */
    check("UTF-8 reassembled", "data: h\xC3\xA9llo \xF0\x9F\x8E\x89 \xE6\x97\xA5\xE6\x9C\xAC\n\n", 0,
          "message=h\xC3\xA9llo \xF0\x9F\x8E\x89 \xE6\x97\xA5\xE6\x9C\xAC");
    check("invalid UTF-8 passed through", "data: \xFF\xC3(\x80\n\n", 0, "message=\xFF\xC3(\x80");
    check("UTF-8 event name", "event: \xC3\xA9v\ndata: x\n\n", 0, "\xC3\xA9v=x");

    static const char nul[] = "data: a\0b\n\n";
    col_t c = {0};
    int rc = decode(nul, sizeof(nul) - 1, BIG, 1, 0, &c);
    ok(rc == 0 && c.n == 1 && c.ev[0].data_len == 3 && memcmp(c.ev[0].data, "a\0b", 3) == 0, "NUL byte inside data kept");
    col_free(&c);

    char name[200] = "event: ";
    memset(name + 7, 'n', 100);
    memcpy(name + 107, "\ndata: x\n\n", 11);
    rc = decode(name, strlen(name), BIG, WHOLE, 0, &c);
    ok(rc == 0 && c.n == 1 && c.ev[0].name_len == 63 && strspn(c.ev[0].name, "n") == 63, "long event name truncated to 63 bytes");
    col_free(&c);
}

static void test_finish(void)
{
    check("unterminated final line", "data: a\n\ndata: b", 0, "message=a|message=b");
    check("final event without blank line", "data: a\n", 0, "message=a");
    check("final event after CR", "event: e\rdata: a\r", 0, "e=a");
    check("final event with two lines", "data: a\ndata: b", 0, "message=a\nb");
    check("unterminated event line only", "event: e", 0, "");
    check("unterminated comment", "data: a\n: bye", 0, "message=a");
    check("unterminated empty data", "data", 0, "message=");

    /* After finish the decoder is ready for a new stream, BOM included. */
    sb_sse_decoder_t d;
    col_t c = {0};
    sb_sse_decoder_init(&d, BIG);
    int rc = sb_sse_decoder_feed(&d, "data: a\r", 8, collect, &c);
    rc |= sb_sse_decoder_finish(&d, collect, &c);
    rc |= sb_sse_decoder_feed(&d,
                              "\xEF\xBB\xBF"
                              "data: b\n\n",
                              12, collect, &c);
    rc |= sb_sse_decoder_finish(&d, collect, &c);
    char *got = render(&c);
    is_str(got, "message=a|message=b", "finish readies the decoder for a new stream (BOM skipped again)");
    ok(rc == 0, "reuse after finish returns 0");
    free(got);
    col_free(&c);
    sb_sse_decoder_dispose(&d);
    sb_sse_decoder_dispose(&d);
    ok(1, "dispose twice is safe");
    sb_sse_decoder_init(&d, BIG);
    rc = sb_sse_decoder_feed(&d, "data: c\n\n", 9, collect, &c);
    ok(rc == 0 && c.n == 1 && strcmp(c.ev[0].data, "c") == 0, "init again after dispose");
    col_free(&c);
    sb_sse_decoder_dispose(&d);
}

static void test_ceiling(void)
{
    /* The pending line plus the event's data may reach the ceiling, never pass it. */
    check_max("line exactly at ceiling", "data: abcd\n\n", 10, 0, "message=abcd");
    check_max("line one past ceiling", "data: abcde\n\n", 10, SB_SSE_ERR_TOO_LARGE, "");
    check_max("data plus line at ceiling", "data: ab\ndata: cd\n\n", 10, 0, "message=ab\ncd");
    check_max("data plus line past ceiling", "data: ab\ndata: cd\n\n", 9, SB_SSE_ERR_TOO_LARGE, "");
    check_max("comment past ceiling", ": a long comment\n\ndata: x\n\n", 8, SB_SSE_ERR_TOO_LARGE, "");
    check_max("events before the long one kept", "data: a\n\ndata: 0123456789abcdef\n\ndata: b\n\n", 16, SB_SSE_ERR_TOO_LARGE,
              "message=a");
    check_max("ceiling is per event", "data: 0123456789\n\ndata: 0123456789\n\ndata: 0123456789\n\n", 16, 0,
              "message=0123456789|message=0123456789|message=0123456789");
    check_max("unterminated line past ceiling", "data: a\n\ndata: 0123456789abcdef", 16, SB_SSE_ERR_TOO_LARGE, "message=a");

    char many[400] = "";
    for (int i = 0; i < 20; ++i)
        memcpy(many + i * 17, "data: 0123456789\n", 17);
    check_max("many data lines", many, 64, SB_SSE_ERR_TOO_LARGE, "");

    /* A line far longer than the ceiling is refused early, not buffered. */
    size_t len = 1 << 20;
    char *big = malloc(len);
    if (big == NULL)
        abort();
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', len - 6);
    sb_sse_decoder_t d;
    col_t c = {0};
    sb_sse_decoder_init(&d, 4096);
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < len) {
        rc = sb_sse_decoder_feed(&d, big + off, 1000, collect, &c);
        off += 1000;
    }
    is_int(rc, SB_SSE_ERR_TOO_LARGE, "long line fed in pieces hits the ceiling");
    ok(off <= 5000 && d.line_cap <= 4096, "refused at the ceiling, buffer within it (after %zu bytes)", off);
    /* The decoder stays failed: the tail of the long line must not be read as lines. */
    rc = sb_sse_decoder_feed(&d, "\ndata: x\n\n", 10, collect, &c);
    is_int(rc, SB_SSE_ERR_TOO_LARGE, "feed after the error fails too");
    rc = sb_sse_decoder_finish(&d, collect, &c);
    ok(c.n == 0, "no event after the error (finish returned %d)", rc);
    sb_sse_decoder_dispose(&d);
    col_free(&c);

    /* A big event within a big ceiling: buffers grow to fit, bytes exact. */
    memcpy(big + len - 2, "\n\n", 2);
    rc = decode(big, len, len, 0, 99, &c);
    ok(rc == 0 && c.n == 1 && c.ev[0].data_len == len - 8 && strspn(c.ev[0].data, "x") == len - 8,
       "1 MiB event decoded in random pieces");
    col_free(&c);
    rc = decode(big, len, len - 3, 0, 99, &c);
    is_int(rc, SB_SSE_ERR_TOO_LARGE, "1 MiB line with a ceiling one byte short");
    col_free(&c);
    free(big);
}

static void test_stop(void)
{
    static const char in[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    int bad = 0;
    for (size_t step = 1; step <= sizeof(in); ++step) {
        col_t c = {.stop_after = 2, .stop_rc = 42};
        int rc = decode(in, sizeof(in) - 1, BIG, step, 0, &c);
        bad += rc != 42 || c.n != 2;
        col_free(&c);
    }
    ok(bad == 0, "callback's non-zero return stops decoding and is returned by feed");

    col_t c = {.stop_after = 1, .stop_rc = -7};
    int rc = decode("data: 1", 7, BIG, WHOLE, 0, &c);
    ok(rc == -7 && c.n == 1, "callback's non-zero return is returned by finish");
    col_free(&c);
}

/* ---- recorded provider streams ---- */

typedef struct {
    const char *file;
    size_t events;
    const char *first, *last; /* event names */
    const char *last_data;    /* exact, or NULL */
    const char *name;         /* an event name ... */
    size_t count;             /* ... and how often it occurs */
} expect_t;

static const expect_t expects[] = {
    {"anthropic_messages_text_tooluse_stream.sse", 21, "message_start", "message_stop", NULL, "content_block_delta", 11},
    {"gemini_stream_after_function_result_stream.sse", 2, "message", "message", NULL, "message", 2},
    {"gemini_stream_functioncall_stream.sse", 1, "message", "message", NULL, "message", 1}, /* ends "\n\r\n" */
    {"gemini_stream_single_chunk_stream.sse", 1, "message", "message", NULL, "message", 1},
    {"gemini_stream_text_long_stream.sse", 123, "message", "message", NULL, "message", 123},
    {"groq_chat_midstream_error_stream.sse", 95, "message", "error", NULL, "error", 1},
    {"groq_chat_toolcall_usage_stream.sse", 26, "message", "message", "[DONE]", "message", 26},
    {"openai_chat_audio_shaped_stream.sse", 10, "message", "message", "[DONE]", "message", 10},
    {"openai_chat_content_usage_stream.sse", 34, "message", "message", "[DONE]", "message", 34},
    {"openai_chat_finish_length_stream.sse", 5, "message", "message", "[DONE]", "message", 5},
    {"openai_chat_parallel_toolcalls_stream.sse", 26, "message", "message", "[DONE]", "message", 26},
    {"openai_chat_toolcall_obfuscation_usage_stream.sse", 9, "message", "message", "[DONE]", "message", 9},
    {"openai_chat_toolcall_stream.sse", 18, "message", "message", "[DONE]", "message", 18},
    {"openai_responses_function_call_stream.sse", 11, "response.created", "response.completed", NULL,
     "response.function_call_arguments.delta", 5},
    {"openai_responses_text_stream.sse", 15, "response.created", "response.completed", NULL, "response.output_text.delta", 7},
    {"openrouter_chat_sse_comments_stream.sse", 15, "message", "message", "[DONE]", "message", 15},
};

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s == NULL || fread(s, 1, (size_t)n, fp) != (size_t)n)
        abort();
    fclose(fp);
    s[n] = '\0';
    *len = (size_t)n;
    return s;
}

/*
 * A deliberately naive reading for these LF-only files, where every event has
 * exactly one data line: the decoder must agree with it byte for byte. Two
 * Gemini recordings end with a stray CRLF, which it takes as a line end too.
 */
static void naive(const char *s, size_t len, col_t *c)
{
    const char *end = s + len, *name = "message";
    size_t name_len = 7;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t line = nl ? (size_t)(nl - s) : (size_t)(end - s), n = line;
        if (n > 0 && s[n - 1] == '\r')
            --n;
        if (n == 0) {
            name = "message";
            name_len = 7;
        } else if (n >= 7 && memcmp(s, "event: ", 7) == 0) {
            name = s + 7;
            name_len = n - 7;
        } else if (n >= 6 && memcmp(s, "data: ", 6) == 0) {
            collect(c, &(sb_sse_event_t){name, name_len, s + 6, n - 6});
        }
        s += line + 1;
    }
}

/* Rewrites every LF as `eol`. */
static char *relined(const char *s, size_t len, const char *eol, size_t *out_len)
{
    size_t k = strlen(eol), n = 0;
    char *o = malloc(len * k + 1);
    if (o == NULL)
        abort();
    for (size_t i = 0; i < len; ++i) {
        if (s[i] == '\n') {
            memcpy(o + n, eol, k);
            n += k;
        } else {
            o[n++] = s[i];
        }
    }
    *out_len = n;
    return o;
}

static size_t named(const col_t *c, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; ++i)
        k += strcmp(c->ev[i].name, name) == 0;
    return k;
}

static void test_fixture(const expect_t *e)
{
    char path[512];
    size_t len;
    snprintf(path, sizeof(path), "%s%s", FIXTURES, e->file);
    char *s = slurp(path, &len);
    if (!ok(s != NULL, "%s: read", e->file))
        return;

    col_t whole = {0}, c = {0}, ref = {0};
    int rc = decode(s, len, BIG, WHOLE, 0, &whole);
    is_int(rc, 0, "%s: whole: return", e->file);
    is_int(whole.n, e->events, "%s: event count", e->file);
    naive(s, len, &ref);
    ok(same(&whole, &ref), "%s: events match the naive line reading byte for byte", e->file);
    col_free(&ref);

    rc = decode(s, len, BIG, 1, 0, &c);
    ok(rc == 0 && same(&whole, &c), "%s: 1 byte per feed gives the same events", e->file);
    col_free(&c);
    int bad = 0;
    for (uint32_t seed = 1; seed <= 6; ++seed) {
        rc = decode(s, len, BIG, 0, seed * 0x9E3779B9u, &c);
        bad += rc != 0 || !same(&whole, &c);
        col_free(&c);
    }
    ok(bad == 0, "%s: random pieces (6 seeds) give the same events", e->file);

    static const char *const eols[] = {"\r\n", "\r"};
    for (size_t i = 0; i < 2; ++i) {
        size_t n;
        char *t = relined(s, len, eols[i], &n);
        rc = decode(t, n, BIG, 0, 7 + (uint32_t)i, &c);
        ok(rc == 0 && same(&whole, &c), "%s: same events with %s line ends", e->file, i ? "CR" : "CRLF");
        col_free(&c);
        free(t);
    }
    char *b = malloc(len + 3);
    if (b == NULL)
        abort();
    memcpy(b, "\xEF\xBB\xBF", 3);
    memcpy(b + 3, s, len);
    rc = decode(b, len + 3, BIG, 0, 3, &c);
    ok(rc == 0 && same(&whole, &c), "%s: same events after a BOM", e->file);
    col_free(&c);
    free(b);

    /* The ceiling the relay uses in production is far above any recorded event. */
    rc = decode(s, len, 64 * 1024, 0, 5, &c);
    ok(rc == 0 && same(&whole, &c), "%s: fits a 64 KiB ceiling", e->file);
    col_free(&c);

    if (whole.n != 0) {
        is_str(whole.ev[0].name, e->first, "%s: first event name", e->file);
        is_str(whole.ev[whole.n - 1].name, e->last, "%s: last event name", e->file);
        if (e->last_data != NULL)
            is_str(whole.ev[whole.n - 1].data, e->last_data, "%s: last data", e->file);
        is_int(named(&whole, e->name), e->count, "%s: %s events", e->file, e->name);
    }
    col_free(&whole);
    free(s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_fixtures(void)
{
    /* Every recording in the folder is covered, and every covered one exists. */
    char *names[64];
    size_t n = 0;
    DIR *dir = opendir(FIXTURES);
    struct dirent *de;
    while (dir != NULL && (de = readdir(dir)) != NULL && n < 64) {
        size_t k = strlen(de->d_name);
        if (k > 4 && strcmp(de->d_name + k - 4, ".sse") == 0)
            names[n++] = dup(de->d_name, k);
    }
    if (dir != NULL)
        closedir(dir);
    qsort(names, n, sizeof(*names), cmp_str);
    size_t want = sizeof(expects) / sizeof(expects[0]);
    is_int(n, want, "fixture folder holds the %zu known recordings", want);
    for (size_t i = 0; i < n; ++i) {
        const expect_t *e = NULL;
        for (size_t j = 0; j < want; ++j)
            if (strcmp(expects[j].file, names[i]) == 0)
                e = &expects[j];
        if (ok(e != NULL, "%s has expectations", names[i]))
            test_fixture(e);
        free(names[i]);
    }

    /* Details a relay depends on. */
    size_t len;
    col_t c = {0};
    char *s = slurp(FIXTURES "openrouter_chat_sse_comments_stream.sse", &len);
    if (s != NULL) {
        ok(strncmp(s, ": OPENROUTER PROCESSING\n\n", 25) == 0, "openrouter: recording starts with a comment");
        decode(s, len, BIG, 1, 0, &c);
        ok(c.n > 0 && strncmp(c.ev[0].data, "{\"id\":\"gen-", 11) == 0, "openrouter: comments produce no event");
        col_free(&c);
        free(s);
    }
    s = slurp(FIXTURES "groq_chat_midstream_error_stream.sse", &len);
    if (s != NULL) {
        decode(s, len, BIG, 0, 11, &c);
        ok(c.n > 0 && strncmp(c.ev[c.n - 1].data, "{\"error\":{\"message\":", 20) == 0, "groq: error event carries the error");
        int done = 0;
        for (size_t i = 0; i < c.n; ++i)
            done |= strcmp(c.ev[i].data, "[DONE]") == 0;
        ok(!done, "groq: no [DONE] after the error");
        col_free(&c);
        free(s);
    }
    s = slurp(FIXTURES "anthropic_messages_text_tooluse_stream.sse", &len);
    if (s != NULL) {
        decode(s, len, BIG, 0, 13, &c);
        is_int(named(&c, "ping"), 1, "anthropic: one ping event");
        const rec_t *last = c.n ? &c.ev[c.n - 1] : NULL;
        ok(last != NULL && strncmp(last->data, "{\"type\":\"message_stop\"", 22) == 0 && last->data_len > 2 &&
               last->data[last->data_len - 2] == ' ' && last->data[last->data_len - 1] == '}',
           "anthropic: trailing padding inside the data kept");
        col_free(&c);
        free(s);
    }
}

int main(void)
{
    test_framing();
    test_bom();
    test_bytes();
    test_finish();
    test_ceiling();
    test_stop();
    test_fixtures();
    return done_testing();
}
