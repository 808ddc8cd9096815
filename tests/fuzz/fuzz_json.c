/*
 * libFuzzer target for the hot-path JSON reader: any bytes must parse safely
 * and agree with jansson, the reference everything else in switchboard uses.
 * What one accepts the other does, with the same strings, numbers and
 * structure, but where jansson differs: it nests deeper, refuses integers past
 * 64 bits, and lets a NUL byte pass after a number. And what jansson reads,
 * sb_json_dumps writes as json_dumps does, byte for byte; sb_json_is_utf8
 * agrees with jansson on which bytes are UTF-8; and sb_json_loadb builds the
 * tree json_loadb builds, or fails with its words.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sb/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

/* An integer token that does not fit jansson's json_int_t. */
static int big_integer(const sb_json_value_t *v)
{
    if (v->kind != SB_JSON_NUMBER || memchr(v->str, '.', v->len) || memchr(v->str, 'e', v->len) || memchr(v->str, 'E', v->len))
        return 0;
    char s[64];
    if (v->len >= sizeof(s))
        return 1;
    memcpy(s, v->str, v->len);
    s[v->len] = '\0';
    errno = 0;
    strtoimax(s, NULL, 10);
    return errno == ERANGE;
}

/* Whether a value inside `v` is an integer jansson refuses. */
static int has_big_integer(const sb_json_value_t *v)
{
    for (uint32_t i = 0; i < v->span; ++i)
        if (big_integer(v + i))
            return 1;
    return 0;
}

static size_t depth(json_t *j)
{
    size_t d = 0, i, e_depth;
    const char *k;
    json_t *e;
    if (json_is_array(j))
        json_array_foreach(j, i, e) if ((e_depth = depth(e)) > d) d = e_depth;
    if (json_is_object(j))
        json_object_foreach(j, k, e) if ((e_depth = depth(e)) > d) d = e_depth;
    return json_is_array(j) || json_is_object(j) ? d + 1 : 0;
}

/* Checks the value's own invariants and that it equals jansson's reading of the same text. */
static void compare(const sb_json_value_t *v, const json_t *j)
{
    switch (v->kind) {
    case SB_JSON_NULL:
        check(json_is_null(j) && v->span == 1);
        break;
    case SB_JSON_TRUE:
        check(json_is_true(j) && v->span == 1);
        break;
    case SB_JSON_FALSE:
        check(json_is_false(j) && v->span == 1);
        break;
    case SB_JSON_NUMBER:
        check(json_is_number(j) && v->span == 1 && sb_json_number(v) == json_number_value(j));
        break;
    case SB_JSON_STRING:
        check(json_is_string(j) && v->span == 1 && strlen(v->str) == v->len && json_string_length(j) == v->len &&
              memcmp(json_string_value(j), v->str, v->len) == 0);
        break;
    case SB_JSON_ARRAY: {
        check(json_is_array(j) && json_array_size(j) == v->len);
        size_t i, span = 1;
        const sb_json_value_t *e;
        sb_json_array_foreach(v, i, e)
        {
            compare(e, json_array_get(j, i));
            span += e->span;
        }
        check(i == v->len && span == v->span);
        break;
    }
    case SB_JSON_OBJECT: {
        check(json_is_object(j));
        size_t span = 1, unique = 0;
        const sb_json_value_t *k = v + 1;
        for (uint32_t i = 0; i < v->len; ++i) {
            const sb_json_value_t *val = k + 1;
            check(k->kind == SB_JSON_STRING && strlen(k->str) == k->len);
            /* jansson keeps the last of repeated keys, sb_json_get the first: compare keys that appear once */
            int repeated = 0;
            const sb_json_value_t *k2 = val + val->span;
            for (uint32_t i2 = i + 1; i2 < v->len; ++i2, k2 = (k2 + 1) + (k2 + 1)->span)
                repeated |= strcmp(k2->str, k->str) == 0;
            int earlier = sb_json_get(v, k->str) != val;
            if (!repeated && !earlier)
                compare(val, json_object_get(j, k->str));
            unique += !repeated;
            span += 1 + val->span;
            k = val + val->span;
        }
        check(span == v->span && unique == json_object_size(j));
        break;
    }
    default:
        check(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1); /* its own allocation, so ASan sees where it ends */
    if (text == NULL)
        abort();
    memcpy(text, data, size);
    sb_json_doc_t doc = {0};
    int rc = sb_json_parse(&doc, text, size, 1 << 20);
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (rc == 0) {
        const sb_json_value_t *root = sb_json_root(&doc);
        check(root != NULL && root->span == doc.n);
        if (j != NULL)
            compare(root, j);
        else
            check(has_big_integer(root));
    } else {
        check(sb_json_root(&doc) == NULL);
        /* jansson swallows a NUL byte right after a number ("[1\0]"); the reader refuses it */
        check(j == NULL || depth(j) > 128 || memchr(data, '\0', size) != NULL);
    }
    if (j != NULL) {
        char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        char *got = sb_json_dumps(j, 15);
        check(want != NULL && got != NULL && strcmp(want, got) == 0);
        free(want);
        free(got);
    }
    json_decref(j);
    sb_json_doc_dispose(&doc);
    json_t *str = json_stringn((const char *)data, size);
    check(sb_json_is_utf8((const char *)data, size) == (str != NULL));
    json_decref(str);

    /* sb_json_loadb is json_loadb with JSON_REJECT_DUPLICATES: the same tree, or the same error in the same words */
    json_error_t fast_error, slow_error;
    json_t *fast = sb_json_loadb((const char *)data, size, &fast_error);
    json_t *slow = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &slow_error);
    check((fast == NULL) == (slow == NULL) && (fast == NULL || json_equal(fast, slow)));
    if (fast == NULL)
        check(strcmp(fast_error.text, slow_error.text) == 0 && fast_error.position == slow_error.position);
    json_decref(fast);
    json_decref(slow);

    /* a ceiling on values refuses, and never writes past it */
    sb_json_doc_t small = {0};
    memcpy(text, data, size);
    if (sb_json_parse(&small, text, size, 3) == 0)
        check(small.n <= 3 && small.cap <= 3);
    sb_json_doc_dispose(&small);
    free(text);
    return 0;
}
