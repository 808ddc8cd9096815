/*
 * libFuzzer target for the Responses API request translation
 * (src/responses_request.c): any bytes give a request or an error naming a
 * field, never a crash, a leak or an error without words; a request that
 * passes dumps to a body for the provider.
 */
#include <stdint.h>
#include <stdlib.h>

#include "responses_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_chat_request_t req;
    sb_request_error_t err;
    char *echo = NULL;
    if (sb_responses_request_parse_body((const char *)data, size, "default-model", NULL, &req, &echo, &err) != 0) {
        if (err.message[0] == '\0' || echo != NULL)
            abort();
        return 0;
    }
    if (echo == NULL || req.upstream == NULL)
        abort();
    char *body = sb_chat_request_dump(&req, NULL);
    free(body);
    free(echo);
    sb_chat_request_dispose(&req);
    return 0;
}
