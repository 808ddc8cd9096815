/*
 * Tests for reading Retell's LLM WebSocket events: the samples of Retell's
 * reference (as Retell sends them, word timings included), the fields
 * Retell adds over time passed over, and what is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retell_event.h"
#include "tap.h"

/* Reads `text`; returns 0 or -1, printing why it was refused. */
static int read_event(const char *text, sb_retell_event_t *ev)
{
    const char *why = NULL;
    int rc = sb_retell_event_read(text, strlen(text), ev, &why);
    if (rc != 0)
        printf("# refused: %s\n", why != NULL ? why : "(no reason)");
    return rc;
}

/* The transcript as "role:content|role:content". */
static void transcript(const sb_retell_event_t *ev, char *out, size_t cap)
{
    size_t i, used = 0;
    json_t *m;
    out[0] = '\0';
    json_array_foreach(ev->messages, i, m)
    {
        int n = snprintf(out + used, cap - used, "%s%s:%s", i ? "|" : "", json_string_value(json_object_get(m, "role")),
                         json_string_value(json_object_get(m, "content")));
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
}

static void test_samples(void)
{
    sb_retell_event_t ev;
    char t[512];
    ok(read_event("{\"interaction_type\":\"ping_pong\",\"timestamp\":1703302407333}", &ev) == 0 && ev.kind == SB_RETELL_PING_PONG,
       "ping_pong");
    ok(ev.timestamp.len == 13 && memcmp(ev.timestamp.base, "1703302407333", 13) == 0, "its timestamp as written");
    sb_retell_event_dispose(&ev);

    ok(read_event("{\"interaction_type\":\"call_details\",\"call\":{\"call_type\":\"phone_call\",\"from_number\":\"+12137771234\","
                  "\"to_number\":\"+12137771235\",\"direction\":\"inbound\",\"call_id\":\"Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6\","
                  "\"agent_id\":\"oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD\",\"call_status\":\"registered\",\"metadata\":{},"
                  "\"retell_llm_dynamic_variables\":{\"customer_name\":\"John Doe\"},\"opt_out_sensitive_data_storage\":true}}",
                  &ev) == 0 &&
           ev.kind == SB_RETELL_CALL_DETAILS,
       "call_details");
    sb_retell_event_dispose(&ev);

    static const char update[] =
        "{\"interaction_type\":\"update_only\",\"transcript\":[{\"role\":\"agent\",\"content\":\"Hey how can I help you?\","
        "\"words\":[]},{\"role\":\"user\",\"content\":\"Hey. How are you?\",\"words\":[{\"word\":\"Hey.\",\"start\":4.375,"
        "\"end\":4.615},{\"word\":\"How\",\"start\":4.615,\"end\":4.855},{\"word\":\"are\",\"start\":4.855,\"end\":5.030156},"
        "{\"word\":\"you?\",\"start\":5.030156,\"end\":5.2053127}]}],\"turntaking\":\"agent_turn\"}";
    ok(read_event(update, &ev) == 0 && ev.kind == SB_RETELL_UPDATE_ONLY && ev.messages == NULL,
       "update_only, with word timings and turntaking: nothing is built for it");
    sb_retell_event_dispose(&ev);

    static const char response[] =
        "{\"interaction_type\":\"response_required\",\"response_id\":3,\"transcript\":[{\"role\":\"agent\",\"content\":\"Hey "
        "how can I help you?\",\"words\":[]},{\"role\":\"user\",\"content\":\"Hey. How are you?\",\"words\":[{\"word\":\"Hey.\","
        "\"start\":4.375,\"end\":4.615}]}],\"transcript_with_tool_calls\":[{\"role\":\"tool_call_invocation\",\"tool_call_id\":"
        "\"x\",\"name\":\"n\",\"arguments\":\"{}\"}]}";
    ok(read_event(response, &ev) == 0 && ev.kind == SB_RETELL_RESPONSE_REQUIRED && ev.response_id == 3,
       "response_required with its response_id");
    transcript(&ev, t, sizeof(t));
    is_str(t, "assistant:Hey how can I help you?|user:Hey. How are you?", "the agent's words are the assistant's");
    is_int(ev.utterances, 2, "two utterances");
    sb_retell_event_dispose(&ev);

    /* members in any order: the transcript comes before the kind is known */
    ok(read_event("{\"transcript\":[{\"content\":\"I'm doing fine.\",\"role\":\"agent\"}],\"response_id\":0,"
                  "\"interaction_type\":\"reminder_required\"}",
                  &ev) == 0 &&
           ev.kind == SB_RETELL_REMINDER_REQUIRED && ev.response_id == 0 && json_array_size(ev.messages) == 1,
       "reminder_required, its members in another order");
    sb_retell_event_dispose(&ev);

    ok(read_event("{\"interaction_type\":\"response_required\",\"response_id\":7,\"transcript\":[{\"role\":\"user\","
                  "\"content\":\"He said \\\"hi\\\"\\n\\u00e9\\ud83d\\ude00\"},{\"role\":\"system\",\"content\":\"x\"},"
                  "{\"role\":\"agent\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"(unintelligible audio)\"}]}",
                  &ev) == 0,
       "escapes, a role Retell may add and an empty utterance");
    transcript(&ev, t, sizeof(t));
    is_str(t, "user:He said \"hi\"\n\xc3\xa9\xf0\x9f\x98\x80|user:(unintelligible audio)",
           "escapes are decoded; other roles and empty utterances are left out");
    is_int(ev.utterances, 4, "all four are counted");
    sb_retell_event_dispose(&ev);

    /* jscan.h's rule for repeated keys: a repeat of a member read is refused (test_refused), of one skipped not looked for */
    ok(read_event("{\"interaction_type\":\"response_required\",\"response_id\":1,\"turntaking\":1,\"turntaking\":2,"
                  "\"transcript\":[{\"role\":\"user\",\"words\":[],\"content\":\"hi\",\"words\":[]}]}",
                  &ev) == 0 &&
           json_array_size(ev.messages) == 1,
       "a member switchboard skips may come twice");
    sb_retell_event_dispose(&ev);

    ok(read_event("{\"interaction_type\":\"agent_hangup_soon\",\"whatever\":[1,{\"a\":null}]}", &ev) == 0 &&
           ev.kind == SB_RETELL_OTHER,
       "an interaction_type Retell has not documented is read as other");
    sb_retell_event_dispose(&ev);
}

static void test_long_transcript(void)
{
    size_t n = SB_RETELL_TRANSCRIPT_MAX + 10, cap = n * 48 + 128, used = 0;
    char *text = malloc(cap);
    used += (size_t)snprintf(text, cap, "{\"interaction_type\":\"response_required\",\"response_id\":9,\"transcript\":[");
    for (size_t i = 0; i < n; ++i)
        used += (size_t)snprintf(text + used, cap - used, "%s{\"role\":\"%s\",\"content\":\"u%zu\"}", i ? "," : "",
                                 i % 2 ? "agent" : "user", i);
    snprintf(text + used, cap - used, "]}");
    sb_retell_event_t ev;
    ok(read_event(text, &ev) == 0 && json_array_size(ev.messages) == SB_RETELL_TRANSCRIPT_MAX && ev.utterances == n,
       "a transcript past the limit keeps its newest utterances");
    char last[16];
    snprintf(last, sizeof(last), "u%zu", n - 1);
    is_str(json_string_value(json_object_get(json_array_get(ev.messages, SB_RETELL_TRANSCRIPT_MAX - 1), "content")), last,
           "the newest is last");
    is_str(json_string_value(json_object_get(json_array_get(ev.messages, 0), "content")), "u10", "the oldest ten are left out");
    sb_retell_event_dispose(&ev);
    free(text);
}

static void test_refused(void)
{
    static const struct {
        const char *text, *what;
    } bad[] = {
        {"", "nothing"},
        {"[]", "an array"},
        {"\"ping_pong\"", "a string"},
        {"{\"timestamp\":1}", "no interaction_type"},
        {"{\"interaction_type\":1}", "an interaction_type that is not a string"},
        {"{\"interaction_type\":\"ping_pong\"}", "ping_pong without a timestamp"},
        {"{\"interaction_type\":\"ping_pong\",\"timestamp\":\"1703302407333\"}", "a timestamp that is a string"},
        {"{\"interaction_type\":\"ping_pong\",\"timestamp\":1,\"interaction_type\":\"update_only\"}", "a repeated member"},
        {"{\"interaction_type\":\"ping_pong\",\"timestamp\":1} {}", "two objects"},
        {"{\"interaction_type\":\"ping_pong\",\"timestamp\":1", "a cut object"},
        {"{\"interaction_type\":\"update_only\",\"transcript\":[{]}", "a transcript that is not JSON, also in update_only"},
        {"{\"interaction_type\":\"response_required\",\"transcript\":[]}", "response_required without response_id"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":-1,\"transcript\":[]}", "a negative response_id"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1.5,\"transcript\":[]}", "a response_id with a fraction"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":\"1\",\"transcript\":[]}", "a response_id that is a string"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":99999999999999999999,\"transcript\":[]}",
         "a response_id past a long long"},
        {"{\"interaction_type\":\"reminder_required\",\"response_id\":1}", "reminder_required without a transcript"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":{}}", "a transcript that is an object"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[\"hi\"]}", "an utterance that is a string"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[{\"role\":\"user\"}]}",
         "an utterance without content"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[{\"role\":\"user\",\"content\":5}]}",
         "content that is not a string"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[{\"role\":\"user\",\"content\":\"a\","
         "\"content\":\"b\"}]}",
         "an utterance with two contents"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[{\"role\":\"user\",\"content\":"
         "\"\xff\"}]}",
         "content that is not UTF-8"},
        {"{\"interaction_type\":\"response_required\",\"response_id\":1,\"transcript\":[{\"role\":\"user\",\"content\":"
         "\"a\\u0000b\"}]}",
         "content holding \\u0000"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        sb_retell_event_t ev;
        const char *why = NULL;
        int rc = sb_retell_event_read(bad[i].text, strlen(bad[i].text), &ev, &why);
        ok(rc == -1 && why != NULL && ev.messages == NULL, "refused: %s (%s)", bad[i].what, why ? why : "no reason");
        sb_retell_event_dispose(&ev);
    }
}

int main(void)
{
    test_samples();
    test_long_transcript();
    test_refused();
    return done_testing();
}
