/*
 * The tool table: switchboard's whole tool surface on one screen, and what
 * is done with it at start-up (check it, build each tool's schema, pick the
 * offered ones) and per request (offer them, find the one a call names).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"
#include "tools.h"

static const char *needs_database(const sb_config_t *config);

#define DB SB_TOOL_NEEDS_DB
#define WRITES SB_TOOL_WRITES
#define SCOPED SB_TOOL_SCOPED
#define CALL SB_TOOL_CALL
#define ROW(name, flags, missing, init)                                                                                            \
    {                                                                                                                              \
#name, sb_run_##name, &sb_args_##name, flags, missing, init                                                                \
    }

/*
 * The tools, one row each: the name the model calls (the Node sample's
 * names, so existing prompts keep working), which gives its handler
 * (sb_run_<name>) and arguments (sb_args_<name>: its description and one row
 * per argument, from which both the schema the model sees and the checks on
 * what it sends are made), in the domain file named on the right; its flags
 * (WRITES: its write carries the turn's idempotency key; SCOPED: refuses
 * another customer's data when the caller is bound; DB: runs statements;
 * CALL: acts on the call itself, so only a channel that can act on it offers
 * it); what decides whether it can be offered (the settings it lacks, NULL:
 * none); and its domain's start-up, run once. A tool is offered when it has
 * what it needs and TOOLS_ENABLED names it.
 */
static const sb_tool_t table[] = {
    ROW(fetch_customer_profile, DB | SCOPED, needs_database, NULL),                       /* customers.c */
    ROW(fetch_recent_orders, DB | SCOPED, needs_database, NULL),                          /* orders.c */
    ROW(get_order_status, DB | SCOPED, needs_database, NULL),                             /* orders.c */
    ROW(create_support_ticket, DB | SCOPED | WRITES, needs_database, sb_tickets_init),    /* tickets.c */
    ROW(update_ticket_status, DB | SCOPED | WRITES, needs_database, sb_tickets_init),     /* tickets.c */
    ROW(get_ticket_details, DB | SCOPED, needs_database, sb_tickets_init),                /* tickets.c */
    ROW(log_customer_interaction, DB | SCOPED | WRITES, needs_database, sb_tickets_init), /* tickets.c */
    ROW(escalate_ticket, DB | SCOPED | WRITES, needs_database, sb_escalations_init),      /* escalations.c (and its email) */
    ROW(log_change_event, DB | WRITES, needs_database, NULL),                             /* events.c */
    ROW(record_agent_event, DB | WRITES, needs_database, NULL),                           /* events.c */
    ROW(send_rtm_message, WRITES, sb_messaging_missing, sb_messaging_init),               /* messaging.c (keyed with a database) */
    ROW(end_call, CALL, NULL, sb_calls_init),                                             /* calls.c */
    ROW(transfer_call, CALL, sb_calls_missing_transfer, sb_calls_init),                   /* calls.c */
};

#define NTOOLS (sizeof(table) / sizeof(table[0]))
_Static_assert(NTOOLS <= 32, "a request's shadowed tools are one bit each in a uint32_t");

static int enabled[NTOOLS];
static uint32_t call_rows;       /* the rows of the tools that act on the call */
static json_t *offered;          /* the enabled tools in OpenAI form, built once */
static char *offered_json;       /* `offered` but the call tools, serialized; NULL when none is enabled */
static char *offered_calls_json; /* `offered` serialized, NULL when no tool is enabled */

static const char *needs_database(const sb_config_t *config)
{
    return config->database_url == NULL ? "DATABASE_URL" : NULL;
}

const sb_tool_t *sb_tools_table(size_t *count)
{
    *count = NTOOLS;
    return table;
}

/* Whether `name` appears in the comma-separated list `list`. */
static int listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            ++p;
        size_t len = strcspn(p, ", ");
        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        p += len;
    }
    return 0;
}

static long find(const char *name, size_t len)
{
    for (size_t i = 0; i < NTOOLS; ++i)
        if (enabled[i] && strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

int sb_tools_init(const sb_config_t *config, char *err, size_t errlen)
{
    json_decref(offered);
    offered = json_array();
    call_rows = 0;
    const char *list = config->tools_enabled;
    int all = list == NULL || strcmp(list, "all") == 0;
    for (size_t i = 0; i < NTOOLS; ++i) {
        const sb_tool_t *t = &table[i];
        int started = t->init == NULL; /* a domain starts once */
        for (size_t j = 0; j < i; ++j) {
            if (strcmp(table[j].name, t->name) == 0)
                return snprintf(err, errlen, "tool %s is listed twice", t->name), -1;
            started |= t->init == table[j].init;
        }
        if (!started && t->init(config, err, errlen) != 0)
            return -1;
        if (t->flags & SB_TOOL_CALL)
            call_rows |= 1u << i;
        const char *missing = t->missing != NULL ? t->missing(config) : NULL;
        enabled[i] = missing == NULL && (all || listed(list, t->name));
        if (!all && missing != NULL && listed(list, t->name)) /* asked for by name: say why it is missing */
            sb_log_warn("TOOLS_ENABLED names %s, but %s is not configured: not offered", t->name, missing);
        if (!enabled[i])
            continue;
        char *schema = sb_tool_args_schema(t->args);
        json_t *parameters = schema != NULL ? json_loads(schema, JSON_REJECT_DUPLICATES, NULL) : NULL;
        free(schema);
        if (!json_is_object(parameters))
            return snprintf(err, errlen, "tool %s: its arguments make no JSON schema", t->name), -1;
        json_array_append_new(offered, json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function", "function", "name", t->name,
                                                 "description", t->args->description, "parameters", parameters));
    }
    if (!all) { /* every name in TOOLS_ENABLED must exist */
        for (const char *p = list; *p != '\0';) {
            while (*p == ' ' || *p == ',')
                ++p;
            size_t len = strcspn(p, ", ");
            int known = strncmp(p, "none", len) == 0 && len == 4;
            for (size_t i = 0; i < NTOOLS && !known; ++i)
                known = strlen(table[i].name) == len && memcmp(table[i].name, p, len) == 0;
            if (len > 0 && !known)
                return snprintf(err, errlen, "TOOLS_ENABLED names an unknown tool: %.*s", (int)len, p), -1;
            p += len;
        }
    }
    free(offered_json);
    free(offered_calls_json);
    offered_json = sb_tools_serialize(~call_rows);
    offered_calls_json = sb_tools_serialize(UINT32_MAX);
    return 0;
}

const sb_tool_t *sb_tools_find(const char *name, size_t len)
{
    long i = find(name, len);
    return i >= 0 ? &table[i] : NULL;
}

const sb_tool_t *sb_tools_find_offered(const char *name, size_t len, uint32_t shadowed)
{
    long i = find(name, len);
    return i >= 0 && !(shadowed & (1u << i)) ? &table[i] : NULL;
}

size_t sb_tools_names(uint32_t set, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NTOOLS; ++i) {
        if (!(set & (1u << i)))
            continue;
        int n = snprintf(out + used, cap - used, "%s%s", used ? "," : "", table[i].name);
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return used;
}

uint32_t sb_tools_calls(void)
{
    return call_rows;
}

char *sb_tools_serialize(uint32_t allowed)
{
    json_t *some = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(offered, i, t)
    {
        json_t *name = json_object_get(json_object_get(t, "function"), "name");
        if (allowed & (1u << find(json_string_value(name), json_string_length(name))))
            json_array_append(some, t);
    }
    char *out = json_array_size(some) > 0 ? json_dumps(some, JSON_COMPACT) : NULL;
    json_decref(some);
    return out;
}

const char *sb_tools_offer(json_t *body, int calls, uint32_t *shadowed)
{
    return calls ? sb_tools_offer_only(body, UINT32_MAX, offered_calls_json, shadowed)
                 : sb_tools_offer_only(body, ~call_rows, offered_json, shadowed);
}

const char *sb_tools_offer_only(json_t *body, uint32_t allowed, const char *serialized, uint32_t *shadowed)
{
    *shadowed = 0;
    if (serialized == NULL)
        return NULL;
    json_t *tools = json_object_get(body, "tools");
    if (tools == NULL)
        return serialized;
    if (!json_is_array(tools)) {
        tools = json_array();
        json_object_set_new(body, "tools", tools);
    }
    /* a tool of the client's with the name of one of switchboard's wins for this request: never two of one name */
    size_t i, n = json_array_size(tools);
    json_t *t;
    for (i = 0; i < n; ++i) {
        json_t *name = json_object_get(json_object_get(json_array_get(tools, i), "function"), "name");
        long own = json_is_string(name) ? find(json_string_value(name), json_string_length(name)) : -1;
        if (own >= 0)
            *shadowed |= 1u << own;
    }
    json_array_foreach(offered, i, t)
    {
        json_t *name = json_object_get(json_object_get(t, "function"), "name");
        long own = find(json_string_value(name), json_string_length(name));
        if (own >= 0 && (allowed & (1u << own)) && !(*shadowed & (1u << own)))
            json_array_append(tools, t);
    }
    return NULL;
}
