/*
 * Inbound request validation. Everything the engine sends is checked before
 * anything leaves switchboard; the provider gets a body built from scratch
 * out of the parameters below, so engine extras (turn_id, timestamp,
 * interruptable, metadata, agent llm.params such as app_id) never reach it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "agents.h"
#include "conversation.h"
#include "request.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/json.h"

#define MAX_MESSAGES 2048
#define MAX_MODEL_LEN 256
#define MAX_TOOLS 128

enum check {
    C_STRING,  /* string, at most `max` bytes */
    C_NUMBER,  /* number within [lo, hi] */
    C_INTEGER, /* integer within [lo, hi] */
    C_BOOL,
    C_OBJECT,
    C_STOP,        /* string, or array of at most 4 strings */
    C_TOOLS,       /* array of function tool objects */
    C_TOOL_CHOICE, /* "none" / "auto" / "required", or an object */
    C_WORDS        /* array of at most 4 strings of at most `hi` bytes (modalities) */
};

/*
 * OpenAI Chat Completions parameters that pass through to the provider. name:
 * the top-level key; check: how its value is validated; lo/hi: bounds for
 * numbers, hi is the byte limit for strings. Keys not listed here (and not
 * handled separately: messages, model, stream, stream_options) are dropped.
 */
static const struct param {
    const char *name;
    enum check check;
    double lo, hi;
} params[] = {
    {"temperature", C_NUMBER, 0, 2},
    {"top_p", C_NUMBER, 0, 1},
    {"max_tokens", C_INTEGER, 1, 1e9},
    {"max_completion_tokens", C_INTEGER, 1, 1e9},
    {"n", C_INTEGER, 1, 1}, /* one spoken answer per turn: several choices cannot be relayed */
    {"stop", C_STOP, 0, 0},
    {"seed", C_INTEGER, -9.2e18, 9.2e18},
    {"presence_penalty", C_NUMBER, -2, 2},
    {"frequency_penalty", C_NUMBER, -2, 2},
    {"logit_bias", C_OBJECT, 0, 0},
    {"logprobs", C_BOOL, 0, 0},
    {"top_logprobs", C_INTEGER, 0, 20},
    {"tools", C_TOOLS, 0, 0},
    {"tool_choice", C_TOOL_CHOICE, 0, 0},
    {"parallel_tool_calls", C_BOOL, 0, 0},
    {"response_format", C_OBJECT, 0, 0},
    {"user", C_STRING, 0, 256},
    {"reasoning_effort", C_STRING, 0, 32},
    {"service_tier", C_STRING, 0, 32},
    {"verbosity", C_STRING, 0, 32},
    {"modalities", C_WORDS, 0, 16}, /* ["text", "audio"]: the engine's LLM audio output mode */
    {"audio", C_OBJECT, 0, 0},      /* the voice and format of that audio */
};

/* PASSTHROUGH_PARAMS, set once at start-up (sb_chat_request_init). */
static const char *passthrough;

void sb_chat_request_init(const sb_config_t *c)
{
    passthrough = c->passthrough_params;
}

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};

/* Appended to an assistant reply the engine says the caller interrupted. */
#define INTERRUPTED_MARK " \xE2\x80\xA6[interrupted by the caller]"

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

static int check_param(const struct param *p, json_t *v, sb_request_error_t *err)
{
    switch (p->check) {
    case C_STRING:
        if (!json_is_string(v))
            return fail(err, p->name, "%s must be a string", p->name);
        if (json_string_length(v) > p->hi)
            return fail(err, p->name, "%s is longer than %.0f bytes", p->name, p->hi);
        return 0;
    case C_NUMBER:
    case C_INTEGER: {
        if (p->check == C_INTEGER ? !json_is_integer(v) : !json_is_number(v))
            return fail(err, p->name, "%s must be %s", p->name, p->check == C_INTEGER ? "an integer" : "a number");
        double d = json_number_value(v);
        if (!(d >= p->lo && d <= p->hi)) {
            if (p->lo == p->hi)
                return fail(err, p->name, "%s must be %g", p->name, p->lo);
            return fail(err, p->name, "%s must be between %g and %g", p->name, p->lo, p->hi);
        }
        return 0;
    }
    case C_BOOL:
        return json_is_boolean(v) ? 0 : fail(err, p->name, "%s must be true or false", p->name);
    case C_OBJECT:
        return json_is_object(v) ? 0 : fail(err, p->name, "%s must be an object", p->name);
    case C_STOP:
        if (json_is_string(v))
            return 0;
        if (json_is_array(v) && json_array_size(v) <= 4) {
            size_t i;
            json_t *s;
            json_array_foreach(v, i, s) if (!json_is_string(s)) return fail(err, "stop", "stop must hold only strings");
            return 0;
        }
        return fail(err, "stop", "stop must be a string or an array of at most 4 strings");
    case C_WORDS: {
        size_t i;
        json_t *w;
        int ok = json_is_array(v) && json_array_size(v) <= 4;
        json_array_foreach(v, i, w) ok = ok && json_is_string(w) && json_string_length(w) <= p->hi;
        return ok ? 0 : fail(err, p->name, "%s must be an array of at most 4 short strings", p->name);
    }
    case C_TOOLS: {
        if (!json_is_array(v) || json_array_size(v) > MAX_TOOLS)
            return fail(err, "tools", "tools must be an array of at most %d tools", MAX_TOOLS);
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t)
        {
            char where[32];
            snprintf(where, sizeof(where), "tools[%zu]", i);
            json_t *fn = json_object_get(t, "function");
            if (!json_is_object(t) || !json_is_string(json_object_get(t, "type")))
                return fail(err, where, "%s must be an object with a string type", where);
            if (strcmp(json_string_value(json_object_get(t, "type")), "function") == 0 &&
                (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name"))))
                return fail(err, where, "%s.function.name must be a string", where);
            const char *name = json_string_value(json_object_get(fn, "name"));
            for (size_t j = 0; name != NULL && j < i; ++j) { /* providers refuse two tools of one name */
                const char *other = json_string_value(json_object_get(json_object_get(json_array_get(v, j), "function"), "name"));
                if (other != NULL && strcmp(other, name) == 0)
                    return fail(err, where, "%s.function.name repeats the name of tools[%zu]", where, j);
            }
        }
        return 0;
    }
    case C_TOOL_CHOICE:
        if (json_is_object(v))
            return 0;
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (strcmp(s, "none") == 0 || strcmp(s, "auto") == 0 || strcmp(s, "required") == 0)
                return 0;
        }
        return fail(err, "tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or an object");
    }
    return 0;
}

/*
 * The text of a content array when it can be said as one string: an array of
 * strings (the engine sends system prompts that way) or of text parts, joined
 * with `sep`. Returns a new string, or NULL for other shapes (kept as parts).
 */
static json_t *flatten_text(json_t *content, const char *sep)
{
    size_t i;
    json_t *part;
    sb_buf_t text;
    sb_buf_init(&text, SIZE_MAX);
    json_array_foreach(content, i, part)
    {
        json_t *t = json_is_string(part) ? part : NULL;
        if (json_is_object(part)) {
            json_t *type = json_object_get(part, "type");
            if (json_is_string(type) && strcmp(json_string_value(type), "text") == 0)
                t = json_object_get(part, "text");
        }
        if (!json_is_string(t)) {
            sb_buf_dispose(&text);
            return NULL;
        }
        if (i > 0)
            sb_buf_appendz(&text, sep);
        sb_buf_append(&text, json_string_value(t), json_string_length(t));
    }
    json_t *out = json_stringn(text.base ? text.base : "", text.len);
    sb_buf_dispose(&text);
    return out;
}

static int is_role(const char *s)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); ++i)
        if (strcmp(s, roles[i]) == 0)
            return 1;
    return 0;
}

/* The JSON paths of message `idx`, its role and its content, for an error: built only when one is reported. */
struct message_paths {
    char where[64], role[80], content[80];
};

static struct message_paths message_paths(size_t idx)
{
    struct message_paths p;
    snprintf(p.where, sizeof(p.where), "messages[%zu]", idx);
    snprintf(p.role, sizeof(p.role), "%s.role", p.where);
    snprintf(p.content, sizeof(p.content), "%s.content", p.where);
    return p;
}

/* Validates one message and returns the cleaned copy to send upstream (new reference), or NULL. */
static json_t *clean_message(json_t *m, size_t idx, sb_request_error_t *err)
{
    struct message_paths at;
    if (!json_is_object(m)) {
        at = message_paths(idx);
        fail(err, at.where, "%s must be an object", at.where);
        return NULL;
    }
    json_t *role = json_object_get(m, "role");
    const char *r = json_string_value(role);
    if (r == NULL || !is_role(r)) {
        at = message_paths(idx);
        if (r == NULL)
            fail(err, at.role, "%s must be a string", at.role);
        else
            fail(err, at.role, "%s must be one of system, developer, user, assistant, tool", at.role);
        return NULL;
    }

    json_t *clean = json_object();
    json_object_set(clean, "role", role);

    json_t *content = json_object_get(m, "content");
    json_t *tool_calls = json_object_get(m, "tool_calls");
    int is_assistant = strcmp(r, "assistant") == 0;
    if (content == NULL || json_is_null(content)) {
        if (!is_assistant) {
            at = message_paths(idx);
            fail(err, at.content, "%s is required for %s messages", at.content, r);
            goto fail;
        }
        json_object_set_new(clean, "content", json_null());
    } else if (json_is_string(content)) {
        json_object_set(clean, "content", content);
    } else if (json_is_array(content)) {
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            int ok = json_is_object(part) && json_is_string(json_object_get(part, "type"));
            /* The engine sends system prompts as a list of strings. */
            if (json_is_string(part))
                ok = 1;
            if (!ok) {
                at = message_paths(idx);
                fail(err, at.content, "%s[%zu] must be a string or an object with a string type", at.content, i);
                goto fail;
            }
        }
        json_t *text = flatten_text(content, strcmp(r, "system") == 0 ? "\n" : "");
        json_object_set_new(clean, "content", text ? text : json_incref(content));
    } else {
        at = message_paths(idx);
        fail(err, at.content, "%s must be a string or an array of content parts", at.content);
        goto fail;
    }

    json_t *name = json_object_get(m, "name");
    if (name != NULL) {
        if (!json_is_string(name) || json_string_length(name) > 256) {
            at = message_paths(idx);
            fail(err, at.where, "%s.name must be a string of at most 256 bytes", at.where);
            goto fail;
        }
        json_object_set(clean, "name", name);
    }
    if (tool_calls != NULL && !json_is_null(tool_calls)) {
        if (!is_assistant || !json_is_array(tool_calls)) {
            at = message_paths(idx);
            fail(err, at.where, "%s.tool_calls must be an array on an assistant message", at.where);
            goto fail;
        }
        json_object_set(clean, "tool_calls", tool_calls);
    }
    if (strcmp(r, "tool") == 0) {
        json_t *id = json_object_get(m, "tool_call_id");
        if (!json_is_string(id)) {
            at = message_paths(idx);
            fail(err, at.where, "%s.tool_call_id must be a string on a tool message", at.where);
            goto fail;
        }
        json_object_set(clean, "tool_call_id", id);
    }
    /* The engine marks a reply the caller cut off (metadata.interrupted; content is what was said, metadata.original what
     * the model wrote): tell the model, so it does not take the cut-off words for all it said. */
    json_t *meta = json_object_get(m, "metadata");
    json_t *said = json_object_get(clean, "content");
    if (is_assistant && json_is_true(json_object_get(meta, "interrupted")) && json_is_string(said)) {
        const char *text = json_string_value(said);
        int keep = (int)json_string_length(said);
        while (keep > 0 && (text[keep - 1] == ' ' || text[keep - 1] == '\n' || text[keep - 1] == '\t'))
            --keep; /* it was cut mid-sentence: the mark follows the last word */
        char *marked = NULL;
        if (asprintf(&marked, "%.*s%s", keep, text, INTERRUPTED_MARK) > 0)
            json_object_set_new(clean, "content", json_string(marked));
        free(marked);
    }
    return clean;
fail:
    json_decref(clean);
    return NULL;
}

/* Words in `s` (runs of non-space). */
static size_t count_words(const char *s)
{
    size_t n = 0;
    for (int in = 0; *s != '\0'; ++s) {
        int space = *s == ' ' || *s == '\t' || *s == '\n';
        n += !space && !in;
        in = !space;
    }
    return n;
}

/* The start of the last user message's text (SB_LAST_USER_MAX bytes at most, made printable), NULL when none has text; owned. */
static char *last_user(json_t *messages)
{
    for (size_t i = json_array_size(messages); i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        json_t *text = json_object_get(m, "content");
        if (json_is_string(text) && json_is_string(json_object_get(m, "role")) &&
            strcmp(json_string_value(json_object_get(m, "role")), "user") == 0) {
            char said[SB_LAST_USER_MAX + 1];
            sb_copy_text(said, sizeof(said), json_string_value(text), json_string_length(text));
            return sb_strdup(said);
        }
    }
    return NULL;
}

/*
 * The retrieval question: the caller's last utterance, joined with the one
 * before when it is too short to stand alone ("what about returns?").
 */
static void compose_question(json_t *messages, char *out, size_t cap)
{
    const char *last = NULL, *prev = NULL;
    size_t last_len = 0, prev_len = 0;
    for (size_t i = json_array_size(messages); i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        json_t *c = json_object_get(m, "content");
        if (strcmp(json_string_value(json_object_get(m, "role")), "user") != 0 || !json_is_string(c))
            continue;
        if (last == NULL) {
            last = json_string_value(c), last_len = json_string_length(c);
        } else {
            prev = json_string_value(c), prev_len = json_string_length(c);
            break;
        }
    }
    out[0] = '\0';
    if (last == NULL)
        return;
    sb_copy_text(out, cap, last, last_len);
    if (prev != NULL && count_words(out) < 4) {
        char joined[2048];
        int n = snprintf(joined, sizeof(joined), "%.*s %s", (int)(prev_len < 1000 ? prev_len : 1000), prev, out);
        if (n > 0)
            sb_copy_text(out, cap, joined, (size_t)n < sizeof(joined) ? (size_t)n : sizeof(joined) - 1);
    }
}

/*
 * The customer an agent binds to the call through llm.params (customer_id,
 * customer_email). Tools then refuse to touch anyone else's data.
 */
static int bind_caller(json_t *root, sb_caller_t *caller, sb_request_error_t *err)
{
    json_t *id = json_object_get(root, "customer_id");
    json_t *email = json_object_get(root, "customer_email");
    if (id != NULL && !json_is_null(id)) {
        long long v = -1;
        if (json_is_integer(id)) {
            v = json_integer_value(id);
        } else if (json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) < 19 &&
                   strspn(json_string_value(id), "0123456789") == json_string_length(id)) {
            v = strtoll(json_string_value(id), NULL, 10);
        }
        if (v <= 0)
            return fail(err, "customer_id", "customer_id must be a positive integer");
        caller->customer_id = v;
    }
    if (email != NULL && !json_is_null(email)) {
        if (!json_is_string(email) || json_string_length(email) < 3 || json_string_length(email) >= sizeof(caller->email))
            return fail(err, "customer_email", "customer_email must be an email address");
        memcpy(caller->email, json_string_value(email), json_string_length(email) + 1);
    }
    return 0;
}

/* "support, orders and billing": the agents' names for an error message. */
static void agent_names(char *out, size_t cap)
{
    const sb_agents_t *a = sb_agents();
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < a->n && used < cap; ++i) {
        int n = snprintf(out + used, cap - used, "%s%s", i == 0 ? "" : i + 1 == a->n ? " or " : ", ", a->v[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
}

/*
 * The agent the request asks for, with agents on: llm.params.agent (the
 * engine puts llm.params at the top level), else a model "agent:<name>",
 * which then names no model (*model becomes NULL). An unknown agent is the
 * caller's mistake: refused, never routed somewhere else.
 */
static int choose_agent(json_t *root, json_t **model, sb_chat_request_t *out, sb_request_error_t *err)
{
    if (sb_agents() == NULL)
        return 0;
    char names[256];
    json_t *agent = json_object_get(root, "agent");
    const char *m = *model != NULL ? json_string_value(*model) : NULL;
    if (m != NULL && strncmp(m, "agent:", 6) == 0) {
        out->agent_asked = sb_agents_find(m + 6, json_string_length(*model) - 6);
        *model = NULL;
        if (out->agent_asked == NULL && (agent == NULL || json_is_null(agent))) {
            agent_names(names, sizeof(names));
            return fail(err, "model", "model \"agent:...\" must name one of the agents: %s", names);
        }
    }
    if (agent != NULL && !json_is_null(agent)) {
        out->agent_asked = json_is_string(agent) ? sb_agents_find(json_string_value(agent), json_string_length(agent)) : NULL;
        if (out->agent_asked == NULL) {
            agent_names(names, sizeof(names));
            return fail(err, "agent", "agent must name one of the agents: %s", names);
        }
    }
    return 0;
}

/* A conversation id a client chooses: 1 to 128 characters of letters, digits and ._:- (it keys stored history). */
static int valid_conversation_id(const char *id, size_t len)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    if (len == 0 || len > 128)
        return 0;
    for (size_t i = 0; i < len; ++i)
        if (id[i] == '\0' || strchr(ok, id[i]) == NULL)
            return 0;
    return 1;
}

int sb_chat_request_parse(json_t *root, const char *default_model, const sb_engine_ids_t *ids, sb_chat_request_t *out,
                          sb_request_error_t *err)
{
    memset(out, 0, sizeof(*out));
    err->kind = SB_OK;
    err->param[0] = err->message[0] = '\0';
    if (!json_is_object(root))
        return fail(err, NULL, "request body must be a JSON object");

    json_t *messages = json_object_get(root, "messages");
    if (messages == NULL)
        return fail(err, "messages", "messages is required");
    if (!json_is_array(messages))
        return fail(err, "messages", "messages must be an array");
    if (json_array_size(messages) == 0)
        return fail(err, "messages", "messages must not be empty");
    if (json_array_size(messages) > MAX_MESSAGES)
        return fail(err, "messages", "messages holds more than %d entries", MAX_MESSAGES);

    json_t *body = json_object();
    json_t *clean_messages = json_array();
    json_object_set_new(body, "messages", clean_messages);

    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_t *clean = clean_message(m, i, err);
        if (clean == NULL)
            goto fail;
        json_array_append_new(clean_messages, clean);
    }

    json_t *model = json_object_get(root, "model");
    if (model != NULL && !json_is_null(model)) {
        if (!json_is_string(model) || json_string_length(model) > MAX_MODEL_LEN) {
            fail(err, "model", "model must be a string of at most %d bytes", MAX_MODEL_LEN);
            goto fail;
        }
        if (json_string_length(model) == 0)
            model = NULL;
    } else {
        model = NULL;
    }
    if (choose_agent(root, &model, out, err) != 0)
        goto fail;
    out->model_given = model != NULL;
    json_object_set_new(body, "model", model ? json_incref(model) : json_string(default_model));

    json_t *stream = json_object_get(root, "stream");
    if (stream != NULL && !json_is_null(stream) && !json_is_boolean(stream)) {
        fail(err, "stream", "stream must be true or false");
        goto fail;
    }
    out->stream = json_is_true(stream);

    json_t *so = json_object_get(root, "stream_options");
    if (so != NULL && !json_is_null(so)) {
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (iu != NULL && !json_is_boolean(iu))) {
            fail(err, "stream_options", "stream_options must be an object with a boolean include_usage");
            goto fail;
        }
        out->include_usage = json_is_true(iu);
    }

    for (size_t p = 0; p < sizeof(params) / sizeof(params[0]); ++p) {
        json_t *v = json_object_get(root, params[p].name);
        if (v == NULL || json_is_null(v))
            continue;
        if (check_param(&params[p], v, err) != 0)
            goto fail;
        json_object_set(body, params[p].name, v);
    }
    out->has_tools = json_array_size(json_object_get(body, "tools")) > 0;
    for (const char *p = passthrough != NULL ? passthrough : ""; *p != '\0';) { /* checked names (config.c) */
        while (*p == ',' || *p == ' ')
            ++p;
        size_t n = strcspn(p, ", ");
        char name[65];
        if (n == 0 || n >= sizeof(name))
            break;
        memcpy(name, p, n);
        name[n] = '\0';
        json_t *v = json_object_get(root, name);
        if (v != NULL && json_object_get(body, name) == NULL)
            json_object_set(body, name, v); /* the body's size limit bounds it */
        p += n;
    }

    /* Upstream always streams, and always reports usage: tokens go to the access log either way. */
    json_object_set_new(body, "stream", json_true());
    json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));

    if (bind_caller(root, &out->caller, err) != 0)
        goto fail;
    json_t *cid = json_object_get(root, "conversation_id");
    if (cid != NULL && !json_is_null(cid)) {
        if (!json_is_string(cid) || !valid_conversation_id(json_string_value(cid), json_string_length(cid))) {
            fail(err, "conversation_id", "conversation_id must be 1 to 128 letters, digits or ._:-");
            goto fail;
        }
        out->conversation_id = sb_strndup(json_string_value(cid), json_string_length(cid));
    }
    char identity[256];
    sb_conversation_describe(root, clean_messages, ids, identity, sizeof(identity), out->conversation);
    if (identity[0] != '\0')
        out->identity = sb_strdup(identity);
    out->last_user = last_user(clean_messages);

    json_t *turn = json_object_get(root, "turn_id");
    if (json_is_integer(turn))
        snprintf(out->turn_id, sizeof(out->turn_id), "%" JSON_INTEGER_FORMAT, json_integer_value(turn));
    else if (json_is_string(turn))
        sb_copy_text(out->turn_id, sizeof(out->turn_id), json_string_value(turn), json_string_length(turn));

    char question[1024];
    compose_question(clean_messages, question, sizeof(question));
    out->question = sb_strdup(question);
    out->upstream = body;
    out->model = json_string_value(json_object_get(body, "model"));
    return 0;
fail:
    json_decref(body);
    sb_chat_request_dispose(out);
    return -1;
}

int sb_chat_request_parse_body(const char *body, size_t len, const char *default_model, const sb_engine_ids_t *ids,
                               sb_chat_request_t *out, sb_request_error_t *err)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    json_t *root = sb_json_loadb(body, len, &jerr);
    if (root == NULL) {
        err->kind = SB_E_INVALID_JSON;
        err->param[0] = '\0';
        snprintf(err->message, sizeof(err->message), "request body is not valid json: %s at line %d column %d", jerr.text,
                 jerr.line, jerr.column);
        return -1;
    }
    int rc = sb_chat_request_parse(root, default_model, ids, out, err);
    json_decref(root);
    return rc;
}

static int all_of(const char *s, size_t len, const char *set)
{
    for (size_t i = 0; i < len; ++i)
        if (s[i] == '\0' || strchr(set, s[i]) == NULL)
            return 0;
    return 1;
}

void sb_chat_request_set_trace(sb_chat_request_t *r, const char *id, size_t len, const char *generated, const char *traceparent,
                               size_t tp_len)
{
    static const char id_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    static const char hex[] = "0123456789abcdef";
    if (id != NULL && len > 0 && len < sizeof(r->request_id) && all_of(id, len, id_chars)) {
        memcpy(r->request_id, id, len);
        r->request_id[len] = '\0';
    } else {
        snprintf(r->request_id, sizeof(r->request_id), "%s", generated);
    }
    /* 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, ids not all zero */
    r->traceparent[0] = '\0';
    const char *t = traceparent;
    if (t != NULL && tp_len == 55 && memcmp(t, "00-", 3) == 0 && t[35] == '-' && t[52] == '-' && all_of(t + 3, 32, hex) &&
        all_of(t + 36, 16, hex) && all_of(t + 53, 2, hex) && strspn(t + 3, "0") < 32 && strspn(t + 36, "0") < 16) {
        memcpy(r->traceparent, t, 55);
        r->traceparent[55] = '\0';
    }
}

int sb_chat_request_set_conversation_id(sb_chat_request_t *r, const char *id, size_t len, sb_request_error_t *err)
{
    if (id == NULL)
        return 0;
    if (!valid_conversation_id(id, len))
        return fail(err, "X-Conversation-Id", "X-Conversation-Id must be 1 to 128 letters, digits or ._:-");
    if (r->conversation_id != NULL) {
        if (strlen(r->conversation_id) != len || memcmp(r->conversation_id, id, len) != 0)
            return fail(err, "conversation_id", "conversation_id and X-Conversation-Id name different conversations");
        return 0;
    }
    r->conversation_id = sb_strndup(id, len);
    return 0;
}

void sb_chat_request_dispose(sb_chat_request_t *r)
{
    json_decref(r->upstream);
    r->upstream = NULL;
    free(r->question);
    r->question = NULL;
    free(r->last_user);
    r->last_user = NULL;
    free(r->identity);
    r->identity = NULL;
    free(r->conversation_id);
    r->conversation_id = NULL;
}

void sb_chat_request_drop_body(sb_chat_request_t *r, const char *model)
{
    r->model = model;
    json_decref(r->upstream);
    r->upstream = NULL;
}

char *sb_chat_request_dump(const sb_chat_request_t *r, const char *model)
{
    /* another model (a fallback): a shallow copy of the body with its own `model`, the rest shared */
    json_t *body = r->upstream;
    if (model != NULL && strcmp(model, r->model) != 0) {
        body = json_copy(r->upstream);
        json_object_set_new(body, "model", json_string(model));
    }
    /* jansson prints 0.3 as 0.29999999999999999 by default: same double, but not what the client wrote */
    sb_buf_t b;
    sb_buf_init(&b, SB_JSON_MAX_DUMP);
    int dumped = sb_json_dump_append(&b, body, 15);
    if (body != r->upstream)
        json_decref(body);
    if (dumped != 0 || b.len < 2 || b.base[b.len - 1] != '}')
        goto too_large;
    if (r->offered_tools != NULL) {
        /* the body has no `tools` (sb_tools_offer): the array goes in before the closing brace */
        --b.len;
        if (sb_buf_appendz(&b, b.len > 1 ? ",\"tools\":" : "\"tools\":") != 0 || sb_buf_appendz(&b, r->offered_tools) != 0 ||
            sb_buf_appendz(&b, "}") != 0)
            goto too_large;
    }
    if (sb_buf_append(&b, "", 1) == 0)
        return b.base;
too_large: /* rounds of tool results past SB_JSON_MAX_DUMP: the turn fails, the process does not */
    sb_buf_dispose(&b);
    return NULL;
}

/* --- the edits a turn makes ------------------------------------------------------------------- */

void sb_chat_request_offer_tools(sb_chat_request_t *r)
{
    /* settled at start-up by each tool's settings, each agent's subset, and whether the channel can act on a call */
    uint32_t calls = r->call_control ? 0 : sb_tools_calls();
    r->offered_tools = r->withheld ? sb_tools_offer_only(r->upstream, ~(r->withheld | calls), r->agent_tools, &r->shadowed)
                                   : sb_tools_offer(r->upstream, r->call_control, &r->shadowed);
    r->withheld |= calls;
}

void sb_chat_request_ask_whole(sb_chat_request_t *r)
{
    r->whole = 1;
    json_object_set_new(r->upstream, "stream", json_false());
    json_object_del(r->upstream, "stream_options"); /* a non-streamed answer always reports usage */
}

size_t sb_chat_request_user_texts(const sb_chat_request_t *r, sb_str_t *out, size_t max, unsigned *tool_results)
{
    json_t *messages = json_object_get(r->upstream, "messages");
    size_t n = 0, total = 0;
    *tool_results = 0;
    for (size_t i = 0; i < json_array_size(messages); ++i) { /* the roles were checked when the request was parsed */
        const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
        total += strcmp(role, "user") == 0;
        *tool_results += strcmp(role, "tool") == 0;
    }
    size_t skip = total > max ? total - max : 0;
    for (size_t i = 0; i < json_array_size(messages) && n < max; ++i) {
        json_t *m = json_array_get(messages, i), *c = json_object_get(m, "content");
        if (strcmp(json_string_value(json_object_get(m, "role")), "user") != 0)
            continue;
        if (skip > 0) {
            --skip;
            continue;
        }
        out[n++] = json_is_string(c) ? (sb_str_t){json_string_value(c), json_string_length(c)} : (sb_str_t){"", 0};
    }
    return n;
}

void sb_chat_request_add_instructions(sb_chat_request_t *r, const char *const *layers, size_t n)
{
    json_t *messages = json_object_get(r->upstream, "messages");
    size_t at = 0;
    for (size_t i = 0; i < n; ++i) {
        size_t len = layers[i] != NULL ? strlen(layers[i]) : 0;
        json_t *text = len > 0 && sb_json_is_utf8(layers[i], len) ? json_stringn_nocheck(layers[i], len) : NULL;
        if (text != NULL)
            json_array_insert_new(messages, at++, json_pack("{s:s, s:o}", "role", "system", "content", text));
    }
}

void sb_chat_request_use_agent(sb_chat_request_t *r, const sb_agent_t *a, unsigned max_tokens)
{
    json_t *body = r->upstream;
    if (a->model != NULL && !r->model_given) {
        json_object_set_new(body, "model", json_string(a->model));
        r->model = json_string_value(json_object_get(body, "model"));
    }
    if (a->temperature >= 0 && json_object_get(body, "temperature") == NULL)
        json_object_set_new(body, "temperature", json_real(a->temperature));
    if (max_tokens > 0 && json_object_get(body, "max_tokens") == NULL && json_object_get(body, "max_completion_tokens") == NULL)
        json_object_set_new(body, "max_tokens", json_integer(max_tokens));
    size_t ntools;
    sb_tools_table(&ntools);
    uint32_t all = ntools >= 32 ? UINT32_MAX : (1u << ntools) - 1;
    r->withheld = all & ~a->tools;
    r->agent_tools = r->call_control ? a->offered_calls : a->offered;
}

/* Where switchboard's own messages go: right after the caller's system (and developer) messages. */
static size_t after_system(json_t *messages)
{
    size_t at = 0;
    while (at < json_array_size(messages)) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, at), "role"));
        if (strcmp(role, "system") != 0 && strcmp(role, "developer") != 0)
            break;
        ++at;
    }
    return at;
}

void sb_chat_request_add_context(sb_chat_request_t *r, const sb_passage_t *passages, size_t n)
{
    if (n == 0)
        return;
    json_t *messages = json_object_get(r->upstream, "messages");
    json_array_insert_new(messages, after_system(messages), sb_rag_context_message(passages, n));
}

void sb_chat_request_add_memory(sb_chat_request_t *r, json_t *recalled)
{
    json_t *messages = json_object_get(r->upstream, "messages");
    size_t at = after_system(messages), i;
    json_t *m;
    json_array_foreach(recalled, i, m) json_array_insert(messages, at + i, m);
    json_decref(recalled);
}

void sb_chat_request_add_tool_calls(sb_chat_request_t *r, sb_str_t words, const sb_tool_call_text_t *calls, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; ++i) {
        const sb_tool_call_text_t *c = &calls[i];
        sb_str_t args = c->arguments.len ? c->arguments : (sb_str_t){"{}", 2};
        json_array_append_new(list, json_pack("{s:s%, s:s, s:{s:s%, s:s%}}", "id", c->id.base, c->id.len, "type", "function",
                                              "function", "name", c->name.base, c->name.len, "arguments", args.base, args.len));
    }
    json_t *assistant = json_pack("{s:s, s:o}", "role", "assistant", "tool_calls", list);
    json_object_set_new(assistant, "content",
                        words.base != NULL && words.len > 0 ? json_stringn(words.base, words.len) : json_null());
    json_array_append_new(json_object_get(r->upstream, "messages"), assistant);
}

void sb_chat_request_add_tool_result(sb_chat_request_t *r, sb_str_t call_id, sb_str_t result)
{
    json_array_append_new(json_object_get(r->upstream, "messages"),
                          json_pack("{s:s, s:s%, s:s%}", "role", "tool", "tool_call_id", call_id.base, call_id.len, "content",
                                    result.base, result.len));
}
