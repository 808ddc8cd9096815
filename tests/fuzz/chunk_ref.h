/*
 * The reference reading of upstream chunks: sb_chunk_parse as it was before
 * the single-pass scanner, json_loadb followed by typed lookups. Only the
 * chunk fuzz target and unit test use it, as the oracle the scanner must match.
 */
#ifndef SB_CHUNK_REF_H
#define SB_CHUNK_REF_H

#include <jansson.h>

#include "chunk.h"

/*
 * Returns 0 and fills `out` (strings borrowed from *holder, a new reference
 * the caller releases), or -1 with *holder NULL. On -1, `error` holds
 * jansson's message, or "not a chunk" when the JSON loaded but has the wrong shape.
 */
int ref_chunk_parse(const char *data, size_t len, sb_delta_t *out, json_t **holder, json_error_t *error);

#endif
