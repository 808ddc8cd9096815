/*
 * The provider table and the routed provider. The table is the index of the
 * model APIs switchboard speaks; routes are built from it and the settings
 * once, at start-up. The routed provider is what a turn asks: it starts the
 * route of the request's model and, when LLM_FALLBACK names models, stands
 * between that call and the turn so that a failure before the first word
 * (connect, timeout, 429, 5xx) moves on to the next model instead of
 * reaching the caller.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "route.h"
#include "sb/alloc.h"
#include "sb/log.h"

#define NONE SIZE_MAX
#define PATTERN_MAX 128
#define ROUTES_MAX 64
#define FALLBACK_MAX 8

/*
 * The model APIs. name: what LLM_ROUTES and the logs call it; wire: how it is
 * spoken (NULL: the offline sandbox); key, base_url: the config fields that
 * hold its key and address (NONE: it has none); family: the models routed to
 * it by default once its key is set ("claude-*"), or NULL.
 */
static const struct provider {
    const char *name;
    const sb_wire_t *wire;
    size_t key, base_url;
    const char *family;
} providers[] = {
    {"openai", &sb_wire_openai, offsetof(sb_config_t, llm_api_key), offsetof(sb_config_t, llm_base_url), NULL},
    {"responses", &sb_wire_responses, offsetof(sb_config_t, llm_api_key), offsetof(sb_config_t, llm_base_url), NULL},
    {"anthropic", &sb_wire_anthropic, offsetof(sb_config_t, anthropic_api_key), offsetof(sb_config_t, anthropic_base_url),
     "claude-*"},
    {"gemini", &sb_wire_gemini, offsetof(sb_config_t, gemini_api_key), offsetof(sb_config_t, gemini_base_url), "gemini-*"},
    {"sandbox", NULL, NONE, NONE, NULL},
};

static const char *field(const sb_config_t *c, size_t offset)
{
    return offset == NONE ? NULL : *(char *const *)((const char *)c + offset);
}

static const struct provider *provider_named(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); ++i)
        if (strlen(providers[i].name) == len && memcmp(providers[i].name, name, len) == 0)
            return &providers[i];
    return NULL;
}

/* Whether the provider can be called: the sandbox always; one with a key field once its key is set; OpenAI's once configured. */
static int configured(const sb_config_t *c, const struct provider *p)
{
    if (p->wire == NULL)
        return 1;
    if (p->key == offsetof(sb_config_t, llm_api_key)) /* OpenAI-compatible: a keyless local server needs only its URL */
        return c->openai_configured;
    return field(c, p->key) != NULL;
}

static int add(sb_routes_t *r, const sb_config_t *c, const char *pattern, size_t plen, const struct provider *p)
{
    if (r->n == ROUTES_MAX)
        return -1;
    sb_route_t *rt = &r->v[r->n++];
    rt->pattern = sb_strndup(pattern, plen);
    rt->to = (sb_endpoint_t){p->name, p->wire, field(c, p->base_url), field(c, p->key), NULL};
    if (p->wire != NULL) /* curl would wait for "100 Continue" before a large body: a round trip of silence */
        rt->to.headers = p->wire->headers(curl_slist_append(NULL, "Expect:"), rt->to.key);
    return 0;
}

/* The provider that takes every model no route names: OpenAI-compatible when configured, else the first configured, else the
 * sandbox. */
static const struct provider *default_provider(const sb_config_t *c)
{
    if (c->openai_configured)
        return provider_named(c->use_responses_api ? "responses" : "openai", strlen(c->use_responses_api ? "responses" : "openai"));
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); ++i)
        if (providers[i].wire != NULL && providers[i].key != offsetof(sb_config_t, llm_api_key) && configured(c, &providers[i]))
            return &providers[i];
    return provider_named("sandbox", 7);
}

int sb_routes_init(sb_routes_t *r, const sb_config_t *c, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->v = sb_calloc(ROUTES_MAX + 1, sizeof(*r->v));
    for (const char *p = c->llm_routes != NULL ? c->llm_routes : ""; *p != '\0';) { /* pattern=provider, ... */
        while (*p == ' ' || *p == ',')
            ++p;
        size_t n = strcspn(p, ",");
        while (n > 0 && p[n - 1] == ' ')
            --n;
        if (n == 0)
            break;
        const char *eq = memrchr(p, '=', n); /* the last one: a model name may hold '=' itself, a provider's never does */
        size_t plen = eq != NULL ? (size_t)(eq - p) : 0;
        const struct provider *pv = eq != NULL ? provider_named(eq + 1, n - plen - 1) : NULL;
        const char *star = plen > 0 ? memchr(p, '*', plen) : NULL;
        if (eq == NULL || plen == 0 || plen > PATTERN_MAX || (star != NULL && star != p + plen - 1) || pv == NULL) {
            snprintf(err, errlen,
                     "LLM_ROUTES: \"%.*s\" is not pattern=provider (a model name or a prefix ending in *, and one of "
                     "openai, responses, anthropic, gemini, sandbox)",
                     (int)(n < 80 ? n : 80), p);
            return -1;
        }
        if (!configured(c, pv)) {
            snprintf(err, errlen, "LLM_ROUTES: %.*s goes to %s, which has no key or address set", (int)plen, p, pv->name);
            return -1;
        }
        if (add(r, c, p, plen, pv) != 0) {
            snprintf(err, errlen, "LLM_ROUTES: more than %d routes", ROUTES_MAX);
            return -1;
        }
        p += n;
    }
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); ++i)
        if (providers[i].family != NULL && configured(c, &providers[i]))
            add(r, c, providers[i].family, strlen(providers[i].family), &providers[i]);
    const struct provider *dflt = default_provider(c);
    if (dflt == NULL) {
        snprintf(err, errlen, "USE_RESPONSES_API: this build of switchboard does not speak the Responses API");
        return -1;
    }
    sb_route_t *last = &r->v[r->n++]; /* room was kept for it: "*" comes last, however many routes came before */
    last->pattern = sb_strdup("*");
    last->to = (sb_endpoint_t){dflt->name, dflt->wire, field(c, dflt->base_url), field(c, dflt->key), NULL};
    if (dflt->wire != NULL)
        last->to.headers = dflt->wire->headers(curl_slist_append(NULL, "Expect:"), last->to.key);

    r->fallback = sb_calloc(FALLBACK_MAX, sizeof(char *));
    for (const char *p = c->llm_fallback != NULL ? c->llm_fallback : ""; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            ++p;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (r->nfallback == FALLBACK_MAX || n > 256) {
            snprintf(err, errlen, "LLM_FALLBACK: at most %d models of at most 256 characters", FALLBACK_MAX);
            return -1;
        }
        r->fallback[r->nfallback++] = sb_strndup(p, n);
        p += n;
    }
    return 0;
}

void sb_routes_dispose(sb_routes_t *r)
{
    for (size_t i = 0; i < r->n; ++i) {
        free(r->v[i].pattern);
        curl_slist_free_all(r->v[i].to.headers); /* holds a key: libcurl frees it, the pages go back to the allocator */
    }
    for (size_t i = 0; i < r->nfallback; ++i)
        free(r->fallback[i]);
    free(r->v);
    free(r->fallback);
    memset(r, 0, sizeof(*r));
}

const sb_route_t *sb_routes_match(const sb_routes_t *r, const char *model)
{
    for (size_t i = 0; i < r->n; ++i) {
        const char *pat = r->v[i].pattern;
        size_t len = strlen(pat);
        if (len > 0 && pat[len - 1] == '*' ? strncmp(model, pat, len - 1) == 0 : strcmp(model, pat) == 0)
            return &r->v[i];
    }
    return &r->v[r->n - 1];
}

void sb_routes_log(const sb_routes_t *r)
{
    for (size_t i = 0; i < r->n; ++i)
        sb_log_info("route %s -> %s%s%s", r->v[i].pattern, r->v[i].to.provider, r->v[i].to.base_url ? " at " : "",
                    r->v[i].to.base_url ? r->v[i].to.base_url : "");
    for (size_t i = 0; i < r->nfallback; ++i)
        sb_log_info("fallback %zu: %s (%s)", i + 1, r->fallback[i], sb_routes_match(r, r->fallback[i])->to.provider);
}

/* --- the routed provider ------------------------------------------------------------------------ */

/* Starts the route of `model` (NULL: the request's own). */
static sb_llm_call_t *start_route(const sb_llm_env_t *env, const char *model, const sb_chat_request_t *req, sb_llm_sink_t *sink)
{
    const sb_route_t *route = sb_routes_match(env->routes, model != NULL ? model : req->model);
    if (route->to.wire == NULL)
        return sb_provider_sandbox.start(env, req, sink);
    return sb_upstream_start(env, &route->to, model, req, sink);
}

/*
 * A call with fallbacks: the turn holds this one; it holds the current
 * attempt and hears it first. Until a delta went through, a failure that
 * another provider may not share starts the next model (from a timer: never
 * inside the failed call's own callback).
 */
struct fallback {
    sb_llm_call_t super;
    sb_llm_sink_t hear; /* what the current attempt reports to */
    sb_llm_sink_t *turn;
    const sb_llm_env_t *env;
    const sb_chat_request_t *req;
    sb_llm_call_t *attempt; /* NULL between attempts */
    uv_timer_t *timer;
    size_t next; /* the next LLM_FALLBACK entry */
    int delivered, paused;
};

static const sb_provider_t fallback_provider;

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void destroy(struct fallback *f)
{
    uv_close((uv_handle_t *)f->timer, on_timer_closed);
    free(f);
}

/* Whether another provider may well answer where this one failed: it could not be reached, was slow, busy or broken. */
static int worth_another(sb_error_t e)
{
    return e == SB_E_UPSTREAM_UNAVAILABLE || e == SB_E_UPSTREAM_TIMEOUT || e == SB_E_UPSTREAM_RATE_LIMITED ||
           e == SB_E_UPSTREAM_ERROR;
}

static void on_next(uv_timer_t *timer)
{
    struct fallback *f = timer->data;
    const char *model = f->env->routes->fallback[f->next++];
    f->attempt = start_route(f->env, model, f->req, &f->hear);
    if (f->paused)
        f->attempt->provider->pause(f->attempt);
}

static void on_attempt_delta(sb_llm_sink_t *sink, const sb_delta_t *d)
{
    struct fallback *f = H2O_STRUCT_FROM_MEMBER(struct fallback, hear, sink);
    f->delivered = 1;
    f->turn->on_delta(f->turn, d);
}

static void on_attempt_end(sb_llm_sink_t *sink, const sb_llm_end_t *end)
{
    struct fallback *f = H2O_STRUCT_FROM_MEMBER(struct fallback, hear, sink);
    f->attempt = NULL;
    if (!f->delivered && worth_another(end->error) && f->next < f->env->routes->nfallback) {
        sb_log_warn("model %s failed (%s); falling back to %s",
                    f->next == 0 ? f->req->model : f->env->routes->fallback[f->next - 1], sb_error_name(end->error),
                    f->env->routes->fallback[f->next]);
        uv_timer_start(f->timer, on_next, 0, 0);
        return;
    }
    sb_llm_sink_t *turn = f->turn;
    destroy(f);
    turn->on_end(turn, end);
}

static void pause_call(sb_llm_call_t *call)
{
    struct fallback *f = H2O_STRUCT_FROM_MEMBER(struct fallback, super, call);
    f->paused = 1;
    if (f->attempt != NULL)
        f->attempt->provider->pause(f->attempt);
}

static void resume_call(sb_llm_call_t *call)
{
    struct fallback *f = H2O_STRUCT_FROM_MEMBER(struct fallback, super, call);
    f->paused = 0;
    if (f->attempt != NULL)
        f->attempt->provider->resume(f->attempt);
}

static void cancel_call(sb_llm_call_t *call)
{
    struct fallback *f = H2O_STRUCT_FROM_MEMBER(struct fallback, super, call);
    if (f->attempt != NULL)
        f->attempt->provider->cancel(f->attempt);
    uv_timer_stop(f->timer);
    destroy(f);
}

static const sb_provider_t fallback_provider = {
    .name = "fallback",    /* LLM_FALLBACK's models after the route's */
    .start = NULL,         /* started by the routed provider */
    .pause = pause_call,   /* held for the attempt running now, and the next */
    .resume = resume_call, /* let go */
    .cancel = cancel_call, /* the attempt, and no next one */
};

static sb_llm_call_t *start(const sb_llm_env_t *env, const sb_chat_request_t *req, sb_llm_sink_t *sink)
{
    if (env->routes->nfallback == 0)
        return start_route(env, NULL, req, sink);
    struct fallback *f = sb_calloc(1, sizeof(*f));
    f->super.provider = &fallback_provider;
    f->hear = (sb_llm_sink_t){on_attempt_delta, on_attempt_end};
    f->turn = sink;
    f->env = env;
    f->req = req;
    f->timer = sb_alloc(sizeof(*f->timer));
    uv_timer_init(env->loop, f->timer);
    f->timer->data = f;
    f->attempt = start_route(env, NULL, req, &f->hear);
    return &f->super;
}

const sb_provider_t sb_provider_routed = {
    .name = "routed", /* the provider table */
    .start = start,   /* the route of the request's model, with fallbacks when LLM_FALLBACK names models */
    .pause = NULL,    /* calls are the routes' own, or a fallback call */
    .resume = NULL,   /* the same */
    .cancel = NULL,   /* the same */
};
