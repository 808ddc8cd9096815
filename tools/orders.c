/*
 * Order tools: an order's status by its number, and a customer's recent
 * orders. Scoped to the bound caller: another customer's order reads as
 * not found, so its existence is not revealed.
 */
#include <string.h>

#include "tools.h"

struct status_args {
    const char *order_number;
};

static int parse_status(json_t *in, void *out, char *err, size_t errlen)
{
    struct status_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:s}", "order_number", &a->order_number) != 0)
        return -1;
    /* callers say "number 4417" or "#4417": keep what identifies the order */
    if (sb_tool_check_text("order_number", a->order_number, 1, 32, err, errlen) != 0)
        return -1;
    return 0;
}

/* $1 order number ('#' and spaces ignored), $2/$3 the caller's scope */
static const char status_sql[] =
    "select json_build_object('order_number', o.order_number, 'status', o.status, 'total', round(o.total_cents / 100.0, 2),"
    " 'currency', o.currency, 'items', o.items, 'carrier', o.carrier, 'tracking_number', o.tracking_number,"
    " 'placed_at', o.placed_at, 'shipped_at', o.shipped_at, 'delivered_at', o.delivered_at, 'customer_name', c.name)"
    " from orders o join customers c on c.id = o.customer_id"
    " where o.order_number = btrim(replace($1, '#', ''))"
    " and ($2::bigint is null or c.id = $2) and ($3::text is null or lower(c.email) = lower($3))";

static void run_status(sb_tool_call_t *call, const void *args)
{
    const struct status_args *a = args;
    const char *v[3] = {a->order_number, NULL, NULL};
    sb_tool_scope(call, v + 1);
    sb_tool_run_json(call, status_sql, 3, v, "no order with that number for this caller");
}

const sb_tool_t sb_tool_get_order_status = {
    .name = "get_order_status",
    .description = "Get the status of an order by its order number: shipping state, carrier, tracking number, items, dates.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"order_number\":{\"type\":\"string\",\"maxLength\":32,\"description\":\"the order number, e.g. 4417\"}},"
                  "\"required\":[\"order_number\"],\"additionalProperties\":false}",
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct status_args),
    .parse = parse_status,
    .run = run_status,
};

struct recent_args {
    json_int_t customer_id;
    const char *email;
    json_int_t limit;
};

static int parse_recent(json_t *in, void *out, char *err, size_t errlen)
{
    struct recent_args *a = out;
    a->limit = 5;
    if (sb_tool_unpack(in, err, errlen, "{s?I, s?s, s?I}", "customer_id", &a->customer_id, "email", &a->email, "limit",
                       &a->limit) != 0)
        return -1;
    if (a->customer_id == 0 && a->email == NULL)
        return snprintf(err, errlen, "give customer_id or email"), -1;
    if (a->customer_id != 0 && sb_tool_check_range("customer_id", a->customer_id, 1, INT64_MAX, err, errlen) != 0)
        return -1;
    if (sb_tool_check_text("email", a->email, 3, 254, err, errlen) != 0)
        return -1;
    return sb_tool_check_range("limit", a->limit, 1, 20, err, errlen);
}

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

static void run_recent(sb_tool_call_t *call, const void *args)
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

const sb_tool_t sb_tool_fetch_recent_orders = {
    .name = "fetch_recent_orders",
    .description = "List a customer's most recent orders (newest first) by customer id or email.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"customer_id\":{\"type\":\"integer\",\"minimum\":1},"
                  "\"email\":{\"type\":\"string\",\"maxLength\":254},"
                  "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20,\"default\":5}},"
                  "\"additionalProperties\":false}",
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct recent_args),
    .parse = parse_recent,
    .run = run_recent,
};
