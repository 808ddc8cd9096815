/*
 * GET /v1/conversations/{id}: one stored conversation, its transcript, its
 * events and its summary, for the inbound key that owns it.
 */
#ifndef SB_CONVERSATIONS_H
#define SB_CONVERSATIONS_H

#include <h2o.h>

/* The prefix of the route; what follows it is the id. */
#define SB_CONVERSATIONS_PREFIX "/v1/conversations/"

/*
 * Answers the request (bearer key required). {id} is the conversation_id the
 * client sent, or the number switchboard gave the conversation; either way it
 * is found only under the key that created it: 404 otherwise, as for an
 * unknown one. Loop thread; the request may go away while the read runs.
 */
void sb_conversations_handle(h2o_req_t *req);

#endif
