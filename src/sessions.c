/*
 * The session API's two routes. Creating a session is a server's call, with
 * an inbound key; connecting is a browser's, with the token the first
 * returned. Everything a connect brings is checked before the upgrade: the
 * token's signature, that it names this session, and the page's origin.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "conversation.h"
#include "cors.h"
#include "live.h"
#include "respond.h"
#include "session.h"
#include "sessions.h"
#include "worker.h"
#include "ws.h"

#define BODY_MAX 4096 /* POST /v1/sessions takes a few small fields */

/* --- POST /v1/sessions ------------------------------------------------------------------------- */

/* The optional body: {"id": an earlier session to go on with, "ttl_s": a shorter token life}. 0, or -1 refused. */
static int read_body(h2o_req_t *req, char id[SB_SESSION_ID_MAX + 1], unsigned *ttl)
{
    if (req->entity.base == NULL || req->entity.len == 0)
        return 0;
    if (req->entity.len > BODY_MAX) {
        sb_worker_answer(req, SB_E_BODY_TOO_LARGE, NULL, NULL, NULL);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
    const char *given = NULL;
    json_int_t want = 0;
    if (root == NULL) {
        sb_worker_answer(req, SB_E_INVALID_JSON, NULL, NULL, NULL);
        return -1;
    }
    int rc = json_unpack_ex(root, &jerr, JSON_STRICT, "{s?s, s?I}", "id", &given, "ttl_s", &want);
    if (rc != 0) {
        json_decref(root);
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "the body may hold id (a string) and ttl_s (an integer), nothing else", NULL,
                         NULL);
        return -1;
    }
    if (given != NULL && !sb_session_id_valid(given, strlen(given))) {
        json_decref(root);
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "id: 1 to 64 letters, digits, '_' or '-'", NULL, NULL);
        return -1;
    }
    if (want < 0 || (json_int_t)*ttl < want) {
        json_decref(root);
        sb_worker_answer(req, SB_E_INVALID_REQUEST, "ttl_s: 1 second up to SESSION_TOKEN_TTL_S", NULL, NULL);
        return -1;
    }
    if (given != NULL)
        snprintf(id, SB_SESSION_ID_MAX + 1, "%s", given);
    if (want > 0)
        *ttl = (unsigned)want;
    json_decref(root);
    return 0;
}

void sb_sessions_create(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    if (!c->sessions) {
        sb_worker_answer(req, SB_E_NOT_FOUND, "sessions are off (SESSIONS=false)", NULL, NULL);
        return;
    }
    if (w->draining) {
        sb_worker_answer(req, SB_E_SHUTTING_DOWN, NULL, NULL, NULL);
        return;
    }
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    const char *auth = at >= 0 ? req->headers.entries[at].value.base : NULL;
    size_t alen = at >= 0 ? req->headers.entries[at].value.len : 0;
    if (!sb_auth_check(auth, alen)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        sb_worker_answer(req, SB_E_UNAUTHORIZED, NULL, NULL, NULL);
        return;
    }
    sb_session_claims_t claims = {0};
    unsigned ttl = c->session_token_ttl_s;
    if (read_body(req, claims.id, &ttl) != 0)
        return;
    if (claims.id[0] == '\0') {
        char rnd[25];
        sb_respond_new_id(rnd, sizeof(rnd));
        snprintf(claims.id, sizeof(claims.id), "sess_%s", rnd);
    }
    size_t tlen;
    const char *token = sb_auth_token(auth, alen, &tlen); /* "" when none: unauthenticated local use */
    sb_conversation_owner(token, tlen, claims.owner);
    const char *team = sb_auth_team(auth, alen);
    snprintf(claims.team, sizeof(claims.team), "%s", team != NULL ? team : "");
    claims.expires = (uint64_t)time(NULL) + ttl;
    char minted[SB_SESSION_TOKEN_MAX];
    sb_session_token_mint(&claims, minted);
    char body[SB_SESSION_TOKEN_MAX + 256];
    int n = snprintf(body, sizeof(body),
                     "{\"object\":\"session\",\"id\":\"%s\",\"token\":\"%s\",\"expires_at\":%llu,\"url\":\"" SB_SESSIONS_PREFIX
                     "%s/ws\",\"protocol\":\"switchboard.v1\"}",
                     claims.id, minted, (unsigned long long)claims.expires, claims.id);
    sodium_memzero(minted, sizeof(minted));
    sb_respond_body(req, c->access_log, w->id, 201, "application/json", body, (size_t)n);
    sodium_memzero(body, sizeof(body));
}

/* --- GET /v1/sessions/{id}/ws ------------------------------------------------------------------ */

/*
 * The token a connect carries: an entry of Sec-WebSocket-Protocol that
 * starts "sbs1." (browsers can set no other header on a WebSocket), else the
 * query's token=. `offered` tells whether the client offered the
 * switchboard.v1 subprotocol (it is then named in the 101).
 */
static h2o_iovec_t connect_token(h2o_req_t *req, int *offered, h2o_iovec_t *entry)
{
    *offered = 0;
    *entry = h2o_iovec_init(NULL, 0);
    h2o_iovec_t found = {NULL, 0};
    ssize_t at = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-protocol"), -1);
    if (at >= 0) {
        h2o_iovec_t v = req->headers.entries[at].value;
        for (const char *p = v.base, *end = v.base + v.len; p < end;) {
            while (p < end && (*p == ' ' || *p == ','))
                ++p;
            const char *q = p;
            while (q < end && *q != ',' && *q != ' ')
                ++q;
            size_t n = (size_t)(q - p);
            if (h2o_memis(p, n, H2O_STRLIT("switchboard.v1")))
                *offered = 1;
            else if (n > 5 && memcmp(p, "sbs1.", 5) == 0)
                found = *entry = h2o_iovec_init(p, n);
            p = q;
        }
    }
    if (found.base != NULL)
        return found;
    found = sb_ws_query_param(req, "token");
    return found.len > 0 ? found : h2o_iovec_init(NULL, 0);
}

void sb_sessions_connect(h2o_req_t *req)
{
    sb_worker_t *w = sb_worker_of(req);
    const sb_config_t *c = w->config;
    h2o_iovec_t path = req->path_normalized;
    size_t plen = sizeof(SB_SESSIONS_PREFIX) - 1;
    const char *id = path.base + plen;
    size_t idlen = path.len - plen;
    if (!c->sessions || idlen <= 3 || memcmp(path.base + path.len - 3, "/ws", 3) != 0 || !sb_session_id_valid(id, idlen - 3)) {
        sb_worker_answer(req, SB_E_NOT_FOUND, NULL, NULL, NULL);
        return;
    }
    idlen -= 3;
    if (w->draining) {
        sb_worker_answer(req, SB_E_SHUTTING_DOWN, NULL, NULL, NULL);
        return;
    }
    h2o_iovec_t key;
    if (!sb_live_handshake(req, &key))
        return;
    if (!sb_cors_socket_allowed(req, c)) {
        sb_worker_answer(req, SB_E_ORIGIN_NOT_ALLOWED, NULL, NULL, NULL);
        return;
    }
    int offered;
    h2o_iovec_t entry;
    h2o_iovec_t token = connect_token(req, &offered, &entry);
    sb_session_claims_t claims;
    sb_session_token_verdict_t verdict =
        token.base != NULL ? sb_session_token_verify(token.base, token.len, (uint64_t)time(NULL), &claims) : SB_TOKEN_FORGED;
    if (verdict == SB_TOKEN_FORGED) {
        sb_worker_answer(req, SB_E_UNAUTHORIZED, "missing or invalid session token (POST /v1/sessions)", NULL, NULL);
        return;
    }
    if (strlen(claims.id) != idlen || memcmp(claims.id, id, idlen) != 0) {
        sb_worker_answer(req, SB_E_UNAUTHORIZED, "the session token is for another session", NULL, NULL);
        return;
    }
    /* a client that offered subprotocols must get one of them back, or a browser drops the connection */
    const char *protocol = offered ? "switchboard.v1" : NULL;
    if (!offered && entry.base != NULL)
        protocol = h2o_strdup(&req->pool, entry.base, entry.len).base;
    sb_live_log_upgrade(w, SB_SESSIONS_PREFIX "ws", verdict == SB_TOKEN_EXPIRED ? "expired" : "upgraded");
    sb_session_accept(req, key, protocol, &claims, verdict == SB_TOKEN_EXPIRED);
}
