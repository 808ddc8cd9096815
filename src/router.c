/*
 * The LLM router (router.h): the prompt, one short provider call on the
 * turn's loop under its budget, and the strict reading of the answer.
 *
 *     asking ──▶ (hop) ──▶ reported
 *       └─ budget passed: cancelled ──▶ reported
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <h2o/memory.h>
#include <jansson.h>

#include "router.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"

/* What the router prompt can hold: every agent's name and description (agents.c: 16 of 1 KiB at most), and the lines around. */
#define PROMPT_MAX (32u << 10)
#define ASK_MAX (4 * SB_ROUTER_UTTERANCE_MAX + 256)

struct sb_router_call {
    sb_llm_sink_t llm; /* what the provider reports to */
    sb_chat_request_t req;
    sb_llm_call_t *call; /* NULL once it ended or was cancelled */
    uv_timer_t *timer;   /* the budget, then the hop that reports from the loop */
    sb_buf_t answer;     /* what the model said, at most SB_ROUTER_ANSWER_MAX bytes */
    sb_router_done_cb cb;
    void *data;
    uint64_t t_start; /* uv_hrtime() */
    sb_router_result_t result;
};

static const char instructions[] =
    "You choose which agent of a customer support phone line answers the caller's words. The agents, with what each "
    "handles:";
static const char answer_rule[] = "Answer with one agent's name from this list, exactly as written, and nothing else.";

/* --- the request --------------------------------------------------------------------------------- */

/* Appends the caller's utterance `u` in quotes, cut to SB_ROUTER_UTTERANCE_MAX bytes at a character. */
static void append_quoted(sb_buf_t *b, sb_str_t u)
{
    char cut[SB_ROUTER_UTTERANCE_MAX + 1];
    sb_copy_text(cut, sizeof(cut), u.base, u.len);
    sb_buf_appendf(b, "\"%s%s\"", cut, strlen(cut) < u.len ? " ..." : "");
}

/* The router's request: the agents in the system message, the conversation's agent and the caller's words in the user's. */
static json_t *request_body(const sb_config_t *cf, const sb_agents_t *a, const sb_chat_request_t *r, const sb_agent_decision_t *d)
{
    sb_buf_t sys, ask;
    sb_buf_init(&sys, PROMPT_MAX);
    sb_buf_init(&ask, ASK_MAX);
    sb_buf_appendz(&sys, instructions);
    for (size_t i = 0; i < a->n; ++i)
        sb_buf_appendf(&sys, "\n- %s: %s", a->v[i].name, a->v[i].description != NULL ? a->v[i].description : "");
    sb_buf_appendf(&sys, "\n%s", answer_rule);

    sb_str_t users[SB_ROUTER_EARLIER + 1];
    unsigned tool_results;
    size_t n = sb_chat_request_user_texts(r, users, SB_ROUTER_EARLIER + 1, &tool_results);
    if (d->previous != NULL)
        sb_buf_appendf(&ask, "The call is with the %s agent so far.\n", d->previous->name);
    for (size_t i = 0; i + 1 < n; ++i) {
        sb_buf_appendz(&ask, "Earlier the caller said: ");
        append_quoted(&ask, users[i]);
        sb_buf_appendz(&ask, "\n");
    }
    sb_buf_appendz(&ask, "The caller now says: ");
    append_quoted(&ask, n > 0 ? users[n - 1] : (sb_str_t){"", 0});
    sb_buf_appendz(&ask, "\nWhich agent answers this?");

    json_t *root = json_pack("{s:s, s:b, s:i, s:i, s:[{s:s, s:s%}, {s:s, s:s%}]}", "model", cf->router_model, "stream", 1,
                             "temperature", 0, "max_tokens", SB_ROUTER_MAX_TOKENS, "messages", "role", "system", "content",
                             sys.base, sys.len, "role", "user", "content", ask.base, ask.len);
    sb_buf_dispose(&sys);
    sb_buf_dispose(&ask);
    return root;
}

/* --- the call's end ------------------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Cancels what still runs and frees the call. */
static void call_free(sb_router_call_t *c)
{
    if (c->call != NULL) {
        sb_llm_call_t *call = c->call;
        c->call = NULL;
        call->provider->cancel(call);
    }
    uv_timer_stop(c->timer);
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
    sb_buf_dispose(&c->answer);
    sb_chat_request_dispose(&c->req);
    free(c);
}

static void report(sb_router_call_t *c)
{
    sb_router_result_t result = c->result;
    result.ms = (double)(uv_hrtime() - c->t_start) / 1e6;
    sb_router_done_cb cb = c->cb;
    void *data = c->data;
    call_free(c);
    cb(data, &result);
}

static void on_hop(uv_timer_t *timer)
{
    report(timer->data);
}

/* The budget passed: the provider call is cancelled (in report) and the classifier's choice stands. */
static void on_budget(uv_timer_t *timer)
{
    sb_router_call_t *c = timer->data;
    c->result = (sb_router_result_t){NULL, "timeout", 0};
    report(c);
}

/* The outcome is known: it is reported from the loop, never from inside the provider's callback. */
static void end_with(sb_router_call_t *c, const sb_agent_t *agent, const char *outcome)
{
    c->result = (sb_router_result_t){agent, outcome, 0};
    uv_timer_stop(c->timer);
    uv_timer_start(c->timer, on_hop, 0, 0);
}

/* --- what the provider says ---------------------------------------------------------------------- */

static void on_delta(sb_llm_sink_t *llm, const sb_delta_t *d)
{
    sb_router_call_t *c = H2O_STRUCT_FROM_MEMBER(sb_router_call_t, llm, llm);
    if (d->content.base == NULL || d->content.len == 0 || c->call == NULL)
        return;
    if (sb_buf_append(&c->answer, d->content.base, d->content.len) != 0) { /* more than a name: no need to hear the rest */
        sb_llm_call_t *call = c->call;
        c->call = NULL;
        call->provider->cancel(call); /* allowed from on_delta */
        end_with(c, NULL, "unusable");
    }
}

static void on_end(sb_llm_sink_t *llm, const sb_llm_end_t *e)
{
    sb_router_call_t *c = H2O_STRUCT_FROM_MEMBER(sb_router_call_t, llm, llm);
    c->call = NULL;
    if (e->error != SB_OK) {
        end_with(c, NULL, e->timed_out ? "timeout" : "error");
        return;
    }
    const sb_agent_t *agent = sb_router_answer(sb_agents(), c->answer.base, c->answer.len);
    end_with(c, agent, agent != NULL ? "chosen" : "unusable");
}

/* --- public ---------------------------------------------------------------------------------------- */

int sb_router_enabled(const sb_config_t *config)
{
    return config->router_model != NULL && config->router_model[0] != '\0';
}

const sb_agent_t *sb_router_answer(const sb_agents_t *agents, const char *text, size_t len)
{
    if (agents == NULL || text == NULL)
        return NULL;
    while (len > 0 && (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n'))
        ++text, --len;
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\r' || text[len - 1] == '\n'))
        --len;
    for (size_t i = 0; i < agents->n; ++i)
        if (strlen(agents->v[i].name) == len && strncasecmp(agents->v[i].name, text, len) == 0)
            return &agents->v[i];
    return NULL;
}

sb_router_call_t *sb_router_start(const sb_provider_t *provider, const sb_llm_env_t *env, const sb_chat_request_t *r,
                                  const sb_agent_decision_t *d, sb_router_done_cb cb, void *data)
{
    sb_router_call_t *c = sb_calloc(1, sizeof(*c));
    c->llm = (sb_llm_sink_t){on_delta, on_end};
    c->cb = cb;
    c->data = data;
    c->t_start = uv_hrtime();
    sb_buf_init(&c->answer, SB_ROUTER_ANSWER_MAX);
    c->timer = sb_alloc(sizeof(*c->timer));
    uv_timer_init(env->loop, c->timer);
    c->timer->data = c;

    json_t *root = request_body(env->config, sb_agents(), r, d);
    sb_request_error_t err;
    if (sb_chat_request_parse(root, env->config->default_model, NULL, &c->req, &err) != 0) {
        sb_log_warn("router: request not built: %s", err.message);
        json_decref(root);
        end_with(c, NULL, "error");
        return c;
    }
    json_decref(root);
    char id[65];
    int len = snprintf(id, sizeof(id), "%.57s.router", r->request_id);
    sb_chat_request_set_trace(&c->req, id, (size_t)len, id, r->traceparent, strlen(r->traceparent));
    c->req.internal = 1; /* no agent, no instructions, no tools */
    c->call = provider->start(env, &c->req, &c->llm);
    if (c->call == NULL)
        end_with(c, NULL, "error");
    else {
        /* the loop's clock is read once per pass, maybe before this turn began: the budget counts from now */
        uv_update_time(env->loop);
        uv_timer_start(c->timer, on_budget, env->config->router_timeout_ms, 0);
    }
    return c;
}

void sb_router_cancel(sb_router_call_t *c)
{
    if (c != NULL)
        call_free(c);
}
