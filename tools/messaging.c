/*
 * send_rtm_message: a peer message to a user through Agora Signaling (RTM)'s
 * REST API, e.g. a tracking link or a ticket number to the caller's app while
 * the call goes on. It is offered whenever the Agora settings are there, also
 * without DATABASE_URL; with a database, a keyed message is first claimed in
 * signaling_messages, so the engine retrying a turn does not send it twice.
 * The send is one HTTP POST on the worker's curl multi; the customer secret
 * goes only into curl's Basic auth and never into a result or a log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/buf.h"
#include "sb/log.h"
#include "tools.h"

/* A voice turn waits for the answer: bounded well below the caller's patience. */
#define RTM_CONNECT_TIMEOUT_MS 3000L
#define RTM_TOTAL_TIMEOUT_MS 5000L
#define MAX_RESPONSE_BYTES 4096 /* Agora answers with a small JSON object */

const char *sb_messaging_missing(const sb_config_t *c)
{
    int ok = c->agora_app_id != NULL && c->agora_customer_id != NULL && c->agora_customer_secret != NULL;
    return ok ? NULL : "AGORA_APP_ID, AGORA_CUSTOMER_ID or AGORA_CUSTOMER_SECRET";
}

int sb_messaging_init(const sb_config_t *config, char *err, size_t errlen)
{
    const char *base = config->agora_rtm_base_url;
    if (base != NULL && strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return snprintf(err, errlen, "AGORA_RTM_BASE_URL must start with http:// or https://"), -1;
    if (config->agora_rtm_user_id != NULL && (strlen(config->agora_rtm_user_id) == 0 || strlen(config->agora_rtm_user_id) > 64))
        return snprintf(err, errlen, "AGORA_RTM_USER_ID must be 1 to 64 characters"), -1;
    /* AGORA_APP_ID alone is common (the voice engine's own .env): say what else messaging needs, do not refuse to start */
    if (config->agora_app_id != NULL && sb_messaging_missing(config) != NULL)
        sb_log_warn("AGORA_APP_ID is set without AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET: send_rtm_message is not offered");
    return 0;
}

struct rtm_args {
    const char *user_id, *message;
    /* the handler's own, between its steps */
    char row_id[24];   /* the claimed signaling_messages row, "" when the message is not keyed */
    char code[65];     /* Agora's answer code */
    char failure[128]; /* why the send failed, for the model */
};

static const sb_tool_arg_t rtm_rows[] = {
    SB_TEXT("user_id", 1, 1, 64, struct rtm_args, user_id, "the RTM user id to send to"),
    SB_TEXT("message", 1, 1, 4096, struct rtm_args, message, NULL),
};

const sb_tool_args_t sb_args_send_rtm_message =
    SB_TOOL_ARGS("Send a text message to a user's app through Agora Signaling (RTM), e.g. a tracking number or a link the "
                 "caller asked for.",
                 struct rtm_args, rtm_rows, NULL);

/* $1 user id, $2 message, $3 idempotency key. A repeat returns the first claim, created false. */
/* clang-format off: the statement reads as SQL, a line a clause */
static const char claim_sql[] =
    "with ins as (insert into signaling_messages as m (user_id, message, idempotency_key)"
    "  values ($1, $2, $3)" REPEAT_RETURNS("m.user_id = excluded.user_id") ")"
                                                                           " select id, created from ins";
/* clang-format on */
static const char sent_sql[] = "update signaling_messages set sent_at = now() where id = $1";
static const char unclaim_sql[] = "delete from signaling_messages where id = $1 and sent_at is null";

static void send_message(sb_tool_call_t *call);

static void on_recorded(sb_tool_call_t *call, const PGresult *res)
{
    const struct rtm_args *a = sb_tool_call_args(call);
    json_t *result = json_pack("{s:b}", "sent", 1);
    if (a->code[0] != '\0')
        json_object_set_new(result, "code", json_string(a->code));
    sb_tool_call_finish(call, result);
}

static void on_unclaimed(sb_tool_call_t *call, const PGresult *res)
{
    const struct rtm_args *a = sb_tool_call_args(call);
    sb_tool_call_fail(call, "%s", a->failure);
}

static void on_claimed(sb_tool_call_t *call, const PGresult *res)
{
    struct rtm_args *a = sb_tool_call_args(call);
    if (PQntuples(res) != 1) { /* the key is another caller's: never */
        sb_tool_call_fail(call, "the message was not sent, try again");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) { /* the engine repeated the turn: the message went out the first time */
        sb_tool_call_finish(call, json_pack("{s:b, s:b}", "sent", 1, "created", 0));
        return;
    }
    snprintf(a->row_id, sizeof(a->row_id), "%s", PQgetvalue(res, 0, 0));
    send_message(call);
}

/* The send ended: the claim (if any) is marked sent, or taken back so that a retry sends the message after all. */
static void after_send(sb_tool_call_t *call, int ok)
{
    const struct rtm_args *a = sb_tool_call_args(call);
    const char *v[1] = {a->row_id};
    if (a->row_id[0] != '\0')
        sb_tool_call_query(call, ok ? sent_sql : unclaim_sql, 1, v, ok ? on_recorded : on_unclaimed);
    else if (ok)
        on_recorded(call, NULL);
    else
        on_unclaimed(call, NULL);
}

static void on_sent(sb_tool_call_t *call, CURLcode code, long status, char *body, size_t len)
{
    struct rtm_args *a = sb_tool_call_args(call);
    char *why = a->failure;
    if (code != CURLE_OK) {
        sb_log_warn("send_rtm_message: %s", curl_easy_strerror(code));
        snprintf(why, sizeof(a->failure), "%s",
                 code == CURLE_OPERATION_TIMEDOUT ? "the messaging service did not answer in time"
                                                  : "could not reach the messaging service");
    } else if (status < 200 || status > 299) {
        sb_log_warn("send_rtm_message: the messaging service answered HTTP %ld", status);
        if (status == 401 || status == 403)
            snprintf(why, sizeof(a->failure), "the messaging service rejected switchboard's credentials (HTTP %ld)", status);
        else if (status == 429)
            snprintf(why, sizeof(a->failure), "the messaging service is rate limiting messages, try again shortly");
        else if (status >= 400 && status <= 499)
            snprintf(why, sizeof(a->failure), "the messaging service rejected the message (HTTP %ld)", status);
        else
            snprintf(why, sizeof(a->failure), "the messaging service failed (HTTP %ld)", status);
    } else {
        /* Agora says {"result": "success", "code": "message_sent"}; any 2xx means it took the message */
        json_t *answer = len ? json_loadb(body, len, 0, NULL) : NULL;
        const char *agora_code = json_string_value(json_object_get(answer, "code"));
        if (agora_code != NULL && strlen(agora_code) < sizeof(a->code))
            snprintf(a->code, sizeof(a->code), "%s", agora_code);
        json_decref(answer);
    }
    after_send(call, why[0] == '\0');
}

void sb_run_send_rtm_message(sb_tool_call_t *call, const void *args)
{
    const struct rtm_args *a = args;
    const sb_tool_env_t *env = sb_tool_call_env(call);
    if (sb_messaging_missing(env->config) != NULL) {
        sb_tool_call_fail(call, "messaging is not configured");
        return;
    }
    const char *key = sb_tool_call_key(call);
    if (key != NULL && env->pg != NULL) {
        const char *v[3] = {a->user_id, a->message, key};
        sb_tool_call_query(call, claim_sql, 3, v, on_claimed);
        return;
    }
    send_message(call);
}

static void send_message(sb_tool_call_t *call)
{
    struct rtm_args *a = sb_tool_call_args(call);
    const sb_config_t *config = sb_tool_call_env(call)->config;
    /* the ids go into the path: escaped, so a stray '/' or '?' in a setting cannot change the request */
    const char *base = config->agora_rtm_base_url ? config->agora_rtm_base_url : "https://api.agora.io";
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        --blen;
    sb_buf_t url;
    sb_buf_init(&url, 8192);
    int bad = sb_buf_append(&url, base, blen) != 0 || sb_buf_appendz(&url, "/dev/v2/project/") != 0 ||
              sb_fetch_append_escaped(&url, config->agora_app_id) != 0 || sb_buf_appendz(&url, "/rtm/users/") != 0 ||
              sb_fetch_append_escaped(&url, config->agora_rtm_user_id ? config->agora_rtm_user_id : "switchboard") != 0 ||
              sb_buf_appendz(&url, "/peer_messages?wait_for_ack=false") != 0;
    json_t *payload = json_pack("{s:s, s:b, s:b, s:s}", "destination", a->user_id, "enable_offline_messaging", 0,
                                "enable_historical_messaging", 0, "payload", a->message);
    char *body = payload != NULL ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (bad || body == NULL) { /* a setting past every sane length, or memory */
        free(body);
        sb_buf_dispose(&url);
        snprintf(a->failure, sizeof(a->failure), "the message could not be written");
        after_send(call, 0); /* a claim is taken back, so a retry sends the message after all */
        return;
    }
    sb_fetch_req_t req = {.url = url.base,
                          .headers = curl_slist_append(NULL, "Accept: application/json"),
                          .body = body,
                          .len = strlen(body),
                          .user = config->agora_customer_id,
                          .password = config->agora_customer_secret,
                          .connect_timeout_ms = RTM_CONNECT_TIMEOUT_MS,
                          .timeout_ms = RTM_TOTAL_TIMEOUT_MS,
                          .max_response = MAX_RESPONSE_BYTES};
    sb_tool_call_fetch(call, &req, on_sent);
    sb_buf_dispose(&url); /* curl copied it */
}
