/*
 * Post-call summaries (summary.h): one job per closed conversation reads its
 * last messages, asks the routed provider for a few sentences through a turn
 * with no tools, gathers the answer in a small sink of its own, and writes it
 * over the extract.
 *
 *     reading ──▶ asking ──▶ (hop) ──▶ writing ──▶ gone
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <jansson.h>

#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "summary.h"

/* Summary turns at once on one worker: a batch of idle closes must not become a burst of provider calls. */
#define SUMMARIES_AT_ONCE 4
/* What the model reads: the last MESSAGES_READ messages with words, each cut to LINE_MAX characters, at most TRANSCRIPT_MAX bytes.
 */
#define MESSAGES_READ 24
#define MESSAGES_READ_TEXT "24"
#define LINE_MAX_TEXT "600"
#define TRANSCRIPT_MAX 6000
/* The summary kept: a few sentences; an answer longer than this ends the turn as an error and the extract stays. */
#define SUMMARY_MAX 2000
#define SUMMARY_MAX_TOKENS 300

static const char prompt[] =
    "You write the record of a finished customer support conversation. In 2 to 4 plain sentences, say what the caller "
    "wanted, what was done (tickets opened, orders looked up, changes made, with their numbers), and what is still open. "
    "No lists, no headings, no greeting; write only the summary.";

/* The conversation's last messages with words (tool results are not words), oldest first. */
static const char read_sql[] = "SELECT coalesce(json_agg(json_build_array(x.role, x.content) ORDER BY x.seq), '[]') FROM "
                               "(SELECT seq, role, left(content, " LINE_MAX_TEXT ") AS content FROM messages "
                               "WHERE conversation = $1::bigint AND role <> 'tool' AND content IS NOT NULL AND content <> '' "
                               "ORDER BY seq DESC LIMIT " MESSAGES_READ_TEXT ") x";

static const char write_sql[] = "UPDATE conversations SET summary = $2 WHERE id = $1::bigint";

struct sb_summaries {
    sb_turn_env_t env;
    h2o_linklist_t jobs;
    unsigned active;
};

/* One summary. It is its own sink (super), so the turn's events land here. */
struct job {
    sb_sink_t super;
    sb_summaries_t *s;
    h2o_linklist_t link;
    char conversation[24];
    sb_pgquery_t *query; /* reading the messages, or writing the summary */
    sb_turn_t *turn;
    uv_timer_t hop; /* leaves the turn's done event before the turn is released */
    sb_buf_t text;
    int answered; /* the turn ended with a complete answer */
};

/* --- the job's end ----------------------------------------------------------------------------- */

static void on_hop_closed(uv_handle_t *h)
{
    struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, hop, (uv_timer_t *)h);
    sb_buf_dispose(&j->text);
    free(j);
}

/* Forgets whatever the job has running and frees it (once its timer is closed). */
static void job_end(struct job *j)
{
    if (j->query != NULL)
        sb_pgquery_cancel(j->query);
    j->query = NULL;
    if (j->turn != NULL)
        sb_turn_release(j->turn); /* not done: it stops silently */
    j->turn = NULL;
    h2o_linklist_unlink(&j->link);
    --j->s->active;
    uv_timer_stop(&j->hop);
    uv_close((uv_handle_t *)&j->hop, on_hop_closed);
}

/* --- the sink ---------------------------------------------------------------------------------- */

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, super, sink);
    if (d->text.base == NULL || d->text.len == 0)
        return SB_OK;
    return sb_buf_append(&j->text, d->text.base, d->text.len) == 0 ? SB_OK : SB_E_ANSWER_TOO_LARGE;
}

static void on_hop(uv_timer_t *timer);

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, super, sink);
    if (end->error != SB_OK)
        sb_log_warn("summary: conversation %s keeps its extract: %s (%s)", j->conversation, sb_error_name(end->error),
                    end->message != NULL ? end->message
                    : end->how != NULL   ? end->how
                                         : "error");
    j->answered = end->error == SB_OK;
    /* the turn is still inside its finish(): it is released from the loop */
    uv_timer_start(&j->hop, on_hop, 0, 0);
}

static const sb_sink_ops_t ops = {
    .name = "summary",
    .live = 0, /* one answer at the end */
    .model = NULL,
    .delta = on_delta,
    .tool_started = NULL,  /* no tool runs in a summary turn */
    .tool_finished = NULL, /* no tool runs in a summary turn */
    .retrieval = NULL,     /* nor retrieval */
    .done = on_done,
    .agent = NULL, /* nor an agent */
};

/* --- writing ----------------------------------------------------------------------------------- */

static void on_written(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct job *j = data;
    (void)res;
    j->query = NULL;
    if (err != SB_OK)
        sb_log_warn("summary: conversation %s keeps its extract: not written: %s (SQLSTATE %s)", j->conversation,
                    sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
    job_end(j);
}

static void on_hop(uv_timer_t *timer)
{
    struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, hop, timer);
    sb_turn_release(j->turn);
    j->turn = NULL;
    size_t a = 0, b = j->text.len; /* the model's words without the blank around them */
    while (a < b && (j->text.base[a] == ' ' || j->text.base[a] == '\n' || j->text.base[a] == '\t' || j->text.base[a] == '\r'))
        ++a;
    while (b > a && (j->text.base[b - 1] == ' ' || j->text.base[b - 1] == '\n' || j->text.base[b - 1] == '\t' ||
                     j->text.base[b - 1] == '\r'))
        --b;
    if (!j->answered || a == b) {
        if (j->answered)
            sb_log_warn("summary: conversation %s keeps its extract: the model said nothing", j->conversation);
        job_end(j);
        return;
    }
    if (sb_buf_append(&j->text, "", 1) != 0) { /* no room for the terminator: cut the last byte's place */
        j->text.base[j->text.len - 1] = '\0';
        if (b > j->text.len - 1)
            b = j->text.len - 1;
    }
    j->text.base[b] = '\0';
    const char *values[] = {j->conversation, j->text.base + a};
    j->query = sb_pgpool_query(j->s->env.pg, write_sql, 2, values, on_written, j);
}

/* --- asking ------------------------------------------------------------------------------------ */

/* The request: the prompt, and the transcript (its newest part, TRANSCRIPT_MAX bytes at most) as one user message. */
static json_t *summary_request(const sb_config_t *c, json_t *rows)
{
    size_t n = json_array_size(rows), from = n, total = 0;
    while (from > 0) { /* the newest lines that fit */
        json_t *row = json_array_get(rows, from - 1);
        size_t len = json_string_length(json_array_get(row, 1)) + 12;
        if (total + len > TRANSCRIPT_MAX)
            break;
        total += len;
        --from;
    }
    if (from == n)
        return NULL;
    sb_buf_t t;
    sb_buf_init(&t, TRANSCRIPT_MAX + 128);
    sb_buf_appendz(&t, "The conversation, oldest first:");
    for (size_t i = from; i < n; ++i) {
        json_t *row = json_array_get(rows, i);
        const char *role = json_string_value(json_array_get(row, 0));
        json_t *content = json_array_get(row, 1);
        sb_buf_appendz(&t, role != NULL && strcmp(role, "user") == 0 ? "\nCaller: " : "\nAssistant: ");
        sb_buf_append(&t, json_string_value(content), json_string_length(content));
    }
    json_t *root =
        json_pack("{s:s, s:b, s:i, s:[{s:s, s:s}, {s:s, s:s%}]}", "model",
                  c->summary_model != NULL && c->summary_model[0] ? c->summary_model : c->default_model, "stream", 1, "max_tokens",
                  SUMMARY_MAX_TOKENS, "messages", "role", "system", "content", prompt, "role", "user", "content", t.base, t.len);
    sb_buf_dispose(&t);
    return root;
}

static void on_read(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct job *j = data;
    j->query = NULL;
    if (err != SB_OK) {
        sb_log_warn("summary: conversation %s keeps its extract: messages not read: %s (SQLSTATE %s)", j->conversation,
                    sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
        job_end(j);
        return;
    }
    json_t *rows = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    json_t *root = json_is_array(rows) ? summary_request(j->s->env.config, rows) : NULL;
    json_decref(rows);
    if (root == NULL) { /* no words: the extract (if any) is all there is to say */
        job_end(j);
        return;
    }
    sb_chat_request_t creq;
    sb_request_error_t rerr;
    int rc = sb_chat_request_parse(root, j->s->env.config->default_model, NULL, &creq, &rerr);
    json_decref(root);
    if (rc != 0) {
        sb_log_warn("summary: conversation %s keeps its extract: %s", j->conversation, rerr.message);
        job_end(j);
        return;
    }
    char id[64];
    snprintf(id, sizeof(id), "summary-%s", j->conversation);
    sb_chat_request_set_trace(&creq, NULL, 0, id, NULL, 0);
    creq.internal = 1;
    j->turn = sb_turn_start(&j->s->env, &creq, &j->super, NULL);
}

/* --- public ------------------------------------------------------------------------------------ */

sb_summaries_t *sb_summaries_create(const sb_turn_env_t *env)
{
    if (!env->config->summaries || env->pg == NULL)
        return NULL;
    sb_summaries_t *s = sb_calloc(1, sizeof(*s));
    s->env = *env;
    s->env.memory = NULL; /* a summary recalls nothing: it is given the conversation */
    h2o_linklist_init_anchor(&s->jobs);
    return s;
}

void sb_summaries_destroy(sb_summaries_t *s)
{
    if (s == NULL)
        return;
    while (!h2o_linklist_is_empty(&s->jobs))
        job_end(H2O_STRUCT_FROM_MEMBER(struct job, link, s->jobs.next));
    free(s);
}

int sb_summaries_start(sb_summaries_t *s, const char *conversation)
{
    if (s == NULL)
        return 0;
    if (s->active >= SUMMARIES_AT_ONCE)
        return -1;
    struct job *j = sb_calloc(1, sizeof(*j));
    j->super.ops = &ops;
    j->s = s;
    snprintf(j->conversation, sizeof(j->conversation), "%s", conversation);
    uv_timer_init(s->env.loop, &j->hop);
    sb_buf_init(&j->text, SUMMARY_MAX);
    h2o_linklist_insert(&s->jobs, &j->link);
    ++s->active;
    const char *values[] = {j->conversation};
    j->query = sb_pgpool_query(s->env.pg, read_sql, 1, values, on_read, j);
    return 0;
}
