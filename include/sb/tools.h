/*
 * switchboard's own LLM tools: one const table (tools/table.c), a row a
 * tool: its name, handler, arguments (the schema the model sees and the
 * checks on what it sends, from one table of rows), flags and start-up.
 * Handlers run on the worker's loop and finish asynchronously (tools/call.c).
 */
#ifndef SB_TOOLS_H
#define SB_TOOLS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/error.h"
#include "sb/pgpool.h"

#define SB_TOOL_MAX_RESULT 16384 /* bytes of JSON a tool may hand back to the model */

/* Who is calling, when the request binds a customer (agent llm.params customer_id / customer_email). */
typedef struct sb_caller {
    long long customer_id; /* 0: not bound by id */
    char email[256];       /* "": not bound by email */
} sb_caller_t;

/* What a handler may use. Borrowed for the duration of the call. */
typedef struct sb_tool_env {
    const sb_config_t *config;
    sb_pgpool_t *pg; /* NULL without DATABASE_URL */
    sb_curlm_t *curlm;
    const sb_caller_t *caller;
} sb_tool_env_t;

typedef struct sb_tool_call sb_tool_call_t;

/*
 * Reports the end of a call: `result` is the JSON text for the role:"tool"
 * message (borrowed; copied by the callee). Called exactly once, never from
 * inside sb_tool_call_start, and never after sb_tool_call_cancel.
 */
typedef void (*sb_tool_done_cb)(void *data, const char *result, size_t len);

/* A tool's arguments (tools/tools.h): the rows that make both its schema and its checks. */
typedef struct sb_tool_args sb_tool_args_t;

enum {
    SB_TOOL_WRITES = 1,   /* changes data: its write carries the idempotency key */
    SB_TOOL_SCOPED = 2,   /* refuses to touch another customer's data when the caller is bound */
    SB_TOOL_NEEDS_DB = 4, /* runs statements: offered only with DATABASE_URL, fails without a pool */
    SB_TOOL_CALL = 8,     /* acts on the call itself (ends it, transfers it): offered only on a channel that can act on it */
};

/* The tools that act on the call (SB_TOOL_CALL), by name: a channel that can act hears their results (sink.h tool_finished). */
#define SB_TOOL_END_CALL "end_call"
#define SB_TOOL_TRANSFER_CALL "transfer_call"

typedef struct sb_tool {
    const char *name;
    /* Starts the work on the parsed arguments; ends with sb_tool_call_finish / sb_tool_call_fail. */
    void (*run)(sb_tool_call_t *call, const void *args);
    const sb_tool_args_t *args;
    unsigned flags;
    /* The settings it still lacks (a message naming them), NULL when it can be offered. NULL: it lacks nothing. */
    const char *(*missing)(const sb_config_t *config);
    /* The domain's start-up (statements, settings checks): 0, or -1 with err. NULL: none. Shared by a domain's rows. */
    int (*init)(const sb_config_t *config, char *err, size_t errlen);
} sb_tool_t;

/* Fills the tool's argument struct (`out`, sb_tool_args_size bytes, zeroed) from the model's arguments; 0, or -1 with a message
 * for the model naming the argument. */
int sb_tool_parse(const sb_tool_t *tool, json_t *in, void *out, char *err, size_t errlen);
size_t sb_tool_args_size(const sb_tool_t *tool);

/* The tool table and its size. Validated once at start-up by sb_tools_init. */
const sb_tool_t *sb_tools_table(size_t *count);
/* Checks the table (unique names, valid schemas) and selects the offered tools (TOOLS_ENABLED). Returns 0 or -1 with err. */
int sb_tools_init(const sb_config_t *config, char *err, size_t errlen);
/* The enabled tool named `name` (len bytes), or NULL. */
const sb_tool_t *sb_tools_find(const char *name, size_t len);
/* The same, unless the request's own tool of that name shadows it (its bit in `shadowed`, from sb_tools_offer). */
const sb_tool_t *sb_tools_find_offered(const char *name, size_t len, uint32_t shadowed);
/* The names of the tools in `set` (a shadowed mask), comma-separated, into out; returns the length written. */
size_t sb_tools_names(uint32_t set, char *out, size_t cap);
/*
 * Offers the enabled tools with a request body: with `calls`, those that act
 * on the call too (SB_TOOL_CALL: only a channel that can act on them asks).
 * A body that has `tools` of its own (the client's) gets them appended there,
 * and NULL is returned;
 * a client's tool named like one of switchboard's shadows it for the request
 * (the client's definition alone is sent, and its calls are the client's):
 * *shadowed gets a bit per shadowed tool.
 * Otherwise the body is left alone and the tools come back as one serialized
 * array, made once at start-up, for sb_chat_request_dump to add as `tools`:
 * serializing their schemas again on every round cost more than all the rest
 * of a request.
 */
const char *sb_tools_offer(json_t *body, int calls, uint32_t *shadowed);
/*
 * The same for a subset: only the enabled tools whose bit is set in `allowed`
 * (an agent's, agents.h), `serialized` being sb_tools_serialize(allowed)
 * (NULL: none of them is enabled, and nothing is offered).
 */
const char *sb_tools_offer_only(json_t *body, uint32_t allowed, const char *serialized, uint32_t *shadowed);
/* The enabled tools whose bit is set in `allowed`, as one serialized OpenAI array; NULL when none. New (free it). */
char *sb_tools_serialize(uint32_t allowed);
/* The rows of the tools that act on the call (SB_TOOL_CALL), one bit each, enabled or not. */
uint32_t sb_tools_calls(void);

/*
 * Runs one call of `tool` with the model's `arguments` text. The call is
 * freed after done() runs or after cancel. `idempotency_key` (may be NULL)
 * is copied.
 */
sb_tool_call_t *sb_tool_call_start(const sb_tool_t *tool, const sb_tool_env_t *env, const char *arguments, size_t len,
                                   const char *idempotency_key, sb_tool_done_cb done, void *data);
/* Forgets the call: done() will not run; a statement already sent lands whole or not at all. */
void sb_tool_call_cancel(sb_tool_call_t *call);

/*
 * The text the model reads for a result: `result` (borrowed; NULL when it
 * could not be built) as compact JSON, or a fixed {"error": ...} when it
 * cannot be written (a string that is not UTF-8) or passes
 * SB_TOOL_MAX_RESULT. Always valid JSON within the ceiling, whatever the
 * bytes. New string (free it); its length goes to *len.
 */
char *sb_tool_result_text(const json_t *result, size_t *len);
/*
 * {"error": message} for the model, with every byte of `message` that does
 * not begin a well-formed UTF-8 character replaced by U+FFFD, so a message
 * quoting outside bytes or cut at a fixed length still makes a result. New
 * reference (NULL only when allocation fails).
 */
json_t *sb_tool_error(const char *message, size_t len);

/* --- for handlers --------------------------------------------------------------------------- */
const sb_tool_env_t *sb_tool_call_env(sb_tool_call_t *call);
const char *sb_tool_call_key(sb_tool_call_t *call); /* the idempotency key, or NULL */
/* The call's typed arguments (args_size bytes): a handler may keep its own state there between its steps. */
void *sb_tool_call_args(sb_tool_call_t *call);
/* Runs a statement for the call; `on_result` gets the call back. Cancelling the call cancels the query. */
void sb_tool_call_query(sb_tool_call_t *call, const char *sql, int nparams, const char *const *values,
                        void (*on_result)(sb_tool_call_t *call, const PGresult *res));
/* Ends the call with a JSON object (takes the reference). */
void sb_tool_call_finish(sb_tool_call_t *call, json_t *result);
/* Ends the call with {"error": message} the model can read and recover from. */
void sb_tool_call_fail(sb_tool_call_t *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
