/*
 * Responses API request → Chat Completions request (responses_request.h).
 * The translation only reshapes: it checks the shapes it reads (every item an
 * object of a known type, every part a known type) and leaves values and
 * limits to sb_chat_request_parse, which sees the translated request as if a
 * chat client had sent it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "responses_request.h"
#include "sb/alloc.h"
#include "sb/json.h"

__attribute__((format(printf, 3, 4))) static int fail(sb_request_error_t *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    err->kind = SB_E_INVALID_REQUEST;
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

static int is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* The type of an item or part, "" when it has none, NULL when it is not a string. */
static const char *type_of(json_t *v)
{
    json_t *t = json_object_get(v, "type");
    if (t == NULL)
        return "";
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/*
 * One content part of a message as a Chat Completions part (new reference):
 * input_text / output_text → text, refusal → text, input_image → image_url.
 */
static json_t *convert_part(json_t *part, const char *where, sb_request_error_t *err)
{
    if (!json_is_object(part))
        return fail(err, where, "%s must be an object", where), NULL;
    const char *type = type_of(part);
    if (type == NULL)
        return fail(err, where, "%s.type must be a string", where), NULL;
    if (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 || strcmp(type, "refusal") == 0) {
        json_t *text = json_object_get(part, strcmp(type, "refusal") == 0 ? "refusal" : "text");
        if (!json_is_string(text))
            return fail(err, where, "%s.%s must be a string", where, strcmp(type, "refusal") == 0 ? "refusal" : "text"), NULL;
        return json_pack("{s:s, s:O}", "type", "text", "text", text);
    }
    if (strcmp(type, "input_image") == 0) {
        json_t *url = json_object_get(part, "image_url"), *detail = json_object_get(part, "detail");
        if (!json_is_string(url))
            return fail(err, where, "%s.image_url must be a string (file_id images need server-side files)", where), NULL;
        json_t *image = json_pack("{s:O}", "url", url);
        if (json_is_string(detail))
            json_object_set(image, "detail", detail);
        return json_pack("{s:s, s:o}", "type", "image_url", "image_url", image);
    }
    return fail(err, where,
                "%s.type \"%.40s\" is not supported: switchboard takes input_text, output_text, refusal and input_image", where,
                type),
           NULL;
}

/* A message's content: a string as is, a list of parts converted one by one (new reference). */
static json_t *convert_content(json_t *content, const char *where, sb_request_error_t *err)
{
    if (json_is_string(content))
        return json_incref(content);
    if (!json_is_array(content))
        return fail(err, where, "%s must be a string or an array of content parts", where), NULL;
    json_t *parts = json_array();
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        char pw[96];
        snprintf(pw, sizeof(pw), "%s[%zu]", where, i);
        json_t *p = convert_part(part, pw, err);
        if (p == NULL) {
            json_decref(parts);
            return NULL;
        }
        json_array_append_new(parts, p);
    }
    return parts;
}

/*
 * The assistant message a function_call item joins: the last message when it
 * is an assistant's with no tool results after it, else a new one. Chat
 * Completions wants a round's calls on one assistant message, its results after.
 */
static json_t *assistant_for_calls(json_t *messages)
{
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    if (last != NULL && is(json_object_get(last, "role"), "assistant"))
        return last;
    json_t *m = json_pack("{s:s, s:n}", "role", "assistant", "content");
    json_array_append_new(messages, m);
    return m;
}

static int convert_item(json_t *item, size_t i, json_t *messages, sb_request_error_t *err)
{
    char where[48];
    snprintf(where, sizeof(where), "input[%zu]", i);
    if (!json_is_object(item))
        return fail(err, where, "%s must be an object", where);
    const char *type = type_of(item);
    if (type == NULL)
        return fail(err, where, "%s.type must be a string", where);
    if (type[0] == '\0' || strcmp(type, "message") == 0) {
        json_t *role = json_object_get(item, "role");
        char rw[64], cw[64];
        snprintf(rw, sizeof(rw), "%s.role", where);
        snprintf(cw, sizeof(cw), "%s.content", where);
        if (!is(role, "user") && !is(role, "system") && !is(role, "developer") && !is(role, "assistant"))
            return fail(err, rw, "%s must be one of user, system, developer, assistant", rw);
        json_t *content = convert_content(json_object_get(item, "content"), cw, err);
        if (content == NULL)
            return -1;
        json_array_append_new(messages, json_pack("{s:O, s:o}", "role", role, "content", content));
        return 0;
    }
    if (strcmp(type, "function_call") == 0) {
        json_t *call_id = json_object_get(item, "call_id"), *name = json_object_get(item, "name");
        json_t *args = json_object_get(item, "arguments");
        if (!json_is_string(call_id) || !json_is_string(name) || !json_is_string(args))
            return fail(err, where, "%s (function_call) needs string call_id, name and arguments", where);
        json_t *assistant = assistant_for_calls(messages);
        json_t *calls = json_object_get(assistant, "tool_calls");
        if (calls == NULL) {
            calls = json_array();
            json_object_set_new(assistant, "tool_calls", calls);
        }
        json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:O, s:O}}", "id", call_id, "type", "function", "function", "name",
                                               name, "arguments", args));
        return 0;
    }
    if (strcmp(type, "function_call_output") == 0) {
        json_t *call_id = json_object_get(item, "call_id"), *output = json_object_get(item, "output");
        char ow[64];
        snprintf(ow, sizeof(ow), "%s.output", where);
        if (!json_is_string(call_id))
            return fail(err, where, "%s (function_call_output) needs a string call_id", where);
        json_t *content = json_is_string(output) ? json_incref(output) : convert_content(output, ow, err);
        if (content == NULL)
            return -1;
        json_array_append_new(messages, json_pack("{s:s, s:O, s:o}", "role", "tool", "tool_call_id", call_id, "content", content));
        return 0;
    }
    if (strcmp(type, "reasoning") == 0)
        return 0; /* a reasoning model's own notes: no Chat Completions provider can take them back, and none needs them */
    if (strcmp(type, "item_reference") == 0)
        return fail(err, where,
                    "%s: item_reference is not supported: switchboard keeps no server-side state; send the items themselves "
                    "(with the AI SDK: providerOptions.openai.store = false)",
                    where);
    return fail(err, where, "%s.type \"%.40s\" is not supported: switchboard takes message, function_call and function_call_output",
                where, type);
}

/* Flat Responses function tools → Chat Completions tools (new reference). */
static json_t *convert_tools(json_t *tools, sb_request_error_t *err)
{
    if (!json_is_array(tools))
        return fail(err, "tools", "tools must be an array"), NULL;
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        char where[32];
        snprintf(where, sizeof(where), "tools[%zu]", i);
        const char *type = json_is_object(t) ? type_of(t) : NULL;
        if (type == NULL || strcmp(type, "function") != 0) {
            json_decref(out);
            if (type == NULL)
                return fail(err, where, "%s must be an object with a string type", where), NULL;
            return fail(err, where, "%s.type \"%.40s\" is not supported: switchboard relays function tools", where, type), NULL;
        }
        json_t *fn = json_object();
        static const char *const keys[] = {"name", "description", "parameters", "strict"};
        for (size_t k = 0; k < 4; ++k) {
            json_t *v = json_object_get(t, keys[k]);
            if (v != NULL && !json_is_null(v))
                json_object_set(fn, keys[k], v);
        }
        json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    return out;
}

/* tool_choice: the strings pass; {type:function, name} becomes Chat Completions' nested form. */
static json_t *convert_tool_choice(json_t *v, sb_request_error_t *err)
{
    if (json_is_string(v))
        return json_incref(v); /* checked by the chat parser */
    if (json_is_object(v) && is(json_object_get(v, "type"), "function") && json_is_string(json_object_get(v, "name")))
        return json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", json_object_get(v, "name"));
    return fail(err, "tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"name\":...}"),
           NULL;
}

/* text.format → response_format: json_schema's flat fields go into Chat Completions' nested json_schema. */
static int convert_text(json_t *text, json_t *chat, sb_request_error_t *err)
{
    json_t *format = json_object_get(text, "format");
    if (!json_is_object(text) || (format != NULL && !json_is_object(format)))
        return fail(err, "text", "text must be an object whose format is an object");
    if (format == NULL || is(json_object_get(format, "type"), "text"))
        return 0;
    if (is(json_object_get(format, "type"), "json_object")) {
        json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
        return 0;
    }
    if (is(json_object_get(format, "type"), "json_schema")) {
        json_t *schema = json_object();
        static const char *const keys[] = {"name", "description", "schema", "strict"};
        for (size_t k = 0; k < 4; ++k) {
            json_t *v = json_object_get(format, keys[k]);
            if (v != NULL && !json_is_null(v))
                json_object_set(schema, keys[k], v);
        }
        json_object_set_new(chat, "response_format", json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", schema));
        return 0;
    }
    return fail(err, "text.format.type", "text.format.type must be text, json_object or json_schema");
}

/* The Chat Completions request for `root`, or NULL with `err` filled. */
static json_t *translate(json_t *root, sb_request_error_t *err)
{
    if (!json_is_object(root))
        return fail(err, NULL, "request body must be a JSON object"), NULL;
    json_t *v = json_object_get(root, "previous_response_id");
    if (v != NULL && !json_is_null(v))
        return fail(err, "previous_response_id",
                    "previous_response_id is not supported: switchboard keeps no server-side state; send the whole "
                    "conversation in input"),
               NULL;
    v = json_object_get(root, "conversation");
    if (v != NULL && !json_is_null(v))
        return fail(err, "conversation",
                    "conversation is not supported: switchboard keeps no server-side state; send the whole conversation in input"),
               NULL;
    if (json_is_true(json_object_get(root, "background")))
        return fail(err, "background", "background is not supported: a response is answered while the client waits"), NULL;

    json_t *chat = json_object(), *messages = json_array();
    json_object_set_new(chat, "messages", messages);
    json_t *instructions = json_object_get(root, "instructions");
    if (instructions != NULL && !json_is_null(instructions)) {
        if (!json_is_string(instructions)) {
            fail(err, "instructions", "instructions must be a string");
            goto fail;
        }
        json_array_append_new(messages, json_pack("{s:s, s:O}", "role", "system", "content", instructions));
    }
    json_t *input = json_object_get(root, "input");
    if (json_is_string(input)) {
        json_array_append_new(messages, json_pack("{s:s, s:O}", "role", "user", "content", input));
    } else if (json_is_array(input)) {
        size_t i;
        json_t *item;
        json_array_foreach(input, i, item) if (convert_item(item, i, messages, err) != 0) goto fail;
    } else {
        fail(err, "input", input == NULL ? "input is required" : "input must be a string or an array of items");
        goto fail;
    }
    if (json_array_size(messages) == 0) {
        fail(err, "input", "input must not be empty");
        goto fail;
    }

    /* passed on as they are: the chat parser checks them */
    static const char *const same[] = {"model", "stream",       "temperature", "top_p",          "parallel_tool_calls",
                                       "user",  "service_tier", "customer_id", "customer_email", "turn_id"};
    for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); ++k) {
        v = json_object_get(root, same[k]);
        if (v != NULL && !json_is_null(v))
            json_object_set(chat, same[k], v);
    }
    if ((v = json_object_get(root, "max_output_tokens")) != NULL && !json_is_null(v))
        json_object_set(chat, "max_tokens", v);
    json_t *effort = json_object_get(json_object_get(root, "reasoning"), "effort");
    if (json_is_string(effort))
        json_object_set(chat, "reasoning_effort", effort);
    if ((v = json_object_get(root, "tools")) != NULL && !json_is_null(v)) {
        json_t *tools = convert_tools(v, err);
        if (tools == NULL)
            goto fail;
        if (json_array_size(tools) > 0)
            json_object_set_new(chat, "tools", tools);
        else
            json_decref(tools);
    }
    if ((v = json_object_get(root, "tool_choice")) != NULL && !json_is_null(v)) {
        json_t *choice = convert_tool_choice(v, err);
        if (choice == NULL)
            goto fail;
        json_object_set_new(chat, "tool_choice", choice);
    }
    if ((v = json_object_get(root, "text")) != NULL && !json_is_null(v) && convert_text(v, chat, err) != 0)
        goto fail;
    return chat;
fail:
    json_decref(chat);
    return NULL;
}

/* The chat parser names chat fields: say them as the Responses client wrote them. */
static void rename_params(sb_request_error_t *err)
{
    if (strcmp(err->param, "max_tokens") == 0) {
        char msg[sizeof(err->message)];
        const char *rest = strncmp(err->message, "max_tokens", 10) == 0 ? err->message + 10 : NULL;
        if (rest != NULL) {
            snprintf(msg, sizeof(msg), "max_output_tokens%s", rest);
            memcpy(err->message, msg, sizeof(msg));
        }
        snprintf(err->param, sizeof(err->param), "max_output_tokens");
    } else if (strncmp(err->param, "messages", 8) == 0) {
        snprintf(err->param, sizeof(err->param), "input"); /* instructions and input items, counted together */
    }
}

/* The parameters the response object repeats, as compact JSON members. */
static char *make_echo(json_t *root)
{
    json_t *o = json_object();
    static const char *const keys[] = {"instructions", "max_output_tokens", "temperature", "top_p", "tool_choice", "tools"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); ++k) {
        json_t *v = json_object_get(root, keys[k]);
        json_object_set(o, keys[k], v != NULL ? v : json_null());
    }
    if (json_is_null(json_object_get(o, "tool_choice")))
        json_object_set_new(o, "tool_choice", json_string("auto"));
    if (json_is_null(json_object_get(o, "tools")))
        json_object_set_new(o, "tools", json_array());
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (text == NULL || strlen(text) < 2)
        return sb_strdup("\"tools\":[]"); /* cannot happen: the values were parsed as JSON */
    size_t n = strlen(text);
    memmove(text, text + 1, n - 2);
    text[n - 2] = '\0';
    return text;
}

int sb_responses_request_parse_body(const char *body, size_t len, const char *default_model, const sb_engine_ids_t *ids,
                                    sb_chat_request_t *out, char **echo, sb_request_error_t *err)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    *echo = NULL;
    err->kind = SB_OK;
    err->param[0] = err->message[0] = '\0';
    json_t *root = sb_json_loadb(body, len, &jerr);
    if (root == NULL) {
        err->kind = SB_E_INVALID_JSON;
        snprintf(err->message, sizeof(err->message), "request body is not valid json: %s at line %d column %d", jerr.text,
                 jerr.line, jerr.column);
        return -1;
    }
    json_t *chat = translate(root, err);
    int rc = -1;
    if (chat != NULL) {
        rc = sb_chat_request_parse(chat, default_model, ids, out, err);
        if (rc != 0)
            rename_params(err);
        json_decref(chat);
    }
    if (rc == 0)
        *echo = make_echo(root);
    json_decref(root);
    return rc;
}
