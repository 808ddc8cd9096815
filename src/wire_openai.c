/*
 * The OpenAI-compatible Chat Completions wire (OpenAI, Groq, OpenRouter,
 * vLLM, Ollama, llama.cpp): POST {base}/chat/completions with a bearer key;
 * each event is one chat.completion.chunk, read by chunk.c's one-pass
 * scanner, and the stream ends with [DONE] (or just closes).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "sb/alloc.h"
#include "wire.h"

static char *url(const sb_wire_target_t *t)
{
    return sb_wire_url(t->base_url, "/chat/completions");
}

static struct curl_slist *headers(struct curl_slist *list, const char *key)
{
    list = curl_slist_append(list, "Content-Type: application/json");
    list = curl_slist_append(list, "Accept: text/event-stream");
    return sb_wire_key_header(list, "Authorization: Bearer ", key);
}

static char *body(const sb_wire_target_t *t, const sb_chat_request_t *req, char *err, size_t errlen)
{
    char *b = sb_chat_request_dump(req, t->model);
    if (b == NULL)
        snprintf(err, errlen, "the conversation is too large to send to the model provider");
    return b;
}

/* A chunk (or a whole answer) read by chunk.c: its rc, and whether it came as an SSE `event: error`, into what it was. */
static sb_wire_result_t read_chunk(int rc, int named_error, const char *data, size_t len, sb_delta_t *out, sb_error_t *error)
{
    if (rc != 0) {
        if (named_error) { /* an `event: error` whose data is not a chunk: its words as they are */
            memset(out, 0, offsetof(sb_delta_t, tools));
            out->error_message = (sb_str_t){data, len};
            *error = SB_E_UPSTREAM_ERROR;
            return SB_WIRE_ERROR;
        }
        if (out->too_many_tools) { /* a round the turn would refuse anyway: said as the turn says it */
            *error = SB_E_TOO_MANY_TOOL_CALLS;
            out->error_message = (sb_str_t){NULL, 0};
            return SB_WIRE_ERROR;
        }
        *error = SB_E_UPSTREAM_BAD_RESPONSE; /* upstream.c says "the model provider sent a chunk <problem>" */
        out->error_message = (sb_str_t){NULL, 0};
        out->problem = rc == -1 ? "that is not valid json" : out->problem != NULL ? out->problem : "with a field of the wrong type";
        return SB_WIRE_ERROR;
    }
    if (out->is_error || named_error) {
        *error = SB_E_UPSTREAM_ERROR;
        return SB_WIRE_ERROR;
    }
    return SB_WIRE_DELTA;
}

static sb_wire_result_t event(void *state, const sb_sse_event_t *ev, char *scratch, sb_delta_t *out, sb_error_t *error)
{
    (void)state;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return SB_WIRE_END;
    int named_error = ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0;
    return read_chunk(sb_chunk_parse(ev->data, ev->data_len, out, scratch), named_error, ev->data, ev->data_len, out, error);
}

/* A chat.completion: its message where a chunk has its delta (sb_chunk_parse_whole). */
static sb_wire_result_t whole(const char *data, size_t len, char *scratch, sb_delta_t *out, sb_error_t *error)
{
    return read_chunk(sb_chunk_parse_whole(data, len, out, scratch), 0, data, len, out, error);
}

static void error_message(const char *b, size_t len, char *msg, size_t cap)
{
    msg[0] = '\0';
    json_t *root = json_loadb(b, len, 0, NULL);
    json_t *m = NULL;
    if (root != NULL) {
        json_t *err = json_object_get(root, "error");
        m = json_is_object(err) ? json_object_get(err, "message") : json_is_string(err) ? err : json_object_get(root, "message");
    }
    if (json_is_string(m))
        snprintf(msg, cap, "%s", json_string_value(m));
    else if (root == NULL && len > 0) /* a proxy's text or HTML: its first words */
        snprintf(msg, cap, "%.*s", (int)(len < cap - 1 ? len : cap - 1), b);
    json_decref(root);
}

const sb_wire_t sb_wire_openai = {
    .name = "openai",               /* OpenAI-compatible Chat Completions */
    .url = url,                     /* {base}/chat/completions */
    .headers = headers,             /* bearer key */
    .body = body,                   /* the cleaned request as it is */
    .state_size = 0,                /* a chunk stands alone */
    .event = event,                 /* chunk.c */
    .whole = whole,                 /* stream:false (sb_chat_request_ask_whole): one chat.completion, chunk.c */
    .error_message = error_message, /* {"error":{"message":...}} */
};
