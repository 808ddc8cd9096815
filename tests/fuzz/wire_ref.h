/*
 * The reference readings of provider events: each wire's event() as it was
 * before its single-pass scanner, json_loadb followed by lookups in the tree.
 * Only the wire fuzz targets use them, as the oracles the scanners must match.
 * Each takes a state of its own (ref_*_state_size bytes, zeroed before the
 * first event) and, beyond event()'s arguments, `jerr` for why jansson did not
 * load the event (jerr->text is "" when it did).
 */
#ifndef SB_WIRE_REF_H
#define SB_WIRE_REF_H

#include <jansson.h>

#include "wire.h"

extern const size_t ref_responses_state_size;
sb_wire_result_t ref_responses_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                     json_error_t *jerr);

extern const size_t ref_gemini_state_size;
sb_wire_result_t ref_gemini_event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error,
                                  json_error_t *jerr);

#endif
