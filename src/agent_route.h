/*
 * Routing a turn to an agent, and the turn's response strategy. Stateless:
 * the decision is made again on every turn from the request (the engine
 * sends the whole short-term history) and the agent its stored conversation
 * names, so any replica makes the same one; the router's answer (step 5) is
 * an input like the others, and the decision itself stays pure. The rule,
 * in order:
 *
 *   1. explicit: the request names the agent (llm.params.agent, or model
 *      "agent:<name>"); the router is never asked;
 *   2. the conversation's agent: the earlier user messages are replayed
 *      through steps 3 and 4, oldest first, to find the agent the previous
 *      turn had. Words cannot replay what the router or an explicit choice
 *      decided: when memory recalled the stored conversation and it names
 *      another agent for its last stored turn (the store not behind the
 *      client's history: memory.h), that agent is the conversation's, as if
 *      words had chosen it. Without memory, a router's choice is not
 *      remembered: the next turn asks the router again only if the
 *      classifier is unsure of its own words (below);
 *   3. classifier: the caller's last utterance is scored for every agent
 *      (classify.h). With no conversation agent yet (or only the default
 *      agent, which nothing chose), the best score at or above
 *      SB_ROUTE_MIN_SCORE wins; otherwise the profiles' default agent;
 *   4. sticky: with a conversation agent, it keeps the turn unless another
 *      agent's score beats its own by SB_ROUTE_SWITCH_MARGIN or more; then
 *      the new agent takes over and is told so (the hand-over line);
 *   5. router (only with ROUTER_MODEL set, router.h): when the classifier is
 *      unsure, a short model call names the agent within ROUTER_TIMEOUT_MS;
 *      an answer that names exactly one agent wins (routed_by router), and a
 *      timeout, an error or any other answer leaves steps 3 and 4's choice.
 *
 * The classifier is unsure of an utterance (decision.unsure) when, without
 * an explicit choice:
 *   - on a first choice (no conversation agent, or only the default agent
 *     that nothing chose): no agent reaches SB_ROUTE_MIN_SCORE (the default
 *     agent would answer), or the second best score is within
 *     SB_ROUTE_UNSURE_MARGIN of the best;
 *   - with a conversation agent: another agent reaches SB_ROUTE_MIN_SCORE
 *     and beats the conversation's agent, but by less than
 *     SB_ROUTE_SWITCH_MARGIN (step 4 keeps the conversation's agent).
 * A sure classifier never calls the router: those turns pay nothing for it.
 *
 * The strategy, first match wins: wrapping up (the caller is closing:
 * "thanks, that's all"), tool-heavy (tools were used in this conversation,
 * or the utterance carries a number of three digits or more, like an order
 * or ticket number, and the agent has tools), analytical (the caller asks
 * why or how, to explain or compare, or speaks 30 words or more), else
 * concise. It sets the token limit (the agent's max_tokens times 1, 2, 1 and
 * 1/2 for concise, analytical, tool-heavy and wrapping up) and one line of
 * the instructions.
 */
#ifndef SB_AGENT_ROUTE_H
#define SB_AGENT_ROUTE_H

#include "agents.h"
#include "sb/str.h"

#define SB_ROUTE_MIN_SCORE 1.0f     /* an utterance below this for every agent routes nowhere by itself */
#define SB_ROUTE_SWITCH_MARGIN 3.0f /* how much better another agent must score to take over a conversation */
#define SB_ROUTE_UNSURE_MARGIN 1.0f /* a first choice this close to the runner-up is unsure */
#define SB_ROUTE_HISTORY 16         /* earlier user messages replayed, the newest ones */

typedef enum sb_routed_by {
    SB_ROUTED_EXPLICIT,   /* the request named the agent */
    SB_ROUTED_CLASSIFIER, /* the caller's words chose it (a first choice, or a clear change of topic) */
    SB_ROUTED_STICKY,     /* the conversation was with it already */
    SB_ROUTED_DEFAULT,    /* nothing chose: the profiles' default agent */
    SB_ROUTED_ROUTER,     /* the classifier was unsure and the LLM router named it */
} sb_routed_by_t;

typedef enum sb_strategy {
    SB_STRATEGY_CONCISE,
    SB_STRATEGY_ANALYTICAL,
    SB_STRATEGY_TOOL_HEAVY,
    SB_STRATEGY_WRAPPING_UP,
} sb_strategy_t;

/*
 * One turn's decision: what the access log reports and the event log will
 * record. Its pointers are the process's agent table's (static after start-up).
 */
typedef struct sb_agent_decision {
    const sb_agent_t *agent;    /* NULL: agents are off */
    const sb_agent_t *previous; /* the agent the conversation was with (NULL: none); differs from agent on a hand-over */
    sb_routed_by_t routed_by;
    sb_strategy_t strategy;
    float score;          /* the last utterance's score for `agent` */
    float previous_score; /* and for `previous` (0 without one) */
    unsigned max_tokens;  /* the token limit the strategy set from the agent's (0: none) */
    int unsure;           /* the classifier was unsure (above): the router is asked when it is on */
    const char *router;   /* the router's outcome when it was asked: chosen, timeout, error, unusable; NULL: not asked */
    double router_ms;     /* how long it took */
} sb_agent_decision_t;

/* What the decision reads from a request: the user messages' text, oldest first, and whether tools ran. */
typedef struct sb_route_input {
    const sb_str_t *users; /* the last is the utterance this turn answers */
    size_t nusers;
    unsigned tool_results; /* role:"tool" messages in the history */
    const sb_agent_t *explicit_agent;
    const sb_agent_t *stored_agent; /* the agent of the stored conversation's last turn (memory), NULL: none */
    const sb_agent_t *router_agent; /* the agent the router named (step 5), NULL: the rule decides */
} sb_route_input_t;

/* Builds the strategy's phrases. Once, at start-up, before any decision; pure after. */
void sb_agent_route_init(void);
void sb_agent_route_dispose(void);
/*
 * Decides the turn's agent and strategy with `agents` (not NULL), and whether
 * the classifier was unsure. Pure: no clock, no state, no allocation. The
 * router's outcome (router, router_ms) is left for its caller to fill.
 */
void sb_agent_decide(const sb_agents_t *agents, const sb_route_input_t *in, sb_agent_decision_t *out);
/*
 * The agent's instructions for this turn: the hand-over line when it took
 * over, its profile's instructions, and the strategy's line. `last` is the
 * caller's utterance the hand-over line quotes. New string (free it).
 */
char *sb_agent_instructions(const sb_agent_decision_t *d, sb_str_t last);
const char *sb_routed_by_name(sb_routed_by_t r);
const char *sb_strategy_name(sb_strategy_t s);

#endif
