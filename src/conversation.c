/*
 * A conversation's identity (conversation.h): the engine's names for the
 * call, the keyed digest of the conversation so far, and the keys of the
 * writes its tool calls make.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "conversation.h"
#include "sb/buf.h"
#include "sb/json.h"

/* The key of conversation digests: one per deployment, so that digests say nothing outside it. */
static unsigned char conversation_key[crypto_generichash_KEYBYTES];

void sb_conversation_init(const sb_config_t *config)
{
    static const char context[] = "switchboard conversation digest\n";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(conversation_key));
    crypto_generichash_update(&st, (const unsigned char *)context, sizeof(context) - 1);
    const char *secret = config->conversation_secret != NULL ? config->conversation_secret : config->api_keys_csv;
    if (secret != NULL)
        crypto_generichash_update(&st, (const unsigned char *)secret, strlen(secret));
    crypto_generichash_final(&st, conversation_key, sizeof(conversation_key));
}

/* One field into a digest, tagged and length-prefixed, so that no two sequences of fields feed it the same bytes. */
static void digest_field(crypto_generichash_state *st, char tag, const void *p, size_t len)
{
    unsigned char head[9] = {(unsigned char)tag};
    for (int i = 0; i < 8; ++i)
        head[1 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    crypto_generichash_update(st, head, sizeof(head));
    crypto_generichash_update(st, p, len);
}

/* A value as the digest sees it: a string's bytes, anything else as compact JSON. */
static void digest_value(crypto_generichash_state *st, char tag, json_t *v)
{
    if (v == NULL)
        return;
    if (json_is_string(v)) {
        digest_field(st, tag, json_string_value(v), json_string_length(v));
        return;
    }
    char *text = sb_json_dumps(v, 17);
    if (text != NULL)
        digest_field(st, tag, text, strlen(text));
    free(text);
}

/* An id as text: a string (at most 95 bytes, cut at a character) or an integer. */
static int id_text(json_t *v, char *out, size_t cap)
{
    if (json_is_string(v) && json_string_length(v) > 0) {
        sb_copy_text(out, cap, json_string_value(v), json_string_length(v));
        return 1;
    }
    if (json_is_integer(v)) {
        snprintf(out, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 1;
    }
    return 0;
}

/*
 * Who is calling, in which conversation: each id from the first place that
 * names it (llm.params at the top level, Agora's context object, the
 * engine's headers), and the keyed digest of those ids and of every message,
 * each with the engine's own timestamp and turn id when it sends them. A
 * retry of a turn sends the same; another caller, another session in the same
 * channel, or the same words later in the call do not.
 */
void sb_conversation_describe(json_t *root, json_t *clean_messages, const sb_engine_ids_t *ids, char *identity, size_t cap,
                              unsigned char digest[SB_CONVERSATION_BYTES])
{
    static const struct {
        const char *top, *context, *label;
    } fields[] = {{"app_id", "appId", "app"},
                  {"channel", "channel", "channel"},
                  {"user_uid", "userId", "user"},
                  {"agent_id", "agentId", "agent"}};
    json_t *context = json_object_get(root, "context");
    crypto_generichash_state st;
    crypto_generichash_init(&st, conversation_key, sizeof(conversation_key), SB_CONVERSATION_BYTES);
    size_t used = 0;
    identity[0] = '\0';
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
        char val[96] = "";
        int found = id_text(json_object_get(root, fields[i].top), val, sizeof(val)) ||
                    (json_is_object(context) && id_text(json_object_get(context, fields[i].context), val, sizeof(val)));
        if (!found && ids != NULL) {
            const char *h[] = {ids->app_id, ids->channel, ids->uid, NULL};
            size_t hl[] = {ids->app_id_len, ids->channel_len, ids->uid_len, 0};
            if (h[i] != NULL && hl[i] > 0) {
                sb_copy_text(val, sizeof(val), h[i], hl[i]);
                found = 1;
            }
        }
        if (!found)
            continue;
        digest_field(&st, (char)('0' + i), val, strlen(val));
        int n = snprintf(identity + used, cap - used, "%s=%s;", fields[i].label, val);
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    if (ids != NULL && ids->call_label != NULL && ids->call_id != NULL) {
        char val[160];
        int n = snprintf(val, sizeof(val), "%s=%s;", ids->call_label, ids->call_id);
        if (n > 0 && (size_t)n < sizeof(val) && (size_t)n < cap - used) {
            digest_field(&st, 'C', val, (size_t)n);
            memcpy(identity + used, val, (size_t)n + 1);
            used += (size_t)n;
        }
    }
    size_t i;
    json_t *m;
    json_t *messages = json_object_get(root, "messages");
    json_array_foreach(clean_messages, i, m)
    {
        json_t *sent = json_array_get(messages, i);
        digest_field(&st, 'M', NULL, 0);
        digest_value(&st, 'r', json_object_get(m, "role"));
        digest_value(&st, 'c', json_object_get(m, "content"));
        digest_value(&st, 'n', json_object_get(m, "name"));
        digest_value(&st, 'i', json_object_get(m, "tool_call_id"));
        digest_value(&st, 't', json_object_get(m, "tool_calls"));
        digest_value(&st, 's', json_object_get(sent, "timestamp")); /* the engine's, per message: the moment it was said */
        digest_value(&st, 'u', json_object_get(sent, "turn_id"));
    }
    crypto_generichash_final(&st, digest, SB_CONVERSATION_BYTES);
}

/* One field of a key, length-prefixed, so that no two sequences of fields give the same bytes. */
static void key_field(crypto_generichash_state *st, const void *p, size_t len)
{
    uint64_t n = len;
    crypto_generichash_update(st, (const unsigned char *)&n, sizeof(n));
    crypto_generichash_update(st, p, len);
}

char *sb_conversation_write_key(const unsigned char conversation[SB_CONVERSATION_BYTES], const char *turn_id, unsigned round,
                                long index, const char *tool, const sb_caller_t *caller, sb_str_t arguments, char *out)
{
    if (turn_id[0] == '\0')
        return NULL;
    crypto_generichash_state st;
    unsigned char hash[16];
    crypto_generichash_init(&st, NULL, 0, sizeof(hash));
    key_field(&st, conversation, SB_CONVERSATION_BYTES);
    key_field(&st, turn_id, strlen(turn_id));
    uint64_t place[2] = {round, (uint64_t)index};
    key_field(&st, place, sizeof(place));
    key_field(&st, tool, strlen(tool));
    int64_t bound = caller->customer_id;
    key_field(&st, &bound, sizeof(bound));
    key_field(&st, caller->email, strlen(caller->email));
    json_t *args = arguments.len ? json_loadb(arguments.base, arguments.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    char *canonical = args != NULL ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (canonical != NULL)
        key_field(&st, canonical, strlen(canonical));
    else /* arguments the tool will refuse, or none: as they came */
        key_field(&st, arguments.base ? arguments.base : "", arguments.len);
    free(canonical);
    json_decref(args);
    crypto_generichash_final(&st, hash, sizeof(hash));
    sodium_bin2hex(out, 33, hash, sizeof(hash));
    return out;
}

void sb_conversation_owner(const char *token, size_t token_len, char owner[33])
{
    unsigned char o[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, conversation_key, sizeof(conversation_key), sizeof(o));
    key_field(&st, "owner", 5);
    key_field(&st, token, token_len);
    crypto_generichash_final(&st, o, sizeof(o));
    sodium_bin2hex(owner, 33, o, sizeof(o));
}

int sb_conversation_key_of(const char owner[33], const char *client_id, const char *identity, char key[33])
{
    unsigned char o[16], k[16];
    int client = client_id != NULL && client_id[0] != '\0';
    if ((!client && (identity == NULL || identity[0] == '\0')) || sodium_hex2bin(o, sizeof(o), owner, 32, NULL, NULL, NULL) != 0) {
        key[0] = '\0';
        return -1;
    }
    /* tagged: a client's id can never spell an engine identity's digest */
    crypto_generichash_state st;
    crypto_generichash_init(&st, conversation_key, sizeof(conversation_key), sizeof(k));
    key_field(&st, client ? "client" : "engine", 6);
    key_field(&st, o, sizeof(o));
    key_field(&st, client ? client_id : identity, strlen(client ? client_id : identity));
    crypto_generichash_final(&st, k, sizeof(k));
    sodium_bin2hex(key, 33, k, sizeof(k));
    return 0;
}

int sb_conversation_key(const char *token, size_t token_len, const char *client_id, const char *identity, char key[33],
                        char owner[33])
{
    sb_conversation_owner(token, token_len, owner);
    return sb_conversation_key_of(owner, client_id, identity, key);
}
