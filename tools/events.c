/*
 * Event tools: the agent's own record keeping. log_change_event writes, in
 * words, what the agent changed (for the humans who read change_log later);
 * record_agent_event stores a typed event with a small JSON payload. Neither
 * touches customer data, so neither is scoped to the caller. Each write is
 * one statement carrying the turn's idempotency key: a repeated turn finds
 * its first row instead of adding a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

#define MAX_PAYLOAD_BYTES 8192 /* the serialized payload; events are signals, not documents */

/* --- log_change_event ------------------------------------------------------------------------- */

struct change_args {
    const char *entity_type, *entity_id, *change_type, *description;
};

static int parse_change(json_t *in, void *out, char *err, size_t errlen)
{
    struct change_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:s, s:s, s:s, s:s}", "entity_type", &a->entity_type, "entity_id", &a->entity_id,
                       "change_type", &a->change_type, "description", &a->description) != 0)
        return -1;
    if (sb_tool_check_text("entity_type", a->entity_type, 1, 64, err, errlen) != 0 ||
        sb_tool_check_text("entity_id", a->entity_id, 1, 128, err, errlen) != 0 ||
        sb_tool_check_text("change_type", a->change_type, 1, 64, err, errlen) != 0 ||
        sb_tool_check_text("description", a->description, 1, 2000, err, errlen) != 0)
        return -1;
    return 0;
}

/* $1 entity type, $2 entity id, $3 change type, $4 description, $5 idempotency key */
static const char change_sql[] =
    "with ins as (insert into change_log as l (entity_type, entity_id, change_type, description, idempotency_key)"
    "  values ($1, $2, $3, $4, $5)" REPEAT_RETURNS(
        "true") ")"
                " select json_build_object('change_id', l.id, 'entity_type', l.entity_type, 'entity_id', l.entity_id,"
                "  'change_type', l.change_type, 'created', l.created)"
                " from ins l";

static void run_change(sb_tool_call_t *call, const void *args)
{
    const struct change_args *a = args;
    const char *v[5] = {a->entity_type, a->entity_id, a->change_type, a->description, sb_tool_call_key(call)};
    /* no row only when a concurrent twin took the key between the two reads: rare, and safe to retry */
    sb_tool_run_json(call, change_sql, 5, v, "the change was not logged, try again");
}

const sb_tool_t sb_tool_log_change_event = {
    .name = "log_change_event",
    .description = "Write down a change you made (to a ticket, an order, an account) so that staff can see later what the "
                   "agent changed and why.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"entity_type\":{\"type\":\"string\",\"maxLength\":64,\"description\":\"what was changed, e.g. ticket\"},"
                  "\"entity_id\":{\"type\":\"string\",\"maxLength\":128,\"description\":\"its id, e.g. 42\"},"
                  "\"change_type\":{\"type\":\"string\",\"maxLength\":64,\"description\":\"e.g. status_change\"},"
                  "\"description\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":2000}},"
                  "\"required\":[\"entity_type\",\"entity_id\",\"change_type\",\"description\"],"
                  "\"additionalProperties\":false}",
    .writes = 1,
    .needs_db = 1,
    .args_size = sizeof(struct change_args),
    .parse = parse_change,
    .run = run_change,
};

/* --- record_agent_event ----------------------------------------------------------------------- */

struct event_args {
    const char *event_type, *agent_id, *channel;
    json_t *payload; /* borrowed from the parsed arguments; NULL when not given */
};

static int parse_event(json_t *in, void *out, char *err, size_t errlen)
{
    struct event_args *a = out;
    if (sb_tool_unpack(in, err, errlen, "{s:s, s?o, s?s, s?s}", "event_type", &a->event_type, "payload", &a->payload, "agent_id",
                       &a->agent_id, "channel", &a->channel) != 0)
        return -1;
    if (sb_tool_check_text("event_type", a->event_type, 1, 64, err, errlen) != 0 ||
        sb_tool_check_text("agent_id", a->agent_id, 1, 128, err, errlen) != 0 ||
        sb_tool_check_text("channel", a->channel, 1, 128, err, errlen) != 0)
        return -1;
    if (a->payload != NULL && !json_is_object(a->payload))
        return snprintf(err, errlen, "payload must be a JSON object"), -1;
    /* json_dumpb with no buffer only measures */
    if (a->payload != NULL && json_dumpb(a->payload, NULL, 0, JSON_COMPACT) > MAX_PAYLOAD_BYTES)
        return snprintf(err, errlen, "payload must be at most %d bytes as JSON", MAX_PAYLOAD_BYTES), -1;
    return 0;
}

/* $1 event type, $2 agent id, $3 channel, $4 payload (JSON text), $5 idempotency key */
static const char event_sql[] =
    "with ins as (insert into agent_events as e (event_type, agent_id, channel, payload, idempotency_key)"
    "  values ($1, $2, $3, coalesce($4::jsonb, '{}'::jsonb), $5)" REPEAT_RETURNS(
        "true") ")"
                " select json_build_object('event_id', e.id, 'event_type', e.event_type, 'created', e.created)"
                " from ins e";

static void run_event(sb_tool_call_t *call, const void *args)
{
    const struct event_args *a = args;
    char *payload = a->payload ? json_dumps(a->payload, JSON_COMPACT) : NULL;
    if (a->payload != NULL && payload == NULL) { /* the parser measured it by dumping it: only memory can fail here */
        sb_tool_call_fail(call, "the payload could not be written");
        return;
    }
    const char *v[5] = {a->event_type, a->agent_id, a->channel, payload, sb_tool_call_key(call)};
    sb_tool_run_json(call, event_sql, 5, v, "the event was not recorded, try again"); /* the pool copies the values */
    free(payload);
}

const sb_tool_t sb_tool_record_agent_event = {
    .name = "record_agent_event",
    .description = "Record an event in the conversation (e.g. customer_verified, handoff_requested, survey_answered) with "
                   "optional details as a small JSON object.",
    .parameters = "{\"type\":\"object\",\"properties\":{"
                  "\"event_type\":{\"type\":\"string\",\"maxLength\":64},"
                  "\"payload\":{\"type\":\"object\",\"description\":\"details of the event (at most 8 KiB as JSON)\"},"
                  "\"agent_id\":{\"type\":\"string\",\"maxLength\":128},"
                  "\"channel\":{\"type\":\"string\",\"maxLength\":128}},"
                  "\"required\":[\"event_type\"],\"additionalProperties\":false}",
    .writes = 1,
    .needs_db = 1,
    .args_size = sizeof(struct event_args),
    .parse = parse_event,
    .run = run_event,
};
