/*
 * Gemini's wire format (generativelanguage.googleapis.com, streamGenerateContent
 * with alt=sse): the cleaned Chat Completions request said as a
 * GenerateContentRequest, and each streamed GenerateContentResponse read into
 * the turn's typed delta.
 *
 * Gemini gives function calls no ids and wants each call's thoughtSignature
 * back on the same part in the next round, while switchboard keeps the
 * conversation in OpenAI's shape. So this wire mints the ids and carries the
 * signature inside them (see mint_id); the body builder finds it there again,
 * whether the round ran switchboard's own tools or the client sent the
 * conversation back with its own results.
 */
#include <ctype.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/alloc.h"
#include "sb/buf.h"
#include "jscan_keys.h"
#include "sb/json.h"
#include "wire.h"

#define DEFAULT_BASE_URL "https://generativelanguage.googleapis.com/v1beta"
#define MAX_CALLS 1024        /* function calls in one stream: the turn keeps fewer, chunk.c's index limit is the same */
#define MAX_SCHEMA_DEPTH 32   /* nested schemas (and $ref hops) converted; deeper ones are cut off */
#define MAX_SCHEMA_NODES 4096 /* schemas converted per tool: a $ref used twice in itself would otherwise double each level */
#define ID_RANDOM 12          /* random characters in a minted call id */
/*
 * The longest signature carried in a call id, in base64url characters. The
 * turn keeps ids up to SB_CHUNK_MAX_CALL_ID bytes; recorded signatures are
 * about 800 characters. A longer one is dropped (the next round then goes
 * without it, which Gemini 2.5 accepts and Gemini 3 refuses with a 400).
 */
#define MAX_SIGNATURE (SB_CHUNK_MAX_CALL_ID - 64)
#define SIGNATURE_TAG "_ts_"

/* What spans the events of one streamed answer. */
struct state {
    unsigned ncalls; /* function calls so far: the next call's index */
    /* the usage reported so far: Gemini sends running totals, the turn adds up what it is told */
    long long said_prompt, said_completion, said_total;
    char message[160]; /* an error message this wire words, kept for the caller */
};

/* --- call ids ------------------------------------------------------------------------------------ */

/*
 * Writes `sig` at out as base64url without padding when it is canonical
 * padded base64 (what Gemini sends: its bytes come back exactly from the
 * form the id carries), and returns how many bytes that is; 0 (with
 * whatever was written past out left there) when it is not. The characters
 * are checked and translated with no branch, which lets the compiler take
 * several at a time: a signature runs to a kilobyte, and there is one with
 * every call.
 */
static size_t url_base64(char *restrict out, const char *restrict sig, size_t len)
{
    if (len == 0 || len % 4 != 0 || len - (sig[len - 1] == '=') - (sig[len - 2] == '=') > MAX_SIGNATURE)
        return 0;
    size_t body = len;
    while (body > len - 2 && sig[body - 1] == '=')
        --body;
    unsigned char good = 1;
    for (size_t i = 0; i < body; ++i) {
        unsigned char c = (unsigned char)sig[i];
        /* [A-Za-z0-9+/], in ASCII whatever the locale */
        good &= (unsigned char)((unsigned char)((c | 0x20) - 'a') < 26) | (unsigned char)((unsigned char)(c - '0') < 10) |
                (unsigned char)(c == '+') | (unsigned char)(c == '/');
        out[i] = (char)(c == '+' ? '-' : c == '/' ? '_' : c);
    }
    return good ? body : 0;
}

/*
 * A new call id: "call_<index>_<12 random [a-z0-9]>", and when the call came
 * with a thought signature, "_ts_" and the signature in base64url without
 * padding. Ids stay within [A-Za-z0-9_-], which every engine and provider
 * takes; the random part keeps them unique across the rounds of a
 * conversation (the index starts again at 0 in every answer). `out` has room
 * for id_room(sig_len) bytes.
 */
static size_t mint_id(char *out, unsigned index, const char *sig, size_t sig_len)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char digits[16];
    size_t n = 0, nd = 0;
    memcpy(out, "call_", 5);
    do
        digits[nd++] = (char)('0' + index % 10);
    while ((index /= 10) > 0);
    while (nd > 0)
        out[5 + n++] = digits[--nd];
    n += 5;
    out[n++] = '_';
    for (size_t i = 0; i < ID_RANDOM;) { /* one draw of random bytes, rarely two */
        unsigned char r[ID_RANDOM];
        randombytes_buf(r, sizeof(r));
        for (size_t k = 0; k < sizeof(r) && i < ID_RANDOM; ++k)
            if (r[k] < 252) /* 7 x 36: a byte past it would favour the first characters */
                out[n + i++] = alphabet[r[k] % 36];
    }
    n += ID_RANDOM;
    if (sig != NULL) {
        memcpy(out + n, SIGNATURE_TAG, sizeof(SIGNATURE_TAG) - 1);
        size_t m = url_base64(out + n + sizeof(SIGNATURE_TAG) - 1, sig, sig_len);
        if (m > 0)
            n += sizeof(SIGNATURE_TAG) - 1 + m;
    }
    return n;
}

/* The bytes mint_id writes at most for a signature of `sig_len` bytes. */
static size_t id_room(size_t sig_len)
{
    return 24 + ID_RANDOM + sizeof(SIGNATURE_TAG) + sig_len;
}

/*
 * The thought signature a minted id carries, as Gemini sent it (padded
 * base64), or NULL for any other id: one the client made, one minted
 * without a signature, one that does not have the exact form.
 */
static json_t *signature_of(const char *id, size_t len)
{
    size_t i = 5;
    if (len < 5 || memcmp(id, "call_", 5) != 0)
        return NULL;
    size_t digits = i;
    while (i < len && i - digits < 5 && isdigit((unsigned char)id[i]))
        ++i;
    if (i == digits || i >= len || id[i++] != '_')
        return NULL;
    for (size_t r = 0; r < ID_RANDOM; ++r, ++i)
        if (i >= len || !(islower((unsigned char)id[i]) || isdigit((unsigned char)id[i])))
            return NULL;
    size_t tag = sizeof(SIGNATURE_TAG) - 1;
    if (len - i <= tag || memcmp(id + i, SIGNATURE_TAG, tag) != 0)
        return NULL;
    i += tag;
    size_t n = len - i;
    if (n % 4 == 1 || n > MAX_SIGNATURE)
        return NULL;
    char *sig = sb_alloc(n + 3);
    for (size_t k = 0; k < n; ++k) {
        char c = id[i + k];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_')) {
            free(sig);
            return NULL;
        }
        sig[k] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    while (n % 4 != 0)
        sig[n++] = '=';
    json_t *s = json_stringn(sig, n);
    free(sig);
    return s;
}

/* --- the request -------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static json_t *text_part(const char *s, size_t len)
{
    return json_pack("{s:s%}", "text", s, len);
}

/*
 * The parts of a message's content: a string is one text part (none when
 * empty: Gemini refuses empty text), an array's text parts one part each.
 * Other kinds of part (images, audio) are not carried yet.
 */
static int content_parts(json_t *content, json_t *parts, size_t idx, char *err, size_t errlen)
{
    if (json_is_string(content)) {
        if (json_string_length(content) > 0)
            json_array_append_new(parts, text_part(json_string_value(content), json_string_length(content)));
        return 0;
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *text = json_is_string(part) ? part : json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_string(text) || (type != NULL && strcmp(type, "text") != 0))
            return fail(err, errlen, "messages[%zu].content[%zu] is a kind of part switchboard cannot send to gemini yet", idx, i);
        if (json_string_length(text) > 0)
            json_array_append_new(parts, text_part(json_string_value(text), json_string_length(text)));
    }
    return 0;
}

/* Appends `parts` (taken) as a turn of `role`, into the last turn when it has the same role: Gemini wants turns to alternate. */
static void add_turn(json_t *contents, const char *role, json_t *parts)
{
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return;
    }
    json_t *last = json_array_get(contents, json_array_size(contents) - 1);
    const char *last_role = json_string_value(json_object_get(last, "role"));
    if (last_role != NULL && strcmp(last_role, role) == 0) {
        json_array_extend(json_object_get(last, "parts"), parts);
        json_decref(parts);
        return;
    }
    json_array_append_new(contents, json_pack("{s:s, s:o}", "role", role, "parts", parts));
}

/* The name of the call `id` answers, from the assistant messages before message `upto`; NULL when none. */
static const char *name_of_call(json_t *messages, size_t upto, const char *id)
{
    for (size_t i = upto; i-- > 0;) {
        size_t k;
        json_t *call;
        json_array_foreach(json_object_get(json_array_get(messages, i), "tool_calls"), k, call)
        {
            const char *cid = json_string_value(json_object_get(call, "id"));
            if (cid != NULL && strcmp(cid, id) == 0)
                return json_string_value(json_object_get(json_object_get(call, "function"), "name"));
        }
    }
    return NULL;
}

/* An assistant message's calls as functionCall parts, each with the signature its id carries. */
static int call_parts(json_t *tool_calls, json_t *parts, size_t idx, char *err, size_t errlen)
{
    size_t k;
    json_t *call;
    json_array_foreach(tool_calls, k, call)
    {
        json_t *fn = json_object_get(call, "function");
        json_t *name = json_object_get(fn, "name"), *arguments = json_object_get(fn, "arguments");
        if (!json_is_string(name))
            return fail(err, errlen, "messages[%zu].tool_calls[%zu].function.name must be a string", idx, k);
        json_t *args = NULL;
        if (arguments == NULL || json_is_null(arguments) || (json_is_string(arguments) && json_string_length(arguments) == 0))
            args = json_object();
        else if (json_is_object(arguments))
            args = json_incref(arguments);
        else if (json_is_string(arguments)) /* apart: jansson's json_is_* macros evaluate their argument twice */
            args = json_loadb(json_string_value(arguments), json_string_length(arguments), 0, NULL);
        if (!json_is_object(args)) {
            json_decref(args);
            return fail(err, errlen, "messages[%zu].tool_calls[%zu].function.arguments must be a JSON object for gemini", idx, k);
        }
        json_t *part = json_pack("{s:{s:O, s:o}}", "functionCall", "name", name, "args", args);
        json_t *id = json_object_get(call, "id");
        json_t *sig = json_is_string(id) ? signature_of(json_string_value(id), json_string_length(id)) : NULL;
        if (sig != NULL)
            json_object_set_new(part, "thoughtSignature", sig);
        json_array_append_new(parts, part);
    }
    return 0;
}

/* A tool result as a functionResponse part: its JSON when it is JSON, else its text, under "result". */
static int response_part(json_t *messages, size_t idx, json_t *m, json_t *parts, char *err, size_t errlen)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *name;
    if (strcmp(role, "function") == 0) {
        name = json_string_value(json_object_get(m, "name"));
        if (name == NULL)
            return fail(err, errlen, "messages[%zu].name is needed to send a function result to gemini", idx);
    } else {
        const char *id = json_string_value(json_object_get(m, "tool_call_id"));
        name = name_of_call(messages, idx, id);
        if (name == NULL)
            return fail(err, errlen, "messages[%zu].tool_call_id names no earlier tool call, and gemini needs the tool's name",
                        idx);
    }
    json_t *content = json_object_get(m, "content");
    json_t *result;
    if (json_is_string(content)) {
        result = json_loadb(json_string_value(content), json_string_length(content), JSON_DECODE_ANY, NULL);
        if (result == NULL)
            result = json_incref(content);
    } else {
        sb_buf_t text; /* text parts, joined */
        sb_buf_init(&text, SIZE_MAX);
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            json_t *t = json_is_string(part) ? part : json_object_get(part, "text");
            if (json_is_string(t))
                sb_buf_append(&text, json_string_value(t), json_string_length(t));
        }
        result = json_stringn(text.base != NULL ? text.base : "", text.len);
        sb_buf_dispose(&text);
    }
    json_array_append_new(parts, json_pack("{s:{s:s, s:{s:o}}}", "functionResponse", "name", name, "response", "result", result));
    return 0;
}

/* --- JSON Schema to Gemini's Schema -------------------------------------------------------------- */

/*
 * Gemini's Schema is a subset of OpenAPI 3.0's: these keys, and `type` as one
 * upper-case name. Anything else (additionalProperties, $schema, strict,
 * const, oneOf, patternProperties, ...) makes it refuse the whole request.
 */
static const char *const kept_keys[] = {"title",   "description", "nullable",  "maxItems",      "minItems",
                                        "minimum", "maximum",     "minLength", "maxLength",     "minProperties",
                                        "pattern", "default",     "example",   "maxProperties", "propertyOrdering"};

typedef struct {
    json_t *root;  /* the schema local references ($ref) point into */
    unsigned left; /* schemas still to convert */
} schema_ctx_t;

static json_t *convert_schema(json_t *s, schema_ctx_t *cx, unsigned depth);

/* A local reference ("#/$defs/Name" or "#/definitions/Name") looked up in the root schema; NULL when not one. */
static json_t *resolve_ref(const char *ref, json_t *root)
{
    static const char *const homes[][2] = {{"#/$defs/", "$defs"}, {"#/definitions/", "definitions"}};
    for (size_t i = 0; i < sizeof(homes) / sizeof(homes[0]); ++i) {
        size_t n = strlen(homes[i][0]);
        if (strncmp(ref, homes[i][0], n) == 0 && strchr(ref + n, '/') == NULL)
            return json_object_get(json_object_get(root, homes[i][1]), ref + n);
    }
    return NULL;
}

static const char *gemini_type(json_t *name)
{
    static const char *const types[][2] = {{"string", "STRING"},   {"number", "NUMBER"}, {"integer", "INTEGER"},
                                           {"boolean", "BOOLEAN"}, {"array", "ARRAY"},   {"object", "OBJECT"}};
    const char *t = json_string_value(name);
    for (size_t i = 0; t != NULL && i < sizeof(types) / sizeof(types[0]); ++i)
        if (strcasecmp(t, types[i][0]) == 0)
            return types[i][1];
    return NULL;
}

/* The formats Gemini's API takes for each type; others are refused, so they are dropped. */
static int format_allowed(const char *type, const char *format)
{
    if (type == NULL)
        return 0;
    if (strcmp(type, "STRING") == 0)
        return strcmp(format, "enum") == 0 || strcmp(format, "date-time") == 0;
    if (strcmp(type, "NUMBER") == 0)
        return strcmp(format, "float") == 0 || strcmp(format, "double") == 0;
    if (strcmp(type, "INTEGER") == 0)
        return strcmp(format, "int32") == 0 || strcmp(format, "int64") == 0;
    return 0;
}

/*
 * `type`: one name, or a list, in which "null" is said with nullable and
 * several other names become anyOf. Returns the one type, or NULL.
 */
static const char *convert_type(json_t *type, json_t *out)
{
    if (!json_is_array(type))
        return gemini_type(type);
    const char *one = NULL;
    json_t *alternatives = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(type, i, name)
    {
        const char *g = gemini_type(name);
        if (json_is_string(name) && strcmp(json_string_value(name), "null") == 0)
            json_object_set_new(out, "nullable", json_true());
        else if (g != NULL)
            json_array_append_new(alternatives, json_pack("{s:s}", "type", one = g));
    }
    if (json_array_size(alternatives) > 1) {
        json_object_set(out, "anyOf", alternatives);
        one = NULL;
    }
    json_decref(alternatives);
    return one;
}

static json_t *convert_schema(json_t *s, schema_ctx_t *cx, unsigned depth)
{
    if (!json_is_object(s) || depth >= MAX_SCHEMA_DEPTH || cx->left == 0)
        return json_object();
    --cx->left;
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    json_t *target = ref != NULL ? resolve_ref(ref, cx->root) : NULL;
    if (target != NULL)
        return convert_schema(target, cx, depth + 1);
    json_t *out = json_object();
    for (size_t i = 0; i < sizeof(kept_keys) / sizeof(kept_keys[0]); ++i) {
        json_t *v = json_object_get(s, kept_keys[i]);
        if (v != NULL)
            json_object_set(out, kept_keys[i], v);
    }
    json_t *props = json_object_get(s, "properties"), *items = json_object_get(s, "items");
    const char *t = convert_type(json_object_get(s, "type"), out);
    if (t == NULL && json_is_object(props))
        t = "OBJECT";
    if (t == NULL && json_is_object(items))
        t = "ARRAY";
    if (t != NULL)
        json_object_set_new(out, "type", json_string(t));
    const char *format = json_string_value(json_object_get(s, "format"));
    if (format != NULL && format_allowed(t, format))
        json_object_set_new(out, "format", json_string(format));
    /* enum: strings only in Gemini; const is an enum of one */
    json_t *values = json_object_get(s, "enum"), *constant = json_object_get(s, "const");
    if (json_is_string(constant)) {
        json_object_set_new(out, "enum", json_pack("[O]", constant));
    } else if (json_is_array(values)) {
        int strings = json_array_size(values) > 0;
        size_t i;
        json_t *v;
        json_array_foreach(values, i, v) strings &= json_is_string(v);
        if (strings)
            json_object_set(out, "enum", values);
    }
    /* an OBJECT with no properties is refused: a free-form object stays an OBJECT without any */
    if (json_is_object(props) && json_object_size(props) > 0) {
        json_t *converted = json_object(), *required = json_array(), *v;
        const char *key;
        json_object_foreach(props, key, v) json_object_set_new(converted, key, convert_schema(v, cx, depth + 1));
        json_object_set_new(out, "properties", converted);
        size_t i;
        json_array_foreach(json_object_get(s, "required"), i, v)
        {
            if (json_is_string(v) && json_object_get(props, json_string_value(v)) != NULL) /* Gemini refuses others */
                json_array_append(required, v);
        }
        if (json_array_size(required) > 0)
            json_object_set(out, "required", required);
        json_decref(required);
    }
    if (json_is_object(items))
        json_object_set_new(out, "items", convert_schema(items, cx, depth + 1));
    json_t *any = json_object_get(s, "anyOf");
    if (!json_is_array(any))
        any = json_object_get(s, "oneOf"); /* Gemini has no oneOf: anyOf is the nearest it can check */
    if (json_array_size(any) > 0) {
        json_t *list = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(any, i, v) json_array_append_new(list, convert_schema(v, cx, depth + 1));
        json_object_set_new(out, "anyOf", list);
    }
    return out;
}

/* A JSON Schema said in Gemini's Schema: new reference. */
static json_t *gemini_schema(json_t *schema)
{
    schema_ctx_t cx = {schema, MAX_SCHEMA_NODES};
    return convert_schema(schema, &cx, 0);
}

/* The tools as one Tool of functionDeclarations; NULL when there are none. */
static int declarations(const sb_chat_request_t *req, json_t **tool, char *err, size_t errlen)
{
    json_t *list =
        req->offered_tools != NULL ? json_loads(req->offered_tools, 0, NULL) : json_incref(json_object_get(req->upstream, "tools"));
    *tool = NULL;
    if (json_array_size(list) == 0) {
        json_decref(list);
        return 0;
    }
    json_t *decls = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *fn = json_object_get(t, "function");
        if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(json_object_get(fn, "name"))) {
            json_decref(decls);
            json_decref(list);
            return fail(err, errlen, "tools[%zu] is not a function tool, the only kind switchboard sends to gemini", i);
        }
        json_t *d = json_pack("{s:O}", "name", json_object_get(fn, "name"));
        json_t *desc = json_object_get(fn, "description");
        if (json_is_string(desc))
            json_object_set(d, "description", desc);
        /* a function without parameters leaves them out: Gemini refuses an OBJECT with no properties */
        json_t *params = json_object_get(fn, "parameters");
        if (json_is_object(params) && json_object_size(json_object_get(params, "properties")) > 0)
            json_object_set_new(d, "parameters", gemini_schema(params));
        json_array_append_new(decls, d);
    }
    json_decref(list);
    *tool = json_pack("{s:o}", "functionDeclarations", decls);
    return 0;
}

/* tool_choice: none, auto, required (ANY) or one named function (ANY of one). */
static json_t *tool_config(json_t *choice)
{
    const char *mode = json_string_value(choice);
    const char *only = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    if (mode == NULL && only == NULL)
        return NULL;
    if (only != NULL)
        return json_pack("{s:{s:s, s:[s]}}", "functionCallingConfig", "mode", "ANY", "allowedFunctionNames", only);
    return json_pack("{s:{s:s}}", "functionCallingConfig", "mode",
                     strcmp(mode, "none") == 0       ? "NONE"
                     : strcmp(mode, "required") == 0 ? "ANY"
                                                     : "AUTO");
}

/*
 * The sampling parameters Gemini has a name for. The penalties and seed are
 * left out: some Gemini models refuse the request when they are set.
 */
static json_t *generation_config(json_t *up)
{
    static const char *const same[][2] = {{"temperature", "temperature"},
                                          {"top_p", "topP"},
                                          {"max_tokens", "maxOutputTokens"},
                                          {"max_completion_tokens", "maxOutputTokens"}}; /* the newer name wins */
    json_t *g = json_object();
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); ++i) {
        json_t *v = json_object_get(up, same[i][0]);
        if (v != NULL)
            json_object_set(g, same[i][1], v);
    }
    json_t *stop = json_object_get(up, "stop");
    if (json_is_string(stop))
        json_object_set_new(g, "stopSequences", json_pack("[O]", stop));
    else if (json_array_size(stop) > 0)
        json_object_set(g, "stopSequences", stop);
    if (json_object_size(g) == 0) {
        json_decref(g);
        return NULL;
    }
    return g;
}

static char *body(const sb_wire_target_t *target, const sb_chat_request_t *req, char *err, size_t errlen)
{
    (void)target;
    json_t *up = req->upstream, *messages = json_object_get(up, "messages");
    json_t *root = json_object(), *system = json_array(), *contents = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        json_t *parts = json_array();
        int rc = 0;
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Gemini has one system instruction: every system message goes there, in order */
            rc = content_parts(content, system, i, err, errlen);
            json_decref(parts);
            parts = NULL;
        } else if (strcmp(role, "user") == 0) {
            rc = content_parts(content, parts, i, err, errlen);
            role = "user";
        } else if (strcmp(role, "assistant") == 0) {
            if (!json_is_null(content))
                rc = content_parts(content, parts, i, err, errlen);
            if (rc == 0)
                rc = call_parts(json_object_get(m, "tool_calls"), parts, i, err, errlen);
            role = "model";
        } else { /* tool, function: results go back as the user's turn */
            rc = response_part(messages, i, m, parts, err, errlen);
            role = "user";
        }
        if (rc != 0) {
            json_decref(parts);
            goto fail;
        }
        if (parts != NULL)
            add_turn(contents, role, parts);
    }
    if (json_array_size(contents) == 0) {
        fail(err, errlen, "gemini needs at least one user or assistant message with something in it");
        goto fail;
    }
    if (json_array_size(system) > 0)
        json_object_set_new(root, "systemInstruction", json_pack("{s:O}", "parts", system));
    json_object_set(root, "contents", contents);
    json_t *tool;
    if (declarations(req, &tool, err, errlen) != 0)
        goto fail;
    if (tool != NULL) {
        json_object_set_new(root, "tools", json_pack("[o]", tool));
        json_t *tc = tool_config(json_object_get(up, "tool_choice"));
        if (tc != NULL)
            json_object_set_new(root, "toolConfig", tc);
    }
    json_t *g = generation_config(up);
    if (g != NULL)
        json_object_set_new(root, "generationConfig", g);
    /* numbers as the client wrote them (up to 15 digits), as sb_chat_request_dump sends them */
    char *text = sb_json_dumps(root, 15);
    if (text == NULL)
        fail(err, errlen, "the request for gemini would be larger than switchboard sends");
    json_decref(system);
    json_decref(contents);
    json_decref(root);
    return text;
fail:
    json_decref(system);
    json_decref(contents);
    json_decref(root);
    return NULL;
}

/* --- URL and headers ----------------------------------------------------------------------------- */

static char *url(const sb_wire_target_t *target)
{
    const char *base = target->base_url != NULL && target->base_url[0] != '\0' ? target->base_url : DEFAULT_BASE_URL;
    const char *model = target->model != NULL ? target->model : "";
    if (strncmp(model, "models/", 7) == 0) /* the name the API itself gives models: not doubled */
        model += 7;
    sb_buf_t b;
    sb_buf_init(&b, SIZE_MAX);
    sb_buf_appendz(&b, base);
    sb_buf_appendz(&b, "/models/");
    for (const char *p = model; *p != '\0'; ++p) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
            sb_buf_append(&b, p, 1);
        else
            sb_buf_appendf(&b, "%%%02X", c);
    }
    sb_buf_appendz(&b, ":streamGenerateContent?alt=sse");
    sb_buf_append(&b, "", 1);
    return b.base;
}

static struct curl_slist *headers(struct curl_slist *list, const char *key)
{
    list = sb_wire_key_header(list, "x-goog-api-key: ", key);
    return curl_slist_append(list, "content-type: application/json");
}

/* --- the stream ---------------------------------------------------------------------------------- */

/*
 * Each event is a whole GenerateContentResponse, read in one pass over its
 * bytes into the neutral form below, then turned into the delta in the order
 * the jansson reader this replaced checked things (tests/fuzz/wire_gemini_ref.c
 * is that reader, the fuzz target's oracle), so that the same event gives the
 * same delta or the same error. A repeat of a key the reader acts on is
 * refused, as its JSON_REJECT_DUPLICATES did; a repeat of any other is let
 * through (jscan.h's rule). The members every event carries (usage, model,
 * the candidate's skeleton) are found by comparing their keys as Gemini
 * writes them (jscan_keys.h), and the one part of each that nothing uses,
 * promptTokensDetails, is checked without a scan of its keys; the calls'
 * arguments are loaded once, in the pass, and said from that load.
 *
 * Scratch (as long as the event's data) is laid out as the reader goes: the
 * text parts, joined, from its start; strings decoded only to be looked at,
 * just past them, overwritten by the next. Nothing kept ever outgrows the text
 * it came from, so a decode always has room. The calls' names, arguments and
 * ids, and the model, are said after the pass, past the text, with the old
 * reader's room accounting: what did not fit it, fails or is left out here too.
 */

/* A string seen in the pass and decoded again only if used: names, signatures, the model, an error's message. */
typedef struct {
    const unsigned char *quote; /* its opening quote in the event's data; NULL when absent */
    size_t len;                 /* decoded */
    int plain;                  /* no escapes: the bytes after the quote are the string */
} later_t;

/* A functionCall part as the pass finds it. */
typedef struct {
    int shape_ok; /* a string name, args an object, null or absent, thoughtSignature a string or absent */
    later_t name, sig;
    const unsigned char *args; /* the args object as written; NULL for none (null or absent) */
    size_t args_len;
    json_t *loaded; /* args as loaded in the pass (owned by the event's list); NULL past the calls that are said */
} call_t;

typedef struct {
    char *scratch;
    size_t front;     /* scratch bytes holding the joined text (0 while it is one run in the data) */
    sb_str_t content; /* the text so far */
    int has_error;    /* a non-null "error" member */
    int has_code;     /* error.code is an integer */
    long long code;
    later_t message;  /* error.message */
    size_t block_len; /* promptFeedback.blockReason when a string (block[] its first bytes) */
    int has_block;
    int bad_candidates, bad_parts, bad_text;
    size_t ncalls;     /* functionCall parts of candidates[0] */
    int shape_past;    /* the shape of the call past the last one kept: the old reader checked it before refusing it */
    size_t finish_len; /* candidates[0].finishReason when a string (finish[] its first bytes: the longest a message shows) */
    int has_finish;
    int has_usage, bad_count;
    long long prompt, candidates, thoughts, total;
    later_t model;
    size_t nloaded; /* args loaded in the pass, freed when the event has been said */
    /* from here on, only what is written before it is read: the reader clears only what comes before */
    char block[64];
    char finish[160];
    json_t *loaded[SB_CHUNK_MAX_TOOLS];
    call_t calls[SB_CHUNK_MAX_TOOLS];
} gem_event_t;

/* Reads a string to decode later (the cursor at its quote). */
static int see(sb_jscan_t *s, later_t *l)
{
    const unsigned char *q = s->p;
    sb_str_t v;
    if (sb_jscan_string(s, &v, 0) != SB_JSCAN_OK)
        return SB_JSCAN_SYNTAX;
    *l = (later_t){q, v.len, v.base == (const char *)q + 1};
    return SB_JSCAN_OK;
}

/* Reads a string and keeps its first `cap` bytes in buf (the cursor at its quote). */
static int see_into(sb_jscan_t *s, char *buf, size_t cap, size_t *len)
{
    sb_str_t v;
    if (sb_jscan_string(s, &v, 0) != SB_JSCAN_OK)
        return SB_JSCAN_SYNTAX;
    memcpy(buf, v.base, v.len < cap ? v.len : cap);
    *len = v.len;
    return SB_JSCAN_OK;
}

/* A string seen earlier, decoded into dst (room for l->len bytes) unless it needs no decoding. */
static const char *decoded(const later_t *l, const char *data, size_t len, char *dst)
{
    if (l->plain)
        return (const char *)l->quote + 1;
    sb_jscan_t t = {l->quote, (const unsigned char *)data + len, dst, NULL};
    sb_str_t v;
    sb_jscan_string(&t, &v, 1); /* read once already: it is valid, and l->len bytes long */
    return dst;
}

/* The value at the cursor is an object: steps in and returns 1; else skips it and returns 0; or SB_JSCAN_SYNTAX. */
static int enter(sb_jscan_t *s, unsigned depth)
{
    if (sb_jscan_peek(s) != '{')
        return sb_jscan_skip(s, depth) == SB_JSCAN_OK ? 0 : SB_JSCAN_SYNTAX;
    ++s->p;
    return 1;
}

/*
 * The objects the pass walks. Each lists the keys it knows, most frequent
 * first, as an X-list for SB_JSCAN_NEXT_MEMBER: a bit for each key it acts on
 * (a repeat of one refuses the event: jscan.h's rule), 0 for a key it only
 * skips, listed when Gemini sends it in every event (found without a scan).
 */
#define CALL_KEYS(X) X(NAME, "name") X(ARGS, "args")
#define PART_KEYS(X) X(TEXT, "text") X(THOUGHT, "thought") X(CALL, "functionCall") X(SIGNATURE, "thoughtSignature")
#define CONTENT_KEYS(X) X(PARTS, "parts") X(0, "role")
#define CANDIDATE_KEYS(X) X(CONTENT, "content") X(0, "index") X(FINISH, "finishReason")
#define USAGE_KEYS(X)                                                                                                              \
    X(PROMPT, "promptTokenCount")                                                                                                  \
    X(CANDIDATES, "candidatesTokenCount")                                                                                          \
    X(TOTAL, "totalTokenCount") X(DETAILS, "promptTokensDetails") X(THOUGHTS, "thoughtsTokenCount")
#define DETAIL_KEYS(X) X(0, "modality") X(0, "tokenCount")
#define ERROR_KEYS(X) X(CODE, "code") X(MESSAGE, "message")
#define FEEDBACK_KEYS(X) X(BLOCK, "blockReason")
#define RESPONSE_KEYS(X)                                                                                                           \
    X(CANDIDATES, "candidates")                                                                                                    \
    X(USAGE, "usageMetadata") X(MODEL, "modelVersion") X(0, "responseId") X(ERROR, "error") X(FEEDBACK, "promptFeedback")

/* A functionCall's value: its name and args (anything but an object has no name, and the wrong shape). */
static int read_call(sb_jscan_t *s, call_t *c, gem_event_t *e)
{
    enum { NAME = 1, ARGS = 2 };
    unsigned seen = 0, k;
    int first = 1, rc, in, args_ok = 1;
    if ((in = enter(s, 6)) <= 0)
        return in;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, CALL_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        int c0 = sb_jscan_peek(s);
        if (k == NAME && c0 == '"') {
            rc = see(s, &c->name);
        } else if (k == ARGS && c0 == '{') {
            const unsigned char *from = s->p;
            if (sb_jscan_skip(s, 7) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            c->args = from;
            c->args_len = (size_t)(s->p - from);
            /*
             * The arguments are said as jansson writes them (sb_json_dumps: compact, its number forms), as they were
             * before, from this one load; calls are a few per answer. They are relayed whole, so every key in them is
             * one acted on: a repeat refuses the whole event, as it did.
             */
            json_t *args = json_loadb((const char *)from, c->args_len, JSON_REJECT_DUPLICATES, NULL);
            if (args == NULL)
                return SB_JSCAN_SYNTAX;
            if (e->nloaded < SB_CHUNK_MAX_TOOLS) /* every call that can be said is among the first so many loaded */
                c->loaded = e->loaded[e->nloaded++] = args;
            else
                json_decref(args);
            rc = SB_JSCAN_OK;
        } else {
            if (k == ARGS)
                args_ok = c0 == 'n';
            rc = sb_jscan_skip(s, 7);
        }
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    c->shape_ok = c->name.quote != NULL && args_ok;
    return SB_JSCAN_OK;
}

/* Makes the joined text one run at the start of scratch, so that the next part's text can follow it there. */
static void text_to_front(gem_event_t *e)
{
    if (e->content.base != NULL && e->front == 0) {
        memcpy(e->scratch, e->content.base, e->content.len);
        e->front = e->content.len;
        e->content.base = e->scratch;
    }
}

static int read_part(sb_jscan_t *s, gem_event_t *e)
{
    enum { TEXT = 1, THOUGHT = 2, CALL = 4, SIGNATURE = 8 };
    unsigned seen = 0, k;
    sb_str_t text = {NULL, 0};
    int first = 1, rc, in, thought = 0, text_ok = 1, sig_ok = 1;
    call_t call = {0};
    if ((in = enter(s, 5)) <= 0)
        return in;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, PART_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        int c0 = sb_jscan_peek(s);
        switch (k) {
        case TEXT:
            text_ok = c0 == '"';
            if (text_ok) {
                text_to_front(e);
                s->scratch = e->scratch + e->front; /* decoded, it lands right after the text before it */
                rc = sb_jscan_string(s, &text, 1);
            } else {
                rc = sb_jscan_skip(s, 6);
            }
            break;
        case THOUGHT:
            thought = c0 == 't';
            rc = sb_jscan_skip(s, 6);
            break;
        case CALL:
            rc = read_call(s, &call, e);
            break;
        case SIGNATURE:
            sig_ok = c0 == '"';
            rc = sig_ok ? see(s, &call.sig) : sb_jscan_skip(s, 6);
            break;
        default:
            rc = sb_jscan_skip(s, 6);
        }
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    if (!thought && (seen & TEXT) && !text_ok) {
        e->bad_text = 1;
    } else if (!thought && text.len > 0) { /* thought summaries are not the answer */
        int in_scratch = text.base == e->scratch + e->front;
        if (e->content.base == NULL) {
            e->content = text;
        } else {
            if (!in_scratch)
                memcpy(e->scratch + e->front, text.base, text.len);
            e->content.len += text.len;
        }
        if (in_scratch || e->front > 0)
            e->front += text.len;
    }
    s->scratch = e->scratch + e->front;
    if (seen & CALL) {
        call.shape_ok &= sig_ok;
        if (e->ncalls < SB_CHUNK_MAX_TOOLS)
            e->calls[e->ncalls] = call;
        else if (e->ncalls == SB_CHUNK_MAX_TOOLS)
            e->shape_past = call.shape_ok;
        ++e->ncalls;
    }
    return SB_JSCAN_OK;
}

/* candidates[0].content: its parts, each read as it comes. */
static int read_content(sb_jscan_t *s, gem_event_t *e)
{
    enum { PARTS = 1 };
    unsigned seen = 0, k;
    int first = 1, rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, CONTENT_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        if (k != PARTS) {
            rc = sb_jscan_skip(s, 4);
        } else if (sb_jscan_peek(s) != '[') {
            e->bad_parts = 1; /* null too: present, and not an array */
            rc = sb_jscan_skip(s, 4);
        } else {
            int first_part = 1;
            ++s->p;
            while ((rc = sb_jscan_element(s, &first_part)) > 0)
                if (read_part(s, e) != SB_JSCAN_OK)
                    return SB_JSCAN_SYNTAX;
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

static int read_candidate(sb_jscan_t *s, gem_event_t *e)
{
    enum { CONTENT = 1, FINISH = 2 };
    unsigned seen = 0, k;
    int first = 1, rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, CANDIDATE_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        if (k == CONTENT) {
            if ((rc = enter(s, 3)) == 1)
                rc = read_content(s, e);
        } else if (k == FINISH && sb_jscan_peek(s) == '"') {
            e->has_finish = 1;
            rc = see_into(s, e->finish, sizeof(e->finish), &e->finish_len);
        } else {
            rc = sb_jscan_skip(s, 3);
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

/* candidates: the first is read, the others only skipped (switchboard asks for one). */
static int read_candidates(sb_jscan_t *s, gem_event_t *e)
{
    int first = 1, rc;
    size_t i = 0;
    if (sb_jscan_peek(s) != '[') {
        e->bad_candidates = 1; /* null too */
        return sb_jscan_skip(s, 1);
    }
    ++s->p;
    while ((rc = sb_jscan_element(s, &first)) > 0) {
        if (i++ > 0) {
            rc = sb_jscan_skip(s, 2);
        } else if (sb_jscan_peek(s) != '{') {
            e->bad_candidates = 1;
            rc = sb_jscan_skip(s, 2);
        } else {
            ++s->p;
            rc = read_candidate(s, e);
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return rc;
}

/*
 * usageMetadata.promptTokensDetails, which Gemini sends in every event and
 * switchboard does not use: checked exactly as sb_jscan_skip would check it,
 * but walked with the keys its elements have, which finds them without a scan.
 */
static int skip_details(sb_jscan_t *s)
{
    int first = 1, rc;
    if (sb_jscan_peek(s) != '[')
        return sb_jscan_skip(s, 2);
    ++s->p;
    while ((rc = sb_jscan_element(s, &first)) > 0) {
        int first_member = 1;
        unsigned k;
        if (sb_jscan_peek(s) != '{') {
            if (sb_jscan_skip(s, 3) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            continue;
        }
        ++s->p;
        while ((k = SB_JSCAN_NEXT_MEMBER(s, &first_member, DETAIL_KEYS, 0)) != SB_JSCAN_END)
            if (k == SB_JSCAN_NO_KEY || sb_jscan_skip(s, 4) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
    }
    return rc;
}

/* usageMetadata: running totals; a count that is not a non-negative integer is noted (null counts as absent). */
static inline __attribute__((always_inline)) int read_usage(sb_jscan_t *s, gem_event_t *e)
{
    enum { PROMPT = 1, CANDIDATES = 2, THOUGHTS = 4, TOTAL = 8, DETAILS = 16 };
    unsigned seen = 0, k;
    int first = 1, rc;
    e->has_usage = 1;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, USAGE_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k == DETAILS ? 0 : k) != SB_JSCAN_OK) /* (details: not acted on) */
            return SB_JSCAN_SYNTAX;
        long long *into = k == PROMPT       ? &e->prompt
                          : k == CANDIDATES ? &e->candidates
                          : k == THOUGHTS   ? &e->thoughts
                          : k == TOTAL      ? &e->total
                                            : NULL;
        rc = into != NULL ? sb_jscan_int(s, LLONG_MAX, 1, into, 2) : k == DETAILS ? skip_details(s) : sb_jscan_skip(s, 2);
        if (rc == SB_JSCAN_SYNTAX)
            return SB_JSCAN_SYNTAX;
        e->bad_count |= rc == SB_JSCAN_WRONG;
    }
    return SB_JSCAN_OK;
}

/* An in-band error: any value but null; from an object, its code and message. */
static int read_error(sb_jscan_t *s, gem_event_t *e)
{
    enum { CODE = 1, MESSAGE = 2 };
    unsigned seen = 0, k;
    int first = 1, rc, in;
    if (sb_jscan_peek(s) == 'n')
        return sb_jscan_literal(s, "null", 4);
    e->has_error = 1;
    if ((in = enter(s, 1)) <= 0)
        return in;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, ERROR_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        int c0 = sb_jscan_peek(s), integer = 0; /* sb_jscan_number sets it only when the number is well formed */
        if (k == CODE && (c0 == '-' || SB_JSCAN_DIGIT(c0))) {
            rc = sb_jscan_number(s, &integer, &e->code);
            e->has_code = integer;
        } else if (k == MESSAGE && c0 == '"') {
            rc = see(s, &e->message);
        } else {
            rc = sb_jscan_skip(s, 2);
        }
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

/* promptFeedback: its blockReason when a string. */
static int read_feedback(sb_jscan_t *s, gem_event_t *e)
{
    enum { BLOCK = 1 };
    unsigned seen = 0, k;
    int first = 1, rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, FEEDBACK_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        if (k == BLOCK && sb_jscan_peek(s) == '"') {
            e->has_block = 1;
            rc = see_into(s, e->block, sizeof(e->block), &e->block_len);
        } else {
            rc = sb_jscan_skip(s, 2);
        }
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

/* The whole event: exactly one object. */
static int read_response(sb_jscan_t *s, gem_event_t *e)
{
    enum { CANDIDATES = 1, USAGE = 2, MODEL = 4, ERROR = 8, FEEDBACK = 16 };
    unsigned seen = 0, k;
    int first = 1, rc;
    if (sb_jscan_peek(s) != '{')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, RESPONSE_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY || sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        switch (k) {
        case CANDIDATES:
            rc = read_candidates(s, e);
            break;
        case USAGE:
            if ((rc = enter(s, 1)) == 1)
                rc = read_usage(s, e);
            break;
        case MODEL:
            rc = sb_jscan_peek(s) == '"' ? see(s, &e->model) : sb_jscan_skip(s, 1);
            break;
        case ERROR:
            rc = read_error(s, e);
            break;
        case FEEDBACK:
            if ((rc = enter(s, 1)) == 1)
                rc = read_feedback(s, e);
            break;
        default:
            rc = sb_jscan_skip(s, 1);
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return sb_jscan_peek(s) != -1 ? SB_JSCAN_SYNTAX : SB_JSCAN_OK;
}

/* Fails the stream with words of this wire's own, kept in the state (the scratch may be shorter than they are). */
__attribute__((format(printf, 4, 5))) static sb_wire_result_t failed(struct state *st, sb_delta_t *out, sb_error_t *error,
                                                                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(st->message, sizeof(st->message), fmt, ap);
    va_end(ap);
    memset(out, 0, offsetof(sb_delta_t, tools));
    out->error_message = (sb_str_t){st->message, n < 0 ? 0 : strlen(st->message)};
    out->is_error = 1;
    *error = SB_E_UPSTREAM_BAD_RESPONSE;
    return SB_WIRE_ERROR;
}

/* The same, for a refusal or a failure the provider reported rather than a malformed stream. */
#define REFUSED(kind, ...) (failed(st, out, error, __VA_ARGS__), *error = (kind), SB_WIRE_ERROR)

static int same(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

/* Reasons Gemini stops an answer for its content policies: the caller hears that it was blocked, not that it broke. */
static int is_block(const char *reason, size_t len)
{
    static const char *const blocks[] = {
        "SAFETY",          "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION"};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); ++i)
        if (same(reason, len, blocks[i]))
            return 1;
    return 0;
}

/* What a running total adds to what was reported of it (never negative), and the new total reported. */
static long long increase(long long *said, long long now)
{
    if (now <= *said)
        return 0;
    long long more = now - *said;
    *said = now;
    return more;
}

/*
 * The event's calls into the delta, after its text: names, arguments and
 * minted ids go to scratch at `at`, counted as the old reader counted its
 * room (`used`, which this layout never exceeds), so a call fails as too
 * large exactly when it did there.
 */
static sb_wire_result_t say_calls(struct state *st, gem_event_t *e, const sb_sse_event_t *ev, char **at, size_t *used,
                                  sb_delta_t *out, sb_error_t *error)
{
    size_t cap = ev->data_len;
    for (size_t k = 0; k < e->ncalls; ++k) {
        if (!(k < SB_CHUNK_MAX_TOOLS ? e->calls[k].shape_ok : e->shape_past))
            return failed(st, out, error, "the model provider sent a function call of the wrong shape");
        if (st->ncalls == MAX_CALLS || out->ntools == SB_CHUNK_MAX_TOOLS)
            return failed(st, out, error, "the model provider sent more function calls than switchboard relays");
        const call_t *c = &e->calls[k];
        sb_tool_delta_t *t = &out->tools[out->ntools++];
        *t = (sb_tool_delta_t){0};
        t->index = (long)st->ncalls;
        t->type = (sb_str_t){"function", 8};
        char *a = c->args != NULL ? sb_json_dumps(c->loaded, 15) : NULL; /* loaded in the pass: an object, no key repeated */
        size_t alen = a != NULL ? strlen(a) : 2, sig_len = c->sig.quote != NULL ? c->sig.len : 0;
        /* it outgrew its event (numbers written longer) */
        if (c->name.len > cap - *used || alen > cap - *used - c->name.len || id_room(sig_len) > cap - *used - c->name.len - alen) {
            free(a);
            return failed(st, out, error, "the model provider sent a function call too large to relay");
        }
        t->name = (sb_str_t){decoded(&c->name, ev->data, ev->data_len, *at), c->name.len};
        *at += c->name.plain ? 0 : c->name.len;
        memcpy(*at, a != NULL ? a : "{}", alen);
        free(a);
        t->arguments = (sb_str_t){*at, alen};
        *at += alen;
        const char *sig = NULL;
        char sig_buf[MAX_SIGNATURE + 8];
        if (c->sig.plain) /* (a signature longer than the buffer is too long to carry: minted without it) */
            sig = (const char *)c->sig.quote + 1;
        else if (c->sig.quote != NULL && c->sig.len <= sizeof(sig_buf))
            sig = decoded(&c->sig, ev->data, ev->data_len, sig_buf);
        t->id = (sb_str_t){*at, mint_id(*at, st->ncalls, sig, sig_len)};
        *at += t->id.len;
        *used += c->name.len + alen + t->id.len;
        ++st->ncalls;
    }
    return SB_WIRE_DELTA;
}

/* The event read into `e`, said as the delta. */
static sb_wire_result_t say(struct state *st, gem_event_t *e, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out,
                            sb_error_t *error)
{
    if (e->has_error) {
        *error = e->has_code && e->code >= 400 && e->code < 600 ? sb_error_for_provider_status((long)e->code) : SB_E_UPSTREAM_ERROR;
        out->error_message = e->message.quote != NULL
                                 ? (sb_str_t){decoded(&e->message, ev->data, ev->data_len, scratch), e->message.len}
                                 : (sb_str_t){"", 0};
        out->is_error = 1;
        return SB_WIRE_ERROR;
    }
    if (e->has_block && !same(e->block, e->block_len, "BLOCK_REASON_UNSPECIFIED"))
        return REFUSED(SB_E_UPSTREAM_REJECTED, "the model provider blocked the request (%.*s)",
                       (int)(e->block_len < 40 ? e->block_len : 40), e->block);
    if (e->bad_candidates)
        return failed(st, out, error, "the model provider sent candidates of the wrong type");
    if (e->bad_parts)
        return failed(st, out, error, "the model provider sent content parts of the wrong type");
    if (e->bad_text)
        return failed(st, out, error, "the model provider sent a text part that is not a string");
    out->content = e->content;
    char *at = scratch + e->front;
    size_t used = e->content.len;
    if (say_calls(st, e, ev, &at, &used, out, error) == SB_WIRE_ERROR)
        return SB_WIRE_ERROR;
    if (e->has_finish) {
        size_t n = e->finish_len < sizeof(e->finish) ? e->finish_len : sizeof(e->finish); /* what a message can show */
        if (same(e->finish, e->finish_len, "STOP")) {
            out->finish_reason = st->ncalls > 0 ? (sb_str_t){"tool_calls", 10} : (sb_str_t){"stop", 4};
        } else if (same(e->finish, e->finish_len, "MAX_TOKENS")) {
            out->finish_reason = (sb_str_t){"length", 6};
        } else if (is_block(e->finish, e->finish_len)) {
            return REFUSED(SB_E_UPSTREAM_REJECTED, "the model provider blocked the answer (%.*s)", (int)n, e->finish);
        } else if (!same(e->finish, e->finish_len, "FINISH_REASON_UNSPECIFIED")) {
            return REFUSED(SB_E_UPSTREAM_ERROR, "the model provider stopped the answer (%.*s)", (int)(n < 60 ? n : 60), e->finish);
        }
    }
    if (e->has_usage) {
        if (e->bad_count)
            return failed(st, out, error, "the model provider sent a token count that is not a count");
        out->prompt_tokens = e->prompt;
        out->completion_tokens = e->candidates;
        out->total_tokens = e->total;
        /* OpenAI counts reasoning among the completion tokens: so does the caller's usage, and prompt + completion = total */
        if (e->thoughts <= LLONG_MAX - out->completion_tokens)
            out->completion_tokens += e->thoughts;
        out->prompt_tokens = increase(&st->said_prompt, out->prompt_tokens);
        out->completion_tokens = increase(&st->said_completion, out->completion_tokens);
        out->total_tokens = increase(&st->said_total, out->total_tokens);
        out->has_usage = 1;
    }
    if (e->model.quote != NULL && e->model.len <= ev->data_len - used) /* the old reader's room, last: left out when full */
        out->model = (sb_str_t){decoded(&e->model, ev->data, ev->data_len, at), e->model.len};
    if (out->content.base == NULL && out->ntools == 0 && out->finish_reason.base == NULL && !out->has_usage &&
        out->model.base == NULL)
        return SB_WIRE_SKIP;
    return SB_WIRE_DELTA;
}

static sb_wire_result_t event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error)
{
    struct state *st = state;
    memset(out, 0, offsetof(sb_delta_t, tools)); /* entries past ntools are never read */
    /* Gemini ends a stream by closing it; an [DONE] would come only from something in between, and means the same */
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return SB_WIRE_END;
    gem_event_t e;
    memset(&e, 0, offsetof(gem_event_t, block)); /* the strings kept whole and the calls are written as they are found */
    e.scratch = scratch;
    sb_jscan_t s = {(const unsigned char *)ev->data, (const unsigned char *)ev->data + ev->data_len, scratch, NULL};
    sb_wire_result_t rc = read_response(&s, &e) == SB_JSCAN_OK
                              ? say(st, &e, ev, scratch, out, error)
                              : failed(st, out, error, "the model provider sent an event that is not a json object");
    for (size_t i = 0; i < e.nloaded; ++i)
        json_decref(e.loaded[i]);
    return rc;
}

/* Gemini's error body: {"error":{"code":400,"message":"...","status":"INVALID_ARGUMENT"}}, sometimes inside a one-element array. */
static void error_message(const char *body, size_t len, char *msg, size_t cap)
{
    if (cap == 0)
        return;
    msg[0] = '\0';
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *top = json_is_array(root) ? json_array_get(root, 0) : root;
    json_t *m = json_object_get(json_object_get(top, "error"), "message");
    if (json_is_string(m))
        sb_copy_text(msg, cap, json_string_value(m), json_string_length(m));
    json_decref(root);
}

const sb_wire_t sb_wire_gemini = {
    "gemini",             /* name */
    url,                  /* url */
    headers,              /* headers */
    body,                 /* body */
    sizeof(struct state), /* state_size */
    event,                /* event */
    NULL,                 /* whole: always streamed here */
    error_message,        /* error_message */
};
