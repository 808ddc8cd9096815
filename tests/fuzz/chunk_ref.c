/*
 * REFERENCE ONLY, not built into switchboard: the jansson-based reading of
 * upstream chunks that src/chunk.c had before its single-pass scanner, kept
 * unchanged as the oracle for tests/fuzz/fuzz_chunk.c and tests/unit/test_chunk.c.
 */
#include <stdio.h>
#include <string.h>

#include "chunk_ref.h"

static int get_str(json_t *obj, const char *key, sb_str_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    out->base = json_string_value(v);
    out->len = json_string_length(v);
    return 0;
}

static int get_count(json_t *obj, const char *key, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int parse_tools(json_t *calls, sb_delta_t *out)
{
    size_t i;
    json_t *c;
    if (!json_is_array(calls))
        return -1;
    json_array_foreach(calls, i, c)
    {
        if (out->ntools == SB_CHUNK_MAX_TOOLS || !json_is_object(c))
            return -1;
        sb_tool_delta_t *t = &out->tools[out->ntools++];
        json_t *index = json_object_get(c, "index");
        /* A provider that streams whole calls may omit index: position is the index then. */
        if (index == NULL)
            t->index = (long)i;
        else if (json_is_integer(index) && json_integer_value(index) >= 0 && json_integer_value(index) < 1024)
            t->index = (long)json_integer_value(index);
        else
            return -1;
        json_t *fn = json_object_get(c, "function");
        if (get_str(c, "id", &t->id) || get_str(c, "type", &t->type))
            return -1;
        if (fn != NULL && !json_is_null(fn)) {
            if (!json_is_object(fn) || get_str(fn, "name", &t->name) || get_str(fn, "arguments", &t->arguments))
                return -1;
        }
    }
    return 0;
}

static int parse(json_t *root, sb_delta_t *out)
{
    if (!json_is_object(root))
        return -1;
    json_t *error = json_object_get(root, "error");
    if (error != NULL && !json_is_null(error)) {
        out->is_error = 1;
        if (json_is_string(error)) {
            out->error_message.base = json_string_value(error);
            out->error_message.len = json_string_length(error);
            return 0;
        }
        if (!json_is_object(error))
            return -1;
        get_str(error, "message", &out->error_message);
        get_str(error, "type", &out->error_type);
        get_str(error, "code", &out->error_code); /* codes may be numbers; those are left out */
        return 0;
    }
    if (get_str(root, "model", &out->model))
        return -1;

    json_t *usage = json_object_get(root, "usage");
    if (usage != NULL && !json_is_null(usage)) {
        if (!json_is_object(usage) || get_count(usage, "prompt_tokens", &out->prompt_tokens) ||
            get_count(usage, "completion_tokens", &out->completion_tokens) || get_count(usage, "total_tokens", &out->total_tokens))
            return -1;
        out->has_usage = 1;
    }

    json_t *choices = json_object_get(root, "choices");
    if (choices == NULL || json_is_null(choices))
        return 0;
    if (!json_is_array(choices))
        return -1;
    json_t *choice = json_array_get(choices, 0);
    if (choice == NULL)
        return 0; /* usage-only chunk */
    if (!json_is_object(choice) || get_str(choice, "finish_reason", &out->finish_reason))
        return -1;
    json_t *delta = json_object_get(choice, "delta");
    if (delta == NULL || json_is_null(delta))
        return 0;
    if (!json_is_object(delta) || get_str(delta, "content", &out->content))
        return -1;
    json_t *calls = json_object_get(delta, "tool_calls");
    if (calls != NULL && !json_is_null(calls) && parse_tools(calls, out) != 0)
        return -1;
    return 0;
}

int ref_chunk_parse(const char *data, size_t len, sb_delta_t *out, json_t **holder, json_error_t *error)
{
    memset(out, 0, sizeof(*out));
    *holder = json_loadb(data, len, 0, error);
    if (*holder == NULL)
        return -1;
    if (parse(*holder, out) != 0) {
        json_decref(*holder);
        *holder = NULL;
        snprintf(error->text, sizeof(error->text), "not a chunk");
        return -1;
    }
    return 0;
}
