/*
 * The event log (eventlog.h): the turn observer that collects a turn's
 * record, the worker's bounded queue of records, and the writer that stores
 * a batch of them with one statement.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <h2o/memory.h>
#include <sodium.h>

#include "agent_route.h"
#include "eventlog.h"
#include "metrics.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/json.h"
#include "sb/log.h"

#define EVENTS_MAX 128          /* events one turn keeps; past it they are counted as dropped */
#define EVENT_TEXT_MAX 8192     /* bytes of one text in an event (a tool result, an answer) */
#define MESSAGE_TEXT_MAX 262144 /* bytes of one stored message's content */
#define RECORD_MAX (2u << 20)   /* bytes one turn's record may hold; past it its messages are not stored */
#define BATCH_RECORDS 64        /* turns one statement writes */
#define BATCH_BYTES (4u << 20)  /* bytes of one statement's parameter */
#define BATCH_DELAY_MS 5        /* a turn waits this long for others to share its statement */
#define LOG_EVERY_MS 60000      /* dropped records are logged at most this often */

struct queued {
    struct queued *next;
    json_t *record; /* NULL: a barrier, `after` runs once everything queued before it is written */
    unsigned events;
    sb_eventlog_after_cb after;
    void *data;
};

struct sb_eventlog {
    uv_loop_t *loop;
    sb_pgpool_t *pg;
    const sb_config_t *config;
    struct queued *head, *tail;
    unsigned queued;
    uv_timer_t *timer;
    sb_pgquery_t *query;      /* the batch in flight */
    unsigned inflight_events; /* what it holds, counted as dropped if it fails */
    unsigned inflight_records;
    /* drops since the last log line */
    uint64_t last_log, unlogged_events, unlogged_records;
    const char *why;
};

/* Milliseconds since the epoch: events carry wall-clock times, and a batch may be written seconds later. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)(ts.tv_nsec / 1000000);
}

/* --- drops ------------------------------------------------------------------------------------- */

static void dropped(sb_eventlog_t *log, unsigned records, unsigned events, const char *why)
{
    sb_metrics_events_dropped(records, events);
    log->unlogged_records += records;
    log->unlogged_events += events;
    log->why = why;
    uint64_t now = uv_now(log->loop);
    if (log->last_log != 0 && now - log->last_log < LOG_EVERY_MS)
        return;
    sb_log_warn("event log: dropped %llu turns (%llu events) since the last report: %s", (unsigned long long)log->unlogged_records,
                (unsigned long long)log->unlogged_events, log->why);
    log->last_log = now;
    log->unlogged_records = log->unlogged_events = 0;
}

/* --- the writer -------------------------------------------------------------------------------- */

/*
 * One batch of turns in one statement: each record's conversation is created
 * or touched (and opened again if it had been closed), its messages inserted
 * unless the same turn was stored already (the turn's digest and the
 * message's place are unique), and its events inserted in order, after a
 * session_start when the conversation is new or was closed.
 */
static const char write_sql[] =
    "WITH r AS (SELECT i, t FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS a(t, i)), "
    "latest AS (SELECT DISTINCT ON (t->>'key') t FROM r ORDER BY t->>'key', i DESC), "
    "first AS (SELECT DISTINCT ON (t->>'key') i, t FROM r ORDER BY t->>'key', i), "
    "prior AS (SELECT key, closed_at FROM conversations WHERE key IN (SELECT t->>'key' FROM latest)), "
    "up AS (INSERT INTO conversations AS c (key, owner, client_id, identity, customer_id, email, agent, started_at, last_at) "
    "  SELECT t->>'key', t->>'owner', t->>'client_id', t->>'identity', (t->>'customer_id')::bigint, t->>'email', t->>'agent', "
    "    to_timestamp((t->>'start')::float8 / 1000), to_timestamp((t->>'at')::float8 / 1000) FROM latest "
    "  ON CONFLICT (key) DO UPDATE SET last_at = greatest(c.last_at, EXCLUDED.last_at), closed_at = NULL, "
    "    customer_id = coalesce(EXCLUDED.customer_id, c.customer_id), email = coalesce(EXCLUDED.email, c.email), "
    "    agent = coalesce(EXCLUDED.agent, c.agent) "
    "  RETURNING c.id, c.key), "
    "msg AS (INSERT INTO messages (conversation, turn_key, part, role, content, tool_calls, tool_call_id, agent, turn_id, "
    "    created_at) "
    "  SELECT up.id, r.t->>'turn', m.n, m.v->>'role', m.v->>'content', m.v->'tool_calls', m.v->>'tool_call_id', r.t->>'agent', "
    "    r.t->>'turn_id', to_timestamp((r.t->>'at')::float8 / 1000) "
    "  FROM r JOIN up ON up.key = r.t->>'key' CROSS JOIN LATERAL jsonb_array_elements(r.t->'messages') WITH ORDINALITY AS m(v, n) "
    "  ORDER BY r.i, m.n ON CONFLICT (conversation, turn_key, part) DO NOTHING) "
    "INSERT INTO conversation_events (conversation, kind, data, at) "
    "SELECT up.id, e.kind, e.data, e.at FROM ("
    "  SELECT f.t->>'key' AS key, f.i AS i, 0::bigint AS n, 'session_start' AS kind, '{}'::jsonb AS data, "
    "    to_timestamp((f.t->>'start')::float8 / 1000) AS at "
    "  FROM first f LEFT JOIN prior p ON p.key = f.t->>'key' "
    "  WHERE jsonb_array_length(f.t->'events') > 0 AND (p.key IS NULL OR p.closed_at IS NOT NULL) "
    "  UNION ALL "
    "  SELECT r.t->>'key', r.i, ev.n, ev.v->>'kind', coalesce(ev.v->'data', '{}'), to_timestamp((ev.v->>'at')::float8 / 1000) "
    "  FROM r CROSS JOIN LATERAL jsonb_array_elements(r.t->'events') WITH ORDINALITY AS ev(v, n)) e "
    "JOIN up ON up.key = e.key ORDER BY e.i, e.n";

static void write_next(sb_eventlog_t *log);

static void on_written(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    (void)res;
    sb_eventlog_t *log = data;
    log->query = NULL;
    if (err != SB_OK) {
        char why[96];
        snprintf(why, sizeof(why), "%s (SQLSTATE %s)", sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
        log->why = NULL;
        dropped(log, log->inflight_records, log->inflight_events,
                err == SB_E_DB_UNAVAILABLE ? "database unavailable" : "write failed");
        if (err != SB_E_DB_UNAVAILABLE)
            sb_log_warn("event log: a batch of %u turns was not written: %s", log->inflight_records, why);
    }
    log->inflight_records = log->inflight_events = 0;
    write_next(log);
}

/* Takes up to a batch of queued records into one statement. */
static void write_next(sb_eventlog_t *log)
{
    if (log->query != NULL)
        return;
    while (log->head != NULL && log->head->record == NULL) { /* a barrier: all before it is written (or dropped) */
        struct queued *q = log->head;
        log->head = q->next;
        if (log->head == NULL)
            log->tail = NULL;
        q->after(q->data, 1);
        free(q);
    }
    if (log->head == NULL)
        return;
    sb_buf_t b;
    sb_buf_init(&b, BATCH_BYTES + RECORD_MAX * 2);
    sb_buf_appendz(&b, "[");
    unsigned records = 0, events = 0;
    while (log->head != NULL && log->head->record != NULL && records < BATCH_RECORDS && b.len < BATCH_BYTES) {
        struct queued *q = log->head;
        log->head = q->next;
        if (log->head == NULL)
            log->tail = NULL;
        --log->queued;
        size_t mark = b.len;
        if ((records > 0 && sb_buf_appendz(&b, ",") != 0) || sb_json_dump_append(&b, q->record, 17) != 0) {
            b.len = mark; /* cannot be written (a ceiling): this record alone is dropped */
            dropped(log, 1, q->events, "record too large");
        } else {
            ++records;
            events += q->events;
        }
        json_decref(q->record);
        free(q);
    }
    if (records == 0 || sb_buf_append(&b, "]", 2) != 0) {
        sb_buf_dispose(&b);
        return;
    }
    const char *values[] = {b.base};
    log->inflight_records = records;
    log->inflight_events = events;
    log->query = sb_pgpool_query(log->pg, write_sql, 1, values, on_written, log);
    sb_buf_dispose(&b);
}

static void on_batch_timer(uv_timer_t *timer)
{
    write_next(timer->data);
}

static void append(sb_eventlog_t *log, struct queued *q)
{
    if (log->tail != NULL)
        log->tail->next = q;
    else
        log->head = q;
    log->tail = q;
}

/* Queues a finished turn's record (taken). */
static void enqueue(sb_eventlog_t *log, json_t *record, unsigned events)
{
    if (log->queued >= log->config->event_queue_max) {
        json_decref(record);
        dropped(log, 1, events, "queue full");
        return;
    }
    struct queued *q = sb_alloc(sizeof(*q));
    *q = (struct queued){NULL, record, events, NULL, NULL};
    append(log, q);
    ++log->queued;
    if (log->query == NULL && !uv_is_active((uv_handle_t *)log->timer))
        uv_timer_start(log->timer, on_batch_timer, BATCH_DELAY_MS, 0);
}

/* --- the turn observer ------------------------------------------------------------------------ */

/* `s` as a JSON string: at most `max` bytes cut at a character, NUL bytes left out (Postgres text holds none), valid UTF-8. */
static json_t *text(const char *s, size_t len, size_t max)
{
    if (s == NULL)
        return json_null();
    if (len > max) {
        while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
            --max;
        len = max;
    }
    sb_buf_t b;
    sb_buf_init(&b, len * 3 + 1);
    for (size_t at = 0; at < len;) {
        const char *nul = memchr(s + at, '\0', len - at);
        size_t n = nul != NULL ? (size_t)(nul - (s + at)) : len - at;
        sb_buf_append_utf8(&b, s + at, n);
        at += n + (nul != NULL);
    }
    json_t *v = json_stringn(b.base != NULL ? b.base : "", b.len);
    sb_buf_dispose(&b);
    return v != NULL ? v : json_string("");
}

static json_t *str_text(sb_str_t s, size_t max)
{
    return text(s.base != NULL ? s.base : "", s.len, max);
}

/* Counts `n` more bytes against the record's ceiling; 0 when they would pass it. */
static int fits(sb_eventlog_turn_t *t, size_t n)
{
    if (t->bytes + n > RECORD_MAX)
        return 0;
    t->bytes += n;
    return 1;
}

void sb_eventlog_add(sb_eventlog_turn_t *t, const char *kind, json_t *data)
{
    if (t->record == NULL || t->events == NULL) {
        json_decref(data);
        return;
    }
    char *dumped = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
    size_t size = 64 + (dumped != NULL ? strlen(dumped) : 0);
    free(dumped);
    if (json_array_size(t->events) >= EVENTS_MAX || !fits(t, size)) {
        ++t->dropped;
        json_decref(data);
        return;
    }
    json_array_append_new(t->events,
                          json_pack("{s:s, s:o, s:f}", "kind", kind, "data", data != NULL ? data : json_object(), "at", now_ms()));
}

/* Adds a message to the turn's stored messages; past the record's ceiling the turn's messages are not stored at all. */
static void add_message(sb_eventlog_turn_t *t, json_t *m, size_t size)
{
    if (t->messages == NULL || !fits(t, size + 64)) {
        json_decref(m);
        t->round_calls = NULL;
        if (t->messages != NULL) { /* a turn stored in part would be worse than one not stored */
            json_decref(t->messages);
            t->messages = NULL;
            json_object_set_new(t->record, "messages", json_array());
        }
        return;
    }
    json_array_append_new(t->messages, m);
}

static void on_agent(sb_sink_t *sink, const sb_agent_decision_t *d)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    sb_eventlog_routing(t, &(sb_eventlog_route_t){d->agent->name, d->previous != NULL ? d->previous->name : NULL,
                                                  sb_routed_by_name(d->routed_by), sb_strategy_name(d->strategy), d->score,
                                                  d->router, d->router_ms});
}

static void on_retrieval(sb_sink_t *sink, const char *outcome, const sb_passage_t *p, size_t passages)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    sb_eventlog_add(t, "retrieval", json_pack("{s:s, s:I}", "outcome", outcome, "passages", (json_int_t)passages));
}

static sb_error_t on_delta(sb_sink_t *sink, const sb_sink_delta_t *d)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    if (d->text.base == NULL || d->text.len == 0 || t->record == NULL)
        return SB_OK;
    size_t room = MESSAGE_TEXT_MAX - t->answer_len, n = d->text.len < room ? d->text.len : room;
    if (t->answer_len + n > t->answer_cap) { /* grows by doubling up to its ceiling: a copy per delta, no more */
        size_t cap = t->answer_cap ? t->answer_cap : 1024;
        while (cap < t->answer_len + n)
            cap *= 2;
        t->answer_cap = cap < MESSAGE_TEXT_MAX ? cap : MESSAGE_TEXT_MAX;
        t->answer = sb_realloc(t->answer, t->answer_cap);
    }
    memcpy(t->answer + t->answer_len, d->text.base, n);
    t->answer_len += n;
    return SB_OK;
}

static void on_tool_started(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    if (t->record == NULL)
        return;
    sb_eventlog_add(t, "tool_call",
                    json_pack("{s:o, s:o, s:o}", "id", str_text(call->id, 256), "name", str_text(call->name, 256), "arguments",
                              str_text(call->arguments, EVENT_TEXT_MAX)));
    if (t->messages == NULL)
        return;
    if (t->round_calls == NULL) { /* the round's first call: its assistant message, which the results follow */
        t->round_calls = json_array();
        add_message(t, json_pack("{s:s, s:n, s:O}", "role", "assistant", "content", "tool_calls", t->round_calls), 64);
        json_decref(t->round_calls);
        if (t->messages == NULL) {
            t->round_calls = NULL;
            return;
        }
    }
    if (fits(t, call->arguments.len + call->name.len + call->id.len + 64))
        json_array_append_new(t->round_calls, json_pack("{s:o, s:s, s:{s:o, s:o}}", "id", str_text(call->id, 256), "type",
                                                        "function", "function", "name", str_text(call->name, 256), "arguments",
                                                        str_text(call->arguments, MESSAGE_TEXT_MAX)));
}

static void on_tool_finished(sb_sink_t *sink, const sb_sink_tool_t *call)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    if (t->record == NULL)
        return;
    t->round_calls = NULL; /* the next call belongs to the next round */
    sb_eventlog_add(t, "tool_result",
                    json_pack("{s:o, s:o, s:o, s:b}", "id", str_text(call->id, 256), "name", str_text(call->name, 256), "result",
                              str_text(call->result, EVENT_TEXT_MAX), "failed", call->failed));
    if (t->messages != NULL)
        add_message(t,
                    json_pack("{s:s, s:o, s:o}", "role", "tool", "tool_call_id", str_text(call->id, 256), "content",
                              str_text(call->result, MESSAGE_TEXT_MAX)),
                    call->result.len);
}

static void on_done(sb_sink_t *sink, const sb_turn_end_t *end)
{
    sb_eventlog_turn_t *t = H2O_STRUCT_FROM_MEMBER(sb_eventlog_turn_t, super, sink);
    if (t->record == NULL)
        return;
    json_t *said = text(t->answer, t->answer_len, MESSAGE_TEXT_MAX);
    if (end->error == SB_OK) {
        sb_eventlog_add(t, "assistant_message",
                        json_pack("{s:o, s:s?}", "content", text(t->answer, t->answer_len, EVENT_TEXT_MAX), "finish", end->finish));
        if (t->messages != NULL && (t->answer_len > 0 || json_array_size(t->messages) > 0))
            add_message(t, json_pack("{s:s, s:O}", "role", "assistant", "content", said), t->answer_len);
    } else {
        sb_eventlog_add(t, "error",
                        json_pack("{s:s, s:s, s:s?}", "error", sb_error_name(end->error), "message",
                                  end->message != NULL ? end->message : sb_error_message(end->error), "how", end->how));
    }
    json_decref(said);
    if (end->error != SB_OK && t->messages != NULL) /* only a whole turn is remembered: the engine may try it again */
        json_object_set_new(t->record, "messages", json_array());
    if (t->dropped > 0)
        dropped(t->log, 0, t->dropped, "too many events in one turn");
    json_object_set_new(t->record, "at", json_real(now_ms()));
    unsigned events = (unsigned)json_array_size(t->events);
    json_t *record = t->record;
    t->record = NULL;
    sb_eventlog_turn_dispose(t);
    enqueue(t->log, record, events);
}

static const sb_sink_ops_t turn_ops = {
    .name = "event-log",
    .live = 0,     /* an observer writes nothing */
    .model = NULL, /* the model is the provider's business, not the conversation's */
    .delta = on_delta,
    .tool_started = on_tool_started,
    .tool_finished = on_tool_finished,
    .retrieval = on_retrieval,
    .done = on_done,
    .agent = on_agent, /* the routing decision, and a hand-over */
};

/* The caller's new messages: those after the last assistant message (the user's words, or results of the client's tools). */
static void add_new_messages(sb_eventlog_turn_t *t, json_t *messages)
{
    size_t from = json_array_size(messages);
    while (from > 0) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, from - 1), "role"));
        if (strcmp(role, "user") != 0 && strcmp(role, "tool") != 0)
            break;
        --from;
    }
    for (size_t i = from; i < json_array_size(messages); ++i) {
        json_t *m = json_array_get(messages, i);
        json_t *content = json_object_get(m, "content");
        const char *role = json_string_value(json_object_get(m, "role"));
        char *parts = json_is_string(content) ? NULL : json_dumps(content, JSON_COMPACT); /* text parts and media, as sent */
        json_t *said = json_is_string(content) ? text(json_string_value(content), json_string_length(content), MESSAGE_TEXT_MAX)
                                               : text(parts, parts ? strlen(parts) : 0, MESSAGE_TEXT_MAX);
        free(parts);
        sb_eventlog_add(t, strcmp(role, "user") == 0 ? "user_message" : "client_tool_result",
                        json_pack("{s:o}", "content", text(json_string_value(said), json_string_length(said), EVENT_TEXT_MAX)));
        json_t *stored = json_pack("{s:s, s:O}", "role", role, "content", said);
        json_t *id = json_object_get(m, "tool_call_id");
        if (json_is_string(id))
            json_object_set_new(stored, "tool_call_id", text(json_string_value(id), json_string_length(id), 256));
        if (t->messages != NULL)
            add_message(t, stored, json_string_length(said));
        else
            json_decref(stored);
        json_decref(said);
    }
}

void sb_eventlog_turn_start(sb_eventlog_turn_t *t, sb_eventlog_t *log, const sb_chat_request_t *r)
{
    memset(t, 0, sizeof(*t));
    t->super.ops = &turn_ops;
    t->log = log;
    if (log == NULL || r->memory_key[0] == '\0')
        return;
    char turn[2 * SB_CONVERSATION_BYTES + 1];
    sodium_bin2hex(turn, sizeof(turn), r->conversation, sizeof(r->conversation));
    t->record = json_pack("{s:s, s:s, s:s, s:f, s:f}", "key", r->memory_key, "owner", r->owner, "turn", turn, "start", now_ms(),
                          "at", now_ms());
    if (r->conversation_id != NULL)
        json_object_set_new(t->record, "client_id", json_string(r->conversation_id));
    if (r->identity != NULL)
        json_object_set_new(t->record, "identity", text(r->identity, strlen(r->identity), 256));
    if (r->turn_id[0] != '\0')
        json_object_set_new(t->record, "turn_id", text(r->turn_id, strlen(r->turn_id), 64));
    if (r->caller.customer_id > 0)
        json_object_set_new(t->record, "customer_id", json_integer(r->caller.customer_id));
    if (r->caller.email[0] != '\0')
        json_object_set_new(t->record, "email", text(r->caller.email, strlen(r->caller.email), 256));
    json_object_set_new(t->record, "messages", json_array());
    json_object_set_new(t->record, "events", json_array());
    if (log->config->memory)
        t->messages = json_object_get(t->record, "messages");
    if (log->config->event_log)
        t->events = json_object_get(t->record, "events");
    add_new_messages(t, json_object_get(r->upstream, "messages"));
}

void sb_eventlog_turn_dispose(sb_eventlog_turn_t *t)
{
    json_decref(t->record);
    t->record = NULL;
    t->messages = t->events = t->round_calls = NULL;
    free(t->answer);
    t->answer = NULL;
    t->answer_len = t->answer_cap = 0;
}

void sb_eventlog_routing(sb_eventlog_turn_t *t, const sb_eventlog_route_t *route)
{
    if (t->record == NULL)
        return;
    json_t *d = json_object();
    if (route->agent != NULL)
        json_object_set_new(d, "agent", text(route->agent, strlen(route->agent), 128));
    if (route->previous != NULL)
        json_object_set_new(d, "previous", text(route->previous, strlen(route->previous), 128));
    if (route->how != NULL)
        json_object_set_new(d, "how", text(route->how, strlen(route->how), 64));
    if (route->strategy != NULL)
        json_object_set_new(d, "strategy", text(route->strategy, strlen(route->strategy), 64));
    if (route->score >= 0)
        json_object_set_new(d, "score", json_real(route->score));
    if (route->router != NULL) {
        json_object_set_new(d, "router", text(route->router, strlen(route->router), 16));
        json_object_set_new(d, "router_ms", json_real(route->router_ms));
    }
    int switched = route->agent != NULL && route->previous != NULL && strcmp(route->agent, route->previous) != 0;
    sb_eventlog_add(t, "routing", switched ? json_deep_copy(d) : json_incref(d));
    if (switched)
        sb_eventlog_add(t, "agent_switch",
                        json_pack("{s:O, s:O}", "from", json_object_get(d, "previous"), "to", json_object_get(d, "agent")));
    if (route->agent != NULL)
        json_object_set(t->record, "agent", json_object_get(d, "agent"));
    json_decref(d);
}

/* --- the queue --------------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    free(h);
}

sb_eventlog_t *sb_eventlog_create(uv_loop_t *loop, sb_pgpool_t *pg, const sb_config_t *config)
{
    if (pg == NULL || (!config->memory && !config->event_log))
        return NULL;
    sb_eventlog_t *log = sb_calloc(1, sizeof(*log));
    log->loop = loop;
    log->pg = pg;
    log->config = config;
    log->timer = sb_alloc(sizeof(*log->timer));
    uv_timer_init(loop, log->timer);
    log->timer->data = log;
    return log;
}

void sb_eventlog_destroy(sb_eventlog_t *log)
{
    if (log == NULL)
        return;
    if (log->query != NULL)
        sb_pgquery_cancel(log->query);
    while (log->head != NULL) {
        struct queued *q = log->head;
        log->head = q->next;
        if (q->record == NULL) {
            q->after(q->data, 0);
        } else {
            dropped(log, 1, q->events, "shutting down");
            json_decref(q->record);
        }
        free(q);
    }
    uv_timer_stop(log->timer);
    uv_close((uv_handle_t *)log->timer, on_closed);
    free(log);
}

void sb_eventlog_after(sb_eventlog_t *log, sb_eventlog_after_cb after, void *data)
{
    if (log == NULL || (log->head == NULL && log->query == NULL)) {
        after(data, 1);
        return;
    }
    struct queued *q = sb_alloc(sizeof(*q));
    *q = (struct queued){NULL, NULL, 0, after, data};
    append(log, q);
}
