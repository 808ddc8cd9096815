/*
 * The Chat Completions channel (chat.c): the HTTP handler behind the chat
 * routes. It answers on the worker's loop thread.
 */
#ifndef SB_CHAT_H
#define SB_CHAT_H

#include <h2o.h>

/* Handles one chat completions request: refuses it with an OpenAI error, or starts its turn. */
void sb_chat_handle(h2o_req_t *req);

#endif
