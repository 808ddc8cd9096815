/*
 * Call tools: what an agent decides about the call itself. end_call ends it
 * after the agent's next words; transfer_call hands it to TRANSFER_NUMBER
 * after them. Neither does anything here but say so to the model: the channel
 * that carries the call (a voice platform's socket, src/retell.c) hears the
 * result and acts on it. They are offered only on such a channel
 * (SB_TOOL_CALL), and the number a call goes to is the deployment's, never
 * the model's: words the caller says cannot send a call anywhere else.
 */
#include <stdio.h>
#include <string.h>

#include "tools.h"

#define REASON_MAX 200

const char *sb_calls_missing_transfer(const sb_config_t *c)
{
    return c->transfer_number == NULL ? "TRANSFER_NUMBER" : NULL;
}

int sb_calls_init(const sb_config_t *config, char *err, size_t errlen)
{
    const char *n = config->transfer_number;
    if (n == NULL)
        return 0;
    /* E.164: a plus, then 7 to 15 digits, the first not 0 */
    size_t len = strlen(n);
    if (n[0] != '+' || len < 8 || len > 16 || strspn(n + 1, "0123456789") != len - 1 || n[1] == '0')
        return snprintf(err, errlen, "TRANSFER_NUMBER must be a phone number in E.164 form, e.g. +14155550123"), -1;
    return 0;
}

struct call_args {
    const char *reason;
};

static const sb_tool_arg_t reason_rows[] = {
    SB_TEXT("reason", 0, 1, REASON_MAX, struct call_args, reason, "why, in a few words, for the record"),
};

/* --- end_call ------------------------------------------------------------------------------------ */

const sb_tool_args_t sb_args_end_call =
    SB_TOOL_ARGS("End the phone call after your next words. Only when the caller has said goodbye or asked to hang up, or the "
                 "conversation is clearly over. Say a short goodbye in your answer: the call ends once it is spoken.",
                 struct call_args, reason_rows, NULL);

void sb_run_end_call(sb_tool_call_t *call, const void *args)
{
    (void)args; /* the reason is in the call's record (the event log) */
    sb_tool_call_finish(call, json_pack("{s:b, s:s}", "ending", 1, "note", "the call ends after your next words: say goodbye"));
}

/* --- transfer_call ------------------------------------------------------------------------------- */

const sb_tool_args_t sb_args_transfer_call =
    SB_TOOL_ARGS("Transfer the phone call to a person at the front desk after your next words, when the caller asks for a "
                 "person or you cannot help. Tell the caller in your answer that you are putting them through.",
                 struct call_args, reason_rows, NULL);

void sb_run_transfer_call(sb_tool_call_t *call, const void *args)
{
    (void)args;
    sb_tool_call_finish(call,
                        json_pack("{s:b, s:s}", "transferring", 1, "note",
                                  "the call is transferred after your next words: tell the caller you are putting them through"));
}
