/*
 * Ticket tools. A write is one statement (one transaction): it lands whole or
 * not at all, also when the caller hangs up mid-call. A write carries the
 * turn's idempotency key, so a repeated turn returns the ticket it already
 * made instead of a second one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static const char *const priorities[] = {"low", "normal", "high", "urgent", NULL};

static char *create_sql;

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
    .args_size = sizeof(struct create_args),
    .parse = parse_create,
    .run = run_create,
};

/* Builds the statements that name the configurable tables. The names were validated as plain identifiers; quoted anyway. */
void sb_tickets_init(const sb_config_t *config)
{
    /* $1 customer id, $2 email, $3 order number, $4 subject, $5 description, $6 priority, $7 idempotency key, $8/$9 scope */
    static const char fmt[] =
        "with cust as (select id from customers"
        "  where (($1::bigint is not null and id = $1) or ($2::text is not null and lower(email) = lower($2))"
        "    or ($1::bigint is null and $2::text is null and (id = $8::bigint or lower(email) = lower($9::text))))"
        "  and ($8::bigint is null or id = $8) and ($9::text is null or lower(email) = lower($9)) limit 1),"
        " ord as (select o.id, o.customer_id from orders o join customers c on c.id = o.customer_id"
        "  where o.order_number = btrim(replace($3::text, '#', ''))"
        "  and ($8::bigint is null or c.id = $8) and ($9::text is null or lower(c.email) = lower($9))),"
        " existing as (select * from \"%s\" where idempotency_key = $7::text),"
        " ins as (insert into \"%s\" (customer_id, order_id, subject, description, priority, idempotency_key)"
        "  select coalesce((select id from cust), (select customer_id from ord)), (select id from ord), $4, $5, $6, $7"
        "  where not exists (select 1 from existing)"
        "  and ($3::text is null or exists (select 1 from ord))"
        "  and (($1::bigint is null and $2::text is null) or exists (select 1 from cust))"
        "  on conflict (idempotency_key) do nothing returning *)"
        " select json_build_object('ticket_id', t.id, 'status', t.status, 'priority', t.priority, 'subject', t.subject,"
        "  'customer_id', t.customer_id, 'order_id', t.order_id, 'created', t.created)"
        " from (select *, true as created from ins union all select *, false from existing) t limit 1";
    size_t n = sizeof(fmt) + 2 * strlen(config->tickets_table);
    free(create_sql);
    create_sql = malloc(n);
    if (create_sql == NULL)
        abort();
    snprintf(create_sql, n, fmt, config->tickets_table, config->tickets_table);
}
