/* Unit tests for src/chunk.c: reading upstream chunks into deltas. */
#include "chunk.h"
#include "tap.h"

static int parse(const char *s, sb_delta_t *d, json_t **h)
{
    return sb_chunk_parse(s, strlen(s), d, h);
}

int main(void)
{
    sb_delta_t d;
    json_t *h;

    is_int(parse("{\"id\":\"x\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
                 "\"finish_reason\":null}],\"x_groq\":{\"id\":\"r\"},\"obfuscation\":\"abc\"}",
                 &d, &h),
           0, "a content chunk with vendor fields parses");
    ok(d.content.len == 2 && memcmp(d.content.base, "Hi", 2) == 0, "content is read");
    ok(d.model.len == 1 && d.finish_reason.base == NULL, "model read, no finish");
    json_decref(h);

    is_int(parse("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_1\",\"type\":\"function\","
                 "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\"}}]},\"finish_reason\":null}]}",
                 &d, &h),
           0, "a tool-call fragment parses");
    ok(d.ntools == 1 && d.tools[0].index == 1 && d.tools[0].name.len == 1 && d.tools[0].arguments.len == 3,
       "index, name and argument fragment are read");
    json_decref(h);

    is_int(parse("{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}", &d, &h), 0,
           "a usage-only chunk with empty choices parses");
    ok(d.has_usage && d.prompt_tokens == 5 && d.completion_tokens == 7 && d.total_tokens == 12, "usage is read");
    json_decref(h);

    is_int(parse("{\"error\":{\"message\":\"boom\",\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}", &d, &h), 0,
           "an in-band error object parses");
    ok(d.is_error && d.error_message.len == 4, "and is flagged as an error with its message");
    json_decref(h);

    is_int(parse("{\"choices\":[{\"delta\":{\"content\":5}}]}", &d, &h), -1, "content of the wrong type is malformed");
    ok(h == NULL, "nothing to release after a failure");
    is_int(parse("[1,2]", &d, &h), -1, "a non-object is malformed");
    is_int(parse("{\"choices\":[{\"delta\":{\"content\":\"a\"", &d, &h), -1, "truncated JSON is malformed");
    is_int(parse("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-1}]}}]}", &d, &h), -1,
           "a negative tool index is malformed");
    return done_testing();
}
