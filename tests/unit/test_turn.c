/*
 * Unit tests for the turn core (src/turn.c): its phases and the events a sink
 * hears, driven by a scripted provider on the test's own loop and recorded
 * by a test sink. The tool turn runs switchboard's get_order_status against
 * a real Postgres (SB_TEST_DATABASE_URL; skipped without it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <h2o/memory.h>
#include <sodium.h>
#include <uv.h>

#include "migrate.h"
#include "pgtest.h"
#include "sb/buf.h"
#include "sb/tools.h"
#include "agents.h"
#include "tap.h"
#include "turn.h"

static uv_loop_t loop;
static sb_config_t config;

/* --- a scripted provider --------------------------------------------------------------------------- */

/* One provider round: deltas delivered one per loop turn, then the end. */
typedef struct round {
    const char *content[4];       /* words, in order (NULL-terminated) */
    const char *tool, *arguments; /* one tool call, or NULL */
    const char *finish;
    sb_error_t error; /* how the round ends */
    int hang;         /* never ends: for cancel and stop */
} round_t;

static const round_t *script;
static int rounds_started, calls_cancelled, calls_paused;
static char first_words[4][80]; /* the start of each round's first message, as the provider was asked */

struct fake_call {
    sb_llm_call_t super;
    sb_llm_sink_t *sink;
    uv_timer_t timer;
    const round_t *r;
    int step;
};

static void on_fake_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fake_free(struct fake_call *c)
{
    uv_timer_stop(&c->timer);
    c->timer.data = c;
    uv_close((uv_handle_t *)&c->timer, on_fake_closed);
}

static void on_fake_tick(uv_timer_t *timer)
{
    struct fake_call *c = timer->data;
    const round_t *r = c->r;
    sb_delta_t d;
    memset(&d, 0, offsetof(sb_delta_t, tools));
    d.model = (sb_str_t){"scripted-model", 14};
    int step = c->step++;
    if (r->content[step] != NULL) {
        d.content = (sb_str_t){r->content[step], strlen(r->content[step])};
        c->sink->on_delta(c->sink, &d);
        uv_timer_start(&c->timer, on_fake_tick, 0, 0);
        return;
    }
    if (r->hang)
        return;
    if (r->tool != NULL) {
        d.ntools = 1;
        d.tools[0] =
            (sb_tool_delta_t){0, {"call_1", 6}, {"function", 8}, {r->tool, strlen(r->tool)}, {r->arguments, strlen(r->arguments)}};
    }
    if (r->finish != NULL)
        d.finish_reason = (sb_str_t){r->finish, strlen(r->finish)};
    d.has_usage = 1;
    d.prompt_tokens = 10;
    d.completion_tokens = 5;
    if (r->error == SB_OK)
        c->sink->on_delta(c->sink, &d);
    sb_llm_sink_t *sink = c->sink;
    sb_llm_end_t e = {r->error, r->error ? "scripted failure" : NULL, NULL, 0};
    fake_free(c);
    sink->on_end(sink, &e);
}

static const sb_provider_t provider;

static sb_llm_call_t *fake_start(const sb_llm_env_t *env, const sb_chat_request_t *req, sb_llm_sink_t *sink)
{
    struct fake_call *c = calloc(1, sizeof(*c));
    c->super.provider = &provider;
    c->sink = sink;
    if (rounds_started < 4) {
        json_t *first = json_object_get(json_array_get(json_object_get(req->upstream, "messages"), 0), "content");
        snprintf(first_words[rounds_started], sizeof(first_words[0]), "%s", json_is_string(first) ? json_string_value(first) : "");
    }
    c->r = &script[rounds_started++];
    uv_timer_init(env->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_fake_tick, 0, 0);
    return &c->super;
}

static void fake_pause(sb_llm_call_t *call)
{
    ++calls_paused;
}

static void fake_resume(sb_llm_call_t *call)
{
}

static void fake_cancel(sb_llm_call_t *call)
{
    ++calls_cancelled;
    fake_free(H2O_STRUCT_FROM_MEMBER(struct fake_call, super, call));
}

static const sb_provider_t provider = {"scripted", fake_start, fake_pause, fake_resume, fake_cancel};

/* --- a recording sink ------------------------------------------------------------------------------ */

struct recorder {
    sb_sink_t super;
    sb_turn_t *turn;
    sb_buf_t log; /* one event a line */
    int done;
    sb_turn_phase_t phase_at_done;
    int live;
};

static void rec(struct recorder *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec(struct recorder *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sb_buf_appendf(&r->log, "%s\n", line);
}

static void on_model(sb_sink_t *s, sb_str_t model)
{
    rec((struct recorder *)s, "model %.*s", (int)model.len, model.base);
}

static sb_error_t on_delta(sb_sink_t *s, const sb_sink_delta_t *d)
{
    struct recorder *r = (struct recorder *)s;
    if (d->text.base != NULL && d->text.len > 0)
        rec(r, "text %.*s", (int)d->text.len, d->text.base);
    for (size_t i = 0; i < d->nfragments; ++i)
        rec(r, "fragment %.*s", (int)d->fragments[i]->name.len, d->fragments[i]->name.base);
    if (d->finish != NULL)
        rec(r, "finish %s", d->finish);
    return SB_OK;
}

static void on_tool_started(sb_sink_t *s, const sb_sink_tool_t *c)
{
    struct recorder *r = (struct recorder *)s;
    /* by name: the enum's numbers move when a phase is added */
    rec(r, "tool %.*s %.*s (%s)", (int)c->name.len, c->name.base, (int)c->arguments.len, c->arguments.base,
        r->turn == NULL                                   ? "no turn"
        : sb_turn_phase(r->turn) == SB_TURN_RUNNING_TOOLS ? "running tools"
                                                          : "another phase");
}

static void on_tool_finished(sb_sink_t *s, const sb_sink_tool_t *c)
{
    rec((struct recorder *)s, "result %.*s %s", (int)c->name.len, c->name.base, c->failed ? "failed" : "ok");
}

static void on_done(sb_sink_t *s, const sb_turn_end_t *end)
{
    struct recorder *r = (struct recorder *)s;
    rec(r, "done %s %s %s tokens %lld", end->error ? sb_error_code(end->error) : "ok", end->finish ? end->finish : "-", end->how,
        end->has_usage ? end->total_tokens : -1);
    r->done = 1;
    r->phase_at_done = sb_turn_phase(r->turn);
}

static const sb_sink_ops_t live_ops = {"recorder", 1, on_model, on_delta, on_tool_started, on_tool_finished, NULL, on_done, NULL};
static const sb_sink_ops_t json_ops = {"recorder", 0, on_model, on_delta, on_tool_started, on_tool_finished, NULL, on_done, NULL};

/* --- running turns --------------------------------------------------------------------------------- */

static sb_pgpool_t *pool;
static sb_curlm_t *curlm;
static const sb_llm_env_t llm_env = {&config, &loop, NULL, NULL}; /* the scripted provider needs no routes */

static int finished(struct recorder *r)
{
    return r->done;
}

/* Runs the loop until the recorder heard done or `ms` pass. */
static void run_until_done(struct recorder *r, unsigned ms)
{
    uint64_t deadline = uv_now(&loop) + ms;
    while (!finished(r) && uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
}

static void run_a_while(unsigned ms)
{
    uint64_t until = uv_now(&loop) + ms;
    while (uv_now(&loop) < until)
        uv_run(&loop, UV_RUN_NOWAIT), uv_update_time(&loop);
}

static sb_turn_t *start(struct recorder *r, const round_t *s, int live, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->super.ops = live ? &live_ops : &json_ops;
    sb_buf_init(&r->log, 1 << 20);
    script = s;
    rounds_started = calls_cancelled = 0;
    sb_chat_request_t creq;
    sb_request_error_t err;
    if (sb_chat_request_parse_body(body, strlen(body), "m", NULL, &creq, &err) != 0) {
        printf("Bail out! %s\n", err.message);
        exit(1);
    }
    sb_turn_env_t env = {&config, &loop, pool, curlm, &provider, &llm_env, NULL};
    r->turn = sb_turn_start(&env, &creq, &r->super, NULL);
    return r->turn;
}

static const char *ask = "{\"turn_id\":1,\"messages\":[{\"role\":\"user\",\"content\":\"where is order 4417?\"}]}";

static void test_tool_turn(void)
{
    static const round_t s[] = {
        {{"Let me look.", NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
        {{"It", " shipped.", NULL}, NULL, NULL, "stop", SB_OK, 0},
    };
    struct recorder r;
    sb_turn_t *t = start(&r, s, 1, ask);
    is_int(sb_turn_phase(t), SB_TURN_ASKING, "a turn without retrieval starts by asking the provider");
    ok(r.log.len == 0, "nothing is told from inside sb_turn_start");
    run_until_done(&r, 10000);
    is_str(r.log.base,
           "model scripted-model\n"
           "text Let me look.\n"
           "tool get_order_status {\"order_number\":\"4417\"} (running tools)\n"
           "result get_order_status ok\n"
           "text It\n"
           "text  shipped.\n"
           "finish stop\n"
           "done ok - done tokens 30\n",
           "a tool turn's events, in order: words, the tool's start and result, the next round's words, the end");
    is_int(r.phase_at_done, SB_TURN_DONE, "done is told in the done phase");
    is_int(rounds_started, 2, "two provider rounds: asking, running tools, asking again");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

static void test_json_turn(void)
{
    static const round_t s[] = {
        {{NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
        {{"Shipped.", NULL}, NULL, NULL, "stop", SB_OK, 0},
    };
    struct recorder r;
    sb_turn_t *t = start(&r, s, 0, ask);
    run_until_done(&r, 10000);
    ok(strstr(r.log.base, "One moment") == NULL, "no filler for a caller who hears nothing until the end");
    ok(strstr(r.log.base, "done ok stop done tokens 30") != NULL, "one answer at the end carries its finish reason");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

static void test_failure_and_filler(void)
{
    static const round_t s[] = {
        {{NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
        {{NULL}, NULL, NULL, NULL, SB_E_UPSTREAM_ERROR, 0},
    };
    struct recorder r;
    sb_turn_t *t = start(&r, s, 1, ask);
    run_until_done(&r, 10000);
    ok(strstr(r.log.base, "text One moment while I check that.\ntool get_order_status") != NULL,
       "a live caller hears the filler while the tool runs");
    ok(strstr(r.log.base, "done upstream_error - upstream_error") != NULL, "a failed round ends the turn with its error");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

static void test_round_limit(void)
{
    static const round_t s[] = {
        {{NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
        {{NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
        {{NULL}, "get_order_status", "{\"order_number\":\"4417\"}", "tool_calls", SB_OK, 0},
    };
    config.tool_max_rounds = 2;
    struct recorder r;
    sb_turn_t *t = start(&r, s, 1, ask);
    run_until_done(&r, 10000);
    config.tool_max_rounds = 4;
    is_int(rounds_started, 2, "the round limit stops asking");
    ok(strstr(r.log.base, "text  Sorry, I could not finish looking that up.") != NULL && strstr(r.log.base, "done ok stop done"),
       "and ends with an apology, not an error");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

static void test_cancel_and_stop(void)
{
    static const round_t hang[] = {{{"Hello", NULL}, NULL, NULL, NULL, SB_OK, 1}};
    struct recorder r;
    sb_turn_t *t = start(&r, hang, 1, ask);
    run_a_while(20);
    ok(strstr(r.log.base, "text Hello") != NULL && !r.done, "a round that hangs keeps the turn asking");
    size_t heard = r.log.len;
    sb_turn_release(t); /* the caller left */
    is_int(calls_cancelled, 1, "releasing a running turn cancels its provider call");
    run_a_while(20);
    is_int(r.log.len, heard, "and nothing is told after");
    sb_buf_dispose(&r.log);

    t = start(&r, hang, 1, ask);
    run_a_while(20);
    sb_turn_stop(t, SB_E_SHUTTING_DOWN, "server shutting down", "shutdown");
    ok(r.done && strstr(r.log.base, "done shutting_down - shutdown") != NULL, "stop ends the turn at once with its error");
    is_int(calls_cancelled, 1, "and cancels the provider call");
    is_int(sb_turn_phase(t), SB_TURN_DONE, "in the done phase");
    sb_turn_stop(t, SB_E_SHUTTING_DOWN, NULL, "shutdown");
    ok(strstr(strstr(r.log.base, "done") + 4, "done") == NULL, "a second stop tells nothing");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

static void test_client_calls(void)
{
    static const round_t s[] = {{{NULL}, "lookup_weather", "{\"city\":\"Paris\"}", "tool_calls", SB_OK, 0}};
    const char *with_tools = "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"tools\":[{\"type\":\"function\","
                             "\"function\":{\"name\":\"lookup_weather\",\"parameters\":{\"type\":\"object\"}}}]}";
    struct recorder r;
    sb_turn_t *t = start(&r, s, 1, with_tools);
    run_until_done(&r, 10000);
    ok(strstr(r.log.base, "fragment lookup_weather\nfinish tool_calls\ndone ok - done") != NULL,
       "a call of the client's tool is relayed to a live sink as it comes");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);
}

/* --- the LLM router --------------------------------------------------------------------------------- */

static const char *unsure_ask = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}";

static int answered; /* the last routed_turn ended with its answer */

/* Runs one turn whose first round may be the router's; returns its routing decision. */
static const sb_agent_decision_t *routed_turn(struct recorder *r, const round_t *s, const char *body)
{
    sb_turn_t *t = start(r, s, 1, body);
    run_until_done(r, 10000);
    static sb_agent_decision_t d;
    d = *sb_turn_agent(t);
    answered = strstr(r->log.base, "text Hello.\n") != NULL && strstr(r->log.base, "done ok") != NULL;
    sb_turn_release(t);
    sb_buf_dispose(&r->log);
    return &d;
}

static void test_router(void)
{
    config.agents = 1;
    config.agents_file = SB_SOURCE_ROOT "/tools/agents.json";
    config.router_model = "router-model";
    config.router_timeout_ms = 2000;
    char err[512];
    if (sb_agents_init(&config, err, sizeof(err)) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    const sb_agents_t *agents = sb_agents();
    static const round_t named[] = {{{"Billing", NULL}, NULL, NULL, "stop", SB_OK, 0},
                                    {{"Sure.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    struct recorder r;
    sb_turn_t *t = start(&r, named, 1, unsure_ask);
    is_int(sb_turn_phase(t), SB_TURN_ROUTING, "an utterance the classifier is unsure of starts by asking the router");
    run_until_done(&r, 10000);
    const sb_agent_decision_t *d = sb_turn_agent(t);
    ok(d->agent == &agents->v[2] && d->routed_by == SB_ROUTED_ROUTER && strcmp(d->router, "chosen") == 0,
       "the agent it names answers, routed by the router");
    ok(strncmp(first_words[0], "You choose which agent", 22) == 0 && strncmp(first_words[1], "You are the billing agent", 25) == 0,
       "the router was asked first, then the turn with the billing agent's instructions");
    ok(strstr(r.log.base, "text Sure.") != NULL && strstr(r.log.base, "Billing") == NULL,
       "the caller hears the turn, not the router");
    sb_turn_release(t);
    sb_buf_dispose(&r.log);

    static const round_t slow[] = {{{NULL}, NULL, NULL, NULL, SB_OK, 1}, {{"Hello.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    config.router_timeout_ms = 30;
    d = routed_turn(&r, slow, unsure_ask);
    config.router_timeout_ms = 2000;
    ok(d->routed_by == SB_ROUTED_DEFAULT && d->agent == &agents->v[agents->fallback] && strcmp(d->router, "timeout") == 0 &&
           d->router_ms >= 29, /* libuv timers count whole milliseconds of the loop's time */
       "a router past its budget: the classifier's choice stands (%.1f ms)", d->router_ms);
    ok(calls_cancelled == 1 && rounds_started == 2 && strstr(first_words[1], "support") != NULL,
       "its call is cancelled and the turn asks with the default agent");

    static const round_t garbage[] = {{{"I think", " billing", NULL}, NULL, NULL, "stop", SB_OK, 0},
                                      {{"Hello.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    d = routed_turn(&r, garbage, unsure_ask);
    ok(d->routed_by == SB_ROUTED_DEFAULT && strcmp(d->router, "unusable") == 0, "an answer that is not one name is not used");
    static const round_t failing[] = {{{NULL}, NULL, NULL, NULL, SB_E_UPSTREAM_ERROR, 0},
                                      {{"Hello.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    d = routed_turn(&r, failing, unsure_ask);
    ok(d->routed_by == SB_ROUTED_DEFAULT && strcmp(d->router, "error") == 0 && answered,
       "a failed router call is not the turn's failure");
    static const round_t chatty[] = {
        {{"billing billing billing billing billing billing billing billing billing billing", NULL}, NULL, NULL, NULL, SB_OK, 1},
        {{"Hello.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    d = routed_turn(&r, chatty, unsure_ask);
    ok(strcmp(d->router, "unusable") == 0 && calls_cancelled == 1 && d->router_ms < 1000,
       "an answer longer than any name ends the router's call there");

    static const round_t one[] = {{{"On its way.", NULL}, NULL, NULL, "stop", SB_OK, 0}};
    d = routed_turn(&r, one, "{\"messages\":[{\"role\":\"user\",\"content\":\"where is my package, it was due yesterday\"}]}");
    ok(d->routed_by == SB_ROUTED_CLASSIFIER && d->router == NULL && rounds_started == 1, "a sure classifier never asks the router");
    d = routed_turn(&r, one, "{\"agent\":\"billing\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}");
    ok(d->routed_by == SB_ROUTED_EXPLICIT && d->router == NULL && rounds_started == 1, "nor does an explicit choice");

    t = start(&r, slow, 1, unsure_ask);
    run_a_while(10);
    sb_turn_release(t); /* the caller hung up while the router thinks */
    is_int(calls_cancelled, 1, "a caller who leaves during routing cancels the router's call");
    is_int(r.log.len, 0, "and hears nothing");
    sb_buf_dispose(&r.log);

    sb_agents_dispose();
    config.agents = 0;
    config.router_model = NULL;
}

int main(void)
{
    pgtest_start();
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    char name[64];
    snprintf(name, sizeof(name), "sb_turn_test_%ld", (long)getpid());
    exec_admin("DROP DATABASE IF EXISTS %s", name);
    exec_admin("CREATE DATABASE %s", name);
    char *url = conninfo_for(name);

    config.database_url = url;
    config.tickets_table = "support_tickets";
    config.interactions_table = "support_interactions";
    config.pg_connect_timeout_ms = 5000;
    if (sb_migrate_run(&config, 1, NULL) != 0) {
        printf("Bail out! cannot migrate\n");
        return 1;
    }
    config.tools_enabled = "get_order_status";
    config.max_answer_bytes = 1 << 20;
    config.max_upstream_bytes = 1 << 20;
    config.tool_max_rounds = 4;
    config.tool_max_calls = 16;
    config.tool_filler_text = "One moment while I check that.";
    config.rag_backend = "none";
    char err[256];
    if (sb_tools_init(&config, err, sizeof(err)) != 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    uv_loop_init(&loop);
    curlm = sb_curlm_create(&loop, 0);
    sb_pgpool_config_t pc = {.conninfo = url,
                             .size = 2,
                             .statement_timeout_ms = 5000,
                             .connect_timeout_ms = 5000,
                             .queue_timeout_ms = 5000,
                             .max_queue = 100};
    pool = sb_pgpool_create(&loop, &pc);

    test_tool_turn();
    test_json_turn();
    test_failure_and_filler();
    test_round_limit();
    test_cancel_and_stop();
    test_client_calls();
    test_router();

    sb_pgpool_destroy(pool);
    sb_curlm_destroy(curlm);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(&loop), 0, "every handle was closed");
    exec_admin("DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQfinish(admin);
    free(url);
    curl_global_cleanup();
    return done_testing();
}
