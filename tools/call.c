/*
 * One tool call's life: the model's arguments read by the tool's rows, the
 * handler started, its statements and transfers run for it on the worker's
 * loop, and its result written as the JSON text the model reads, bounded,
 * whatever the handler or the database hand back. Nothing a model or a caller
 * sends can end the process here: every failure becomes an error result.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"

struct sb_tool_call {
    const sb_tool_t *tool;
    sb_tool_env_t env;
    sb_caller_t caller;
    sb_tool_done_cb done;
    void *data;
    char *key;
    void *args;
    sb_pgquery_t *query;
    struct transfer *transfer; /* an outbound SMTP transfer in flight */
    sb_fetch_t *fetch;         /* an outbound HTTP call in flight */
    sb_tool_fetch_cb fetched;
    void (*on_result)(sb_tool_call_t *call, const PGresult *res);
    uv_timer_t *defer;     /* reports parse errors from the loop, never from inside start */
    int starting;          /* inside sb_tool_call_start: a handler that ends at once is reported from the loop */
    json_t *early;         /* the result of a call that failed before it ran */
    const char *not_found; /* for sb_tool_run_json */
    json_t *in;            /* the parsed arguments: the typed struct borrows its strings from it */
    char scope_id[24];
};

/* --- one call --------------------------------------------------------------------------------- */

static void stop_transfer(sb_tool_call_t *c);

static void stop_fetch(sb_tool_call_t *c)
{
    if (c->fetch != NULL)
        sb_fetch_cancel(c->fetch); /* its callback does not run */
    c->fetch = NULL;
}

static void destroy(sb_tool_call_t *c)
{
    stop_transfer(c);
    stop_fetch(c);
    if (c->defer != NULL)
        uv_close((uv_handle_t *)c->defer, (uv_close_cb)free);
    json_decref(c->early);
    json_decref(c->in);
    free(c->key);
    free(c->args);
    free(c);
}

static void defer_result(sb_tool_call_t *c, json_t *result);

/* What the model reads when a result cannot be written at all: an error it can still speak to, never nothing. */
static const char unwritable[] = "{\"error\":\"the tool's result could not be written\"}";
static const char too_large[] = "{\"error\":\"the result was too large to return\"}";

char *sb_tool_result_text(const json_t *result, size_t *len)
{
    /* json_dumps refuses strings that are not UTF-8, and a NULL result is a value that could not be built */
    char *text = result != NULL ? json_dumps(result, JSON_COMPACT) : NULL;
    const char *fixed = text == NULL ? unwritable : strlen(text) > SB_TOOL_MAX_RESULT ? too_large : NULL;
    if (fixed != NULL) {
        free(text);
        text = sb_strdup(fixed);
    }
    *len = strlen(text);
    return text;
}

json_t *sb_tool_error(const char *message, size_t len)
{
    sb_buf_t b;
    sb_buf_init(&b, len * 3 + 1); /* each byte becomes at most the three of U+FFFD */
    sb_buf_append_utf8(&b, message, len);
    json_t *r = json_pack("{s:s%}", "error", b.base != NULL ? b.base : "", b.len);
    sb_buf_dispose(&b);
    return r;
}

/* Hands `result` (taken; NULL when it could not be built) to the owner and frees the call. */
static void report(sb_tool_call_t *c, json_t *result)
{
    if (c->starting) { /* the owner must not hear of the call before sb_tool_call_start has returned it */
        defer_result(c, result);
        return;
    }
    size_t len;
    char *text = sb_tool_result_text(result, &len);
    json_decref(result);
    sb_tool_done_cb done = c->done;
    void *data = c->data;
    destroy(c);
    done(data, text, len);
    free(text);
}

static void on_deferred(uv_timer_t *timer)
{
    sb_tool_call_t *c = timer->data;
    json_t *result = c->early;
    c->early = NULL;
    report(c, result);
}

/* The message is formatted into a fixed buffer, which can cut a character in two: sb_tool_error mends that. */
static json_t *error_result(const char *fmt, va_list ap)
{
    char msg[512];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    return sb_tool_error(msg, n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

/* Keeps `result` (taking the reference) and reports it from the loop. */
static void defer_result(sb_tool_call_t *c, json_t *result)
{
    c->early = result;
    c->defer = sb_alloc(sizeof(*c->defer));
    uv_timer_init(sb_curlm_loop(c->env.curlm), c->defer);
    c->defer->data = c;
    uv_timer_start(c->defer, on_deferred, 0, 0);
}

/* Fails a call that has not started yet: the owner hears of it from the loop, not from inside start. */
static sb_tool_call_t *fail_early(sb_tool_call_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *r = error_result(fmt, ap);
    va_end(ap);
    defer_result(c, r);
    return c;
}

sb_tool_call_t *sb_tool_call_start(const sb_tool_t *tool, const sb_tool_env_t *env, const char *arguments, size_t len,
                                   const char *idempotency_key, sb_tool_done_cb done, void *data)
{
    sb_tool_call_t *c = sb_calloc(1, sizeof(*c));
    c->tool = tool;
    c->env = *env;
    c->caller = *env->caller;
    c->env.caller = &c->caller;
    c->done = done;
    c->data = data;
    c->key = idempotency_key ? sb_strdup(idempotency_key) : NULL;
    c->args = sb_calloc(1, tool->args->size ? tool->args->size : 1);
    if ((tool->flags & SB_TOOL_NEEDS_DB) && env->pg == NULL)
        return fail_early(c, "database unavailable: switchboard has no DATABASE_URL");
    json_error_t jerr;
    c->in = json_loadb(arguments, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (c->in == NULL) /* jansson's text says what and where (a duplicate key, a number too big, a cut-off string) */
        return fail_early(c, "arguments are not valid JSON: %s", jerr.text);
    if (!json_is_object(c->in))
        return fail_early(c, "arguments must be a JSON object");
    char err[256] = "";
    if (sb_tool_parse(tool, c->in, c->args, err, sizeof(err)) != 0)
        return fail_early(c, "invalid arguments: %s", err);
    c->starting = 1;
    tool->run(c, c->args);
    c->starting = 0;
    return c;
}

void sb_tool_call_cancel(sb_tool_call_t *c)
{
    if (c->query != NULL)
        sb_pgquery_cancel(c->query);
    if (c->defer != NULL)
        uv_timer_stop(c->defer);
    destroy(c);
}

const sb_tool_env_t *sb_tool_call_env(sb_tool_call_t *c)
{
    return &c->env;
}

const char *sb_tool_call_key(sb_tool_call_t *c)
{
    return c->key;
}

void *sb_tool_call_args(sb_tool_call_t *c)
{
    return c->args;
}

static void on_query(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    sb_tool_call_t *c = data;
    c->query = NULL;
    switch (err) {
    case SB_OK:
        c->on_result(c, res);
        return;
    case SB_E_DB_CONFLICT:
        sb_tool_call_fail(c, "the change conflicts with existing data (%s)", sqlstate);
        return;
    default:
        /* the model hears the kind of failure, never the server's text (it can quote values); the log gets the code */
        sb_log_warn("tool %s: %s (SQLSTATE %s)", c->tool->name, sb_error_name(err), sqlstate && *sqlstate ? sqlstate : "none");
        sb_tool_call_fail(c, "%s", sb_error_message(err));
        return;
    }
}

void sb_tool_call_query(sb_tool_call_t *c, const char *sql, int nparams, const char *const *values,
                        void (*on_result)(sb_tool_call_t *call, const PGresult *res))
{
    c->on_result = on_result;
    c->query = sb_pgpool_query(c->env.pg, sql, nparams, values, on_query, c);
}

void sb_tool_call_finish(sb_tool_call_t *c, json_t *result)
{
    report(c, result);
}

void sb_tool_call_fail(sb_tool_call_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *r = error_result(fmt, ap);
    va_end(ap);
    report(c, r);
}

static void on_json(sb_tool_call_t *c, const PGresult *res)
{
    if (PQntuples(res) == 0 || PQnfields(res) < 1 || PQgetisnull(res, 0, 0)) {
        sb_tool_call_fail(c, "%s", c->not_found);
        return;
    }
    json_t *v = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    if (v == NULL) {
        sb_tool_call_fail(c, "%s", sb_error_message(SB_E_INTERNAL));
        return;
    }
    sb_tool_call_finish(c, v);
}

void sb_tool_run_json(sb_tool_call_t *c, const char *sql, int nparams, const char *const *values, const char *not_found)
{
    c->not_found = not_found ? not_found : "not found";
    sb_tool_call_query(c, sql, nparams, values, on_json);
}

void sb_tool_scope(sb_tool_call_t *c, const char **values)
{
    values[0] = NULL;
    values[1] = NULL;
    if (c->caller.customer_id > 0) {
        snprintf(c->scope_id, sizeof(c->scope_id), "%lld", c->caller.customer_id);
        values[0] = c->scope_id;
    }
    if (c->caller.email[0] != '\0')
        values[1] = c->caller.email;
}

/* --- outbound transfers ----------------------------------------------------------------------- */

struct transfer {
    sb_xfer_t xfer;
    sb_tool_call_t *call; /* NULL once the call was cancelled */
    sb_tool_transfer_cb done;
    void *ctx;
};

static void on_transfer_done(sb_xfer_t *x, CURLcode code)
{
    struct transfer *t = (struct transfer *)x;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(x->easy);
    sb_tool_call_t *call = t->call;
    sb_tool_transfer_cb done = t->done;
    void *ctx = t->ctx;
    free(t);
    if (call != NULL)
        call->transfer = NULL;
    done(call, ctx, code, status);
}

int sb_tool_call_transfer(sb_tool_call_t *c, CURL *easy, sb_tool_transfer_cb done, void *ctx)
{
    struct transfer *t = sb_calloc(1, sizeof(*t));
    t->xfer.easy = easy;
    t->xfer.on_done = on_transfer_done;
    t->call = c;
    t->done = done;
    t->ctx = ctx;
    if (sb_curlm_add(c->env.curlm, &t->xfer) != 0) {
        curl_easy_cleanup(easy);
        free(t);
        return -1;
    }
    c->transfer = t;
    return 0;
}

/* The call is going away: its transfer stops, and its handler hears of it only to free its state. */
static void stop_transfer(sb_tool_call_t *c)
{
    struct transfer *t = c->transfer;
    if (t == NULL)
        return;
    c->transfer = NULL;
    t->call = NULL;
    sb_curlm_cancel(&t->xfer); /* on_transfer_done follows, now or once curl returns */
}

static void on_fetched(void *data, CURLcode code, long status, char *body, size_t len)
{
    sb_tool_call_t *c = data;
    c->fetch = NULL;
    c->fetched(c, code, status, body, len);
}

void sb_tool_call_fetch(sb_tool_call_t *c, sb_fetch_req_t *req, sb_tool_fetch_cb done)
{
    c->fetched = done;
    c->fetch = sb_fetch_start(c->env.curlm, req, on_fetched, c);
}

char *sb_tool_sql(const char *tmpl, const sb_config_t *config)
{
    static const char tickets[] = "{{tickets_table}}", interactions[] = "{{interactions_table}}";
    sb_buf_t b;
    sb_buf_init(&b, 1u << 20);
    for (const char *p = tmpl; *p != '\0';) {
        const char *open = strstr(p, "{{");
        if (open == NULL) {
            sb_buf_appendz(&b, p);
            break;
        }
        sb_buf_append(&b, p, (size_t)(open - p));
        if (strncmp(open, tickets, sizeof(tickets) - 1) == 0) {
            sb_buf_appendf(&b, "\"%s\"", config->tickets_table);
            p = open + sizeof(tickets) - 1;
        } else if (strncmp(open, interactions, sizeof(interactions) - 1) == 0) {
            sb_buf_appendf(&b, "\"%s\"", config->interactions_table);
            p = open + sizeof(interactions) - 1;
        } else {
            abort(); /* a typo in a statement template, caught at start-up by any test run */
        }
    }
    sb_buf_append(&b, "", 1);
    return b.base;
}
