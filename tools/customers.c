/*
 * Customer tools: look up the caller's profile by id or email. When the
 * request binds a customer, only that customer can be read.
 */
#include <stdio.h>
#include <string.h>

#include "tools.h"

struct profile_args {
    json_int_t customer_id; /* 0 when not given */
    const char *email;
};

static const sb_tool_arg_t profile_rows[] = {
    SB_INT("customer_id", 0, 1, INT64_MAX, 0, struct profile_args, customer_id, "the customer's id"),
    SB_TEXT("email", 0, 3, 254, struct profile_args, email, "the customer's email address"),
};

static int check_profile(const void *args, char *err, size_t errlen)
{
    const struct profile_args *a = args;
    if (a->customer_id == 0 && a->email == NULL)
        return snprintf(err, errlen, "give customer_id or email"), -1;
    return 0;
}

const sb_tool_args_t sb_args_fetch_customer_profile =
    SB_TOOL_ARGS("Look up a customer's profile (name, contact details, tier, number of orders) by customer id or email.",
                 struct profile_args, profile_rows, check_profile);

/* $1 id, $2 email, $3/$4 the caller's scope */
static const char profile_sql[] =
    "select json_build_object('customer_id', c.id, 'name', c.name, 'email', c.email, 'phone', c.phone, 'tier', c.tier,"
    " 'customer_since', c.created_at::date, 'order_count', (select count(*) from orders o where o.customer_id = c.id))"
    " from customers c"
    " where ($1::bigint is null or c.id = $1) and ($2::text is null or lower(c.email) = lower($2))"
    " and ($3::bigint is null or c.id = $3) and ($4::text is null or lower(c.email) = lower($4))"
    " limit 1";

void sb_run_fetch_customer_profile(sb_tool_call_t *call, const void *args)
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
