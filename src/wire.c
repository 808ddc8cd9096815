/*
 * What the wires share of building a call: the URL of an endpoint under a
 * base URL, and the header that carries the provider's key, which every API
 * names differently and which must never turn into headers of its own.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/log.h"
#include "wire.h"

char *sb_wire_url(const char *base_url, const char *path)
{
    size_t n = strlen(base_url) + strlen(path) + 1;
    char *u = sb_alloc(n);
    snprintf(u, n, "%s%s", base_url, path);
    return u;
}

struct curl_slist *sb_wire_key_header(struct curl_slist *list, const char *head, const char *key)
{
    if (key == NULL || key[0] == '\0')
        return list;
    for (const char *k = key; *k != '\0'; ++k)
        if ((unsigned char)*k < 0x20 || *k == 0x7f) { /* a line break in a key would add headers of its own */
            sb_log_error("the provider key for \"%s\" holds a control character: it is not sent", head);
            return list;
        }
    size_t n = strlen(head) + strlen(key) + 1;
    char *line = sb_alloc(n);
    snprintf(line, n, "%s%s", head, key);
    list = curl_slist_append(list, line); /* curl keeps its own copy; this one is wiped */
    sodium_memzero(line, n);
    free(line);
    return list;
}
