/*
 * Conversation memory (memory.h): the one query a turn makes to recall its
 * conversation, how what comes back becomes messages for the model, and the
 * upkeep timer that closes idle conversations and purges old ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"

/* Stored messages read beyond HISTORY_MAX: the older part a summary is extracted from when there is no stored one. */
#define EXTRACT_ROWS 24
/* The extract of older messages: each line cut to this many bytes, the whole to EXTRACT_MAX. */
#define EXTRACT_LINE 200
#define EXTRACT_MAX 1600
/* Rows one upkeep statement closes or deletes: a bounded batch, so no statement holds locks for long. */
#define UPKEEP_BATCH 500
#define UPKEEP_BATCH_TEXT "500"

struct sb_memory {
    uv_loop_t *loop;
    sb_pgpool_t *pg;
    const sb_config_t *config;
    sb_memory_closed_cb closed; /* told each conversation the idle close closes (the worker has it summarised); may be NULL */
    void *closed_data;
    uv_timer_t *upkeep;  /* NULL on workers that do no upkeep */
    sb_pgquery_t *query; /* the upkeep statement in flight */
    int purging;         /* the statement in flight is the purge (else the idle close) */
    uint64_t every;      /* ms between upkeep rounds */
};

struct sb_memory_load {
    sb_memory_t *m;
    sb_chat_request_t *r;
    sb_memory_loaded_cb cb;
    void *data;
    sb_pgquery_t *query;
    uv_timer_t *timer; /* the time budget, then (budget passed or result in) the hop that reports from the loop */
    const char *outcome;
};

/*
 * What a turn recalls, in one statement over the indexes of 005: the
 * conversation's summary, how many messages with words it holds, the newest
 * of them (oldest first, each cut to what the token budget could ever take),
 * and, for a bound caller when MEMORY_ACROSS_CALLS is on, the summaries of
 * the same caller's last three closed conversations under the same key owner,
 * and the agent of its last stored turn.
 */
static const char load_sql[] =
    "WITH c AS (SELECT id, summary, agent FROM conversations WHERE key = $1), "
    "recent AS (SELECT m.seq, m.role, left(m.content, $3::int) AS content FROM messages m "
    "  WHERE m.conversation = (SELECT id FROM c) AND m.role <> 'tool' AND m.content IS NOT NULL "
    "  ORDER BY m.seq DESC LIMIT $2::int) "
    "SELECT (SELECT summary FROM c), "
    "  (SELECT count(*) FROM messages m WHERE m.conversation = (SELECT id FROM c) AND m.role <> 'tool' "
    "    AND m.content IS NOT NULL), "
    "  (SELECT coalesce(json_agg(json_build_array(role, content) ORDER BY seq), '[]') FROM recent), "
    "  (SELECT json_agg(summary ORDER BY closed_at) FROM (SELECT summary, closed_at FROM conversations "
    "    WHERE $7::boolean AND owner = $6 AND key <> $1 AND closed_at IS NOT NULL AND summary IS NOT NULL "
    "    AND (customer_id = $4::bigint OR email = $5) ORDER BY closed_at DESC LIMIT 3) p), "
    "  (SELECT agent FROM c)";

/* --- what the model is given ------------------------------------------------------------------ */

static json_t *system_message(const sb_buf_t *text)
{
    return json_pack("{s:s, s:s%}", "role", "system", "content", text->base ? text->base : "", text->len);
}

/* Appends `s` cut to `max` bytes at a character boundary, on one line. */
static void append_line(sb_buf_t *b, const char *s, size_t len, size_t max)
{
    char cut[EXTRACT_LINE + 1];
    sb_copy_text(cut, len < max ? len + 1 : max + 1, s, len);
    for (char *p = cut; *p != '\0'; ++p)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    sb_buf_appendz(b, cut);
    if (len > strlen(cut))
        sb_buf_appendz(b, " ...");
}

/*
 * The older part of a conversation as one system message: the stored summary
 * when there is one, else a compact extract of rows [0, n) of `recent` (the
 * newest of them, as many as EXTRACT_MAX holds). No model call: this is on
 * the turn's path. NULL when there is nothing to say.
 */
static json_t *older_part(const char *summary, json_t *recent, size_t n)
{
    sb_buf_t b;
    sb_buf_init(&b, EXTRACT_MAX + 512);
    if (summary != NULL && summary[0] != '\0') {
        sb_buf_appendz(&b, "Summary of the earlier part of this conversation:\n");
        sb_buf_append(&b, summary, strnlen(summary, EXTRACT_MAX));
    } else {
        size_t from = n, used = 0;
        while (from > 0) { /* the newest older rows that fit */
            json_t *row = json_array_get(recent, from - 1);
            size_t len = json_string_length(json_array_get(row, 1));
            used += (len < EXTRACT_LINE ? len : EXTRACT_LINE) + 16;
            if (used > EXTRACT_MAX)
                break;
            --from;
        }
        if (from == n) {
            sb_buf_dispose(&b);
            return NULL;
        }
        sb_buf_appendz(&b, "Earlier in this conversation (an extract):");
        for (size_t i = from; i < n; ++i) {
            json_t *row = json_array_get(recent, i);
            json_t *content = json_array_get(row, 1);
            sb_buf_appendz(&b, strcmp(json_string_value(json_array_get(row, 0)), "user") == 0 ? "\nCaller: " : "\nAssistant: ");
            append_line(&b, json_string_value(content), json_string_length(content), EXTRACT_LINE);
        }
    }
    json_t *m = system_message(&b);
    sb_buf_dispose(&b);
    return m;
}

/* The caller's earlier calls as one system message. */
static json_t *earlier_calls(json_t *summaries)
{
    sb_buf_t b;
    sb_buf_init(&b, 3 * EXTRACT_MAX + 256);
    sb_buf_appendz(&b, "This caller has called before. What their last calls were about, oldest first:");
    size_t i;
    json_t *s;
    json_array_foreach(summaries, i, s)
    {
        if (!json_is_string(s))
            continue;
        sb_buf_appendf(&b, "\n%zu. ", i + 1);
        sb_buf_append(&b, json_string_value(s), strnlen(json_string_value(s), EXTRACT_MAX));
    }
    json_t *m = system_message(&b);
    sb_buf_dispose(&b);
    return m;
}

/* Messages with words the client sent (user, assistant), and whether the last one is the caller's new words. */
static size_t client_history(json_t *messages, int *new_user)
{
    size_t n = 0, i;
    json_t *m;
    *new_user = 0;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        int words = strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0;
        n += words && json_is_string(json_object_get(m, "content"));
        *new_user = strcmp(role, "user") == 0;
    }
    return n;
}

/*
 * Turns the loaded row into messages for `r`. A client that sent only its new
 * words gets the newest stored messages back (HISTORY_MAX, the token budget)
 * and a summary of what is older; a client (an engine) that sent fewer
 * messages than are stored gets a summary of what it dropped. Returns 1 when
 * something was added.
 */
static int recall(sb_memory_t *m, sb_chat_request_t *r, const PGresult *res)
{
    if (PQntuples(res) != 1 || PQnfields(res) != 5)
        return 0;
    const char *summary = PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0);
    long long stored = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    json_t *recent = json_loadb(PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2), 0, NULL);
    json_t *calls = PQgetisnull(res, 0, 3) ? NULL : json_loadb(PQgetvalue(res, 0, 3), (size_t)PQgetlength(res, 0, 3), 0, NULL);
    json_t *add = json_array();
    size_t have = json_array_size(recent);
    if (json_array_size(calls) > 0)
        json_array_append_new(add, earlier_calls(calls));
    int new_user;
    size_t sent = client_history(json_object_get(r->upstream, "messages"), &new_user);
    size_t prior = sent - (new_user && sent > 0); /* what the client sent of the conversation before this turn */
    if (!PQgetisnull(res, 0, 4) && (long long)prior <= stored && (size_t)PQgetlength(res, 0, 4) < sizeof(r->stored_agent))
        sb_copy_text(r->stored_agent, sizeof(r->stored_agent), PQgetvalue(res, 0, 4), (size_t)PQgetlength(res, 0, 4));
    if (prior == 0 && stored > 0) {
        /* the newest stored messages that fit HISTORY_MAX and the token budget, oldest first */
        size_t take = 0, tokens = 0;
        while (take < have && take < m->config->history_max) {
            json_t *content = json_array_get(json_array_get(recent, have - 1 - take), 1);
            size_t t = (json_string_length(content) + 3) / 4 + 4; /* ~4 characters a token, and the message's own */
            if (tokens + t > m->config->history_max_tokens)
                break;
            tokens += t;
            ++take;
        }
        if ((long long)take < stored) {
            json_t *older = older_part(summary, recent, have - take);
            if (older != NULL)
                json_array_append_new(add, older);
        }
        for (size_t i = have - take; i < have; ++i) {
            json_t *row = json_array_get(recent, i);
            json_array_append_new(add, json_pack("{s:O, s:O}", "role", json_array_get(row, 0), "content", json_array_get(row, 1)));
        }
    } else if (prior > 0 && stored > (long long)prior) {
        /* the engine keeps only its last turns: what it dropped is the older part */
        json_t *older = older_part(summary, recent, have > prior ? have - prior : 0);
        if (older != NULL)
            json_array_append_new(add, older);
    }
    json_decref(recent);
    json_decref(calls);
    int added = json_array_size(add) > 0;
    sb_chat_request_add_memory(r, add);
    return added;
}

/* --- one load ---------------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    free(h);
}

static void load_free(sb_memory_load_t *l)
{
    if (l->query != NULL)
        sb_pgquery_cancel(l->query);
    if (l->timer != NULL) {
        uv_timer_stop(l->timer);
        uv_close((uv_handle_t *)l->timer, on_closed);
    }
    free(l);
}

static void report(sb_memory_load_t *l, const char *outcome)
{
    sb_memory_loaded_cb cb = l->cb;
    void *data = l->data;
    load_free(l);
    cb(data, outcome);
}

static void on_budget(uv_timer_t *timer)
{
    sb_memory_load_t *l = timer->data;
    /* a statement already sent runs to its end on its connection; the turn does not wait for it */
    report(l, "timeout");
}

static void on_loaded(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    sb_memory_load_t *l = data;
    l->query = NULL;
    if (err != SB_OK) {
        sb_log_warn("memory: history not loaded: %s (SQLSTATE %s)", sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
        report(l, "error");
        return;
    }
    report(l, recall(l->m, l->r, res) ? "hit" : "miss");
}

/* --- upkeep ------------------------------------------------------------------------------------ */

/*
 * Closes conversations silent for SESSION_IDLE_S, a bounded batch at a time,
 * with an extract of their last messages as their summary (the model's
 * summary replaces it later: summary.h), logs each close as a session_end
 * event, and returns the ids of the conversations it closed.
 */
static const char close_sql[] =
    "WITH idle AS (SELECT id FROM conversations WHERE closed_at IS NULL AND last_at < now() - make_interval(secs => $1::int) "
    "  ORDER BY last_at LIMIT " UPKEEP_BATCH_TEXT " FOR UPDATE SKIP LOCKED), "
    "closed AS (UPDATE conversations c SET closed_at = now(), summary = " SB_MEMORY_EXTRACT_SQL(
        "c.id") " FROM idle WHERE c.id = idle.id RETURNING c.id) "
                "INSERT INTO conversation_events (conversation, kind, data, at) "
                "SELECT id, 'session_end', '{\"reason\":\"idle\"}', now() FROM closed RETURNING conversation";

/* Deletes conversations silent for MEMORY_RETENTION_DAYS (their messages and events go with them), a batch at a time. */
static const char purge_sql[] = "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE last_at < now() - "
                                "make_interval(days => $1::int) ORDER BY last_at LIMIT " UPKEEP_BATCH_TEXT ")";

/* Closes one conversation now (its client said it is over), as the idle close does, and returns its id. */
static const char close_one_sql[] =
    "WITH closed AS (UPDATE conversations c SET closed_at = now(), summary = " SB_MEMORY_EXTRACT_SQL(
        "c.id") " WHERE c.key = $1 AND c.closed_at IS NULL RETURNING c.id) "
                "INSERT INTO conversation_events (conversation, kind, data, at) "
                "SELECT id, 'session_end', json_build_object('reason', $2::text), now() FROM closed RETURNING conversation";

static void on_upkeep(uv_timer_t *timer);

static void on_upkeep_done(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    sb_memory_t *m = data;
    m->query = NULL;
    if (err != SB_OK) {
        sb_log_warn("memory: %s failed: %s (SQLSTATE %s)", m->purging ? "purge" : "idle close", sb_error_name(err),
                    sqlstate && *sqlstate ? sqlstate : "none");
        return;
    }
    long n = strtol(PQcmdTuples((PGresult *)res), NULL, 10);
    if (m->purging) {
        if (n > 0)
            sb_log_info("memory: purged %ld conversations older than %u days", n, m->config->memory_retention_days);
        if (n >= UPKEEP_BATCH) /* more to do: the next batch soon, not all at once */
            uv_timer_start(m->upkeep, on_upkeep, 1000, m->every);
        return;
    }
    long busy = 0;
    for (int i = 0; i < PQntuples(res); ++i)
        busy += m->closed != NULL && m->closed(m->closed_data, PQgetvalue(res, i, 0)) != 0;
    if (busy > 0)
        sb_log_warn("memory: %ld of %ld conversations closed for silence keep their extract: summaries are busy", busy, n);
    if (m->config->memory_retention_days > 0) { /* the purge follows the close, one statement at a time */
        m->purging = 1;
        char days[16];
        snprintf(days, sizeof(days), "%u", m->config->memory_retention_days);
        const char *values[] = {days};
        m->query = sb_pgpool_query(m->pg, purge_sql, 1, values, on_upkeep_done, m);
    }
}

static void on_closed_one(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    sb_memory_t *m = data;
    if (err != SB_OK) {
        sb_log_warn("memory: a conversation's close failed: %s (SQLSTATE %s)", sb_error_name(err),
                    sqlstate && *sqlstate ? sqlstate : "none");
        return;
    }
    if (PQntuples(res) == 1 && m->closed != NULL && m->closed(m->closed_data, PQgetvalue(res, 0, 0)) != 0)
        sb_log_warn("memory: conversation %s keeps its extract: summaries are busy", PQgetvalue(res, 0, 0));
}

static void upkeep_next(sb_memory_t *m)
{
    if (m->query != NULL)
        return; /* the last statement is still running (a slow database): skip a beat */
    m->purging = m->config->session_idle_s == 0;
    if (!m->purging) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%u", m->config->session_idle_s);
        const char *values[] = {secs};
        m->query = sb_pgpool_query(m->pg, close_sql, 1, values, on_upkeep_done, m);
    } else if (m->config->memory_retention_days > 0) {
        char days[16];
        snprintf(days, sizeof(days), "%u", m->config->memory_retention_days);
        const char *values[] = {days};
        m->query = sb_pgpool_query(m->pg, purge_sql, 1, values, on_upkeep_done, m);
    }
}

static void on_upkeep(uv_timer_t *timer)
{
    upkeep_next(timer->data);
}

/* --- public ------------------------------------------------------------------------------------ */

sb_memory_t *sb_memory_create(uv_loop_t *loop, sb_pgpool_t *pg, const sb_config_t *config, int upkeep, sb_memory_closed_cb closed,
                              void *data)
{
    if (pg == NULL || (!config->memory && !config->event_log))
        return NULL;
    sb_memory_t *m = sb_calloc(1, sizeof(*m));
    m->loop = loop;
    m->pg = pg;
    m->config = config;
    m->closed = closed;
    m->closed_data = data;
    if (upkeep && (config->session_idle_s > 0 || config->memory_retention_days > 0)) {
        /* often enough that a conversation closes within about half its idle time, at most once a minute */
        uint64_t every = config->session_idle_s > 0 ? config->session_idle_s * 500ull : 60000;
        every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
        m->every = every;
        m->upkeep = sb_alloc(sizeof(*m->upkeep));
        uv_timer_init(loop, m->upkeep);
        m->upkeep->data = m;
        uv_timer_start(m->upkeep, on_upkeep, every, every);
        uv_unref((uv_handle_t *)m->upkeep); /* upkeep never keeps a draining worker alive */
    }
    return m;
}

void sb_memory_destroy(sb_memory_t *m)
{
    if (m == NULL)
        return;
    if (m->query != NULL)
        sb_pgquery_cancel(m->query);
    if (m->upkeep != NULL) {
        uv_timer_stop(m->upkeep);
        uv_close((uv_handle_t *)m->upkeep, on_closed);
    }
    free(m);
}

sb_memory_load_t *sb_memory_load_start(sb_memory_t *m, sb_chat_request_t *r, sb_memory_loaded_cb cb, void *data)
{
    if (m == NULL || !m->config->memory || r->memory_key[0] == '\0')
        return NULL;
    sb_pgpool_stats_t st;
    sb_pgpool_stats(m->pg, &st);
    if (!st.healthy) /* the pool already knows the database is away: the turn goes on now instead of waiting its budget out */
        return NULL;
    sb_memory_load_t *l = sb_calloc(1, sizeof(*l));
    l->m = m;
    l->r = r;
    l->cb = cb;
    l->data = data;
    char limit[16], chars[16], customer[24];
    snprintf(limit, sizeof(limit), "%u", m->config->history_max + EXTRACT_ROWS);
    /* no single message longer than the whole budget could be given anyway, nor more than an extract line */
    unsigned long long cap = (unsigned long long)m->config->history_max_tokens * 4;
    snprintf(chars, sizeof(chars), "%llu", cap < EXTRACT_LINE ? EXTRACT_LINE : cap > 1000000 ? 1000000 : cap);
    snprintf(customer, sizeof(customer), "%lld", r->caller.customer_id);
    const char *values[] = {r->memory_key,
                            limit,
                            chars,
                            r->caller.customer_id > 0 ? customer : NULL,
                            r->caller.email[0] ? r->caller.email : NULL,
                            r->owner,
                            m->config->memory_across_calls && (r->caller.customer_id > 0 || r->caller.email[0]) ? "t" : "f"};
    l->query = sb_pgpool_query(m->pg, load_sql, 7, values, on_loaded, l);
    l->timer = sb_alloc(sizeof(*l->timer));
    uv_timer_init(m->loop, l->timer);
    l->timer->data = l;
    uv_timer_start(l->timer, on_budget, m->config->memory_timeout_ms, 0);
    return l;
}

void sb_memory_load_cancel(sb_memory_load_t *l)
{
    if (l != NULL)
        load_free(l);
}

void sb_memory_close(sb_memory_t *m, const char *key, const char *reason)
{
    if (m == NULL || key[0] == '\0')
        return;
    const char *values[] = {key, reason};
    sb_pgpool_query(m->pg, close_one_sql, 2, values, on_closed_one, m); /* m lives as long as its worker, as the pool does */
}
