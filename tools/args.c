/*
 * A tool's arguments, read by its rows (tools.h): the JSON schema offered to
 * the model and the strict reading of what the model sends come from the
 * same row, so a bound the model is told is the bound that is checked. Every
 * refusal names the argument, in words the model can act on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static const char *kind_word(sb_arg_kind_t kind)
{
    switch (kind) {
    case SB_ARG_INT:
        return "an integer";
    case SB_ARG_OBJECT:
        return "a JSON object";
    default:
        return "a string";
    }
}

/* At most `max` bytes of `s`, cut where a UTF-8 character begins, so a name quoted in a message stays whole. */
static int utf8_prefix(const char *s, int max)
{
    int n = (int)strnlen(s, (size_t)max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        --n;
    return n;
}

static const sb_tool_arg_t *row_named(const sb_tool_args_t *a, const char *name)
{
    for (size_t i = 0; i < a->nrows; ++i)
        if (strcmp(a->rows[i].name, name) == 0)
            return &a->rows[i];
    return NULL;
}

/* The argument the tool does not take, named with the ones it does: a model answering in another language renames them. */
static int unknown(const sb_tool_args_t *a, const char *key, char *err, size_t errlen)
{
    int used = snprintf(err, errlen, "unknown argument \"%.*s\" (this tool takes: ", utf8_prefix(key, 64), key);
    for (size_t i = 0; i < a->nrows && used >= 0 && (size_t)used < errlen; ++i)
        used += snprintf(err + used, errlen - (size_t)used, "%s%s", i ? ", " : "", a->rows[i].name);
    if (used >= 0 && (size_t)used < errlen)
        snprintf(err + used, errlen - (size_t)used, ")");
    return -1;
}

/* Checks one present value against its row and stores it. */
static int take(const sb_tool_arg_t *r, json_t *v, void *out, char *err, size_t errlen)
{
    char *field = (char *)out + r->offset;
    switch (r->kind) {
    case SB_ARG_TEXT:
    case SB_ARG_ENUM: {
        if (!json_is_string(v)) /* null too: "Expected string, got null" would not say which */
            return snprintf(err, errlen, "%s must be %s", r->name, kind_word(r->kind)), -1;
        const char *s = json_string_value(v);
        if (r->kind == SB_ARG_ENUM) {
            for (const char *const *w = r->values; *w != NULL; ++w)
                if (strcmp(s, *w) == 0) {
                    *(const char **)field = s;
                    return 0;
                }
            int used = snprintf(err, errlen, "%s must be one of: ", r->name);
            for (const char *const *w = r->values; *w != NULL && used >= 0 && (size_t)used < errlen; ++w)
                used += snprintf(err + used, errlen - (size_t)used, "%s%s", w == r->values ? "" : ", ", *w);
            return -1;
        }
        size_t n = json_string_length(v);
        if ((long long)n < r->min || (long long)n > r->max)
            return snprintf(err, errlen, "%s must be %lld to %lld characters", r->name, r->min, r->max), -1;
        *(const char **)field = s;
        return 0;
    }
    case SB_ARG_INT: {
        if (!json_is_integer(v))
            return snprintf(err, errlen, "%s must be an integer", r->name), -1;
        json_int_t n = json_integer_value(v);
        if (n < r->min || n > r->max)
            return snprintf(err, errlen, "%s must be between %lld and %lld", r->name, r->min, r->max), -1;
        *(json_int_t *)field = n;
        return 0;
    }
    case SB_ARG_OBJECT:
        if (!json_is_object(v))
            return snprintf(err, errlen, "%s must be a JSON object", r->name), -1;
        /* json_dumpb with no buffer only measures */
        if ((long long)json_dumpb(v, NULL, 0, JSON_COMPACT) > r->max)
            return snprintf(err, errlen, "%s must be at most %lld bytes as JSON", r->name, r->max), -1;
        *(json_t **)field = v;
        return 0;
    }
    return -1;
}

int sb_tool_parse(const sb_tool_t *tool, json_t *in, void *out, char *err, size_t errlen)
{
    const sb_tool_args_t *a = tool->args;
    if (!json_is_object(in))
        return snprintf(err, errlen, "arguments must be a JSON object"), -1;
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        if (row_named(a, key) == NULL)
            return unknown(a, key, err, errlen);
    }
    for (size_t i = 0; i < a->nrows; ++i) {
        const sb_tool_arg_t *r = &a->rows[i];
        v = json_object_get(in, r->name);
        if (v == NULL && r->required)
            return snprintf(err, errlen, "%s is required", r->name), -1;
        if (v == NULL) {
            if (r->kind == SB_ARG_INT)
                *(json_int_t *)((char *)out + r->offset) = r->def;
            continue;
        }
        if (take(r, v, out, err, errlen) != 0)
            return -1;
    }
    return a->check != NULL ? a->check(out, err, errlen) : 0;
}

size_t sb_tool_args_size(const sb_tool_t *tool)
{
    return tool->args->size;
}

char *sb_tool_args_schema(const sb_tool_args_t *a)
{
    json_t *props = json_object(), *required = json_array();
    for (size_t i = 0; i < a->nrows; ++i) {
        const sb_tool_arg_t *r = &a->rows[i];
        json_t *p = json_object();
        switch (r->kind) {
        case SB_ARG_TEXT:
            json_object_set_new(p, "type", json_string("string"));
            if (r->min > 0)
                json_object_set_new(p, "minLength", json_integer(r->min));
            json_object_set_new(p, "maxLength", json_integer(r->max));
            break;
        case SB_ARG_ENUM: {
            json_t *words = json_array();
            for (const char *const *w = r->values; *w != NULL; ++w)
                json_array_append_new(words, json_string(*w));
            json_object_set_new(p, "type", json_string("string"));
            json_object_set_new(p, "enum", words);
            break;
        }
        case SB_ARG_INT:
            json_object_set_new(p, "type", json_string("integer"));
            json_object_set_new(p, "minimum", json_integer(r->min));
            if (r->max < INT64_MAX)
                json_object_set_new(p, "maximum", json_integer(r->max));
            if (r->def != 0)
                json_object_set_new(p, "default", json_integer(r->def));
            break;
        case SB_ARG_OBJECT:
            json_object_set_new(p, "type", json_string("object"));
            break;
        }
        if (r->description != NULL)
            json_object_set_new(p, "description", json_string(r->description));
        json_object_set_new(props, r->name, p);
        if (r->required)
            json_array_append_new(required, json_string(r->name));
    }
    json_t *schema = json_pack("{s:s, s:o}", "type", "object", "properties", props);
    if (json_array_size(required) > 0)
        json_object_set_new(schema, "required", required);
    else
        json_decref(required);
    json_object_set_new(schema, "additionalProperties", json_false());
    char *text = json_dumps(schema, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(schema);
    return text;
}
