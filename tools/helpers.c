/*
 * Helpers shared by the tool domain files: strict argument checks whose
 * messages the model can read and act on, and quoted table names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

int sb_tool_unpack(json_t *in, char *err, size_t errlen, const char *fmt, ...)
{
    json_error_t jerr;
    va_list ap;
    va_start(ap, fmt);
    int rc = json_vunpack_ex(in, &jerr, JSON_STRICT, fmt, ap);
    va_end(ap);
    if (rc != 0)
        snprintf(err, errlen, "%s", jerr.text);
    return rc;
}

int sb_tool_check_text(const char *field, const char *s, size_t min, size_t max, char *err, size_t errlen)
{
    if (s == NULL) /* absent: whether it may be is the unpack format's business ("s:" or "s?") */
        return 0;
    size_t n = strlen(s);
    if (n < min || n > max) {
        snprintf(err, errlen, "%s must be %zu to %zu characters", field, min, max);
        return -1;
    }
    return 0;
}

int sb_tool_check_enum(const char *field, const char *s, const char *const *allowed, char *err, size_t errlen)
{
    if (s == NULL)
        return 0;
    char list[256] = "";
    size_t used = 0;
    for (const char *const *a = allowed; *a != NULL; ++a) {
        if (strcmp(s, *a) == 0)
            return 0;
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", *a);
        if (n > 0 && (size_t)n < sizeof(list) - used)
            used += (size_t)n;
    }
    snprintf(err, errlen, "%s must be one of: %s", field, list);
    return -1;
}

int sb_tool_check_range(const char *field, json_int_t v, json_int_t min, json_int_t max, char *err, size_t errlen)
{
    if (v < min || v > max) {
        snprintf(err, errlen, "%s must be between %" JSON_INTEGER_FORMAT " and %" JSON_INTEGER_FORMAT, field, min, max);
        return -1;
    }
    return 0;
}
