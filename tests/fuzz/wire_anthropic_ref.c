/*
 * REFERENCE ONLY, not built into switchboard: the jansson-based reading of
 * Anthropic's stream events that src/wire_anthropic.c had before its
 * single-pass reader, kept unchanged (but for the parse error it reports) as
 * the oracle for tests/fuzz/fuzz_wire_anthropic.c.
 */
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "wire_anthropic_ref.h"

/* What spans the events of one streamed answer. */
struct state {
    long long input, cache_write, cache_read, output; /* usage so far, as message_start and message_delta counted it */
    long long told_prompt, told_completion;           /* what the turn was told: the counts are cumulative, the turn sums */
    long ntools;                                      /* tool_use blocks so far: the turn's index of the next call */
    long tool_block[SB_CHUNK_MAX_TOOLS];              /* the content block index of each tool_use block */
};

const size_t ref_anthropic_state_size = sizeof(struct state);

/*
 * The event's scratch space (wire.h: at least as large as its data), where the
 * strings `out` points to are kept until the next event: jansson's own copies
 * go with the tree. Decoded strings are never longer than their JSON, so the
 * strings of one event always fit; `left` makes sure of it.
 */
struct scratch {
    char *at;
    size_t left;
};

static sb_str_t keep(struct scratch *sc, json_t *s)
{
    size_t len = json_string_length(s);
    len = len < sc->left ? len : sc->left;
    memcpy(sc->at, json_string_value(s), len);
    sb_str_t r = {sc->at, len};
    sc->at += len, sc->left -= len;
    return r;
}

static sb_str_t lit(const char *s)
{
    return (sb_str_t){s, strlen(s)};
}

/* upstream.c says "the model provider sent a chunk <problem>" */
static sb_wire_result_t malformed(sb_delta_t *out, sb_error_t *error, const char *problem)
{
    out->problem = problem;
    *error = SB_E_UPSTREAM_BAD_RESPONSE;
    return SB_WIRE_ERROR;
}

/* A count that must be absent or a non-negative integer; -1 when it is present and something else. */
static int count(json_t *usage, const char *key, long long *to)
{
    json_t *v = json_object_get(usage, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *to = json_integer_value(v);
    return 0;
}

/*
 * Usage: Anthropic's input_tokens leaves out the cached tokens that OpenAI's
 * prompt_tokens counts, so the three are added. The counts are cumulative
 * and may come more than once, while the turn sums what it is told over its
 * rounds: each time, only what was not yet told is.
 */
static int read_usage(struct state *st, json_t *usage)
{
    if (usage == NULL || json_is_null(usage))
        return 0;
    if (!json_is_object(usage) || count(usage, "input_tokens", &st->input) != 0 ||
        count(usage, "cache_creation_input_tokens", &st->cache_write) != 0 ||
        count(usage, "cache_read_input_tokens", &st->cache_read) != 0 || count(usage, "output_tokens", &st->output) != 0)
        return -1;
    return 0;
}

/* Counts are non-negative (count() checks), so only the top can overflow: it stops there. */
static long long sum(long long a, long long b)
{
    return a > LLONG_MAX - b ? LLONG_MAX : a + b;
}

static const char *finish_reason(const char *stop)
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
        if (strcmp(stop, map[i].anthropic) == 0)
            return map[i].openai;
    return "stop";
}

static sb_error_t error_kind(const char *type)
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
    for (size_t i = 0; type != NULL && i < sizeof(map) / sizeof(map[0]); ++i)
        if (strcmp(type, map[i].type) == 0)
            return map[i].kind;
    return SB_E_UPSTREAM_ERROR; /* overloaded_error, api_error and whatever comes next */
}

static sb_wire_result_t on_message_start(struct state *st, json_t *root, struct scratch *sc, sb_delta_t *out, sb_error_t *error)
{
    json_t *message = json_object_get(root, "message");
    json_t *model = json_object_get(message, "model");
    if (!json_is_object(message) || (model != NULL && !json_is_string(model)) || read_usage(st, json_object_get(message, "usage")))
        return malformed(out, error, "(message_start) with a field of the wrong type");
    if (model == NULL)
        return SB_WIRE_SKIP;
    out->model = keep(sc, model);
    return SB_WIRE_DELTA;
}

static sb_wire_result_t on_block_start(struct state *st, json_t *root, struct scratch *sc, sb_delta_t *out, sb_error_t *error)
{
    static const char wrong[] = "(content_block_start) with a field of the wrong type";
    json_t *index = json_object_get(root, "index");
    json_t *block = json_object_get(root, "content_block");
    const char *type = json_string_value(json_object_get(block, "type"));
    if (!json_is_integer(index) || type == NULL)
        return malformed(out, error, wrong);
    if (strcmp(type, "text") == 0) {
        json_t *text = json_object_get(block, "text");
        if (text != NULL && !json_is_string(text))
            return malformed(out, error, wrong);
        if (json_string_length(text) == 0)
            return SB_WIRE_SKIP;
        out->content = keep(sc, text);
        return SB_WIRE_DELTA;
    }
    if (strcmp(type, "tool_use") != 0) /* thinking, server tools and their results: nothing the caller hears */
        return SB_WIRE_SKIP;
    json_t *id = json_object_get(block, "id"), *name = json_object_get(block, "name"), *input = json_object_get(block, "input");
    if (!json_is_string(id) || !json_is_string(name) || (input != NULL && !json_is_object(input)))
        return malformed(out, error, wrong);
    if (st->ntools < SB_CHUNK_MAX_TOOLS) /* past that the turn refuses the call it is given below */
        st->tool_block[st->ntools] = (long)json_integer_value(index);
    sb_tool_delta_t *t = &out->tools[0];
    out->ntools = 1;
    t->index = st->ntools++;
    t->id = keep(sc, id);
    t->name = keep(sc, name);
    t->type = lit("function");
    t->arguments = lit("");
    if (json_object_size(input) > 0) {
        /* Anthropic streams the input as input_json_delta after an empty {}; a gateway may send it whole here */
        size_t len = json_dumpb(input, sc->at, sc->left, JSON_COMPACT);
        if (len == 0 || len > sc->left)
            return malformed(out, error, "(content_block_start) whose tool input does not fit it");
        t->arguments = (sb_str_t){sc->at, len};
        sc->at += len, sc->left -= len;
    }
    return SB_WIRE_DELTA;
}

static sb_wire_result_t on_block_delta(struct state *st, json_t *root, struct scratch *sc, sb_delta_t *out, sb_error_t *error)
{
    static const char wrong[] = "(content_block_delta) with a field of the wrong type";
    json_t *index = json_object_get(root, "index");
    json_t *delta = json_object_get(root, "delta");
    const char *type = json_string_value(json_object_get(delta, "type"));
    if (!json_is_integer(index) || type == NULL)
        return malformed(out, error, wrong);
    if (strcmp(type, "text_delta") == 0) {
        json_t *text = json_object_get(delta, "text");
        if (!json_is_string(text))
            return malformed(out, error, wrong);
        if (json_string_length(text) == 0)
            return SB_WIRE_SKIP;
        out->content = keep(sc, text);
        return SB_WIRE_DELTA;
    }
    if (strcmp(type, "input_json_delta") != 0) /* thinking, signatures, citations */
        return SB_WIRE_SKIP;
    json_t *partial = json_object_get(delta, "partial_json");
    if (!json_is_string(partial))
        return malformed(out, error, wrong);
    long block = (long)json_integer_value(index);
    long n = st->ntools < SB_CHUNK_MAX_TOOLS ? st->ntools : SB_CHUNK_MAX_TOOLS;
    long tool = n - 1;
    while (tool >= 0 && st->tool_block[tool] != block)
        --tool;
    if (tool < 0 || json_string_length(partial) == 0) /* a server tool's input, or nothing yet */
        return SB_WIRE_SKIP;
    out->ntools = 1;
    out->tools[0] = (sb_tool_delta_t){.index = tool, .arguments = keep(sc, partial)};
    return SB_WIRE_DELTA;
}

static sb_wire_result_t on_message_delta(struct state *st, json_t *root, sb_delta_t *out, sb_error_t *error)
{
    json_t *delta = json_object_get(root, "delta");
    json_t *stop = json_object_get(delta, "stop_reason");
    if ((delta != NULL && !json_is_object(delta)) || (stop != NULL && !json_is_null(stop) && !json_is_string(stop)) ||
        read_usage(st, json_object_get(root, "usage")) != 0)
        return malformed(out, error, "(message_delta) with a field of the wrong type");
    sb_wire_result_t rc = SB_WIRE_SKIP;
    if (json_is_string(stop)) {
        out->finish_reason = lit(finish_reason(json_string_value(stop)));
        rc = SB_WIRE_DELTA;
    }
    /* a count that shrinks (it should not) tells nothing rather than taking back what was told */
    long long prompt = sum(sum(st->input, st->cache_write), st->cache_read);
    long long more_prompt = prompt > st->told_prompt ? prompt - st->told_prompt : 0;
    long long more_output = st->output > st->told_completion ? st->output - st->told_completion : 0;
    if (json_object_get(root, "usage") != NULL && (more_prompt > 0 || more_output > 0)) {
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

static sb_wire_result_t on_error(json_t *root, struct scratch *sc, sb_delta_t *out, sb_error_t *error)
{
    json_t *e = json_object_get(root, "error");
    json_t *message = json_object_get(e, "message");
    *error = error_kind(json_string_value(json_object_get(e, "type")));
    if (json_is_string(message))
        out->error_message = keep(sc, message);
    return SB_WIRE_ERROR;
}

sb_wire_result_t ref_anthropic_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                     json_error_t *jerr)
{
    struct state *st = state;
    struct scratch sc = {scratch, ev->data_len};
    memset(out, 0, offsetof(sb_delta_t, tools));
    json_t *root = json_loadb(ev->data, ev->data_len, 0, jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return malformed(out, error, "that is not a json object");
    }
    /* the data's type names the event (the SDKs read it); the SSE event name stands in when it has none */
    json_t *t = json_object_get(root, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : ev->event;
    sb_wire_result_t rc = SB_WIRE_SKIP;
    if (t != NULL && !json_is_string(t))
        rc = malformed(out, error, "whose type is not a string");
    else if (strcmp(type, "content_block_delta") == 0)
        rc = on_block_delta(st, root, &sc, out, error);
    else if (strcmp(type, "content_block_start") == 0)
        rc = on_block_start(st, root, &sc, out, error);
    else if (strcmp(type, "message_start") == 0)
        rc = on_message_start(st, root, &sc, out, error);
    else if (strcmp(type, "message_delta") == 0)
        rc = on_message_delta(st, root, out, error);
    else if (strcmp(type, "message_stop") == 0)
        rc = SB_WIRE_END;
    else if (strcmp(type, "error") == 0)
        rc = on_error(root, &sc, out, error);
    /* ping, content_block_stop and event types yet to come say nothing to the turn */
    json_decref(root);
    return rc;
}
