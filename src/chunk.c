/*
 * Reads one upstream chat.completion.chunk (or an in-band error object), or
 * one whole non-streamed chat.completion, into sb_delta_t in a single pass
 * over the bytes, with a strict JSON scanner made
 * for this one shape: no allocation, no tree, strings left where they are
 * unless they hold escapes. Only choice 0 is read: switchboard always asks
 * for one choice.
 *
 * The rules are those of the jansson reading this replaced (json_loadb with
 * no flags, then typed lookups), which tests/fuzz/fuzz_chunk.c keeps as its
 * oracle and whose header lists the few deliberate differences. Two kinds
 * of failure are told apart while scanning: bad syntax stops at once, while
 * a field of the wrong type is only noted, because a later duplicate key may
 * replace it (the last one wins, as in a jansson object) and a non-null
 * "error" makes every other field irrelevant.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chunk.h"
#include "jscan.h"

/* Switchboard's own fields sit 7 levels deep at most: root, choices, choice, delta, tool_calls, call, function. */
_Static_assert(SB_JSCAN_MAX_DEPTH > 7, "the chunk's own shape must fit the depth limit");
_Static_assert(SB_CHUNK_MAX_DEPTH == SB_JSCAN_MAX_DEPTH, "what chunk.h promises is what the scanner does");

static int read_function(sb_jscan_t *s, sb_tool_delta_t *t)
{
    int first = 1, rc, bad_name = SB_JSCAN_OK, bad_args = SB_JSCAN_OK;
    sb_str_t key;
    t->name = t->arguments = (sb_str_t){NULL, 0};
    if ((rc = sb_jscan_enter_or_null(s, '{', 6)) != SB_JSCAN_ENTERED)
        return rc;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "name"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &t->name, 7), bad_name);
        else if (SB_JSCAN_KEY(key, "arguments"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &t->arguments, 7), bad_args);
        else if (sb_jscan_skip(s, 7) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return rc < 0 ? SB_JSCAN_SYNTAX : bad_name | bad_args;
}

/* One element of tool_calls, at `position` in the array. */
static int read_tool(sb_jscan_t *s, sb_tool_delta_t *t, size_t position)
{
    int first = 1, rc, bad_index = SB_JSCAN_OK, bad_id = SB_JSCAN_OK, bad_type = SB_JSCAN_OK, bad_fn = SB_JSCAN_OK;
    sb_str_t key;
    long long index = (long long)position; /* a provider that streams whole calls may omit index */
    *t = (sb_tool_delta_t){0};
    if (sb_jscan_peek(s) != '{')
        return sb_jscan_wrong(s, 5);
    ++s->p;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "index")) {
            SB_JSCAN_MEMBER(sb_jscan_int(s, 1023, 0, &index, 6), bad_index);
            if (bad_index != SB_JSCAN_OK)
                s->problem = "a tool call index that is not an integer from 0 to 1023";
        } else if (SB_JSCAN_KEY(key, "id"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &t->id, 6), bad_id);
        else if (SB_JSCAN_KEY(key, "type"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &t->type, 6), bad_type);
        else if (SB_JSCAN_KEY(key, "function"))
            SB_JSCAN_MEMBER(read_function(s, t), bad_fn);
        else if (sb_jscan_skip(s, 6) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    t->index = (long)index;
    return rc < 0 ? SB_JSCAN_SYNTAX : bad_index | bad_id | bad_type | bad_fn;
}

static int read_tool_calls(sb_jscan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad = SB_JSCAN_OK;
    size_t position = 0;
    out->ntools = 0;
    out->too_many_tools = 0;
    if ((rc = sb_jscan_enter_or_null(s, '[', 4)) != SB_JSCAN_ENTERED)
        return rc;
    while ((rc = sb_jscan_element(s, &first)) > 0) {
        if (bad != SB_JSCAN_OK || out->ntools == SB_CHUNK_MAX_TOOLS) { /* the rest need only be valid JSON */
            if (sb_jscan_skip(s, 5) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            if (bad == SB_JSCAN_OK && out->ntools == SB_CHUNK_MAX_TOOLS) {
                s->problem = "more tool calls in one chunk than switchboard relays";
                out->too_many_tools = 1;
            }
            bad = SB_JSCAN_WRONG;
            continue;
        }
        SB_JSCAN_MEMBER(read_tool(s, &out->tools[out->ntools++], position++), bad);
    }
    return rc < 0 ? SB_JSCAN_SYNTAX : bad;
}

static int read_delta(sb_jscan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_content = SB_JSCAN_OK, bad_tools = SB_JSCAN_OK;
    sb_str_t key;
    out->content = (sb_str_t){NULL, 0};
    out->audio = (sb_str_t){NULL, 0};
    out->ntools = 0;
    if ((rc = sb_jscan_enter_or_null(s, '{', 3)) != SB_JSCAN_ENTERED)
        return rc;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "content")) {
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->content, 4), bad_content);
        } else if (SB_JSCAN_KEY(key, "audio") && sb_jscan_peek(s) == '{') { /* audio output: its bytes go to the caller untouched */
            const unsigned char *from = s->p;
            if (sb_jscan_skip(s, 4) != SB_JSCAN_OK)
                return SB_JSCAN_SYNTAX;
            out->audio = (sb_str_t){(const char *)from, (size_t)(s->p - from)};
        } else if (SB_JSCAN_KEY(key, "tool_calls"))
            SB_JSCAN_MEMBER(read_tool_calls(s, out), bad_tools);
        else if (sb_jscan_skip(s, 4) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return rc < 0 ? SB_JSCAN_SYNTAX : bad_content | bad_tools;
}

/* A choice of a chunk holds its `delta`; a choice of a whole answer (`whole`) holds its `message`, of the same shape. */
static int read_choice(sb_jscan_t *s, sb_delta_t *out, int whole)
{
    int first = 1, rc, bad_finish = SB_JSCAN_OK, bad_delta = SB_JSCAN_OK;
    sb_str_t key;
    if (sb_jscan_peek(s) != '{')
        return sb_jscan_wrong(s, 2);
    ++s->p;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (whole ? SB_JSCAN_KEY(key, "message") : SB_JSCAN_KEY(key, "delta"))
            SB_JSCAN_MEMBER(read_delta(s, out), bad_delta);
        else if (SB_JSCAN_KEY(key, "finish_reason"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->finish_reason, 3), bad_finish);
        else if (sb_jscan_skip(s, 3) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    return rc < 0 ? SB_JSCAN_SYNTAX : bad_finish | bad_delta;
}

static int read_choices(sb_jscan_t *s, sb_delta_t *out, int whole)
{
    int first = 1, rc, bad = SB_JSCAN_OK;
    size_t i = 0;
    out->finish_reason = out->content = (sb_str_t){NULL, 0};
    out->ntools = 0;
    if ((rc = sb_jscan_enter_or_null(s, '[', 1)) != SB_JSCAN_ENTERED)
        return rc;
    while ((rc = sb_jscan_element(s, &first)) > 0) {
        if (i++ == 0)
            SB_JSCAN_MEMBER(read_choice(s, out, whole), bad);
        else if (sb_jscan_skip(s, 2) != SB_JSCAN_OK) /* other choices are never asked for */
            return SB_JSCAN_SYNTAX;
    }
    return rc < 0 ? SB_JSCAN_SYNTAX : bad;
}

static int read_usage(sb_jscan_t *s, sb_delta_t *out)
{
    int first = 1, rc, bad_prompt = SB_JSCAN_OK, bad_completion = SB_JSCAN_OK, bad_total = SB_JSCAN_OK;
    sb_str_t key;
    out->has_usage = 0;
    out->prompt_tokens = out->completion_tokens = out->total_tokens = 0;
    if ((rc = sb_jscan_enter_or_null(s, '{', 1)) != SB_JSCAN_ENTERED)
        return rc;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "prompt_tokens"))
            SB_JSCAN_MEMBER(sb_jscan_int(s, LLONG_MAX, 1, &out->prompt_tokens, 2), bad_prompt);
        else if (SB_JSCAN_KEY(key, "completion_tokens"))
            SB_JSCAN_MEMBER(sb_jscan_int(s, LLONG_MAX, 1, &out->completion_tokens, 2), bad_completion);
        else if (SB_JSCAN_KEY(key, "total_tokens"))
            SB_JSCAN_MEMBER(sb_jscan_int(s, LLONG_MAX, 1, &out->total_tokens, 2), bad_total);
        else if (sb_jscan_skip(s, 2) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    out->has_usage = 1;
    return rc < 0 ? SB_JSCAN_SYNTAX : bad_prompt | bad_completion | bad_total;
}

/* "error": a string is the message; in an object, fields of other types (a numeric code) are left out. */
static int read_error(sb_jscan_t *s, sb_delta_t *out)
{
    int first = 1, rc, ignored;
    sb_str_t key;
    out->is_error = 0;
    out->error_message = out->error_type = out->error_code = (sb_str_t){NULL, 0};
    switch (sb_jscan_peek(s)) {
    case 'n':
        return sb_jscan_literal(s, "null", 4);
    case '"':
        out->is_error = 1;
        return sb_jscan_string(s, &out->error_message, 1);
    case '{':
        out->is_error = 1;
        break;
    default:
        out->is_error = 1;
        return sb_jscan_wrong(s, 1);
    }
    ++s->p;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "message"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->error_message, 2), ignored);
        else if (SB_JSCAN_KEY(key, "type"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->error_type, 2), ignored);
        else if (SB_JSCAN_KEY(key, "code"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->error_code, 2), ignored);
        else if (sb_jscan_skip(s, 2) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    (void)ignored;
    return rc < 0 ? SB_JSCAN_SYNTAX : SB_JSCAN_OK;
}

static int read_chunk(sb_jscan_t *s, sb_delta_t *out, int whole)
{
    int first = 1, rc, bad_model = SB_JSCAN_OK, bad_usage = SB_JSCAN_OK, bad_choices = SB_JSCAN_OK, bad_error = SB_JSCAN_OK;
    sb_str_t key;
    if (sb_jscan_peek(s) != '{')
        return SB_JSCAN_SYNTAX;
    ++s->p;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        if (SB_JSCAN_KEY(key, "choices"))
            SB_JSCAN_MEMBER(read_choices(s, out, whole), bad_choices);
        else if (SB_JSCAN_KEY(key, "model"))
            SB_JSCAN_MEMBER(sb_jscan_str_or_null(s, &out->model, 1), bad_model);
        else if (SB_JSCAN_KEY(key, "usage"))
            SB_JSCAN_MEMBER(read_usage(s, out), bad_usage);
        else if (SB_JSCAN_KEY(key, "error"))
            SB_JSCAN_MEMBER(read_error(s, out), bad_error);
        else if (sb_jscan_skip(s, 1) != SB_JSCAN_OK)
            return SB_JSCAN_SYNTAX;
    }
    if (rc < 0 || sb_jscan_peek(s) != -1) /* exactly one value */
        return SB_JSCAN_SYNTAX;
    if (out->is_error) { /* an error chunk carries nothing else, whatever its other fields hold */
        sb_str_t message = out->error_message, type = out->error_type, code = out->error_code;
        memset(out, 0, offsetof(sb_delta_t, tools));
        out->is_error = 1;
        out->error_message = message;
        out->error_type = type;
        out->error_code = code;
        return bad_error;
    }
    return bad_model | bad_usage | bad_choices;
}

static int parse(const char *data, size_t len, sb_delta_t *out, char *scratch, int whole)
{
    sb_jscan_t s = {(const unsigned char *)data, (const unsigned char *)data + len, scratch, NULL};
    memset(out, 0, offsetof(sb_delta_t, tools)); /* a delta is read only up to ntools: the entries need no clearing */
    int rc = read_chunk(&s, out, whole);
    if (rc == SB_JSCAN_OK)
        return 0;
    out->problem = rc == SB_JSCAN_WRONG ? s.problem : NULL;
    return rc == SB_JSCAN_WRONG ? -2 : -1;
}

int sb_chunk_parse(const char *data, size_t len, sb_delta_t *out, char *scratch)
{
    return parse(data, len, out, scratch, 0);
}

int sb_chunk_parse_whole(const char *data, size_t len, sb_delta_t *out, char *scratch)
{
    return parse(data, len, out, scratch, 1);
}
