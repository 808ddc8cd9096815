/*
 * A provider's wire format: how one model API is spoken over HTTP and SSE.
 * The streaming call (upstream.c) is the same for every API: curl on the
 * worker's loop, the SSE decoder, deadlines, the retry. What differs is here:
 * the URL, the API's own headers, the request body built from the cleaned
 * Chat Completions request, and each streamed event read into the turn's
 * typed delta (chunk.h: words, tool-call fragments by index, usage, finish
 * reason). The tool loop, the sinks and everything else stay provider-blind.
 * A wire is one const struct, one slot a line.
 */
#ifndef SB_WIRE_H
#define SB_WIRE_H

#include <curl/curl.h>
#include <stddef.h>

#include "chunk.h"
#include "request.h"
#include "sb/error.h"
#include "sb/sse.h"

/* What one event of the stream was. */
typedef enum sb_wire_result {
    SB_WIRE_SKIP = 0,  /* nothing for the turn (a ping, a block's start with nothing in it yet, ...) */
    SB_WIRE_DELTA = 1, /* `out` holds a delta for the turn */
    SB_WIRE_END = 2,   /* the API's end of stream (OpenAI's [DONE], Anthropic's message_stop, ...) */
    SB_WIRE_ERROR = 3, /* the stream failed: `*error` is its kind, out->error_message its words (may be empty); for
                          SB_E_UPSTREAM_BAD_RESPONSE, out->problem ends "the model provider sent a chunk ..." */
} sb_wire_result_t;

/* What a wire is told about the call it builds a request for. Borrowed for the call. */
typedef struct sb_wire_target {
    const char *base_url; /* the provider's base URL, no trailing slash ("https://api.anthropic.com/v1") */
    const char *model;    /* the model the provider is asked for (the route may rename the caller's) */
    const sb_config_t *config;
} sb_wire_target_t;

typedef struct sb_wire {
    const char *name; /* "openai", "anthropic", "gemini", "responses": for logs and metrics */
    /* The URL of one streamed call. New string (free()). */
    char *(*url)(const sb_wire_target_t *target);
    /* Appends the API's own headers (auth with `key`, versions, Accept) to `list` and returns it; key may be NULL. */
    struct curl_slist *(*headers)(struct curl_slist *list, const char *key);
    /*
     * The request body for this API from the cleaned Chat Completions request
     * (req->upstream, with req->offered_tools as switchboard's tools; see
     * sb_chat_request_dump for the OpenAI shape: messages with roles system,
     * user, assistant (content, tool_calls) and tool (tool_call_id, content)).
     * New string (free()), or NULL with `err` set when it cannot be said in
     * this API (the turn fails with SB_E_INVALID_REQUEST and that message).
     */
    char *(*body)(const sb_wire_target_t *target, const sb_chat_request_t *req, char *err, size_t errlen);
    /* Bytes of per-call parsing state (zeroed before the first event of every attempt), 0 for none. */
    size_t state_size;
    /*
     * Reads one SSE event into `out` (cleared by the wire). `scratch` holds at
     * least ev->data_len bytes for decoded strings; `state` keeps what spans
     * events (open blocks, minted call ids). `out` may point into the event's
     * data, `scratch` and `state`: the caller hands the delta on before the
     * SSE decoder's callback returns, and keeps none of it. Returns what the
     * event was.
     */
    sb_wire_result_t (*event)(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error);
    /*
     * Reads one whole, non-streamed answer (the 200 body, `len` bytes) into
     * `out`, as `event` reads one event (same `scratch` and borrowing):
     * SB_WIRE_DELTA or SB_WIRE_ERROR. NULL: the API is always streamed here.
     * A wire with it asks for a whole answer in `body` when req->whole.
     */
    sb_wire_result_t (*whole)(const char *data, size_t len, char *scratch, sb_delta_t *out, sb_error_t *error);
    /*
     * The words of a non-2xx answer's body (`len` bytes), for the caller:
     * written into `msg` (`cap` bytes, terminated), "" when none can be read.
     * The HTTP status picks the error kind (sb_error_for_provider_status); an
     * API with its own overload status (Anthropic's 529) is mapped there too.
     */
    void (*error_message)(const char *body, size_t len, char *msg, size_t cap);
} sb_wire_t;

/*
 * Where and how one provider is called: its wire, address and key, with the
 * wire's headers built once (route.c makes these at start-up; read-only after).
 */
typedef struct sb_endpoint {
    const char *provider;       /* openai, responses, anthropic, gemini: logs, metrics */
    const sb_wire_t *wire;      /* NULL: the offline sandbox answers instead */
    const char *base_url;       /* borrowed from the config */
    const char *key;            /* borrowed from the config; NULL for a keyless provider */
    struct curl_slist *headers; /* the wire's headers with the key, and Expect: (no 100-continue wait) */
} sb_endpoint_t;

/* `path` under `base_url` ("/messages"). New string (free()). */
char *sb_wire_url(const char *base_url, const char *path);
/*
 * Appends the header line `head` + `key` ("x-api-key: " + key) to `list` and
 * returns it; nothing when the key is NULL, empty, or holds a control
 * character (logged without the key). The line built on the way is wiped.
 */
struct curl_slist *sb_wire_key_header(struct curl_slist *list, const char *head, const char *key);

/* OpenAI-compatible Chat Completions: {base}/chat/completions, Bearer key, chunk.c's scanner. */
extern const sb_wire_t sb_wire_openai;
/* Anthropic Messages: {base}/messages, x-api-key and anthropic-version. */
extern const sb_wire_t sb_wire_anthropic;
/* Gemini: {base}/models/{model}:streamGenerateContent?alt=sse, x-goog-api-key. */
extern const sb_wire_t sb_wire_gemini;
/* OpenAI Responses: {base}/responses, Bearer key, response.* events. */
extern const sb_wire_t sb_wire_responses;
/* Whether a Responses event, by its SSE name, tells the turn nothing (its data is then not read). */
int sb_wire_responses_says_nothing(const sb_sse_event_t *ev);

#endif
