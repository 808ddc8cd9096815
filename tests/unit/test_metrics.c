/* Unit tests for src/metrics.c: shards summed, label escaping, bounded series, the turn observer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "metrics.h"
#include "tap.h"

/* The rendered text of `m`. Freed by the caller. */
static char *render(sb_metrics_t *m)
{
    sb_buf_t b;
    sb_buf_init(&b, 16u << 20);
    ok(sb_metrics_render(m, &b) == 0, "render fits");
    sb_buf_append(&b, "", 1);
    return b.base;
}

/* The value of the sample line that starts with `prefix` (name and labels), or -1. */
static long long sample(const char *text, const char *prefix)
{
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0 && p[strlen(prefix)] == ' ')
            return strtoll(p + strlen(prefix) + 1, NULL, 10);
    return -1;
}

static size_t count_lines(const char *text, const char *prefix)
{
    size_t n = 0;
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

struct counting {
    sb_metrics_t *m;
    unsigned shard, n;
};

static void *count_on_shard(void *arg)
{
    struct counting *c = arg;
    sb_metrics_bind(c->m, c->shard);
    for (unsigned i = 0; i < c->n; ++i)
        sb_metrics_request("/v1/chat/completions", 200, "done");
    return NULL;
}

int main(void)
{
    sb_metrics_t *m = sb_metrics_create(2);

    sb_metrics_request("/v1/chat/completions", 200, "done");
    char *text = render(m);
    is_int(count_lines(text, "switchboard_turns_total{"), 0, "a thread never bound counts nothing");
    free(text);

    /* two workers count at once while a third thread scrapes; the scrape sums them */
    struct counting a = {m, 0, 30000}, b = {m, 1, 40000};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, count_on_shard, &a);
    pthread_create(&tb, NULL, count_on_shard, &b);
    for (int i = 0; i < 20; ++i)
        free(render(m));
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    text = render(m);
    is_int(sample(text, "switchboard_turns_total{route=\"/v1/chat/completions\",status=\"200\",end=\"done\"}"), 70000,
           "the shards of two workers are summed");
    free(text);

    sb_metrics_bind(m, 0);
    sb_metrics_request("/a\"b\\c\nd\xc3\xa9", 404, "rejected");
    text = render(m);
    is_int(sample(text, "switchboard_turns_total{route=\"/a\\\"b\\\\c_d__\",status=\"404\",end=\"rejected\"}"), 1,
           "quotes and backslashes escaped, a newline and non-ASCII bytes replaced: one line per sample");
    free(text);

    for (int i = 0; i < 300; ++i) {
        char route[32];
        snprintf(route, sizeof(route), "/route/%d", i);
        sb_metrics_request(route, 200, "done");
    }
    text = render(m);
    ok(count_lines(text, "switchboard_turns_total{") <= 128 + 1, "at most 128 series per worker (and worker 1's one)");
    ok(sample(text, "switchboard_turns_total{route=\"other\",status=\"other\",end=\"other\"}") > 100,
       "label sets past the table count as other");
    free(text);

    /* the turn observer: open while it runs, first token, duration, tokens; finished once */
    sb_metrics_turn_t t;
    sb_metrics_turn_start(&t, "openai", "postgres");
    text = render(m);
    is_int(sample(text, "switchboard_open_turns"), 1, "a started turn is open");
    free(text);
    t.super.ops->model(&t.super, (sb_str_t){"gpt-4o-mini", 11});
    t.super.ops->retrieval(&t.super, "hit", NULL, 2);
    sb_sink_delta_t empty = {0}, words = {.text = {"Hello", 5}};
    t.super.ops->delta(&t.super, &empty);
    t.super.ops->delta(&t.super, &words);
    t.super.ops->delta(&t.super, &words);
    sb_sink_tool_t call = {.name = {"get_order_status", 16}, .failed = 1};
    t.super.ops->tool_started(&t.super, &call);
    t.super.ops->tool_finished(&t.super, &call);
    sb_turn_end_t end = {.error = SB_E_UPSTREAM_TIMEOUT, .has_usage = 1, .prompt_tokens = 12, .completion_tokens = 5};
    t.super.ops->done(&t.super, &end);
    sb_metrics_turn_finish(&t);
    text = render(m);
    const char *series = "{provider=\"openai\",model=\"gpt-4o-mini\"}";
    char name[256];
    snprintf(name, sizeof(name), "switchboard_first_token_seconds_count%s", series);
    is_int(sample(text, name), 1, "one first token per turn, not per delta (an empty delta is not words)");
    snprintf(name, sizeof(name), "switchboard_turn_duration_seconds_count%s", series);
    is_int(sample(text, name), 1, "done and a later finish count the turn once");
    snprintf(name, sizeof(name), "switchboard_turn_duration_seconds_bucket{provider=\"openai\",model=\"gpt-4o-mini\",le=\"+Inf\"}");
    is_int(sample(text, name), 1, "the +Inf bucket holds every observation");
    is_int(sample(text, "switchboard_tokens_total{provider=\"openai\",model=\"gpt-4o-mini\",direction=\"prompt\"}"), 12,
           "prompt tokens");
    is_int(sample(text, "switchboard_provider_errors_total{provider=\"openai\",kind=\"upstream_timeout\"}"), 1,
           "the provider error's kind");
    is_int(sample(text, "switchboard_tool_calls_total{tool=\"get_order_status\",outcome=\"error\"}"), 1, "a failed tool call");
    is_int(sample(text, "switchboard_tool_round_seconds_count"), 1, "one round");
    is_int(sample(text, "switchboard_retrieval_total{backend=\"postgres\",outcome=\"hit\"}"), 1, "a retrieval hit");
    is_int(sample(text, "switchboard_open_turns"), 0, "no turn open");
    free(text);

    sb_metrics_bind(NULL, 0);
    sb_metrics_destroy(m);
    return done_testing();
}
