/* Unit tests for src/request.c: validation and what reaches the provider. */
#include "request.h"
#include "tap.h"

static int parse(const char *body, sb_chat_request_t *r, sb_request_error_t *e)
{
    return sb_chat_request_parse_body(body, strlen(body), "default-model", NULL, r, e);
}

static void rejects(const char *body, sb_error_t kind, const char *param, const char *what)
{
    sb_chat_request_t r;
    sb_request_error_t e;
    int rc = parse(body, &r, &e);
    ok(rc == -1 && e.kind == kind && strcmp(e.param, param) == 0, "rejects %s (param '%s')", what, param);
    if (rc == 0)
        sb_chat_request_dispose(&r);
    else if (strcmp(e.param, param) != 0)
        printf("#   got param '%s': %s\n", e.param, e.message);
}

/* The conversation digest of `body` (with header ids when given) into out; the identity into who. */
static void digest_of(const char *body, const sb_engine_ids_t *ids, unsigned char out[16], char *who, size_t cap)
{
    sb_chat_request_t r;
    sb_request_error_t e;
    if (sb_chat_request_parse_body(body, strlen(body), "m", ids, &r, &e) != 0) {
        printf("Bail out! %s: %s\n", body, e.message);
        exit(1);
    }
    memcpy(out, r.conversation, 16);
    snprintf(who, cap, "%s", r.identity != NULL ? r.identity : "");
    sb_chat_request_dispose(&r);
}

static void test_identity(void)
{
    unsigned char a[16], b[16];
    char who[256];
#define MSGS "\"messages\":[{\"role\":\"system\",\"content\":\"desk\"},{\"role\":\"user\",\"content\":\"broken\",\"timestamp\":5}]"
    digest_of("{\"turn_id\":3," MSGS "}", NULL, a, who, sizeof(who));
    is_str(who, "", "no ids anywhere: no identity");
    digest_of("{\"turn_id\":3,\"timestamp\":99," MSGS "}", NULL, b, who, sizeof(who));
    ok(memcmp(a, b, 16) == 0, "the engine's send time is not part of the conversation: a retry matches");
    digest_of("{\"turn_id\":3,\"messages\":[{\"role\":\"system\",\"content\":\"desk\"},{\"role\":\"user\",\"content\":"
              "\"broken\",\"timestamp\":6}]}",
              NULL, b, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "the same words said at another moment are another conversation");
    digest_of("{\"turn_id\":3,\"messages\":[{\"role\":\"system\",\"content\":\"desk\"},{\"role\":\"user\",\"content\":"
              "\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"},{\"role\":\"user\",\"content\":\"broken\",\"timestamp\":5}]}",
              NULL, b, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "another history is another conversation");

    digest_of("{\"context\":{\"appId\":\"app\",\"channel\":\"c1\",\"userId\":\"7\"}," MSGS "}", NULL, a, who, sizeof(who));
    is_str(who, "app=app;channel=c1;user=7;", "ids from Agora's context object");
    digest_of("{\"context\":{\"appId\":\"app\",\"channel\":\"c2\",\"userId\":\"7\"}," MSGS "}", NULL, b, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "another channel is another conversation");
    digest_of("{\"app_id\":\"top\",\"context\":{\"appId\":\"app\",\"channel\":\"c1\"},\"user_uid\":8,\"agent_id\":\"ag\"," MSGS "}",
              NULL, b, who, sizeof(who));
    is_str(who, "app=top;channel=c1;user=8;agent=ag;", "llm.params at the top level come first, then the context");

    sb_engine_ids_t ids = {"h-app", "h-chan", "h-uid", 5, 6, 5, NULL, NULL};
    digest_of("{" MSGS "}", &ids, a, who, sizeof(who));
    is_str(who, "app=h-app;channel=h-chan;user=h-uid;", "ids from the X-Agora-Customllm-* headers");
    ids.channel = "h-other";
    ids.channel_len = 7;
    digest_of("{" MSGS "}", &ids, b, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "another channel header is another conversation");
    digest_of("{\"channel\":\"body\"," MSGS "}", &ids, b, who, sizeof(who));
    is_str(who, "app=h-app;channel=body;user=h-uid;", "the body names the channel before the header does");

    sb_engine_ids_t call = {.call_label = "retell_call", .call_id = "Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6"};
    digest_of("{" MSGS "}", &call, a, who, sizeof(who));
    is_str(who, "retell_call=Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6;", "a voice platform names the call itself");
    call.call_id = "another-call";
    digest_of("{" MSGS "}", &call, b, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "the same words in another call are another conversation");
    digest_of("{\"channel\":\"another-call\"," MSGS "}", NULL, a, who, sizeof(who));
    ok(memcmp(a, b, 16) != 0, "and a channel of that name is not that call");
#undef MSGS
}

int main(void)
{
    sb_chat_request_t r;
    sb_request_error_t e;
    test_identity();

    /* An assistant reply the caller cut off is marked for the model (Agora's metadata.interrupted). */
    is_int(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"a joke?\"},{\"role\":\"assistant\",\"content\":\"Why did the "
                 "scarecrow \",\"metadata\":{\"interrupted\":true,\"original\":\"Why did the scarecrow win?\"}},{\"role\":\"user\","
                 "\"content\":\"a story instead\"}]}",
                 &r, &e),
           0, "a request with an interrupted reply is accepted");
    char *marked = sb_chat_request_dump(&r, NULL);
    ok(strstr(marked, "\"content\":\"Why did the scarecrow \xE2\x80\xA6[interrupted by the caller]\"") != NULL,
       "the interrupted reply tells the model it was cut off: %s", marked);
    ok(strstr(marked, "win?") == NULL && strstr(marked, "metadata") == NULL, "what was not said stays out");
    free(marked);
    sb_chat_request_dispose(&r);
    is_int(parse("{\"messages\":[{\"role\":\"assistant\",\"content\":\"Done.\",\"metadata\":{\"interrupted\":false}},"
                 "{\"role\":\"user\",\"content\":\"ok\"}]}",
                 &r, &e),
           0, "a reply said in full");
    marked = sb_chat_request_dump(&r, NULL);
    ok(strstr(marked, "\"content\":\"Done.\"") != NULL, "is left as it is");
    free(marked);
    sb_chat_request_dispose(&r);

    /* The request Agora's engine sends with llm.vendor "custom". */
    const char *agora = "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"turn_id\":7,\"timestamp\":1730000000000,"
                        "\"interruptable\":true,\"context\":{\"presence\":{}},\"app_id\":\"abc\",\"channel\":\"room\","
                        "\"user_uid\":\"42\",\"temperature\":0.3,\"max_tokens\":200,"
                        "\"messages\":[{\"role\":\"system\",\"content\":[\"You are helpful.\",\"Be brief.\"]},"
                        "{\"role\":\"user\",\"content\":\"where is my order\",\"turn_id\":7,\"timestamp\":1730000000000,"
                        "\"metadata\":{\"source\":\"asr\",\"interrupted\":false,\"original\":\"where is my order\"}}]}";
    is_int(parse(agora, &r, &e), 0, "the engine's vendor:custom request is accepted");
    char *out = sb_chat_request_dump(&r, NULL);
    ok(strstr(out, "turn_id") == NULL && strstr(out, "timestamp") == NULL && strstr(out, "metadata") == NULL &&
           strstr(out, "interruptable") == NULL && strstr(out, "app_id") == NULL && strstr(out, "context") == NULL &&
           strstr(out, "user_uid") == NULL,
       "no engine extras reach the provider");
    ok(strstr(out, "\"temperature\":0.3") && strstr(out, "\"max_tokens\":200") && strstr(out, "\"model\":\"gpt-4o-mini\""),
       "known parameters pass through");
    ok(strstr(out, "\"content\":\"You are helpful.\\nBe brief.\"") != NULL, "a system prompt given as a list becomes one string");
    ok(strstr(out, "\"stream\":true") && strstr(out, "\"include_usage\":true"), "upstream always streams with usage");
    is_str(r.turn_id, "7", "the engine's turn id is kept for switchboard's own use");
    ok(r.stream && !r.include_usage, "the client's stream flag and usage wish are remembered");
    free(out);
    sb_chat_request_dispose(&r);

    is_int(parse("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                 "\"text\":\"b\"}]}]}",
                 &r, &e),
           0, "content as text parts is accepted");
    is_str(r.model, "default-model", "the configured model is used when none is named");
    out = sb_chat_request_dump(&r, NULL);
    ok(strstr(out, "\"content\":\"ab\"") != NULL, "text parts are joined into one string");
    free(out);
    /* switchboard's tools, serialized once, go into the body as it is written */
    r.offered_tools = "[{\"type\":\"function\",\"function\":{\"name\":\"t\",\"parameters\":{}}}]";
    out = sb_chat_request_dump(&r, NULL);
    json_error_t jerr;
    json_t *sent = json_loads(out, JSON_REJECT_DUPLICATES, &jerr);
    ok(sent != NULL, "the body with offered tools is one JSON object (%s)", sent ? "" : jerr.text);
    is_str(
        json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(sent, "tools"), 0), "function"), "name")),
        "t", "and carries them as tools");
    ok(json_object_get(sent, "messages") != NULL && json_object_get(sent, "stream") != NULL, "beside everything else");
    json_decref(sent);
    free(out);
    sb_chat_request_dispose(&r);

    is_int(
        parse("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", &r, &e),
        0, "non-text parts are kept as parts");
    sb_chat_request_dispose(&r);

    is_int(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":null,"
                 "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"ok\"}],\"tools\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"f\",\"parameters\":{}}}],\"tool_choice\":\"auto\"}",
                 &r, &e),
           0, "a tool round in the history is accepted");
    ok(r.has_tools, "client tools are noticed");
    sb_chat_request_dispose(&r);

    rejects("[1]", SB_E_INVALID_REQUEST, "", "a body that is not an object");
    rejects("{\"messages\":", SB_E_INVALID_JSON, "", "invalid JSON");
    rejects("{\"a\":1,\"a\":2,\"messages\":[]}", SB_E_INVALID_JSON, "", "duplicate keys");
    rejects("{}", SB_E_INVALID_REQUEST, "messages", "missing messages");
    rejects("{\"messages\":[]}", SB_E_INVALID_REQUEST, "messages", "empty messages");
    rejects("{\"messages\":{}}", SB_E_INVALID_REQUEST, "messages", "messages that is not an array");
    rejects("{\"messages\":[1]}", SB_E_INVALID_REQUEST, "messages[0]", "a message that is not an object");
    rejects("{\"messages\":[{\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "messages[0].role", "a missing role");
    rejects("{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "messages[0].role",
            "an unknown role");
    rejects("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":5}]}", SB_E_INVALID_REQUEST,
            "messages[1].content", "content of the wrong type");
    rejects("{\"messages\":[{\"role\":\"user\"}]}", SB_E_INVALID_REQUEST, "messages[0].content", "a user message without content");
    rejects("{\"messages\":[{\"role\":\"user\",\"content\":[5]}]}", SB_E_INVALID_REQUEST, "messages[0].content",
            "a content part that is neither string nor object");
    rejects("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "messages[0]",
            "a tool message without tool_call_id");
    rejects("{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "model",
            "a model that is not a string");
    rejects("{\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "stream",
            "a stream flag that is not a boolean");
    rejects("{\"temperature\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "temperature",
            "a temperature out of range");
    rejects("{\"max_tokens\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "max_tokens",
            "a fractional max_tokens");
    rejects("{\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "n", "several choices");
    rejects("{\"stop\":[1],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "stop",
            "stop with a number");
    rejects("{\"tools\":[{\"type\":\"function\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST,
            "tools[0]", "a function tool without a name");
    rejects("{\"tool_choice\":\"maybe\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST, "tool_choice",
            "an unknown tool_choice");
    rejects("{\"stream_options\":{\"include_usage\":1},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", SB_E_INVALID_REQUEST,
            "stream_options", "include_usage that is not a boolean");
    return done_testing();
}
