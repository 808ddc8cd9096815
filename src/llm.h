/*
 * The model provider interface. A provider runs one streamed completion per
 * call and reports parsed deltas and the end to a sink (the turn). Concrete
 * calls embed sb_llm_call_t as their first member named `super`.
 */
#ifndef SB_LLM_H
#define SB_LLM_H

#include <curl/curl.h>
#include <uv.h>

#include "chunk.h"
#include "request.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/error.h"

struct sb_routes;
struct sb_endpoint;

/* What a provider call uses, borrowed for the call: the worker's loop and curl multi, the provider table. */
typedef struct sb_llm_env {
    const sb_config_t *config;
    uv_loop_t *loop;
    sb_curlm_t *curlm;
    const struct sb_routes *routes; /* which provider answers which model (route.h): shared, read-only */
} sb_llm_env_t;

typedef struct sb_llm_end {
    sb_error_t error;        /* SB_OK when the stream finished normally */
    const char *message;     /* provider's own words, sanitised, or NULL for the kind's message */
    const char *retry_after; /* the provider's Retry-After, or NULL */
    int timed_out;
} sb_llm_end_t;

typedef struct sb_llm_sink sb_llm_sink_t;
struct sb_llm_sink {
    /* One parsed delta, in stream order. May call the provider's pause. */
    void (*on_delta)(sb_llm_sink_t *sink, const sb_delta_t *d);
    /* The call is over (the call object is already gone; do not cancel it). */
    void (*on_end)(sb_llm_sink_t *sink, const sb_llm_end_t *end);
};

typedef struct sb_llm_call {
    const struct sb_provider *provider;
} sb_llm_call_t;

typedef struct sb_provider {
    const char *name;
    /* Starts a call for the validated request (borrowed until the call ends). Callbacks come later, never from in here. */
    sb_llm_call_t *(*start)(const sb_llm_env_t *env, const sb_chat_request_t *req, sb_llm_sink_t *sink);
    /* Stops reading until resume: the client is slow. Callable from on_delta. */
    void (*pause)(sb_llm_call_t *call);
    void (*resume)(sb_llm_call_t *call);
    /* Ends the call at once; no sink callback follows. Callable from on_delta; not after on_end. */
    void (*cancel)(sb_llm_call_t *call);
} sb_provider_t;

/*
 * Every provider reached over HTTP (upstream.c), spoken by its endpoint's
 * wire (wire.h: Chat Completions, Anthropic, Gemini, Responses). Its calls
 * are started with sb_upstream_start.
 */
extern const sb_provider_t sb_provider_upstream;
/* The offline sandbox model: answers locally when no provider is configured. */
extern const sb_provider_t sb_provider_sandbox;
/* What a turn asks: the route of the request's model, then LLM_FALLBACK's models while nothing was said (route.c). */
extern const sb_provider_t sb_provider_routed;

/*
 * Starts a call to the provider at `to` (borrowed: lives as long as the
 * process) asking for `model` (NULL: the request's own). Never NULL: a
 * request that API cannot say ends the call from the loop with
 * SB_E_INVALID_REQUEST and the wire's words.
 */
sb_llm_call_t *sb_upstream_start(const sb_llm_env_t *env, const struct sb_endpoint *to, const char *model,
                                 const sb_chat_request_t *req, sb_llm_sink_t *sink);

#endif
