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

/* Builds the ticket statements with the configured (validated, then quoted) table names. Start-up only. */
void sb_tickets_init(const sb_config_t *config);

/* Argument checks for parsers: each writes a message into err and returns -1 when the value is out of bounds.
 * An absent (NULL) value passes: required fields are required by the unpack format. */
int sb_tool_check_text(const char *field, const char *s, size_t min, size_t max, char *err, size_t errlen);
int sb_tool_check_enum(const char *field, const char *s, const char *const *allowed, char *err, size_t errlen);
int sb_tool_check_range(const char *field, json_int_t v, json_int_t min, json_int_t max, char *err, size_t errlen);
/* Unpacks `in` strictly with `fmt` (json_unpack_ex, JSON_STRICT); a message for the model on failure. */
int sb_tool_unpack(json_t *in, char *err, size_t errlen, const char *fmt, ...);

#endif
