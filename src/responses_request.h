/*
 * The inbound Responses API request (POST /v1/responses), translated into
 * the Chat Completions request the turn core takes: input items become
 * messages, flat function tools become Chat Completions tools, and the
 * result goes through sb_chat_request_parse, so every check and limit of the
 * chat channel applies. What cannot be said without server-side state
 * (previous_response_id, item references) is refused by name.
 */
#ifndef SB_RESPONSES_REQUEST_H
#define SB_RESPONSES_REQUEST_H

#include <stddef.h>

#include "conversation.h"
#include "request.h"

/*
 * Parses a Responses API body of `len` bytes into `out` (as
 * sb_chat_request_parse_body; release with sb_chat_request_dispose). `echo`
 * receives the request's parameters the response object repeats
 * (instructions, tools, tool_choice, temperature, top_p, max_output_tokens)
 * as the compact members of a JSON object without its braces: new, free() it.
 * Returns 0, or -1 with `err` filled (naming the Responses field) and
 * nothing to free.
 */
int sb_responses_request_parse_body(const char *body, size_t len, const char *default_model, const sb_engine_ids_t *ids,
                                    sb_chat_request_t *out, char **echo, sb_request_error_t *err);

#endif
