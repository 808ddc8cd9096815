/*
 * Tests for the Gemini wire (src/wire_gemini.c): the request said in
 * Gemini's shape, compared as JSON; the recorded Gemini streams read through
 * the SSE decoder whole, byte by byte and split at every point; the thought
 * signature carried through a minted call id into the next round; refusals
 * and malformed events as clean errors.
 */
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/sse.h"
#include "tap.h"
#include "wire.h"

#define FIXTURES SB_SOURCE_ROOT "/tests/fixtures/upstream-streams/"

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), FIXTURES "%s", name);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, fp);
    p[*len] = '\0';
    fclose(fp);
    return p;
}

/* --- the request ---------------------------------------------------------------------------------- */

/* The body Gemini gets for a Chat Completions request (`offered`: switchboard's tools, or NULL); NULL with err on refusal. */
static json_t *gemini_body(const char *chat, const char *offered, char *err, size_t errlen)
{
    sb_chat_request_t req;
    sb_request_error_t rerr;
    if (sb_chat_request_parse_body(chat, strlen(chat), "gemini-2.5-flash", NULL, &req, &rerr) != 0) {
        snprintf(err, errlen, "request refused: %.200s", rerr.message);
        return NULL;
    }
    req.offered_tools = offered;
    sb_wire_target_t target = {NULL, req.model, NULL};
    char *text = sb_wire_gemini.body(&target, &req, err, errlen);
    sb_chat_request_dispose(&req);
    if (text == NULL)
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

static void is_json(json_t *got, const char *want, const char *what)
{
    json_t *w = json_loads(want, 0, NULL);
    if (w == NULL) {
        ok(0, "%s: the expected JSON does not parse", what);
        return;
    }
    if (!ok(got != NULL && json_equal(got, w), "%s", what)) {
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : NULL, *x = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
        printf("#   got:  %s\n#   want: %s\n", g ? g : "(null)", x);
        free(g);
        free(x);
    }
    json_decref(w);
}

static void test_url_and_headers(void)
{
    sb_wire_target_t t = {NULL, "gemini-2.5-flash", NULL};
    char *u = sb_wire_gemini.url(&t);
    is_str(u, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
           "url: the default base");
    free(u);
    t = (sb_wire_target_t){"http://127.0.0.1:9/v1beta", "models/gemini-2.0-flash", NULL};
    u = sb_wire_gemini.url(&t);
    is_str(u, "http://127.0.0.1:9/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "url: models/ is not doubled");
    free(u);
    t.model = "fake?text=a b&x=ü/:";
    u = sb_wire_gemini.url(&t);
    is_str(u, "http://127.0.0.1:9/v1beta/models/fake%3Ftext%3Da%20b%26x%3D%C3%BC%2F%3A:streamGenerateContent?alt=sse",
           "url: the model name is escaped");
    free(u);

    struct curl_slist *h = sb_wire_gemini.headers(NULL, "k-123");
    is_str(h ? h->data : NULL, "x-goog-api-key: k-123", "headers: the key");
    is_str(h && h->next ? h->next->data : NULL, "content-type: application/json", "headers: the content type");
    curl_slist_free_all(h);
    h = sb_wire_gemini.headers(NULL, "bad\r\nx-evil: 1");
    is_str(h ? h->data : NULL, "content-type: application/json", "headers: a key with a line break is not sent");
    ok(h != NULL && h->next == NULL, "headers: nothing else");
    curl_slist_free_all(h);
}

static void test_body(void)
{
    char err[512] = "";
    json_t *b = gemini_body("{\"model\":\"gemini-2.5-flash\",\"messages\":["
                            "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                            "{\"role\":\"developer\",\"content\":[\"Speak \",\"French.\"]},"
                            "{\"role\":\"user\",\"content\":\"Hi\"},"
                            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"there\"}]},"
                            "{\"role\":\"assistant\",\"content\":\"Bonjour\"},"
                            "{\"role\":\"user\",\"content\":\"ça va ?\"}],"
                            "\"temperature\":0.3,\"top_p\":0.9,\"max_tokens\":50,\"max_completion_tokens\":60,"
                            "\"stop\":\"END\",\"seed\":7,\"user\":\"u1\",\"stream\":true}",
                            NULL, err, sizeof(err));
    is_json(b,
            "{\"systemInstruction\":{\"parts\":[{\"text\":\"Be brief.\"},{\"text\":\"Speak French.\"}]},"
            "\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Hi\"},{\"text\":\"there\"}]},"
            "{\"role\":\"model\",\"parts\":[{\"text\":\"Bonjour\"}]},"
            "{\"role\":\"user\",\"parts\":[{\"text\":\"ça va ?\"}]}],"
            "\"generationConfig\":{\"temperature\":0.3,\"topP\":0.9,\"maxOutputTokens\":60,\"stopSequences\":[\"END\"]}}",
            "body: system messages become systemInstruction, same-role turns merge, parameters renamed, the rest dropped");
    json_decref(b);

    /* a tool round of the client's: names found by id, results as JSON or as text */
    b = gemini_body(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"weather in Tokyo and Paris?\"},"
        "{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":["
        "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Tokyo\\\"}"
        "\"}},"
        "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"noon\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"{\\\"temp\\\":22}\"},"
        "{\"role\":\"user\",\"content\":\"thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather.\","
        "\"strict\":true,\"parameters\":{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\","
        "\"additionalProperties\":false,\"properties\":{\"city\":{\"type\":\"string\",\"format\":\"uri\","
        "\"minLength\":1},\"unit\":{\"type\":[\"string\",\"null\"],\"enum\":[\"c\",\"f\"]},"
        "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},\"n\":{\"type\":\"integer\",\"exclusiveMinimum\":0},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Tag\"},\"uniqueItems\":true},"
        "\"any\":{\"oneOf\":[{\"type\":\"number\"},{\"const\":\"auto\"}]},\"meta\":{\"type\":\"object\"}},"
        "\"required\":[\"city\",\"ghost\"],\"$defs\":{\"Tag\":{\"type\":\"object\",\"properties\":{\"k\":"
        "{\"type\":\"string\"}},\"additionalProperties\":false}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],"
        "\"tool_choice\":\"required\"}",
        NULL, err, sizeof(err));
    is_json(b,
            "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"weather in Tokyo and Paris?\"}]},"
            "{\"role\":\"model\",\"parts\":[{\"text\":\"Let me look.\"},"
            "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Tokyo\"}}},"
            "{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}]},"
            "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"get_time\",\"response\":{\"result\":\"noon\"}}},"
            "{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"result\":{\"temp\":22}}}},{\"text\":\"thanks\"}]}],"
            "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"Weather.\",\"parameters\":"
            "{\"type\":\"OBJECT\",\"properties\":{\"city\":{\"type\":\"STRING\",\"minLength\":1},"
            "\"unit\":{\"type\":\"STRING\",\"nullable\":true,\"enum\":[\"c\",\"f\"]},"
            "\"when\":{\"type\":\"STRING\",\"format\":\"date-time\"},\"n\":{\"type\":\"INTEGER\"},"
            "\"tags\":{\"type\":\"ARRAY\",\"items\":{\"type\":\"OBJECT\",\"properties\":{\"k\":{\"type\":\"STRING\"}}}},"
            "\"any\":{\"anyOf\":[{\"type\":\"NUMBER\"},{\"enum\":[\"auto\"]}]},\"meta\":{\"type\":\"OBJECT\"}},"
            "\"required\":[\"city\"]}},{\"name\":\"get_time\"}]}],"
            "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\"}}}",
            "body: calls and results by name, the schema in Gemini's subset, tool_choice");
    json_decref(b);

    /* switchboard's own tools, and one function forced */
    b = gemini_body("{\"messages\":[{\"role\":\"user\",\"content\":\"order 7?\"}],"
                    "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\"}}}",
                    "[{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"description\":\"An order.\","
                    "\"parameters\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":[\"integer\",\"string\"]}},"
                    "\"required\":[\"id\"],\"additionalProperties\":false}}}]",
                    err, sizeof(err));
    is_json(b,
            "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"order 7?\"}]}],"
            "\"tools\":[{\"functionDeclarations\":[{\"name\":\"lookup_order\",\"description\":\"An order.\",\"parameters\":"
            "{\"type\":\"OBJECT\",\"properties\":{\"id\":{\"anyOf\":[{\"type\":\"INTEGER\"},{\"type\":\"STRING\"}]}},"
            "\"required\":[\"id\"]}}]}],"
            "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"lookup_order\"]}}}",
            "body: switchboard's offered tools, a forced function");
    json_decref(b);

    /* a schema that refers to itself stays finite */
    b = gemini_body("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":"
                    "{\"name\":\"tree\",\"parameters\":{\"type\":\"object\",\"properties\":{\"l\":{\"$ref\":\"#/$defs/N\"},"
                    "\"r\":{\"$ref\":\"#/$defs/N\"}},\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":{\"l\":{\"$ref\":"
                    "\"#/$defs/N\"},\"r\":{\"$ref\":\"#/$defs/N\"}}}}}}}]}",
                    NULL, err, sizeof(err));
    ok(b != NULL && json_is_object(json_object_get(
                        json_array_get(json_object_get(json_array_get(json_object_get(b, "tools"), 0), "functionDeclarations"), 0),
                        "parameters")),
       "body: a self-referring schema is converted, cut off");
    json_decref(b);

    err[0] = '\0';
    b = gemini_body("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"tool_call_id\":\"nope\","
                    "\"content\":\"1\"}]}",
                    NULL, err, sizeof(err));
    ok(b == NULL && strstr(err, "messages[1].tool_call_id") != NULL, "body: a result for no known call is refused (%s)", err);
    b = gemini_body("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
                    "[{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
                    NULL, err, sizeof(err));
    ok(b == NULL && strstr(err, "arguments") != NULL, "body: arguments that are not an object are refused (%s)", err);
    b = gemini_body("{\"messages\":[{\"role\":\"system\",\"content\":\"only this\"}]}", NULL, err, sizeof(err));
    ok(b == NULL && err[0] != '\0', "body: no conversation is refused (%s)", err);
    b = gemini_body("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                    NULL, err, sizeof(err));
    ok(b == NULL && strstr(err, "content[0]") != NULL, "body: an image part is refused, not dropped (%s)", err);
}

/* --- the stream ------------------------------------------------------------------------------------- */

#define MAX_OUT (1 << 20)

typedef struct {
    _Alignas(max_align_t) unsigned char state[256];
    char *scratch;
    size_t scratch_cap;
    char text[MAX_OUT];
    size_t text_len;
    char ids[4][SB_CHUNK_MAX_CALL_ID], names[4][64], args[4][256];
    long index[4];
    size_t ncalls;
    char finish[16], model[64];
    long long prompt, completion, total;
    int has_usage, errors, ended, deltas;
    sb_error_t error;
    char message[256];
} run_t;

static void copy(char *dst, size_t cap, sb_str_t s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (s.base != NULL)
        memcpy(dst, s.base, n);
    dst[s.base != NULL ? n : 0] = '\0';
}

static int on_event(void *ctx, const sb_sse_event_t *ev)
{
    run_t *r = ctx;
    if (ev->data_len > r->scratch_cap) {
        r->scratch = realloc(r->scratch, ev->data_len);
        r->scratch_cap = ev->data_len;
    }
    sb_delta_t d;
    sb_error_t e = SB_OK;
    sb_wire_result_t rc = sb_wire_gemini.event(r->state, ev, r->scratch, &d, &e);
    if (rc == SB_WIRE_ERROR) {
        r->errors++;
        r->error = e;
        copy(r->message, sizeof(r->message), d.error_message);
        return 1;
    }
    if (rc == SB_WIRE_END)
        r->ended = 1;
    if (rc != SB_WIRE_DELTA)
        return 0;
    r->deltas++;
    if (d.content.base != NULL && r->text_len + d.content.len < MAX_OUT) {
        memcpy(r->text + r->text_len, d.content.base, d.content.len);
        r->text_len += d.content.len;
    }
    for (size_t i = 0; i < d.ntools && r->ncalls < 4; ++i, ++r->ncalls) {
        copy(r->ids[r->ncalls], sizeof(r->ids[0]), d.tools[i].id);
        copy(r->names[r->ncalls], sizeof(r->names[0]), d.tools[i].name);
        copy(r->args[r->ncalls], sizeof(r->args[0]), d.tools[i].arguments);
        r->index[r->ncalls] = d.tools[i].index;
    }
    if (d.finish_reason.base != NULL)
        copy(r->finish, sizeof(r->finish), d.finish_reason);
    if (d.model.base != NULL)
        copy(r->model, sizeof(r->model), d.model);
    if (d.has_usage) {
        r->has_usage = 1;
        r->prompt += d.prompt_tokens, r->completion += d.completion_tokens, r->total += d.total_tokens; /* as the turn does */
    }
    return 0;
}

/* Feeds `data` in pieces of `step` bytes (0: whole), or split once at `split` when step is SIZE_MAX. */
static run_t *run(const char *data, size_t len, size_t step, size_t split)
{
    run_t *r = calloc(1, sizeof(*r));
    if (sb_wire_gemini.state_size > sizeof(r->state))
        abort();
    sb_sse_decoder_t dec;
    sb_sse_decoder_init(&dec, 1 << 20);
    int rc = 0;
    if (step == SIZE_MAX) {
        rc = sb_sse_decoder_feed(&dec, data, split, on_event, r);
        if (rc == 0)
            rc = sb_sse_decoder_feed(&dec, data + split, len - split, on_event, r);
    } else {
        size_t n = step ? step : len;
        for (size_t off = 0; off < len && rc == 0; off += n)
            rc = sb_sse_decoder_feed(&dec, data + off, len - off < n ? len - off : n, on_event, r);
    }
    if (rc == 0)
        sb_sse_decoder_finish(&dec, on_event, r);
    sb_sse_decoder_dispose(&dec);
    free(r->scratch);
    r->scratch = NULL;
    return r;
}

/* The text of a stream read independently: every event's candidates[0].content.parts[].text, joined. */
static char *expected_text(const char *data, size_t len)
{
    size_t cap = len + 1, n = 0;
    char *out = calloc(1, cap);
    for (const char *p = data; (p = strstr(p, "data: ")) != NULL && p < data + len;) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        json_t *j = json_loadb(p, end ? (size_t)(end - p) : strlen(p), 0, NULL);
        size_t i;
        json_t *part;
        json_array_foreach(
            json_object_get(json_object_get(json_array_get(json_object_get(j, "candidates"), 0), "content"), "parts"), i, part)
        {
            json_t *t = json_object_get(part, "text");
            if (json_is_string(t) && n + json_string_length(t) < cap) {
                memcpy(out + n, json_string_value(t), json_string_length(t));
                n += json_string_length(t);
            }
        }
        json_decref(j);
        p = end ? end : p;
    }
    return out;
}

/* Whether two runs read the same answer (ids aside: each run mints its own). */
static int same_answer(const run_t *a, const run_t *b)
{
    if (a->text_len != b->text_len || memcmp(a->text, b->text, a->text_len) != 0 || a->ncalls != b->ncalls ||
        strcmp(a->finish, b->finish) != 0 || a->prompt != b->prompt || a->completion != b->completion || a->total != b->total ||
        a->errors != b->errors || strcmp(a->model, b->model) != 0)
        return 0;
    for (size_t i = 0; i < a->ncalls; ++i) {
        const char *sa = strstr(a->ids[i], "_ts_"), *sb = strstr(b->ids[i], "_ts_");
        if (strcmp(a->names[i], b->names[i]) != 0 || strcmp(a->args[i], b->args[i]) != 0 || a->index[i] != b->index[i] ||
            (sa == NULL) != (sb == NULL) || (sa != NULL && strcmp(sa, sb) != 0))
            return 0;
    }
    return 1;
}

static run_t *check_fixture(const char *name, const char *text, const char *finish, long long prompt, long long completion,
                            long long total)
{
    size_t len;
    char *data = slurp(name, &len);
    if (!ok(data != NULL, "%s: present", name))
        return NULL;
    run_t *whole = run(data, len, 0, 0);
    char *want = text != NULL ? strdup(text) : expected_text(data, len);
    ok(whole->errors == 0 && whole->text_len == strlen(want) && memcmp(whole->text, want, whole->text_len) == 0,
       "%s: the text, %zu bytes, intact", name, strlen(want));
    is_str(whole->finish, finish, "%s: finish reason", name);
    ok(whole->has_usage && whole->prompt == prompt && whole->completion == completion && whole->total == total,
       "%s: usage %lld + %lld = %lld (got %lld + %lld = %lld)", name, prompt, completion, total, whole->prompt, whole->completion,
       whole->total);
    is_str(whole->model, "gemini-2.5-flash", "%s: model", name);
    run_t *bytes = run(data, len, 1, 0);
    ok(same_answer(whole, bytes), "%s: the same answer fed 1 byte at a time", name);
    free(bytes);
    int all = 1;
    size_t stride = len < 4096 ? 1 : len / 997; /* every split of the short streams; ~1000 of the long one */
    for (size_t at = 0; at <= len && all; at += stride) {
        run_t *r = run(data, len, SIZE_MAX, at);
        all = same_answer(whole, r);
        if (!all)
            printf("#   differs when split at %zu\n", at);
        free(r);
    }
    ok(all, "%s: the same answer split at every %s", name, stride == 1 ? "byte" : "997th of the stream");
    free(want);
    free(data);
    return whole;
}

static void test_fixtures(void)
{
    free(check_fixture("gemini_stream_single_chunk_stream.sse", "1, 2, 3", "stop", 8, 7 + 23, 38));
    free(check_fixture("gemini_stream_after_function_result_stream.sse",
                       "\xE4\xBB\x8A\xE6\x97\xA5\xE3\x81\xAE\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xAE\xE5\xA4\xA9\xE6\xB0\x97"
                       "\xE3\x81\xAF\xE6\x9B\x87\xE3\x82\x8A\xE3\x81\xA7\xE3\x80\x81\xE6\xB0\x97\xE6\xB8\xA9\xE3\x81\xAF"
                       "22"
                       "\xE5\xBA\xA6\xE3\x81\xA7\xE3\x81\x99\xE3\x80\x82\n",
                       "stop", 138, 15, 153));
    run_t *r = check_fixture("gemini_stream_text_long_stream.sse", NULL, "stop", 4, 5947 + 2042, 7993);
    if (r != NULL) {
        ok(r->completion + r->prompt == r->total && r->total > 2000,
           "long: the running totals add up to the last (%lld + %lld = %lld)", r->prompt, r->completion, r->total);
        ok(strstr(r->text, "<") != NULL && strstr(r->text, "\\u003c") == NULL, "long: \\u003c escapes decoded");
    }
    free(r);

    r = check_fixture("gemini_stream_functioncall_stream.sse", "", "tool_calls", 83, 14 + 104, 201);
    if (r == NULL)
        return;
    ok(r->ncalls == 1 && r->index[0] == 0, "functioncall: one call, index 0");
    is_str(r->names[0], "getWeather", "functioncall: name");
    is_str(r->args[0], "{\"location\":\"Tokyo\"}", "functioncall: arguments, the compact JSON of args");
    ok(strncmp(r->ids[0], "call_0_", 7) == 0 && strstr(r->ids[0], "_ts_") != NULL &&
           strspn(r->ids[0], "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_-") == strlen(r->ids[0]),
       "functioncall: a minted id that carries the signature, in [A-Za-z0-9_-] (%zu bytes)", strlen(r->ids[0]));

    /* the next round: the id brings the signature back on the functionCall part */
    char chat[2 * sizeof(r->ids[0]) + 1024], err[256] = ""; /* two ids of up to 8 KB, and the rest */
    snprintf(chat, sizeof(chat),
             "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
             "[{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":\"getWeather\",\"arguments\":\"%s\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"%s\",\"content\":\"{\\\"temperature\\\":22}\"}]}",
             r->ids[0], "{\\\"location\\\":\\\"Tokyo\\\"}", r->ids[0]);
    json_t *b = gemini_body(chat, NULL, err, sizeof(err));
    size_t len;
    char *data = slurp("gemini_stream_functioncall_stream.sse", &len);
    json_t *ev = json_loads(data + 6, JSON_DISABLE_EOF_CHECK, NULL);
    json_t *sent = json_object_get(
        json_array_get(json_object_get(json_object_get(json_array_get(json_object_get(ev, "candidates"), 0), "content"), "parts"),
                       0),
        "thoughtSignature");
    json_t *part = json_array_get(json_object_get(json_array_get(json_object_get(b, "contents"), 1), "parts"), 0);
    ok(json_is_string(sent) && json_equal(json_object_get(part, "thoughtSignature"), sent),
       "round trip: the thoughtSignature goes back exactly as Gemini sent it (%zu bytes)", json_string_length(sent));
    json_t *resp = json_array_get(json_object_get(json_array_get(json_object_get(b, "contents"), 2), "parts"), 0);
    is_str(json_string_value(json_object_get(json_object_get(resp, "functionResponse"), "name")), "getWeather",
           "round trip: the result answers getWeather");
    json_decref(ev);
    json_decref(b);
    free(data);
    free(r);
}

/* One event through a fresh state. */
static run_t *one(const char *sse)
{
    return run(sse, strlen(sse), 0, 0);
}

static void test_events(void)
{
    run_t *r =
        one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},{\"text\":\"b\",\"thought\":false},"
            "{\"text\":\"hidden\",\"thought\":true},{\"text\":\"c\"}],\"role\":\"model\"},\"finishReason\":\"MAX_TOKENS\"}]}\n\n");
    ok(r->errors == 0 && r->text_len == 3 && memcmp(r->text, "abc", 3) == 0, "text parts joined, thought summaries left out");
    is_str(r->finish, "length", "MAX_TOKENS is length");
    free(r);

    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\",\"args\":{\"x\":1.5e3}},"
            "\"thoughtSignature\":\"AAAA\"},{\"functionCall\":{\"name\":\"b\"}}]}}]}\n\n"
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"c\",\"args\":{}}}]},"
            "\"finishReason\":\"STOP\"}]}\n\n");
    ok(r->ncalls == 3 && r->index[0] == 0 && r->index[1] == 1 && r->index[2] == 2, "calls counted across the stream");
    is_str(r->args[0], "{\"x\":1500.0}", "a call's args");
    is_str(r->args[1], "{}", "a call without args has {}");
    ok(strstr(r->ids[0], "_ts_AAAA") != NULL && strstr(r->ids[1], "_ts_") == NULL, "only the signed call carries a signature");
    ok(strcmp(r->ids[0], r->ids[1]) != 0 && strncmp(r->ids[2], "call_2_", 7) == 0, "ids are distinct");
    is_str(r->finish, "tool_calls", "STOP after calls is tool_calls");
    free(r);

    static const char *const blocks[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"};
    for (size_t i = 0; i < 5; ++i) {
        char ev[256], want[96];
        snprintf(ev, sizeof(ev), "data: {\"candidates\":[{\"finishReason\":\"%s\",\"index\":0}]}\n\n", blocks[i]);
        snprintf(want, sizeof(want), "the model provider blocked the answer (%s)", blocks[i]);
        r = one(ev);
        ok(r->errors == 1 && r->error == SB_E_UPSTREAM_REJECTED, "%s is a refusal", blocks[i]);
        is_str(r->message, want, "%s: a clean message", blocks[i]);
        free(r);
    }
    r = one("data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_REJECTED, "a blocked prompt is a refusal");
    is_str(r->message, "the model provider blocked the request (SAFETY)", "a blocked prompt: its message");
    free(r);
    r = one("data: {\"error\":{\"code\":429,\"message\":\"Resource has been exhausted\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_RATE_LIMITED, "an in-band error keeps its kind");
    is_str(r->message, "Resource has been exhausted", "an in-band error: its message");
    free(r);
    r = one("data: {\"candidates\":[{\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}]}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_ERROR, "MALFORMED_FUNCTION_CALL fails the stream");
    free(r);

    static const char *const bad[] = {
        "data: [1]\n\n",
        "data: {\"usageMetadata\":{},\"usageMetadata\":{}}\n\n",
        "data: {\"candidates\":{}}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":5}]}}]}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"a\",\"args\":[1]}}]}}]}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":{}}}]}}]}\n\n",
        "data: {\"usageMetadata\":{\"promptTokenCount\":-1}}\n\n",
        "data: {\"usageMetadata\":{\"promptTokenCount\":\"3\"}}\n\n",
        "data: x\n\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        r = one(bad[i]);
        ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE && r->message[0] != '\0', "malformed event %zu: %s", i,
           r->message);
        free(r);
    }
    /* numbers jansson writes longer than they came: the call outgrows its event, and fails cleanly */
    char big[2048];
    size_t n = (size_t)snprintf(big, sizeof(big),
                                "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":"
                                "\"a\",\"args\":{\"x\":[1e5");
    for (int i = 0; i < 300; ++i)
        n += (size_t)snprintf(big + n, sizeof(big) - n, ",1e5");
    snprintf(big + n, sizeof(big) - n, "]}}}]}}]}\n\n");
    r = one(big);
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE, "a call larger than its event fails cleanly: %s", r->message);
    free(r);
    r = one("data: {}\n\ndata: {\"candidates\":[]}\n\n");
    ok(r->errors == 0 && r->deltas == 0, "events with nothing in them are skipped");
    free(r);
}

/* What a one-pass reader can get wrong: member order, repeats, escapes, depth, truncation, text joined around others. */
static void test_one_pass(void)
{
    run_t *r = one("data: {\"modelVersion\":\"gemini-2.5-flash\",\"usageMetadata\":{\"totalTokenCount\":5,\"promptTokenCount\":2,"
                   "\"candidatesTokenCount\":3},\"x\":{\"deep\":[[[{\"a\":[{}]}]]]},\"candidates\":[{\"finishReason\":\"STOP\","
                   "\"content\":{\"role\":\"model\",\"parts\":[{\"thought\":false,\"text\":\"Hi\"}]}}]}\n\n");
    ok(r->errors == 0 && r->text_len == 2 && memcmp(r->text, "Hi", 2) == 0 && strcmp(r->finish, "stop") == 0 && r->prompt == 2 &&
           r->completion == 3 && r->total == 5 && strcmp(r->model, "gemini-2.5-flash") == 0,
       "members in another order, past a deep unknown member: text, finish, usage, model");
    free(r);

    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\\nb\"},{\"text\":\"hid\\u0064en\",\"thought\":true},"
            "{\"text\":\"-c-\"},{\"functionCall\":{\"name\":\"f\\u0031\",\"args\":{\"k\":\"v\\u00e9\"}}},{\"text\":\"d\\\"\"},"
            "{\"text\":\"\"},{\"text\":\"e\"}]}}],\"modelVersion\":\"m\\/1\"}\n\n");
    ok(r->errors == 0 && r->text_len == 9 && memcmp(r->text, "a\nb-c-d\"e", 9) == 0,
       "text parts joined around a thought and a call, escaped or not");
    ok(r->ncalls == 1 && strcmp(r->names[0], "f1") == 0 && strcmp(r->args[0], "{\"k\":\"v\xc3\xa9\"}") == 0,
       "an escaped name decoded, args written as jansson writes them: %s %s", r->names[0], r->args[0]);
    is_str(r->model, "m/1", "an escaped model decoded");
    free(r);

    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"plain \"},{\"thought\":true,\"text\":\"x\\ty\"},"
            "{\"text\":\"then\\tescaped\"}]}}]}\n\n");
    ok(r->errors == 0 && r->text_len == 18 && memcmp(r->text, "plain then\tescaped", 18) == 0,
       "a plain text part, then an escaped one: joined in order");
    free(r);

    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"thoughtSignature\":\"QUJD\\/w==\",\"functionCall\":"
            "{\"args\":{\"b\":[1,2.5,-0,true,null],\"a\":{}},\"name\":\"g\"}}]}}]}\n\n");
    ok(r->ncalls == 1 && strcmp(r->args[0], "{\"b\":[1,2.5,0,true,null],\"a\":{}}") == 0 && strstr(r->ids[0], "_ts_QUJD_w") != NULL,
       "signature before the call, args before the name, an escaped signature: %s %s", r->args[0], r->ids[0]);
    free(r);

    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\",\"thought\":true,\"thought\":true}]}}]}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE, "a key repeated in a part is refused, as before");
    free(r);
    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1,\"a\":2}}}]}}]}"
            "\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE, "a key repeated in a call's args is refused, as before");
    free(r);
    r = one("data: {\"modelVersion\":\"a\",\"model\\u0056ersion\":\"b\"}\n\n");
    ok(r->errors == 1, "a key repeated with an escape is refused");
    free(r);
    r = one("data: {\"responseId\":\"a\",\"candidates\":[{\"index\":0,\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"t\","
            "\"x\":1,\"x\":[2]}],\"role\":null},\"index\":1}],\"responseId\":\"b\"}\n\n");
    ok(r->errors == 0 && r->text_len == 1 && r->text[0] == 't',
       "a key repeated that the reader does not act on is let through (jscan.h's rule): whichever copy, the same delta");
    free(r);
    r = one("data: {\"usageMetadata\":{\"promptTokenCount\":1,\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":1,"
            "\"tokenCount\":2}],\"promptTokensDetails\":[]}}\n\n");
    ok(r->errors == 0 && r->prompt == 1, "so is one in a member only checked and skipped");
    free(r);
    r = one("data: {\"usageMetadata\":{\"promptTokensDetails\":[{\"modality\":\"TEXT\" \"tokenCount\":1}]}}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE, "a skipped member must still be valid JSON");
    free(r);
    r = one("data: {\"usageMetadata\":{\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":1,}]}}\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE, "a trailing comma in a skipped member is refused");
    free(r);
    r = one("data: { \"candidates\" : [ { \"content\" : { \"parts\" : [ { \"text\" :\t\"a\" } ] } } ] ,\t"
            "\"usageMetadata\":{\"promptTokenCount\" :3 , \"totalTokenCount\":\t 4}, \"modelVersion\":  \"m\" }\n\n");
    ok(r->errors == 0 && r->text_len == 1 && r->prompt == 3 && r->total == 4 && strcmp(r->model, "m") == 0,
       "whitespace anywhere JSON allows it: every member found the general way");
    free(r);
    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":5,\"thought\":true}]}}]}\n\n");
    ok(r->errors == 0 && r->deltas == 0, "a thought's text is not looked at, whatever its type");
    free(r);
    r = one(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"error\":{\"code\":503,\"message\":\"o\\u0076er\"}}"
        "\n\n");
    ok(r->errors == 1 && r->error == sb_error_for_provider_status(503) && strcmp(r->message, "over") == 0,
       "an error after the candidates still wins: %s", r->message);
    free(r);
    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]\n\n");
    ok(r->errors == 1 && r->error == SB_E_UPSTREAM_BAD_RESPONSE && r->text_len == 0, "truncated JSON is an error, nothing said");
    free(r);
    r = one("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]} {}\n\n");
    ok(r->errors == 1, "trailing bytes are an error");
    free(r);
    r = one("data: "
            "{\"candidates\":[{\"content\":{\"parts\":[]}},{\"content\":{\"parts\":[{\"text\":\"second\"}]}}],\"error\":null}\n\n");
    ok(r->errors == 0 && r->deltas == 0, "only the first candidate is read; a null error is none");
    free(r);
}

static void test_error_message(void)
{
    char msg[64];
    static const char body[] = "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\","
                               "\"status\":\"INVALID_ARGUMENT\"}}";
    sb_wire_gemini.error_message(body, strlen(body), msg, sizeof(msg));
    is_str(msg, "API key not valid. Please pass a valid API key.", "error body: the message");
    static const char arr[] = "[{\"error\":{\"code\":429,\"message\":\"quota\",\"status\":\"RESOURCE_EXHAUSTED\"}}]";
    sb_wire_gemini.error_message(arr, strlen(arr), msg, sizeof(msg));
    is_str(msg, "quota", "error body: inside an array");
    sb_wire_gemini.error_message("<html>", 6, msg, sizeof(msg));
    is_str(msg, "", "error body: none to read");
    char small[8];
    static const char utf[] = "{\"error\":{\"message\":\"ééééé\"}}";
    sb_wire_gemini.error_message(utf, strlen(utf), small, sizeof(small));
    is_str(small, "ééé", "error body: cut at a character");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_url_and_headers();
    test_body();
    test_fixtures();
    test_events();
    test_one_pass();
    test_error_message();
    return done_testing();
}
