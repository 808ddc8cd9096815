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

static const sb_tool_arg_t change_rows[] = {
    SB_TEXT("entity_type", 1, 1, 64, struct change_args, entity_type, "what was changed, e.g. ticket"),
    SB_TEXT("entity_id", 1, 1, 128, struct change_args, entity_id, "its id, e.g. 42"),
    SB_TEXT("change_type", 1, 1, 64, struct change_args, change_type, "e.g. status_change"),
    SB_TEXT("description", 1, 1, 2000, struct change_args, description, NULL),
};

const sb_tool_args_t sb_args_log_change_event =
    SB_TOOL_ARGS("Write down a change you made (to a ticket, an order, an account) so that staff can see later what the agent "
                 "changed and why.",
                 struct change_args, change_rows, NULL);

/* $1 entity type, $2 entity id, $3 change type, $4 description, $5 idempotency key */
/* clang-format off: the statement reads as SQL, a line a clause */
static const char change_sql[] =
    "with ins as (insert into change_log as l (entity_type, entity_id, change_type, description, idempotency_key)"
    "  values ($1, $2, $3, $4, $5)" REPEAT_RETURNS(
        "true") ")"
                " select json_build_object('change_id', l.id, 'entity_type', l.entity_type, 'entity_id', l.entity_id,"
                "  'change_type', l.change_type, 'created', l.created)"
                " from ins l";
/* clang-format on */

void sb_run_log_change_event(sb_tool_call_t *call, const void *args)
{
    const struct change_args *a = args;
    const char *v[5] = {a->entity_type, a->entity_id, a->change_type, a->description, sb_tool_call_key(call)};
    /* no row only when a concurrent twin took the key between the two reads: rare, and safe to retry */
    sb_tool_run_json(call, change_sql, 5, v, "the change was not logged, try again");
}

/* --- record_agent_event ----------------------------------------------------------------------- */

struct event_args {
    const char *event_type, *agent_id, *channel;
    json_t *payload; /* borrowed from the parsed arguments; NULL when not given */
};

static const sb_tool_arg_t event_rows[] = {
    SB_TEXT("event_type", 1, 1, 64, struct event_args, event_type, NULL),
    SB_OBJECT("payload", 0, MAX_PAYLOAD_BYTES, struct event_args, payload, "details of the event (at most 8 KiB as JSON)"),
    SB_TEXT("agent_id", 0, 1, 128, struct event_args, agent_id, NULL),
    SB_TEXT("channel", 0, 1, 128, struct event_args, channel, NULL),
};

const sb_tool_args_t sb_args_record_agent_event =
    SB_TOOL_ARGS("Record an event in the conversation (e.g. customer_verified, handoff_requested, survey_answered) with "
                 "optional details as a small JSON object.",
                 struct event_args, event_rows, NULL);

/* $1 event type, $2 agent id, $3 channel, $4 payload (JSON text), $5 idempotency key */
/* clang-format off: the statement reads as SQL, a line a clause */
static const char event_sql[] =
    "with ins as (insert into agent_events as e (event_type, agent_id, channel, payload, idempotency_key)"
    "  values ($1, $2, $3, coalesce($4::jsonb, '{}'::jsonb), $5)" REPEAT_RETURNS(
        "true") ")"
                " select json_build_object('event_id', e.id, 'event_type', e.event_type, 'created', e.created)"
                " from ins e";
/* clang-format on */

void sb_run_record_agent_event(sb_tool_call_t *call, const void *args)
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
