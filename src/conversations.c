/*
 * One stored conversation as JSON (conversations.h). The owner's digest is
 * made from the bearer token exactly as a turn makes it (conversation.h), so
 * a key reads its own conversations and nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "conversation.h"
#include "conversations.h"
#include "respond.h"
#include "sb/log.h"
#include "worker.h"

#define ID_MAX 128
/* The newest messages and events returned: a ceiling on the answer. */
#define ROWS_MAX "2000"

/*
 * The conversation whose key is $1 (the owner's digest with the client's
 * id), or, when $3 is a number, the one of that number owned by $2; a key
 * match wins. The whole answer is built by Postgres.
 */
static const char read_sql[] =
    "SELECT json_build_object('id', c.id, 'conversation_id', c.client_id, 'agent', c.agent, 'started_at', c.started_at, "
    "  'last_at', c.last_at, 'closed_at', c.closed_at, 'summary', c.summary, "
    "  'messages', (SELECT coalesce(json_agg(json_build_object('role', m.role, 'content', m.content, 'tool_calls', m.tool_calls, "
    "    'tool_call_id', m.tool_call_id, 'agent', m.agent, 'turn_id', m.turn_id, 'at', m.created_at) ORDER BY m.seq), '[]') "
    "    FROM (SELECT * FROM messages WHERE conversation = c.id ORDER BY seq DESC LIMIT " ROWS_MAX ") m), "
    "  'events', (SELECT coalesce(json_agg(json_build_object('kind', e.kind, 'data', e.data, 'at', e.at) ORDER BY e.at, e.seq), "
    "    '[]') FROM (SELECT * FROM conversation_events WHERE conversation = c.id ORDER BY at DESC, seq DESC LIMIT " ROWS_MAX
    ") e)) "
    "FROM conversations c WHERE c.key = $1 OR (c.owner = $2 AND c.id::text = $3) ORDER BY (c.key = $1) DESC LIMIT 1";

struct read {
    h2o_req_t *req;
    sb_pgquery_t *query;
};

static int valid_id(const char *s, size_t len)
{
    if (len == 0 || len > ID_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == ':' || ch == '-'))
            return 0;
    }
    return 1;
}

static void on_dispose(void *p)
{
    struct read *x = p;
    if (x->query != NULL)
        sb_pgquery_cancel(x->query);
}

static void on_read(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    struct read *x = data;
    x->query = NULL;
    if (err != SB_OK) {
        sb_log_warn("conversations: not read: %s (SQLSTATE %s)", sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
        sb_worker_answer(x->req, err, NULL, NULL, NULL);
        return;
    }
    if (PQntuples(res) != 1) {
        sb_worker_answer(x->req, SB_E_NOT_FOUND, "no such conversation", NULL, NULL);
        return;
    }
    sb_worker_answer(x->req, SB_OK, NULL, NULL,
                     h2o_strdup(&x->req->pool, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0)).base);
}

void sb_conversations_handle(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    ssize_t hi = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    h2o_iovec_t auth = hi >= 0 ? req->headers.entries[hi].value : h2o_iovec_init(NULL, 0);
    if (!sb_auth_check(auth.base, auth.len)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        sb_worker_answer(req, SB_E_UNAUTHORIZED, NULL, NULL, NULL);
        return;
    }
    h2o_iovec_t path = req->path_normalized;
    size_t skip = strlen(SB_CONVERSATIONS_PREFIX);
    const char *id = path.base + skip;
    size_t len = path.len - skip;
    if (!valid_id(id, len)) {
        sb_worker_answer(req, SB_E_NOT_FOUND, "no such conversation", NULL, NULL);
        return;
    }
    if (w->pg == NULL) {
        sb_worker_answer(req, SB_E_DB_UNAVAILABLE, "conversations need the database (DATABASE_URL)", NULL, NULL);
        return;
    }
    /* the token as a turn takes it (exchange.c): its digest owns the conversation */
    size_t tlen;
    const char *token = sb_auth_token(auth.base, auth.len, &tlen);
    char client_id[ID_MAX + 1], key[33], owner[33];
    memcpy(client_id, id, len);
    client_id[len] = '\0';
    if (sb_conversation_key(token, tlen, client_id, NULL, key, owner) != 0) {
        sb_worker_answer(req, SB_E_NOT_FOUND, "no such conversation", NULL, NULL);
        return;
    }
    int number = strspn(client_id, "0123456789") == len && len <= 18;
    const char *values[] = {key, owner, number ? client_id : NULL};
    struct read *x = h2o_mem_alloc_shared(&req->pool, sizeof(*x), on_dispose);
    x->req = req;
    x->query = sb_pgpool_query(w->pg, read_sql, 3, values, on_read, x);
}
