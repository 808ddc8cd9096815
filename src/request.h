/*
 * The inbound Chat Completions request: strict validation of what the engine
 * or an SDK sent, and the cleaned body that goes to the provider (engine
 * extras stripped, known OpenAI parameters kept, streaming always on).
 */
#ifndef SB_REQUEST_H
#define SB_REQUEST_H

#include <jansson.h>
#include <stddef.h>

#include "chunk.h"
#include "conversation.h"
#include "sb/config.h"
#include "sb/error.h"
#include "sb/rag.h"
#include "sb/tools.h"

/* The most bytes of the caller's last words a request keeps (sb_chat_request_t.last_user). */
#define SB_LAST_USER_MAX 159

typedef struct sb_chat_request {
    json_t *upstream;     /* new reference: the body to send upstream */
    const char *model;    /* borrowed from `upstream` */
    int stream;           /* the client wants SSE */
    int whole;            /* the provider is asked for one whole answer, not a stream (sb_chat_request_ask_whole) */
    int include_usage;    /* the client asked for stream_options.include_usage */
    int has_tools;        /* the client sent `tools` */
    char turn_id[64];     /* the engine's turn_id, if any ("" otherwise) */
    char request_id[65];  /* the client's X-Request-Id when sane, else switchboard's own; sent to the provider */
    char traceparent[56]; /* the client's W3C traceparent when well formed, passed on to the provider; "" when none */
    char *last_user;      /* start of the caller's last utterance, for the sandbox; NULL when none; owned */
    char *question;       /* what retrieval looks up: the last utterance, with the one before when it is short ("" when none);
                             owned: a new string of its own length (a turn holds its request for the whole stream) */
    char *identity;       /* the engine's names for the call ("app=..;channel=..;user=..;agent=.."), NULL when none; owned */
    unsigned char conversation[SB_CONVERSATION_BYTES]; /* keyed digest of the identity and every message so far */
    char *conversation_id;                             /* the client's own conversation_id (body or header), NULL when none;
                                                          owned. The texts a request may or may not carry are held at their
                                                          own size: a turn holds its request for a whole stream. */
    char memory_key[33], owner[33];                    /* the stored conversation (sb_conversation_key); memory_key "" when none */
    sb_caller_t caller;                                /* the customer bound by llm.params customer_id / customer_email, if any */
    const char *offered_tools; /* switchboard's tools as a JSON array, sent as `tools` (sb_tools_offer); NULL: none */
    uint32_t shadowed;         /* switchboard's tools the client's own of the same name replace (sb_tools_offer) */
    /* agents (agents.h): what the request asked for, and what the turn's agent allows */
    const struct sb_agent *agent_asked; /* llm.params.agent or model "agent:<name>"; NULL: none (or agents off) */
    int model_given;                    /* the request named its model (an agent's model does not replace it) */
    uint32_t withheld;                  /* switchboard's tools the turn's agent may not call */
    const char *agent_tools;            /* the agent's tools, serialized (sb_tools_serialize); offered instead of all when set */
    const char *team;                   /* the inbound key's team (auth.h), NULL when none; static */
    char stored_agent[33];              /* the agent of the stored conversation's last turn, as memory recalled it; "" when none */
    /* the channel can act on the call itself (end it, transfer it): switchboard's call tools (SB_TOOL_CALL) are offered */
    int call_control;
    /* a turn switchboard asks for itself (a conversation's summary, summary.h): no agent, no layered instructions,
     * no retrieval, and none of switchboard's tools offered or run */
    int internal;
} sb_chat_request_t;

typedef struct sb_request_error {
    sb_error_t kind;
    char message[256];
    char param[96]; /* JSON path of the offending field ("messages[2].role"), "" when none */
} sb_request_error_t;

/* Takes PASSTHROUGH_PARAMS (names let through as they are) from the config. Once, at start-up. */
void sb_chat_request_init(const sb_config_t *config);

/*
 * Validates `root` (borrowed) and fills `out`. `default_model` is used when
 * the request names none; `ids` (may be NULL) are the engine's header ids.
 * The conversation is named as sb_conversation_describe says. Returns 0, or
 * -1 with `err` filled (out->upstream is then NULL). Release a filled request
 * with sb_chat_request_dispose.
 */
int sb_chat_request_parse(json_t *root, const char *default_model, const sb_engine_ids_t *ids, sb_chat_request_t *out,
                          sb_request_error_t *err);
/* Parses a body of `len` bytes (JSON) and validates it; INVALID_JSON on syntax errors. */
int sb_chat_request_parse_body(const char *body, size_t len, const char *default_model, const sb_engine_ids_t *ids,
                               sb_chat_request_t *out, sb_request_error_t *err);
void sb_chat_request_dispose(sb_chat_request_t *r);
/*
 * Lets go of the provider body (r->upstream becomes NULL) once nothing can
 * need it again: no further round, no fallback, no retry. `model` (borrowed;
 * it must live as long as the request) replaces r->model, which pointed into
 * the body. After this only the request's own fields may be read: no edit,
 * no dump.
 */
void sb_chat_request_drop_body(sb_chat_request_t *r, const char *model);
/*
 * Takes the client's X-Request-Id (`id`, `len` bytes; base NULL when absent)
 * when it is 1 to 64 characters of letters, digits and ._:- , else
 * `generated`; and its traceparent when it is a well-formed W3C trace
 * context (version 00, non-zero ids), else none.
 */
void sb_chat_request_set_trace(sb_chat_request_t *r, const char *id, size_t len, const char *generated, const char *traceparent,
                               size_t tp_len);

/*
 * Takes the X-Conversation-Id header (`id`, `len` bytes; base NULL when
 * absent) as the conversation id. Returns 0, or -1 with `err` filled when it
 * is not 1 to 128 characters of letters, digits and ._:- or names another
 * conversation than the body's conversation_id.
 */
int sb_chat_request_set_conversation_id(sb_chat_request_t *r, const char *id, size_t len, sb_request_error_t *err);

/* --- the edits a turn makes to what it sends the provider ------------------------------------- */

/* One tool call as text: its id, the tool's name and the arguments (JSON text). Borrowed. */
typedef struct sb_tool_call_text {
    sb_str_t id, name, arguments;
} sb_tool_call_text_t;

/*
 * Offers switchboard's tools with the request (sb_tools_offer): into the
 * client's own `tools`, minus those the client's shadow (r->shadowed), or
 * as r->offered_tools; the call tools only with r->call_control (without it
 * they join r->withheld: a call the model makes anyway is not run). Once,
 * before the first round.
 */
void sb_chat_request_offer_tools(sb_chat_request_t *r);
/*
 * The text of the request's user messages, oldest first: the last `max` of
 * them into out (borrowed from the request); returns how many. The role:"tool"
 * messages in the history go to *tool_results. Messages whose content is not
 * text count as empty utterances.
 */
size_t sb_chat_request_user_texts(const sb_chat_request_t *r, sb_str_t *out, size_t max, unsigned *tool_results);
/*
 * Puts `n` layers of instructions (NULL or "" ones skipped) in front of every
 * other message, as system messages in the order given: the first is what
 * the model reads first. Once, before the first round.
 */
void sb_chat_request_add_instructions(sb_chat_request_t *r, const char *const *layers, size_t n);
/*
 * Lets the agent `a` set what the request left open: its model when the
 * request named none, its temperature, and `max_tokens` (the strategy's
 * limit, 0: none) when the request set neither max_tokens nor
 * max_completion_tokens; and offers only its tools. Before sb_chat_request_offer_tools.
 */
void sb_chat_request_use_agent(sb_chat_request_t *r, const struct sb_agent *a, unsigned max_tokens);
/*
 * Asks the provider for one whole answer instead of a stream: `stream:
 * false` and no `stream_options` in the body (r->whole). For a turn whose
 * caller wants one answer and that no tool round of switchboard's can
 * follow; a wire that cannot read a whole answer streams anyway (wire.h).
 * Before the first round.
 */
void sb_chat_request_ask_whole(sb_chat_request_t *r);
/* Adds retrieved passages as one system message right after the caller's own system messages. */
void sb_chat_request_add_context(sb_chat_request_t *r, const sb_passage_t *passages, size_t n);
/* Adds `messages` (a JSON array, taken) right after the caller's own system messages: what memory recalls. */
void sb_chat_request_add_memory(sb_chat_request_t *r, json_t *messages);
/* Adds the assistant message of a round that called switchboard's tools: its words (base NULL: none) and calls. */
void sb_chat_request_add_tool_calls(sb_chat_request_t *r, sb_str_t words, const sb_tool_call_text_t *calls, size_t n);
/* Adds one call's result (JSON text) as a role:"tool" message. */
void sb_chat_request_add_tool_result(sb_chat_request_t *r, sb_str_t call_id, sb_str_t result);
/*
 * The body to send upstream as compact JSON (numbers as the client wrote them,
 * up to 15 digits), with `offered_tools` as its `tools`, asking for `model`
 * (NULL: the request's own). New, free() it; NULL when it would pass
 * SB_JSON_MAX_DUMP.
 */
char *sb_chat_request_dump(const sb_chat_request_t *r, const char *model);

#endif
