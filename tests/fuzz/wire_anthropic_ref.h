/*
 * The reference reading of Anthropic's stream events: the wire's event() as
 * it was before the single-pass reader, json_loadb followed by lookups in the
 * tree. Only the fuzz target uses it, as the oracle the wire must match.
 */
#ifndef SB_WIRE_ANTHROPIC_REF_H
#define SB_WIRE_ANTHROPIC_REF_H

#include <jansson.h>

#include "wire.h"

/* Bytes of the reference's own per-call state (zeroed before the first event). */
extern const size_t ref_anthropic_state_size;

/* sb_wire_anthropic.event as it was; `jerr` gets jansson's message when the data does not load. */
sb_wire_result_t ref_anthropic_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                     json_error_t *jerr);

#endif
