/*
 * The offline sandbox model. With no provider configured, switchboard still
 * answers end to end: a short, clearly labelled reply streamed word by word at
 * a speaking pace from a timer on the worker's loop, so the quickstart works
 * with no account anywhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm.h"
#include "sb/buf.h"
#include "worker.h"

#define SANDBOX_MODEL "switchboard-sandbox"

struct call {
    sb_llm_call_t super;
    sb_llm_sink_t *sink;
    uv_timer_t *timer;
    sb_buf_t text;
    size_t pos;
    unsigned pace_ms;
    int paused;
};

static void on_closed(uv_handle_t *h)
{
    free(h);
}

static void destroy(struct call *c)
{
    uv_close((uv_handle_t *)c->timer, on_closed);
    sb_buf_dispose(&c->text);
    free(c);
}

/* Emits the next word (with the spaces before it), or the finish and usage once the text is said. */
static void on_tick(uv_timer_t *t)
{
    struct call *c = t->data;
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
        c->sink->on_delta(c->sink, &d);
        if (!c->paused)
            uv_timer_start(c->timer, on_tick, c->pace_ms, 0);
        return;
    }
    d.finish_reason = (sb_str_t){"stop", 4};
    d.has_usage = 1;
    d.prompt_tokens = 0;
    d.completion_tokens = (long long)(c->text.len / 5 + 1);
    d.total_tokens = d.completion_tokens;
    c->sink->on_delta(c->sink, &d);
    sb_llm_sink_t *sink = c->sink;
    sb_llm_end_t e = {SB_OK, NULL, NULL, 0};
    destroy(c);
    sink->on_end(sink, &e);
}

static sb_llm_call_t *start(sb_worker_t *w, const sb_chat_request_t *req, sb_llm_sink_t *sink)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->super.provider = &sb_provider_sandbox;
    c->sink = sink;
    c->pace_ms = w->config->sandbox_word_ms;
    sb_buf_init(&c->text, 4096);
    if (req->last_user[0] != '\0')
        sb_buf_appendf(&c->text, "You said: \"%s\". ", req->last_user);
    sb_buf_appendz(&c->text, "This is the switchboard sandbox model answering offline. "
                             "Set OPENAI_API_KEY or LLM_BASE_URL to talk to a real model.");
    c->timer = malloc(sizeof(*c->timer));
    if (c->timer == NULL)
        abort();
    uv_timer_init(&w->loop, c->timer);
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
    destroy(H2O_STRUCT_FROM_MEMBER(struct call, super, call));
}

const sb_provider_t sb_provider_sandbox = {"sandbox", start, pause_call, resume_call, cancel_call};
