/*
 * Upstream Chat Completions stream chunks (and whole non-streamed answers), parsed into a typed delta. Vendor
 * fields (reasoning, x_groq, provider, obfuscation, ...) are ignored; fields
 * switchboard uses must have the right type or the chunk is malformed.
 */
#ifndef SB_CHUNK_H
#define SB_CHUNK_H

#include <stddef.h>

#include "sb/str.h"

#define SB_CHUNK_MAX_TOOLS 128 /* tool-call fragments per chunk: a provider may send a whole round of calls in one */
#define SB_CHUNK_MAX_DEPTH 64  /* nested arrays and objects per chunk (the scanner's limit, jscan.h); real chunks use 7 */
/* Bytes of one tool call's id the turn keeps: Gemini's thought signature (~1 KB) travels inside the id its wire mints */
#define SB_CHUNK_MAX_CALL_ID 8192

typedef struct sb_tool_delta {
    long index;
    sb_str_t id, type, name, arguments;
} sb_tool_delta_t;

typedef struct sb_delta {
    sb_str_t content;
    sb_str_t audio; /* delta.audio as the provider wrote it (raw JSON object: id, data, transcript, expires_at), relayed as is */
    sb_str_t finish_reason;
    sb_str_t model;
    sb_str_t error_message, error_type, error_code; /* an in-band {"error":{...}} object */
    size_t ntools;
    int has_usage;
    long long prompt_tokens, completion_tokens, total_tokens;
    int is_error;
    const char *problem; /* on failure, what was wrong when it can be named ("a tool call index ..."), else NULL */
    int too_many_tools;  /* on failure: more than SB_CHUNK_MAX_TOOLS calls (a whole answer's round, or one chunk's) */
    /* last, so that clearing a delta clears only the fields before it: entries past ntools are never read */
    sb_tool_delta_t tools[SB_CHUNK_MAX_TOOLS];
} sb_delta_t;

/*
 * Parses one event's data, which must be exactly one strict JSON (RFC 8259)
 * object: valid UTF-8, no \u0000, integers within long long, at most
 * SB_CHUNK_MAX_DEPTH levels deep; of duplicate keys the last one counts.
 * Returns 0 and fills `out`, -1 when the data is not such an object, or -2
 * when it is but a field switchboard uses has the wrong type or is past a
 * limit (out->problem then names it when it can; the rest of `out` is
 * unspecified).
 *
 * Allocates nothing. The strings in `out` are borrowed: they point into `data`
 * or, when they held escapes, into `scratch`, which the caller provides with
 * room for at least `len` bytes (decoding never makes a string longer). Both
 * must outlive the use of `out`. Reentrant: keeps no state between calls.
 */
int sb_chunk_parse(const char *data, size_t len, sb_delta_t *out, char *scratch);
/*
 * The same for one whole, non-streamed chat.completion: choice 0's `message`
 * (content, tool_calls whole, each at its position when it has no index) is
 * read where a chunk has its `delta`; finish_reason, usage, model and an
 * in-band error as in a chunk. Same contract.
 */
int sb_chunk_parse_whole(const char *data, size_t len, sb_delta_t *out, char *scratch);

#endif
