/*
 * The provider table: which API, base URL and key answer a model. Built once
 * at start-up from the settings (LLM_ROUTES, the providers' keys), read-only
 * after and shared by every worker. A turn's model picks its route; when the
 * route fails before anything reached the caller, LLM_FALLBACK's models are
 * tried in order (sb_provider_routed, llm.h).
 */
#ifndef SB_ROUTE_H
#define SB_ROUTE_H

#include <curl/curl.h>
#include <stddef.h>

#include "llm.h"
#include "sb/config.h"
#include "wire.h"

typedef struct sb_route {
    char *pattern;    /* a model name, or a prefix ending in '*'; "*" takes every model */
    sb_endpoint_t to; /* who answers it (to.wire NULL: the sandbox) */
} sb_route_t;

typedef struct sb_routes {
    sb_route_t *v; /* in the order they are tried: the first whose pattern matches answers */
    size_t n;
    char **fallback; /* LLM_FALLBACK's models, in order */
    size_t nfallback;
} sb_routes_t;

/*
 * Builds the table: LLM_ROUTES first (pattern=provider, in order), then
 * claude-* to Anthropic when ANTHROPIC_API_KEY is set, gemini-* to Gemini
 * when GEMINI_API_KEY is set, and every other model to the OpenAI-compatible
 * provider (the Responses API with USE_RESPONSES_API), or, with none of them
 * configured, to whichever one is, else to the sandbox. 0, or -1 with err
 * naming the setting.
 */
int sb_routes_init(sb_routes_t *r, const sb_config_t *c, char *err, size_t errlen);
void sb_routes_dispose(sb_routes_t *r);
/* The route that answers `model`: never NULL (the table ends with "*"). */
const sb_route_t *sb_routes_match(const sb_routes_t *r, const char *model);
/* Writes the table to the log at start-up, without keys. */
void sb_routes_log(const sb_routes_t *r);

#endif
