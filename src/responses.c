/*
 * The Responses API channel: POST /v1/responses, for clients that speak
 * OpenAI's Responses API (the openai SDKs' responses.create, the AI SDK's
 * default openai(model)). Same key and limits as the chat channel: the
 * request is translated into a chat request (responses_request.c) and its
 * turn runs through the same exchange, told to a Responses sink.
 */
#include <stdlib.h>

#include "exchange.h"
#include "responses.h"
#include "responses_request.h"
#include "responses_sink.h"
#include "worker.h"

static const sb_exchange_sink_ops_t sink_ops = {
    .ping = sb_responses_sink_ping, /* answers 0 for the one-object sink: nothing may go out before it */
    .abort = sb_responses_sink_abort,
    .dispose = sb_responses_sink_dispose,
};

void sb_responses_handle(h2o_req_t *req)
{
    if (!sb_exchange_admit(req))
        return;
    sb_worker_t *w = sb_worker_of(req);
    sb_engine_ids_t ids;
    sb_exchange_engine_ids(req, &ids);
    sb_chat_request_t creq;
    sb_request_error_t err;
    char *echo;
    if (sb_responses_request_parse_body(req->entity.base, req->entity.len, w->config->default_model, &ids, &creq, &echo, &err) !=
        0) {
        sb_exchange_refuse(req, err.kind, err.message, err.param);
        return;
    }
    if (!sb_exchange_conversation(req, &creq)) {
        free(echo);
        return;
    }
    sb_chat_out_t *out = sb_exchange_open(req, &creq, "resp_");
    sb_sink_t *sink = sb_responses_sink(out, echo, creq.stream);
    free(echo);
    sb_exchange_start(out, &creq, sink, &sink_ops);
}
