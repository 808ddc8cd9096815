/*
 * A turn's instructions, in layers. The order, highest first (what the model
 * reads first): the agent's (with its hand-over and strategy lines), the
 * deployment's (PLATFORM_INSTRUCTIONS), the inbound key's team's
 * (TEAM_INSTRUCTIONS_FILE), then the caller's own system messages as they
 * came, then what later steps add after those (memory, retrieved passages).
 * The first three become system messages in front of the caller's own.
 */
#ifndef SB_INSTRUCTIONS_H
#define SB_INSTRUCTIONS_H

#include "agent_route.h"
#include "request.h"
#include "sb/config.h"

#define SB_INSTRUCTIONS_MAX_FILE (64u << 10) /* bytes of PLATFORM_INSTRUCTIONS_FILE, and of one team's instructions */

/*
 * Reads the platform's and the teams' instructions the settings name; every
 * team a key names must have some. 0, or -1 with err naming the setting. Once,
 * at start-up, after sb_config_load.
 */
int sb_instructions_init(const sb_config_t *config, char *err, size_t errlen);
void sb_instructions_dispose(void);
/*
 * Routes the turn to its agent when agents are on (agent_route.h), from the
 * request's words, its explicit choice and the agent memory recalled (r is
 * read only), into *out (agent NULL: agents are off). `chosen` is the agent
 * the router named, NULL before it is asked. Pure.
 */
void sb_instructions_route(const sb_chat_request_t *r, const struct sb_agent *chosen, sb_agent_decision_t *out);
/*
 * Lets the decided agent (d->agent NULL: none) shape the request (model,
 * sampling, tools), then puts the layers in front of the caller's messages.
 * Once, before the first round and before sb_chat_request_offer_tools.
 */
void sb_instructions_apply(sb_chat_request_t *r, const sb_agent_decision_t *d);

#endif
