/*
 * The session API's routes: POST /v1/sessions (a key holder creates a session
 * and gets its short-lived token) and GET /v1/sessions/{id}/ws (a browser
 * or any client connects with the token: Sec-WebSocket-Protocol or
 * ?token=, never logged). The live session is session.c's.
 */
#ifndef SB_SESSIONS_H
#define SB_SESSIONS_H

#include <h2o.h>

#define SB_SESSIONS_PATH "/v1/sessions"
#define SB_SESSIONS_PREFIX "/v1/sessions/"

void sb_sessions_create(h2o_req_t *req);
void sb_sessions_connect(h2o_req_t *req);

#endif
