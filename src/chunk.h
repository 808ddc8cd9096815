/*
 * Upstream Chat Completions stream chunks, parsed into a typed delta. Vendor
 * fields (reasoning, x_groq, provider, obfuscation, ...) are ignored; fields
 * switchboard uses must have the right type or the chunk is malformed.
 */
#ifndef SB_CHUNK_H
#define SB_CHUNK_H

#include <jansson.h>
#include <stddef.h>

#define SB_CHUNK_MAX_TOOLS 16 /* tool-call fragments per chunk */

typedef struct sb_str {
    const char *base; /* NULL when absent */
    size_t len;
} sb_str_t;

typedef struct sb_tool_delta {
    long index;
    sb_str_t id, type, name, arguments;
} sb_tool_delta_t;

typedef struct sb_delta {
    sb_str_t content;
    sb_str_t finish_reason;
    sb_str_t model;
    sb_str_t error_message, error_type, error_code; /* an in-band {"error":{...}} object */
    sb_tool_delta_t tools[SB_CHUNK_MAX_TOOLS];
    size_t ntools;
    int has_usage;
    long long prompt_tokens, completion_tokens, total_tokens;
    int is_error;
} sb_delta_t;

/*
 * Parses one event's data. Returns 0 and fills `out` (strings borrowed from
 * *holder, a new reference the caller releases after use), or -1 when the
 * data is not a JSON object of the expected shape (*holder is NULL then).
 */
int sb_chunk_parse(const char *data, size_t len, sb_delta_t *out, json_t **holder);

#endif
