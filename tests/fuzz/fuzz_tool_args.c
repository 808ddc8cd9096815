/*
 * libFuzzer target for what a model's tool call can put in front of
 * switchboard's tools before any SQL runs: argument names of any bytes,
 * given to every tool's strict parser, and results of any bytes, given to the
 * writer of what the model reads. Whatever the bytes, a refused call must
 * become an {"error": ...} result that is valid JSON, and every result must
 * come out as valid JSON within SB_TOOL_MAX_RESULT; nothing may abort.
 *
 * Input: byte 0 picks the tool, then the argument name, up to a NUL byte; the
 * rest is the result value's bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Arguments every tool accepts, so the fuzzed name is the only thing wrong with them. */
static const char *const valid_args[] = {
    "{\"customer_id\":1}",
    "{\"subject\":\"Pedido dañado\",\"description\":\"x\",\"priority\":\"low\"}",
    "{\"order_number\":\"4417\"}",
    "{\"ticket_id\":1,\"status\":\"open\"}",
    "{\"ticket_id\":1,\"reason\":\"x\"}",
    "{\"ticket_id\":1,\"kind\":\"note\",\"summary\":\"x\"}",
    "{\"entity_type\":\"t\",\"entity_id\":\"1\",\"change_type\":\"x\",\"description\":\"d\"}",
    "{\"event_type\":\"x\"}",
    "{\"user_id\":\"u1\",\"message\":\"hi\"}",
};

/* The first of valid_args that `t` parses (each tool takes one of them). */
static json_t *base_args(const sb_tool_t *t, void *args)
{
    for (size_t i = 0; i < sizeof(valid_args) / sizeof(valid_args[0]); ++i) {
        json_t *in = json_loads(valid_args[i], 0, NULL);
        char err[256];
        memset(args, 0, sb_tool_args_size(t));
        if (in != NULL && sb_tool_parse(t, in, args, err, sizeof(err)) == 0)
            return in;
        json_decref(in);
    }
    return json_object();
}

static void check_result_text(const json_t *result, int want_error)
{
    size_t len;
    char *text = sb_tool_result_text(result, &len);
    json_error_t jerr;
    json_t *back = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (back == NULL || len > SB_TOOL_MAX_RESULT || strlen(text) != len) {
        fprintf(stderr, "result text is not valid JSON within the ceiling (%zu bytes): %s\n", len, jerr.text);
        abort();
    }
    if (want_error && !json_is_string(json_object_get(back, "error"))) {
        fprintf(stderr, "a refused call did not become an error result: %s\n", text);
        abort();
    }
    json_decref(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t ntools;
    const sb_tool_t *tools = sb_tools_table(&ntools);
    const sb_tool_t *t = &tools[data[0] % ntools];
    const uint8_t *name = data + 1, *end = data + size;
    const uint8_t *nul = memchr(name, 0, (size_t)(end - name));
    size_t name_len = (size_t)((nul ? nul : end) - name);
    const uint8_t *value = nul ? nul + 1 : end;

    void *args = calloc(1, sb_tool_args_size(t) ? sb_tool_args_size(t) : 1);
    json_t *in = base_args(t, args);
    /* _nocheck: names that are not UTF-8 too, which no JSON parse would hand over, to be stricter than the model can be */
    char *key = strndup((const char *)name, name_len);
    if (key != NULL && name_len > 0)
        json_object_set_new_nocheck(in, key, json_string("x"));
    char err[256] = "";
    memset(args, 0, sb_tool_args_size(t));
    if (sb_tool_parse(t, in, args, err, sizeof(err)) != 0) {
        json_t *r = sb_tool_error(err, strlen(err));
        check_result_text(r, 1);
        json_decref(r);
    }
    free(key);
    json_decref(in);
    free(args);

    /* a result holding any bytes: a string jansson would refuse to write must still come out as JSON */
    json_t *result = json_object();
    json_object_set_new_nocheck(result, "value", json_stringn_nocheck((const char *)value, (size_t)(end - value)));
    check_result_text(result, 0);
    json_decref(result);
    json_t *e = sb_tool_error((const char *)value, (size_t)(end - value));
    check_result_text(e, 1);
    json_decref(e);
    return 0;
}
