/*
 * One turn over HTTP, whatever the channel's wire format: the checks every
 * turn route makes before reading its body, the refusal of a bad request,
 * and the exchange that owns a started turn (the hang-up watch on an HTTP/1
 * caller, the drain hooks, the access-log line). A channel (chat.c,
 * responses.c) validates its own request, opens an exchange, makes its sink
 * with the exchange's sb_chat_out_t, and starts it. Loop thread only.
 */
#ifndef SB_EXCHANGE_H
#define SB_EXCHANGE_H

#include <h2o.h>

#include "chat_sinks.h"
#include "conversation.h"
#include "request.h"
#include "sink.h"

/* What the exchange asks of a channel's sink beyond the turn's events. One const table per kind of sink. */
typedef struct sb_exchange_sink_ops {
    /* Asks an HTTP/1 caller whether it still reads (a keep-alive write); 1 when one went out. NULL: the sink cannot. */
    int (*ping)(sb_sink_t *sink);
    /* The caller is gone and h2o has not noticed: end the response as failed, at once. */
    void (*abort)(sb_sink_t *sink);
    /* The request's pool is going away: let go of what the sink holds outside it. */
    void (*dispose)(sb_sink_t *sink);
} sb_exchange_sink_ops_t;

/*
 * The checks before a turn route reads its body: draining, the bearer key,
 * the body's size, an empty body. Returns 1 to go on, or 0 when the request
 * was answered (refused) already.
 */
int sb_exchange_admit(h2o_req_t *req);
/* Answers a request refused before its turn started with the error (message, param may be NULL), logged and counted. */
void sb_exchange_refuse(h2o_req_t *req, sb_error_t e, const char *message, const char *param);
/* The engine's ids for the call from its headers (borrowed from the request). */
void sb_exchange_engine_ids(h2o_req_t *req, sb_engine_ids_t *ids);

/*
 * Names the stored conversation of a validated request: the client's
 * X-Conversation-Id (checked like the body's conversation_id), and the key
 * and owner digests of sb_conversation_key from the bearer key. Returns 1 to
 * go on, or 0 when the request was refused (a malformed or conflicting id).
 */
int sb_exchange_conversation(h2o_req_t *req, sb_chat_request_t *creq);

/*
 * Opens the exchange for a validated request (its trace ids are set here):
 * allocated from the request's pool, with out->id `id_prefix` and a fresh
 * id. The channel makes its sink with the returned sb_chat_out_t (borrowed
 * for the request's life) and then calls sb_exchange_start.
 */
sb_chat_out_t *sb_exchange_open(h2o_req_t *req, sb_chat_request_t *creq, const char *id_prefix);
/* Starts the turn for `creq` (its contents taken) telling `sink`, driven through `ops` (static). */
void sb_exchange_start(sb_chat_out_t *out, sb_chat_request_t *creq, sb_sink_t *sink, const sb_exchange_sink_ops_t *ops);

#endif
