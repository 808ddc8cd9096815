/*
 * Helpers shared by the tool domain files: strict argument checks whose
 * messages the model can read and act on, and quoted table names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/buf.h"
#include "tools.h"

/* Whether `v` fits the unpack type character `t`. */
static int fits(json_t *v, char t)
{
    switch (t) {
    case 's':
        return json_is_string(v);
    case 'I':
    case 'i':
        return json_is_integer(v);
    case 'b':
        return json_is_boolean(v);
    case 'f':
    case 'F':
        return json_is_number(v);
    default: /* 'o', 'O': any value */
        return 1;
    }
}

static const char *described(char t)
{
    return t == 's' ? "a string" : t == 'I' || t == 'i' ? "an integer" : t == 'b' ? "true or false" : "a number";
}

#define MAX_KEYS 16

/* The keys of a flat "{s:x, s?y}" format, read from its arguments (key, then one pointer per value). */
struct format_keys {
    const char *name[MAX_KEYS];
    char type[MAX_KEYS];
    char required[MAX_KEYS];
    size_t n;
};

static void read_format(const char *fmt, va_list ap, struct format_keys *k)
{
    k->n = 0;
    for (const char *f = fmt; *f != '\0' && k->n < MAX_KEYS; ++f) {
        if (*f != 's' || (f[1] != ':' && f[1] != '?'))
            continue;
        k->name[k->n] = va_arg(ap, const char *);
        (void)va_arg(ap, void *);
        k->required[k->n] = f[1] == ':';
        k->type[k->n] = f[2];
        ++k->n;
        f += 2;
    }
}

static int known(const struct format_keys *k, const char *key)
{
    for (size_t i = 0; i < k->n; ++i)
        if (strcmp(k->name[i], key) == 0)
            return 1;
    return 0;
}

/* At most `max` bytes of `s`, cut where a UTF-8 character begins, so a name quoted in a message stays whole. */
static int utf8_prefix(const char *s, int max)
{
    int n = (int)strnlen(s, (size_t)max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        --n;
    return n;
}

/*
 * The message for the model when unpacking failed. jansson's own texts name
 * no key ("Expected string, got integer"), and its list of unexpected keys is
 * cut at a fixed length that can split a character, so the key the model
 * must fix is named here: a key the tool does not take (with the ones it
 * does), a required one missing, or one of the wrong type.
 */
static void explain(json_t *in, const struct format_keys *k, const char *jansson_text, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        if (known(k, key))
            continue;
        int used = snprintf(err, errlen, "unknown argument \"%.*s\" (this tool takes: ", utf8_prefix(key, 64), key);
        for (size_t i = 0; i < k->n && used >= 0 && (size_t)used < errlen; ++i)
            used += snprintf(err + used, errlen - (size_t)used, "%s%s", i ? ", " : "", k->name[i]);
        if (used >= 0 && (size_t)used < errlen)
            snprintf(err + used, errlen - (size_t)used, ")");
        return;
    }
    for (size_t i = 0; i < k->n; ++i) {
        v = json_object_get(in, k->name[i]);
        if (v == NULL && k->required[i]) {
            snprintf(err, errlen, "%s is required", k->name[i]);
            return;
        }
        if (v != NULL && !fits(v, k->type[i])) { /* null too: "Expected string, got null" would not say which */
            snprintf(err, errlen, "%s must be %s", k->name[i], described(k->type[i]));
            return;
        }
    }
    snprintf(err, errlen, "%s", jansson_text);
}

int sb_tool_unpack(json_t *in, char *err, size_t errlen, const char *fmt, ...)
{
    json_error_t jerr;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int rc = json_vunpack_ex(in, &jerr, JSON_STRICT, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        struct format_keys k;
        read_format(fmt, again, &k);
        explain(in, &k, jerr.text, err, errlen);
    }
    va_end(again);
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

char *sb_tool_sql(const char *tmpl, const sb_config_t *config)
{
    static const char tickets[] = "{{tickets_table}}", interactions[] = "{{interactions_table}}";
    sb_buf_t b;
    sb_buf_init(&b, 1u << 20);
    for (const char *p = tmpl; *p != '\0';) {
        const char *open = strstr(p, "{{");
        if (open == NULL) {
            sb_buf_appendz(&b, p);
            break;
        }
        sb_buf_append(&b, p, (size_t)(open - p));
        if (strncmp(open, tickets, sizeof(tickets) - 1) == 0) {
            sb_buf_appendf(&b, "\"%s\"", config->tickets_table);
            p = open + sizeof(tickets) - 1;
        } else if (strncmp(open, interactions, sizeof(interactions) - 1) == 0) {
            sb_buf_appendf(&b, "\"%s\"", config->interactions_table);
            p = open + sizeof(interactions) - 1;
        } else {
            abort(); /* a typo in a statement template, caught at start-up by any test run */
        }
    }
    sb_buf_append(&b, "", 1);
    return b.base;
}
