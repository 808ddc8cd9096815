/*
 * The Responses API channel's two sinks (sink.h): the streamed `response.*`
 * events (`stream: true`) and the one response object (`stream: false`).
 * They write into the h2o response of the request they were made for; the
 * channel (responses.c) owns both the sink and the turn through its exchange.
 */
#ifndef SB_RESPONSES_SINK_H
#define SB_RESPONSES_SINK_H

#include "chat_sinks.h"
#include "sink.h"

/*
 * A sink for out->req (out->id is the response's "resp_..." id). `echo` is the
 * request's repeated parameters as compact JSON members (responses_request.h),
 * copied. `live`: the SSE events, else one JSON object at done. Allocated from
 * the request's pool; sb_responses_sink_dispose frees what it holds.
 */
sb_sink_t *sb_responses_sink(sb_chat_out_t *out, const char *echo, int live);
/* Asks the client whether it still reads: a keep-alive comment, if a stream has started. 1 when one went out. */
int sb_responses_sink_ping(sb_sink_t *sink);
/* The client is gone (the hang-up watch saw it): ends the response as failed, at once. */
void sb_responses_sink_abort(sb_sink_t *sink);
void sb_responses_sink_dispose(sb_sink_t *sink);

#endif
