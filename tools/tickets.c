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

static int parse_create(json_t *in, void *out, char *err, size_t errlen)
{
    struct create_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:s, s?s, s?s, s?s, s?s, s?I}", "subject", &a->subject, "description", &a->description,
                       "priority", &a->priority, "order_number", &a->order_number, "email", &a->email, "customer_id",
                       &a->customer_id) != 0)
        return -1;
    if (sb_tool_check_text("subject", a->subject, 1, 200, err, errlen) != 0 ||
        sb_tool_check_text("description", a->description, 0, 4000, err, errlen) != 0 ||
        sb_tool_check_enum("priority", a->priority, priorities, err, errlen) != 0 ||
        sb_tool_check_text("order_number", a->order_number, 1, 32, err, errlen) != 0 ||
        sb_tool_check_text("email", a->email, 3, 254, err, errlen) != 0)
        return -1;
    if (a->customer_id != 0 && sb_tool_check_range("customer_id", a->customer_id, 1, INT64_MAX, err, errlen) != 0)
        return -1;
    return 0;
}

static void run_create(sb_tool_call_t *call, const void *args)
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

const sb_tool_t sb_tool_create_support_ticket = {
    .name = "create_support_ticket",
    .description = "Open a support ticket for the customer, linked to their order when an order number is given. "
                   "Returns the ticket id to read back to the caller.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"subject\":{\"type\":\"string\",\"maxLength\":200,\"description\":\"short summary of the problem\"},"
                  "\"description\":{\"type\":\"string\",\"maxLength\":4000},"
                  "\"priority\":{\"type\":\"string\",\"enum\":[\"low\",\"normal\",\"high\",\"urgent\"]},"
                  "\"order_number\":{\"type\":\"string\",\"maxLength\":32},"
                  "\"email\":{\"type\":\"string\",\"maxLength\":254},"
                  "\"customer_id\":{\"type\":\"integer\",\"minimum\":1}},"
                  "\"required\":[\"subject\"],\"additionalProperties\":false}",
    .writes = 1,
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct create_args),
    .parse = parse_create,
    .run = run_create,
};

/* --- update_ticket_status --------------------------------------------------------------------- */

struct status_args {
    json_int_t ticket_id;
    const char *status, *note;
};

static int parse_status(json_t *in, void *out, char *err, size_t errlen)
{
    struct status_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:I, s:s, s?s}", "ticket_id", &a->ticket_id, "status", &a->status, "note", &a->note) != 0)
        return -1;
    if (sb_tool_check_range("ticket_id", a->ticket_id, 1, INT64_MAX, err, errlen) != 0 ||
        sb_tool_check_enum("status", a->status, statuses, err, errlen) != 0 ||
        sb_tool_check_text("note", a->note, 1, 4000, err, errlen) != 0)
        return -1;
    return 0;
}

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

static void run_status(sb_tool_call_t *call, const void *args)
{
    const struct status_args *a = args;
    char id[24];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->ticket_id);
    const char *v[6] = {id, a->status, a->note, sb_tool_call_key(call), NULL, NULL};
    sb_tool_scope(call, v + 4);
    sb_tool_run_json(call, status_sql, 6, v, "no ticket with that id for this caller");
}

const sb_tool_t sb_tool_update_ticket_status = {
    .name = "update_ticket_status",
    .description = "Change a support ticket's status (e.g. to resolved once the problem is solved), optionally with a note "
                   "saying why. Returns the previous and the new status.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"ticket_id\":{\"type\":\"integer\",\"minimum\":1},"
                  "\"status\":{\"type\":\"string\",\"enum\":[\"open\",\"pending\",\"in_progress\",\"escalated\",\"resolved\","
                  "\"closed\"]},"
                  "\"note\":{\"type\":\"string\",\"maxLength\":4000,\"description\":\"why the status changed\"}},"
                  "\"required\":[\"ticket_id\",\"status\"],\"additionalProperties\":false}",
    .writes = 1,
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct status_args),
    .parse = parse_status,
    .run = run_status,
};

/* --- get_ticket_details ----------------------------------------------------------------------- */

struct details_args {
    json_int_t ticket_id;
};

static int parse_details(json_t *in, void *out, char *err, size_t errlen)
{
    struct details_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:I}", "ticket_id", &a->ticket_id) != 0)
        return -1;
    return sb_tool_check_range("ticket_id", a->ticket_id, 1, INT64_MAX, err, errlen);
}

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

static void run_details(sb_tool_call_t *call, const void *args)
{
    const struct details_args *a = args;
    char id[24];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->ticket_id);
    const char *v[3] = {id, NULL, NULL};
    sb_tool_scope(call, v + 1);
    sb_tool_run_json(call, details_sql, 3, v, "no ticket with that id for this caller");
}

const sb_tool_t sb_tool_get_ticket_details = {
    .name = "get_ticket_details",
    .description = "Read a support ticket: subject, description, status, priority, customer, order, and its five latest "
                   "notes, calls and status changes (newest first).",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"ticket_id\":{\"type\":\"integer\",\"minimum\":1}},"
                  "\"required\":[\"ticket_id\"],\"additionalProperties\":false}",
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct details_args),
    .parse = parse_details,
    .run = run_details,
};

/* --- log_customer_interaction ----------------------------------------------------------------- */

struct interaction_args {
    json_int_t ticket_id, customer_id; /* 0 when not given */
    const char *email, *kind, *summary;
};

static int parse_interaction(json_t *in, void *out, char *err, size_t errlen)
{
    struct interaction_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s?I, s?I, s?s, s:s, s:s}", "ticket_id", &a->ticket_id, "customer_id", &a->customer_id,
                       "email", &a->email, "kind", &a->kind, "summary", &a->summary) != 0)
        return -1;
    /* presence, not value, decides: an explicit 0 is out of range, not "not given" */
    if ((json_object_get(in, "ticket_id") && sb_tool_check_range("ticket_id", a->ticket_id, 1, INT64_MAX, err, errlen) != 0) ||
        (json_object_get(in, "customer_id") &&
         sb_tool_check_range("customer_id", a->customer_id, 1, INT64_MAX, err, errlen) != 0) ||
        sb_tool_check_text("email", a->email, 3, 254, err, errlen) != 0 ||
        sb_tool_check_enum("kind", a->kind, kinds, err, errlen) != 0 ||
        sb_tool_check_text("summary", a->summary, 1, 4000, err, errlen) != 0)
        return -1;
    return 0;
}

/*
 * $1 ticket id, $2 customer id, $3 email, $4 kind, $5 summary, $6 idempotency
 * key, $7/$8 scope. Linked to the ticket (and its customer) and/or the
 * customer given; with neither given, to the bound caller. A customer that is
 * not the ticket's is refused rather than silently mixed.
 */
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

static void run_interaction(sb_tool_call_t *call, const void *args)
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

const sb_tool_t sb_tool_log_customer_interaction = {
    .name = "log_customer_interaction",
    .description = "Record a note, call, email or chat with a customer, on a ticket and/or the customer's account.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"ticket_id\":{\"type\":\"integer\",\"minimum\":1},"
                  "\"customer_id\":{\"type\":\"integer\",\"minimum\":1},"
                  "\"email\":{\"type\":\"string\",\"maxLength\":254},"
                  "\"kind\":{\"type\":\"string\",\"enum\":[\"note\",\"call\",\"email\",\"chat\"]},"
                  "\"summary\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4000,\"description\":\"what was said or done\"}},"
                  "\"required\":[\"kind\",\"summary\"],\"additionalProperties\":false}",
    .writes = 1,
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct interaction_args),
    .parse = parse_interaction,
    .run = run_interaction,
};

/* Builds the statements that name the configurable tables. The names were validated as plain identifiers; quoted anyway. */
void sb_tickets_init(const sb_config_t *config)
{
    /* $1 customer id, $2 email, $3 order number, $4 subject, $5 description, $6 priority, $7 idempotency key, $8/$9 scope */
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
    char **sql[] = {&create_sql, &status_sql, &details_sql, &interaction_sql};
    const char *tmpl[] = {create_tmpl, status_tmpl, details_tmpl, interaction_tmpl};
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); ++i) {
        free(*sql[i]);
        *sql[i] = sb_tool_sql(tmpl[i], config);
    }
}
