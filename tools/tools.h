/*
 * What the tool files share. A domain file (customers.c, orders.c, ...)
 * defines each of its tools' arguments (one row per argument: the JSON schema
 * the model sees and the check its value gets come from that row alone) and
 * handler; the table (table.c) puts them in rows; args.c reads arguments by
 * the rows; call.c runs a call and gives handlers their helpers.
 */
#ifndef SB_TOOLS_INTERNAL_H
#define SB_TOOLS_INTERNAL_H

#include <stddef.h>

#include "sb/fetch.h"
#include "sb/tools.h"

/* --- arguments -------------------------------------------------------------------------------- */

typedef enum sb_arg_kind {
    SB_ARG_TEXT,   /* a string of min..max bytes, into a const char * */
    SB_ARG_INT,    /* an integer in min..max, into a json_int_t (def when absent, 0 when def is 0) */
    SB_ARG_ENUM,   /* one of `values`, into a const char * */
    SB_ARG_OBJECT, /* a JSON object of at most max bytes as compact JSON, into a json_t * (borrowed) */
} sb_arg_kind_t;

/* One argument of a tool. The schema sent to the model and the check run on what it sends are both made from it. */
typedef struct sb_tool_arg {
    const char *name;
    sb_arg_kind_t kind;
    int required;
    long long min, max;
    const char *const *values; /* ENUM: the allowed words, NULL-terminated */
    size_t offset;             /* where the value goes in the tool's argument struct */
    json_int_t def;            /* INT: the value when absent (0: none, and the schema names no default) */
    const char *description;   /* for the model, or NULL */
} sb_tool_arg_t;

/* Rows of an argument table, by kind: name, required, bounds, the struct field, the description. */
#define SB_TEXT(n, req, lo, hi, type, field, desc)                                                                                 \
    {                                                                                                                              \
        n, SB_ARG_TEXT, req, lo, hi, NULL, offsetof(type, field), 0, desc                                                          \
    }
#define SB_INT(n, req, lo, hi, def, type, field, desc)                                                                             \
    {                                                                                                                              \
        n, SB_ARG_INT, req, lo, hi, NULL, offsetof(type, field), def, desc                                                         \
    }
#define SB_ENUM(n, req, words, type, field, desc)                                                                                  \
    {                                                                                                                              \
        n, SB_ARG_ENUM, req, 0, 0, words, offsetof(type, field), 0, desc                                                           \
    }
#define SB_OBJECT(n, req, hi, type, field, desc)                                                                                   \
    {                                                                                                                              \
        n, SB_ARG_OBJECT, req, 0, hi, NULL, offsetof(type, field), 0, desc                                                         \
    }

/* A tool's arguments: what the tool is for (for the model), its rows, the struct they fill, and checks across rows. */
struct sb_tool_args {
    const char *description;
    const sb_tool_arg_t *rows;
    size_t nrows;
    size_t size; /* of the argument struct */
    /* Rules that span arguments ("give customer_id or email"); 0, or -1 with a message for the model. NULL: none. */
    int (*check)(const void *args, char *err, size_t errlen);
};

#define SB_TOOL_ARGS(desc, type, rows_, check_)                                                                                    \
    {                                                                                                                              \
        desc, rows_, sizeof(rows_) / sizeof(rows_[0]), sizeof(type), check_                                                        \
    }

/*
 * The tool's arguments as a JSON schema (type object, properties with their
 * bounds and descriptions, required, no additional properties). New string.
 */
char *sb_tool_args_schema(const sb_tool_args_t *args);

/* --- the domains' tools (each file's handlers and argument tables) ------------------------------- */

#define SB_DOMAIN_TOOL(name)                                                                                                       \
    extern const sb_tool_args_t sb_args_##name;                                                                                    \
    void sb_run_##name(sb_tool_call_t *call, const void *args);

SB_DOMAIN_TOOL(fetch_customer_profile)   /* customers.c */
SB_DOMAIN_TOOL(fetch_recent_orders)      /* orders.c */
SB_DOMAIN_TOOL(get_order_status)         /* orders.c */
SB_DOMAIN_TOOL(create_support_ticket)    /* tickets.c */
SB_DOMAIN_TOOL(update_ticket_status)     /* tickets.c */
SB_DOMAIN_TOOL(get_ticket_details)       /* tickets.c */
SB_DOMAIN_TOOL(log_customer_interaction) /* tickets.c */
SB_DOMAIN_TOOL(escalate_ticket)          /* escalations.c */
SB_DOMAIN_TOOL(log_change_event)         /* events.c */
SB_DOMAIN_TOOL(record_agent_event)       /* events.c */
SB_DOMAIN_TOOL(send_rtm_message)         /* messaging.c */
SB_DOMAIN_TOOL(end_call)                 /* calls.c */
SB_DOMAIN_TOOL(transfer_call)            /* calls.c */

/* Builds the ticket statements with the configured (validated, then quoted) table names. Start-up only. */
int sb_tickets_init(const sb_config_t *config, char *err, size_t errlen);
/* Builds the escalation statement and checks the SMTP settings. 0, or -1 with a message naming the setting. */
int sb_escalations_init(const sb_config_t *config, char *err, size_t errlen);
/* Checks the Agora settings. 0, or -1 with a message naming the setting. */
int sb_messaging_init(const sb_config_t *config, char *err, size_t errlen);
/* The settings send_rtm_message lacks ("AGORA_APP_ID, ..."), or NULL when it has what it needs. */
const char *sb_messaging_missing(const sb_config_t *config);
/* Checks TRANSFER_NUMBER (E.164). 0, or -1 with a message naming the setting. */
int sb_calls_init(const sb_config_t *config, char *err, size_t errlen);
/* "TRANSFER_NUMBER" when transfer_call has no number to transfer to, else NULL. */
const char *sb_calls_missing_transfer(const sb_config_t *config);

/* --- for handlers (call.c) -------------------------------------------------------------------------- */

/*
 * Runs `sql`, a statement whose one row holds one json column. The call
 * finishes with that value, or with {"error": not_found} when there is no
 * row (or the value is SQL NULL). Values are copied by the pool.
 */
void sb_tool_run_json(sb_tool_call_t *call, const char *sql, int nparams, const char *const *values, const char *not_found);

/*
 * The bound caller as two statement parameters: values[0] the customer id
 * (text) or NULL, values[1] the email or NULL (both live as long as the call).
 * Scoped statements add: and ($N::bigint is null or customer_id = $N) and
 * ($M::text is null or the customer's lower(email) = lower($M)).
 */
void sb_tool_scope(sb_tool_call_t *call, const char **values);

/*
 * Runs a configured curl easy handle for the call on the worker's curl multi
 * (env->curlm) and takes the handle: it is cleaned up before `done` runs.
 * done(call, ctx, code, status) gets curl's code and the last response code
 * (HTTP status, SMTP reply). When the call is cancelled first, the transfer is
 * stopped and done runs with call == NULL, only to free ctx. Returns 0, or -1
 * when the transfer could not start (the handle is cleaned up, done never runs).
 */
typedef void (*sb_tool_transfer_cb)(sb_tool_call_t *call, void *ctx, CURLcode code, long status);
int sb_tool_call_transfer(sb_tool_call_t *call, CURL *easy, sb_tool_transfer_cb done, void *ctx);

/*
 * Makes an HTTP call for the tool call (sb/fetch.h; `req`'s headers and body
 * taken). done() gets the call back with the outcome, from the loop; it does
 * not run when the call is cancelled first (the request is stopped then).
 */
typedef void (*sb_tool_fetch_cb)(sb_tool_call_t *call, CURLcode code, long status, char *body, size_t len);
void sb_tool_call_fetch(sb_tool_call_t *call, sb_fetch_req_t *req, sb_tool_fetch_cb done);

/*
 * `tmpl` with {{tickets_table}} and {{interactions_table}} replaced by the
 * configured names, quoted (they were validated as plain lowercase names, so
 * quoting cannot be escaped). Malloc'd; built at start-up only.
 */
char *sb_tool_sql(const char *tmpl, const sb_config_t *config);

/*
 * The end of a keyed INSERT ... SELECT (the target aliased, e.g. "as t") that
 * returns the row it wrote with created = true, or, when the idempotency key
 * is already there, the row that holds it with created = false: also a row a
 * concurrent twin of the turn wrote a moment ago, which a lookup by key in
 * the same statement could not see (its snapshot predates it). ON CONFLICT
 * DO UPDATE waits for that row and locks it; the update writes the same key,
 * so nothing changes, and xmax = 0 tells an insert from it. `mine` limits
 * what may be returned to the caller's own record: a key is never enough.
 */
#define REPEAT_RETURNS(mine)                                                                                                       \
    "  on conflict (idempotency_key) do update set idempotency_key = excluded.idempotency_key where " mine                         \
    "  returning *, (xmax = 0) as created"

#endif
