/*
 * A turn's events, and the sinks that hear them. The turn core knows no wire
 * format: it tells its sink what happens (words, tool calls, retrieval, the
 * end) and the sink writes its channel's format (Chat Completions SSE, one
 * JSON answer, later a WebSocket). Observers (the access log, metrics) hear
 * the same events. A sink is a small const table of operations, one slot a
 * line; a slot a sink has no use for is NULL.
 */
#ifndef SB_SINK_H
#define SB_SINK_H

#include <stddef.h>

#include "chunk.h"
#include "sb/error.h"
#include "sb/rag.h"

typedef struct sb_sink sb_sink_t;
struct sb_agent_decision;

/* A call of one of switchboard's own tools, as the turn runs it. Borrowed for the event. */
typedef struct sb_sink_tool {
    sb_str_t id, name, arguments;
    sb_str_t result; /* the JSON the model reads; base NULL in tool_started */
    int failed;      /* the result is an {"error": ...} */
} sb_sink_tool_t;

/* What the model just said: words and/or fragments of calls of the client's tools, and maybe the finish reason. */
typedef struct sb_sink_delta {
    sb_str_t text;                           /* base NULL: no words in this delta */
    sb_str_t audio;                          /* the provider's delta.audio object (raw JSON), base NULL when none */
    const sb_tool_delta_t *const *fragments; /* by index, as the provider sent them */
    size_t nfragments;
    const char *finish; /* the provider's finish reason, once, unless the round goes on into switchboard's tools */
} sb_sink_delta_t;

/* A complete call of the client's own tool (the JSON answer lists them; a stream relayed them as fragments). */
typedef struct sb_sink_call {
    sb_str_t id, name, arguments;
} sb_sink_call_t;

/* How the turn ended. Borrowed for the event. */
typedef struct sb_turn_end {
    sb_error_t error;            /* SB_OK: the answer is complete */
    const char *message;         /* the error's words for the caller, or NULL for the kind's own */
    const char *retry_after;     /* the provider's Retry-After, or NULL */
    const char *how;             /* for the access log: done, timeout, upstream_error, shutdown */
    const char *finish;          /* the finish reason (stop, length, tool_calls, ...) when error is SB_OK */
    const sb_sink_call_t *calls; /* the client's tool calls of the last round */
    size_t ncalls;
    int has_usage;
    long long prompt_tokens, completion_tokens, total_tokens; /* summed over the turn's rounds */
} sb_turn_end_t;

/*
 * What a sink does with each event, in the order a turn emits them: agent
 * (with agents on) and model (once each, before any delta), then any number of delta, tool_started /
 * tool_finished and retrieval, then done exactly once. Nothing follows done,
 * nor a cancel of the turn. Events come from the worker's loop.
 */
typedef struct sb_sink_ops {
    const char *name; /* for logs and tests */
    /* The caller hears words as they come (a stream): fillers cover silence, and the client's tool calls are relayed
     * as fragments. Otherwise (one answer at the end) the turn keeps those calls whole for done. */
    int live;
    /* The model that answers (the provider's name for it), before the first delta. */
    void (*model)(sb_sink_t *sink, sb_str_t model);
    /* What the model said, as it comes. Returns SB_OK, or an error (a ceiling passed) that ends the turn. */
    sb_error_t (*delta)(sb_sink_t *sink, const sb_sink_delta_t *delta);
    /* switchboard runs one of its tools / has its result. The engine never hears of these; a console may. */
    void (*tool_started)(sb_sink_t *sink, const sb_sink_tool_t *call);
    void (*tool_finished)(sb_sink_t *sink, const sb_sink_tool_t *call);
    /* Retrieval's outcome (hit, miss, timeout, error) and the passages that went to the model (borrowed for the call). */
    void (*retrieval)(sb_sink_t *sink, const char *outcome, const sb_passage_t *passages, size_t n);
    /* The end. The sink may keep writing (its last bytes) after this returns. */
    void (*done)(sb_sink_t *sink, const sb_turn_end_t *end);
    /* The agent that answers and how it was chosen (agent_route.h), once, right before `model`; only with agents on. */
    void (*agent)(sb_sink_t *sink, const struct sb_agent_decision *decision);
} sb_sink_ops_t;

/*
 * A sink: its operations, and how it tells the turn that its caller reads
 * slowly (pause the provider until resume) or is gone (the turn stops at
 * once). A concrete sink embeds this as its first member named `super`.
 */
struct sb_sink {
    const sb_sink_ops_t *ops;
    /* set by the turn when it starts, for the sink to call */
    void (*pause)(void *turn);
    void (*resume)(void *turn);
    void *turn;
    /* observers only: the next observer of the same turn (the access log's, then the metrics'), or NULL */
    sb_sink_t *next;
};

#endif
