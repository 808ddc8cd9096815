/*
 * POST /v1/agora/events: Agora Conversational AI webhooks. A notice signed
 * with AGORA_WEBHOOK_SECRET (Agora-Signature-V2) that names a call's channel
 * closes the stored conversation of that call when the agent leaves (102) or
 * its history arrives (103), with a summary, and marks its start (101).
 */
#ifndef SB_AGORA_EVENTS_H
#define SB_AGORA_EVENTS_H

#include <h2o.h>

/*
 * Answers the request: 404 without AGORA_WEBHOOK_SECRET, 401 (nothing
 * written) without a valid signature, 400 on a malformed body, 503 without
 * the database, else 200 once the notice is recorded (a repeated noticeId
 * changes nothing). Loop thread; the request may go away while its statement
 * runs (the answer is then dropped, the statement lands or not on its own).
 */
void sb_agora_events_handle(h2o_req_t *req);

#endif
