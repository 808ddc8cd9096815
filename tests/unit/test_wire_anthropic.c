/* Unit tests for src/wire_anthropic.c: the Messages body built from a Chat Completions request, and the stream read back. */
#include <stdlib.h>

#include "tap.h"
#include "wire.h"

#define FIXTURES SB_SOURCE_ROOT "/tests/fixtures/upstream-streams/"

static sb_config_t config = {.anthropic_max_tokens = 1024};
static const sb_wire_target_t target = {"https://api.anthropic.com/v1", "claude-test", &config};

/* The body for `request` (with `offered` as switchboard's tools), or NULL with the wire's message in err. */
static char *body_of(const char *request, const char *offered, char *err, size_t errlen)
{
    sb_chat_request_t r;
    sb_request_error_t e;
    if (sb_chat_request_parse_body(request, strlen(request), "m", NULL, &r, &e) != 0) {
        printf("Bail out! %s: %s\n", request, e.message);
        exit(1);
    }
    r.offered_tools = offered;
    err[0] = '\0';
    char *body = sb_wire_anthropic.body(&target, &r, err, errlen);
    sb_chat_request_dispose(&r);
    return body;
}

/* Compares the body for `request` with `want` as JSON (key order aside). */
static void body_is(const char *request, const char *offered, const char *want, const char *what)
{
    char err[256];
    char *body = body_of(request, offered, err, sizeof(err));
    json_t *got = body != NULL ? json_loads(body, 0, NULL) : NULL;
    json_error_t jerr;
    json_t *expected = json_loads(want, 0, &jerr);
    if (expected == NULL)
        printf("# the expectation is not JSON: %s\n", jerr.text);
    if (!ok(got != NULL && expected != NULL && json_equal(got, expected), "%s", what)) {
        printf("#   got:  %s\n", body != NULL ? body : err);
        printf("#   want: %s\n", want);
    }
    json_decref(got);
    json_decref(expected);
    free(body);
}

static void refuses(const char *request, const char *message_start, const char *what)
{
    char err[256];
    char *body = body_of(request, NULL, err, sizeof(err));
    if (!ok(body == NULL && strncmp(err, message_start, strlen(message_start)) == 0, "refuses %s", what))
        printf("#   got: %s / '%s'\n", body ? body : "(null)", err);
    free(body);
}

static void test_body(void)
{
    body_is(
        "{\"messages\":[{\"role\":\"system\",\"content\":\"You are the desk.\"},{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.3,\"stop\":\"END\",\"user\":\"u-7\",\"seed\":4}",
        NULL,
        "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,\"temperature\":0.3,\"stop_sequences\":[\"END\"],"
        "\"metadata\":{\"user_id\":\"u-7\"},"
        "\"system\":[{\"type\":\"text\",\"text\":\"You are the desk.\",\"cache_control\":{\"type\":\"ephemeral\"}},"
        "{\"type\":\"text\",\"text\":\"Be brief.\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
        "system messages split out, the first and last cache breakpoints; default max_tokens; stop as stop_sequences");

    body_is(
        "{\"messages\":[{\"role\":\"developer\",\"content\":\"dev\"},{\"role\":\"system\",\"content\":[\"one\",\"two\"]},{\"role\":"
        "\"user\",\"content\":\"a\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"b\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBO\"}}]},{\"role\":\"assistant\",\"content\":\"\"},{\"role\":\"assistant\",\"content\":\"ok\"}],"
        "\"max_tokens\":50,\"max_completion_tokens\":70,\"temperature\":1.7,\"top_p\":0.9,\"stop\":[\"x\",\"y\"]}",
        NULL,
        "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":70,\"temperature\":1.0,\"top_p\":0.9,"
        "\"stop_sequences\":[\"x\",\"y\"],"
        "\"system\":[{\"type\":\"text\",\"text\":\"dev\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":"
        "\"one\\ntwo\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBO\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}]}",
        "developer as system, same-role messages merged, parts flattened, an image as a base64 block, empty text dropped, "
        "max_completion_tokens first, temperature held to 1");

    /* a round of switchboard's tools as the turn writes it: the assistant's calls, then one tool message per call */
    body_is("{\"messages\":[{\"role\":\"system\",\"content\":\"desk\"},{\"role\":\"user\",\"content\":\"where is my order?\"},"
            "{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":["
            "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"arguments\":\"{\\\"n\\\":42}\"}},"
            "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"lookup_customer\",\"arguments\":\"{oops\"}}]},"
            "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"{\\\"status\\\":\\\"shipped\\\"}\"},"
            "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":\"\"},"
            "{\"role\":\"user\",\"content\":\"and?\"}]}",
            NULL,
            "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,"
            "\"system\":[{\"type\":\"text\",\"text\":\"desk\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
            "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"where is my order?\"}]},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Let me look.\"},"
            "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"lookup_order\",\"input\":{\"n\":42}},"
            "{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"lookup_customer\",\"input\":{}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":[{\"type\":\"text\","
            "\"text\":\"{\\\"status\\\":\\\"shipped\\\"}\"}]},{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\"},"
            "{\"type\":\"text\",\"text\":\"and?\"}]}]}",
            "tool calls as tool_use blocks (bad arguments as {}), the results as one user message of tool_result blocks");

    body_is("{\"messages\":[{\"role\":\"user\",\"content\":\"first\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
            "{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]},"
            "{\"role\":\"user\",\"content\":\"interjected\"},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}]}",
            NULL,
            "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,"
            "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"first\"}]},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"c\",\"name\":\"f\",\"input\":{}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"c\",\"content\":[{\"type\":\"text\","
            "\"text\":\"r\"}]},{\"type\":\"text\",\"text\":\"interjected\"}]}]}",
            "a tool result merged into a user message goes before its words, as Anthropic requires");

    body_is(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":["
        "{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":\"does a\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"x\":{\"type\":\"string\"}},\"required\":[\"x\"]},\"strict\":true}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}],\"tool_choice\":\"required\",\"parallel_tool_calls\":false}",
        NULL,
        "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
        "\"tools\":[{\"name\":\"a\",\"description\":\"does a\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"x\":"
        "{\"type\":\"string\"}},\"required\":[\"x\"]}},{\"name\":\"b\",\"input_schema\":{\"type\":\"object\",\"properties\":{}},"
        "\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true}}",
        "function tools as input_schema tools, the last a cache breakpoint; required as any; parallel_tool_calls false");

    const char *offered = "[{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"description\":\"Finds an order\","
                          "\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}}}]";
    const char *with_offered =
        "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"lookup_order\"},"
        "\"tools\":[{\"name\":\"lookup_order\",\"description\":\"Finds an order\",\"input_schema\":{\"type\":\"object\","
        "\"properties\":{\"n\":{\"type\":\"integer\"}}},\"cache_control\":{\"type\":\"ephemeral\"}}]}";
    const char *choose = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tool_choice\":{\"type\":\"function\","
                         "\"function\":{\"name\":\"lookup_order\"}}}";
    body_is(choose, offered, with_offered, "switchboard's own tools converted and added as tools; a named tool_choice");
    body_is(choose, offered, with_offered, "... the same from the converted copy kept for the next rounds");
    body_is("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tool_choice\":\"none\"}", NULL,
            "{\"model\":\"claude-test\",\"stream\":true,\"max_tokens\":1024,"
            "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
            "no tool_choice without tools: Anthropic refuses one");

    refuses("{\"messages\":[{\"role\":\"system\",\"content\":\"only a prompt\"}]}", "Anthropic needs at least one",
            "a request of system messages alone");
    refuses("{\"messages\":[{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}", "messages[0]: messages of role function",
            "the legacy function role");
    refuses("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]}",
            "messages[0].content[0] (input_audio)", "an audio part");
    refuses("{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":1}]}]}",
            "messages[0].tool_calls[0] needs", "a malformed tool call");
    refuses("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"custom\",\"custom\":{}}]}", "tools[0]",
            "a tool that is not a function");
}

/* --- the stream ------------------------------------------------------------------------------- */

typedef struct {
    long long state[256]; /* the wire's state, aligned for any of its fields */
    char *scratch;
    size_t scratch_cap;
    char text[512], model[64], finish[32], error[256];
    char id[4][64], name[4][64], args[4][128];
    size_t ntools;
    long long prompt, completion, total;
    int usages, ends, errors, skips, after_end;
    sb_error_t kind;
} run_t;

static void add(char *dst, size_t cap, sb_str_t s)
{
    size_t have = strlen(dst);
    if (s.base != NULL && have + s.len < cap) {
        memcpy(dst + have, s.base, s.len);
        dst[have + s.len] = '\0';
    }
}

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    run_t *r = ctx;
    if (ev->data_len > r->scratch_cap) {
        r->scratch = realloc(r->scratch, ev->data_len);
        r->scratch_cap = ev->data_len;
    }
    sb_delta_t d;
    sb_error_t kind = SB_OK;
    sb_wire_result_t rc = sb_wire_anthropic.event(r->state, ev, r->scratch, &d, &kind);
    r->after_end += r->ends > 0;
    switch (rc) {
    case SB_WIRE_SKIP:
        ++r->skips;
        return 0;
    case SB_WIRE_END:
        ++r->ends;
        return 0;
    case SB_WIRE_ERROR:
        ++r->errors;
        r->kind = kind;
        add(r->error, sizeof(r->error), d.error_message);
        return 0;
    case SB_WIRE_DELTA:
        break;
    }
    add(r->text, sizeof(r->text), d.content);
    if (d.model.base != NULL)
        add(r->model, sizeof(r->model), d.model);
    if (d.finish_reason.base != NULL)
        add(r->finish, sizeof(r->finish), d.finish_reason);
    if (d.has_usage) {
        ++r->usages;
        r->prompt += d.prompt_tokens;
        r->completion += d.completion_tokens;
        r->total += d.total_tokens;
    }
    for (size_t i = 0; i < d.ntools; ++i) {
        const sb_tool_delta_t *t = &d.tools[i];
        if (t->index < 0 || t->index >= 4)
            continue;
        if ((size_t)t->index + 1 > r->ntools)
            r->ntools = (size_t)t->index + 1;
        add(r->id[t->index], sizeof(r->id[0]), t->id);
        add(r->name[t->index], sizeof(r->name[0]), t->name);
        add(r->args[t->index], sizeof(r->args[0]), t->arguments);
    }
    return 0;
}

/* Feeds `len` bytes in pieces of `piece` bytes, or in two at `split` when piece is 0. */
static void feed(run_t *r, const char *bytes, size_t len, size_t piece, size_t split)
{
    memset(r, 0, sizeof(*r));
    ok(sb_wire_anthropic.state_size <= sizeof(r->state), "the state fits the test's room") || (exit(1), 0);
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 16);
    if (piece == 0) {
        sb_sse_decoder_feed(&dec, bytes, split, on_event, r);
        sb_sse_decoder_feed(&dec, bytes + split, len - split, on_event, r);
    } else {
        for (size_t at = 0; at < len; at += piece)
            sb_sse_decoder_feed(&dec, bytes + at, len - at < piece ? len - at : piece, on_event, r);
    }
    sb_sse_decoder_finish(&dec, on_event, r);
    sb_sse_decoder_dispose(&dec);
    free(r->scratch);
    r->scratch = NULL;
}

static int fixture_right(const run_t *r)
{
    return strcmp(r->text, "I'll help you generate two names for a pet pelican using the pelican name generator tool.") == 0 &&
           strcmp(r->model, "claude-3-5-haiku-latest") == 0 && r->ntools == 2 &&
           strcmp(r->id[0], "toolu_017ngBid8gmdReTeroVSZf7r") == 0 && strcmp(r->id[1], "toolu_01FJrHJrmnfEqR6NxkQ3yhpu") == 0 &&
           strcmp(r->name[0], "pelican_name_generator") == 0 && strcmp(r->name[1], "pelican_name_generator") == 0 &&
           r->args[0][0] == '\0' && r->args[1][0] == '\0' && strcmp(r->finish, "tool_calls") == 0 && r->usages == 1 &&
           r->prompt == 310 && r->completion == 82 && r->total == 392 && r->ends == 1 && r->errors == 0 && r->after_end == 0;
}

static void test_fixture(void)
{
    static char buf[1 << 16];
    FILE *fp = fopen(FIXTURES "anthropic_messages_text_tooluse_stream.sse", "rb");
    if (!ok(fp != NULL, "the recorded Anthropic stream is there"))
        return;
    size_t len = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    static run_t r;
    feed(&r, buf, len, len, 0);
    ok(fixture_right(&r), "the recording at once: its text, two tool calls, tool_calls, usage 310+82, one end");
    if (!fixture_right(&r))
        printf("#   text '%s' model '%s' tools %zu '%s' '%s' '%s' '%s' args '%s' '%s' finish '%s' usage %d %lld/%lld/%lld ends %d "
               "errors %d '%s'\n",
               r.text, r.model, r.ntools, r.id[0], r.name[0], r.id[1], r.name[1], r.args[0], r.args[1], r.finish, r.usages,
               r.prompt, r.completion, r.total, r.ends, r.errors, r.error);
    is_int(r.skips, 7, "pings and block stops and the text block's start say nothing, nor do the empty input fragments");
    feed(&r, buf, len, 1, 0);
    ok(fixture_right(&r), "the recording a byte at a time: the same");
    size_t wrong = 0;
    for (size_t split = 0; split <= len; ++split) {
        feed(&r, buf, len, 0, split);
        wrong += !fixture_right(&r);
    }
    is_int(wrong, 0, "the recording cut in two at each of its %zu bytes: the same every time", len);
}

/* One event through the wire: its result, with the delta and the error kind. */
static sb_wire_result_t one(void *state, const char *name, const char *data, sb_delta_t *d, sb_error_t *kind)
{
    static char scratch[4096];
    sb_sse_event_t ev = {name, strlen(name), data, strlen(data)};
    *kind = SB_OK;
    return sb_wire_anthropic.event(state, &ev, scratch, d, kind);
}

static int str_is(sb_str_t s, const char *want)
{
    return s.base != NULL && s.len == strlen(want) && memcmp(s.base, want, s.len) == 0;
}

static void test_events(void)
{
    static long long state[512];
    sb_delta_t d;
    sb_error_t kind;
    static const struct {
        const char *type;
        sb_error_t kind;
    } errors[] = {
        {"overloaded_error", SB_E_UPSTREAM_ERROR},         {"api_error", SB_E_UPSTREAM_ERROR},
        {"rate_limit_error", SB_E_UPSTREAM_RATE_LIMITED},  {"authentication_error", SB_E_UPSTREAM_AUTH},
        {"invalid_request_error", SB_E_UPSTREAM_REJECTED}, {"something_new_error", SB_E_UPSTREAM_ERROR},
    };
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); ++i) {
        char data[256];
        snprintf(data, sizeof(data), "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"Over\\u006coaded\"}  }",
                 errors[i].type);
        memset(state, 0, sizeof(state));
        sb_wire_result_t rc = one(state, "error", data, &d, &kind);
        ok(rc == SB_WIRE_ERROR && kind == errors[i].kind && str_is(d.error_message, "Overloaded"), "an %s event: %s",
           errors[i].type, sb_error_name(errors[i].kind));
    }

    memset(state, 0, sizeof(state));
    ok(one(state, "message_start",
           "{\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":10,"
           "\"cache_creation_input_tokens\":1000,\"cache_read_input_tokens\":20,\"output_tokens\":1}}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.model, "m") && !d.has_usage,
       "message_start tells the model; usage waits for message_delta");
    one(state, "message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":5}}", &d,
        &kind);
    ok(d.has_usage && d.prompt_tokens == 1030 && d.completion_tokens == 5 && d.total_tokens == 1035 && d.finish_reason.base == NULL,
       "the cached tokens count in the prompt, as OpenAI's prompt_tokens does");
    one(state, "message_delta",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"input_tokens\":12,\"output_tokens\":9}"
        "}",
        &d, &kind);
    ok(d.has_usage && d.prompt_tokens == 2 && d.completion_tokens == 4 && str_is(d.finish_reason, "length"),
       "a second message_delta tells only what its cumulative counts add; max_tokens is length");
    static const char *const stops[][2] = {{"end_turn", "stop"},
                                           {"stop_sequence", "stop"},
                                           {"tool_use", "tool_calls"},
                                           {"refusal", "content_filter"},
                                           {"anything_else", "stop"}};
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); ++i) {
        char data[128];
        snprintf(data, sizeof(data), "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\"}}", stops[i][0]);
        ok(one(state, "message_delta", data, &d, &kind) == SB_WIRE_DELTA && str_is(d.finish_reason, stops[i][1]) && !d.has_usage,
           "stop_reason %s is %s", stops[i][0], stops[i][1]);
    }

    memset(state, 0, sizeof(state));
    one(state, "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}", &d, &kind);
    ok(one(state, "content_block_start",
           "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\","
           "\"input\":{\"a\":[1,\"\\u00e9\"]}}}",
           &d, &kind) == SB_WIRE_DELTA &&
           d.ntools == 1 && d.tools[0].index == 0 && str_is(d.tools[0].arguments, "{\"a\":[1,\"\xc3\xa9\"]}"),
       "a tool_use block that arrives with its whole input gives it as the arguments");
    ok(one(state, "content_block_delta",
           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}", &d,
           &kind) == SB_WIRE_SKIP,
       "input for a block that is no tool_use of the caller's is skipped");
    ok(one(state, "content_block_delta",
           "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           d.ntools == 1 && d.tools[0].index == 0 && str_is(d.tools[0].arguments, "{\"") && d.tools[0].id.base == NULL,
       "input_json_delta is a fragment of its block's call");
    ok(one(state, "content_block_delta",
           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}", &d,
           &kind) == SB_WIRE_SKIP,
       "thinking is not said");
    ok(one(state, "ping", "{\"type\": \"ping\"}", &d, &kind) == SB_WIRE_SKIP &&
           one(state, "whatever", "{\"type\":\"whatever_comes_next\"}", &d, &kind) == SB_WIRE_SKIP,
       "ping and unknown events are skipped");
    ok(one(state, "message_stop", "{\"type\":\"message_stop\"   }", &d, &kind) == SB_WIRE_END, "message_stop ends the stream");

    static const char *const bad[] = {
        "not json",
        "[1]",
        "{\"type\":\"message_start\",\"message\":{\"model\":5}}",
        "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-1}}}",
        "{\"type\":\"content_block_start\",\"index\":\"0\",\"content_block\":{\"type\":\"text\"}}",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":7,\"name\":\"f\"}}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":null}}",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":3}}",
        "{\"type\":7}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\u0000\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        ok(one(state, "x", bad[i], &d, &kind) == SB_WIRE_ERROR && kind == SB_E_UPSTREAM_BAD_RESPONSE && d.problem != NULL &&
               d.error_message.base == NULL,
           "malformed: %s", bad[i]);
    ok(one(state, "error", "{\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}", &d, &kind) == SB_WIRE_ERROR,
       "data without a type is read by its event name");
}

/*
 * What a one-pass reader could get wrong where a tree could not: members in
 * any order (the type last), duplicate keys (the last counts, and replaces a
 * whole object), escapes decoded into scratch, unknown members that look like
 * known ones, and data cut short.
 */
static void test_reading(void)
{
    static long long state[512];
    sb_delta_t d;
    sb_error_t kind;
    memset(state, 0, sizeof(state));

    ok(one(state, "x", "{\"index\":0,\"delta\":{\"text\":\"hi\",\"type\":\"text_delta\"},\"type\":\"content_block_delta\"}", &d,
           &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "hi"),
       "the type last, in the root and in the delta");
    ok(one(state, "x",
           "{\"message\":{\"usage\":{\"output_tokens\":1,\"input_tokens\":7},\"model\":\"m2\",\"id\":\"x\"},\"type\":\"message_"
           "start\"}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.model, "m2"),
       "message_start with its type after the message");
    ok(one(state, "x", "{\"usage\":{\"output_tokens\":3},\"delta\":{\"stop_reason\":\"end_turn\"},\"type\":\"message_delta\"}", &d,
           &kind) == SB_WIRE_DELTA &&
           str_is(d.finish_reason, "stop") && d.has_usage && d.prompt_tokens == 7 && d.completion_tokens == 3,
       "message_delta with its type after the usage the message_start before it counted");
    ok(one(state, "x",
           "{\"content_block\":{\"input\":{},\"name\":\"f\",\"id\":\"t9\",\"type\":\"tool_use\"},\"index\":3,\"type\":"
           "\"content_block_start\"}",
           &d, &kind) == SB_WIRE_DELTA &&
           d.ntools == 1 && d.tools[0].index == 0 && str_is(d.tools[0].id, "t9") && str_is(d.tools[0].name, "f") &&
           str_is(d.tools[0].arguments, ""),
       "content_block_start with the block's type and the event's last");
    ok(one(state, "x",
           "{\"delta\":{\"partial_json\":\"{}\",\"type\":\"input_json_delta\"},\"type\":\"content_block_delta\",\"index\":3}", &d,
           &kind) == SB_WIRE_DELTA &&
           d.ntools == 1 && d.tools[0].index == 0 && str_is(d.tools[0].arguments, "{}"),
       "... and its input, the index last");

    ok(one(state, "x",
           "{\"type\":\"message_stop\",\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
           "\"text\":\"a\",\"text\":\"b\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "b"),
       "duplicate keys: the last type and the last text count");
    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"index\":\"0\",\"index\":0,\"delta\":5,\"delta\":{\"type\":\"text_delta\",\"text\":"
           "\"ok\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "ok"),
       "a field of the wrong type replaced by a later good one is no fault");
    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"index\":0,\"index\":0.5,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}", &d,
           &kind) == SB_WIRE_ERROR &&
           kind == SB_E_UPSTREAM_BAD_RESPONSE,
       "a good field replaced by a later wrong one is");
    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"},\"delta\":{\"type\":"
           "\"text_delta\"}}",
           &d, &kind) == SB_WIRE_ERROR,
       "a later duplicate object replaces the whole of the first: its text is not carried over");
    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"},\"delta\":null}", &d,
           &kind) == SB_WIRE_ERROR,
       "... nor is it when the later one is null");

    ok(one(state, "x",
           "{\"type\":\"content\\u005fblock_delta\",\"index\":0,\"delta\":{\"ty\\u0070e\":\"text_delta\",\"te\\u0078t\":"
           "\"a\\n\\\"b\\u00e9\\ud83d\\ude00\\/\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "a\n\"b\xc3\xa9\xf0\x9f\x98\x80/"),
       "escapes in the type, in keys and in the text are decoded");
    ok(one(state, "x",
           "{\"type\":\"content_block_start\",\"index\":9,\"content_block\":{\"type\":\"tool\\u005fuse\",\"id\":\"t\\u0031\","
           "\"name\":\"lookup\\u005forder\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.tools[0].id, "t1") && str_is(d.tools[0].name, "lookup_order"),
       "two decoded strings of one event are both kept");
    ok(one(state, "x",
           "{\"type\":\"content_block_start\",\"index\":10,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\\u0032\","
           "\"name\":\"g\",\"input\":{\"a\":1,\"b\":[0.5,\"\\u00e9\"],\"a\":2}}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.tools[0].id, "t2") && str_is(d.tools[0].name, "g") &&
           str_is(d.tools[0].arguments, "{\"a\":2,\"b\":[0.5,\"\xc3\xa9\"]}"),
       "a whole input with a duplicate key, written as jansson writes it");
    ok(one(state, "error", "{\"error\":{\"message\":\"sl\\u006fw down\",\"type\":\"rate\\u005flimit_error\"},\"type\":\"error\"}",
           &d, &kind) == SB_WIRE_ERROR &&
           kind == SB_E_UPSTREAM_RATE_LIMITED && str_is(d.error_message, "slow down"),
       "an error's escaped type and message, the type last");

    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"extra\":{\"a\":[{\"b\":{\"text\":\"no\"}}],\"type\":\"x\"},\"index\":0,"
           "\"delta\":{\"meta\":{\"text\":\"no\",\"type\":\"y\"},\"type\":\"text_delta\",\"more\":[[[]],{}],\"text\":\"yes\"}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "yes"),
       "unknown members, however nested and whatever keys they hold, are passed over");
    ok(one(state, "x",
           "{\"type\":\"content_block_delta\",\"message\":5,\"usage\":\"x\",\"content_block\":[],\"error\":1,\"index\":0,"
           "\"delta\":{\"type\":\"text_delta\",\"text\":\"t\",\"stop_reason\":4}}",
           &d, &kind) == SB_WIRE_DELTA &&
           str_is(d.content, "t"),
       "fields of the wrong type that the event's type does not read are no fault");
    ok(one(state, "x", "{\"type\":\"ping\",\"index\":\"x\",\"delta\":7}", &d, &kind) == SB_WIRE_SKIP,
       "nor are they in an event that says nothing");

    const char *whole = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\\u00e9\"}}";
    size_t cut_wrong = 0;
    for (size_t n = 0; n < strlen(whole); ++n) {
        char part[128];
        memcpy(part, whole, n);
        part[n] = '\0';
        cut_wrong += one(state, "x", part, &d, &kind) != SB_WIRE_ERROR || kind != SB_E_UPSTREAM_BAD_RESPONSE || d.problem == NULL ||
                     strcmp(d.problem, "that is not a json object") != 0;
    }
    is_int(cut_wrong, 0, "the event cut short at each of its bytes is not a json object");
    static const char *const broken[] = {
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}} {}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\",}}",
        "{\"type\":\"content_block_delta\",\"index\":01,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\ud83d\"}}",
        "{\"type\":\"ping\",\"index\":99999999999999999999}",
        "{\"type\":\"ping\",\"x\":[1,}",
        "{'type':'ping'}",
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); ++i)
        ok(one(state, "x", broken[i], &d, &kind) == SB_WIRE_ERROR && d.problem != NULL &&
               strcmp(d.problem, "that is not a json object") == 0,
           "not json: %s", broken[i]);
}

static void test_rest(void)
{
    char *u = sb_wire_anthropic.url(&target);
    is_str(u, "https://api.anthropic.com/v1/messages", "the URL");
    free(u);
    struct curl_slist *h = sb_wire_anthropic.headers(NULL, "sk-ant-test");
    char all[512] = "";
    for (struct curl_slist *l = h; l != NULL; l = l->next) {
        strncat(all, l->data, sizeof(all) - strlen(all) - 2);
        strncat(all, "|", sizeof(all) - strlen(all) - 1);
    }
    is_str(all, "x-api-key: sk-ant-test|anthropic-version: 2023-06-01|content-type: application/json|accept: text/event-stream|",
           "the headers");
    curl_slist_free_all(h);

    char msg[32];
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
    sb_wire_anthropic.error_message(body, strlen(body), msg, sizeof(msg));
    is_str(msg, "Overloaded", "an error body's message");
    sb_wire_anthropic.error_message("<html>bad gateway</html>", 24, msg, sizeof(msg));
    is_str(msg, "<html>bad gateway</html>", "a body that is not JSON is its own message");
    sb_wire_anthropic.error_message("{\"x\":1}", 7, msg, sizeof(msg));
    is_str(msg, "", "JSON without a message: none");
    const char *longer = "{\"error\":{\"message\":\"a message far longer than the room it is given\"}}";
    sb_wire_anthropic.error_message(longer, strlen(longer), msg, sizeof(msg));
    is_int(strlen(msg), sizeof(msg) - 1, "a long message is cut to the room");
}

int main(void)
{
    test_body();
    test_fixture();
    test_events();
    test_reading();
    test_rest();
    return done_testing();
}
