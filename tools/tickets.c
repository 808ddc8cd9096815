/*
 * Ticket tools: open a ticket, change its status, read it with its latest
 * history, log a note or call on it. A write is one statement (one
 * transaction): it lands whole or not at all, also when the caller hangs up
 * mid-call. A write carries the turn's idempotency key, so a repeated turn
 * returns the row it already made instead of a second one. Scoped to the
 * bound caller: another customer's ticket reads as not found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static const char *const priorities[] = {"low", "normal", "high", "urgent", NULL};
static const char *const statuses[] = {"open", "pending", "in_progress", "escalated", "resolved", "closed", NULL};
static const char *const kinds[] = {"note", "call", "email", "chat", NULL};

/* Built by sb_tickets_init: they name the configurable tables. */
static char *create_sql, *status_sql, *details_sql, *interaction_sql;

struct create_args {
    const char *subject, *description, *priority, *order_number, *email;
    json_int_t customer_id;
};

static const sb_tool_arg_t create_rows[] = {
    SB_TEXT("subject", 1, 1, 200, struct create_args, subject, "short summary of the problem"),
    SB_TEXT("description", 0, 0, 4000, struct create_args, description, NULL),
    SB_ENUM("priority", 0, priorities, struct create_args, priority, NULL),
    SB_TEXT("order_number", 0, 1, 32, struct create_args, order_number, NULL),
    SB_TEXT("email", 0, 3, 254, struct create_args, email, NULL),
    SB_INT("customer_id", 0, 1, INT64_MAX, 0, struct create_args, customer_id, NULL),
};

const sb_tool_args_t sb_args_create_support_ticket =
    SB_TOOL_ARGS("Open a support ticket for the customer, linked to their order when an order number is given. Returns the "
                 "ticket id to read back to the caller.",
                 struct create_args, create_rows, NULL);

void sb_run_create_support_ticket(sb_tool_call_t *call, const void *args)
{
    const struct create_args *a = args;
    char id[24];
    const char *v[9] = {NULL,
                        a->email,
                        a->order_number,
                        a->subject,
                        a->description ? a->description : "",
                        a->priority ? a->priority : "normal",
                        sb_tool_call_key(call),
                        NULL,
                        NULL};
    if (a->customer_id != 0) {
        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->customer_id);
        v[0] = id;
    }
    sb_tool_scope(call, v + 7);
    sb_tool_run_json(call, create_sql, 9, v, "no matching customer or order for this caller, so no ticket was created");
}

/* --- update_ticket_status --------------------------------------------------------------------- */

struct status_args {
    json_int_t ticket_id;
    const char *status, *note;
};

static const sb_tool_arg_t status_rows[] = {
    SB_INT("ticket_id", 1, 1, INT64_MAX, 0, struct status_args, ticket_id, NULL),
    SB_ENUM("status", 1, statuses, struct status_args, status, NULL),
    SB_TEXT("note", 0, 1, 4000, struct status_args, note, "why the status changed"),
};

const sb_tool_args_t sb_args_update_ticket_status =
    SB_TOOL_ARGS("Change a support ticket's status (e.g. to resolved once the problem is solved), optionally with a note saying "
                 "why. Returns the previous and the new status.",
                 struct status_args, status_rows, NULL);

/* $1 ticket id, $2 status, $3 note, $4 idempotency key, $5/$6 scope */
static const char status_tmpl[] =
    "with tk as (select t.id, t.status, t.customer_id from {{tickets_table}} t left join customers c on c.id = t.customer_id"
    "  where t.id = $1 and ($5::bigint is null or t.customer_id = $5) and ($6::text is null or lower(c.email) = lower($6))"
    "  for update of t),"
    " upd as (update {{tickets_table}} t set status = $2, updated_at = now() from tk where t.id = tk.id"
    "  returning t.id, t.status),"
    /* the note is keyed: a repeated turn sets the same status again (harmless) but logs its note once */
    " note as (insert into {{interactions_table}} (ticket_id, customer_id, kind, summary, idempotency_key)"
    "  select tk.id, tk.customer_id, 'status_change', $3, $4 from tk where $3::text is not null"
    "  on conflict (idempotency_key) do nothing returning id)"
    " select json_build_object('ticket_id', u.id, 'previous_status', tk.status, 'status', u.status,"
    "  'note_added', exists (select 1 from note))"
    " from upd u join tk on tk.id = u.id";

void sb_run_update_ticket_status(sb_tool_call_t *call, const void *args)
{
    const struct status_args *a = args;
    char id[24];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->ticket_id);
    const char *v[6] = {id, a->status, a->note, sb_tool_call_key(call), NULL, NULL};
    sb_tool_scope(call, v + 4);
    sb_tool_run_json(call, status_sql, 6, v, "no ticket with that id for this caller");
}

/* --- get_ticket_details ----------------------------------------------------------------------- */

struct details_args {
    json_int_t ticket_id;
};

static const sb_tool_arg_t details_rows[] = {
    SB_INT("ticket_id", 1, 1, INT64_MAX, 0, struct details_args, ticket_id, NULL),
};

const sb_tool_args_t sb_args_get_ticket_details =
    SB_TOOL_ARGS("Read a support ticket: subject, description, status, priority, customer, order, and its five latest notes, "
                 "calls and status changes (newest first).",
                 struct details_args, details_rows, NULL);

/*
 * $1 ticket id, $2/$3 scope. Long texts are cut so that the description and
 * five entries stay well under the result ceiling (SB_TOOL_MAX_RESULT): the
 * model reads them aloud, it does not need every word.
 */
static const char details_tmpl[] =
    "select json_build_object('ticket_id', t.id, 'subject', t.subject, 'description', left(t.description, 1500),"
    " 'status', t.status, 'priority', t.priority, 'channel', t.channel, 'customer_id', t.customer_id,"
    " 'customer_name', c.name, 'order_number', o.order_number, 'created_at', t.created_at, 'updated_at', t.updated_at,"
    " 'open_escalations', (select count(*) from escalations e where e.ticket_id = t.id and e.status <> 'resolved'),"
    " 'interactions', coalesce((select json_agg(json_build_object('kind', i.kind, 'summary', left(i.summary, 600),"
    "   'created_at', i.created_at) order by i.created_at desc, i.id desc)"
    "  from (select * from {{interactions_table}} where ticket_id = t.id order by created_at desc, id desc limit 5) i),"
    "  '[]'::json))"
    " from {{tickets_table}} t left join customers c on c.id = t.customer_id left join orders o on o.id = t.order_id"
    " where t.id = $1 and ($2::bigint is null or t.customer_id = $2) and ($3::text is null or lower(c.email) = lower($3))";

void sb_run_get_ticket_details(sb_tool_call_t *call, const void *args)
{
    const struct details_args *a = args;
    char id[24];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->ticket_id);
    const char *v[3] = {id, NULL, NULL};
    sb_tool_scope(call, v + 1);
    sb_tool_run_json(call, details_sql, 3, v, "no ticket with that id for this caller");
}

/* --- log_customer_interaction ----------------------------------------------------------------- */

struct interaction_args {
    json_int_t ticket_id, customer_id; /* 0 when not given */
    const char *email, *kind, *summary;
};

static const sb_tool_arg_t interaction_rows[] = {
    SB_INT("ticket_id", 0, 1, INT64_MAX, 0, struct interaction_args, ticket_id, NULL),
    SB_INT("customer_id", 0, 1, INT64_MAX, 0, struct interaction_args, customer_id, NULL),
    SB_TEXT("email", 0, 3, 254, struct interaction_args, email, NULL),
    SB_ENUM("kind", 1, kinds, struct interaction_args, kind, NULL),
    SB_TEXT("summary", 1, 1, 4000, struct interaction_args, summary, "what was said or done"),
};

const sb_tool_args_t sb_args_log_customer_interaction =
    SB_TOOL_ARGS("Record a note, call, email or chat with a customer, on a ticket and/or the customer's account.",
                 struct interaction_args, interaction_rows, NULL);

/*
 * $1 ticket id, $2 customer id, $3 email, $4 kind, $5 summary, $6 idempotency
 * key, $7/$8 scope. Linked to the ticket (and its customer) and/or the
 * customer given; with neither given, to the bound caller. A customer that is
 * not the ticket's is refused rather than silently mixed.
 */
/* clang-format off: the statement reads as SQL, a line a clause */
static const char interaction_tmpl[] =
    "with tk as (select t.id, t.customer_id from {{tickets_table}} t left join customers c on c.id = t.customer_id"
    "  where t.id = $1 and ($7::bigint is null or t.customer_id = $7) and ($8::text is null or lower(c.email) = lower($8))),"
    " cust as (select id from customers"
    "  where ($2::bigint is null or id = $2) and ($3::text is null or lower(email) = lower($3))"
    "  and ($2::bigint is not null or $3::text is not null"
    "   or ($1::bigint is null and (id = $7::bigint or lower(email) = lower($8::text))))"
    "  and ($7::bigint is null or id = $7) and ($8::text is null or lower(email) = lower($8)) limit 1),"
    " ins as (insert into {{interactions_table}} as i (ticket_id, customer_id, kind, summary, idempotency_key)"
    "  select (select id from tk), coalesce((select customer_id from tk), (select id from cust)), $4, $5, $6"
    "  where ($1::bigint is null or exists (select 1 from tk))"
    "  and (($2::bigint is null and $3::text is null) or exists (select 1 from cust))"
    "  and (exists (select 1 from tk) or exists (select 1 from cust))"
    "  and not exists (select 1 from tk, cust where tk.customer_id <> cust.id)" REPEAT_RETURNS(
        "i.customer_id is not distinct from excluded.customer_id") ")"
                                                                   " select json_build_object('interaction_id', i.id, 'ticket_id', "
                                                                   "i.ticket_id, 'customer_id', i.customer_id, 'kind', i.kind,"
                                                                   "  'created', i.created)"
                                                                   " from ins i";
/* clang-format on */

void sb_run_log_customer_interaction(sb_tool_call_t *call, const void *args)
{
    const struct interaction_args *a = args;
    char tid[24], cid[24];
    const char *v[8] = {NULL, NULL, a->email, a->kind, a->summary, sb_tool_call_key(call), NULL, NULL};
    if (a->ticket_id != 0) {
        snprintf(tid, sizeof(tid), "%" JSON_INTEGER_FORMAT, a->ticket_id);
        v[0] = tid;
    }
    if (a->customer_id != 0) {
        snprintf(cid, sizeof(cid), "%" JSON_INTEGER_FORMAT, a->customer_id);
        v[1] = cid;
    }
    sb_tool_scope(call, v + 6);
    sb_tool_run_json(call, interaction_sql, 8, v,
                     "no matching ticket or customer for this caller, so nothing was logged (give ticket_id, customer_id or "
                     "email; a ticket and a customer must belong together)");
}

/* Builds the statements that name the configurable tables. The names were validated as plain identifiers; quoted anyway. */
int sb_tickets_init(const sb_config_t *config, char *err, size_t errlen)
{
    /* $1 customer id, $2 email, $3 order number, $4 subject, $5 description, $6 priority, $7 idempotency key, $8/$9 scope */
    /* clang-format off: the statement reads as SQL, a line a clause */
    static const char create_tmpl[] =
        "with cust as (select id from customers"
        "  where (($1::bigint is not null and id = $1) or ($2::text is not null and lower(email) = lower($2))"
        "    or ($1::bigint is null and $2::text is null and (id = $8::bigint or lower(email) = lower($9::text))))"
        "  and ($8::bigint is null or id = $8) and ($9::text is null or lower(email) = lower($9)) limit 1),"
        " ord as (select o.id, o.customer_id from orders o join customers c on c.id = o.customer_id"
        "  where o.order_number = btrim(replace($3::text, '#', ''))"
        "  and ($8::bigint is null or c.id = $8) and ($9::text is null or lower(c.email) = lower($9))),"
        " ins as (insert into {{tickets_table}} as t (customer_id, order_id, subject, description, priority, idempotency_key)"
        "  select coalesce((select id from cust), (select customer_id from ord)), (select id from ord), $4, $5, $6, $7"
        "  where ($3::text is null or exists (select 1 from ord))"
        "  and (($1::bigint is null and $2::text is null) or exists (select 1 from cust))"
        /* a customer and an order that are not theirs would make a ticket pointing at someone else's order */
        "  and not exists (select 1 from cust, ord where cust.id <> ord.customer_id)" REPEAT_RETURNS(
            "t.customer_id is not distinct from excluded.customer_id") ")"
                                                                       " select json_build_object('ticket_id', t.id, 'status', "
                                                                       "t.status, 'priority', t.priority, 'subject', t.subject,"
                                                                       "  'customer_id', t.customer_id, 'order_id', t.order_id, "
                                                                       "'created', t.created)"
                                                                       " from ins t";
    /* clang-format on */
    char **sql[] = {&create_sql, &status_sql, &details_sql, &interaction_sql};
    const char *tmpl[] = {create_tmpl, status_tmpl, details_tmpl, interaction_tmpl};
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); ++i) {
        free(*sql[i]);
        *sql[i] = sb_tool_sql(tmpl[i], config);
    }
    (void)err, (void)errlen; /* the table names were checked with the settings */
    return 0;
}
