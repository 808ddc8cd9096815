/* Unit tests for src/error.c: every kind is fully described. */
#include <ctype.h>

#include "sb/error.h"
#include "tap.h"

int main(void)
{
    for (int e = 1; e < SB_E__COUNT; ++e) {
        const char *m = sb_error_message(e);
        size_t n = strlen(m);
        ok(sb_error_status(e) >= 400 && sb_error_status(e) < 600, "%s has an error status", sb_error_name(e));
        ok(*sb_error_type(e) && *sb_error_code(e), "%s has an OpenAI type and code", sb_error_name(e));
        ok(n > 0 && !isupper((unsigned char)m[0]) && m[n - 1] != '.', "%s message is lowercase with no trailing period",
           sb_error_name(e));
    }
    is_int(sb_error_status(SB_E_UPSTREAM_AUTH), 502, "provider auth failures are a bad gateway, not the caller's 401");
    is_int(sb_error_status(SB_E_UPSTREAM_TIMEOUT), 504, "provider timeouts are 504");
    is_str(sb_error_code((sb_error_t)9999), "internal_error", "out-of-range kinds read as internal");
    return done_testing();
}
