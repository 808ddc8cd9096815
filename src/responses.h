/*
 * The Responses API channel (responses.c): the HTTP handler behind
 * POST /v1/responses. It answers on the worker's loop thread.
 */
#ifndef SB_RESPONSES_H
#define SB_RESPONSES_H

#include <h2o.h>

/* Handles one Responses API request: refuses it with an OpenAI error, or starts its turn. */
void sb_responses_handle(h2o_req_t *req);

#endif
