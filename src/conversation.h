/*
 * Which conversation a turn belongs to. The engine names the call (app,
 * channel, user, agent); a keyed digest of those names and of every message
 * so far, with the engine's own timestamps, tells a retry of a turn (same
 * digest) from another caller's turn or the same words later in the call.
 * Tool writes are keyed by it, so a retried turn never writes twice.
 */
#ifndef SB_CONVERSATION_H
#define SB_CONVERSATION_H

#include <jansson.h>
#include <stddef.h>

#include "chunk.h"
#include "sb/config.h"
#include "sb/tools.h"

#define SB_CONVERSATION_BYTES 16

/*
 * The engine's ids for the call that arrive as headers (X-Agora-Customllm-Appid,
 * -Channel, -Uid); base NULL when absent. A voice platform that names the call
 * itself sets `call` instead: its label and the platform's id for the call
 * (Retell: "retell_call" and the call_id), NULL when none.
 */
typedef struct sb_engine_ids {
    const char *app_id, *channel, *uid;
    size_t app_id_len, channel_len, uid_len;
    const char *call_label, *call_id;
} sb_engine_ids_t;

/*
 * Sets the secret that keys conversation digests (CONVERSATION_SECRET, else
 * derived from the inbound keys, so every replica of a deployment agrees).
 * Start-up only, after sodium_init.
 */
void sb_conversation_init(const sb_config_t *config);

/*
 * Names the conversation of request `root` (borrowed) whose cleaned messages
 * are `clean_messages`. Each id comes from the first place that names it: the
 * top-level app_id, channel, user_uid, agent_id (agent llm.params), Agora's
 * context object (appId, channel, userId, agentId), then the headers `ids`
 * (may be NULL), and the platform's call (ids->call_label) last. Writes
 * "app=..;channel=..;user=..;agent=..;" (or "retell_call=..;") into `identity`
 * (`cap` bytes, "" when none) and the keyed digest of the ids and of every
 * message, with the engine's timestamp and turn id on each, into `digest`.
 */
void sb_conversation_describe(json_t *root, json_t *clean_messages, const sb_engine_ids_t *ids, char *identity, size_t cap,
                              unsigned char digest[SB_CONVERSATION_BYTES]);

/*
 * A tool write's idempotency key into `out` (33 bytes: 32 hex digits), made
 * of the conversation digest, the engine's turn id, the call's place (round
 * and index), the tool, the bound caller and the arguments (compact, keys
 * sorted, when they parse). Returns out, or NULL when `turn_id` is "" (no
 * key: every call writes).
 */
char *sb_conversation_write_key(const unsigned char conversation[SB_CONVERSATION_BYTES], const char *turn_id, unsigned round,
                                long index, const char *tool, const sb_caller_t *caller, sb_str_t arguments, char *out);

/*
 * The stored conversation a turn belongs to: `owner` (33 bytes, hex) is the
 * keyed digest of the bearer token the caller sent (`token`, `token_len`
 * bytes, may be empty), `key` (33 bytes, hex) the keyed digest of the owner
 * and of the client's conversation id when it sent one, else of the engine's
 * `identity`. Returns 0, or -1 when there is neither (nothing names the
 * conversation: nothing is stored). The key holds the owner, so another
 * inbound key naming the same conversation id names another conversation.
 */
int sb_conversation_key(const char *token, size_t token_len, const char *client_id, const char *identity, char key[33],
                        char owner[33]);
/* The owner half of sb_conversation_key: the keyed digest of a bearer token (33 bytes, hex). */
void sb_conversation_owner(const char *token, size_t token_len, char owner[33]);
/* The key half: the stored conversation of `owner` (an sb_conversation_owner digest); as sb_conversation_key. */
int sb_conversation_key_of(const char owner[33], const char *client_id, const char *identity, char key[33]);

#endif
