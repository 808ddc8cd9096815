/*
 * OpenAI's Responses API as a provider wire (wire.h): POST {base}/responses
 * with a bearer key, `store: false` (switchboard sends the whole conversation
 * every round and wants nothing kept), the cleaned chat request said as input
 * items, and the `response.*` events read back into the turn's deltas. The
 * stream has no [DONE]: response.completed carries the usage and is the end.
 */
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/buf.h"
#include "jscan_keys.h"
#include "sb/json.h"
#include "wire.h"

/* --- the request ---------------------------------------------------------------------------------- */

static char *url(const sb_wire_target_t *t)
{
    return sb_wire_url(t->base_url, "/responses");
}

static struct curl_slist *headers(struct curl_slist *list, const char *key)
{
    list = curl_slist_append(list, "Content-Type: application/json");
    list = curl_slist_append(list, "Accept: text/event-stream");
    return sb_wire_key_header(list, "Authorization: Bearer ", key);
}

static int is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* Chat content (a string, or parts) as Responses content: text → input_text / output_text, image_url → input_image. */
static json_t *content_of(json_t *content, int assistant)
{
    if (!json_is_array(content))
        return json_string(json_is_string(content) ? json_string_value(content) : "");
    json_t *parts = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        if (is(json_object_get(p, "type"), "text") && json_is_string(json_object_get(p, "text")))
            json_array_append_new(parts, json_pack("{s:s, s:O}", "type", assistant ? "output_text" : "input_text", "text",
                                                   json_object_get(p, "text")));
        else if (is(json_object_get(p, "type"), "image_url") &&
                 json_is_string(json_object_get(json_object_get(p, "image_url"), "url")))
            json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "input_image", "image_url",
                                                   json_object_get(json_object_get(p, "image_url"), "url")));
    }
    return parts;
}

/* A chat tool → a flat Responses function tool. strict is said outright: the Responses API assumes true, chat false. */
static json_t *flat_tool(json_t *t)
{
    json_t *fn = json_object_get(t, "function");
    if (!is(json_object_get(t, "type"), "function") || !json_is_object(fn))
        return NULL;
    json_t *out = json_pack("{s:s, s:b}", "type", "function", "strict", json_is_true(json_object_get(fn, "strict")));
    static const char *const keys[] = {"name", "description", "parameters"};
    for (size_t k = 0; k < 3; ++k)
        if (json_object_get(fn, keys[k]) != NULL)
            json_object_set(out, keys[k], json_object_get(fn, keys[k]));
    return out;
}

static void add_tools(json_t *tools, json_t *list)
{
    size_t i;
    json_t *t, *flat;
    json_array_foreach(list, i, t) if ((flat = flat_tool(t)) != NULL) json_array_append_new(tools, flat);
}

/* The Responses body for the cleaned chat request (new reference). */
static json_t *translate(const sb_wire_target_t *target, const sb_chat_request_t *req)
{
    json_t *chat = req->upstream;
    json_t *body = json_pack("{s:s, s:b, s:b}", "model", target->model, "stream", 1, "store", 0);
    json_t *input = json_array();
    sb_buf_t instructions;
    sb_buf_init(&instructions, SB_JSON_MAX_DUMP);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(chat, "messages"), i, m)
    {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (is(role, "system") || is(role, "developer")) { /* instructions: the system prompt and the retrieved passages */
            json_t *text = content_of(content, 0);
            for (size_t k = 0; json_is_array(text) && k < json_array_size(text); ++k) {
                json_t *t = json_object_get(json_array_get(text, k), "text");
                sb_buf_append(&instructions, json_string_value(t), json_string_length(t));
            }
            if (json_is_string(text)) {
                if (instructions.len > 0)
                    sb_buf_appendz(&instructions, "\n\n");
                sb_buf_append(&instructions, json_string_value(text), json_string_length(text));
            }
            json_decref(text);
        } else if (is(role, "tool")) {
            json_t *out = content_of(content, 0);
            if (json_is_array(out)) { /* a tool's output is text here: its parts joined */
                sb_buf_t joined;
                sb_buf_init(&joined, SB_JSON_MAX_DUMP);
                for (size_t k = 0; k < json_array_size(out); ++k) {
                    json_t *t = json_object_get(json_array_get(out, k), "text");
                    sb_buf_append(&joined, json_string_value(t), json_string_length(t));
                }
                json_decref(out);
                out = json_stringn(joined.base ? joined.base : "", joined.len);
                sb_buf_dispose(&joined);
            }
            json_array_append_new(input, json_pack("{s:s, s:O, s:o}", "type", "function_call_output", "call_id",
                                                   json_object_get(m, "tool_call_id"), "output", out));
        } else {
            int assistant = is(role, "assistant");
            if (!assistant || (json_is_string(content) && json_string_length(content) > 0) || json_is_array(content))
                json_array_append_new(input,
                                      json_pack("{s:s, s:s, s:o}", "type", "message", "role", assistant ? "assistant" : "user",
                                                "content", content_of(content, assistant)));
            size_t k;
            json_t *call;
            json_array_foreach(json_object_get(m, "tool_calls"), k, call)
            {
                json_t *fn = json_object_get(call, "function");
                json_t *args = json_object_get(fn, "arguments");
                json_array_append_new(input, json_pack("{s:s, s:O, s:O, s:s}", "type", "function_call", "call_id",
                                                       json_object_get(call, "id"), "name", json_object_get(fn, "name"),
                                                       "arguments", json_is_string(args) ? json_string_value(args) : "{}"));
            }
        }
    }
    json_object_set_new(body, "input", input);
    if (instructions.len > 0)
        json_object_set_new(body, "instructions", json_stringn(instructions.base, instructions.len));
    sb_buf_dispose(&instructions);

    json_t *tools = json_array();
    add_tools(tools, json_object_get(chat, "tools"));
    if (req->offered_tools != NULL) {
        json_t *offered = json_loads(req->offered_tools, 0, NULL);
        add_tools(tools, offered);
        json_decref(offered);
    }
    if (json_array_size(tools) > 0)
        json_object_set_new(body, "tools", tools);
    else
        json_decref(tools);
    json_t *v = json_object_get(chat, "tool_choice");
    if (json_is_string(v))
        json_object_set(body, "tool_choice", v);
    else if (json_is_object(v) && json_is_string(json_object_get(json_object_get(v, "function"), "name")))
        json_object_set_new(
            body, "tool_choice",
            json_pack("{s:s, s:O}", "type", "function", "name", json_object_get(json_object_get(v, "function"), "name")));
    /* the sampling parameters the API shares; stop, seed, n and the penalties it has not, and the model does without */
    static const char *const same[] = {"temperature", "top_p", "parallel_tool_calls", "user", "service_tier", "top_logprobs"};
    for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); ++k)
        if ((v = json_object_get(chat, same[k])) != NULL)
            json_object_set(body, same[k], v);
    if ((v = json_object_get(chat, "max_completion_tokens")) != NULL || (v = json_object_get(chat, "max_tokens")) != NULL)
        json_object_set(body, "max_output_tokens", v);
    if (json_is_string(v = json_object_get(chat, "reasoning_effort")))
        json_object_set_new(body, "reasoning", json_pack("{s:O}", "effort", v));
    json_t *rf = json_object_get(chat, "response_format");
    if (is(json_object_get(rf, "type"), "json_object")) {
        json_object_set_new(body, "text", json_pack("{s:{s:s}}", "format", "type", "json_object"));
    } else if (is(json_object_get(rf, "type"), "json_schema") && json_is_object(json_object_get(rf, "json_schema"))) {
        json_t *format = json_deep_copy(json_object_get(rf, "json_schema"));
        json_object_set_new(format, "type", json_string("json_schema"));
        json_object_set_new(body, "text", json_pack("{s:o}", "format", format));
    }
    return body;
}

static char *body(const sb_wire_target_t *t, const sb_chat_request_t *req, char *err, size_t errlen)
{
    json_t *b = translate(t, req);
    sb_buf_t out;
    sb_buf_init(&out, SB_JSON_MAX_DUMP);
    /* jansson prints 0.3 as 0.29999999999999999: same double, but not what the client wrote */
    int rc = b != NULL ? sb_json_dump_append(&out, b, 15) : -1;
    json_decref(b);
    if (rc != 0 || sb_buf_append(&out, "", 1) != 0) {
        sb_buf_dispose(&out);
        snprintf(err, errlen, "the conversation is too large to send to the model provider");
        return NULL;
    }
    return out.base;
}

/* --- the stream ----------------------------------------------------------------------------------- */

/* What spans events: the function calls so far, by the output index the API gives them. */
struct state {
    long ncalls;
    long output_index[SB_CHUNK_MAX_TOOLS]; /* of call i */
    int completed;                         /* response.completed came: the stream is over */
};

/*
 * What one event says, read in one pass over its bytes into this neutral
 * form first: JSON does not order members, and "type", which says what the
 * others mean, may come last. Each field is what jansson's typed lookups gave
 * the reader this replaced: a string or absent (base NULL), an integer's value
 * or 0. Strings point into the event's data, or into scratch when they held
 * escapes (each is decoded once and kept: together they never outgrow the data).
 */
typedef struct {
    sb_str_t type, delta, message, error_message;    /* the root's: message and error.message for an `error` event */
    sb_str_t item_type, call_id, name, arguments;    /* item.* */
    sb_str_t model, reason, failure, nested_failure; /* response.model, .incomplete_details.reason, .error.message,
                                                        .error.error.message */
    long long output_index;
    int has_usage;
    long long input_tokens, output_tokens, total_tokens; /* response.usage.* */
} fields_t;

/* A string, or absent when the member holds anything else. */
static int text(sb_jscan_t *s, sb_str_t *out, unsigned depth)
{
    *out = (sb_str_t){NULL, 0};
    return sb_jscan_peek(s) == '"' ? sb_jscan_string(s, out, 1) : sb_jscan_skip(s, depth);
}

/* An integer's value, or 0 for anything else (json_integer_value). */
static int integer(sb_jscan_t *s, long long *out, unsigned depth)
{
    int c = sb_jscan_peek(s), is_integer;
    long long v = 0;
    *out = 0;
    if (c != '-' && !SB_JSCAN_DIGIT(c))
        return sb_jscan_skip(s, depth);
    if (sb_jscan_number(s, &is_integer, &v) != SB_JSCAN_OK)
        return SB_JSCAN_SYNTAX;
    *out = is_integer ? v : 0;
    return SB_JSCAN_OK;
}

/*
 * Steps into a member that holds an object: returns 1 inside it, 0 after
 * skipping anything else (a lookup in a non-object finds nothing), or
 * SB_JSCAN_SYNTAX.
 */
static int enter(sb_jscan_t *s, unsigned depth)
{
    if (sb_jscan_peek(s) != '{')
        return sb_jscan_skip(s, depth) == SB_JSCAN_OK ? 0 : SB_JSCAN_SYNTAX;
    ++s->p;
    return 1;
}

/* An object whose members hold only strings this reader wants, by key; the rest skipped. */
static int strings(sb_jscan_t *s, unsigned depth, const char *const *keys, sb_str_t *const *into, size_t n)
{
    unsigned seen = 0;
    sb_str_t key;
    int first = 1, rc;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        size_t i = 0;
        while (i < n && !(key.len == strlen(keys[i]) && memcmp(key.base, keys[i], key.len) == 0))
            ++i;
        if (sb_jscan_once(&seen, i < n ? 1u << i : 0) != SB_JSCAN_OK ||
            (i < n ? text(s, into[i], depth) : sb_jscan_skip(s, depth)) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return rc;
}

static int read_usage(sb_jscan_t *s, fields_t *f)
{
    enum { INPUT = 1, OUTPUT = 2, TOTAL = 4 };
    unsigned seen = 0;
    sb_str_t key;
    int first = 1, rc;
    f->has_usage = 1;
    f->input_tokens = f->output_tokens = f->total_tokens = 0;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned k = SB_JSCAN_KEY(key, "input_tokens")    ? INPUT
                     : SB_JSCAN_KEY(key, "output_tokens") ? OUTPUT
                     : SB_JSCAN_KEY(key, "total_tokens")  ? TOTAL
                                                          : 0;
        if (sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        long long *into = k == INPUT ? &f->input_tokens : k == OUTPUT ? &f->output_tokens : k == TOTAL ? &f->total_tokens : NULL;
        rc = into != NULL ? integer(s, into, 3) : sb_jscan_skip(s, 3);
        if (rc != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return rc;
}

/* response.error: {"message": ..., "error": {"message": ...}} (the recorded error event nests its error). */
static int read_failure(sb_jscan_t *s, fields_t *f)
{
    enum { MESSAGE = 1, ERROR = 2 };
    unsigned seen = 0;
    sb_str_t key;
    int first = 1, rc;
    static const char *const message[] = {"message"};
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned k = SB_JSCAN_KEY(key, "message") ? MESSAGE : SB_JSCAN_KEY(key, "error") ? ERROR : 0;
        if (sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        if (k == MESSAGE)
            rc = text(s, &f->failure, 3);
        else if (k != ERROR)
            rc = sb_jscan_skip(s, 3);
        else if ((rc = enter(s, 3)) == 1)
            rc = strings(s, 4, message, (sb_str_t *const[]){&f->nested_failure}, 1);
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return rc;
}

static int read_response(sb_jscan_t *s, fields_t *f)
{
    enum { MODEL = 1, USAGE = 2, INCOMPLETE = 4, ERROR = 8 };
    unsigned seen = 0;
    sb_str_t key;
    int first = 1, rc;
    static const char *const reason[] = {"reason"};
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned k = SB_JSCAN_KEY(key, "model")                ? MODEL
                     : SB_JSCAN_KEY(key, "usage")              ? USAGE
                     : SB_JSCAN_KEY(key, "incomplete_details") ? INCOMPLETE
                     : SB_JSCAN_KEY(key, "error")              ? ERROR
                                                               : 0;
        if (sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        switch (k) {
        case MODEL:
            rc = text(s, &f->model, 2);
            break;
        case USAGE:
            f->has_usage = 0;
            if ((rc = enter(s, 2)) == 1)
                rc = read_usage(s, f);
            break;
        case INCOMPLETE:
            if ((rc = enter(s, 2)) == 1)
                rc = strings(s, 3, reason, (sb_str_t *const[]){&f->reason}, 1);
            break;
        case ERROR:
            if ((rc = enter(s, 2)) == 1)
                rc = read_failure(s, f);
            break;
        default:
            rc = sb_jscan_skip(s, 2);
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return rc;
}

/* The whole event: exactly one object, no key it acts on repeated in the objects read (jscan.h's rule). */
static int read_fields(sb_jscan_t *s, fields_t *f)
{
    enum { TYPE = 1, DELTA = 2, OUTPUT_INDEX = 4, RESPONSE = 8, ITEM = 16, MESSAGE = 32, ERROR = 64 };
    unsigned seen = 0;
    sb_str_t key;
    int first = 1, rc;
    static const char *const item[] = {"type", "call_id", "name", "arguments"}, *const message[] = {"message"};
    if (sb_jscan_peek(s) != '{')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned k = SB_JSCAN_KEY(key, "type")           ? TYPE
                     : SB_JSCAN_KEY(key, "delta")        ? DELTA
                     : SB_JSCAN_KEY(key, "output_index") ? OUTPUT_INDEX
                     : SB_JSCAN_KEY(key, "response")     ? RESPONSE
                     : SB_JSCAN_KEY(key, "item")         ? ITEM
                     : SB_JSCAN_KEY(key, "message")      ? MESSAGE
                     : SB_JSCAN_KEY(key, "error")        ? ERROR
                                                         : 0;
        if (sb_jscan_once(&seen, k) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
        switch (k) {
        case TYPE:
            rc = text(s, &f->type, 1);
            break;
        case DELTA:
            rc = text(s, &f->delta, 1);
            break;
        case OUTPUT_INDEX:
            rc = integer(s, &f->output_index, 1);
            break;
        case RESPONSE:
            if ((rc = enter(s, 1)) == 1)
                rc = read_response(s, f);
            break;
        case ITEM:
            if ((rc = enter(s, 1)) == 1)
                rc = strings(s, 2, item, (sb_str_t *const[]){&f->item_type, &f->call_id, &f->name, &f->arguments}, 4);
            break;
        case MESSAGE:
            rc = text(s, &f->message, 1);
            break;
        case ERROR:
            if ((rc = enter(s, 1)) == 1)
                rc = strings(s, 2, message, (sb_str_t *const[]){&f->error_message}, 1);
            break;
        default:
            rc = sb_jscan_skip(s, 1);
        }
        if (rc < 0)
            return SB_JSCAN_SYNTAX;
    }
    return rc < 0 || sb_jscan_peek(s) != -1 ? SB_JSCAN_SYNTAX : SB_JSCAN_OK;
}

static int same(sb_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.base != NULL && s.len == n && memcmp(s.base, lit, n) == 0;
}
/*
 * Events that tell the turn nothing, by their SSE name: the stream's
 * bookkeeping, and the .done events that repeat whole what the deltas already
 * said. Their data is not read at all: nothing in it is used, and the larger
 * ones (the whole response so far, the whole text) would otherwise cost more
 * than the words they follow. The stream's framing (sse.c) has bounded and
 * delimited the event already.
 */
int sb_wire_responses_says_nothing(const sb_sse_event_t *ev)
{
    static const char *const names[] = {
        "response.in_progress",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_text.annotation.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (ev->event_len == strlen(names[i]) && memcmp(ev->event, names[i], ev->event_len) == 0)
            return 1;
    return 0;
}

static sb_wire_result_t event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error)
{
    struct state *st = state;
    memset(out, 0, offsetof(sb_delta_t, tools));
    if (st->completed)
        return SB_WIRE_END;
    if (sb_wire_responses_says_nothing(ev))
        return SB_WIRE_SKIP;
    fields_t f;
    memset(&f, 0, sizeof(f));
    sb_jscan_t s = {(const unsigned char *)ev->data, (const unsigned char *)ev->data + ev->data_len, scratch, NULL};
    if (read_fields(&s, &f) != SB_JSCAN_OK) {
        *error = SB_E_UPSTREAM_BAD_RESPONSE;
        out->problem = "that is not a json object";
        return SB_WIRE_ERROR;
    }
    /* the event's own type when it says one, else the SSE event's name */
    sb_str_t type = f.type.base != NULL ? f.type : (sb_str_t){ev->event, strlen(ev->event)};
    if (same(type, "response.output_text.delta") || same(type, "response.refusal.delta")) {
        out->content = f.delta;
        return out->content.base != NULL ? SB_WIRE_DELTA : SB_WIRE_SKIP;
    }
    if (same(type, "response.function_call_arguments.delta")) {
        long oi = (long)f.output_index;
        long call = st->ncalls - 1; /* calls stream one after another: the newest, unless the index names another */
        for (long i = 0; i < st->ncalls; ++i)
            if (st->output_index[i] == oi)
                call = i;
        if (call < 0 || f.delta.base == NULL)
            return SB_WIRE_SKIP;
        sb_tool_delta_t *t = &out->tools[0];
        memset(t, 0, sizeof(*t));
        t->index = call;
        t->arguments = f.delta;
        out->ntools = 1;
        return SB_WIRE_DELTA;
    }
    if (same(type, "response.created")) {
        out->model = f.model;
        return SB_WIRE_DELTA;
    }
    if (same(type, "response.output_item.added")) {
        if (!same(f.item_type, "function_call"))
            return SB_WIRE_SKIP;
        if (st->ncalls == SB_CHUNK_MAX_TOOLS) {
            *error = SB_E_TOO_MANY_TOOL_CALLS;
            return SB_WIRE_ERROR;
        }
        sb_tool_delta_t *t = &out->tools[0];
        memset(t, 0, sizeof(*t));
        t->index = st->ncalls;
        st->output_index[st->ncalls++] = (long)f.output_index;
        t->id = f.call_id;
        t->type = (sb_str_t){"function", 8};
        t->name = f.name;
        if (f.arguments.len > 0)
            t->arguments = f.arguments;
        out->ntools = 1;
        return SB_WIRE_DELTA;
    }
    if (same(type, "response.completed") || same(type, "response.incomplete")) {
        if (f.has_usage) {
            out->has_usage = 1;
            out->prompt_tokens = f.input_tokens;
            out->completion_tokens = f.output_tokens;
            out->total_tokens = f.total_tokens;
        }
        const char *finish = st->ncalls > 0 ? "tool_calls" : "stop";
        if (same(type, "response.incomplete"))
            finish = same(f.reason, "content_filter") ? "content_filter" : "length";
        out->finish_reason = (sb_str_t){finish, strlen(finish)};
        st->completed = 1;
        return SB_WIRE_DELTA;
    }
    if (same(type, "response.failed") || same(type, "error")) {
        int root = same(type, "error"); /* an `error` event is the error; response.failed holds it in response.error */
        sb_str_t msg = root ? f.message : f.failure;
        if (msg.base == NULL) /* the error event as recorded nests its error */
            msg = root ? f.error_message : f.nested_failure;
        out->error_message = msg;
        out->is_error = 1;
        *error = SB_E_UPSTREAM_ERROR;
        return SB_WIRE_ERROR;
    }
    return SB_WIRE_SKIP;
}

static void error_message(const char *b, size_t len, char *msg, size_t cap)
{
    sb_wire_openai.error_message(b, len, msg, cap); /* the same {"error":{"message":...}} body */
}

const sb_wire_t sb_wire_responses = {
    .name = "responses",                /* OpenAI Responses API */
    .url = url,                         /* {base}/responses */
    .headers = headers,                 /* bearer key */
    .body = body,                       /* input items, instructions, flat tools, store false */
    .state_size = sizeof(struct state), /* the calls so far, and whether the response completed */
    .event = event,                     /* response.* events */
    .whole = NULL,                      /* always streamed here */
    .error_message = error_message,     /* {"error":{"message":...}} */
};
