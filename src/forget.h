/*
 * `switchboard forget --customer-id N | --email E | --conversation ID`:
 * erases one caller's stored conversations with their messages and events
 * (memory and the event log), and nothing else, and says what it removed.
 */
#ifndef SB_FORGET_H
#define SB_FORGET_H

#include <stdio.h>

#include "sb/config.h"

/*
 * Runs the command with its arguments (`argc`, `argv` after "forget").
 * Blocking: a command-line action, never for the server's loop. Returns 0,
 * 1 when the database failed (nothing was removed: one statement), or 2 for
 * a malformed argument. What it removed goes to `out`, failures to `log`.
 */
int sb_forget_run(const sb_config_t *config, int argc, char **argv, FILE *out, FILE *log);

#endif
