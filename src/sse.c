/*
 * Server-sent events decoder for upstream response bodies: turns bytes, split
 * anywhere by the network, into (event, data) pairs following the WHATWG rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/sse.h"

static const char bom[3] = {'\xEF', '\xBB', '\xBF'};

/* One feed or finish call. */
struct run {
    sb_sse_decoder_t *d;
    /*
     * The usual event is one `data:` line followed by a blank line in the same
     * read, so its data is left in the caller's buffer until it has to outlive
     * the call. When set, the event's d->data_len bytes live here, not in d->data.
     */
    const char *borrowed;
    sb_sse_on_event_cb cb;
    void *ctx;
};

/* Callers check the ceiling first, so need <= max and the clamp never cuts below need. */
static void grow(char **buf, size_t *cap, size_t need, size_t max)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 512;
    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    if (c > max)
        c = max;
    char *p = sb_realloc(*buf, c);
    *buf = p;
    *cap = c;
}

static int too_large(sb_sse_decoder_t *d)
{
    /*
     * The rest of the oversized line arrives in later feeds and must not be read
     * as lines of its own. With a ceiling of 0 every non-empty line fails and no
     * event can be built, so the decoder stays failed until it is initialised again.
     */
    d->max = 0;
    d->line_len = 0;
    d->data_len = 0;
    d->event_len = 0;
    d->has_data = 0;
    d->last_was_cr = 0;
    d->bom_checked = 1;
    return SB_SSE_ERR_TOO_LARGE;
}

/* Adds bytes to the pending (incomplete) line. */
static int hold(sb_sse_decoder_t *d, const char *p, size_t n)
{
    if (n > d->max - d->data_len - d->line_len)
        return too_large(d);
    grow(&d->line, &d->line_cap, d->line_len + n, d->max);
    memcpy(d->line + d->line_len, p, n);
    d->line_len += n;
    return 0;
}

static void spill(struct run *r)
{
    sb_sse_decoder_t *d = r->d;
    if (r->borrowed == NULL)
        return;
    if (d->data_len != 0) {
        grow(&d->data, &d->data_cap, d->data_len, d->max);
        memcpy(d->data, r->borrowed, d->data_len);
    }
    r->borrowed = NULL;
}

static int dispatch(struct run *r)
{
    sb_sse_decoder_t *d = r->d;
    int rc = 0;
    if (d->has_data) {
        const char *p = r->borrowed ? r->borrowed : d->data;
        sb_sse_event_t ev = {
            .event = d->event_len ? d->event : "message",
            .event_len = d->event_len ? d->event_len : sizeof("message") - 1,
            .data = p ? p : "", /* `data:` lines that were all empty allocate nothing */
            .data_len = d->data_len,
        };
        rc = r->cb(r->ctx, &ev);
    }
    r->borrowed = NULL;
    d->data_len = 0;
    d->event_len = 0;
    d->has_data = 0;
    return rc;
}

/*
 * Appends a data value. `stable` says the value lies in the caller's buffer
 * (not in d->line, which the next line overwrites) and may be borrowed.
 */
static void data(struct run *r, const char *v, size_t n, int stable)
{
    sb_sse_decoder_t *d = r->d;
    if (!d->has_data) {
        d->has_data = 1;
        if (stable) {
            r->borrowed = v;
            d->data_len = n;
            return;
        }
        grow(&d->data, &d->data_cap, n, d->max);
    } else {
        spill(r);
        /* The line ceiling check covered this: "data" + ':' in the line pays for the '\n'. */
        grow(&d->data, &d->data_cap, d->data_len + 1 + n, d->max);
        d->data[d->data_len++] = '\n';
    }
    if (n != 0)
        memcpy(d->data + d->data_len, v, n);
    d->data_len += n;
}

static int line(struct run *r, const char *s, size_t n, int stable)
{
    sb_sse_decoder_t *d = r->d;
    if (n == 0)
        return dispatch(r);
    if (s[0] == ':')
        return 0;
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen != 0 && *v == ' ') {
        ++v;
        --vlen;
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        data(r, v, vlen, stable);
    } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        size_t k = vlen < sizeof(d->event) - 1 ? vlen : sizeof(d->event) - 1;
        memcpy(d->event, v, k);
        d->event[k] = '\0';
        d->event_len = k;
    }
    return 0;
}

static const char *find(const char *p, const char *end, char c)
{
    const char *q = memchr(p, c, (size_t)(end - p));
    return q ? q : end;
}

void sb_sse_decoder_init(sb_sse_decoder_t *d, size_t max_event_bytes)
{
    *d = (sb_sse_decoder_t){.max = max_event_bytes};
}

void sb_sse_decoder_dispose(sb_sse_decoder_t *d)
{
    free(d->line);
    free(d->data);
    d->line = d->data = NULL;
    d->line_len = d->line_cap = 0;
    d->data_len = d->data_cap = 0;
    d->has_data = 0;
}

int sb_sse_decoder_feed(sb_sse_decoder_t *d, const char *bytes, size_t len, sb_sse_on_event_cb cb, void *ctx)
{
    struct run r = {.d = d, .cb = cb, .ctx = ctx};
    if (len == 0)
        return 0;
    const char *p = bytes, *end = bytes + len;

    if (d->last_was_cr) {
        d->last_was_cr = 0;
        if (*p == '\n' && ++p == end)
            return 0;
    }
    if (!d->bom_checked) {
        /* The BOM may arrive split too: its first bytes wait in d->line until they match or not. */
        size_t k = 0;
        while (p + k < end && d->line_len + k < sizeof(bom) && p[k] == bom[d->line_len + k])
            ++k;
        if (d->line_len + k == sizeof(bom)) {
            d->line_len = 0;
            d->bom_checked = 1;
            p += k;
        } else if (p + k == end) {
            return hold(d, p, k);
        } else {
            d->bom_checked = 1; /* held bytes, if any, are the start of an ordinary line */
        }
    }

    /* Next LF and next CR: each is searched once per stretch rather than once per line. */
    const char *nl = find(p, end, '\n'), *cr = find(p, end, '\r');
    while (p < end) {
        if (nl < p)
            nl = find(p, end, '\n');
        if (cr < p)
            cr = find(p, end, '\r');
        const char *eol = nl < cr ? nl : cr;
        if (eol == end) {
            int rc = hold(d, p, (size_t)(end - p));
            if (rc == 0)
                spill(&r);
            return rc;
        }
        const char *s = p;
        size_t n = (size_t)(eol - p);
        int stable = 1;
        if (d->line_len != 0) {
            if (hold(d, p, n) != 0)
                return SB_SSE_ERR_TOO_LARGE;
            s = d->line;
            n = d->line_len;
            d->line_len = 0;
            stable = 0;
        } else if (n > d->max - d->data_len) {
            return too_large(d);
        }
        p = eol + 1;
        if (*eol == '\r') {
            if (p == end)
                d->last_was_cr = 1;
            else if (*p == '\n')
                ++p;
        }
        int rc = line(&r, s, n, stable);
        if (rc != 0)
            return rc;
    }
    spill(&r);
    return 0;
}

int sb_sse_decoder_finish(sb_sse_decoder_t *d, sb_sse_on_event_cb cb, void *ctx)
{
    struct run r = {.d = d, .cb = cb, .ctx = ctx};
    /* Held bytes of a BOM that never completed are ordinary line content. */
    if (d->line_len != 0) {
        size_t n = d->line_len;
        d->line_len = 0;
        (void)line(&r, d->line, n, 0); /* not blank, so it cannot dispatch */
    }
    int rc = dispatch(&r);
    /* Ready for a new stream. */
    d->last_was_cr = 0;
    d->bom_checked = 0;
    return rc;
}
