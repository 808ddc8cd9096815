/*
 * Retell AI's LLM WebSocket events (Retell -> switchboard) as switchboard
 * reads them: one strict pass over the text, no tree, so the frequent
 * update_only events (the whole transcript again, word timings included, each
 * time the caller or the agent says a word) cost a scan and nothing more. The
 * members switchboard uses are checked strictly (type, presence, no
 * duplicates); members it does not use are skipped, not refused: Retell adds
 * fields to these events over time (words, turntaking,
 * transcript_with_tool_calls), and a refused ping_pong would end the call.
 * Pure: no I/O, any thread.
 */
#ifndef SB_RETELL_EVENT_H
#define SB_RETELL_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "sb/str.h"

/* Utterances of a transcript a turn is given: the newest, the older ones are memory's (its summary of them). */
#define SB_RETELL_TRANSCRIPT_MAX 1000

typedef enum sb_retell_kind {
    SB_RETELL_PING_PONG,         /* keep-alive: answered with the same timestamp */
    SB_RETELL_CALL_DETAILS,      /* the call object, once after config asked for it */
    SB_RETELL_UPDATE_ONLY,       /* the transcript so far: nothing to answer */
    SB_RETELL_RESPONSE_REQUIRED, /* answer the transcript, as response_id */
    SB_RETELL_REMINDER_REQUIRED, /* the caller has been silent: check in, as response_id */
    SB_RETELL_OTHER,             /* an interaction_type Retell has not documented (yet): ignored */
} sb_retell_kind_t;

typedef struct sb_retell_event {
    sb_retell_kind_t kind;
    long long response_id; /* response_ and reminder_required: the answer's id, >= 0 */
    sb_str_t timestamp;    /* ping_pong: the number as Retell wrote it (borrowed from the text) */
    /* response_ and reminder_required: the transcript as chat messages (agent -> assistant, user -> user; utterances of
     * other roles or without words are left out), oldest first, the newest SB_RETELL_TRANSCRIPT_MAX. New reference. */
    json_t *messages;
    size_t utterances; /* how many utterances the transcript held, all of them */
} sb_retell_event_t;

/*
 * Reads one event from `len` bytes of `text`. Returns 0 with `ev` filled,
 * or -1 with `why` (static words for the log) when the text is not an event
 * as Retell documents it: not one JSON object, interaction_type missing, or
 * a member switchboard uses missing, repeated or of the wrong type.
 */
int sb_retell_event_read(const char *text, size_t len, sb_retell_event_t *ev, const char **why);
/* Lets go of what `ev` holds. Safe on an event that was not read. */
void sb_retell_event_dispose(sb_retell_event_t *ev);

#endif
