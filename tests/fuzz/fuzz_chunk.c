/*
 * libFuzzer target for the chunk scanner (src/chunk.c), with the jansson
 * reading it replaced (chunk_ref.c) as the oracle: any input the reference
 * accepts, the scanner accepts with the same delta; any input the scanner
 * accepts, the reference accepts too. The known differences are exempt: the
 * scanner refuses nesting past SB_CHUNK_MAX_DEPTH (jansson allows 2048) and
 * any NUL byte (jansson 2.14 skips one right after a number or literal), and
 * checks only the form of a real number (jansson refuses one past a double).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "chunk_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_str(sb_str_t a, sb_str_t b)
{
    if (a.base == NULL || b.base == NULL)
        return a.base == b.base;
    return a.len == b.len && memcmp(a.base, b.base, a.len) == 0;
}

static int same(const sb_delta_t *a, const sb_delta_t *b)
{
    if (!same_str(a->content, b->content) || !same_str(a->finish_reason, b->finish_reason) || !same_str(a->model, b->model) ||
        !same_str(a->error_message, b->error_message) || !same_str(a->error_type, b->error_type) ||
        !same_str(a->error_code, b->error_code) || a->ntools != b->ntools || a->has_usage != b->has_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->is_error != b->is_error)
        return 0;
    for (size_t i = 0; i < a->ntools; ++i) {
        const sb_tool_delta_t *x = &a->tools[i], *y = &b->tools[i];
        if (x->index != y->index || !same_str(x->id, y->id) || !same_str(x->type, y->type) || !same_str(x->name, y->name) ||
            !same_str(x->arguments, y->arguments))
            return 0;
    }
    return 1;
}

/* A string the scanner returns lies within the input or within the scratch buffer. */
static int inside(sb_str_t s, const char *in, const char *scratch, size_t size)
{
    if (s.base == NULL)
        return s.len == 0;
    return (s.base >= in && s.len <= size && s.base - in <= (ptrdiff_t)(size - s.len)) ||
           (s.base >= scratch && s.len <= size && s.base - scratch <= (ptrdiff_t)(size - s.len));
}

static int all_inside(const sb_delta_t *d, const char *in, const char *scratch, size_t size)
{
    int ok = inside(d->content, in, scratch, size) && inside(d->finish_reason, in, scratch, size) &&
             inside(d->model, in, scratch, size) && inside(d->error_message, in, scratch, size) &&
             inside(d->error_type, in, scratch, size) && inside(d->error_code, in, scratch, size) &&
             d->ntools <= SB_CHUNK_MAX_TOOLS;
    for (size_t i = 0; ok && i < d->ntools; ++i)
        ok = inside(d->tools[i].id, in, scratch, size) && inside(d->tools[i].type, in, scratch, size) &&
             inside(d->tools[i].name, in, scratch, size) && inside(d->tools[i].arguments, in, scratch, size);
    return ok;
}

/* Deepest nesting of arrays and objects, for input that is valid JSON. */
static size_t nesting(const char *p, size_t n)
{
    size_t depth = 0, max = 0;
    int in_string = 0;
    for (size_t i = 0; i < n; ++i) {
        if (in_string) {
            if (p[i] == '\\')
                ++i;
            else if (p[i] == '"')
                in_string = 0;
        } else if (p[i] == '"') {
            in_string = 1;
        } else if (p[i] == '[' || p[i] == '{') {
            max = ++depth > max ? depth : max;
        } else if (p[i] == ']' || p[i] == '}') {
            --depth;
        }
    }
    return max;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copies, so that ASan sees a read past the input or a write past the scratch room. */
    char *in = calloc(size ? size : 1, 1), *scratch = malloc(size ? size : 1);
    if (in == NULL || scratch == NULL)
        abort();
    if (size != 0)
        memcpy(in, data, size);

    sb_delta_t got, want;
    json_t *holder;
    json_error_t error;
    int rc = sb_chunk_parse(in, size, &got, scratch);
    int ref = ref_chunk_parse(in, size, &want, &holder, &error);

    if (rc == 0 && !all_inside(&got, in, scratch, size))
        abort();
    if (size != 0 && memchr(in, '\0', size) != NULL) { /* never valid JSON, in a string or out of one */
        if (rc == 0)
            abort();
    } else if (ref == 0) {
        if (nesting(in, size) > SB_CHUNK_MAX_DEPTH ? rc == 0 : rc != 0 || !same(&got, &want))
            abort();
    } else if (rc == 0 && strncmp(error.text, "real number overflow", 20) != 0) {
        abort();
    }
    json_decref(holder);
    /* The same bytes as a whole answer: the same scanner with `message` for `delta`, so it accepts exactly what the
     * chunk reading accepts, and its strings lie in the same places. */
    int whole = sb_chunk_parse_whole(in, size, &got, scratch);
    if ((whole == -1) != (rc == -1) || (whole == 0 && !all_inside(&got, in, scratch, size)))
        abort();
    free(in);
    free(scratch);
    return 0;
}
