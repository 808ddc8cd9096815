/*
 * Tables generated from SB_ERROR_MAP: status, OpenAI type/code and message per
 * error kind, so every error switchboard answers with is described once.
 */
#include "sb/error.h"

struct info {
    int status;
    const char *type, *code, *message, *name;
};

static const struct info table[SB_E__COUNT] = {[SB_OK] = {200, "", "", "ok", "ok"},
#define SB_ERROR_INFO(name, status, type, code, msg) [SB_E_##name] = {status, type, code, msg, code},
                                               SB_ERROR_MAP(SB_ERROR_INFO)
#undef SB_ERROR_INFO
};

static const struct info *get(sb_error_t e)
{
    return &table[(unsigned)e < SB_E__COUNT ? e : SB_E_INTERNAL];
}

int sb_error_status(sb_error_t e)
{
    return get(e)->status;
}

const char *sb_error_type(sb_error_t e)
{
    return get(e)->type;
}

const char *sb_error_code(sb_error_t e)
{
    return get(e)->code;
}

const char *sb_error_message(sb_error_t e)
{
    return get(e)->message;
}

const char *sb_error_name(sb_error_t e)
{
    return get(e)->name;
}

sb_error_t sb_error_for_provider_status(long status)
{
    if (status == 401 || status == 403)
        return SB_E_UPSTREAM_AUTH;
    if (status == 429)
        return SB_E_UPSTREAM_RATE_LIMITED;
    if (status == 408 || status == 504)
        return SB_E_UPSTREAM_TIMEOUT;
    if (status >= 500)
        return SB_E_UPSTREAM_ERROR;
    if (status >= 400)
        return SB_E_UPSTREAM_REJECTED;
    return SB_E_UPSTREAM_BAD_RESPONSE;
}
