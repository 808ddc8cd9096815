/*
 * The turn core: one chat turn as a state machine (turn.h draws it). Each
 * phase starts one kind of work (retrieval, a provider round, the round's
 * tool calls) and ends when it comes back; enter() is the one place a phase
 * begins, stop_work() the one place it is abandoned. What happens is told to
 * the sink as events (sink.h). The turn keeps only what its rounds need: a
 * round's words while its tool calls may follow, and the calls themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "sb/rag.h"
#include "instructions.h"
#include "router.h"
#include "sb/tools.h"
#include "turn.h"

/* Tool calls per round, relayed or run: past this the turn ends with an error, never a silent drop. */
#define MAX_TOOL_CALLS SB_CHUNK_MAX_TOOLS

/*
 * A tool call gathered from its fragments. switchboard's own calls are run
 * between rounds and never shown to a live client; the client's are relayed.
 */
struct call {
    struct sb_turn *turn;
    long index;
    sb_buf_t id, name, arguments;
    int owned; /* -1 until the name is known */
    const sb_tool_t *tool;
    sb_tool_call_t *running;
    char *result;
    size_t result_len;
};

struct sb_turn {
    sb_llm_sink_t llm; /* what the provider reports to */
    sb_turn_env_t env;
    sb_chat_request_t creq;
    sb_sink_t *sink, *observer;
    sb_turn_phase_t phase;
    sb_llm_call_t *call;       /* ASKING: the provider round */
    sb_rag_query_t *rag;       /* RETRIEVING: retrieval */
    sb_memory_load_t *recall;  /* REMEMBERING: the stored conversation */
    sb_router_call_t *router;  /* ROUTING: the LLM router */
    uv_timer_t *rag_wait;      /* says RAG_WAIT_TEXT to a live caller if retrieval runs long */
    uv_timer_t *failed;        /* a provider that could not start during sb_turn_start is reported from the loop */
    const char *retrieval;     /* hit, miss, timeout, error, off */
    sb_agent_decision_t agent; /* who answers and how (agent_route.h); agent.agent NULL with agents off */
    unsigned paused : 1,       /* the sink's caller reads slowly: the provider is held */
        model_told : 1,        /* the sink heard which model answers */
        said_anything : 1,     /* the caller heard words (no filler needed) */
        own_words_last : 1,    /* the last words the caller heard were switchboard's own (a filler): the model's need a space */
        finish_sent : 1,       /* the provider's finish reason went out */
        relayed_tools : 1,     /* client tool calls went out (the finish is tool_calls) */
        keep_rounds : 1,       /* switchboard's tools are offered: a round's words may be needed again */
        round_overflow : 1,    /* this round's words passed MAX_ANSWER_BYTES and were let go */
        starting : 1,          /* inside sb_turn_start: nothing may be told yet */
        body_dropped : 1;      /* the provider body was let go of (sb_chat_request_drop_body) */
    char *model; /* the model that answers, once told (tell_model): the provider's name for it, at most 256 bytes; owned */
    char finish_reason[32];
    /* the tool loop */
    unsigned round;         /* provider rounds finished */
    unsigned n_owned;       /* this round's calls of switchboard's tools */
    unsigned n_client;      /* this round's calls of the client's tools */
    unsigned pending_tools; /* calls still running */
    sb_buf_t words;         /* this round's words, for its assistant message, when keep_rounds */
    struct call *calls;     /* this round's calls, grown as they come, at most MAX_TOOL_CALLS */
    size_t ncalls, calls_cap;
    /* usage, summed over rounds */
    int has_usage;
    long long prompt_tokens, completion_tokens, total_tokens;
};

static void enter(sb_turn_t *t, sb_turn_phase_t next);
static void finish(sb_turn_t *t, sb_error_t error, const char *message, const char *retry_after, const char *how);

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void close_timer(uv_timer_t **timer)
{
    if (*timer == NULL)
        return;
    uv_timer_stop(*timer);
    uv_close((uv_handle_t *)*timer, on_timer_closed);
    *timer = NULL;
}

static uv_timer_t *new_timer(sb_turn_t *t)
{
    uv_timer_t *timer = sb_alloc(sizeof(*timer));
    uv_timer_init(t->env.loop, timer);
    timer->data = t;
    return timer;
}

/* --- events ------------------------------------------------------------------------------------ */

/* Tells the sink, then each observer down the chain, when it has the operation. */
#define EMIT(t, op, ...)                                                                                                           \
    do {                                                                                                                           \
        if ((t)->sink->ops->op != NULL)                                                                                            \
            (t)->sink->ops->op((t)->sink, __VA_ARGS__);                                                                            \
        for (sb_sink_t *o_ = (t)->observer; o_ != NULL; o_ = o_->next)                                                             \
            if (o_->ops->op != NULL)                                                                                               \
                o_->ops->op(o_, __VA_ARGS__);                                                                                      \
    } while (0)

/* The model that answers, told once before anything else: the provider's name for it, else the one asked for. */
static void tell_model(sb_turn_t *t, sb_str_t model)
{
    if (t->model_told)
        return;
    t->model_told = 1;
    if (t->agent.agent != NULL)
        EMIT(t, agent, &t->agent);
    if (model.base == NULL || model.len == 0 || model.len > 256)
        model = (sb_str_t){t->creq.model, strlen(t->creq.model)};
    t->model = sb_strndup(model.base, model.len); /* its own size: a turn is held for a whole stream */
    EMIT(t, model, (sb_str_t){t->model, model.len});
}

/* Tells the sink what the model said. Returns 0 when that ended the turn (the sink refused: a ceiling passed). */
static int tell_delta(sb_turn_t *t, const sb_sink_delta_t *d)
{
    sb_error_t e = t->sink->ops->delta(t->sink, d);
    for (sb_sink_t *o = t->observer; o != NULL; o = o->next)
        if (o->ops->delta != NULL)
            o->ops->delta(o, d);
    if (e == SB_OK)
        return 1;
    finish(t, e, NULL, NULL, "upstream_error");
    return 0;
}

/* Says `text` to the caller as part of the answer (a filler while work runs, or an apology). */
static void say(sb_turn_t *t, const char *text)
{
    tell_model(t, (sb_str_t){NULL, 0});
    sb_sink_delta_t d = {.text = {text, strlen(text)}};
    if (tell_delta(t, &d))
        t->said_anything = t->own_words_last = 1;
}

/* --- the round's tool calls --------------------------------------------------------------------- */

/* The call at `index`, new if unseen; NULL when the round already holds MAX_TOOL_CALLS calls. */
static struct call *call_for(sb_turn_t *t, long index)
{
    for (size_t i = t->ncalls; i-- > 0;) /* fragments come for the newest call */
        if (t->calls[i].index == index)
            return &t->calls[i];
    if (t->ncalls == MAX_TOOL_CALLS)
        return NULL;
    if (t->ncalls == t->calls_cap) {
        /* nothing points into the array until the round's calls run, so it may move while they are gathered */
        t->calls_cap = t->calls_cap ? t->calls_cap * 2 : 4;
        t->calls = sb_realloc(t->calls, t->calls_cap * sizeof(*t->calls));
    }
    struct call *c = &t->calls[t->ncalls++];
    size_t max = t->env.config->max_upstream_bytes;
    memset(c, 0, sizeof(*c));
    c->turn = t;
    c->index = index;
    c->owned = -1;
    sb_buf_init(&c->id, SB_CHUNK_MAX_CALL_ID);
    sb_buf_init(&c->name, 256);
    sb_buf_init(&c->arguments, max);
    return c;
}

/*
 * Adds a call's fragment; the first fragment naming a tool decides whose call
 * it is. A call of the client's that a live sink relays as it comes is not
 * kept beyond its name. NULL when the round has too many calls.
 */
static struct call *gather(sb_turn_t *t, const sb_tool_delta_t *f)
{
    struct call *c = call_for(t, f->index);
    if (c == NULL)
        return NULL;
    if (f->id.base != NULL && c->id.len == 0)
        sb_buf_append(&c->id, f->id.base, f->id.len);
    if (f->name.base != NULL)
        sb_buf_append(&c->name, f->name.base, f->name.len);
    if (f->arguments.base != NULL && (c->owned != 0 || !t->sink->ops->live))
        sb_buf_append(&c->arguments, f->arguments.base, f->arguments.len);
    if (c->owned < 0 && c->name.len > 0) {
        c->tool = sb_tools_find_offered(c->name.base, c->name.len, t->creq.shadowed | t->creq.withheld);
        c->owned = c->tool != NULL;
        if (c->owned)
            ++t->n_owned;
        else
            ++t->n_client;
    }
    return c;
}

static sb_str_t str_of(const sb_buf_t *b)
{
    return (sb_str_t){b->base != NULL ? b->base : "", b->len};
}

static void reset_calls(sb_turn_t *t)
{
    for (size_t i = 0; i < t->ncalls; ++i) {
        struct call *c = &t->calls[i];
        if (c->running != NULL)
            sb_tool_call_cancel(c->running); /* forgotten: its statement lands whole or not at all */
        sb_buf_dispose(&c->id);
        sb_buf_dispose(&c->name);
        sb_buf_dispose(&c->arguments);
        free(c->result);
    }
    t->ncalls = 0;
    t->n_owned = t->n_client = t->pending_tools = 0;
}

static sb_sink_tool_t tool_event(const struct call *c)
{
    sb_sink_tool_t e = {str_of(&c->id), str_of(&c->name), str_of(&c->arguments), {NULL, 0}, 0};
    if (c->result != NULL) {
        e.result = (sb_str_t){c->result, c->result_len};
        e.failed = c->result_len > 9 && memcmp(c->result, "{\"error\":", 9) == 0;
    }
    return e;
}

static void on_tool_done(void *data, const char *result, size_t len)
{
    struct call *c = data;
    sb_turn_t *t = c->turn;
    c->running = NULL;
    c->result = sb_alloc(len + 1);
    memcpy(c->result, result, len);
    c->result[len] = '\0';
    c->result_len = len;
    sb_sink_tool_t e = tool_event(c);
    EMIT(t, tool_finished, &e);
    if (--t->pending_tools > 0)
        return;
    /* every call of the round is back: hand the results to the model, in call order */
    for (size_t i = 0; i < t->ncalls; ++i) {
        struct call *done = &t->calls[i];
        if (done->owned == 1)
            sb_chat_request_add_tool_result(&t->creq, str_of(&done->id), (sb_str_t){done->result, done->result_len});
    }
    reset_calls(t);
    ++t->round;
    t->round_overflow = 0;
    enter(t, SB_TURN_ASKING);
}

/*
 * Whether the round looks something up: a call of switchboard's tools that
 * is not one acting on the call (end it, transfer it). Those answer at once,
 * and "one moment while I check that" before a goodbye would be odd.
 */
static int looks_up(const sb_turn_t *t)
{
    for (size_t i = 0; i < t->ncalls; ++i)
        if (t->calls[i].owned == 1 && !(t->calls[i].tool->flags & SB_TOOL_CALL))
            return 1;
    return 0;
}

/* The round's calls of switchboard's tools: at most TOOL_MAX_CALLS run; the rest are answered "not run". */
static void run_tools(sb_turn_t *t)
{
    const sb_config_t *cf = t->env.config;
    sb_tool_call_text_t *texts = sb_alloc(t->ncalls * sizeof(*texts));
    size_t n = 0;
    for (size_t i = 0; i < t->ncalls; ++i) {
        struct call *c = &t->calls[i];
        if (c->owned != 1)
            continue;
        if (c->id.len == 0) /* some providers leave ids out; the tool message must still match its call */
            sb_buf_appendf(&c->id, "call_sb_%u_%ld", t->round, c->index);
        texts[n++] = (sb_tool_call_text_t){str_of(&c->id), str_of(&c->name), str_of(&c->arguments)};
    }
    sb_chat_request_add_tool_calls(&t->creq, t->words.len ? str_of(&t->words) : (sb_str_t){NULL, 0}, texts, n);
    free(texts);
    sb_buf_reset(&t->words);

    sb_tool_env_t env = {cf, t->env.pg, t->env.curlm, &t->creq.caller};
    unsigned run = 0;
    t->pending_tools = 0;
    for (size_t i = 0; i < t->ncalls; ++i) { /* counted first: a call may end while later ones start */
        struct call *c = &t->calls[i];
        t->pending_tools += c->owned == 1 && run++ < cf->tool_max_calls;
    }
    run = 0;
    for (size_t i = 0; i < t->ncalls; ++i) {
        struct call *c = &t->calls[i];
        if (c->owned != 1)
            continue;
        if (run++ >= cf->tool_max_calls) {
            char text[160];
            int len = snprintf(text, sizeof(text),
                               "{\"error\":\"not run: at most %u calls of these tools run in one round; call it again\"}",
                               cf->tool_max_calls);
            c->result = sb_alloc((size_t)len + 1);
            memcpy(c->result, text, (size_t)len + 1);
            c->result_len = (size_t)len;
            continue;
        }
        sb_sink_tool_t e = tool_event(c);
        EMIT(t, tool_started, &e);
        char key[33];
        c->running =
            sb_tool_call_start(c->tool, &env, c->arguments.len ? c->arguments.base : "{}", c->arguments.len ? c->arguments.len : 2,
                               (c->tool->flags & SB_TOOL_WRITES)
                                   ? sb_conversation_write_key(t->creq.conversation, t->creq.turn_id, t->round, c->index,
                                                               c->tool->name, &t->creq.caller, str_of(&c->arguments), key)
                                   : NULL,
                               on_tool_done, c);
    }
}

/* --- what the provider says --------------------------------------------------------------------- */

/* Keeps this round's words when a call of switchboard's tools may follow them (they go back with its results). */
static void keep_words(sb_turn_t *t, sb_str_t text)
{
    if (!t->keep_rounds || t->round_overflow)
        return;
    if (sb_buf_append(&t->words, text.base, text.len) != 0) {
        /* too long to repeat to the model: harmless unless this round turns out to call switchboard's tools */
        t->round_overflow = 1;
        sb_buf_dispose(&t->words);
    }
}

static void on_delta(sb_llm_sink_t *llm, const sb_delta_t *d)
{
    sb_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_turn_t, llm, llm);
    tell_model(t, d->model);
    /* The provider has answered, so no fallback will ask another; without switchboard's tools no round follows. The
     * body (a few KiB of JSON) would otherwise stay for the whole stream, which a voice turn holds open for seconds. */
    if (!t->keep_rounds && !t->body_dropped) {
        t->body_dropped = 1;
        sb_chat_request_drop_body(&t->creq, t->model);
    }
    if (d->has_usage) { /* summed over tool rounds */
        t->has_usage = 1;
        t->prompt_tokens += d->prompt_tokens;
        t->completion_tokens += d->completion_tokens;
        t->total_tokens += d->total_tokens ? d->total_tokens : d->prompt_tokens + d->completion_tokens;
    }
    /* switchboard's own tool calls are gathered and run; only the client's are relayed */
    const sb_tool_delta_t *relay[SB_CHUNK_MAX_TOOLS];
    size_t nrelay = 0;
    for (size_t i = 0; i < d->ntools; ++i) {
        struct call *c = gather(t, &d->tools[i]);
        if (c == NULL) {
            char msg[128];
            snprintf(msg, sizeof(msg), "the model asked for more than %d tool calls in one round", MAX_TOOL_CALLS);
            finish(t, SB_E_TOO_MANY_TOOL_CALLS, msg, NULL, "upstream_error");
            return;
        }
        if (c->owned != 1)
            relay[nrelay++] = &d->tools[i];
    }
    if (d->content.base != NULL) {
        keep_words(t, d->content);
        t->said_anything |= d->content.len > 0;
    }
    t->said_anything |= d->audio.base != NULL;
    /* Providers may repeat finish_reason (OpenRouter does): the first one counts. A round that ends in
     * switchboard's tools is not the end of the turn. */
    const char *finish_reason = NULL;
    if (d->finish_reason.base != NULL && !t->finish_sent && !(t->n_owned > 0 && t->n_client == 0)) {
        size_t n = d->finish_reason.len < sizeof(t->finish_reason) - 1 ? d->finish_reason.len : sizeof(t->finish_reason) - 1;
        memcpy(t->finish_reason, d->finish_reason.base, n);
        t->finish_reason[n] = '\0';
        for (size_t i = 0; i < n; ++i) /* it goes into JSON unescaped: keep it to a plain word */
            if (!((t->finish_reason[i] >= 'a' && t->finish_reason[i] <= 'z') || t->finish_reason[i] == '_'))
                t->finish_reason[i] = '_';
        t->finish_sent = 1;
        finish_reason = t->finish_reason;
    }
    if (!t->sink->ops->live)
        nrelay = 0; /* kept whole for done instead */
    t->relayed_tools |= nrelay > 0;
    if (t->own_words_last && d->content.len > 0) { /* "One moment while I check that. Order 4417 ...", not "that.Order" */
        t->own_words_last = 0;
        char c = d->content.base[0];
        sb_sink_delta_t space = {.text = {" ", 1}};
        if (c != ' ' && c != '\n' && c != '\t' && !tell_delta(t, &space))
            return;
    }
    /* also a delta with nothing in it (role-only, usage-only, own tool calls): the first one starts a stream */
    sb_sink_delta_t out = {
        .text = d->content, .audio = d->audio, .fragments = relay, .nfragments = nrelay, .finish = finish_reason};
    tell_delta(t, &out);
}

static void on_end(sb_llm_sink_t *llm, const sb_llm_end_t *e)
{
    sb_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_turn_t, llm, llm);
    t->call = NULL;
    if (t->phase != SB_TURN_ASKING)
        return;
    if (e->error != SB_OK) {
        finish(t, e->error, e->message, e->retry_after, e->timed_out ? "timeout" : "upstream_error");
        return;
    }
    if (t->n_owned == 0 || t->n_client > 0) { /* a mixed round ends the turn: the client's calls are its to answer */
        finish(t, SB_OK, NULL, NULL, "done");
        return;
    }
    if (t->round + 1 >= t->env.config->tool_max_rounds) {
        reset_calls(t);
        say(t, t->said_anything ? " Sorry, I could not finish looking that up. Could you ask me again?"
                                : "Sorry, I could not finish looking that up. Could you ask me again?");
        finish(t, SB_OK, NULL, NULL, "done");
        return;
    }
    if (t->round_overflow) { /* the assistant message would have to repeat words no longer kept */
        finish(t, SB_E_ANSWER_TOO_LARGE, "the model said more than MAX_ANSWER_BYTES before calling a tool", NULL, "upstream_error");
        return;
    }
    enter(t, SB_TURN_RUNNING_TOOLS);
}

/* --- retrieval ----------------------------------------------------------------------------------- */

/* Retrieval is taking long: a short phrase tells a live caller someone is there. */
static void on_rag_wait(uv_timer_t *timer)
{
    sb_turn_t *t = timer->data;
    close_timer(&t->rag_wait);
    if (t->phase == SB_TURN_RETRIEVING && !t->said_anything)
        say(t, t->env.config->rag_wait_text);
}

static void on_retrieved(void *data, const sb_passage_t *passages, size_t n, const char *outcome)
{
    sb_turn_t *t = data;
    t->rag = NULL;
    t->retrieval = outcome;
    close_timer(&t->rag_wait);
    EMIT(t, retrieval, outcome, passages, n);
    sb_chat_request_add_context(&t->creq, passages, n);
    enter(t, SB_TURN_ASKING);
}

/* --- memory ---------------------------------------------------------------------------------------- */

/* What follows remembering: retrieval when it is on and there is a question, else the first round. */
static sb_turn_phase_t after_remembering(const sb_turn_t *t)
{
    int retrieve = !t->creq.internal && sb_rag_enabled(t->env.config) && t->creq.question[0] != '\0' &&
                   (t->agent.agent == NULL || t->agent.agent->retrieval); /* an agent may answer without retrieval */
    return retrieve ? SB_TURN_RETRIEVING : SB_TURN_ASKING;
}

/* The agent is settled: it shapes the request, its tools are offered, and the turn goes on. */
/*
 * The turn's agent is known: its instructions and tools go in, and the turn
 * goes on. A caller who wants one answer, with no round of switchboard's
 * tools to follow, has the provider asked for one whole answer too (it does
 * less, and reports usage) instead of a stream gathered here.
 */
static void go_on(sb_turn_t *t)
{
    if (!t->sink->ops->live && !t->keep_rounds)
        sb_chat_request_ask_whole(&t->creq);
    enter(t, after_remembering(t));
}

static void routed(sb_turn_t *t)
{
    sb_instructions_apply(&t->creq, &t->agent);
    sb_chat_request_offer_tools(&t->creq);
    t->keep_rounds = t->creq.offered_tools != NULL; /* a round may end in switchboard's tools only when this request offers some */
    go_on(t);
}

/*
 * The conversation is known, stored history included: the turn is routed to
 * its agent now (a client that sends only its new words is routed with the
 * earlier ones it did not send), by the router when the classifier is unsure
 * and the router is on, and then it goes on.
 */
static void remembered(sb_turn_t *t)
{
    if (t->creq.internal) { /* every tool withheld: none is offered, and a call the model makes anyway is never run */
        t->creq.withheld = UINT32_MAX;
        t->creq.agent_tools = NULL;
        sb_chat_request_offer_tools(&t->creq);
        go_on(t);
        return;
    }
    sb_instructions_route(&t->creq, NULL, &t->agent);
    if (t->agent.agent != NULL && t->agent.unsure && sb_router_enabled(t->env.config))
        enter(t, SB_TURN_ROUTING);
    else
        routed(t);
}

static void on_recalled(void *data, const char *outcome)
{
    sb_turn_t *t = data;
    (void)outcome; /* whatever it is, the turn goes on: never silence for want of history */
    t->recall = NULL;
    remembered(t);
}

/* --- the router ------------------------------------------------------------------------------------ */

static void on_routed(void *data, const sb_router_result_t *result)
{
    sb_turn_t *t = data;
    t->router = NULL;
    if (result->agent != NULL) /* else the classifier's choice stands */
        sb_instructions_route(&t->creq, result->agent, &t->agent);
    t->agent.router = result->outcome;
    t->agent.router_ms = result->ms;
    routed(t);
}

/* --- the state machine --------------------------------------------------------------------------- */

static void on_failed_start(uv_timer_t *timer)
{
    sb_turn_t *t = timer->data;
    close_timer(&t->failed);
    finish(t, SB_E_INTERNAL, NULL, NULL, "upstream_error");
}

/* Begins phase `next`: the one place where work starts. */
static void enter(sb_turn_t *t, sb_turn_phase_t next)
{
    const sb_config_t *cf = t->env.config;
    t->phase = next;
    switch (next) {
    case SB_TURN_REMEMBERING:
        t->recall = sb_memory_load_start(t->env.memory, &t->creq, on_recalled, t);
        if (t->recall == NULL) /* nothing to recall */
            remembered(t);
        return;
    case SB_TURN_ROUTING:
        t->router = sb_router_start(t->env.provider, t->env.llm, &t->creq, &t->agent, on_routed, t);
        return;
    case SB_TURN_RETRIEVING:
        t->rag = sb_rag_start(t->agent.agent != NULL && t->agent.agent->rag_config != NULL ? t->agent.agent->rag_config : cf,
                              t->env.pg, t->env.curlm, t->env.loop, t->creq.question, on_retrieved, t);
        if (t->sink->ops->live && cf->rag_wait_ms > 0 && strcmp(cf->rag_wait_text, "none") != 0) {
            t->rag_wait = new_timer(t);
            uv_timer_start(t->rag_wait, on_rag_wait, cf->rag_wait_ms, 0);
        }
        return;
    case SB_TURN_ASKING:
        t->call = t->env.provider->start(t->env.llm, &t->creq, &t->llm);
        if (t->call == NULL && t->starting) { /* the sink hears nothing before its owner holds the turn */
            t->failed = new_timer(t);
            uv_timer_start(t->failed, on_failed_start, 0, 0);
        } else if (t->call == NULL) {
            finish(t, SB_E_INTERNAL, NULL, NULL, "upstream_error");
        } else if (t->paused) { /* the caller is still behind on what was said before */
            t->call->provider->pause(t->call);
        }
        return;
    case SB_TURN_RUNNING_TOOLS:
        if (!t->said_anything && t->sink->ops->live && strcmp(cf->tool_filler_text, "none") != 0 && looks_up(t))
            say(t, cf->tool_filler_text);
        if (t->phase == SB_TURN_RUNNING_TOOLS) /* the filler may have ended the turn */
            run_tools(t);
        return;
    case SB_TURN_DONE:
        return;
    }
}

/* Abandons whatever the current phase has running: the one place where work is stopped. */
static void stop_work(sb_turn_t *t)
{
    switch (t->phase) {
    case SB_TURN_REMEMBERING:
        sb_memory_load_cancel(t->recall);
        t->recall = NULL;
        break;
    case SB_TURN_ROUTING:
        sb_router_cancel(t->router); /* its provider call ends at once */
        t->router = NULL;
        break;
    case SB_TURN_RETRIEVING:
        if (t->rag != NULL)
            sb_rag_cancel(t->rag);
        t->rag = NULL;
        close_timer(&t->rag_wait);
        break;
    case SB_TURN_ASKING:
        if (t->call != NULL) {
            sb_llm_call_t *call = t->call;
            t->call = NULL;
            call->provider->cancel(call); /* providers allow this from inside on_delta */
        }
        break;
    case SB_TURN_RUNNING_TOOLS:
        for (size_t i = 0; i < t->ncalls; ++i) /* forgotten: a statement already sent lands whole or not at all */
            if (t->calls[i].running != NULL) {
                sb_tool_call_cancel(t->calls[i].running);
                t->calls[i].running = NULL;
            }
        break;
    case SB_TURN_DONE:
        break;
    }
    close_timer(&t->failed);
}

/* Ends the turn: stops what runs, and tells the sink how it ended (once). */
static void finish(sb_turn_t *t, sb_error_t error, const char *message, const char *retry_after, const char *how)
{
    if (t->phase == SB_TURN_DONE)
        return;
    sb_sink_call_t *calls = NULL;
    size_t ncalls = 0;
    if (error == SB_OK && t->n_client > 0) { /* the client's calls, whole, for a sink that did not relay them */
        calls = sb_alloc(t->ncalls * sizeof(*calls));
        for (size_t i = 0; i < t->ncalls; ++i)
            if (t->calls[i].owned != 1)
                calls[ncalls++] =
                    (sb_sink_call_t){str_of(&t->calls[i].id), str_of(&t->calls[i].name), str_of(&t->calls[i].arguments)};
    }
    const char *reason = t->finish_reason[0] ? t->finish_reason : t->relayed_tools || t->n_client ? "tool_calls" : "stop";
    sb_turn_end_t end = {
        .error = error,
        .message = message,
        .retry_after = retry_after,
        .how = how,
        .finish = error != SB_OK || t->finish_sent ? NULL : reason, /* the provider's own went out with its delta */
        .calls = calls,
        .ncalls = ncalls,
        .has_usage = t->has_usage,
        .prompt_tokens = t->prompt_tokens,
        .completion_tokens = t->completion_tokens,
        .total_tokens = t->total_tokens,
    };
    if (t->finish_sent && error == SB_OK && !t->sink->ops->live)
        end.finish = reason; /* one answer at the end: it carries the reason wherever it came from */
    tell_model(t, (sb_str_t){NULL, 0});
    stop_work(t);
    t->phase = SB_TURN_DONE;
    EMIT(t, done, &end);
    free(calls);
    reset_calls(t); /* only now: the calls' texts were the event's */
}

/* The sink's caller reads slowly: hold the provider until it catches up. */
static void on_sink_pause(void *data)
{
    sb_turn_t *t = data;
    if (t->paused)
        return;
    t->paused = 1;
    if (t->call != NULL)
        t->call->provider->pause(t->call);
}

static void on_sink_resume(void *data)
{
    sb_turn_t *t = data;
    if (!t->paused)
        return;
    t->paused = 0;
    if (t->call != NULL)
        t->call->provider->resume(t->call); /* may deliver held deltas, and the sink write them, right here */
}

/* --- public ------------------------------------------------------------------------------------- */

sb_turn_t *sb_turn_start(const sb_turn_env_t *env, sb_chat_request_t *creq, sb_sink_t *sink, sb_sink_t *observer)
{
    sb_turn_t *t = sb_alloc(sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->llm.on_delta = on_delta;
    t->llm.on_end = on_end;
    t->env = *env;
    t->creq = *creq;
    memset(creq, 0, sizeof(*creq));
    t->sink = sink;
    t->observer = observer;
    sink->pause = on_sink_pause;
    sink->resume = on_sink_resume;
    sink->turn = t;
    t->retrieval = "off";
    sb_buf_init(&t->words, env->config->max_answer_bytes);
    t->starting = 1;
    enter(t, SB_TURN_REMEMBERING);
    t->starting = 0;
    return t;
}

void sb_turn_stop(sb_turn_t *t, sb_error_t error, const char *message, const char *how)
{
    finish(t, error, message, NULL, how);
}

void sb_turn_release(sb_turn_t *t)
{
    if (t == NULL)
        return;
    stop_work(t);
    reset_calls(t);
    t->phase = SB_TURN_DONE;
    free(t->calls);
    sb_buf_dispose(&t->words);
    sb_chat_request_dispose(&t->creq);
    free(t->model);
    free(t);
}

sb_turn_phase_t sb_turn_phase(const sb_turn_t *t)
{
    return t->phase;
}

const char *sb_turn_retrieval(const sb_turn_t *t)
{
    return t->retrieval;
}

const sb_agent_decision_t *sb_turn_agent(const sb_turn_t *t)
{
    return &t->agent;
}

const sb_chat_request_t *sb_turn_request(const sb_turn_t *t)
{
    return &t->creq;
}
