/*
 * Settings: one table of every environment variable switchboard reads, with
 * its default and bounds, parsed strictly into sb_config_t at start-up.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "sb/alloc.h"
#include "sb/config.h"

enum kind { K_STR, K_UINT, K_SIZE, K_BOOL };

/*
 * The settings table. name: the environment variable; kind: how it parses;
 * offset: where it lands in sb_config_t; def: default (NULL = unset);
 * min/max: inclusive bounds for numbers; help: one line for env.example.
 */
static const struct setting {
    const char *name;
    enum kind kind;
    size_t offset;
    const char *def;
    unsigned long long min, max;
    const char *help;
} settings[] = {
/* clang-format off */
#define S(n, k, f, d, lo, hi, h) {n, k, offsetof(sb_config_t, f), d, lo, hi, h}
    S("HOST", K_STR, host, "0.0.0.0", 0, 0, "address to listen on"),
    S("PORT", K_UINT, port, "3000", 1, 65535, "TCP port to listen on"),
    S("WORKERS", K_UINT, workers, "0", 0, 256, "worker threads, each with its own loop and listener (0 = one per CPU the process may use: affinity, cgroup quota)"),
    S("MAX_BODY_BYTES", K_SIZE, max_body_bytes, "1048576", 1024, 64u << 20, "largest accepted request body"),
    S("REQUEST_READ_TIMEOUT_MS", K_UINT, request_read_timeout_ms, "30000", 1000, 600000,
      "longest an HTTP/1 request (head and body) may take to arrive, and an idle keep-alive connection stays open"),
    S("DRAIN_TIMEOUT_MS", K_UINT, drain_timeout_ms, "10000", 0, 600000, "on SIGTERM, how long in-flight streams may finish"),
    S("SWITCHBOARD_API_KEYS", K_STR, api_keys_csv, NULL, 0, 0, "comma-separated inbound bearer keys (the engine's llm.api_key)"),
    S("CONVERSATION_SECRET", K_STR, conversation_secret, NULL, 0, 0,
      "keys the digest that tells conversations apart in tool idempotency keys; the same on every replica "
      "(unset: derived from SWITCHBOARD_API_KEYS)"),
    S("SWITCHBOARD_ALLOW_UNAUTHENTICATED", K_BOOL, allow_unauthenticated, "false", 0, 1,
      "serve without inbound keys (local use only; warned about at start-up)"),
    S("LLM_BASE_URL", K_STR, llm_base_url, NULL, 0, 0, "OpenAI-compatible provider base URL, without /chat/completions (default https://api.openai.com/v1)"),
    S("OPENAI_API_KEY", K_STR, llm_api_key, NULL, 0, 0, "the provider's API key"),
    S("OPENAI_MODEL", K_STR, default_model, "gpt-4o-mini", 0, 0, "model used when a request names none"),
    S("USE_RESPONSES_API", K_BOOL, use_responses_api, "false", 0, 1,
      "speak OpenAI's Responses API ({LLM_BASE_URL}/responses) instead of Chat Completions to the OpenAI-compatible provider"),
    S("ANTHROPIC_API_KEY", K_STR, anthropic_api_key, NULL, 0, 0, "Anthropic's API key: claude-* models go to Anthropic's Messages API"),
    S("ANTHROPIC_BASE_URL", K_STR, anthropic_base_url, "https://api.anthropic.com/v1", 0, 0, "Anthropic's API base URL"),
    S("ANTHROPIC_MODEL", K_STR, anthropic_model, "claude-3-5-haiku-latest", 0, 0,
      "model used when a request names none and Anthropic is the only provider configured"),
    S("ANTHROPIC_MAX_TOKENS", K_UINT, anthropic_max_tokens, "1024", 1, 1000000,
      "max_tokens sent to Anthropic when the request sets none (Anthropic requires one)"),
    S("GEMINI_API_KEY", K_STR, gemini_api_key, NULL, 0, 0, "Google's Gemini API key: gemini-* models go to the Gemini API"),
    S("GEMINI_BASE_URL", K_STR, gemini_base_url, "https://generativelanguage.googleapis.com/v1beta", 0, 0, "the Gemini API's base URL"),
    S("GEMINI_MODEL", K_STR, gemini_model, "gemini-2.5-flash", 0, 0,
      "model used when a request names none and Gemini is the only provider configured"),
    S("LLM_ROUTES", K_STR, llm_routes, NULL, 0, 0,
      "extra routes, tried first: pattern=provider, comma-separated (llama-*=openai,o3*=responses); providers: openai, responses, "
      "anthropic, gemini, sandbox"),
    S("LLM_FALLBACK", K_STR, llm_fallback, NULL, 0, 0,
      "models tried in order when the first fails before answering (connect, timeout, 429, 5xx), e.g. gpt-4o-mini,claude-3-5-haiku-latest"),
    S("PASSTHROUGH_PARAMS", K_STR, passthrough_params, NULL, 0, 0,
      "provider-specific request parameters let through to the provider by name, comma-separated (top_k,repetition_penalty); "
      "every other unknown field is stripped"),
    S("LLM_CONNECT_TIMEOUT_MS", K_UINT, llm_connect_timeout_ms, "3000", 1, 600000, "upstream connect timeout"),
    S("LLM_FIRST_BYTE_TIMEOUT_MS", K_UINT, llm_first_byte_timeout_ms, "20000", 1, 600000, "upstream time to first byte"),
    S("LLM_IDLE_TIMEOUT_MS", K_UINT, llm_idle_timeout_ms, "20000", 1, 600000, "longest gap between upstream chunks"),
    S("LLM_TOTAL_TIMEOUT_MS", K_UINT, llm_total_timeout_ms, "120000", 1, 3600000, "longest upstream call"),
    S("LLM_RETRY_BACKOFF_MS", K_UINT, llm_retry_backoff_ms, "200", 0, 60000, "base delay before the one retry (jittered 50-150%)"),
    S("LLM_HTTP2", K_BOOL, llm_http2, "true", 0, 1, "use HTTP/2 with providers that offer it"),
    S("LLM_CA_FILE", K_STR, llm_ca_file, NULL, 0, 0,
      "PEM file of the certificate authorities a provider's certificate is checked against (unset: the system's), "
      "for a provider behind a private CA"),
    S("MAX_UPSTREAM_BYTES", K_SIZE, max_upstream_bytes, "67108864", 4096, 1ull << 32, "most bytes read from the provider per turn"),
    S("MAX_ANSWER_BYTES", K_SIZE, max_answer_bytes, "1048576", 4096, 1ull << 32,
      "most of a model's answer a turn keeps (the whole answer when not streaming, a round's words before its tool calls); "
      "past it the turn ends with an error"),
    S("MAX_EVENT_BYTES", K_SIZE, max_event_bytes, "1048576", 1024, 64u << 20, "largest single upstream SSE event"),
    S("STREAM_BUFFER_BYTES", K_SIZE, stream_buffer_bytes, "262144", 4096, 64u << 20,
      "unsent bytes per stream before the upstream is paused"),
    S("SSE_KEEPALIVE_MS", K_UINT, keepalive_ms, "15000", 0, 600000, "comment sent after this much silence (0 = never)"),
    S("SANDBOX_WORD_MS", K_UINT, sandbox_word_ms, "40", 0, 10000, "pace of the offline sandbox model, per word"),
    S("DATABASE_URL", K_STR, database_url, NULL, 0, 0, "Postgres connection URI for tools and retrieval (unset: no database)"),
    S("PG_POOL_SIZE", K_UINT, pg_pool_size, "4", 1, 100, "Postgres connections per worker"),
    S("PG_STATEMENT_TIMEOUT_MS", K_UINT, pg_statement_timeout_ms, "3000", 0, 600000, "longest a statement may run"),
    S("PG_PREPARED_STATEMENTS", K_BOOL, pg_prepared_statements, "true", 0, 1,
      "prepare each statement once per connection (false behind a pooler that cannot keep them, e.g. PgBouncer before 1.21 "
      "in transaction mode)"),
    S("PG_CONNECT_TIMEOUT_MS", K_UINT, pg_connect_timeout_ms, "2000", 100, 60000, "longest a connection attempt may take"),
    S("SUPPORT_TICKETS_TABLE", K_STR, tickets_table, "support_tickets", 0, 0, "table holding support tickets"),
    S("SUPPORT_INTERACTIONS_TABLE", K_STR, interactions_table, "support_interactions", 0, 0, "table holding ticket notes and calls"),
    S("TOOLS_ENABLED", K_STR, tools_enabled, "all", 0, 0, "comma-separated tools offered to the model (all, or none)"),
    S("AGENTS", K_BOOL, agents, "true", 0, 1,
      "route each turn to an agent profile (instructions, tools, model) from AGENTS_FILE; false: one prompt for every caller"),
    S("AGENTS_FILE", K_STR, agents_file, "tools/agents.json", 0, 0,
      "the agent profiles (JSON; README \"Agents\"); the default path falls back to the copy built into switchboard; none: agents off"),
    S("ROUTER_MODEL", K_STR, router_model, NULL, 0, 0,
      "model asked which agent answers a turn the intent classifier is unsure of (README \"Agents\"); unset or empty: never asked"),
    S("ROUTER_TIMEOUT_MS", K_UINT, router_timeout_ms, "300", 10, 5000,
      "budget for ROUTER_MODEL's answer; past it the classifier's choice stands and the call is cancelled"),
    S("PLATFORM_INSTRUCTIONS", K_STR, platform_instructions, NULL, 0, 0,
      "the deployment's instructions for every turn, after the agent's and before the team's and the caller's own"),
    S("PLATFORM_INSTRUCTIONS_FILE", K_STR, platform_instructions_file, NULL, 0, 0,
      "a file holding PLATFORM_INSTRUCTIONS (not both)"),
    S("TEAM_INSTRUCTIONS_FILE", K_STR, team_instructions_file, NULL, 0, 0,
      "JSON object of team name to instructions; with it, a SWITCHBOARD_API_KEYS entry team:key names the key's team"),
    S("TOOL_MAX_ROUNDS", K_UINT, tool_max_rounds, "4", 1, 16, "tool rounds per turn before switchboard apologises"),
    S("TOOL_MAX_CALLS", K_UINT, tool_max_calls, "16", 1, 128,
      "calls of switchboard's tools run in one round; the model is told the rest were not run"),
    S("TOOL_FILLER_TEXT", K_STR, tool_filler_text, "One moment while I check that.", 0, 0,
      "said while tools run if nothing was said yet (none: silence)"),
    S("TRANSFER_NUMBER", K_STR, transfer_number, NULL, 0, 0,
      "the phone number (E.164, +14155550123) transfer_call hands a call to, on a channel that can transfer one (Retell); "
      "unset: no transfer_call"),
    S("SUPPORT_EMAIL", K_STR, support_email, NULL, 0, 0, "where escalate_ticket emails go, comma-separated (unset: no email)"),
    S("SMTP_URL", K_STR, smtp_url, NULL, 0, 0,
      "mail server for escalation emails: smtp://host:587 (STARTTLS when offered, required with SMTP_USER) or smtps://host:465"),
    S("SMTP_USER", K_STR, smtp_user, NULL, 0, 0, "SMTP login (unset: no authentication)"),
    S("SMTP_PASSWORD", K_STR, smtp_password, NULL, 0, 0, "SMTP password"),
    S("SMTP_FROM", K_STR, smtp_from, NULL, 0, 0,
      "sender of escalation emails (unset: SMTP_USER if it is an address, else SUPPORT_EMAIL)"),
    S("AGORA_APP_ID", K_STR, agora_app_id, NULL, 0, 0, "Agora app id for send_rtm_message (unset: the tool is not offered)"),
    S("AGORA_CUSTOMER_ID", K_STR, agora_customer_id, NULL, 0, 0, "Agora RESTful API customer id"),
    S("AGORA_CUSTOMER_SECRET", K_STR, agora_customer_secret, NULL, 0, 0, "Agora RESTful API customer secret"),
    S("AGORA_RTM_USER_ID", K_STR, agora_rtm_user_id, "switchboard", 0, 0,
      "the Signaling (RTM) user that send_rtm_message sends as"),
    S("AGORA_RTM_BASE_URL", K_STR, agora_rtm_base_url, "https://api.agora.io", 0, 0, "Agora REST API base URL"),
    S("AGORA_WEBHOOK_SECRET", K_STR, agora_webhook_secret, NULL, 0, 0,
      "the secret of the Conversational AI webhook in Agora Console: verifies Agora-Signature-V2 on POST /v1/agora/events "
      "(unset: the route answers 404)"),
    S("RAG_BACKEND", K_STR, rag_backend, NULL, 0, 0, "retrieval backend: postgres, chroma, pinecone, qdrant or none (default: postgres when DATABASE_URL is set)"),
    S("RAG_TOP_K", K_UINT, rag_top_k, "4", 1, 20, "passages handed to the model"),
    S("PINECONE_TOP_K", K_UINT, pinecone_top_k, NULL, 1, 20, "the Node sample's name for RAG_TOP_K (RAG_TOP_K wins)"),
    S("RAG_TIMEOUT_MS", K_UINT, rag_timeout_ms, "400", 10, 10000, "retrieval budget; past it the turn goes on without context"),
    S("RAG_MIN_SCORE", K_UINT, rag_min_score_milli, "0", 0, 1000000, "passages scoring below this (in thousandths) are dropped"),
    S("RAG_FALLBACK_FILE", K_STR, rag_fallback_file, NULL, 0, 0, "always-true facts given to the model when retrieval finds nothing"),
    S("RAG_WAIT_MS", K_UINT, rag_wait_ms, "0", 0, 10000, "say RAG_WAIT_TEXT when retrieval takes longer than this (0 = never)"),
    S("RAG_WAIT_TEXT", K_STR, rag_wait_text, "Let me look that up.", 0, 0, "the waiting phrase for slow retrieval"),
    S("RAG_MAX_CONTEXT_CHARS", K_UINT, rag_max_context_chars, "4000", 200, 100000, "ceiling on retrieved text per turn"),
    S("OPENAI_EMBEDDING_MODEL", K_STR, embedding_model, "text-embedding-3-small", 0, 0,
      "embedding model for the vector stores; must match the one the knowledge base was embedded with"),
    S("EMBEDDING_BASE_URL", K_STR, embedding_base_url, NULL, 0, 0, "OpenAI-compatible embeddings base URL (default: LLM_BASE_URL)"),
    S("EMBEDDING_API_KEY", K_STR, embedding_api_key, NULL, 0, 0, "the embeddings provider's API key (default: OPENAI_API_KEY)"),
    S("EMBEDDING_CACHE_ENTRIES", K_UINT, embedding_cache_entries, "1024", 0, 1000000,
      "question embeddings each worker remembers (0 = no cache)"),
    S("CHROMA_URL", K_STR, chroma_url, NULL, 0, 0, "Chroma server for RAG_BACKEND=chroma, e.g. http://127.0.0.1:8000"),
    S("CHROMA_TENANT", K_STR, chroma_tenant, "default_tenant", 0, 0, "Chroma tenant holding the knowledge base"),
    S("CHROMA_DATABASE", K_STR, chroma_database, "default_database", 0, 0, "Chroma database holding the knowledge base"),
    S("CHROMA_COLLECTION", K_STR, chroma_collection, "switchboard", 0, 0, "Chroma collection name (switchboard-ingest creates it)"),
    S("CHROMA_API_KEY", K_STR, chroma_api_key, NULL, 0, 0, "Chroma token, sent as x-chroma-token (unset: none)"),
    S("PINECONE_API_KEY", K_STR, pinecone_api_key, NULL, 0, 0, "Pinecone API key for RAG_BACKEND=pinecone"),
    S("PINECONE_HOST", K_STR, pinecone_host, NULL, 0, 0,
      "the Pinecone index's host from the console (my-index-abc123.svc.aped-4627-b74a.pinecone.io; https:// optional)"),
    S("PINECONE_INDEX", K_STR, pinecone_index, NULL, 0, 0, "the Node sample's index name; accepted, not needed with PINECONE_HOST"),
    S("PINECONE_NAMESPACE", K_STR, pinecone_namespace, NULL, 0, 0, "Pinecone namespace to query (unset: the default namespace)"),
    S("PINECONE_API_VERSION", K_STR, pinecone_api_version, "2024-07", 0, 0, "sent as X-Pinecone-Api-Version"),
    S("QDRANT_URL", K_STR, qdrant_url, NULL, 0, 0, "Qdrant server for RAG_BACKEND=qdrant, e.g. http://127.0.0.1:6333"),
    S("QDRANT_API_KEY", K_STR, qdrant_api_key, NULL, 0, 0, "Qdrant API key, sent as api-key (unset: none)"),
    S("QDRANT_COLLECTION", K_STR, qdrant_collection, NULL, 0, 0, "Qdrant collection holding the knowledge base"),
    S("MEMORY", K_BOOL, memory, "true", 0, 1,
      "with DATABASE_URL, store every turn of a conversation and give the model its stored history"),
    S("HISTORY_MAX", K_UINT, history_max, "40", 0, 1000, "most stored messages added to a turn"),
    S("HISTORY_MAX_TOKENS", K_UINT, history_max_tokens, "4000", 0, 1000000,
      "token budget of the stored history added to a turn (estimated at 4 characters a token)"),
    S("MEMORY_TIMEOUT_MS", K_UINT, memory_timeout_ms, "100", 1, 10000,
      "budget for loading a conversation's history; past it the turn goes on without it"),
    S("MEMORY_ACROSS_CALLS", K_BOOL, memory_across_calls, "false", 0, 1,
      "give the model the summaries of the bound caller's last 3 closed conversations"),
    S("MEMORY_RETENTION_DAYS", K_UINT, memory_retention_days, "30", 0, 36500,
      "conversations silent this long are deleted with their messages and events (0 = keep)"),
    S("SESSION_IDLE_S", K_UINT, session_idle_s, "1800", 0, 31536000,
      "a conversation silent this long is closed and summarised (0 = never); a later turn opens it again"),
    S("SUMMARIES", K_BOOL, summaries, "true", 0, 1,
      "when a conversation closes, the model replaces its extract with 2-4 sentences: what the caller wanted, what was done, what is open"),
    S("SUMMARY_MODEL", K_STR, summary_model, NULL, 0, 0, "model that writes conversation summaries (unset: OPENAI_MODEL)"),
    S("EVENT_LOG", K_BOOL, event_log, "true", 0, 1, "with DATABASE_URL, write every turn's events to conversation_events"),
    S("EVENT_QUEUE_MAX", K_UINT, event_queue_max, "1024", 1, 1000000,
      "turns waiting to be written, per worker; past it a turn's record is dropped and counted"),
    S("SESSIONS", K_BOOL, sessions, "true", 0, 1,
      "serve the session WebSocket API (POST /v1/sessions, GET /v1/sessions/{id}/ws) and Retell's LLM WebSocket"),
    S("SESSION_TOKEN_TTL_S", K_UINT, session_token_ttl_s, "900", 10, 86400,
      "how long a session token from POST /v1/sessions lets a browser connect"),
    S("WS_MAX_MESSAGE_BYTES", K_SIZE, ws_max_message_bytes, "16384", 256, 1u << 20,
      "largest WebSocket message a client may send; a bigger one closes the socket (1009)"),
    S("WS_MESSAGES_PER_S", K_UINT, ws_messages_per_s, "20", 1, 10000,
      "WebSocket messages a client may send in any second; more close the socket (1008)"),
    S("WS_IDLE_S", K_UINT, ws_idle_s, "300", 5, 86400, "a WebSocket with no message from its client for this long is closed (1001)"),
    S("RETELL_SECRET", K_STR, retell_secret, NULL, 0, 0,
      "the secret in the URL Retell AI connects to (?secret=; 16 to 256 of A-Z a-z 0-9 . _ ~ -): GET /v1/retell/llm-websocket/{call_id} "
      "answers only with it (unset: that route answers 404)"),
    S("RETELL_MAX_MESSAGE_BYTES", K_SIZE, retell_max_message_bytes, "1048576", 16384, 16u << 20,
      "largest message Retell may send (each carries the call's whole transcript, word timings included: roughly 0.5 MiB an hour of talk); "
      "a bigger one closes the socket (1009)"),
    S("RETELL_BEGIN_MESSAGE", K_STR, retell_begin_message, NULL, 0, 0,
      "what the agent says first on a Retell call (unset: it waits for the caller to speak)"),
    S("CONSOLE", K_BOOL, console, "false", 0, 1, "serve the browser console at /console (a chat over the session API; for local use)"),
    S("ACCESS_LOG", K_BOOL, access_log, "true", 0, 1, "one JSON line per request on stdout"),
    S("METRICS", K_BOOL, metrics, "true", 0, 1, "serve Prometheus metrics at GET /metrics"),
    S("METRICS_PORT", K_UINT, metrics_port, "0", 0, 65535, "serve /metrics on this port instead of PORT (0 = on PORT)"),
    S("METRICS_TOKEN", K_STR, metrics_token, NULL, 0, 0, "bearer token a scrape of /metrics must send (unset: none asked)"),
    S("CORS_ORIGINS", K_STR, cors_origins, NULL, 0, 0,
      "browser origins allowed to call switchboard, comma-separated (https://app.example.com), or * (unset: none)"),
    S("TLS_CERT_FILE", K_STR, tls_cert_file, NULL, 0, 0, "PEM certificate chain: serve HTTPS (HTTP/2 by ALPN) instead of HTTP"),
    S("TLS_KEY_FILE", K_STR, tls_key_file, NULL, 0, 0, "PEM private key of TLS_CERT_FILE"),
    S("SWITCHBOARD_ENV_FILE", K_STR, env_file, ".env", 0, 0, "file of KEY=VALUE lines read at start-up (set variables win)"),
#undef S
    /* clang-format on */
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

const sb_setting_info_t *sb_config_settings(size_t *count)
{
    static sb_setting_info_t rows[NSETTINGS];
    for (size_t i = 0; i < NSETTINGS; ++i)
        rows[i] = (sb_setting_info_t){settings[i].name, settings[i].def, settings[i].help};
    *count = NSETTINGS;
    return rows;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; ++i) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_number(const char *v, unsigned long long lo, unsigned long long hi, unsigned long long *out)
{
    char *end;
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

static int apply(sb_config_t *c, const struct setting *s, const char *v, char *err, size_t errlen)
{
    char *field = (char *)c + s->offset;
    unsigned long long n;
    switch (s->kind) {
    case K_STR:
        *(char **)field = sb_strdup(v);
        return 0;
    case K_BOOL:
        if (parse_bool(v, (int *)field) == 0)
            return 0;
        snprintf(err, errlen, "%s must be true or false", s->name);
        return -1;
    case K_UINT:
    case K_SIZE:
        if (parse_number(v, s->min, s->max, &n) != 0) {
            snprintf(err, errlen, "%s must be a whole number from %llu to %llu", s->name, s->min, s->max);
            return -1;
        }
        if (s->kind == K_UINT)
            *(unsigned *)field = (unsigned)n;
        else
            *(size_t *)field = (size_t)n;
        return 0;
    }
    return -1;
}

/* Splits the comma-separated inbound keys, trimming spaces and dropping empty items. */
static int split_keys(sb_config_t *c, char *err, size_t errlen)
{
    const char *p = c->api_keys_csv;
    size_t n = 0, cap = 4;
    c->api_keys = sb_calloc(cap + 1, sizeof(char *));
    c->api_key_teams = sb_calloc(cap + 1, sizeof(char *));
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            ++p;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            --e;
        if (e > p) {
            const char *colon = memchr(p, ':', (size_t)(e - p));
            size_t tlen = colon != NULL ? (size_t)(colon - p) : 0;
            char *team = NULL;
            if (c->team_instructions_file != NULL && colon != NULL) { /* team:key, only where teams are configured */
                if (tlen == 0 || tlen > 32 || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_-") != tlen) {
                    snprintf(err, errlen, "SWITCHBOARD_API_KEYS: a team (before the colon) must be 1 to 32 of a-z, 0-9, _ and -");
                    return -1;
                }
                team = strndup(p, tlen);
                p = colon + 1;
            }
            if ((size_t)(e - p) < 16) {
                free(team);
                snprintf(err, errlen, "SWITCHBOARD_API_KEYS: every key must be at least 16 characters");
                return -1;
            }
            if (n == cap) {
                cap *= 2;
                c->api_keys = sb_realloc(c->api_keys, (cap + 1) * sizeof(char *));
                c->api_key_teams = sb_realloc(c->api_key_teams, (cap + 1) * sizeof(char *));
            }
            c->api_key_teams[n] = team;
            c->api_keys[n++] = strndup(p, (size_t)(e - p));
            c->api_keys[n] = NULL;
        }
        p = comma ? comma + 1 : end;
    }
    c->api_key_count = n;
    return 0;
}

int sb_config_load(sb_config_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NSETTINGS; ++i) {
        const struct setting *s = &settings[i];
        const char *v = getenv(s->name);
        if (v != NULL && *v == '\0')
            v = NULL;
        if (v == NULL)
            v = s->def;
        if (v != NULL && apply(c, s, v, err, errlen) != 0)
            return -1;
    }
    if (split_keys(c, err, errlen) != 0)
        return -1;
    if (getenv("RAG_TOP_K") == NULL && c->pinecone_top_k != 0)
        c->rag_top_k = c->pinecone_top_k;
    /* A keyless local provider (Ollama, llama.cpp) needs only LLM_BASE_URL; with no provider at all, the sandbox answers. */
    c->openai_configured = c->llm_base_url != NULL || c->llm_api_key != NULL;
    c->sandbox = !c->openai_configured && c->anthropic_api_key == NULL && c->gemini_api_key == NULL;
    if (!c->openai_configured && getenv("OPENAI_MODEL") == NULL && (c->anthropic_api_key != NULL || c->gemini_api_key != NULL)) {
        /* the model a request without one asks for is the only configured provider's */
        const char *m = c->anthropic_api_key != NULL ? c->anthropic_model : c->gemini_model;
        free(c->default_model);
        c->default_model = sb_strdup(m);
    }
    const struct {
        const char *name;
        char *url;
    } bases[] = {{"ANTHROPIC_BASE_URL", c->anthropic_base_url}, {"GEMINI_BASE_URL", c->gemini_base_url}};
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); ++i) {
        size_t n = strlen(bases[i].url);
        while (n > 0 && bases[i].url[n - 1] == '/')
            bases[i].url[--n] = '\0';
        if (strncmp(bases[i].url, "http://", 7) != 0 && strncmp(bases[i].url, "https://", 8) != 0) {
            snprintf(err, errlen, "%s must start with http:// or https://", bases[i].name);
            return -1;
        }
    }
    if (c->llm_base_url == NULL)
        c->llm_base_url = sb_strdup("https://api.openai.com/v1");
    size_t ulen = strlen(c->llm_base_url);
    while (ulen > 0 && c->llm_base_url[ulen - 1] == '/')
        c->llm_base_url[--ulen] = '\0';
    if (strncmp(c->llm_base_url, "http://", 7) != 0 && strncmp(c->llm_base_url, "https://", 8) != 0) {
        snprintf(err, errlen, "LLM_BASE_URL must start with http:// or https://");
        return -1;
    }
    static const char endpoint[] = "/chat/completions";
    if (ulen >= sizeof(endpoint) - 1 && strcmp(c->llm_base_url + ulen - (sizeof(endpoint) - 1), endpoint) == 0) {
        /* switchboard adds the endpoint itself: a full URL would call .../chat/completions/chat/completions */
        snprintf(err, errlen, "LLM_BASE_URL is the provider's base URL, without /chat/completions: write %.*s",
                 (int)(ulen - (sizeof(endpoint) - 1)), c->llm_base_url);
        return -1;
    }
    const char *tables[][2] = {{"SUPPORT_TICKETS_TABLE", c->tickets_table}, {"SUPPORT_INTERACTIONS_TABLE", c->interactions_table}};
    for (size_t i = 0; i < 2; ++i) {
        size_t n = strlen(tables[i][1]);
        if (n == 0 || n > 63 || strspn(tables[i][1], "abcdefghijklmnopqrstuvwxyz0123456789_") != n ||
            isdigit((unsigned char)tables[i][1][0])) {
            snprintf(err, errlen, "%s must be a lowercase table name (letters, digits, _; at most 63)", tables[i][0]);
            return -1;
        }
    }
    if (c->database_url != NULL && c->database_url[0] != '\0') {
        /* a typo here would otherwise show only at the first tool call, as an outage. libpq's own message is left
         * out: it can quote part of the URL, password included */
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(c->database_url, &perr);
        PQfreemem(perr);
        if (opts == NULL) {
            snprintf(err, errlen,
                     "DATABASE_URL is not a valid Postgres connection URI (postgresql://user:password@host:port/dbname)");
            return -1;
        }
        PQconninfoFree(opts);
    }
    if (c->llm_ca_file != NULL && access(c->llm_ca_file, R_OK) != 0) {
        snprintf(err, errlen, "LLM_CA_FILE: cannot read %s: %s", c->llm_ca_file, strerror(errno));
        return -1;
    }
    if ((c->tls_cert_file == NULL) != (c->tls_key_file == NULL)) {
        snprintf(err, errlen, "TLS_CERT_FILE and TLS_KEY_FILE go together: set both, or neither");
        return -1;
    }
    if (c->metrics_port != 0 && c->metrics_port == c->port) {
        snprintf(err, errlen, "METRICS_PORT must differ from PORT (unset it to serve /metrics on PORT)");
        return -1;
    }
    if (c->metrics_token != NULL && strlen(c->metrics_token) < 16) {
        snprintf(err, errlen, "METRICS_TOKEN must be at least 16 characters");
        return -1;
    }
    if (c->retell_secret != NULL) {
        /* it is pasted into a URL as it is: only characters a query string carries unescaped */
        size_t n = strlen(c->retell_secret);
        if (n < 16 || n > 256 ||
            strspn(c->retell_secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") != n) {
            snprintf(err, errlen, "RETELL_SECRET must be 16 to 256 of the characters A-Z a-z 0-9 . _ ~ -");
            return -1;
        }
    }
    for (const char *p = c->passthrough_params != NULL ? c->passthrough_params : ""; *p != '\0';) {
        while (*p == ',' || *p == ' ')
            ++p;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        static const char *const reserved[] = {"messages", "model", "stream", "stream_options", "tools", NULL};
        int ok = n <= 64 && strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") >= n;
        for (const char *const *r = reserved; ok && *r != NULL; ++r)
            ok = !(strlen(*r) == n && memcmp(*r, p, n) == 0);
        if (!ok) {
            snprintf(err, errlen, "PASSTHROUGH_PARAMS: \"%.*s\" is not a parameter name that can be let through",
                     (int)(n < 64 ? n : 64), p);
            return -1;
        }
        p += n;
    }
    if (c->platform_instructions != NULL && c->platform_instructions_file != NULL) {
        snprintf(err, errlen, "PLATFORM_INSTRUCTIONS and PLATFORM_INSTRUCTIONS_FILE: set one, not both");
        return -1;
    }
    if (strlen(c->default_model) > 256) {
        snprintf(err, errlen, "OPENAI_MODEL is longer than 256 characters");
        return -1;
    }
    return 0;
}

int sb_config_check_serving(const sb_config_t *c, char *err, size_t errlen)
{
    if (c->api_key_count == 0 && !c->allow_unauthenticated) {
        snprintf(err, errlen,
                 "SWITCHBOARD_API_KEYS is not set: set the inbound keys your voice engine sends "
                 "(or SWITCHBOARD_ALLOW_UNAUTHENTICATED=true for local use)");
        return -1;
    }
    return 0;
}

void sb_config_dispose(sb_config_t *c)
{
    for (size_t i = 0; i < NSETTINGS; ++i)
        if (settings[i].kind == K_STR)
            free(*(char **)((char *)c + settings[i].offset));
    for (size_t i = 0; i < c->api_key_count; ++i) {
        sodium_memzero(c->api_keys[i], strlen(c->api_keys[i]));
        free(c->api_keys[i]);
        free(c->api_key_teams[i]);
    }
    free(c->api_keys);
    free(c->api_key_teams);
    memset(c, 0, sizeof(*c));
}

/* Strips one pair of matching quotes around a .env value. */
static void unquote(char **v, size_t *len)
{
    if (*len >= 2 && ((*v)[0] == '"' || (*v)[0] == '\'') && (*v)[*len - 1] == (*v)[0]) {
        ++*v;
        *len -= 2;
    }
}

/* Damerau-Levenshtein distance (adjacent swaps count one) between two setting names, capped at 9. */
static unsigned name_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 9;
    unsigned d[64][64];
    for (size_t i = 0; i <= la; ++i)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= lb; ++j)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= la; ++i)
        for (size_t j = 1; j <= lb; ++j) {
            unsigned cost = a[i - 1] != b[j - 1];
            unsigned best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb] < 9 ? d[la][lb] : 9;
}

const char *sb_config_closest_setting(const char *name)
{
    const char *closest = NULL;
    /* a typo, not another program's variable: two edits in a long name, one in a short one (HOME is not HOST) */
    unsigned best = strlen(name) >= 8 ? 3 : 2;
    for (size_t i = 0; i < NSETTINGS; ++i) {
        if (strcmp(settings[i].name, name) == 0)
            return NULL;
        unsigned d = name_distance(name, settings[i].name);
        if (d < best) {
            best = d;
            closest = settings[i].name;
        }
    }
    return closest;
}

int sb_config_load_env_file(const char *path, sb_config_warn_fn warn, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    char line[8192];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        ++lineno;
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            ++p;
        if (*p == '\0' || *p == '#')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char *eq = strchr(p, '=');
        if (eq == NULL || eq == p) {
            snprintf(err, errlen, "%s:%d: expected KEY=VALUE", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *v = eq + 1;
        size_t vlen = strlen(v);
        unquote(&v, &vlen);
        v[vlen] = '\0';
        const char *closest = warn != NULL ? sb_config_closest_setting(p) : NULL;
        if (closest != NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s:%d: switchboard has no setting %.64s; did you mean %s?", path, lineno, p, closest);
            warn(msg);
        }
        setenv(p, v, 0);
    }
    fclose(fp);
    return rc;
}
