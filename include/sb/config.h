/*
 * switchboard's settings, read once at start-up from the environment (and an
 * optional .env file). A bad value stops start-up with a message naming the
 * variable. After loading, the config is read-only and shared by all workers.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

typedef struct sb_config {
    /* server */
    char *host;
    unsigned port;
    unsigned workers; /* 0 = one per core */
    size_t max_body_bytes;
    unsigned drain_timeout_ms;
    unsigned request_read_timeout_ms;
    /* inbound auth */
    char *api_keys_csv;
    char *conversation_secret;
    char **api_keys;      /* parsed from api_keys_csv, NULL-terminated */
    char **api_key_teams; /* api_keys[i]'s team (team:key with TEAM_INSTRUCTIONS_FILE), NULL when none */
    size_t api_key_count;
    int allow_unauthenticated;
    /* upstream provider */
    char *llm_base_url;
    char *llm_api_key; /* OPENAI_API_KEY: the provider's key, never an inbound key */
    char *default_model;
    int sandbox;           /* no provider configured: answer with the built-in sandbox model */
    int openai_configured; /* OPENAI_API_KEY or LLM_BASE_URL was set */
    unsigned llm_connect_timeout_ms;
    unsigned llm_first_byte_timeout_ms;
    unsigned llm_idle_timeout_ms;
    unsigned llm_total_timeout_ms;
    unsigned llm_retry_backoff_ms;
    int llm_http2;
    char *llm_ca_file; /* PEM certificate authorities the providers' certificates are checked against; NULL: the system's */
    size_t max_upstream_bytes;
    size_t max_answer_bytes;
    size_t max_event_bytes;
    /* streaming to the client */
    size_t stream_buffer_bytes;
    unsigned keepalive_ms;
    unsigned sandbox_word_ms;
    /* Postgres */
    char *database_url;
    unsigned pg_pool_size;
    unsigned pg_statement_timeout_ms;
    int pg_prepared_statements;
    unsigned pg_connect_timeout_ms;
    char *tickets_table;
    char *interactions_table;
    /* tools */
    char *tools_enabled;
    unsigned tool_max_rounds;
    unsigned tool_max_calls;
    char *tool_filler_text;
    char *transfer_number; /* where transfer_call hands a call (E.164); NULL: no transfer_call */
    /* agents and the layered instructions (agents.c, instructions.c) */
    int agents;
    char *agents_file;          /* "none": agents off */
    char *router_model;         /* the LLM router (router.h); NULL or "": off */
    unsigned router_timeout_ms; /* its budget */
    char *platform_instructions, *platform_instructions_file, *team_instructions_file;
    /* escalation emails (escalate_ticket) */
    char *support_email;
    char *smtp_url;
    char *smtp_user;
    char *smtp_password;
    char *smtp_from;
    /* Agora Signaling (send_rtm_message) */
    char *agora_app_id;
    char *agora_customer_id;
    char *agora_customer_secret;
    char *agora_rtm_user_id;
    char *agora_rtm_base_url;
    char *agora_webhook_secret; /* verifies Agora-Signature-V2 on POST /v1/agora/events; NULL: the route answers 404 */
    /* retrieval */
    char *rag_backend; /* NULL: postgres when DATABASE_URL is set, else none */
    unsigned rag_top_k;
    unsigned pinecone_top_k;
    unsigned rag_timeout_ms;
    unsigned rag_min_score_milli;
    unsigned rag_max_context_chars;
    char *rag_fallback_file;
    unsigned rag_wait_ms;
    char *rag_wait_text;
    /* embeddings for the vector stores (rag/embed.c) */
    char *embedding_model;
    char *embedding_base_url; /* NULL: llm_base_url */
    char *embedding_api_key;  /* NULL: llm_api_key */
    unsigned embedding_cache_entries;
    /* Chroma (rag/chroma.c) */
    char *chroma_url;
    char *chroma_tenant;
    char *chroma_database;
    char *chroma_collection;
    char *chroma_api_key; /* sent as x-chroma-token */
    /* Pinecone (rag/pinecone.c) */
    char *pinecone_api_key;
    char *pinecone_host;
    char *pinecone_index; /* accepted for the Node sample's .env; the host is what is used */
    char *pinecone_namespace;
    char *pinecone_api_version;
    /* Qdrant (rag/qdrant.c) */
    char *qdrant_url;
    char *qdrant_api_key; /* sent as api-key */
    char *qdrant_collection;
    /* logging */
    int access_log;
    char *env_file;
    /* more providers, and routing between them (route.c) */
    char *anthropic_api_key, *anthropic_base_url, *anthropic_model;
    unsigned anthropic_max_tokens;
    char *gemini_api_key, *gemini_base_url, *gemini_model;
    int use_responses_api;
    char *llm_routes, *llm_fallback;
    char *passthrough_params; /* provider-specific parameters let through by name, comma-separated */
    int metrics;
    unsigned metrics_port; /* 0: /metrics on PORT */
    char *metrics_token;
    char *cors_origins; /* comma-separated, or "*" */
    char *tls_cert_file, *tls_key_file;
    /* conversation memory and the event log (memory.c, events.c) */
    int memory;
    int event_log;
    int sessions;
    unsigned session_token_ttl_s;
    size_t ws_max_message_bytes;
    unsigned ws_messages_per_s;
    unsigned ws_idle_s;
    char *retell_secret;             /* the secret Retell's URL carries; NULL: the Retell route answers 404 */
    size_t retell_max_message_bytes; /* WS_MAX_MESSAGE_BYTES for Retell, whose events carry the whole transcript */
    char *retell_begin_message;      /* what the agent says first on a Retell call; NULL: it waits for the caller */
    int console;
    unsigned history_max;
    unsigned history_max_tokens;
    unsigned memory_timeout_ms;
    int memory_across_calls;
    unsigned memory_retention_days;
    unsigned session_idle_s;
    int summaries;       /* a closed conversation's extract is replaced by a model-written summary (summary.c) */
    char *summary_model; /* NULL: default_model */
    unsigned event_queue_max;
} sb_config_t;

/* One row of the settings table, for documentation checks and `switchboard --settings`. */
typedef struct sb_setting_info {
    const char *name;
    const char *default_value; /* NULL: unset by default */
    const char *help;
} sb_setting_info_t;

/* The settings table: `*count` rows, in documentation order. Static storage. */
const sb_setting_info_t *sb_config_settings(size_t *count);

/* Hears a warning about the settings (a line of text, no newline). */
typedef void (*sb_config_warn_fn)(const char *message);

/*
 * Loads KEY=VALUE lines from `path` into the environment without overriding
 * variables that are already set. A missing file is not an error (returns 0);
 * a malformed line returns -1 with a message in err. A key that is not a
 * setting but is a typo of one (OPENAI_MODLE: within two edits, one for names
 * under 8 characters) is told to `warn` (may be NULL) with the setting it was
 * probably meant to be.
 */
int sb_config_load_env_file(const char *path, sb_config_warn_fn warn, char *err, size_t errlen);
/* The known setting `name` is a typo of (see sb_config_load_env_file), or NULL when there is none or `name` is one. */
const char *sb_config_closest_setting(const char *name);

/*
 * Fills `c` from the environment. Returns 0, or -1 with a message naming the
 * offending variable in err. Strings in `c` are owned by it (sb_config_dispose).
 */
int sb_config_load(sb_config_t *c, char *err, size_t errlen);
void sb_config_dispose(sb_config_t *c);
/* Checks what serving needs beyond valid values: inbound keys, or the explicit opt-out. 0, or -1 with err. */
int sb_config_check_serving(const sb_config_t *c, char *err, size_t errlen);

#endif
