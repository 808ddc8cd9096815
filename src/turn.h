/*
 * One chat turn: the request's state machine from a validated request to the
 * last byte sent. Lives in the request's memory pool; everything it holds
 * outside the pool (the provider call, timers, buffers) is released by the
 * pool's dispose hook, whatever way the turn ends.
 */
#ifndef SB_TURN_H
#define SB_TURN_H

#include <h2o.h>

#include "request.h"

/*
 * Starts the turn for `req`, taking ownership of `creq`'s contents. The
 * response (stream or JSON) follows asynchronously.
 */
void sb_turn_start(h2o_req_t *req, sb_chat_request_t *creq, const char *request_id);

/* The liveness probe found the HTTP/1 client gone: ends the turn at once. `link` is the turn's worker link. */
void sb_turn_client_gone(h2o_linklist_t *link);
/*
 * The drain deadline passed: ends the turn for its caller at once (an error
 * event "server shutting down" and [DONE], or a 503 before the first byte),
 * with its access-log line ending "shutdown". `link` is the turn's worker link.
 */
void sb_turn_shutdown(h2o_linklist_t *link);
/* The process is exiting with the turn still open (its reader did not take its last bytes): logs it and unlinks it. */
void sb_turn_exiting(h2o_linklist_t *link);
/*
 * The HTTP/1 client on `fd` sent a FIN: it may be gone, or it only closed its
 * sending side (shutdown(SHUT_WR)) and still reads. A closed socket answers
 * bytes with a reset, so the turn asks (a keep-alive comment in a stream, an
 * interim "100 Continue" before the answer; at most every 200 ms) and reads
 * the connection's state. Returns -1 when the client is gone, 1 when it was
 * just asked (probe again soon), 0 otherwise.
 */
int sb_turn_client_fin(h2o_linklist_t *link, int fd, uint64_t now);
/* The HTTP/1 socket the turn's client is on, or -1 (HTTP/2, or already gone). */
int sb_turn_probe_fd(h2o_linklist_t *link, uint64_t now, uint64_t quiet_ms);

#endif
