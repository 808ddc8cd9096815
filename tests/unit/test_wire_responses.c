/*
 * The Responses API wire (src/wire_responses.c): the two recorded real
 * streams read through the SSE decoder at 1-byte chunking and at every split
 * into two, giving the same words, call, usage and finish each time; and the
 * body said for a chat request with a tool round in it.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb/buf.h"
#include "tap.h"
#include "wire.h"

struct got {
    sb_buf_t text, call_id, name, args, model;
    char finish[32];
    long long prompt, completion, total;
    int ends, errors, calls;
    _Alignas(max_align_t) unsigned char state[4096]; /* as a call's calloc would give it */
    char scratch[1 << 16];
};

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    struct got *g = ctx;
    sb_delta_t d;
    sb_error_t e;
    switch (sb_wire_responses.event(g->state, ev, g->scratch, &d, &e)) {
    case SB_WIRE_END:
        ++g->ends;
        return 0;
    case SB_WIRE_ERROR:
        ++g->errors;
        return 0;
    case SB_WIRE_SKIP:
        return 0;
    case SB_WIRE_DELTA:
        break;
    }
    if (d.model.base)
        sb_buf_append(&g->model, d.model.base, d.model.len);
    if (d.content.base)
        sb_buf_append(&g->text, d.content.base, d.content.len);
    for (size_t i = 0; i < d.ntools; ++i) {
        if (d.tools[i].index != 0)
            ++g->errors;
        if (d.tools[i].id.base)
            ++g->calls, sb_buf_append(&g->call_id, d.tools[i].id.base, d.tools[i].id.len);
        if (d.tools[i].name.base)
            sb_buf_append(&g->name, d.tools[i].name.base, d.tools[i].name.len);
        if (d.tools[i].arguments.base)
            sb_buf_append(&g->args, d.tools[i].arguments.base, d.tools[i].arguments.len);
    }
    if (d.finish_reason.base)
        snprintf(g->finish, sizeof(g->finish), "%.*s", (int)d.finish_reason.len, d.finish_reason.base);
    if (d.has_usage)
        g->prompt = d.prompt_tokens, g->completion = d.completion_tokens, g->total = d.total_tokens;
    return 0;
}

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/upstream-streams/%s", SB_SOURCE_ROOT, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *b = malloc(1 << 20);
    *len = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static int z(const sb_buf_t *b, const char *want)
{
    return b->len == strlen(want) && memcmp(b->base, want, b->len) == 0;
}

/* Reads `raw` cut at `split` (0: one byte at a time); returns what came out (dispose with got_free). */
static void run(struct got *g, const char *raw, size_t len, size_t split)
{
    memset(g, 0, sizeof(*g));
    sb_buf_t *bufs[] = {&g->text, &g->call_id, &g->name, &g->args, &g->model};
    for (size_t i = 0; i < 5; ++i)
        sb_buf_init(bufs[i], 1 << 16);
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 16);
    if (split == 0) {
        for (size_t i = 0; i < len; ++i)
            sb_sse_decoder_feed(&dec, raw + i, 1, on_event, g);
    } else {
        sb_sse_decoder_feed(&dec, raw, split, on_event, g);
        sb_sse_decoder_feed(&dec, raw + split, len - split, on_event, g);
    }
    sb_sse_decoder_finish(&dec, on_event, g);
    sb_sse_decoder_dispose(&dec);
}

static void got_free(struct got *g)
{
    sb_buf_t *bufs[] = {&g->text, &g->call_id, &g->name, &g->args, &g->model};
    for (size_t i = 0; i < 5; ++i)
        sb_buf_dispose(bufs[i]);
}

static void streams(void)
{
    size_t len;
    char *raw = slurp("openai_responses_text_stream.sse", &len);
    ok(raw != NULL, "the text recording is there");
    int same = 1;
    struct got g;
    for (size_t split = 0; raw != NULL && split < len; ++split) {
        run(&g, raw, len, split);
        same &= z(&g.text, "The capital of France is Paris.") && z(&g.model, "gpt-4o-2024-08-06") &&
                strcmp(g.finish, "stop") == 0 && g.prompt == 278 && g.completion == 9 && g.total == 287 && g.errors == 0 &&
                g.calls == 0;
        if (!same)
            printf("# split %zu: text '%.*s' finish %s usage %lld\n", split, (int)g.text.len, g.text.base, g.finish, g.total);
        got_free(&g);
        if (!same)
            break;
    }
    ok(same, "text stream: the words, the model, finish stop and usage 278/9/287 at 1-byte and every split");
    free(raw);

    raw = slurp("openai_responses_function_call_stream.sse", &len);
    ok(raw != NULL, "the function call recording is there");
    same = 1;
    for (size_t split = 0; raw != NULL && split < len; ++split) {
        run(&g, raw, len, split);
        same &= g.text.len == 0 && g.calls == 1 && z(&g.call_id, "call_kL0PCQV7M2WMoVX8V8OtYSAL") && z(&g.name, "get_capital") &&
                z(&g.args, "{\"country\":\"France\"}") && strcmp(g.finish, "tool_calls") == 0 && g.total == 271 && g.errors == 0;
        got_free(&g);
        if (!same)
            break;
    }
    ok(same, "function call stream: one call, its id, name and arguments, finish tool_calls, usage at 1-byte and every split");
    free(raw);

    const char *failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\","
                         "\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n"
                         "event: error\ndata: {\"type\":\"error\",\"sequence_number\":2,\"error\":{\"type\":\"insufficient_quota\","
                         "\"code\":\"insufficient_quota\",\"message\":\"quota\",\"param\":null}}\n\n"
                         "data: not json\n\n";
    run(&g, failed, strlen(failed), 0);
    is_int(g.errors, 3, "response.failed, a nested error event and bad json are errors");
    got_free(&g);
}

/* One event's data through a fresh state (or `st`, to carry calls over); returns the result, fills *d. */
static sb_wire_result_t read_one(unsigned char *st, const char *name, const char *data, sb_delta_t *d, char *scratch)
{
    sb_error_t e = SB_OK;
    sb_sse_event_t ev = {name, strlen(name), data, strlen(data)};
    return sb_wire_responses.event(st, &ev, scratch, d, &e);
}

static int has(sb_str_t s, const char *want)
{
    return s.base != NULL && s.len == strlen(want) && memcmp(s.base, want, s.len) == 0;
}

/* What a one-pass reader can get wrong: order, repeats, escapes, depth, truncation. */
static void one_pass(void)
{
    static unsigned char st[4096];
    static char scratch[4096];
    sb_delta_t d;
    memset(st, 0, sizeof(st));
    ok(read_one(st, "message", "{\"delta\":\"Par\",\"x\":{\"a\":[1,{\"b\":[[]]}]},\"type\":\"response.output_text.delta\"}", &d,
                scratch) == SB_WIRE_DELTA &&
           has(d.content, "Par"),
       "type after delta, past a deep unknown member: the words");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"delta\":\"a\\nb\\u00e9\\\"\"}", &d, scratch) ==
               SB_WIRE_DELTA &&
           has(d.content, "a\nb\xc3\xa9\""),
       "escapes in the words decoded");
    ok(read_one(st, "response.output_text.delta", "{\"delta\":\"x\"}", &d, scratch) == SB_WIRE_DELTA && has(d.content, "x"),
       "no type member: the SSE event name says it");
    ok(read_one(st, "response.output_text.delta", "{\"type\":null,\"delta\":\"y\"}", &d, scratch) == SB_WIRE_DELTA &&
           has(d.content, "y"),
       "a type that is not a string: the SSE event name says it");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"delta\":7}", &d, scratch) == SB_WIRE_SKIP,
       "words that are not a string are skipped");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"delta\":\"a\",\"delta\":\"b\"}", &d, scratch) ==
           SB_WIRE_ERROR,
       "a repeated key is refused, as jansson's JSON_REJECT_DUPLICATES did");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"d\\u0065lta\":\"a\",\"delta\":\"b\"}", &d, scratch) ==
           SB_WIRE_ERROR,
       "a repeated key written with an escape is refused");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"x\":1,\"delta\":\"a\",\"x\":{}}", &d, scratch) ==
               SB_WIRE_DELTA &&
           has(d.content, "a"),
       "a repeated key the reader does not act on is let through (jscan.h's rule)");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"delta\":\"a\"", &d, scratch) == SB_WIRE_ERROR &&
           d.problem != NULL,
       "truncated JSON is an error");
    ok(read_one(st, "message", "{\"type\":\"response.output_text.delta\",\"delta\":\"a\"} x", &d, scratch) == SB_WIRE_ERROR,
       "trailing bytes are an error");

    /* a call whose members come in another order, then its arguments by output index, then the end */
    memset(st, 0, sizeof(st));
    ok(read_one(st, "message",
                "{\"item\":{\"arguments\":\"\",\"name\":\"f\\u0031\",\"call_id\":\"c1\",\"type\":\"function_call\"},"
                "\"output_index\":3,\"type\":\"response.output_item.added\"}",
                &d, scratch) == SB_WIRE_DELTA &&
           d.ntools == 1 && has(d.tools[0].name, "f1") && has(d.tools[0].id, "c1") && d.tools[0].arguments.base == NULL,
       "a call added, members in another order: its id and name");
    ok(read_one(st, "message",
                "{\"item\":{\"type\":\"function_call\",\"name\":\"g\",\"call_id\":\"c2\",\"arguments\":\"{}\"},"
                "\"type\":\"response.output_item.added\",\"output_index\":5}",
                &d, scratch) == SB_WIRE_DELTA &&
           d.tools[0].index == 1 && has(d.tools[0].arguments, "{}"),
       "a second call, with its arguments whole");
    ok(read_one(st, "message",
                "{\"delta\":\"{\\\"a\\\":1}\",\"output_index\":3,\"type\":\"response.function_call_arguments.delta\"}", &d,
                scratch) == SB_WIRE_DELTA &&
           d.tools[0].index == 0 && has(d.tools[0].arguments, "{\"a\":1}"),
       "arguments for the call its output index names, type last");
    ok(read_one(st, "message",
                "{\"response\":{\"status\":\"incomplete\",\"output\":[{\"deep\":[[[{}]]]}],\"usage\":{\"total_tokens\":9,"
                "\"input_tokens\":4,\"output_tokens\":5},\"incomplete_details\":{\"reason\":\"content_filter\"}},"
                "\"type\":\"response.incomplete\"}",
                &d, scratch) == SB_WIRE_DELTA &&
           has(d.finish_reason, "content_filter") && d.has_usage && d.prompt_tokens == 4 && d.completion_tokens == 5 &&
           d.total_tokens == 9,
       "response.incomplete, type last: usage and content_filter");
    ok(read_one(st, "message", "{}", &d, scratch) == SB_WIRE_END, "after the end, the end");
    memset(st, 0, sizeof(st));
    ok(read_one(st, "message", "{\"response\":{\"usage\":5},\"type\":\"response.completed\"}", &d, scratch) == SB_WIRE_DELTA &&
           !d.has_usage && has(d.finish_reason, "stop"),
       "usage that is not an object is left out");
    memset(st, 0, sizeof(st));
    ok(read_one(st, "message", "{\"response\":{\"error\":{\"error\":{\"message\":\"deep\"}}},\"type\":\"response.failed\"}", &d,
                scratch) == SB_WIRE_ERROR &&
           has(d.error_message, "deep"),
       "response.failed with its message nested one level more");
    ok(read_one(st, "message", "{\"error\":{\"message\":\"q\\/q\"},\"message\":5,\"type\":\"error\"}", &d, scratch) ==
               SB_WIRE_ERROR &&
           has(d.error_message, "q/q"),
       "an error event whose message is in error.message");
}

static void request_body(void)
{
    const char *chat =
        "{\"model\":\"gpt-4.1\",\"temperature\":0.3,\"max_tokens\":50,\"tool_choice\":{\"type\":\"function\",\"function\":{"
        "\"name\":"
        "\"f\"}},\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"f\","
        "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"ok\"}]}";
    sb_chat_request_t req;
    sb_request_error_t err;
    ok(sb_chat_request_parse_body(chat, strlen(chat), "d", NULL, &req, &err) == 0, "the chat request parses");
    sb_wire_target_t target = {"http://x/v1", "gpt-4.1", NULL};
    char *u = sb_wire_responses.url(&target);
    is_str(u, "http://x/v1/responses", "the URL");
    free(u);
    char e[128];
    char *body = sb_wire_responses.body(&target, &req, e, sizeof(e));
    is_str(
        body,
        "{\"model\":\"gpt-4.1\",\"stream\":true,\"store\":false,\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":"
        "\"hi\"},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},{\"type\":\"function_call_output\","
        "\"call_id\":\"c1\",\"output\":\"ok\"}],\"instructions\":\"Be brief.\",\"tools\":[{\"type\":\"function\",\"strict\":false,"
        "\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},"
        "\"temperature\":0.3,\"max_output_tokens\":50}",
        "the body: input items, instructions, flat tools, store false, max_output_tokens");
    free(body);
    sb_chat_request_dispose(&req);
}

int main(void)
{
    streams();
    one_pass();
    request_body();
    return done_testing();
}
