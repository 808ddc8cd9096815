/*
 * CORS for browser clients: the Access-Control-* headers for the origins in
 * CORS_ORIGINS, and the answer to a preflight. Runs on the worker's thread.
 */
#ifndef SB_CORS_H
#define SB_CORS_H

#include <h2o.h>

#include "sb/config.h"

/* Checks CORS_ORIGINS at start-up (each an origin, scheme://host[:port], or *); 0, or -1 with err. */
int sb_cors_check(const sb_config_t *c, char *err, size_t errlen);
/* Adds the CORS headers to the answer `req` is about to get, when its Origin is allowed. Before the response starts. */
void sb_cors_headers(h2o_req_t *req, const sb_config_t *c);
/*
 * Answers an OPTIONS request on a route that serves `methods` (its Allow
 * list): a preflight from an allowed origin gets 204 with what it may send,
 * from another origin 403; an OPTIONS without Origin gets 204 with Allow.
 */
void sb_cors_preflight(h2o_req_t *req, const sb_config_t *c, unsigned worker, const char *methods);

/*
 * Whether a WebSocket handshake may go on: a request without Origin (not a
 * browser), or one whose Origin is in CORS_ORIGINS or is this server itself
 * (the console's page). Browsers do not apply CORS to WebSockets, so the
 * server must.
 */
int sb_cors_socket_allowed(h2o_req_t *req, const sb_config_t *c);

#endif
