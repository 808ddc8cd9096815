/*
 * A live session over WebSocket: the session protocol (README "Sessions")
 * on an accepted token. The client sends `message`, `cancel`, `ping` and
 * `end`; the server answers with `ready`, `history`, `agent`, `token`,
 * `tool_call`, `tool_result`, `retrieval`, `done`, `error` and `pong`. Each
 * message is a turn of the turn core (the same agents, tools, retrieval,
 * memory and event log as the HTTP endpoint) with a sink that writes these
 * JSON messages; a new message while an answer streams stops the old one
 * (barge-in). Loop thread only.
 */
#ifndef SB_SESSION_H
#define SB_SESSION_H

#include <h2o.h>

#include "session_token.h"

/*
 * Takes over `req` (a WebSocket handshake, HTTP/1, whose token gave
 * `claims`) and runs the session until the socket closes; `protocol` is the
 * subprotocol to name in the 101 (NULL: none). With `expired`, the socket
 * only says so (an `error` of category session_expired) and closes: a browser
 * cannot read an HTTP status from a refused handshake.
 */
void sb_session_accept(h2o_req_t *req, h2o_iovec_t key, const char *protocol, const sb_session_claims_t *claims, int expired);

#endif
