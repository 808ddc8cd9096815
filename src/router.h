/*
 * The LLM router: when the intent classifier is unsure of a turn
 * (agent_route.h), a short call of ROUTER_MODEL through the routed provider
 * (any API the provider table speaks) names the agent that should answer.
 * No tools, temperature 0, a few tokens; the prompt lists each agent's name
 * and routing description, the conversation's agent and the caller's last
 * words. It runs on the turn's loop within ROUTER_TIMEOUT_MS: a timeout, an
 * error or an answer that is not exactly one agent's name leaves the
 * classifier's choice, and the call is cancelled at once. The caller's words
 * may try to steer it; the worst they can do is pick one of the deployment's
 * own agents, which an explicit choice could do anyway.
 */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include "agent_route.h"
#include "llm.h"

#define SB_ROUTER_MAX_TOKENS 16     /* what the router may say: an agent's name is a few tokens */
#define SB_ROUTER_ANSWER_MAX 64     /* bytes of its answer read; a longer one is unusable and the call ends there */
#define SB_ROUTER_UTTERANCE_MAX 600 /* bytes of each of the caller's utterances it is shown, cut at a character */
#define SB_ROUTER_EARLIER 2         /* the caller's earlier utterances it is shown, the newest ones */

typedef struct sb_router_call sb_router_call_t;

/* What the router came back with. */
typedef struct sb_router_result {
    const sb_agent_t *agent; /* the agent it named (the process's table); NULL unless outcome is "chosen" */
    const char *outcome;     /* chosen, timeout, error (the provider failed), unusable (no single agent's name) */
    double ms;               /* from start to this result */
} sb_router_result_t;

typedef void (*sb_router_done_cb)(void *data, const sb_router_result_t *result);

/* Whether the settings turn the router on (ROUTER_MODEL set and not empty). */
int sb_router_enabled(const sb_config_t *config);
/*
 * Asks ROUTER_MODEL, through `provider` on `env` (both borrowed until the
 * result), which agent should answer the turn of `r` (read during this call
 * only) that `d` decided without it; d->previous is the conversation's agent.
 * `cb` hears the result once, from the loop (never from inside this call),
 * unless sb_router_cancel comes first. Never NULL.
 */
sb_router_call_t *sb_router_start(const sb_provider_t *provider, const sb_llm_env_t *env, const sb_chat_request_t *r,
                                  const sb_agent_decision_t *d, sb_router_done_cb cb, void *data);
/* Stops the call (its provider call is cancelled at once); the callback will not run. */
void sb_router_cancel(sb_router_call_t *c);
/*
 * The agent a router's answer (`len` bytes) names: one agent's name of
 * `agents`, case-insensitive, with nothing around it but white space.
 * NULL for anything else.
 */
const sb_agent_t *sb_router_answer(const sb_agents_t *agents, const char *text, size_t len);

#endif
