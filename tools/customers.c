/*
 * Customer tools: look up the caller's profile by id or email. When the
 * request binds a customer, only that customer can be read.
 */
#include <string.h>

#include "tools.h"

struct profile_args {
    json_int_t customer_id; /* 0 when not given */
    const char *email;
};

static int parse_profile(json_t *in, void *out, char *err, size_t errlen)
{
    struct profile_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s?I, s?s}", "customer_id", &a->customer_id, "email", &a->email) != 0)
        return -1;
    if (a->customer_id == 0 && a->email == NULL)
        return snprintf(err, errlen, "give customer_id or email"), -1;
    if (a->customer_id != 0 && sb_tool_check_range("customer_id", a->customer_id, 1, INT64_MAX, err, errlen) != 0)
        return -1;
    return sb_tool_check_text("email", a->email, 3, 254, err, errlen);
}

/* $1 id, $2 email, $3/$4 the caller's scope */
static const char profile_sql[] =
    "select json_build_object('customer_id', c.id, 'name', c.name, 'email', c.email, 'phone', c.phone, 'tier', c.tier,"
    " 'customer_since', c.created_at::date, 'order_count', (select count(*) from orders o where o.customer_id = c.id))"
    " from customers c"
    " where ($1::bigint is null or c.id = $1) and ($2::text is null or lower(c.email) = lower($2))"
    " and ($3::bigint is null or c.id = $3) and ($4::text is null or lower(c.email) = lower($4))"
    " limit 1";

static void run_profile(sb_tool_call_t *call, const void *args)
{
    const struct profile_args *a = args;
    char id[24];
    const char *v[4] = {NULL, a->email, NULL, NULL};
    if (a->customer_id != 0) {
        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->customer_id);
        v[0] = id;
    }
    sb_tool_scope(call, v + 2);
    sb_tool_run_json(call, profile_sql, 4, v, "no customer matches (a caller can only look up their own account)");
}

const sb_tool_t sb_tool_fetch_customer_profile = {
    .name = "fetch_customer_profile",
    .description = "Look up a customer's profile (name, contact details, tier, number of orders) by customer id or email.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"customer_id\":{\"type\":\"integer\",\"minimum\":1,\"description\":\"the customer's id\"},"
                  "\"email\":{\"type\":\"string\",\"maxLength\":254,\"description\":\"the customer's email address\"}},"
                  "\"additionalProperties\":false}",
    .customer_scoped = 1,
    .needs_db = 1,
    .args_size = sizeof(struct profile_args),
    .parse = parse_profile,
    .run = run_profile,
};
