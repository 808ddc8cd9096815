/*
 * libFuzzer target for reading Retell's events: any bytes must read safely,
 * and what is read must hold what the channel relies on: a kind it knows, a
 * response_id of 0 or more for a response or a reminder, a timestamp that is
 * a number inside the input, and a transcript of chat messages whose role is
 * the assistant's or the user's and whose content is words.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retell_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    sb_retell_event_t ev;
    const char *why = NULL;
    if (sb_retell_event_read(text, size, &ev, &why) != 0) {
        check(why != NULL && ev.messages == NULL);
        return 0;
    }
    check(ev.kind >= SB_RETELL_PING_PONG && ev.kind <= SB_RETELL_OTHER);
    if (ev.kind == SB_RETELL_PING_PONG) {
        check(ev.timestamp.base >= text && ev.timestamp.base + ev.timestamp.len <= text + size && ev.timestamp.len > 0);
        check(ev.timestamp.base[0] == '-' || (ev.timestamp.base[0] >= '0' && ev.timestamp.base[0] <= '9'));
    }
    int asks = ev.kind == SB_RETELL_RESPONSE_REQUIRED || ev.kind == SB_RETELL_REMINDER_REQUIRED;
    check(asks == (ev.messages != NULL));
    if (asks) {
        check(ev.response_id >= 0 && json_array_size(ev.messages) <= SB_RETELL_TRANSCRIPT_MAX &&
              json_array_size(ev.messages) <= ev.utterances);
        size_t i;
        json_t *m;
        json_array_foreach(ev.messages, i, m)
        {
            const char *role = json_string_value(json_object_get(m, "role"));
            json_t *content = json_object_get(m, "content");
            check(role != NULL && (strcmp(role, "assistant") == 0 || strcmp(role, "user") == 0));
            check(json_is_string(content) && json_string_length(content) > 0 && json_object_size(m) == 2);
        }
    }
    sb_retell_event_dispose(&ev);
    return 0;
}
