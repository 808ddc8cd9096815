/*
 * Retell AI's custom LLM WebSocket (Retell's "LLM WebSocket" reference):
 * Retell connects to GET /v1/retell/llm-websocket/{call_id}?secret=... for
 * each call, sends the live transcript, and asks for answers by response_id;
 * switchboard streams each answer back as `response` events, through the
 * same turn core, agents, tools, retrieval and memory as Agora's HTTP turns.
 * Loop thread only.
 */
#ifndef SB_RETELL_H
#define SB_RETELL_H

#include <h2o.h>

#define SB_RETELL_PREFIX "/v1/retell/llm-websocket/"

/*
 * The route's handler: checks RETELL_SECRET (the query's secret=, compared
 * in constant time, never logged) and the call id before any upgrade, then
 * holds the call's socket until it closes. Off (404) without RETELL_SECRET.
 */
void sb_retell_connect(h2o_req_t *req);

#endif
