/*
 * REFERENCE ONLY, not built into switchboard: the jansson-based event reader
 * src/wire_responses.c had before its single-pass scanner, kept unchanged
 * (but for jerr) as the oracle for tests/fuzz/fuzz_wire_responses.c.
 */
#include <stddef.h>
#include <string.h>

#include "wire_ref.h"

static int is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* What spans events: the function calls so far, by the output index the API gives them. */
struct state {
    long ncalls;
    long output_index[SB_CHUNK_MAX_TOOLS]; /* of call i */
    int completed;                         /* response.completed came: the stream is over */
};

/* Copies string `v` into scratch at *at (the strings of one event never outgrow its data). */
static sb_str_t take(json_t *v, char *scratch, size_t *at)
{
    if (!json_is_string(v))
        return (sb_str_t){NULL, 0};
    size_t n = json_string_length(v);
    memcpy(scratch + *at, json_string_value(v), n);
    sb_str_t s = {scratch + *at, n};
    *at += n;
    return s;
}

sb_wire_result_t ref_responses_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                     json_error_t *jerr)
{
    struct state *st = state;
    memset(out, 0, offsetof(sb_delta_t, tools));
    if (st->completed)
        return SB_WIRE_END;
    if (sb_wire_responses_says_nothing(ev)) /* the same events go unread by both: the reading is what is compared */
        return SB_WIRE_SKIP;
    json_t *root = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        *error = SB_E_UPSTREAM_BAD_RESPONSE;
        out->problem = "that is not a json object";
        return SB_WIRE_ERROR;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    if (type == NULL)
        type = ev->event;
    size_t at = 0;
    sb_wire_result_t r = SB_WIRE_SKIP;
    json_t *response = json_object_get(root, "response");
    if (strcmp(type, "response.created") == 0) {
        out->model = take(json_object_get(response, "model"), scratch, &at);
        r = SB_WIRE_DELTA;
    } else if (strcmp(type, "response.output_text.delta") == 0 || strcmp(type, "response.refusal.delta") == 0) {
        out->content = take(json_object_get(root, "delta"), scratch, &at);
        r = out->content.base != NULL ? SB_WIRE_DELTA : SB_WIRE_SKIP;
    } else if (strcmp(type, "response.output_item.added") == 0) {
        json_t *item = json_object_get(root, "item");
        if (is(json_object_get(item, "type"), "function_call")) {
            if (st->ncalls == SB_CHUNK_MAX_TOOLS) {
                *error = SB_E_TOO_MANY_TOOL_CALLS;
                json_decref(root);
                return SB_WIRE_ERROR;
            }
            sb_tool_delta_t *t = &out->tools[0];
            memset(t, 0, sizeof(*t));
            t->index = st->ncalls;
            st->output_index[st->ncalls++] = (long)json_integer_value(json_object_get(root, "output_index"));
            t->id = take(json_object_get(item, "call_id"), scratch, &at);
            t->type = (sb_str_t){"function", 8};
            t->name = take(json_object_get(item, "name"), scratch, &at);
            json_t *args = json_object_get(item, "arguments");
            if (json_string_length(args) > 0)
                t->arguments = take(args, scratch, &at);
            out->ntools = 1;
            r = SB_WIRE_DELTA;
        }
    } else if (strcmp(type, "response.function_call_arguments.delta") == 0) {
        long oi = (long)json_integer_value(json_object_get(root, "output_index"));
        long call = st->ncalls - 1; /* calls stream one after another: the newest, unless the index names another */
        for (long i = 0; i < st->ncalls; ++i)
            if (st->output_index[i] == oi)
                call = i;
        json_t *delta = json_object_get(root, "delta");
        if (call >= 0 && json_is_string(delta)) {
            sb_tool_delta_t *t = &out->tools[0];
            memset(t, 0, sizeof(*t));
            t->index = call;
            t->arguments = take(delta, scratch, &at);
            out->ntools = 1;
            r = SB_WIRE_DELTA;
        }
    } else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0) {
        json_t *usage = json_object_get(response, "usage");
        if (json_is_object(usage)) {
            out->has_usage = 1;
            out->prompt_tokens = json_integer_value(json_object_get(usage, "input_tokens"));
            out->completion_tokens = json_integer_value(json_object_get(usage, "output_tokens"));
            out->total_tokens = json_integer_value(json_object_get(usage, "total_tokens"));
        }
        const char *finish = st->ncalls > 0 ? "tool_calls" : "stop";
        json_t *reason = json_object_get(json_object_get(response, "incomplete_details"), "reason");
        if (strcmp(type, "response.incomplete") == 0)
            finish = is(reason, "content_filter") ? "content_filter" : "length";
        out->finish_reason = (sb_str_t){finish, strlen(finish)};
        st->completed = 1;
        r = SB_WIRE_DELTA;
    } else if (strcmp(type, "response.failed") == 0 || strcmp(type, "error") == 0) {
        json_t *e = strcmp(type, "error") == 0 ? root : json_object_get(response, "error");
        json_t *msg = json_object_get(e, "message");
        if (!json_is_string(msg)) /* the error event as recorded nests its error */
            msg = json_object_get(json_object_get(e, "error"), "message");
        out->error_message = take(msg, scratch, &at);
        out->is_error = 1;
        *error = SB_E_UPSTREAM_ERROR;
        r = SB_WIRE_ERROR;
    }
    json_decref(root);
    return r;
}

const size_t ref_responses_state_size = sizeof(struct state);
