/*
 * The Chat Completions channel: POST /v1/chat/completions (and its aliases)
 * from the voice engine or any OpenAI client. Checks the caller and the
 * request, and starts the turn (exchange.c) with the sink the request asks
 * for: an SSE stream, or one JSON answer.
 */
#include "chat.h"
#include "chat_sinks.h"
#include "exchange.h"
#include "request.h"
#include "worker.h"

static const sb_exchange_sink_ops_t stream_ops = {
    .ping = sb_chat_stream_ping,
    .abort = sb_chat_stream_abort,
    .dispose = sb_chat_stream_dispose,
};

static const sb_exchange_sink_ops_t json_ops = {
    .ping = NULL, /* nothing may go out before the one answer */
    .abort = sb_chat_json_abort,
    .dispose = sb_chat_json_dispose,
};

void sb_chat_handle(h2o_req_t *req)
{
    if (!sb_exchange_admit(req))
        return;
    sb_worker_t *w = sb_worker_of(req);
    sb_engine_ids_t ids;
    sb_exchange_engine_ids(req, &ids);
    sb_chat_request_t creq;
    sb_request_error_t err;
    if (sb_chat_request_parse_body(req->entity.base, req->entity.len, w->config->default_model, &ids, &creq, &err) != 0) {
        sb_exchange_refuse(req, err.kind, err.message, err.param);
        return;
    }
    if (!sb_exchange_conversation(req, &creq))
        return;
    sb_chat_out_t *out = sb_exchange_open(req, &creq, "chatcmpl-");
    if (creq.stream)
        sb_exchange_start(out, &creq, sb_chat_stream_sink(out), &stream_ops);
    else
        sb_exchange_start(out, &creq, sb_chat_json_sink(out), &json_ops);
}
