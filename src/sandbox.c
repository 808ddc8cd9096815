/*
 * The offline sandbox model. With no provider configured, switchboard still
 * answers end to end: a short, clearly labelled reply streamed word by word at
 * a speaking pace from a timer on the worker's loop, so the quickstart works
 * with no account anywhere. It calls a tool when the caller plainly asks for
 * one (switchboard's, or one the client sent), streamed as a provider
 * streams tool calls, and reads from retrieved knowledge in plain sentences.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "llm.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "speech.h"

#define SANDBOX_MODEL "switchboard-sandbox"
#define TOOL_NAME_MAX 64  /* OpenAI's limit on a function name */
#define PASSAGE_MAX 16384 /* bytes of the best passage read */
#define SAID_MAX 600      /* bytes of a client tool's result said back */

/* A tool call goes out as a provider streams one: its id and name, then its arguments, then the finish. */
enum tool_step { TOOL_NONE, TOOL_NAME, TOOL_ARGUMENTS, TOOL_FINISH };

struct call {
    sb_llm_call_t super;
    sb_llm_sink_t *sink;
    uv_timer_t *timer;
    sb_buf_t text;
    size_t pos;
    unsigned pace_ms;
    int paused;
    int in_delta;  /* the sink is hearing a delta: a cancel then waits until it returns */
    int cancelled; /* cancelled from inside on_delta */
    /* a tool call instead of words, when the caller plainly asks for one */
    enum tool_step step;
    char tool[TOOL_NAME_MAX + 1];
    sb_buf_t arguments;
};

static void on_closed(uv_handle_t *h)
{
    free(h);
}

static void destroy(struct call *c)
{
    uv_close((uv_handle_t *)c->timer, on_closed);
    sb_buf_dispose(&c->text);
    sb_buf_dispose(&c->arguments);
    free(c);
}

/* Hands `d` to the sink. Returns 0 when the sink cancelled the call meanwhile (it is freed then). */
static int deliver(struct call *c, const sb_delta_t *d)
{
    c->in_delta = 1;
    c->sink->on_delta(c->sink, d);
    c->in_delta = 0;
    if (!c->cancelled)
        return 1;
    destroy(c);
    return 0;
}

/* Whether a tool named `name` is offered with this request: switchboard's, or the client's of that name (which wins). */
static int offered(const sb_chat_request_t *req, const char *name)
{
    if (req->offered_tools != NULL) /* switchboard's own, kept out of the body until it is sent */
        return sb_tools_find(name, strlen(name)) != NULL;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(req->upstream, "tools"), i, t)
    {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/*
 * The number the caller said after `word` ("ticket 3", "ticket number 3",
 * "order #4417"), else, when `anywhere` (or `word` is NULL), the first
 * number said at all, as at most 15 digits into `out`; "" when there is none.
 */
static void number_after(const char *lower, const char *word, int anywhere, char *out, size_t cap)
{
    const char *p = word != NULL ? strstr(lower, word) : NULL;
    if (p != NULL) {
        p += strlen(word);
        p += strspn(p, " #:");
        if (strncmp(p, "number ", 7) == 0 || strncmp(p, "no. ", 4) == 0 || strncmp(p, "id ", 3) == 0)
            p += strcspn(p, " ") + 1;
        p += strspn(p, " #");
    }
    if (p == NULL || *p < '0' || *p > '9')
        p = anywhere || word == NULL ? lower + strcspn(lower, "0123456789") : "";
    size_t n = strspn(p, "0123456789");
    if (n > 15)
        n = 15;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Whether `lower` holds any of `words` (NULL-terminated) before `limit` (NULL: anywhere). */
static int says_before(const char *lower, const char *const *words, const char *limit)
{
    for (; *words != NULL; ++words) {
        const char *at = strstr(lower, *words);
        if (at != NULL && (limit == NULL || at < limit))
            return 1;
    }
    return 0;
}

static int says_any(const char *lower, const char *const *words)
{
    return says_before(lower, words, NULL);
}

static const char *string_of(json_t *o, const char *key)
{
    return json_is_string(json_object_get(o, key)) ? json_string_value(json_object_get(o, key)) : NULL;
}

/* The name of the call `id` in the assistant message that made the calls answered from `messages[at]` on, or NULL. */
static const char *called_name(json_t *messages, size_t at, const char *id)
{
    json_t *assistant = at > 0 ? json_array_get(messages, at - 1) : NULL;
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(assistant, "tool_calls"), i, tc)
    {
        const char *tid = string_of(tc, "id");
        if (tid != NULL && id != NULL && strcmp(tid, id) == 0)
            return string_of(json_object_get(tc, "function"), "name");
    }
    return NULL;
}

/* A scalar as words into `num` (`cap` bytes) or borrowed, or NULL for arrays, objects and null. */
static const char *scalar_words(json_t *v, char *num, size_t cap)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_boolean(v))
        return json_is_true(v) ? "yes" : "no";
    if (json_is_integer(v))
        snprintf(num, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(num, cap, "%g", json_real_value(v));
    else
        return NULL;
    return num;
}

/* A client tool's result (`name` NULL when unknown), said: its text, or an object's plain members ("temperature 18, sky clear"). */
static void say_client_result(struct call *c, const char *name, json_t *content)
{
    sb_buf_appendz(&c->text, "Your ");
    if (name != NULL) {
        sb_buf_append_utf8(&c->text, name, strnlen(name, TOOL_NAME_MAX));
        sb_buf_appendz(&c->text, " ");
    }
    sb_buf_appendz(&c->text, "tool says: ");
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    json_t *r = text != NULL ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : NULL;
    char said[SAID_MAX];
    if (json_is_object(r)) {
        sb_buf_t b;
        sb_buf_init(&b, SAID_MAX);
        const char *key;
        json_t *v;
        json_object_foreach(r, key, v)
        {
            char num[32];
            const char *value = scalar_words(v, num, sizeof(num));
            if (value != NULL && sb_buf_appendf(&b, "%s%s %s", b.len ? ", " : "", key, value) != 0)
                break; /* said as far as it fits */
        }
        sb_copy_text(said, sizeof(said), b.base ? b.base : "", b.len);
        sb_buf_dispose(&b);
    } else {
        sb_copy_text(said, sizeof(said), text ? text : "", text ? len : 0);
    }
    json_decref(r);
    sb_buf_appendz(&c->text, said[0] ? said : "nothing");
    sb_buf_appendz(&c->text, ". ");
}

/* Words for the results of the tools the sandbox called in its previous round (the messages after its call). */
static void say_results(struct call *c, json_t *messages, uint32_t shadowed)
{
    size_t first = json_array_size(messages);
    while (first > 0 && strcmp(json_string_value(json_object_get(json_array_get(messages, first - 1), "role")), "tool") == 0)
        --first;
    for (size_t i = first; i < json_array_size(messages); ++i) {
        json_t *m = json_array_get(messages, i);
        const char *name = called_name(messages, first, string_of(m, "tool_call_id"));
        json_t *content = json_object_get(m, "content");
        const char *text = json_string_value(content);
        if (name == NULL || sb_tools_find_offered(name, strlen(name), shadowed) == NULL) { /* the client's own tool answered */
            say_client_result(c, name, content);
            continue;
        }
        json_t *r = text != NULL ? json_loadb(text, json_string_length(content), 0, NULL) : NULL;
        const char *err = string_of(r, "error");
        if (err != NULL)
            sb_buf_appendf(&c->text, "I could not do that: %s. ", err);
        else if (strcmp(name, "get_order_status") == 0 && string_of(r, "order_number") != NULL)
            sb_buf_appendf(&c->text, "Order %s is %s%s%s%s%s. ", string_of(r, "order_number"),
                           string_of(r, "status") ? string_of(r, "status") : "in an unknown state",
                           string_of(r, "carrier") ? " with " : "", string_of(r, "carrier") ? string_of(r, "carrier") : "",
                           string_of(r, "tracking_number") ? ", tracking number " : "",
                           string_of(r, "tracking_number") ? string_of(r, "tracking_number") : "");
        else if (strcmp(name, "get_ticket_details") == 0 && json_is_integer(json_object_get(r, "ticket_id")))
            sb_buf_appendf(&c->text, "Ticket %lld, \"%s\", is %s, with %s priority. ",
                           (long long)json_integer_value(json_object_get(r, "ticket_id")),
                           string_of(r, "subject") ? string_of(r, "subject") : "",
                           string_of(r, "status") ? string_of(r, "status") : "",
                           string_of(r, "priority") ? string_of(r, "priority") : "normal");
        else if (strcmp(name, "create_support_ticket") == 0 && json_is_integer(json_object_get(r, "ticket_id")))
            sb_buf_appendf(&c->text, "I have opened ticket number %lld for you. ",
                           (long long)json_integer_value(json_object_get(r, "ticket_id")));
        else
            sb_buf_appendz(&c->text, "Done. ");
        json_decref(r);
    }
    sb_buf_appendz(&c->text, "This answer came from the switchboard sandbox model.");
}

/*
 * When retrieval found passages, the sandbox says the sentence of the best
 * one (passage [1]) that best answers the question (sb_speech_best_sentence
 * has the rule), made plain: a voice caller hears words, not Markdown.
 */
static int answer_from_reference(struct call *c, json_t *messages, const char *question)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *text = json_string_value(json_object_get(m, "content"));
        const char *first = text ? strstr(text, "<<<reference\n[1] source: ") : NULL;
        if (first == NULL)
            continue;
        const char *body = strchr(first + 13, '\n');
        if (body == NULL)
            return 0;
        ++body;
        /* the passage ends where the next one or the fence begins (the fence marks cannot occur inside one) */
        const char *end = strstr(body, "\n\n[2] source: ");
        const char *fence = strstr(body, "reference>>>");
        if (end == NULL || (fence != NULL && fence < end))
            end = fence != NULL ? fence : body + strlen(body);
        size_t len = (size_t)(end - body) < PASSAGE_MAX ? (size_t)(end - body) : PASSAGE_MAX;
        sb_buf_t plain;
        sb_buf_init(&plain, 2 * PASSAGE_MAX);
        sb_speech_plain(&plain, body, len); /* a passage past the ceiling is read as far as it fit */
        sb_str_t best = sb_speech_best_sentence(plain.base ? plain.base : "", plain.len, question);
        if (best.base != NULL) {
            sb_buf_appendz(&c->text, "Here is what our help centre says: ");
            sb_buf_append(&c->text, best.base, best.len);
            sb_buf_appendz(&c->text, " (This answer came from the switchboard sandbox model.)");
        }
        sb_buf_dispose(&plain);
        return best.base != NULL;
    }
    return 0;
}

/*
 * The arguments the caller's words give a client tool, by its declared
 * parameters: a number for an integer or number, a value of an enum that was
 * said, and for a place (location, city, ...) the capitalised words after
 * "in", "at" or "for". What cannot be read is left out: `{}` at worst.
 */
static void client_arguments(struct call *c, json_t *parameters, const char *said, const char *lower)
{
    static const char *const places[] = {"location", "city", "place", "destination", "country", "region", NULL};
    json_t *args = json_object();
    char number[24];
    number_after(lower, NULL, 1, number, sizeof(number));
    const char *key;
    json_t *p;
    size_t seen = 0;
    json_object_foreach(json_object_get(parameters, "properties"), key, p)
    {
        if (++seen > 32 || strlen(key) > TOOL_NAME_MAX) /* a schema of hostile size is read no further */
            break;
        const char *type = string_of(p, "type");
        if (type == NULL)
            continue;
        if ((strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) && number[0] != '\0') {
            json_object_set_new(args, key, json_integer(strtoll(number, NULL, 10)));
        } else if (strcmp(type, "string") == 0 && json_is_array(json_object_get(p, "enum"))) {
            size_t i;
            json_t *v;
            json_array_foreach(json_object_get(p, "enum"), i, v)
            {
                char want[TOOL_NAME_MAX + 1];
                size_t n = json_string_length(v);
                if (!json_is_string(v) || n == 0 || n > TOOL_NAME_MAX)
                    continue;
                for (size_t k = 0; k <= n; ++k)
                    want[k] = (char)tolower((unsigned char)json_string_value(v)[k]);
                if (strstr(lower, want) != NULL) {
                    json_object_set(args, key, v);
                    break;
                }
            }
        } else if (strcmp(type, "string") == 0 && says_any(key, places)) {
            static const char *const before[] = {" in ", " at ", " for ", NULL};
            for (size_t b = 0; before[b] != NULL; ++b) {
                const char *w = strstr(said, before[b]);
                if (w == NULL)
                    continue;
                w += strlen(before[b]);
                size_t n = 0;
                while (isupper((unsigned char)w[n])) { /* capitalised words: "New York" */
                    while (isalpha((unsigned char)w[n]) || w[n] == '-' || w[n] == '\'')
                        ++n;
                    if (w[n] != ' ' || !isupper((unsigned char)w[n + 1]))
                        break;
                    ++n;
                }
                if (n > 0) {
                    json_object_set_new(args, key, json_stringn(w, n));
                    break;
                }
            }
        }
    }
    char *text = json_dumps(args, JSON_COMPACT);
    sb_buf_appendz(&c->arguments, text ? text : "{}");
    free(text);
    json_decref(args);
}

/*
 * A tool the client sent (not one of switchboard's) that the caller's words
 * name (sb_speech_names_tool): the sandbox calls it, as a model would, so the
 * client-tool path can be tried offline. Entries of any odd shape are passed
 * over. Returns 1 when it chose one.
 */
static int call_client_tool(struct call *c, const sb_chat_request_t *req, const char *said, const char *lower)
{
    const char *choice = json_string_value(json_object_get(req->upstream, "tool_choice"));
    if (choice != NULL && strcmp(choice, "none") == 0)
        return 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(req->upstream, "tools"), i, t)
    {
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        size_t len = json_string_length(name);
        if (!json_is_string(name) || len == 0 || len > TOOL_NAME_MAX ||
            sb_tools_find_offered(json_string_value(name), len, req->shadowed | req->withheld) != NULL)
            continue;
        if (!sb_speech_names_tool(said, json_string_value(name), len))
            continue;
        memcpy(c->tool, json_string_value(name), len + 1);
        client_arguments(c, json_object_get(fn, "parameters"), said, lower);
        return 1;
    }
    return 0;
}

/* Calls switchboard's `tool` with `args` (a new reference, taken). */
static void call_own_tool(struct call *c, const char *tool, json_t *args)
{
    char *text = json_dumps(args, JSON_COMPACT);
    sb_buf_appendz(&c->arguments, text ? text : "{}");
    free(text);
    json_decref(args);
    snprintf(c->tool, sizeof(c->tool), "%s", tool);
}

/*
 * Decides what the sandbox does this round: report tool results; call a tool
 * the caller plainly asked for (a client tool the words name; a ticket by its
 * number; a new ticket; an order by its number); answer from retrieved
 * knowledge; or talk.
 */
static void plan(struct call *c, const sb_chat_request_t *req)
{
    static const char *const opening[] = {"open", "create", "new ", "file ", "raise", "start", "submit", "log ", NULL};
    static const char *const asking[] = {"status", "where", "check", "update on", "what", "how is", "details", NULL};
    static const char *const complaint[] = {"complain", "broken", "damaged", NULL};
    json_t *messages = json_object_get(req->upstream, "messages");
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    if (strcmp(json_string_value(json_object_get(last, "role")), "tool") == 0) {
        say_results(c, messages, req->shadowed | req->withheld);
        return;
    }
    const char *said = req->last_user != NULL ? req->last_user : "";
    char lower[SB_LAST_USER_MAX + 1];
    size_t n = strnlen(said, sizeof(lower) - 1);
    for (size_t i = 0; i < n; ++i)
        lower[i] = (char)tolower((unsigned char)said[i]);
    lower[n] = '\0';
    if (call_client_tool(c, req, said, lower))
        return;
    /* "open a ticket" opens one; "is ticket 3 still open?" asks about one */
    const char *ticket_at = strstr(lower, "ticket");
    int ticket = ticket_at != NULL, opens = ticket && says_before(lower, opening, ticket_at);
    char number[24], order[24];
    number_after(lower, "ticket", strstr(lower, "order") == NULL, number, sizeof(number)); /* not an order's number */
    number_after(lower, "order", 1, order, sizeof(order));
    if (ticket && !opens && number[0] != '\0' && offered(req, "get_ticket_details")) {
        call_own_tool(c, "get_ticket_details", json_pack("{s:I}", "ticket_id", (json_int_t)strtoll(number, NULL, 10)));
        return;
    }
    if (ticket && !opens && says_any(lower, asking)) {
        sb_buf_appendz(&c->text, "Which ticket number should I look up? This is the switchboard sandbox model.");
        return;
    }
    if (((ticket && opens) || says_any(lower, complaint)) && offered(req, "create_support_ticket")) {
        json_t *args = json_pack("{s:s}", "subject", said);
        if (strstr(lower, "order") != NULL && order[0] != '\0')
            json_object_set_new(args, "order_number", json_string(order));
        call_own_tool(c, "create_support_ticket", args);
        return;
    }
    if (strstr(lower, "order") != NULL && order[0] != '\0' && offered(req, "get_order_status")) {
        call_own_tool(c, "get_order_status", json_pack("{s:s}", "order_number", order));
        return;
    }
    if (ticket && offered(req, "create_support_ticket")) {
        call_own_tool(c, "create_support_ticket", json_pack("{s:s}", "subject", said));
        return;
    }
    if (answer_from_reference(c, messages, req->question[0] ? req->question : said))
        return;
    if (said[0] != '\0')
        sb_buf_appendf(&c->text, "You said: \"%s\". ", said);
    sb_buf_appendz(&c->text, "This is the switchboard sandbox model answering offline. "
                             "Set OPENAI_API_KEY or LLM_BASE_URL to talk to a real model.");
}

static void on_tick(uv_timer_t *t);

/* The next step of the sandbox's tool call, as a provider streams one; the call ends after the finish. */
static void call_tool(struct call *c)
{
    sb_delta_t d;
    memset(&d, 0, sizeof(d));
    d.model = (sb_str_t){SANDBOX_MODEL, sizeof(SANDBOX_MODEL) - 1};
    switch (c->step) {
    case TOOL_NAME:
        d.ntools = 1;
        d.tools[0] = (sb_tool_delta_t){0, {"call_sandbox_0", 14}, {"function", 8}, {c->tool, strlen(c->tool)}, {"", 0}};
        c->step = TOOL_ARGUMENTS;
        break;
    case TOOL_ARGUMENTS:
        d.ntools = 1;
        d.tools[0] = (sb_tool_delta_t){0, {NULL, 0}, {NULL, 0}, {NULL, 0}, {c->arguments.base, c->arguments.len}};
        c->step = TOOL_FINISH;
        break;
    case TOOL_FINISH:
    case TOOL_NONE: {
        d.finish_reason = (sb_str_t){"tool_calls", 10};
        d.has_usage = 1;
        d.completion_tokens = (long long)(c->arguments.len / 4 + 1);
        d.total_tokens = d.completion_tokens;
        sb_llm_sink_t *sink = c->sink;
        if (!deliver(c, &d))
            return;
        sb_llm_end_t e = {SB_OK, NULL, NULL, 0};
        destroy(c);
        sink->on_end(sink, &e);
        return;
    }
    }
    if (!deliver(c, &d))
        return;
    if (!c->paused)
        uv_timer_start(c->timer, on_tick, c->pace_ms, 0);
}

/* Emits the next word (with the spaces before it), or the finish and usage once the text is said. */
static void on_tick(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->step != TOOL_NONE) {
        call_tool(c);
        return;
    }
    sb_delta_t d;
    memset(&d, 0, sizeof(d));
    d.model = (sb_str_t){SANDBOX_MODEL, sizeof(SANDBOX_MODEL) - 1};
    if (c->pos < c->text.len) {
        size_t end = c->pos;
        while (end < c->text.len && c->text.base[end] == ' ')
            ++end;
        while (end < c->text.len && c->text.base[end] != ' ')
            ++end;
        d.content = (sb_str_t){c->text.base + c->pos, end - c->pos};
        c->pos = end;
        if (!deliver(c, &d))
            return;
        if (!c->paused)
            uv_timer_start(c->timer, on_tick, c->pace_ms, 0);
        return;
    }
    d.finish_reason = (sb_str_t){"stop", 4};
    d.has_usage = 1;
    d.prompt_tokens = 0;
    d.completion_tokens = (long long)(c->text.len / 5 + 1);
    d.total_tokens = d.completion_tokens;
    sb_llm_sink_t *sink = c->sink;
    if (!deliver(c, &d))
        return;
    sb_llm_end_t e = {SB_OK, NULL, NULL, 0};
    destroy(c);
    sink->on_end(sink, &e);
}

static sb_llm_call_t *start(const sb_llm_env_t *env, const sb_chat_request_t *req, sb_llm_sink_t *sink)
{
    struct call *c = sb_calloc(1, sizeof(*c));
    c->super.provider = &sb_provider_sandbox;
    c->sink = sink;
    c->pace_ms = env->config->sandbox_word_ms;
    sb_buf_init(&c->text, 8192);
    sb_buf_init(&c->arguments, 1024);
    plan(c, req);
    c->step = c->tool[0] != '\0' ? TOOL_NAME : TOOL_NONE;
    c->timer = sb_alloc(sizeof(*c->timer));
    uv_timer_init(env->loop, c->timer);
    c->timer->data = c;
    /* The first word goes out at once: time to first token is what the caller hears. */
    uv_timer_start(c->timer, on_tick, 0, 0);
    return &c->super;
}

static void pause_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    c->paused = 1;
    uv_timer_stop(c->timer);
}

static void resume_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    if (!c->paused)
        return;
    c->paused = 0;
    uv_timer_start(c->timer, on_tick, c->pace_ms, 0);
}

static void cancel_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    if (c->in_delta) /* the tick that is delivering frees it once the sink returns */
        c->cancelled = 1;
    else
        destroy(c);
}

const sb_provider_t sb_provider_sandbox = {"sandbox", start, pause_call, resume_call, cancel_call};
