/*
 * Reading Retell's events (retell_event.h) with the strict scanner the
 * provider wires use (jscan.h): a first pass over the top-level object finds
 * the members switchboard uses and skips the rest, keeping only where the
 * transcript lies; a response or reminder then reads that span again into
 * chat messages. update_only, the most frequent event, never builds a thing.
 * Repeated keys follow jscan.h's rule: each member read here has a bit in its
 * object and a second one of its name refuses the event (there was no earlier
 * reader to agree with, and a repeat of what is acted on is a sender's error);
 * a repeat of a member skipped is not looked for.
 */
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "jscan_keys.h"
#include "retell_event.h"
#include "sb/alloc.h"

/* The members switchboard reads, one bit each in their object (sb_jscan_once): a second one of a name is refused. */
enum { M_TYPE = 1, M_ID = 2, M_TIMESTAMP = 4, M_TRANSCRIPT = 8 };
enum { U_ROLE = 1, U_CONTENT = 2 };

static const struct {
    const char *name;
    sb_retell_kind_t kind;
} kinds[] = {
    {"ping_pong", SB_RETELL_PING_PONG},
    {"call_details", SB_RETELL_CALL_DETAILS},
    {"update_only", SB_RETELL_UPDATE_ONLY},
    {"response_required", SB_RETELL_RESPONSE_REQUIRED},
    {"reminder_required", SB_RETELL_REMINDER_REQUIRED},
};

static sb_retell_kind_t kind_named(sb_str_t name)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); ++i)
        if (strlen(kinds[i].name) == name.len && memcmp(kinds[i].name, name.base, name.len) == 0)
            return kinds[i].kind;
    return SB_RETELL_OTHER;
}

/* One utterance {role, content, ...}: appended to `out` as a chat message when it is the agent's or the caller's words. */
static int read_utterance(sb_jscan_t *s, json_t *out, const char **why)
{
    if (sb_jscan_peek(s) != '{')
        return *why = "an utterance of the transcript is not an object", -1;
    ++s->p;
    sb_str_t key, role = {NULL, 0}, content = {NULL, 0};
    unsigned seen = 0;
    int first = 1, rc;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned m = SB_JSCAN_KEY(key, "role") ? U_ROLE : SB_JSCAN_KEY(key, "content") ? U_CONTENT : 0;
        if (m == 0) {
            if (sb_jscan_skip(s, 3) != SB_JSCAN_OK) /* words, and whatever Retell adds: inside the event, transcript, utterance */
                return *why = "the transcript is not JSON", -1;
            continue;
        }
        if (sb_jscan_once(&seen, m) != SB_JSCAN_OK)
            return *why = "an utterance repeats its role or content", -1;
        sb_str_t *into = m == U_ROLE ? &role : &content;
        if (sb_jscan_peek(s) != '"' || sb_jscan_string(s, into, 1) != SB_JSCAN_OK)
            return *why = "an utterance's role and content must be strings", -1;
    }
    if (rc < 0)
        return *why = "the transcript is not JSON", -1;
    if (role.base == NULL || content.base == NULL)
        return *why = "an utterance needs a role and content", -1;
    const char *as = SB_JSCAN_KEY(role, "agent") ? "assistant" : SB_JSCAN_KEY(role, "user") ? "user" : NULL;
    if (as != NULL && content.len > 0)
        json_array_append_new(out, json_pack("{s:s, s:s%}", "role", as, "content", content.base, content.len));
    return 0;
}

/* The transcript array at the cursor, into ev->messages. */
static int read_transcript(sb_jscan_t *s, sb_retell_event_t *ev, const char **why)
{
    if (sb_jscan_peek(s) != '[')
        return *why = "transcript must be an array", -1;
    ++s->p;
    json_t *all = json_array();
    int first = 1, rc;
    while ((rc = sb_jscan_element(s, &first)) > 0) {
        ++ev->utterances;
        if (read_utterance(s, all, why) != 0) {
            json_decref(all);
            return -1;
        }
    }
    if (rc < 0) {
        json_decref(all);
        return *why = "the transcript is not JSON", -1;
    }
    size_t n = json_array_size(all);
    if (n <= SB_RETELL_TRANSCRIPT_MAX) {
        ev->messages = all;
        return 0;
    }
    ev->messages = json_array();
    for (size_t i = n - SB_RETELL_TRANSCRIPT_MAX; i < n; ++i)
        json_array_append(ev->messages, json_array_get(all, i));
    json_decref(all);
    return 0;
}

/* The top-level object: what it is and where its members are. Returns 0, or -1 with why. */
static int scan(sb_jscan_t *s, sb_retell_event_t *ev, const unsigned char **transcript, const char **why)
{
    if (sb_jscan_peek(s) != '{')
        return *why = "an event is a JSON object", -1;
    ++s->p;
    unsigned seen = 0;
    int first = 1, rc, integer;
    sb_str_t key;
    while ((rc = sb_jscan_member(s, &first, &key)) > 0) {
        unsigned m = SB_JSCAN_KEY(key, "interaction_type") ? M_TYPE
                     : SB_JSCAN_KEY(key, "response_id")    ? M_ID
                     : SB_JSCAN_KEY(key, "timestamp")      ? M_TIMESTAMP
                     : SB_JSCAN_KEY(key, "transcript")     ? M_TRANSCRIPT
                                                           : 0;
        if (sb_jscan_once(&seen, m) != SB_JSCAN_OK)
            return *why = "an event repeats a member", -1;
        sb_str_t type;
        long long v;
        switch (m) {
        case M_TYPE:
            if (sb_jscan_peek(s) != '"' || sb_jscan_string(s, &type, 0) != SB_JSCAN_OK)
                return *why = "interaction_type must be a string", -1;
            ev->kind = kind_named(type);
            continue;
        case M_ID:
            ev->response_id = -1;
            if (sb_jscan_int(s, LLONG_MAX, 0, &v, 1) == SB_JSCAN_OK)
                ev->response_id = v;
            continue; /* checked below, for the events that need it */
        case M_TIMESTAMP: {
            int c = sb_jscan_peek(s);
            const unsigned char *at = s->p;
            if ((c != '-' && !SB_JSCAN_DIGIT(c)) || sb_jscan_number(s, &integer, &v) != SB_JSCAN_OK)
                ev->timestamp = (sb_str_t){NULL, 0}; /* checked below, for ping_pong */
            else
                ev->timestamp = (sb_str_t){(const char *)at, (size_t)(s->p - at)};
            if (ev->timestamp.base == NULL && sb_jscan_skip(s, 1) != SB_JSCAN_OK)
                return *why = "an event is a JSON object", -1;
            continue;
        }
        case M_TRANSCRIPT:
            *transcript = s->p; /* read again once the event's kind is known */
            break;
        }
        if (sb_jscan_skip(s, 1) != SB_JSCAN_OK)
            return *why = "an event is a JSON object", -1;
    }
    if (rc < 0 || sb_jscan_peek(s) != -1)
        return *why = "an event is one JSON object", -1;
    if (!(seen & M_TYPE))
        return *why = "interaction_type is missing", -1;
    return 0;
}

int sb_retell_event_read(const char *text, size_t len, sb_retell_event_t *ev, const char **why)
{
    memset(ev, 0, sizeof(*ev));
    ev->response_id = -2;              /* absent */
    char *scratch = sb_alloc(len + 1); /* decoded strings never outgrow their source */
    sb_jscan_t s = {(const unsigned char *)text, (const unsigned char *)text + len, scratch, NULL};
    const unsigned char *transcript = NULL;
    int rc = scan(&s, ev, &transcript, why);
    if (rc == 0) {
        switch (ev->kind) {
        case SB_RETELL_PING_PONG:
            if (ev->timestamp.base == NULL)
                rc = -1, *why = "ping_pong needs a number as its timestamp";
            break;
        case SB_RETELL_RESPONSE_REQUIRED:
        case SB_RETELL_REMINDER_REQUIRED:
            if (ev->response_id < 0) {
                rc = -1, *why = "response_id (a whole number, 0 or more) is missing or wrong";
            } else if (transcript == NULL) {
                rc = -1, *why = "transcript is missing";
            } else {
                sb_jscan_t again = {transcript, s.end, scratch, NULL};
                rc = read_transcript(&again, ev, why);
            }
            break;
        default:
            break;
        }
    }
    free(scratch);
    if (rc != 0)
        sb_retell_event_dispose(ev);
    return rc;
}

void sb_retell_event_dispose(sb_retell_event_t *ev)
{
    json_decref(ev->messages);
    ev->messages = NULL;
}
