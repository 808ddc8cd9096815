/*
 * The turn core: one chat turn as a state machine, from a validated request
 * to its end. It retrieves knowledge, asks the provider, runs switchboard's
 * tools between rounds, and tells a sink (sink.h) what happens; it knows no
 * wire format and no transport. Runs on one worker's loop.
 *
 *     remembering ──▶ (routing) ──▶ retrieving ──▶ asking ──▶ done
 *                                     ▲  │
 *                                     │  ▼
 *                                running tools
 *
 * Routing happens only when the intent classifier is unsure and the LLM
 * router is on (agent_route.h, router.h).
 */
#ifndef SB_TURN_H
#define SB_TURN_H

#include <uv.h>

#include "agent_route.h"
#include "llm.h"
#include "memory.h"
#include "request.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/pgpool.h"
#include "sink.h"

typedef struct sb_turn sb_turn_t;

/* What a turn uses, borrowed for its life: the worker's loop, pool, curl multi and provider. */
typedef struct sb_turn_env {
    const sb_config_t *config;
    uv_loop_t *loop;
    sb_pgpool_t *pg; /* NULL without DATABASE_URL */
    sb_curlm_t *curlm;
    const sb_provider_t *provider;
    const sb_llm_env_t *llm;
    sb_memory_t *memory; /* NULL: the turn recalls nothing (MEMORY off, no database) */
} sb_turn_env_t;

typedef enum sb_turn_phase {
    SB_TURN_REMEMBERING,   /* the conversation's stored history loading (MEMORY_TIMEOUT_MS), before anything else */
    SB_TURN_ROUTING,       /* the LLM router naming the agent (ROUTER_TIMEOUT_MS), when the classifier is unsure */
    SB_TURN_RETRIEVING,    /* retrieval in flight, before the first round */
    SB_TURN_ASKING,        /* a provider round in flight */
    SB_TURN_RUNNING_TOOLS, /* the round's calls of switchboard's tools in flight */
    SB_TURN_DONE,          /* done was emitted, or the turn was stopped */
} sb_turn_phase_t;

/*
 * Starts a turn for `creq` (its contents taken) on `env`, telling `sink`
 * what happens and then `observer` and the observers chained after it
 * (sink.h `next`; may be NULL); all borrowed until done.
 * The first events come from the loop, never from inside this call.
 */
sb_turn_t *sb_turn_start(const sb_turn_env_t *env, sb_chat_request_t *creq, sb_sink_t *sink, sb_sink_t *observer);
/*
 * Ends the turn now: what runs is stopped, and done follows at once with
 * `error` (its `message` and `how` for the access log). Nothing when the turn
 * is done already. The drain deadline uses it.
 */
void sb_turn_stop(sb_turn_t *t, sb_error_t error, const char *message, const char *how);
/* Frees the turn. A turn that is not done stops first, silently: the caller left. */
void sb_turn_release(sb_turn_t *t);
sb_turn_phase_t sb_turn_phase(const sb_turn_t *t);
/* Retrieval's outcome for the access log (hit, miss, timeout, error, off); the tools the client's own shadowed. */
const char *sb_turn_retrieval(const sb_turn_t *t);
const sb_chat_request_t *sb_turn_request(const sb_turn_t *t);
/* The turn's agent and strategy (agent_route.h), decided when it started; its agent is NULL with agents off. */
const sb_agent_decision_t *sb_turn_agent(const sb_turn_t *t);

#endif
