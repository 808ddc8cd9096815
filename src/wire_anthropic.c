/*
 * Anthropic's Messages API, streamed: the cleaned Chat Completions request
 * said as Messages (the system prompt split out, tool rounds as tool_use and
 * tool_result blocks, the fixed prompt and the tools marked for prompt
 * caching), and its named SSE events read into the turn's typed delta.
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jscan_keys.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/json.h"
#include "wire.h"

#define ANTHROPIC_VERSION "2023-06-01"
/* Messages requires max_tokens on every request: ANTHROPIC_MAX_TOKENS when the client names none, this without a config. */
#define DEFAULT_MAX_TOKENS 1024
/* Anthropic takes temperature in [0, 1]; OpenAI's reach 2, and a value past 1 is refused, not clamped, there. */
#define MAX_TEMPERATURE 1.0

/* What spans the events of one streamed answer. */
struct state {
    long long input, cache_write, cache_read, output; /* usage so far, as message_start and message_delta counted it */
    long long told_prompt, told_completion;           /* what the turn was told: the counts are cumulative, the turn sums */
    long ntools;                                      /* tool_use blocks so far: the turn's index of the next call */
    long tool_block[SB_CHUNK_MAX_TOOLS];              /* the content block index of each tool_use block */
};

/* --- the request ------------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static json_t *ephemeral(void)
{
    return json_pack("{s:s}", "type", "ephemeral");
}

static json_t *text_block(const char *s, size_t len)
{
    return json_pack("{s:s, s:s%}", "type", "text", "text", s, len);
}

/* An image_url part as an image block: a data: URL carries base64 bytes, anything else is fetched by Anthropic. */
static json_t *image_block(json_t *part)
{
    json_t *url = json_object_get(json_object_get(part, "image_url"), "url");
    if (!json_is_string(url))
        return NULL;
    const char *u = json_string_value(url);
    size_t len = json_string_length(url);
    if (len > 5 && memcmp(u, "data:", 5) == 0) {
        const char *semi = memchr(u, ';', len);
        const char *comma = memchr(u, ',', len);
        if (semi == NULL || comma == NULL || comma < semi || (size_t)(comma - semi) != 7 || memcmp(semi, ";base64", 7) != 0)
            return NULL;
        return json_pack("{s:s, s:{s:s, s:s%, s:s%}}", "type", "image", "source", "type", "base64", "media_type", u + 5,
                         (size_t)(semi - (u + 5)), "data", comma + 1, len - (size_t)(comma + 1 - u));
    }
    return json_pack("{s:s, s:{s:s, s:o}}", "type", "image", "source", "type", "url", "url", json_incref(url));
}

/*
 * Appends a message's content to `blocks`: a string as one text block, an
 * array's parts (strings, text parts and, where `images`, image_url parts)
 * one block each. Empty text says nothing (Anthropic refuses empty text
 * blocks), so it adds no block.
 */
static int add_content(json_t *blocks, json_t *content, int images, const char *where, char *err, size_t errlen)
{
    if (content == NULL || json_is_null(content))
        return 0;
    if (json_is_string(content)) {
        if (json_string_length(content) > 0)
            json_array_append_new(blocks, text_block(json_string_value(content), json_string_length(content)));
        return 0;
    }
    if (!json_is_array(content))
        return fail(err, errlen, "%s.content must be a string or an array of content parts", where);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *text = json_is_string(part) ? part : NULL;
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type != NULL && strcmp(type, "text") == 0)
            text = json_object_get(part, "text");
        if (json_is_string(text)) {
            if (json_string_length(text) > 0)
                json_array_append_new(blocks, text_block(json_string_value(text), json_string_length(text)));
            continue;
        }
        json_t *image = images && type != NULL && strcmp(type, "image_url") == 0 ? image_block(part) : NULL;
        if (image == NULL)
            return fail(err, errlen, "%s.content[%zu] (%s) cannot be sent to Anthropic", where, i, type ? type : "not a part");
        json_array_append_new(blocks, image);
    }
    return 0;
}

/* The model's arguments (JSON text) as tool_use input: Anthropic takes an object only, so anything else becomes {}. */
static json_t *tool_input(json_t *arguments)
{
    json_t *in =
        json_is_string(arguments) ? json_loadb(json_string_value(arguments), json_string_length(arguments), 0, NULL) : NULL;
    if (json_is_object(in))
        return in;
    json_decref(in);
    return json_object();
}

static int add_tool_uses(json_t *blocks, json_t *calls, const char *where, char *err, size_t errlen)
{
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        json_t *id = json_object_get(call, "id");
        json_t *fn = json_object_get(call, "function");
        json_t *name = json_object_get(fn, "name");
        if (!json_is_string(id) || !json_is_string(name))
            return fail(err, errlen, "%s.tool_calls[%zu] needs a string id and function.name", where, i);
        json_array_append_new(blocks, json_pack("{s:s, s:O, s:O, s:o}", "type", "tool_use", "id", id, "name", name, "input",
                                                tool_input(json_object_get(fn, "arguments"))));
    }
    return 0;
}

/*
 * Adds `blocks` (taken) as a message of `role`, merged into the one before when
 * it has the same role: Messages alternates user and assistant. A user
 * message's tool_result blocks must come before anything else in it, so those
 * are put after the results already there rather than at the end.
 */
static void add_message(json_t *messages, const char *role, json_t *blocks)
{
    if (json_array_size(blocks) == 0) {
        json_decref(blocks);
        return;
    }
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    const char *last_role = json_string_value(json_object_get(last, "role"));
    if (last_role == NULL || strcmp(last_role, role) != 0) {
        json_array_append_new(messages, json_pack("{s:s, s:o}", "role", role, "content", blocks));
        return;
    }
    json_t *content = json_object_get(last, "content");
    size_t at = 0;
    while (at < json_array_size(content) &&
           strcmp(json_string_value(json_object_get(json_array_get(content, at), "type")), "tool_result") == 0)
        ++at;
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b)
    {
        int result = strcmp(json_string_value(json_object_get(b, "type")), "tool_result") == 0;
        if (result)
            json_array_insert(content, at++, b);
        else
            json_array_append(content, b);
    }
    json_decref(blocks);
}

/*
 * The conversation: system and developer messages become `system` blocks, the
 * rest alternating user and assistant messages of content blocks. The first
 * and the last system block are cache breakpoints: the first is the caller's
 * fixed prompt, which retrieval's passages (inserted after it, different every
 * turn) would otherwise keep out of the cache; the last covers everything up
 * to the conversation, which a turn's second tool round asks for again.
 */
static int convert_messages(json_t *in, json_t *system, json_t *messages, char *err, size_t errlen)
{
    size_t i;
    json_t *m;
    json_array_foreach(in, i, m)
    {
        char where[48];
        snprintf(where, sizeof(where), "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (role == NULL)
            return fail(err, errlen, "%s.role must be a string", where);
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            if (add_content(system, content, 0, where, err, errlen) != 0)
                return -1;
            continue;
        }
        json_t *blocks = json_array();
        int rc = 0;
        if (strcmp(role, "user") == 0) {
            rc = add_content(blocks, content, 1, where, err, errlen);
        } else if (strcmp(role, "assistant") == 0) {
            rc = add_content(blocks, content, 0, where, err, errlen);
            json_t *calls = json_object_get(m, "tool_calls");
            if (rc == 0 && json_is_array(calls))
                rc = add_tool_uses(blocks, calls, where, err, errlen);
        } else if (strcmp(role, "tool") == 0) {
            json_t *id = json_object_get(m, "tool_call_id");
            json_t *result = json_array();
            rc = json_is_string(id) ? add_content(result, content, 1, where, err, errlen)
                                    : fail(err, errlen, "%s.tool_call_id must be a string", where);
            json_t *block = json_pack("{s:s, s:O}", "type", "tool_result", "tool_use_id", id != NULL ? id : json_null());
            if (json_array_size(result) > 0)
                json_object_set(block, "content", result);
            json_decref(result);
            json_array_append_new(blocks, block);
            role = "user";
        } else {
            rc = fail(err, errlen, "%s: messages of role %s cannot be sent to Anthropic", where, role);
        }
        if (rc != 0) {
            json_decref(blocks);
            return -1;
        }
        add_message(messages, strcmp(role, "assistant") == 0 ? "assistant" : "user", blocks);
    }
    if (json_array_size(messages) == 0)
        return fail(err, errlen, "Anthropic needs at least one user or assistant message besides the system prompt");
    size_t n = json_array_size(system);
    if (n > 0) {
        json_object_set_new(json_array_get(system, 0), "cache_control", ephemeral());
        json_object_set_new(json_array_get(system, n - 1), "cache_control", ephemeral());
    }
    return 0;
}

/*
 * OpenAI function tools as Anthropic tools ({name, description, input_schema}),
 * the last one a cache breakpoint: the tools come first in what Anthropic
 * caches, and they are the same on every turn.
 */
static json_t *convert_tools(json_t *tools, char *err, size_t errlen)
{
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(name)) {
            fail(err, errlen, "tools[%zu]: only function tools can be sent to Anthropic", i);
            json_decref(out);
            return NULL;
        }
        json_t *params = json_object_get(fn, "parameters");
        json_t *schema;
        if (json_is_object(params)) {
            schema = json_copy(params); /* shallow: only `type` may be added */
            if (json_object_get(schema, "type") == NULL)
                json_object_set_new(schema, "type", json_string("object"));
        } else {
            schema = json_pack("{s:s, s:{}}", "type", "object", "properties");
        }
        json_t *tool = json_pack("{s:O, s:o}", "name", name, "input_schema", schema);
        json_t *description = json_object_get(fn, "description");
        if (json_is_string(description))
            json_object_set(tool, "description", description);
        json_array_append_new(out, tool);
    }
    size_t n = json_array_size(out);
    if (n > 0)
        json_object_set_new(json_array_get(out, n - 1), "cache_control", ephemeral());
    return out;
}

/*
 * switchboard's own tools, converted once: they are made once at start-up
 * (sb_tools_offer), and converting their schemas on every round would cost
 * more than the rest of the body. Keyed by the text they were made from;
 * the lock is held only while the text is copied out.
 */
static pthread_mutex_t offered_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *offered_from;
static char *offered_text;

static int append_offered(sb_buf_t *b, const char *offered)
{
    pthread_mutex_lock(&offered_lock);
    if (offered_from != offered) {
        json_t *tools = json_loads(offered, 0, NULL);
        char err[128];
        json_t *converted = json_is_array(tools) ? convert_tools(tools, err, sizeof(err)) : NULL;
        free(offered_text);
        offered_text = converted != NULL ? sb_json_dumps(converted, 15) : NULL;
        offered_from = offered_text != NULL ? offered : NULL;
        json_decref(converted);
        json_decref(tools);
    }
    int rc = offered_text != NULL ? sb_buf_appendz(b, offered_text) : -1;
    pthread_mutex_unlock(&offered_lock);
    return rc;
}

/* OpenAI's tool_choice as Anthropic's; parallel_tool_calls:false is its disable_parallel_tool_use. NULL: leave it out. */
static json_t *convert_tool_choice(json_t *choice, json_t *parallel, char *err, size_t errlen)
{
    json_t *out = NULL;
    const char *s = json_string_value(choice);
    if (choice == NULL || (s != NULL && strcmp(s, "auto") == 0)) {
        out = json_false() == parallel ? json_pack("{s:s}", "type", "auto") : NULL;
    } else if (s != NULL && strcmp(s, "none") == 0) {
        return json_pack("{s:s}", "type", "none");
    } else if (s != NULL && strcmp(s, "required") == 0) {
        out = json_pack("{s:s}", "type", "any");
    } else {
        json_t *name = json_object_get(json_object_get(choice, "function"), "name");
        const char *type = json_string_value(json_object_get(choice, "type"));
        if (type == NULL || strcmp(type, "function") != 0 || !json_is_string(name)) {
            fail(err, errlen, "tool_choice: only \"auto\", \"none\", \"required\" or a function can be sent to Anthropic");
            return NULL;
        }
        out = json_pack("{s:s, s:O}", "type", "tool", "name", name);
    }
    if (out != NULL && json_is_false(parallel))
        json_object_set_new(out, "disable_parallel_tool_use", json_true());
    return out;
}

/* The sampling parameters Messages shares with Chat Completions; the rest (penalties, seed, logprobs, ...) it has not. */
static void convert_params(const sb_config_t *config, json_t *in, json_t *out)
{
    json_int_t dflt = config != NULL && config->anthropic_max_tokens > 0 ? config->anthropic_max_tokens : DEFAULT_MAX_TOKENS;
    json_t *max = json_object_get(in, "max_completion_tokens");
    if (!json_is_integer(max))
        max = json_object_get(in, "max_tokens");
    json_object_set_new(out, "max_tokens", json_is_integer(max) ? json_incref(max) : json_integer(dflt));
    json_t *temperature = json_object_get(in, "temperature");
    if (json_is_number(temperature))
        json_object_set_new(out, "temperature",
                            json_number_value(temperature) > MAX_TEMPERATURE ? json_real(MAX_TEMPERATURE)
                                                                             : json_incref(temperature));
    json_t *top_p = json_object_get(in, "top_p");
    if (json_is_number(top_p))
        json_object_set(out, "top_p", top_p);
    json_t *stop = json_object_get(in, "stop");
    if (json_is_string(stop))
        json_object_set_new(out, "stop_sequences", json_pack("[O]", stop));
    else if (json_is_array(stop) && json_array_size(stop) > 0)
        json_object_set(out, "stop_sequences", stop);
    json_t *user = json_object_get(in, "user");
    if (json_is_string(user))
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", user));
}

static char *body(const sb_wire_target_t *target, const sb_chat_request_t *req, char *err, size_t errlen)
{
    json_t *in = req->upstream;
    json_t *out = json_pack("{s:s, s:b}", "model", target->model, "stream", 1);
    json_t *system = json_array(), *messages = json_array();
    char *text = NULL;
    if (convert_messages(json_object_get(in, "messages"), system, messages, err, errlen) != 0)
        goto done;
    if (json_array_size(system) > 0)
        json_object_set(out, "system", system);
    json_object_set(out, "messages", messages);
    convert_params(target->config, in, out);
    json_t *client_tools = json_object_get(in, "tools");
    int has_tools = json_array_size(client_tools) > 0 || req->offered_tools != NULL;
    if (json_array_size(client_tools) > 0) {
        json_t *tools = convert_tools(client_tools, err, errlen);
        if (tools == NULL)
            goto done;
        json_object_set_new(out, "tools", tools);
    }
    if (has_tools) { /* Anthropic refuses a tool_choice without tools */
        json_t *choice = json_object_get(in, "tool_choice");
        err[0] = '\0';
        json_t *c = convert_tool_choice(choice, json_object_get(in, "parallel_tool_calls"), err, errlen);
        if (c == NULL && err[0] != '\0')
            goto done;
        if (c != NULL)
            json_object_set_new(out, "tool_choice", c);
    }
    sb_buf_t b;
    sb_buf_init(&b, SB_JSON_MAX_DUMP);
    int rc = sb_json_dump_append(&b, out, 15);
    if (rc == 0 && req->offered_tools != NULL) { /* the body has no `tools` then (sb_tools_offer): they go before the last brace */
        --b.len;
        rc = sb_buf_appendz(&b, ",\"tools\":") != 0 || append_offered(&b, req->offered_tools) != 0 || sb_buf_appendz(&b, "}") != 0;
    }
    if (rc == 0 && sb_buf_append(&b, "", 1) == 0) {
        text = b.base;
    } else {
        sb_buf_dispose(&b);
        fail(err, errlen, "the request is too large to send to Anthropic");
    }
done:
    json_decref(system);
    json_decref(messages);
    json_decref(out);
    return text;
}

/* --- the stream ------------------------------------------------------------------------------- */

/*
 * Each event is read in one pass over its bytes with jscan.h: no tree, and
 * strings stay in the data unless they hold escapes (decoded into scratch).
 * The event's `type` decides which members matter and how, but JSON does not
 * promise that it comes first, so the pass reads every member any type uses
 * into the small neutral form below, and the type's handler judges them
 * after. The rules are those of the jansson reading this replaced (the
 * oracle in tests/fuzz/wire_anthropic_ref.c): of duplicate keys the last
 * counts, a field of the wrong type matters only to a type that reads it.
 */

/* What a member held. ABSENT is 0, so that a cleared form says "not there". */
enum { ABSENT = 0, IS_NULL, GOOD, OTHER };

struct str_field {
    int kind; /* GOOD: a string, in v */
    sb_str_t v;
};

struct int_field {
    int kind; /* GOOD: an integer, in v */
    long long v;
};

/* usage (message_start's message, message_delta's root). kind GOOD: an object. */
struct usage {
    int kind;
    struct int_field count[4]; /* input, cache_creation_input, cache_read_input and output tokens, in that order */
};

struct delta { /* content_block_delta's, and message_delta's */
    int kind;
    struct str_field type, text, partial_json, stop_reason;
};

enum { INPUT_EMPTY = OTHER + 1, INPUT_FULL }; /* a block's input: {} or an object with members */

struct block { /* content_block_start's content_block */
    int kind;
    struct str_field type, text, id, name;
    int input;               /* ABSENT, INPUT_EMPTY, INPUT_FULL, or anything else */
    const unsigned char *at; /* the block's JSON, read again by jansson only for an input given whole */
    size_t len;
};

struct message { /* message_start's */
    int kind;
    struct str_field model;
    struct usage usage;
};

struct error { /* an error event's */
    int kind;
    struct str_field type, message;
};

/* The root's members that some type reads; each sub-form is valid only when its kind is GOOD. */
struct event {
    struct str_field type;
    struct int_field index;
    struct delta delta;
    struct block block;
    struct message message;
    struct usage usage;
    struct error error;
};

/* Stand-ins for an object that is absent or not an object: its fields are then absent too, as jansson's lookups say. */
static const struct delta no_delta;
static const struct block no_block;
static const struct message no_message;
static const struct error no_error;

/*
 * A string member. Its decoded form (when it holds escapes) is kept in
 * scratch whether or not it will be used: which are used is known only at
 * the end. Each kept string is shorter than the JSON it came from, so all of
 * one event's fit the room wire.h promises.
 */
static int read_str(sb_jscan_t *s, struct str_field *f, unsigned depth)
{
    switch (sb_jscan_peek(s)) {
    case '"':
        f->kind = GOOD;
        return sb_jscan_string(s, &f->v, 1);
    case 'n':
        f->kind = IS_NULL;
        return sb_jscan_literal(s, "null", 4);
    default:
        f->kind = OTHER;
        return sb_jscan_skip(s, depth);
    }
}

/* An integer member; a real (1.0, 1e3) is another type, as for json_is_integer. */
static int read_int(sb_jscan_t *s, struct int_field *f, unsigned depth)
{
    int c = sb_jscan_peek(s), integer;
    if (c == '-' || SB_JSCAN_DIGIT(c)) {
        if (sb_jscan_number(s, &integer, &f->v) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        f->kind = integer ? GOOD : OTHER;
        return SB_JSCAN_OK;
    }
    if (c == 'n') {
        f->kind = IS_NULL;
        return sb_jscan_literal(s, "null", 4);
    }
    f->kind = OTHER;
    return sb_jscan_skip(s, depth);
}

/* An object member: SB_JSCAN_ENTERED inside it (kind GOOD), or the result of passing over anything else. */
static int enter(sb_jscan_t *s, int *kind, unsigned depth)
{
    switch (sb_jscan_peek(s)) {
    case '{':
        *kind = GOOD;
        ++s->p;
        return SB_JSCAN_ENTERED;
    case 'n':
        *kind = IS_NULL;
        return sb_jscan_literal(s, "null", 4);
    default:
        *kind = OTHER;
        return sb_jscan_skip(s, depth);
    }
}

/*
 * Each reader below clears its form first: a later duplicate key replaces the whole object, as in jansson. Each lists
 * the keys it reads for SB_JSCAN_NEXT_MEMBER (jscan_keys.h), numbered from 1, in the order Anthropic writes them.
 */
#define USAGE_KEYS(X) X(1, "input_tokens") X(2, "cache_creation_input_tokens") X(3, "cache_read_input_tokens") X(4, "output_tokens")
#define DELTA_KEYS(X) X(1, "type") X(2, "text") X(3, "partial_json") X(4, "stop_reason")
#define BLOCK_KEYS(X) X(1, "type") X(2, "text") X(3, "id") X(4, "name") X(5, "input")
#define MESSAGE_KEYS(X) X(1, "model") X(2, "usage")
#define ERROR_KEYS(X) X(1, "type") X(2, "message")
#define EVENT_KEYS(X) X(1, "type") X(2, "index") X(3, "delta") X(4, "content_block") X(5, "message") X(6, "usage") X(7, "error")

static int read_usage(sb_jscan_t *s, struct usage *u, unsigned depth)
{
    int first = 1, rc;
    unsigned k;
    *u = (struct usage){0};
    if ((rc = enter(s, &u->kind, depth)) != SB_JSCAN_ENTERED)
        return rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, USAGE_KEYS, 0)) != SB_JSCAN_END)
        if (k == SB_JSCAN_NO_KEY || (k > 0 ? read_int(s, &u->count[k - 1], depth + 1) : sb_jscan_skip(s, depth + 1)) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    return SB_JSCAN_OK;
}

static int read_delta(sb_jscan_t *s, struct delta *d, unsigned depth)
{
    int first = 1, rc;
    unsigned k;
    *d = (struct delta){0};
    if ((rc = enter(s, &d->kind, depth)) != SB_JSCAN_ENTERED)
        return rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, DELTA_KEYS, 0)) != SB_JSCAN_END) {
        struct str_field *f = k == 1 ? &d->type : k == 2 ? &d->text : k == 3 ? &d->partial_json : k == 4 ? &d->stop_reason : NULL;
        if (k == SB_JSCAN_NO_KEY || (f != NULL ? read_str(s, f, depth + 1) : sb_jscan_skip(s, depth + 1)) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

static int read_block(sb_jscan_t *s, struct block *b, unsigned depth)
{
    int first = 1, rc;
    unsigned k;
    *b = (struct block){0};
    if ((rc = enter(s, &b->kind, depth)) != SB_JSCAN_ENTERED)
        return rc;
    b->at = s->p - 1;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, BLOCK_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY)
            return SB_JSCAN_SYNTAX;
        struct str_field *f = k == 1 ? &b->type : k == 2 ? &b->text : k == 3 ? &b->id : k == 4 ? &b->name : NULL;
        if (f != NULL) {
            if (read_str(s, f, depth + 1) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            continue;
        }
        if (k == 5 && sb_jscan_peek(s) == '{') {
            const unsigned char *open = s->p++;
            b->input = sb_jscan_peek(s) == '}' ? INPUT_EMPTY : INPUT_FULL;
            s->p = open;
        } else if (k == 5) {
            b->input = OTHER;
        }
        if (sb_jscan_skip(s, depth + 1) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    b->len = (size_t)(s->p - b->at);
    return SB_JSCAN_OK;
}

static int read_message(sb_jscan_t *s, struct message *m, unsigned depth)
{
    int first = 1, rc;
    unsigned k;
    *m = (struct message){0};
    if ((rc = enter(s, &m->kind, depth)) != SB_JSCAN_ENTERED)
        return rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, MESSAGE_KEYS, 0)) != SB_JSCAN_END) {
        if (k == SB_JSCAN_NO_KEY)
            return SB_JSCAN_SYNTAX;
        if (k == 1)
            rc = read_str(s, &m->model, depth + 1);
        else if (k == 2)
            rc = read_usage(s, &m->usage, depth + 1);
        else
            rc = sb_jscan_skip(s, depth + 1);
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

static int read_error(sb_jscan_t *s, struct error *e, unsigned depth)
{
    int first = 1, rc;
    unsigned k;
    *e = (struct error){0};
    if ((rc = enter(s, &e->kind, depth)) != SB_JSCAN_ENTERED)
        return rc;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, ERROR_KEYS, 0)) != SB_JSCAN_END) {
        struct str_field *f = k == 1 ? &e->type : k == 2 ? &e->message : NULL;
        if (k == SB_JSCAN_NO_KEY || (f != NULL ? read_str(s, f, depth + 1) : sb_jscan_skip(s, depth + 1)) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return SB_JSCAN_OK;
}

/* The pass: SB_JSCAN_OK when the data is exactly one JSON object, else SB_JSCAN_SYNTAX. */
static int read_event(sb_jscan_t *s, struct event *e)
{
    int first = 1, rc;
    unsigned k;
    if (sb_jscan_peek(s) != '{')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    while ((k = SB_JSCAN_NEXT_MEMBER(s, &first, EVENT_KEYS, 0)) != SB_JSCAN_END) {
        switch (k) {
        case SB_JSCAN_NO_KEY:
            return SB_JSCAN_SYNTAX;
        case 1:
            rc = read_str(s, &e->type, 1);
            break;
        case 2:
            rc = read_int(s, &e->index, 1);
            break;
        case 3:
            rc = read_delta(s, &e->delta, 1);
            break;
        case 4:
            rc = read_block(s, &e->block, 1);
            break;
        case 5:
            rc = read_message(s, &e->message, 1);
            break;
        case 6:
            rc = read_usage(s, &e->usage, 1);
            break;
        case 7:
            rc = read_error(s, &e->error, 1);
            break;
        default:
            rc = sb_jscan_skip(s, 1);
        }
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return sb_jscan_peek(s) != -1 ? SB_JSCAN_SYNTAX : SB_JSCAN_OK; /* exactly one value */
}

static sb_str_t lit(const char *s)
{
    return (sb_str_t){s, strlen(s)};
}

static int is(sb_str_t s, const char *want)
{
    size_t n = strlen(want);
    return s.len == n && memcmp(s.base, want, n) == 0;
}

/* upstream.c says "the model provider sent a chunk <problem>" */
static sb_wire_result_t malformed(sb_delta_t *out, sb_error_t *error, const char *problem)
{
    out->problem = problem;
    *error = SB_E_UPSTREAM_BAD_RESPONSE;
    return SB_WIRE_ERROR;
}

/*
 * Usage: Anthropic's input_tokens leaves out the cached tokens that OpenAI's
 * prompt_tokens counts, so the three are added. The counts are cumulative
 * and may come more than once, while the turn sums what it is told over its
 * rounds: each time, only what was not yet told is. Each count must be
 * absent, null or a non-negative integer; -1 at the first that is not (those
 * before it are taken, as they always were).
 */
static int take_usage(struct state *st, const struct usage *u)
{
    long long *to[4] = {&st->input, &st->cache_write, &st->cache_read, &st->output};
    if (u->kind == ABSENT || u->kind == IS_NULL)
        return 0;
    if (u->kind != GOOD)
        return -1;
    for (int i = 0; i < 4; ++i) {
        const struct int_field *c = &u->count[i];
        if (c->kind == ABSENT || c->kind == IS_NULL)
            continue;
        if (c->kind != GOOD || c->v < 0)
            return -1;
        *to[i] = c->v;
    }
    return 0;
}

/* Counts are non-negative (take_usage() checks), so only the top can overflow: it stops there. */
static long long sum(long long a, long long b)
{
    return a > LLONG_MAX - b ? LLONG_MAX : a + b;
}

static const char *finish_reason(sb_str_t stop)
{
    static const struct {
        const char *anthropic, *openai;
    } map[] = {
        {"end_turn", "stop"},
        {"stop_sequence", "stop"},
        {"pause_turn", "stop"},
        {"max_tokens", "length"},
        {"model_context_window_exceeded", "length"},
        {"tool_use", "tool_calls"},
        {"refusal", "content_filter"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); ++i)
        if (is(stop, map[i].anthropic))
            return map[i].openai;
    return "stop";
}

static sb_error_t error_kind(const struct str_field *type)
{
    static const struct {
        const char *type;
        sb_error_t kind;
    } map[] = {
        {"rate_limit_error", SB_E_UPSTREAM_RATE_LIMITED}, {"authentication_error", SB_E_UPSTREAM_AUTH},
        {"permission_error", SB_E_UPSTREAM_AUTH},         {"invalid_request_error", SB_E_UPSTREAM_REJECTED},
        {"not_found_error", SB_E_UPSTREAM_REJECTED},      {"request_too_large", SB_E_UPSTREAM_REJECTED},
        {"billing_error", SB_E_UPSTREAM_REJECTED},        {"timeout_error", SB_E_UPSTREAM_TIMEOUT},
    };
    for (size_t i = 0; type->kind == GOOD && i < sizeof(map) / sizeof(map[0]); ++i)
        if (is(type->v, map[i].type))
            return map[i].kind;
    return SB_E_UPSTREAM_ERROR; /* overloaded_error, api_error and whatever comes next */
}

static sb_wire_result_t on_message_start(struct state *st, const struct event *e, sb_delta_t *out, sb_error_t *error)
{
    const struct message *m = e->message.kind == GOOD ? &e->message : &no_message;
    if (m->kind != GOOD || (m->model.kind != ABSENT && m->model.kind != GOOD) || take_usage(st, &m->usage) != 0)
        return malformed(out, error, "(message_start) with a field of the wrong type");
    if (m->model.kind == ABSENT)
        return SB_WIRE_SKIP;
    out->model = m->model.v;
    return SB_WIRE_DELTA;
}

/*
 * A tool_use block that arrives with its whole input (a gateway may send it
 * so; Anthropic streams it as input_json_delta after an empty {}): the input
 * is given as compact JSON, as jansson writes it. Rare, and not per token, so
 * jansson reads the block again (`block`, taken) rather than this file
 * learning to write numbers and duplicate keys as jansson does. Lays out id,
 * name and the input in scratch as the jansson reading did, in the same room.
 */
static sb_wire_result_t whole_input(json_t *block, size_t room, char *scratch, sb_tool_delta_t *t, sb_delta_t *out,
                                    sb_error_t *error)
{
    json_t *id = json_object_get(block, "id"), *name = json_object_get(block, "name"), *input = json_object_get(block, "input");
    size_t nid = json_string_length(id), nname = json_string_length(name);
    sb_wire_result_t rc = SB_WIRE_DELTA;
    memcpy(scratch, json_string_value(id), nid);
    memcpy(scratch + nid, json_string_value(name), nname);
    t->id = (sb_str_t){scratch, nid};
    t->name = (sb_str_t){scratch + nid, nname};
    room -= nid + nname;
    size_t len = json_dumpb(input, scratch + nid + nname, room, JSON_COMPACT);
    if (len == 0 || len > room)
        rc = malformed(out, error, "(content_block_start) whose tool input does not fit it");
    else
        t->arguments = (sb_str_t){scratch + nid + nname, len};
    json_decref(block);
    return rc;
}

static sb_wire_result_t on_block_start(struct state *st, const struct event *e, size_t room, char *scratch, sb_delta_t *out,
                                       sb_error_t *error)
{
    static const char wrong[] = "(content_block_start) with a field of the wrong type";
    const struct block *b = e->block.kind == GOOD ? &e->block : &no_block;
    if (e->index.kind != GOOD || b->type.kind != GOOD)
        return malformed(out, error, wrong);
    if (is(b->type.v, "text")) {
        if (b->text.kind != ABSENT && b->text.kind != GOOD)
            return malformed(out, error, wrong);
        if (b->text.kind == ABSENT || b->text.v.len == 0)
            return SB_WIRE_SKIP;
        out->content = b->text.v;
        return SB_WIRE_DELTA;
    }
    if (!is(b->type.v, "tool_use")) /* thinking, server tools and their results: nothing the caller hears */
        return SB_WIRE_SKIP;
    if (b->id.kind != GOOD || b->name.kind != GOOD || (b->input != ABSENT && b->input != INPUT_EMPTY && b->input != INPUT_FULL))
        return malformed(out, error, wrong);
    json_t *whole = NULL;
    /* jansson refuses a number past a double, which the scan lets by: the event was refused whole then */
    if (b->input == INPUT_FULL && (whole = json_loadb((const char *)b->at, b->len, 0, NULL)) == NULL)
        return malformed(out, error, "that is not a json object");
    if (st->ntools < SB_CHUNK_MAX_TOOLS) /* past that the turn refuses the call it is given below */
        st->tool_block[st->ntools] = (long)e->index.v;
    sb_tool_delta_t *t = &out->tools[0];
    out->ntools = 1;
    t->index = st->ntools++;
    t->id = b->id.v;
    t->name = b->name.v;
    t->type = lit("function");
    t->arguments = lit("");
    return whole != NULL ? whole_input(whole, room, scratch, t, out, error) : SB_WIRE_DELTA;
}

static sb_wire_result_t on_block_delta(struct state *st, const struct event *e, sb_delta_t *out, sb_error_t *error)
{
    static const char wrong[] = "(content_block_delta) with a field of the wrong type";
    const struct delta *d = e->delta.kind == GOOD ? &e->delta : &no_delta;
    if (e->index.kind != GOOD || d->type.kind != GOOD)
        return malformed(out, error, wrong);
    if (is(d->type.v, "text_delta")) {
        if (d->text.kind != GOOD)
            return malformed(out, error, wrong);
        if (d->text.v.len == 0)
            return SB_WIRE_SKIP;
        out->content = d->text.v;
        return SB_WIRE_DELTA;
    }
    if (!is(d->type.v, "input_json_delta")) /* thinking, signatures, citations */
        return SB_WIRE_SKIP;
    if (d->partial_json.kind != GOOD)
        return malformed(out, error, wrong);
    long block = (long)e->index.v;
    long n = st->ntools < SB_CHUNK_MAX_TOOLS ? st->ntools : SB_CHUNK_MAX_TOOLS;
    long tool = n - 1;
    while (tool >= 0 && st->tool_block[tool] != block)
        --tool;
    if (tool < 0 || d->partial_json.v.len == 0) /* a server tool's input, or nothing yet */
        return SB_WIRE_SKIP;
    out->ntools = 1;
    out->tools[0] = (sb_tool_delta_t){.index = tool, .arguments = d->partial_json.v};
    return SB_WIRE_DELTA;
}

static sb_wire_result_t on_message_delta(struct state *st, const struct event *e, sb_delta_t *out, sb_error_t *error)
{
    const struct delta *d = e->delta.kind == GOOD ? &e->delta : &no_delta;
    int stop = d->stop_reason.kind;
    if ((e->delta.kind != ABSENT && e->delta.kind != GOOD) || (stop != ABSENT && stop != IS_NULL && stop != GOOD) ||
        take_usage(st, &e->usage) != 0)
        return malformed(out, error, "(message_delta) with a field of the wrong type");
    sb_wire_result_t rc = SB_WIRE_SKIP;
    if (stop == GOOD) {
        out->finish_reason = lit(finish_reason(d->stop_reason.v));
        rc = SB_WIRE_DELTA;
    }
    /* a count that shrinks (it should not) tells nothing rather than taking back what was told */
    long long prompt = sum(sum(st->input, st->cache_write), st->cache_read);
    long long more_prompt = prompt > st->told_prompt ? prompt - st->told_prompt : 0;
    long long more_output = st->output > st->told_completion ? st->output - st->told_completion : 0;
    if (e->usage.kind != ABSENT && (more_prompt > 0 || more_output > 0)) {
        out->has_usage = 1;
        out->prompt_tokens = more_prompt;
        out->completion_tokens = more_output;
        out->total_tokens = sum(more_prompt, more_output);
        st->told_prompt += more_prompt;
        st->told_completion += more_output;
        rc = SB_WIRE_DELTA;
    }
    return rc;
}

static sb_wire_result_t on_error(const struct event *e, sb_delta_t *out, sb_error_t *error)
{
    const struct error *x = e->error.kind == GOOD ? &e->error : &no_error;
    *error = error_kind(&x->type);
    if (x->message.kind == GOOD)
        out->error_message = x->message.v;
    return SB_WIRE_ERROR;
}

static sb_wire_result_t event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error)
{
    struct state *st = state;
    sb_jscan_t s = {(const unsigned char *)ev->data, (const unsigned char *)ev->data + ev->data_len, scratch, NULL};
    struct event e;
    /* only the kinds: each sub-form is cleared when its member is read, and read only when its kind says GOOD */
    e.type.kind = e.index.kind = e.delta.kind = e.block.kind = e.message.kind = e.usage.kind = e.error.kind = ABSENT;
    memset(out, 0, offsetof(sb_delta_t, tools));
    if (read_event(&s, &e) != SB_JSCAN_OK)
        return malformed(out, error, "that is not a json object");
    /* the data's type names the event (the SDKs read it); the SSE event name stands in when it has none */
    if (e.type.kind != ABSENT && e.type.kind != GOOD)
        return malformed(out, error, "whose type is not a string");
    sb_str_t type = e.type.kind == GOOD ? e.type.v : lit(ev->event);
    if (is(type, "content_block_delta"))
        return on_block_delta(st, &e, out, error);
    if (is(type, "content_block_start"))
        return on_block_start(st, &e, ev->data_len, scratch, out, error);
    if (is(type, "message_start"))
        return on_message_start(st, &e, out, error);
    if (is(type, "message_delta"))
        return on_message_delta(st, &e, out, error);
    if (is(type, "message_stop"))
        return SB_WIRE_END;
    if (is(type, "error"))
        return on_error(&e, out, error);
    /* ping, content_block_stop and event types yet to come say nothing to the turn */
    return SB_WIRE_SKIP;
}

/* --- the rest of the wire --------------------------------------------------------------------- */

static char *url(const sb_wire_target_t *target)
{
    return sb_wire_url(target->base_url, "/messages");
}

static struct curl_slist *headers(struct curl_slist *list, const char *key)
{
    list = sb_wire_key_header(list, "x-api-key: ", key);
    list = curl_slist_append(list, "anthropic-version: " ANTHROPIC_VERSION);
    list = curl_slist_append(list, "content-type: application/json");
    return curl_slist_append(list, "accept: text/event-stream");
}

/* {"type":"error","error":{"type":...,"message":...}}; a body that is not JSON (a proxy's page) is passed on as text. */
static void error_message(const char *text, size_t len, char *msg, size_t cap)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    json_t *e = json_object_get(root, "error");
    json_t *m = json_is_object(e) ? json_object_get(e, "message") : json_is_string(e) ? e : json_object_get(root, "message");
    if (json_is_string(m))
        sb_copy_text(msg, cap, json_string_value(m), json_string_length(m));
    else if (root == NULL && len > 0)
        sb_copy_text(msg, cap, text, len);
    else
        msg[0] = '\0';
    json_decref(root);
}

const sb_wire_t sb_wire_anthropic = {
    "anthropic",          /* name */
    url,                  /* url */
    headers,              /* headers */
    body,                 /* body */
    sizeof(struct state), /* state_size */
    event,                /* event */
    NULL,                 /* whole: always streamed here */
    error_message,        /* error_message */
};
