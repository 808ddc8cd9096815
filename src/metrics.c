/*
 * Prometheus metrics: per-worker shards of labelled counters and histograms,
 * the turn observer that fills them, and the text a scrape reads.
 *
 * A shard is written by its worker's thread alone. Values are 64-bit words
 * written with relaxed atomic stores (a plain load, add and store: the one
 * writer needs no read-modify-write) and read by a scrape with relaxed loads,
 * so a reader never sees a torn word. A new label set is written in full
 * before the table's count is raised with a release store; a scrape loads the
 * count with acquire, so every label set it reads is whole.
 */
#include <h2o/memory.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "metrics.h"
#include "sb/alloc.h"
#include "sb/error.h"

/* --- the tables ----------------------------------------------------------------------------------- */

#define LABELS_MAX 192            /* rendered label pairs of one series */
#define VALUE_MAX 96              /* longest label value kept (a model name past it is cut) */
#define NBUCKETS 14               /* finite bucket bounds of every histogram; +Inf is one more */
#define HIST_WIDTH (NBUCKETS + 2) /* bucket counts (not cumulative) with +Inf, then the sum in microseconds */
#define MERGED_MAX 4096           /* series of one table in a scrape, over all shards */

/* Bucket bounds in seconds, each list NBUCKETS long. */
static const double first_token_le[NBUCKETS] = {0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5};
static const double duration_le[NBUCKETS] = {0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60};
static const double tool_round_le[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double retrieval_le[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3, 5, 10};

/* Where each value of a (provider, model) series sits. */
enum { M_FIRST_TOKEN = 0, M_DURATION = HIST_WIDTH, M_PROMPT_TOKENS = 2 * HIST_WIDTH, M_COMPLETION_TOKENS, M_WIDTH };
/* Where each value of a (backend, outcome) retrieval series sits. */
enum { R_SECONDS = 0, R_WIDTH = HIST_WIDTH };

enum table_id { T_REQUESTS, T_MODELS, T_PROVIDER_ERRORS, T_RETRIES, T_TOOLS, T_TOOL_ROUNDS, T_RETRIEVAL, T_COUNT };

/*
 * The label tables of a shard. width: 64-bit values per series; cap: series a
 * shard keeps (the last one is the "other" series once the rest are taken).
 */
static const struct table_spec {
    unsigned width, cap;
} specs[T_COUNT] = {
    [T_REQUESTS] = {1, 128},           /* route, status, end */
    [T_MODELS] = {M_WIDTH, 32},        /* provider, model */
    [T_PROVIDER_ERRORS] = {1, 64},     /* provider, kind */
    [T_RETRIES] = {1, 16},             /* provider */
    [T_TOOLS] = {1, 64},               /* tool, outcome */
    [T_TOOL_ROUNDS] = {HIST_WIDTH, 1}, /* no labels */
    [T_RETRIEVAL] = {R_WIDTH, 32},     /* backend, outcome */
};

enum gauge_id {
    G_OPEN_TURNS,
    G_PG_OPEN,
    G_PG_BUSY,
    G_PG_WAITING,
    G_PROVIDER_CONNECTIONS,
    G_PROVIDER_CONNECTS,
    G_EVENTS_DROPPED, /* counters that need no labels live here too: one writer per shard either way */
    G_TURNS_UNSAVED,
    G_COUNT
};

struct table {
    _Atomic unsigned n;         /* published series */
    char (*labels)[LABELS_MAX]; /* cap of them, each immutable once published */
    _Atomic uint64_t *v;        /* cap * width */
};

struct shard {
    struct table t[T_COUNT];
    _Atomic int64_t gauges[G_COUNT];
    /* the (provider, model) series the last turn found: most turns of a worker name the same model */
    struct {
        const char *provider;
        char model[VALUE_MAX];
        size_t len;
        int index;
    } last;
};

struct sb_metrics {
    unsigned nshards;
    struct shard **shards; /* each its own allocation, apart from the others' cache lines */
    uint64_t started;      /* unix seconds */
};

static _Thread_local struct shard *bound;

/* --- counting ------------------------------------------------------------------------------------- */

static inline void add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void gauge_add(int id, int64_t n)
{
    if (bound != NULL)
        atomic_store_explicit(&bound->gauges[id], atomic_load_explicit(&bound->gauges[id], memory_order_relaxed) + n,
                              memory_order_relaxed);
}

/*
 * Appends `key="value"` to labels (after a comma unless first): the value's
 * first VALUE_MAX bytes, escaped for the text format, cut to fit. No printf:
 * a turn formats a few of these, and they are its metrics' main cost.
 */
static void label_n(char *labels, size_t cap, const char *key, const char *value, size_t len)
{
    size_t at = strlen(labels), klen = strlen(key);
    if (at + klen + 4 >= cap)
        return;
    if (at > 0)
        labels[at++] = ',';
    memcpy(labels + at, key, klen);
    at += klen;
    labels[at++] = '=';
    labels[at++] = '"';
    for (size_t i = 0; i < len && i < VALUE_MAX && at + 3 < cap; ++i) {
        unsigned char c = (unsigned char)value[i];
        if (c == '\\' || c == '"') {
            labels[at++] = '\\';
            labels[at++] = (char)c;
        } else {
            labels[at++] = c >= 0x20 && c < 0x7f ? (char)c : '_'; /* control bytes and non-ASCII: a label stays one line */
        }
    }
    labels[at++] = '"';
    labels[at] = '\0';
}

static void label(char *labels, size_t cap, const char *key, const char *value)
{
    label_n(labels, cap, key, value, strlen(value));
}

/*
 * The series of table `id` with these labels in the bound shard, added when
 * new; `other` labels the last series once the table is full. Returns the
 * series' values, NULL when no thread is bound. Linear: a shard's tables are
 * small, and the turn observer looks its model series up once.
 */
static _Atomic uint64_t *series(enum table_id id, const char *labels, const char *other, int *index)
{
    if (bound == NULL)
        return NULL;
    struct table *t = &bound->t[id];
    const struct table_spec *s = &specs[id];
    unsigned n = atomic_load_explicit(&t->n, memory_order_relaxed);
    unsigned i = 0;
    while (i < n && strcmp(t->labels[i], labels) != 0)
        ++i;
    if (i == n) {
        if (n == s->cap) {
            i = s->cap - 1; /* the other series */
        } else {
            const char *text = n + 1 == s->cap ? other : labels;
            size_t len = strnlen(text, LABELS_MAX - 1);
            memcpy(t->labels[i], text, len);
            t->labels[i][len] = '\0';
            atomic_store_explicit(&t->n, n + 1, memory_order_release);
        }
    }
    if (index != NULL)
        *index = (int)i;
    return t->v + (size_t)i * s->width;
}

static void observe(_Atomic uint64_t *hist, const double *le, uint64_t ns)
{
    double seconds = (double)ns / 1e9;
    unsigned b = 0;
    while (b < NBUCKETS && seconds > le[b])
        ++b;
    add(&hist[b], 1);
    add(&hist[NBUCKETS + 1], ns / 1000);
}

void sb_metrics_request(const char *route, int status, const char *end)
{
    char labels[LABELS_MAX] = "", code[4] = "0";
    if (status >= 100 && status <= 999) /* HTTP statuses are three digits */
        code[0] = (char)('0' + status / 100), code[1] = (char)('0' + status / 10 % 10), code[2] = (char)('0' + status % 10),
        code[3] = '\0';
    label(labels, sizeof(labels), "route", route);
    label(labels, sizeof(labels), "status", code);
    label(labels, sizeof(labels), "end", end);
    _Atomic uint64_t *v = series(T_REQUESTS, labels, "route=\"other\",status=\"other\",end=\"other\"", NULL);
    if (v != NULL)
        add(v, 1);
}

void sb_metrics_provider_retry(const char *provider)
{
    char labels[LABELS_MAX] = "";
    label(labels, sizeof(labels), "provider", provider);
    _Atomic uint64_t *v = series(T_RETRIES, labels, "provider=\"other\"", NULL);
    if (v != NULL)
        add(v, 1);
}

void sb_metrics_provider_connection(int delta)
{
    gauge_add(G_PROVIDER_CONNECTIONS, delta);
    if (delta > 0)
        gauge_add(G_PROVIDER_CONNECTS, delta);
}

void sb_metrics_pool(unsigned open, unsigned busy, unsigned waiting)
{
    if (bound == NULL)
        return;
    atomic_store_explicit(&bound->gauges[G_PG_OPEN], open, memory_order_relaxed);
    atomic_store_explicit(&bound->gauges[G_PG_BUSY], busy, memory_order_relaxed);
    atomic_store_explicit(&bound->gauges[G_PG_WAITING], waiting, memory_order_relaxed);
}

void sb_metrics_events_dropped(unsigned turns, unsigned events)
{
    gauge_add(G_TURNS_UNSAVED, turns);
    gauge_add(G_EVENTS_DROPPED, events);
}

/* --- the turn observer ------------------------------------------------------------------------------ */

static _Atomic uint64_t *model_series(sb_metrics_turn_t *m)
{
    if (bound == NULL || m->series < 0)
        return NULL;
    return bound->t[T_MODELS].v + (size_t)m->series * M_WIDTH;
}

static void on_model(sb_sink_t *sink, sb_str_t model)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    if (bound == NULL)
        return;
    size_t len = model.len < VALUE_MAX ? model.len : VALUE_MAX;
    if (bound->last.provider == m->provider && bound->last.len == len && memcmp(bound->last.model, model.base, len) == 0) {
        m->series = bound->last.index;
        return;
    }
    char labels[LABELS_MAX] = "", other[LABELS_MAX] = "";
    label(labels, sizeof(labels), "provider", m->provider);
    label_n(labels, sizeof(labels), "model", model.base, len);
    label(other, sizeof(other), "provider", m->provider);
    label(other, sizeof(other), "model", "other");
    series(T_MODELS, labels, other, &m->series);
    bound->last.provider = m->provider;
    bound->last.len = len;
    memcpy(bound->last.model, model.base, len);
    bound->last.index = m->series;
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    if (m->t_first != 0 || (d->text.len == 0 && d->nfragments == 0))
        return SB_OK;
    m->t_first = uv_hrtime();
    _Atomic uint64_t *v = model_series(m);
    if (v != NULL)
        observe(v + M_FIRST_TOKEN, first_token_le, m->t_first - m->t_start);
    return SB_OK;
}

static void on_tool_started(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    (void)call;
    if (m->tools_running++ == 0)
        m->t_round = uv_hrtime();
}

static void on_tool_finished(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    char labels[LABELS_MAX] = "";
    label_n(labels, sizeof(labels), "tool", call->name.base, call->name.len);
    label(labels, sizeof(labels), "outcome", call->failed ? "error" : "ok");
    _Atomic uint64_t *v = series(T_TOOLS, labels, "tool=\"other\",outcome=\"other\"", NULL);
    if (v != NULL)
        add(v, 1);
    /* a round's tools run side by side: its time is from the first start to the last finish */
    if (m->tools_running > 0 && --m->tools_running == 0 && (v = series(T_TOOL_ROUNDS, "", "", NULL)) != NULL)
        observe(v, tool_round_le, uv_hrtime() - m->t_round);
}

static void on_retrieval(sb_sink_t *sink, const char *outcome, const sb_passage_t *passages, size_t n)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    char labels[LABELS_MAX] = "";
    label(labels, sizeof(labels), "backend", m->backend);
    label(labels, sizeof(labels), "outcome", outcome);
    _Atomic uint64_t *v = series(T_RETRIEVAL, labels, "backend=\"other\",outcome=\"other\"", NULL);
    if (v != NULL) /* retrieval is the turn's first step: its time is the turn's so far */
        observe(v + R_SECONDS, retrieval_le, uv_hrtime() - m->t_start);
}

/* Whether an error that ended a turn is the provider's doing (and so counted as a provider error). */
static int provider_error(sb_error_t e)
{
    return e >= SB_E_UPSTREAM_AUTH && e <= SB_E_TOO_MANY_TOOL_CALLS;
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    sb_metrics_turn_t *m = H2O_STRUCT_FROM_MEMBER(sb_metrics_turn_t, super, sink);
    _Atomic uint64_t *v = model_series(m);
    if (v != NULL && end->has_usage) {
        add(&v[M_PROMPT_TOKENS], end->prompt_tokens > 0 ? (uint64_t)end->prompt_tokens : 0);
        add(&v[M_COMPLETION_TOKENS], end->completion_tokens > 0 ? (uint64_t)end->completion_tokens : 0);
    }
    if (provider_error(end->error)) {
        char labels[LABELS_MAX] = "";
        label(labels, sizeof(labels), "provider", m->provider);
        label(labels, sizeof(labels), "kind", sb_error_name(end->error));
        if ((v = series(T_PROVIDER_ERRORS, labels, "provider=\"other\",kind=\"other\"", NULL)) != NULL)
            add(v, 1);
    }
    sb_metrics_turn_finish(m);
}

static const sb_sink_ops_t turn_ops = {
    .name = "metrics",
    .live = 0,                         /* an observer writes nothing */
    .model = on_model,                 /* finds the (provider, model) series */
    .delta = on_delta,                 /* the first words: time to first token */
    .tool_started = on_tool_started,   /* a round's start */
    .tool_finished = on_tool_finished, /* tool calls by outcome, a round's end */
    .retrieval = on_retrieval,         /* retrieval by outcome, and its time */
    .done = on_done,                   /* tokens, provider errors, duration */
};

void sb_metrics_turn_start(sb_metrics_turn_t *m, const char *provider, const char *backend)
{
    memset(m, 0, sizeof(*m));
    m->super.ops = &turn_ops;
    m->provider = provider;
    m->backend = backend != NULL ? backend : "none";
    m->series = -1;
    m->t_start = uv_hrtime();
    m->started = 1;
    gauge_add(G_OPEN_TURNS, 1);
}

void sb_metrics_turn_finish(sb_metrics_turn_t *m)
{
    if (!m->started || m->finished)
        return;
    m->finished = 1;
    gauge_add(G_OPEN_TURNS, -1);
    _Atomic uint64_t *v = model_series(m);
    if (v != NULL)
        observe(v + M_DURATION, duration_le, uv_hrtime() - m->t_start);
}

/* --- the process's shards ------------------------------------------------------------------------- */

sb_metrics_t *sb_metrics_create(unsigned nshards)
{
    sb_metrics_t *m = sb_calloc(1, sizeof(*m));
    m->nshards = nshards;
    m->shards = sb_calloc(nshards, sizeof(*m->shards));
    for (unsigned i = 0; i < nshards; ++i) {
        struct shard *s = m->shards[i] = sb_calloc(1, sizeof(*s));
        for (unsigned t = 0; t < T_COUNT; ++t) {
            s->t[t].labels = sb_calloc(specs[t].cap, LABELS_MAX);
            s->t[t].v = sb_calloc((size_t)specs[t].cap * specs[t].width, sizeof(uint64_t));
        }
    }
    m->started = (uint64_t)time(NULL);
    return m;
}

void sb_metrics_destroy(sb_metrics_t *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < m->nshards; ++i) {
        for (unsigned t = 0; t < T_COUNT; ++t) {
            free(m->shards[i]->t[t].labels);
            free((void *)m->shards[i]->t[t].v);
        }
        free(m->shards[i]);
    }
    free(m->shards);
    free(m);
}

void sb_metrics_bind(sb_metrics_t *m, unsigned shard)
{
    bound = m != NULL && shard < m->nshards ? m->shards[shard] : NULL;
}

/* --- the scrape ------------------------------------------------------------------------------------- */

/* One table summed over every shard: its distinct label sets, each with its values added up. */
struct merged {
    unsigned n, width;
    const char **labels;
    uint64_t *v;
};

static void merge(const sb_metrics_t *m, enum table_id id, struct merged *out)
{
    unsigned width = specs[id].width, total = 0;
    for (unsigned s = 0; s < m->nshards; ++s)
        total += atomic_load_explicit(&m->shards[s]->t[id].n, memory_order_acquire);
    if (total > MERGED_MAX)
        total = MERGED_MAX;
    *out =
        (struct merged){0, width, sb_calloc(total + 1, sizeof(char *)), sb_calloc((size_t)(total + 1) * width, sizeof(uint64_t))};
    for (unsigned s = 0; s < m->nshards; ++s) {
        const struct table *t = &m->shards[s]->t[id];
        unsigned n = atomic_load_explicit(&t->n, memory_order_acquire);
        for (unsigned i = 0; i < n; ++i) {
            unsigned j = 0;
            while (j < out->n && strcmp(out->labels[j], t->labels[i]) != 0)
                ++j;
            if (j == out->n) {
                if (out->n == total)
                    break; /* past MERGED_MAX: not shown */
                out->labels[out->n++] = t->labels[i];
            }
            for (unsigned k = 0; k < width; ++k)
                out->v[(size_t)j * width + k] += atomic_load_explicit(&t->v[(size_t)i * width + k], memory_order_relaxed);
        }
    }
}

static void merged_dispose(struct merged *mg)
{
    free(mg->labels);
    free(mg->v);
}

static int head(sb_buf_t *out, const char *name, const char *type, const char *help)
{
    return sb_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One series of a histogram: `hist` is HIST_WIDTH values (bucket counts, then the sum in microseconds). */
static int histogram(sb_buf_t *out, const char *name, const char *labels, const double *le, const uint64_t *hist)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    int rc = 0;
    for (unsigned b = 0; b < NBUCKETS; ++b) {
        cumulative += hist[b];
        rc |= sb_buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, le[b], (unsigned long long)cumulative);
    }
    cumulative += hist[NBUCKETS];
    rc |= sb_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cumulative);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    rc |= sb_buf_appendf(out, "%s_sum%s%s%s %.6f\n", name, open, labels, close, (double)hist[NBUCKETS + 1] / 1e6);
    rc |= sb_buf_appendf(out, "%s_count%s%s%s %llu\n", name, open, labels, close, (unsigned long long)cumulative);
    return rc;
}

/* A counter of a table whose series are one value each. */
static int counter(sb_buf_t *out, const sb_metrics_t *m, enum table_id id, const char *name, const char *help)
{
    struct merged mg;
    merge(m, id, &mg);
    int rc = head(out, name, "counter", help);
    for (unsigned i = 0; i < mg.n; ++i)
        rc |= sb_buf_appendf(out, "%s{%s} %llu\n", name, mg.labels[i], (unsigned long long)mg.v[i]);
    merged_dispose(&mg);
    return rc;
}

static int64_t gauge(const sb_metrics_t *m, enum gauge_id id)
{
    int64_t sum = 0;
    for (unsigned s = 0; s < m->nshards; ++s)
        sum += atomic_load_explicit(&m->shards[s]->gauges[id], memory_order_relaxed);
    return sum;
}

static int model_families(sb_buf_t *out, const sb_metrics_t *m)
{
    struct merged mg;
    merge(m, T_MODELS, &mg);
    int rc = head(out, "switchboard_first_token_seconds", "histogram",
                  "Time from a turn's request to the first words sent toward the caller (a filler phrase counts).");
    for (unsigned i = 0; i < mg.n; ++i)
        rc |= histogram(out, "switchboard_first_token_seconds", mg.labels[i], first_token_le,
                        mg.v + (size_t)i * M_WIDTH + M_FIRST_TOKEN);
    rc |= head(out, "switchboard_turn_duration_seconds", "histogram", "Time from a turn's request to its end.");
    for (unsigned i = 0; i < mg.n; ++i)
        rc |=
            histogram(out, "switchboard_turn_duration_seconds", mg.labels[i], duration_le, mg.v + (size_t)i * M_WIDTH + M_DURATION);
    rc |=
        head(out, "switchboard_tokens_total", "counter", "Tokens the provider reported, by direction (prompt in, completion out).");
    for (unsigned i = 0; i < mg.n; ++i) {
        const uint64_t *v = mg.v + (size_t)i * M_WIDTH;
        rc |= sb_buf_appendf(out, "switchboard_tokens_total{%s,direction=\"prompt\"} %llu\n", mg.labels[i],
                             (unsigned long long)v[M_PROMPT_TOKENS]);
        rc |= sb_buf_appendf(out, "switchboard_tokens_total{%s,direction=\"completion\"} %llu\n", mg.labels[i],
                             (unsigned long long)v[M_COMPLETION_TOKENS]);
    }
    merged_dispose(&mg);
    return rc;
}

static int tool_families(sb_buf_t *out, const sb_metrics_t *m)
{
    int rc = counter(out, m, T_TOOLS, "switchboard_tool_calls_total", "Calls of switchboard's own tools, by tool and outcome.");
    struct merged mg;
    merge(m, T_TOOL_ROUNDS, &mg);
    rc |= head(out, "switchboard_tool_round_seconds", "histogram", "Time of a round of tool calls, first start to last finish.");
    uint64_t zero[HIST_WIDTH] = {0};
    rc |= histogram(out, "switchboard_tool_round_seconds", "", tool_round_le, mg.n ? mg.v : zero);
    merged_dispose(&mg);
    return rc;
}

static int retrieval_families(sb_buf_t *out, const sb_metrics_t *m)
{
    struct merged mg;
    merge(m, T_RETRIEVAL, &mg);
    int rc = head(out, "switchboard_retrieval_total", "counter",
                  "Knowledge retrievals, by backend and outcome (hit, miss, timeout, error).");
    for (unsigned i = 0; i < mg.n; ++i) {
        uint64_t count = 0;
        for (unsigned b = 0; b <= NBUCKETS; ++b)
            count += mg.v[(size_t)i * R_WIDTH + R_SECONDS + b];
        rc |= sb_buf_appendf(out, "switchboard_retrieval_total{%s} %llu\n", mg.labels[i], (unsigned long long)count);
    }
    rc |=
        head(out, "switchboard_retrieval_seconds", "histogram", "Time a turn spent retrieving knowledge, by backend and outcome.");
    for (unsigned i = 0; i < mg.n; ++i)
        rc |= histogram(out, "switchboard_retrieval_seconds", mg.labels[i], retrieval_le, mg.v + (size_t)i * R_WIDTH + R_SECONDS);
    merged_dispose(&mg);
    return rc;
}

int sb_metrics_render(sb_metrics_t *m, sb_buf_t *out)
{
    int rc = head(out, "switchboard_build_info", "gauge", "switchboard's version; always 1.");
    rc |= sb_buf_appendf(out, "switchboard_build_info{version=\"%s\"} 1\n", SB_VERSION);
    rc |= head(out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
    rc |= sb_buf_appendf(out, "process_start_time_seconds %llu\n", (unsigned long long)m->started);
    rc |= head(out, "switchboard_workers", "gauge", "Worker threads serving turns.");
    rc |= sb_buf_appendf(out, "switchboard_workers %u\n", m->nshards);
    rc |= counter(out, m, T_REQUESTS, "switchboard_turns_total",
                  "Requests to a turn's route, by route, HTTP status (499: the caller left first) and how they ended.");
    rc |= head(out, "switchboard_open_turns", "gauge", "Turns running now.");
    rc |= sb_buf_appendf(out, "switchboard_open_turns %lld\n", (long long)gauge(m, G_OPEN_TURNS));
    rc |= model_families(out, m);
    rc |= counter(out, m, T_PROVIDER_ERRORS, "switchboard_provider_errors_total", "Turns the provider failed, by kind of failure.");
    rc |= counter(out, m, T_RETRIES, "switchboard_provider_retries_total", "Provider calls tried again after a failed attempt.");
    rc |= head(out, "switchboard_provider_connections", "gauge", "Connections to the provider open now.");
    rc |= sb_buf_appendf(out, "switchboard_provider_connections %lld\n", (long long)gauge(m, G_PROVIDER_CONNECTIONS));
    rc |= head(out, "switchboard_provider_connections_opened_total", "counter", "Connections opened to the provider.");
    rc |= sb_buf_appendf(out, "switchboard_provider_connections_opened_total %lld\n", (long long)gauge(m, G_PROVIDER_CONNECTS));
    rc |= tool_families(out, m);
    rc |= retrieval_families(out, m);
    rc |= head(out, "switchboard_pg_pool_connections", "gauge", "Postgres connections, open and leased (busy), over all workers.");
    rc |= sb_buf_appendf(out, "switchboard_pg_pool_connections{state=\"open\"} %lld\n", (long long)gauge(m, G_PG_OPEN));
    rc |= sb_buf_appendf(out, "switchboard_pg_pool_connections{state=\"busy\"} %lld\n", (long long)gauge(m, G_PG_BUSY));
    rc |= head(out, "switchboard_pg_pool_waiting", "gauge", "Requests waiting for a Postgres connection.");
    rc |= sb_buf_appendf(out, "switchboard_pg_pool_waiting %lld\n", (long long)gauge(m, G_PG_WAITING));
    rc |= head(out, "switchboard_events_dropped_total", "counter",
               "Events of the event log dropped (queue full, database away) instead of delaying a turn.");
    rc |= sb_buf_appendf(out, "switchboard_events_dropped_total %lld\n", (long long)gauge(m, G_EVENTS_DROPPED));
    rc |= head(out, "switchboard_turns_unsaved_total", "counter",
               "Turns whose record (memory and events) was dropped instead of written.");
    rc |= sb_buf_appendf(out, "switchboard_turns_unsaved_total %lld\n", (long long)gauge(m, G_TURNS_UNSAVED));
    return rc ? -1 : 0;
}
