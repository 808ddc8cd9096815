/*
 * What the tool domain files share: their table entries, and helpers for the
 * common shape of a tool (strictly parsed arguments, one parameterized
 * statement that returns a single JSON value, the caller's scope).
 */
#ifndef SB_TOOLS_INTERNAL_H
#define SB_TOOLS_INTERNAL_H

#include "sb/tools.h"

extern const sb_tool_t sb_tool_fetch_customer_profile;
extern const sb_tool_t sb_tool_fetch_recent_orders;
extern const sb_tool_t sb_tool_get_order_status;
extern const sb_tool_t sb_tool_create_support_ticket;
extern const sb_tool_t sb_tool_update_ticket_status;
extern const sb_tool_t sb_tool_get_ticket_details;
extern const sb_tool_t sb_tool_log_customer_interaction;
extern const sb_tool_t sb_tool_escalate_ticket;
extern const sb_tool_t sb_tool_log_change_event;
extern const sb_tool_t sb_tool_record_agent_event;
extern const sb_tool_t sb_tool_send_rtm_message;

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
 * `tmpl` with {{tickets_table}} and {{interactions_table}} replaced by the
 * configured names, quoted (they were validated as plain lowercase names, so
 * quoting cannot be escaped). Malloc'd; built at start-up only.
 */
char *sb_tool_sql(const char *tmpl, const sb_config_t *config);

/* Builds the ticket statements with the configured (validated, then quoted) table names. Start-up only. */
void sb_tickets_init(const sb_config_t *config);
/* Builds the escalation statement and checks the SMTP settings. 0, or -1 with a message naming the setting. */
int sb_escalations_init(const sb_config_t *config, char *err, size_t errlen);
/* Checks the Agora settings. 0, or -1 with a message naming the setting. */
int sb_messaging_init(const sb_config_t *config, char *err, size_t errlen);
/* Whether send_rtm_message has what it needs (AGORA_APP_ID, AGORA_CUSTOMER_ID, AGORA_CUSTOMER_SECRET). */
int sb_messaging_configured(const sb_config_t *config);

/* Argument checks for parsers: each writes a message into err and returns -1 when the value is out of bounds.
 * An absent (NULL) value passes: required fields are required by the unpack format. */
int sb_tool_check_text(const char *field, const char *s, size_t min, size_t max, char *err, size_t errlen);
int sb_tool_check_enum(const char *field, const char *s, const char *const *allowed, char *err, size_t errlen);
int sb_tool_check_range(const char *field, json_int_t v, json_int_t min, json_int_t max, char *err, size_t errlen);
/* Unpacks `in` strictly with `fmt` (json_unpack_ex, JSON_STRICT); a message for the model, naming the field, on failure.
 * `fmt` is a flat object of keys and scalar values ("{s:s, s?I, s?o}"). */
int sb_tool_unpack(json_t *in, char *err, size_t errlen, const char *fmt, ...);

#endif
