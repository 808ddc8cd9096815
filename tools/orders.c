/*
 * Order tools: an order's status by its number, and a customer's recent
 * orders. Scoped to the bound caller: another customer's order reads as
 * not found, so its existence is not revealed.
 */
#include <stdio.h>
#include <string.h>

#include "tools.h"

struct status_args {
    const char *order_number;
};

static const sb_tool_arg_t status_rows[] = {
    SB_TEXT("order_number", 1, 1, 32, struct status_args, order_number, "the order number, e.g. 4417"),
};

const sb_tool_args_t sb_args_get_order_status =
    SB_TOOL_ARGS("Get the status of an order by its order number: shipping state, carrier, tracking number, items, dates.",
                 struct status_args, status_rows, NULL);

/* $1 order number ('#' and spaces ignored), $2/$3 the caller's scope */
static const char status_sql[] =
    "select json_build_object('order_number', o.order_number, 'status', o.status, 'total', round(o.total_cents / 100.0, 2),"
    " 'currency', o.currency, 'items', o.items, 'carrier', o.carrier, 'tracking_number', o.tracking_number,"
    " 'placed_at', o.placed_at, 'shipped_at', o.shipped_at, 'delivered_at', o.delivered_at, 'customer_name', c.name)"
    " from orders o join customers c on c.id = o.customer_id"
    " where o.order_number = btrim(replace($1, '#', ''))"
    " and ($2::bigint is null or c.id = $2) and ($3::text is null or lower(c.email) = lower($3))";

void sb_run_get_order_status(sb_tool_call_t *call, const void *args)
{
    const struct status_args *a = args;
    const char *v[3] = {a->order_number, NULL, NULL};
    sb_tool_scope(call, v + 1);
    sb_tool_run_json(call, status_sql, 3, v, "no order with that number for this caller");
}

struct recent_args {
    json_int_t customer_id;
    const char *email;
    json_int_t limit;
};

static const sb_tool_arg_t recent_rows[] = {
    SB_INT("customer_id", 0, 1, INT64_MAX, 0, struct recent_args, customer_id, NULL),
    SB_TEXT("email", 0, 3, 254, struct recent_args, email, NULL),
    SB_INT("limit", 0, 1, 20, 5, struct recent_args, limit, NULL),
};

static int check_recent(const void *args, char *err, size_t errlen)
{
    const struct recent_args *a = args;
    if (a->customer_id == 0 && a->email == NULL)
        return snprintf(err, errlen, "give customer_id or email"), -1;
    return 0;
}

const sb_tool_args_t sb_args_fetch_recent_orders = SB_TOOL_ARGS(
    "List a customer's most recent orders (newest first) by customer id or email.", struct recent_args, recent_rows, check_recent);

/* $1 id, $2 email, $3 limit, $4/$5 the caller's scope */
static const char recent_sql[] =
    "select json_build_object('customer_id', c.id, 'orders', coalesce((select json_agg(json_build_object("
    " 'order_number', o.order_number, 'status', o.status, 'total', round(o.total_cents / 100.0, 2), 'currency', o.currency,"
    " 'placed_at', o.placed_at) order by o.placed_at desc)"
    " from (select * from orders where customer_id = c.id order by placed_at desc limit $3) o), '[]'::json))"
    " from customers c"
    " where ($1::bigint is null or c.id = $1) and ($2::text is null or lower(c.email) = lower($2))"
    " and ($4::bigint is null or c.id = $4) and ($5::text is null or lower(c.email) = lower($5))"
    " limit 1";

void sb_run_fetch_recent_orders(sb_tool_call_t *call, const void *args)
{
    const struct recent_args *a = args;
    char id[24], limit[24];
    const char *v[5] = {NULL, a->email, limit, NULL, NULL};
    if (a->customer_id != 0) {
        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->customer_id);
        v[0] = id;
    }
    snprintf(limit, sizeof(limit), "%" JSON_INTEGER_FORMAT, a->limit);
    sb_tool_scope(call, v + 3);
    sb_tool_run_json(call, recent_sql, 5, v, "no customer matches (a caller can only look up their own orders)");
}
