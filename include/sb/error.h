/*
 * switchboard's one list of error kinds. Each kind carries the HTTP status it
 * answers with, the OpenAI error `type` and `code`, and a default message
 * (lowercase, factual, no trailing period: tool errors reach the model as is).
 * Provider statuses, curl codes and SQLSTATEs are mapped into it at the edge.
 */
#ifndef SB_ERROR_H
#define SB_ERROR_H

/* X(name, http status, openai type, openai code, message) */
#define SB_ERROR_MAP(X)                                                                                                            \
    X(NOT_FOUND, 404, "invalid_request_error", "not_found", "no such route")                                                       \
    X(METHOD_NOT_ALLOWED, 405, "invalid_request_error", "method_not_allowed", "method not allowed on this route")                  \
    X(UPGRADE_REQUIRED, 426, "invalid_request_error", "upgrade_required", "this route speaks WebSocket (HTTP/1.1 Upgrade)")        \
    X(UNAUTHORIZED, 401, "invalid_request_error", "invalid_api_key", "missing or invalid api key")                                 \
    X(ORIGIN_NOT_ALLOWED, 403, "invalid_request_error", "origin_not_allowed", "this origin is not allowed (CORS_ORIGINS)")         \
    X(BODY_TOO_LARGE, 413, "invalid_request_error", "request_too_large", "request body exceeds the size limit")                    \
    X(INVALID_JSON, 400, "invalid_request_error", "invalid_json", "request body is not valid json")                                \
    X(INVALID_REQUEST, 400, "invalid_request_error", "invalid_value", "invalid request")                                           \
    X(UPSTREAM_AUTH, 502, "upstream_error", "upstream_auth_failed", "the model provider rejected switchboard's credentials")       \
    X(UPSTREAM_RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded", "the model provider is rate limiting requests")       \
    X(UPSTREAM_TIMEOUT, 504, "timeout_error", "upstream_timeout", "the model provider did not answer in time")                     \
    X(UPSTREAM_UNAVAILABLE, 502, "upstream_error", "upstream_unavailable", "could not reach the model provider")                   \
    X(UPSTREAM_REJECTED, 400, "invalid_request_error", "upstream_rejected", "the model provider rejected the request")             \
    X(UPSTREAM_ERROR, 502, "upstream_error", "upstream_error", "the model provider failed")                                        \
    X(UPSTREAM_BAD_RESPONSE, 502, "upstream_error", "upstream_bad_response", "the model provider sent a malformed response")       \
    X(UPSTREAM_TOO_LARGE, 502, "upstream_error", "upstream_too_large", "the model provider's response exceeded the size limit")    \
    X(ANSWER_TOO_LARGE, 502, "upstream_error", "answer_too_large", "the model's answer exceeded MAX_ANSWER_BYTES")                 \
    X(TOO_MANY_TOOL_CALLS, 502, "upstream_error", "too_many_tool_calls", "the model asked for too many tool calls in one round")   \
    X(STORE_UNAVAILABLE, 502, "upstream_error", "store_unavailable", "could not reach the vector store")                           \
    X(STORE_AUTH, 502, "upstream_error", "store_auth_failed", "the vector store rejected switchboard's credentials")               \
    X(STORE_TIMEOUT, 504, "timeout_error", "store_timeout", "the vector store did not answer in time")                             \
    X(STORE_ERROR, 502, "upstream_error", "store_error", "the vector store failed")                                                \
    X(STORE_BAD_RESPONSE, 502, "upstream_error", "store_bad_response", "the vector store sent a malformed response")               \
    X(DB_UNAVAILABLE, 503, "server_error", "database_unavailable", "database unavailable")                                         \
    X(DB_TIMEOUT, 504, "timeout_error", "database_timeout", "database statement timed out")                                        \
    X(DB_ERROR, 500, "server_error", "database_error", "database error")                                                           \
    X(DB_CONFLICT, 409, "invalid_request_error", "conflict", "the change conflicts with existing data")                            \
    X(SHUTTING_DOWN, 503, "server_error", "shutting_down", "switchboard is shutting down")                                         \
    X(INTERNAL, 500, "server_error", "internal_error", "internal error")

typedef enum sb_error {
    SB_OK = 0,
#define SB_ERROR_ENUM(name, status, type, code, msg) SB_E_##name,
    SB_ERROR_MAP(SB_ERROR_ENUM)
#undef SB_ERROR_ENUM
        SB_E__COUNT
} sb_error_t;

/* Static strings describing each kind; never NULL for a valid kind. */
int sb_error_status(sb_error_t e);
const char *sb_error_type(sb_error_t e);
const char *sb_error_code(sb_error_t e);
const char *sb_error_message(sb_error_t e);
/*
 * The kind for a non-2xx answer from the model provider (chat or embeddings):
 * 401/403 auth, 429 rate limit, 408/504 timeout, 5xx error, other 4xx rejected.
 */
sb_error_t sb_error_for_provider_status(long status);
/* A short stable name for logs and metrics (the OpenAI code, e.g. "upstream_timeout"). */
const char *sb_error_name(sb_error_t e);

#endif
