/*
 * The offline sandbox model. With no provider configured, switchboard still
 * answers end to end: a short, clearly labelled reply streamed word by word at
 * a speaking pace from a timer on the worker's loop, so the quickstart works
 * with no account anywhere. It reads from retrieved knowledge in plain
 * sentences.
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
#define PASSAGE_MAX 16384 /* bytes of the best passage read */

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
    const char *tool;
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

/* The first run of digits in `s` (an order number the caller said), or "". */
static void find_number(const char *s, char *out, size_t cap)
{
    const char *p = s + strcspn(s, "0123456789");
    size_t n = strspn(p, "0123456789");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Words for the results of the tools the sandbox called in its previous round. */
static void say_results(struct call *c, json_t *messages)
{
    for (size_t i = json_array_size(messages); i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        if (strcmp(json_string_value(json_object_get(m, "role")), "tool") != 0)
            break;
        json_t *r = json_loads(json_string_value(json_object_get(m, "content")), 0, NULL);
        json_t *err = json_object_get(r, "error");
        if (json_is_string(err))
            sb_buf_appendf(&c->text, "I could not do that: %s. ", json_string_value(err));
        else if (json_object_get(r, "order_number") != NULL)
            sb_buf_appendf(
                &c->text, "Order %s is %s%s%s%s%s. ", json_string_value(json_object_get(r, "order_number")),
                json_string_value(json_object_get(r, "status")), json_is_string(json_object_get(r, "carrier")) ? " with " : "",
                json_is_string(json_object_get(r, "carrier")) ? json_string_value(json_object_get(r, "carrier")) : "",
                json_is_string(json_object_get(r, "tracking_number")) ? ", tracking number " : "",
                json_is_string(json_object_get(r, "tracking_number")) ? json_string_value(json_object_get(r, "tracking_number"))
                                                                      : "");
        else if (json_object_get(r, "ticket_id") != NULL)
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

/* Decides what the sandbox does this round: call a tool the caller plainly asked for, report tool results, or talk. */
static void plan(struct call *c, const sb_chat_request_t *req)
{
    json_t *messages = json_object_get(req->upstream, "messages");
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    if (strcmp(json_string_value(json_object_get(last, "role")), "tool") == 0) {
        say_results(c, messages);
        return;
    }
    char lower[sizeof(req->last_user)];
    size_t n = strlen(req->last_user);
    for (size_t i = 0; i <= n; ++i)
        lower[i] = (char)tolower((unsigned char)req->last_user[i]);
    char number[24];
    find_number(lower, number, sizeof(number));
    if (strstr(lower, "order") != NULL && number[0] != '\0' && offered(req, "get_order_status")) {
        c->tool = "get_order_status";
        sb_buf_appendf(&c->arguments, "{\"order_number\":\"%s\"}", number);
        return;
    }
    if ((strstr(lower, "complain") || strstr(lower, "broken") || strstr(lower, "ticket")) &&
        offered(req, "create_support_ticket")) {
        json_t *args = json_pack("{s:s}", "subject", req->last_user);
        char *text = json_dumps(args, JSON_COMPACT);
        sb_buf_appendz(&c->arguments, text);
        free(text);
        json_decref(args);
        c->tool = "create_support_ticket";
        return;
    }
    if (answer_from_reference(c, messages, req->question[0] ? req->question : req->last_user))
        return;
    if (req->last_user[0] != '\0')
        sb_buf_appendf(&c->text, "You said: \"%s\". ", req->last_user);
    sb_buf_appendz(&c->text, "This is the switchboard sandbox model answering offline. "
                             "Set OPENAI_API_KEY or LLM_BASE_URL to talk to a real model.");
}

/* The sandbox's tool call: one chunk with the whole call, then finish_reason tool_calls. */
static void call_tool(struct call *c)
{
    sb_delta_t d;
    memset(&d, 0, sizeof(d));
    d.model = (sb_str_t){SANDBOX_MODEL, sizeof(SANDBOX_MODEL) - 1};
    d.ntools = 1;
    d.tools[0] = (sb_tool_delta_t){
        0, {"call_sandbox_0", 14}, {"function", 8}, {c->tool, strlen(c->tool)}, {c->arguments.base, c->arguments.len}};
    d.finish_reason = (sb_str_t){"tool_calls", 10};
    sb_llm_sink_t *sink = c->sink;
    if (!deliver(c, &d))
        return;
    sb_llm_end_t e = {SB_OK, NULL, NULL, 0};
    destroy(c);
    sink->on_end(sink, &e);
}

/* Emits the next word (with the spaces before it), or the finish and usage once the text is said. */
static void on_tick(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->tool != NULL) {
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
