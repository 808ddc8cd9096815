/*
 * REFERENCE ONLY, not built into switchboard: the jansson-based event reader
 * src/wire_gemini.c had before its single-pass scanner, kept unchanged (but
 * for jerr) as the oracle for tests/fuzz/fuzz_wire_gemini.c.
 */
#include <ctype.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/json.h"
#include "wire_ref.h"

#define MAX_CALLS 1024
#define ID_RANDOM 12
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

static int is_b64(int c)
{
    return isalnum(c) || c == '+' || c == '/';
}

/*
 * Whether `sig` is canonical padded base64 (what Gemini sends: its bytes
 * come back exactly from the padding-free base64url form the id carries).
 */
static int canonical_base64(const char *sig, size_t len)
{
    if (len == 0 || len % 4 != 0 || len - (sig[len - 1] == '=') - (sig[len - 2] == '=') > MAX_SIGNATURE)
        return 0;
    size_t body = len;
    while (body > len - 2 && sig[body - 1] == '=')
        --body;
    for (size_t i = 0; i < body; ++i)
        if (!is_b64((unsigned char)sig[i]))
            return 0;
    return 1;
}

/*
 * A new call id: "call_<index>_<12 random [a-z0-9]>", and when the call came
 * with a thought signature, "_ts_" and the signature in base64url without
 * padding. Ids stay within [A-Za-z0-9_-], which every engine and provider
 * takes; the random part keeps them unique across the rounds of a
 * conversation (the index starts again at 0 in every answer).
 */
static size_t mint_id(char *out, unsigned index, const char *sig, size_t sig_len)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = (size_t)snprintf(out, 24, "call_%u_", index);
    for (int i = 0; i < ID_RANDOM; ++i)
        out[n++] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    if (sig != NULL && canonical_base64(sig, sig_len)) {
        memcpy(out + n, SIGNATURE_TAG, sizeof(SIGNATURE_TAG) - 1);
        n += sizeof(SIGNATURE_TAG) - 1;
        for (size_t i = 0; i < sig_len && sig[i] != '='; ++i)
            out[n++] = sig[i] == '+' ? '-' : sig[i] == '/' ? '_' : sig[i];
    }
    return n;
}

/* The bytes mint_id writes at most for a signature of `sig_len` bytes. */
static size_t id_room(size_t sig_len)
{
    return 24 + ID_RANDOM + sizeof(SIGNATURE_TAG) + sig_len;
}
/* --- the stream ---------------------------------------------------------------------------------- */

/* Where an event's strings are copied: the scratch the caller gives, as large as the event. */
typedef struct {
    char *base;
    size_t len, cap;
} room_t;

static const char *keep(room_t *r, const char *s, size_t n)
{
    if (n > r->cap - r->len)
        return NULL;
    char *at = r->base + r->len;
    memcpy(at, s, n);
    r->len += n;
    return at;
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

/* Reasons Gemini stops an answer for its content policies: the caller hears that it was blocked, not that it broke. */
static int is_block(const char *reason)
{
    static const char *const blocks[] = {
        "SAFETY",          "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION"};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); ++i)
        if (strcmp(reason, blocks[i]) == 0)
            return 1;
    return 0;
}

/* A token count: absent is 0, anything but a non-negative integer is malformed. */
static int count(json_t *usage, const char *key, long long *out)
{
    json_t *v = json_object_get(usage, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = json_integer_value(v);
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

static sb_wire_result_t read_error(json_t *e, room_t *r, sb_delta_t *out, sb_error_t *error)
{
    json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message");
    sb_error_t kind = SB_E_UPSTREAM_ERROR;
    if (json_is_integer(code) && json_integer_value(code) >= 400 && json_integer_value(code) < 600)
        kind = sb_error_for_provider_status((long)json_integer_value(code));
    r->len = 0;
    size_t n = json_string_length(msg);
    out->error_message = (sb_str_t){json_is_string(msg) ? keep(r, json_string_value(msg), n) : "", json_is_string(msg) ? n : 0};
    out->is_error = 1;
    *error = kind;
    return SB_WIRE_ERROR;
}

static sb_wire_result_t read_event(struct state *st, json_t *root, room_t *r, sb_delta_t *out, sb_error_t *error)
{
    json_t *e = json_object_get(root, "error");
    if (e != NULL && !json_is_null(e))
        return read_error(e, r, out, error);
    const char *blocked = json_string_value(json_object_get(json_object_get(root, "promptFeedback"), "blockReason"));
    if (blocked != NULL && strcmp(blocked, "BLOCK_REASON_UNSPECIFIED") != 0) {
        return REFUSED(SB_E_UPSTREAM_REJECTED, "the model provider blocked the request (%.40s)", blocked);
    }
    json_t *candidates = json_object_get(root, "candidates"), *cand = json_array_get(candidates, 0);
    if ((candidates != NULL && !json_is_array(candidates)) || (cand != NULL && !json_is_object(cand)))
        return failed(st, out, error, "the model provider sent candidates of the wrong type");
    json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    if (parts != NULL && !json_is_array(parts))
        return failed(st, out, error, "the model provider sent content parts of the wrong type");
    /* the words first, in one run: several text parts are one piece of the answer */
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part)
    {
        json_t *text = json_object_get(part, "text");
        if (json_is_true(json_object_get(part, "thought"))) /* thought summaries are not the answer */
            continue;
        if (text != NULL && !json_is_string(text))
            return failed(st, out, error, "the model provider sent a text part that is not a string");
        if (json_string_length(text) == 0)
            continue;
        const char *at = keep(r, json_string_value(text), json_string_length(text));
        if (out->content.base == NULL)
            out->content.base = at;
        out->content.len += json_string_length(text);
    }
    json_array_foreach(parts, i, part)
    {
        json_t *call = json_object_get(part, "functionCall");
        if (call == NULL)
            continue;
        json_t *name = json_object_get(call, "name"), *args = json_object_get(call, "args");
        json_t *sig = json_object_get(part, "thoughtSignature");
        if (!json_is_string(name) || (args != NULL && !json_is_null(args) && !json_is_object(args)) ||
            (sig != NULL && !json_is_string(sig)))
            return failed(st, out, error, "the model provider sent a function call of the wrong shape");
        if (st->ncalls == MAX_CALLS || out->ntools == SB_CHUNK_MAX_TOOLS)
            return failed(st, out, error, "the model provider sent more function calls than switchboard relays");
        sb_tool_delta_t *t = &out->tools[out->ntools++];
        *t = (sb_tool_delta_t){0};
        t->index = (long)st->ncalls;
        t->type = (sb_str_t){"function", 8};
        t->name = (sb_str_t){keep(r, json_string_value(name), json_string_length(name)), json_string_length(name)};
        char *a = json_is_object(args) ? sb_json_dumps(args, 15) : NULL;
        const char *at = a != NULL ? keep(r, a, strlen(a)) : keep(r, "{}", 2);
        t->arguments = (sb_str_t){at, a != NULL ? strlen(a) : 2};
        free(a);
        size_t sig_len = json_string_length(sig);
        if (r->cap - r->len >= id_room(sig_len)) {
            char *id = r->base + r->len;
            t->id = (sb_str_t){id, mint_id(id, st->ncalls, json_string_value(sig), sig_len)};
            r->len += t->id.len;
        }
        if (t->name.base == NULL || at == NULL || t->id.base == NULL) /* it outgrew its event (numbers written longer) */
            return failed(st, out, error, "the model provider sent a function call too large to relay");
        ++st->ncalls;
    }
    const char *finish = json_string_value(json_object_get(cand, "finishReason"));
    if (finish != NULL) {
        if (strcmp(finish, "STOP") == 0) {
            out->finish_reason = st->ncalls > 0 ? (sb_str_t){"tool_calls", 10} : (sb_str_t){"stop", 4};
        } else if (strcmp(finish, "MAX_TOKENS") == 0) {
            out->finish_reason = (sb_str_t){"length", 6};
        } else if (is_block(finish)) {
            return REFUSED(SB_E_UPSTREAM_REJECTED, "the model provider blocked the answer (%s)", finish);
        } else if (strcmp(finish, "FINISH_REASON_UNSPECIFIED") != 0) {
            return REFUSED(SB_E_UPSTREAM_ERROR, "the model provider stopped the answer (%.60s)", finish);
        }
    }
    json_t *usage = json_object_get(root, "usageMetadata");
    if (json_is_object(usage)) {
        long long thoughts = 0;
        if (count(usage, "promptTokenCount", &out->prompt_tokens) != 0 ||
            count(usage, "candidatesTokenCount", &out->completion_tokens) != 0 ||
            count(usage, "thoughtsTokenCount", &thoughts) != 0 || count(usage, "totalTokenCount", &out->total_tokens) != 0)
            return failed(st, out, error, "the model provider sent a token count that is not a count");
        /* OpenAI counts reasoning among the completion tokens: so does the caller's usage, and prompt + completion = total */
        if (thoughts <= LLONG_MAX - out->completion_tokens)
            out->completion_tokens += thoughts;
        out->prompt_tokens = increase(&st->said_prompt, out->prompt_tokens);
        out->completion_tokens = increase(&st->said_completion, out->completion_tokens);
        out->total_tokens = increase(&st->said_total, out->total_tokens);
        out->has_usage = 1;
    }
    json_t *model = json_object_get(root, "modelVersion");
    const char *kept = json_is_string(model) ? keep(r, json_string_value(model), json_string_length(model)) : NULL;
    if (kept != NULL)
        out->model = (sb_str_t){kept, json_string_length(model)};
    if (out->content.base == NULL && out->ntools == 0 && out->finish_reason.base == NULL && !out->has_usage &&
        out->model.base == NULL)
        return SB_WIRE_SKIP;
    return SB_WIRE_DELTA;
}

sb_wire_result_t ref_gemini_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                  json_error_t *jerr)
{
    memset(out, 0, offsetof(sb_delta_t, tools)); /* entries past ntools are never read */
    room_t r = {scratch, 0, ev->data_len};
    /* Gemini ends a stream by closing it; an [DONE] would come only from something in between, and means the same */
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return SB_WIRE_END;
    json_t *root = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return failed(state, out, error, "the model provider sent an event that is not a json object");
    }
    sb_wire_result_t rc = read_event(state, root, &r, out, error);
    json_decref(root);
    return rc;
}

const size_t ref_gemini_state_size = sizeof(struct state);
