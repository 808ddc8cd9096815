/*
 * Agora's Conversational AI webhooks (agora_events.h): the signature check,
 * the strict reading of the notice, and the one statement that records the
 * notice and acts on the call's conversation.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agora_events.h"
#include "memory.h"
#include "respond.h"
#include "sb/log.h"
#include "summary.h"
#include "worker.h"

#define EVENT_AGENT_JOINED 101
#define EVENT_AGENT_LEFT 102
#define EVENT_HISTORY 103
/* What a notice may name: Agora's ids are short; anything longer is not Agora's. */
#define NOTICE_ID_MAX 128
#define ENGINE_ID_MAX 95
/* The engine's history kept from a 103: at most this many entries, each cut to CONTENT_MAX bytes. */
#define HISTORY_MAX_ENTRIES 256
#define CONTENT_MAX 4000

/*
 * One statement per notice. $1 noticeId, $2 eventType, $3 channel, $4
 * agent_id (NULL when not sent), $5 the engine's history (jsonb array or
 * NULL), $6 the event's data, $7 whether the notice ends the call. The
 * conversation is the newest one whose engine identity names the channel (and
 * the agent, when both name one). The notice is inserted first; a repeat
 * inserts nothing and so changes nothing. Ending the call closes an open
 * conversation with the extract summary (the engine's history when no turn
 * was stored) and logs session_end once; a 101 logs session_start unless the
 * conversation has one. Returns whether the notice was new, whether it
 * found its conversation, and the id of the conversation it closed (NULL
 * when none), whose model-written summary follows (summary.h).
 */
static const char notice_sql[] =
    "WITH c AS (SELECT id FROM conversations WHERE $3::text IS NOT NULL "
    "  AND position(';channel=' || $3 || ';' in ';' || coalesce(identity, '')) > 0 "
    "  AND ($4::text IS NULL OR position(';agent=' in ';' || coalesce(identity, '')) = 0 "
    "    OR position(';agent=' || $4 || ';' in ';' || coalesce(identity, '')) > 0) "
    "  ORDER BY last_at DESC LIMIT 1), "
    "pre AS (SELECT id, closed_at FROM conversations WHERE id = (SELECT id FROM c)), "
    "n AS (INSERT INTO agora_notices (notice_id, event_type, conversation) VALUES ($1, $2::int, (SELECT id FROM c)) "
    "  ON CONFLICT (notice_id) DO NOTHING RETURNING conversation), "
    "hist AS (INSERT INTO conversation_events (conversation, kind, data, at) "
    "  SELECT n.conversation, 'engine_history', jsonb_build_object('contents', $5::jsonb), now() FROM n "
    "  WHERE n.conversation IS NOT NULL AND $5::jsonb IS NOT NULL), "
    "closed AS (UPDATE conversations cv SET closed_at = now(), summary = coalesce(" SB_MEMORY_EXTRACT_SQL(
        "cv.id") ", "
                 "  (SELECT string_agg(CASE y.h->>'role' WHEN 'user' THEN 'Caller: ' ELSE 'Assistant: ' END || "
                 "left(y.h->>'content', 200), "
                 "    E'\\n' ORDER BY y.o) FROM (SELECT h, o FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS t(h, o) "
                 "    ORDER BY o DESC LIMIT 8) y), cv.summary) "
                 "  FROM n, pre WHERE $7::boolean AND cv.id = n.conversation AND pre.id = cv.id AND pre.closed_at IS NULL "
                 "RETURNING cv.id), "
                 "ev AS (INSERT INTO conversation_events (conversation, kind, data, at) "
                 "  SELECT n.conversation, CASE WHEN $7::boolean THEN 'session_end' ELSE 'session_start' END, $6::jsonb, now() "
                 "FROM n "
                 "  WHERE n.conversation IS NOT NULL AND CASE WHEN $7::boolean THEN EXISTS (SELECT 1 FROM closed) "
                 "    ELSE NOT EXISTS (SELECT 1 FROM conversation_events e WHERE e.conversation = n.conversation "
                 "      AND e.kind = 'session_start') END) "
                 "SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM n WHERE conversation IS NOT NULL), (SELECT id FROM "
                 "closed)";

/* A notice in flight: lives in the request's pool; its dispose hook forgets the statement. */
struct notice {
    h2o_req_t *req;
    sb_pgquery_t *query;
};

/* Whether `sig` (the header value, may be NULL) is the hex HMAC-SHA256 of `body` under `secret`, in constant time. */
static int signature_ok(const char *secret, const char *sig, size_t sig_len, const char *body, size_t body_len)
{
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    size_t n = 0;
    if (sig == NULL || sig_len != 2 * sizeof(got) || sodium_hex2bin(got, sizeof(got), sig, sig_len, NULL, &n, NULL) != 0 ||
        n != sizeof(got))
        return 0;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, body_len);
    crypto_auth_hmacsha256_final(&st, want);
    int ok = sodium_memcmp(want, got, sizeof(want)) == 0;
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(want, sizeof(want));
    return ok;
}

/* The engine's history as stored: [{role, content}] with roles user/assistant, bounded; NULL when `contents` is not an array. */
static json_t *clean_history(json_t *contents)
{
    if (!json_is_array(contents))
        return NULL;
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(contents, i, m)
    {
        if (i >= HISTORY_MAX_ENTRIES)
            break;
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (role == NULL || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0) || !json_is_string(content))
            continue;
        size_t len = json_string_length(content);
        if (len > CONTENT_MAX) { /* cut at a character boundary */
            len = CONTENT_MAX;
            while (len > 0 && ((unsigned char)json_string_value(content)[len] & 0xC0) == 0x80)
                --len;
        }
        json_array_append_new(out, json_pack("{s:s, s:s%}", "role", role, "content", json_string_value(content), len));
    }
    return out;
}

static void on_dispose(void *p)
{
    struct notice *x = p;
    if (x->query != NULL)
        sb_pgquery_cancel(x->query);
}

static void on_recorded(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct notice *x = data;
    x->query = NULL;
    if (err != SB_OK) {
        sb_log_warn("agora events: notice not recorded: %s (SQLSTATE %s)", sb_error_name(err),
                    sqlstate && *sqlstate ? sqlstate : "none");
        sb_worker_answer(x->req, err, NULL, NULL, NULL); /* Agora retries a notice that did not get its 200 */
        return;
    }
    int fresh = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
    int matched = fresh && strcmp(PQgetvalue(res, 0, 1), "1") == 0;
    if (fresh && !PQgetisnull(res, 0, 2)) {
        sb_worker_t *w = sb_worker_of(x->req);
        if (sb_summaries_start(w->summaries, PQgetvalue(res, 0, 2)) != 0)
            sb_log_warn("agora events: conversation %s keeps its extract: summaries are busy", PQgetvalue(res, 0, 2));
    }
    sb_worker_answer(x->req, SB_OK, NULL, NULL,
                     !fresh    ? "{\"status\":\"duplicate\"}"
                     : matched ? "{\"status\":\"ok\"}"
                               : "{\"status\":\"no_conversation\"}");
}

void sb_agora_events_handle(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    if (c->agora_webhook_secret == NULL || c->agora_webhook_secret[0] == '\0') {
        sb_worker_answer(req, SB_E_NOT_FOUND, "agora webhooks are off: AGORA_WEBHOOK_SECRET is not set", NULL, NULL);
        return;
    }
    if (req->entity.len > c->max_body_bytes) {
        sb_worker_answer(req, SB_E_BODY_TOO_LARGE, NULL, NULL, NULL);
        return;
    }
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("agora-signature-v2"), -1);
    if (!signature_ok(c->agora_webhook_secret, hi >= 0 ? req->headers.entries[hi].value.base : NULL,
                      hi >= 0 ? req->headers.entries[hi].value.len : 0, req->entity.base ? req->entity.base : "",
                      req->entity.len)) {
        sb_worker_answer(req, SB_E_UNAUTHORIZED, "missing or invalid Agora-Signature-V2", NULL, NULL);
        return;
    }
    if (w->pg == NULL) {
        sb_worker_answer(req, SB_E_DB_UNAVAILABLE, "agora webhooks need the database (DATABASE_URL)", NULL, NULL);
        return;
    }
    json_error_t jerr;
    json_t *root = req->entity.len > 0 ? json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (root == NULL) {
        sb_worker_answer(req, SB_E_INVALID_JSON, NULL, NULL, NULL);
        return;
    }
    const char *notice_id = NULL;
    json_int_t product = 0, type = 0, notify_ms = 0;
    json_t *payload = NULL;
    if (json_unpack_ex(root, &jerr, 0, "{s:s, s?I, s:I, s?I, s:o}", "noticeId", &notice_id, "productId", &product, "eventType",
                       &type, "notifyMs", &notify_ms, "payload", &payload) != 0 ||
        !json_is_object(payload) || notice_id[0] == '\0' || strlen(notice_id) > NOTICE_ID_MAX) {
        json_decref(root);
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "not an agora notice: noticeId, eventType and a payload object are required",
                         NULL, NULL);
        return;
    }
    const char *channel = NULL, *agent = NULL;
    json_t *contents = NULL;
    if (json_unpack_ex(payload, &jerr, 0, "{s?s, s?s, s?o}", "channel", &channel, "agent_id", &agent, "contents", &contents) != 0 ||
        (channel != NULL && strlen(channel) > ENGINE_ID_MAX) || (agent != NULL && strlen(agent) > ENGINE_ID_MAX) ||
        (contents != NULL && !json_is_array(contents))) {
        json_decref(root);
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "malformed agora notice payload: channel and agent_id are short strings", NULL,
                         NULL);
        return;
    }
    if (type != EVENT_AGENT_JOINED && type != EVENT_AGENT_LEFT && type != EVENT_HISTORY) {
        json_decref(root);
        /* errors, metrics, calls: not this route's business */
        sb_worker_answer(req, SB_OK, NULL, NULL, "{\"status\":\"ignored\"}");
        return;
    }
    json_t *history = type == EVENT_HISTORY ? clean_history(contents) : NULL;
    json_t *data = json_pack("{s:s, s:I}", "source", "agora", "event_type", type);
    json_object_set_new(data, "reason",
                        json_string(type == EVENT_AGENT_JOINED ? "agent_joined"
                                    : type == EVENT_AGENT_LEFT ? "agent_left"
                                                               : "history"));
    if (agent != NULL)
        json_object_set_new(data, "agent_id", json_string(agent));
    json_t *status = json_object_get(payload, "status"), *message = json_object_get(payload, "message");
    if (json_is_string(status) && json_string_length(status) <= 64)
        json_object_set(data, "status", status);
    if (json_is_string(message) && json_string_length(message) <= 256)
        json_object_set(data, "message", message);
    char type_text[24];
    snprintf(type_text, sizeof(type_text), "%lld", (long long)type);
    char *history_text = history != NULL ? json_dumps(history, JSON_COMPACT) : NULL;
    char *data_text = json_dumps(data, JSON_COMPACT);
    const char *values[] = {notice_id, type_text, channel, agent, history_text, data_text, type == EVENT_AGENT_JOINED ? "f" : "t"};
    struct notice *x = h2o_mem_alloc_shared(&req->pool, sizeof(*x), on_dispose);
    x->req = req;
    x->query = sb_pgpool_query(w->pg, notice_sql, 7, values, on_recorded, x); /* values are copied */
    free(history_text);
    free(data_text);
    json_decref(history);
    json_decref(data);
    json_decref(root);
}
