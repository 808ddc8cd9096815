/*
 * fake-upstream: a fake OpenAI-compatible LLM provider for switchboard's integration tests and benchmarks.
 *
 * A small HTTP/1.1 server written directly on libuv (reads stay active on every connection at all times, so a
 * client hang-up is seen at once, even while a response is delayed, paced or hanging). It replays recorded SSE
 * streams byte-for-byte, generates chat completion streams, tool calls and embeddings, and injects faults
 * (error statuses, delays, pacing, odd write sizes, hangs, dropped connections) chosen by the request's `model`
 * string. Every chat/embeddings request is recorded with timings for the tests to inspect (GET /_requests).
 * The scenario grammar is documented in README.md next to this file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#define MAX_HEAD (64 * 1024) /* request line + headers */
#define MAX_HEADERS 100
#define MAX_BODY (8 * 1024 * 1024)             /* request body limit (413 above) */
#define MAX_BUFFERED (MAX_BODY + 4 * MAX_HEAD) /* unparsed input kept while a response is in progress */
#define MAX_RECORDS 10000
#define READ_MIN (64 * 1024)
#define PUMP_MAX_WRITES 128 /* writes queued per loop iteration per connection */
#define PUMP_MAX_BYTES (1024 * 1024)
#define LINGER_MS 2000     /* how long to drain input after our FIN */
#define EMBED_DIM 64       /* the default embedding: sparse, 64 components */
#define EMBED_DIM_MAX 8192 /* dim=N: dense, up to text-embedding-3-large's 3072 and beyond */
#define GEN_MAX ((uint64_t)256 * 1024 * 1024)
#define CHUNK_MAX ((uint64_t)64 * 1024 * 1024)
#define MS_MAX ((uint64_t)3600 * 1000)
#define GEN_EVENT_BYTES 100
#define ROUNDS_MAX 1000000
#define ARG_FRAGMENT_BYTES 7 /* calls=: tool-call arguments are streamed in fragments of about this many bytes */

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---------------------------------------------------------------------------------------------------------------- */
/* small helpers */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void die(const char *what)
{
    fprintf(stderr, "fake-upstream: %s\n", what);
    abort();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t n = b->cap ? b->cap : 256;
    while (n - b->len < extra)
        n *= 2;
    b->p = xrealloc(b->p, n);
    b->cap = n;
}

static void sb_add(struct sbuf *b, const void *d, size_t n)
{
    if (n == 0)
        return;
    sb_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fmt(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    sb_reserve(b, 128);
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vsnprintf failed");
    if ((size_t)n >= b->cap - b->len) {
        sb_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Takes the buffer's storage, NUL-terminated. */
static char *sb_take(struct sbuf *b, size_t *len)
{
    sb_reserve(b, 1);
    b->p[b->len] = '\0';
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static int dump_to_sbuf(const char *buffer, size_t size, void *data)
{
    sb_add(data, buffer, size);
    return 0;
}

static void sb_json(struct sbuf *b, const json_t *j, size_t flags)
{
    if (json_dump_callback(j, dump_to_sbuf, b, flags) != 0)
        die("json_dump_callback failed");
}

static char *json_to_str(const json_t *j, size_t flags, size_t *len)
{
    struct sbuf b = {0};
    sb_json(&b, j, flags);
    return sb_take(&b, len);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    return (double)us / 1000.0;
}

/* splitmix64: deterministic, seedable. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Parses a decimal unsigned integer that must make up all of s[0..n). */
static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    char *end;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

/* Length of the valid UTF-8 sequence at p (same rules as jansson: no overlongs, surrogates or > U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c0 = p[0];
    size_t len;
    uint32_t cp;
    if (c0 < 0x80)
        return 1;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        len = 2;
        cp = c0 & 0x1F;
    } else if (c0 >= 0xE0 && c0 <= 0xEF) {
        len = 3;
        cp = c0 & 0x0F;
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
        len = 4;
        cp = c0 & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* A JSON string for arbitrary bytes: invalid UTF-8 is replaced by U+FFFD. */
static json_t *json_string_lossy(const char *s, size_t n)
{
    if (utf8_valid(s, n))
        return json_stringn(s, n);
    struct sbuf b = {0};
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
            sb_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            sb_add(&b, s + i, k);
            i += k;
        }
    }
    json_t *j = json_stringn(b.p ? b.p : "", b.len);
    sb_free(&b);
    return j;
}

/* Decodes %XX and '+' in place; returns the new length (the result is NUL-terminated). */
static size_t pct_decode(char *s)
{
    char *w = s;
    const char *r = s;
    while (*r != '\0') {
        if (*r == '+') {
            *w++ = ' ';
            r++;
        } else if (*r == '%' && hexval((unsigned char)r[1]) >= 0 && hexval((unsigned char)r[2]) >= 0) {
            *w++ = (char)(hexval((unsigned char)r[1]) << 4 | hexval((unsigned char)r[2]));
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Counts whitespace-separated words. */
static uint64_t count_words(const char *s, size_t n)
{
    uint64_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        if (is_ws(s[i])) {
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            words++;
        }
    }
    return words;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* shared state */

struct blob {
    size_t refs;
    size_t len;
    char *data;
};

struct failkey {
    char *key;
    uint64_t count;
    struct failkey *next;
};

enum pstate { PS_HEAD, PS_BODY_CL, PS_BODY_CHUNKED };
enum cstate { CS_SIZE, CS_DATA, CS_DATA_END, CS_TRAILER };
enum end_mode { END_NORMAL, END_HANG, END_DROP };
enum seg_mode { SEG_DEFAULT, SEG_WHOLE, SEG_EVENTS, SEG_FIXED, SEG_RANDOM };
enum step { STEP_MORE, STEP_PROGRESS, STEP_STOP };

struct header {
    char *name; /* lowercased */
    char *value;
};

struct request {
    char *head; /* storage for method, target and headers */
    char *method, *target;
    int minor;
    struct header hdr[MAX_HEADERS];
    int nhdr;
    bool keep_alive, expect_continue;
    uint64_t content_length;
    struct sbuf body;
    enum cstate cstate;
    uint64_t chunk_left;
    size_t trailer_bytes;
};

struct response {
    bool active;
    struct blob *body;
    struct sbuf head;
    bool head_sent, chunked, queued_all, first_body_written;
    size_t off, limit;
    enum end_mode end;
    enum seg_mode seg;
    size_t chunk;
    uint64_t rng;
    size_t *ev_ends;
    size_t nev, ev_i;
    uint64_t pace_ms;
    uint64_t bytes_sent;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* delay, pace, or lingering close */
    uv_shutdown_t shutdown_req;
    struct conn *prev, *next;
    int open_handles;
    bool closing;    /* uv_close called */
    bool discarding; /* our FIN is out; input is drained and dropped */
    bool busy;       /* a complete request is being answered */
    unsigned writes_pending;
    char *rbuf;
    size_t rlen, rcap, rpos, scanned;
    enum pstate pstate;
    struct request req;
    struct response resp;
    json_t *rec;    /* the record of the request being answered, or NULL */
    bool rec_final; /* its outcome is no longer "pending" */
    bool counted;   /* in g_open */
    double t_received;
    uint64_t seq;
};

/* What to send: built by the route handlers, executed by start_response(). */
struct plan {
    int status;
    const char *ctype;
    bool stream; /* SSE: chunked transfer-encoding; otherwise Content-Length */
    char *body;  /* owned */
    size_t len;
    size_t *ev_ends; /* owned; event end offsets for SEG_EVENTS */
    size_t nev;
    enum seg_mode seg;
    size_t chunk;
    uint64_t seed;
    uint64_t pace_ms, delay_ms;
    bool hang_head;
    enum end_mode end;
    uint64_t end_after;
    const char *retry_after;
    uint64_t header_bytes;
};

enum { W_RESP = 1, W_FINAL = 2, W_LIMIT = 4 };

struct wreq {
    uv_write_t req;
    struct conn *c;
    struct blob *blob;
    size_t nbody;
    unsigned flags;
    char extra[]; /* response head, chunk-size line, chunk end, terminator */
};

static uv_loop_t *g_loop;
static uv_tcp_t g_server;
static uv_signal_t g_sigint, g_sigterm;
static const char *g_fixtures;
static struct conn *g_conns;
static bool g_shutting_down;
static unsigned long long g_accepted, g_open; /* connections accepted since start, and open now (GET /_stats) */
static char g_scratch[READ_MIN];

static json_t *g_records[MAX_RECORDS];
static size_t g_rec_head, g_rec_count;
static uint64_t g_seq;
static struct failkey *g_failkeys;

static void pump(struct conn *c);
static void process_input(struct conn *c);

/* ---------------------------------------------------------------------------------------------------------------- */
/* blobs, records, fail counters */

static struct blob *blob_new(char *data, size_t len)
{
    struct blob *b = xmalloc(sizeof *b);
    b->refs = 1;
    b->len = len;
    b->data = data;
    return b;
}

static struct blob *blob_ref(struct blob *b)
{
    b->refs++;
    return b;
}

static void blob_unref(struct blob *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    free(b->data);
    free(b);
}

static void records_push(json_t *r)
{
    if (g_rec_count == MAX_RECORDS) {
        json_decref(g_records[g_rec_head]);
        g_rec_head = (g_rec_head + 1) % MAX_RECORDS;
        g_rec_count--;
    }
    g_records[(g_rec_head + g_rec_count) % MAX_RECORDS] = r;
    g_rec_count++;
}

static void records_clear(void)
{
    for (size_t i = 0; i < g_rec_count; i++)
        json_decref(g_records[(g_rec_head + i) % MAX_RECORDS]);
    g_rec_head = g_rec_count = 0;
    g_seq = 0;
    while (g_failkeys != NULL) {
        struct failkey *f = g_failkeys;
        g_failkeys = f->next;
        free(f->key);
        free(f);
    }
}

static struct failkey *failkey_get(const char *key, size_t n)
{
    for (struct failkey *f = g_failkeys; f != NULL; f = f->next)
        if (strlen(f->key) == n && memcmp(f->key, key, n) == 0)
            return f;
    struct failkey *f = xmalloc(sizeof *f);
    f->key = xstrndup(key, n);
    f->count = 0;
    f->next = g_failkeys;
    g_failkeys = f;
    return f;
}

static void rec_set_time(struct conn *c, const char *field, double t)
{
    if (c->rec != NULL)
        json_object_set_new(c->rec, field, json_real(t));
}

static void rec_set_outcome(struct conn *c, const char *outcome)
{
    if (c->rec == NULL || c->rec_final)
        return;
    json_object_set_new(c->rec, "outcome", json_string(outcome));
    c->rec_final = true;
}

/* Creates the record of the current request and keeps a reference on the connection. */
static void record_new(struct conn *c)
{
    struct request *q = &c->req;
    json_t *r = json_object();
    json_t *headers = json_object();
    c->seq = ++g_seq;
    for (int i = 0; i < q->nhdr; i++) {
        const char *name = q->hdr[i].name, *value = q->hdr[i].value;
        json_t *old = json_object_get(headers, name);
        if (old != NULL) {
            struct sbuf b = {0};
            sb_str(&b, json_string_value(old));
            sb_str(&b, ", ");
            sb_str(&b, value);
            json_object_set_new(headers, name, json_string_lossy(b.p, b.len));
            sb_free(&b);
        } else {
            json_t *v = json_string_lossy(value, strlen(value));
            if (utf8_valid(name, strlen(name)))
                json_object_set_new(headers, name, v);
            else
                json_decref(v);
        }
    }
    json_object_set_new(r, "seq", json_integer((json_int_t)c->seq));
    json_object_set_new(r, "method", json_string_lossy(q->method, strlen(q->method)));
    json_object_set_new(r, "path", json_string_lossy(q->target, strlen(q->target)));
    json_object_set_new(r, "headers", headers);
    json_object_set_new(r, "body", json_string_lossy(q->body.p ? q->body.p : "", q->body.len));
    json_object_set_new(r, "t_received", json_real(c->t_received));
    json_object_set_new(r, "t_first_byte", json_null());
    json_object_set_new(r, "t_done", json_null());
    json_object_set_new(r, "t_client_closed", json_null());
    json_object_set_new(r, "bytes_sent", json_integer(0));
    json_object_set_new(r, "outcome", json_string("pending"));
    json_object_set_new(r, "status", json_null());
    records_push(r);
    c->rec = json_incref(r);
    c->rec_final = false;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* connection lifetime */

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        g_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->counted)
        --g_open;
    free(c->rbuf);
    free(c->req.head);
    sb_free(&c->req.body);
    blob_unref(c->resp.body);
    sb_free(&c->resp.head);
    free(c->resp.ev_ends);
    json_decref(c->rec);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

/* The client's side is gone (EOF, reset, write error): note it on the record if a response was under way. */
static void client_gone(struct conn *c)
{
    if (c->busy && c->rec != NULL && !c->rec_final) {
        rec_set_time(c, "t_client_closed", now_ms());
        rec_set_outcome(c, "client_closed");
    }
    conn_close(c);
}

/* Close with an RST (SO_LINGER 0), for drop_after. */
static void conn_abort(struct conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = container_of(req, struct conn, shutdown_req);
    if (status < 0)
        conn_close(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->closing)
        return;
    if (c->discarding)
        conn_close(c);
    else
        pump(c);
}

/* Send our FIN, then drain (and drop) input until the client closes or LINGER_MS pass, so that unread input
 * does not turn our close into an RST that could destroy the response before the client reads it. */
static void graceful_close(struct conn *c)
{
    c->discarding = true;
    c->rlen = c->rpos = c->scanned = 0;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
}

static void request_reset(struct request *q)
{
    free(q->head);
    sb_free(&q->body);
    memset(q, 0, sizeof *q);
}

static void response_reset(struct response *r)
{
    blob_unref(r->body);
    sb_free(&r->head);
    free(r->ev_ends);
    memset(r, 0, sizeof *r);
}

/* The response was fully written: go on with the next request on this connection, or close it. */
static void response_finished(struct conn *c)
{
    bool keep = c->req.keep_alive && !g_shutting_down;
    response_reset(&c->resp);
    request_reset(&c->req);
    json_decref(c->rec);
    c->rec = NULL;
    c->busy = false;
    c->pstate = PS_HEAD;
    if (!keep) {
        graceful_close(c);
        return;
    }
    process_input(c);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* writing responses */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);
    struct conn *c = w->c;
    unsigned flags = w->flags;
    size_t nbody = w->nbody;
    c->writes_pending--;
    blob_unref(w->blob);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        client_gone(c);
        return;
    }
    struct response *r = &c->resp;
    if (!(flags & W_RESP) || !r->active)
        return;
    if (nbody > 0) {
        r->bytes_sent += nbody;
        if (c->rec != NULL) {
            if (!r->first_body_written)
                rec_set_time(c, "t_first_byte", now_ms());
            json_integer_set(json_object_get(c->rec, "bytes_sent"), (json_int_t)r->bytes_sent);
        }
        r->first_body_written = true;
    }
    if (flags & W_FINAL) {
        rec_set_time(c, "t_done", now_ms());
        rec_set_outcome(c, "complete");
        response_finished(c);
        return;
    }
    if (flags & W_LIMIT) {
        if (r->end == END_DROP) {
            rec_set_outcome(c, "dropped");
            conn_abort(c);
        }
        return; /* END_HANG: stall until the client hangs up */
    }
    if (r->pace_ms == 0 && c->writes_pending == 0)
        pump(c);
}

/* A write that is not part of the response accounting (100 Continue). */
static void write_static(struct conn *c, const char *s)
{
    struct wreq *w = xmalloc(sizeof *w);
    w->c = c;
    w->blob = NULL;
    w->nbody = 0;
    w->flags = 0;
    uv_buf_t buf = uv_buf_init((char *)s, (unsigned)strlen(s));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) < 0) {
        free(w);
        client_gone(c);
        return;
    }
    c->writes_pending++;
}

static size_t next_segment(struct response *r, size_t remaining)
{
    size_t n = remaining;
    switch (r->seg) {
    case SEG_DEFAULT:
    case SEG_WHOLE:
        break;
    case SEG_FIXED:
        n = r->chunk;
        break;
    case SEG_RANDOM:
        n = (size_t)(rng_next(&r->rng) % 64) + 1;
        break;
    case SEG_EVENTS:
        while (r->ev_i < r->nev && r->ev_ends[r->ev_i] <= r->off)
            r->ev_i++;
        if (r->ev_i < r->nev)
            n = r->ev_ends[r->ev_i] - r->off;
        break;
    }
    return n < remaining ? n : remaining;
}

/* Queues the next write(s) of the active response: one segment when paced, else a bounded batch. */
static void pump(struct conn *c)
{
    struct response *r = &c->resp;
    unsigned nwrites = 0;
    size_t nbytes = 0;
    while (r->active && !r->queued_all && !c->closing) {
        size_t remaining = r->limit - r->off;
        size_t n = remaining == 0 ? 0 : next_segment(r, remaining);
        bool at_limit = r->off + n == r->limit;
        bool final = at_limit && r->end == END_NORMAL;
        size_t head_len = r->head_sent ? 0 : r->head.len;
        struct wreq *w = xmalloc(sizeof *w + head_len + 32);
        uv_buf_t bufs[3];
        unsigned nb = 0;
        size_t el = 0;
        if (head_len > 0) {
            memcpy(w->extra, r->head.p, head_len);
            el = head_len;
        }
        if (r->chunked && n > 0)
            el += (size_t)snprintf(w->extra + el, 24, "%zx\r\n", n);
        if (el > 0)
            bufs[nb++] = uv_buf_init(w->extra, (unsigned)el);
        if (n > 0)
            bufs[nb++] = uv_buf_init(r->body->data + r->off, (unsigned)n);
        size_t tail = el;
        if (r->chunked && n > 0) {
            memcpy(w->extra + el, "\r\n", 2);
            el += 2;
        }
        if (r->chunked && final) {
            memcpy(w->extra + el, "0\r\n\r\n", 5);
            el += 5;
        }
        if (el > tail)
            bufs[nb++] = uv_buf_init(w->extra + tail, (unsigned)(el - tail));
        w->c = c;
        w->blob = n > 0 ? blob_ref(r->body) : NULL;
        w->nbody = n;
        w->flags = W_RESP | (final ? W_FINAL : 0) | (at_limit && !final ? W_LIMIT : 0);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nb, on_write) < 0) {
            blob_unref(w->blob);
            free(w);
            client_gone(c);
            return;
        }
        c->writes_pending++;
        r->head_sent = true;
        r->off += n;
        if (at_limit) {
            r->queued_all = true;
            break;
        }
        if (r->pace_ms > 0) {
            uv_timer_start(&c->timer, on_timer, r->pace_ms, 0);
            break;
        }
        nwrites++;
        nbytes += n + el;
        if (nwrites >= PUMP_MAX_WRITES || nbytes >= PUMP_MAX_BYTES)
            break;
    }
}

static const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *text;
    } reasons[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Entity"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {529, "Site Overloaded"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Status";
}

/* Takes ownership of the plan's buffers and starts sending (after delay_ms, if any). */
static void start_response(struct conn *c, struct plan *p)
{
    struct response *r = &c->resp;
    response_reset(r);
    if (c->rec != NULL && !p->hang_head)
        json_object_set_new(c->rec, "status", json_integer(p->status));
    if (p->hang_head) {
        /* Never answer; the connection stays readable so the hang-up is seen. */
        free(p->body);
        free(p->ev_ends);
        r->active = true;
        r->queued_all = true;
        return;
    }
    bool http10 = c->req.minor == 0;
    if (http10)
        c->req.keep_alive = false;
    r->active = true;
    r->body = blob_new(p->body, p->len);
    r->ev_ends = p->ev_ends;
    r->nev = p->nev;
    r->seg = p->seg;
    r->chunk = p->chunk;
    r->rng = p->seed;
    r->pace_ms = p->pace_ms;
    r->end = p->end;
    r->limit = p->len;
    if (p->end != END_NORMAL && p->end_after < p->len)
        r->limit = (size_t)p->end_after;
    r->chunked = p->stream && !http10;
    sb_fmt(&r->head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", p->status, reason_phrase(p->status), p->ctype);
    if (p->stream) {
        sb_str(&r->head, "Cache-Control: no-cache\r\n");
        if (r->chunked)
            sb_str(&r->head, "Transfer-Encoding: chunked\r\n");
    } else {
        sb_fmt(&r->head, "Content-Length: %zu\r\n", p->len);
    }
    if (c->rec != NULL)
        sb_fmt(&r->head, "x-request-id: req_fake_%" PRIu64 "\r\n", c->seq);
    if (p->retry_after != NULL)
        sb_fmt(&r->head, "Retry-After: %s\r\n", p->retry_after);
    if (p->header_bytes > 0) {
        char block[1024];
        memset(block, 'a', sizeof(block) - 1);
        block[sizeof(block) - 1] = '\0';
        sb_str(&r->head, "X-Padding: ");
        for (uint64_t left = p->header_bytes; left > 0; left -= left < sizeof(block) - 1 ? left : sizeof(block) - 1)
            sb_str(&r->head, block + (sizeof(block) - 1 - (left < sizeof(block) - 1 ? left : sizeof(block) - 1)));
        sb_str(&r->head, "\r\n");
    }
    if (p->stream && !r->chunked) /* HTTP/1.0 stream: the end is marked by the close */
        c->req.keep_alive = false;
    sb_str(&r->head, c->req.keep_alive && !g_shutting_down ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    p->body = NULL;
    p->ev_ends = NULL;
    if (p->delay_ms > 0)
        uv_timer_start(&c->timer, on_timer, p->delay_ms, 0);
    else
        pump(c);
}

static void plan_init(struct plan *p, int status, const char *ctype, char *body, size_t len)
{
    memset(p, 0, sizeof *p);
    p->status = status;
    p->ctype = ctype;
    p->body = body;
    p->len = len;
    p->seg = SEG_WHOLE;
}

static char *openai_error_body(const char *msg, const char *type, const char *code, size_t *len)
{
    json_t *err = json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", msg, "type", type, "param", "code",
                            code != NULL ? json_string(code) : json_null());
    if (err == NULL)
        die("json_pack failed");
    char *s = json_to_str(err, JSON_COMPACT, len);
    json_decref(err);
    return s;
}

static void send_error(struct conn *c, int status, const char *msg, const char *type, const char *code)
{
    struct plan p;
    size_t len;
    char *body = openai_error_body(msg, type, code, &len);
    plan_init(&p, status, "application/json", body, len);
    start_response(c, &p);
}

static void send_text(struct conn *c, int status, const char *ctype, char *body, size_t len)
{
    struct plan p;
    plan_init(&p, status, ctype, body, len);
    start_response(c, &p);
}

/* A protocol error while reading a request: answer and close. */
static enum step bad_request(struct conn *c, int status, const char *msg)
{
    c->busy = true;
    c->req.keep_alive = false;
    send_error(c, status, msg, "invalid_request_error", NULL);
    return STEP_STOP;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* scenarios */

struct str {
    const char *p;
    size_t n;
    bool set;
};

struct scenario {
    char *qbuf;
    struct str file, text, body, key, retry_after, content_first;
    json_t *calls;        /* calls=JSON, validated: a non-empty array of {"name", "arguments"} */
    bool calls_from_user; /* calls=@user: the JSON is the first user message's content (for scripts too long for a model name) */
    bool has_gen, tools, has_fail, hang_head, has_rounds, has_reply_pace;
    uint64_t gen_bytes, chunk, seed, pace_ms, delay_ms, fail_times, end_after, rounds, reply_pace_ms;
    uint64_t gen_words;    /* gen_words=N: N generated words said as text= would say them (a short model name, many tokens) */
    char *gen_text;        /* their text, owned; s->text points at it */
    uint64_t header_bytes; /* header_bytes=N: an X-Padding header of N bytes in the response head */
    uint64_t dim;          /* dim=N (embeddings only): dense N-component vectors; 0: the default 64-dim sparse ones */
    enum seg_mode seg;
    enum end_mode end;
    int status;
};

/* calls=JSON: a non-empty array of {"name": "...", "arguments": {...}}; arguments may also be a string (sent as is,
 * e.g. to script malformed arguments) or absent ({}). Returns the array, or NULL with a message in err. */
static json_t *calls_parse(const char *v, size_t vn, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *calls = json_loadb(v, vn, 0, &jerr);
    if (calls == NULL) {
        snprintf(err, errlen, "fake-upstream: bad JSON in calls: %s (at byte %d)", jerr.text, jerr.position);
        return NULL;
    }
    if (!json_is_array(calls) || json_array_size(calls) == 0) {
        snprintf(err, errlen, "fake-upstream: calls must be a non-empty JSON array of {\"name\":...,\"arguments\":{...}}");
        json_decref(calls);
        return NULL;
    }
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        const char *why = NULL;
        json_t *name = json_object_get(call, "name"), *args = json_object_get(call, "arguments");
        const char *key;
        json_t *val;
        if (!json_is_object(call))
            why = "is not an object";
        else if (!json_is_string(name) || json_string_length(name) == 0)
            why = "needs a non-empty string 'name'";
        else if (args != NULL && !json_is_object(args) && !json_is_string(args))
            why = "'arguments' must be an object or a string";
        if (why == NULL) {
            json_object_foreach(call, key, val)
            {
                if (strcmp(key, "name") != 0 && strcmp(key, "arguments") != 0)
                    why = "has a key other than 'name' and 'arguments'";
            }
        }
        if (why != NULL) {
            snprintf(err, errlen, "fake-upstream: calls[%zu] %s", i, why);
            json_decref(calls);
            return NULL;
        }
    }
    return calls;
}

/*
 * calls=@user: the script is the text of the request's first user message
 * (`script`, NULL when the API's request has none: `missing` says so).
 * Replaces the scenario's calls; false with err set when there is no script
 * or it does not parse.
 */
static bool scenario_script(struct scenario *s, const char *script, const char *missing, char *err, size_t errlen)
{
    json_decref(s->calls);
    s->calls = script != NULL ? calls_parse(script, strlen(script), err, errlen) : NULL;
    if (script == NULL)
        snprintf(err, errlen, "%s", missing);
    return s->calls != NULL;
}

static bool scenario_set(struct scenario *s, const char *k, const char *v, size_t vn, char *err, size_t errlen)
{
    uint64_t u;
    if (strcmp(k, "file") == 0) {
        if (vn == 0 || strlen(v) != vn || v[0] == '.' || memchr(v, '/', vn) != NULL) {
            snprintf(err, errlen, "fake-upstream: bad file name '%s'", v);
            return false;
        }
        s->file = (struct str){v, vn, true};
    } else if (strcmp(k, "text") == 0) {
        if (!utf8_valid(v, vn)) {
            snprintf(err, errlen, "fake-upstream: text is not valid UTF-8");
            return false;
        }
        s->text = (struct str){v, vn, true};
    } else if (strcmp(k, "content_first") == 0) {
        if (!utf8_valid(v, vn)) {
            snprintf(err, errlen, "fake-upstream: content_first is not valid UTF-8");
            return false;
        }
        s->content_first = (struct str){v, vn, true};
    } else if (strcmp(k, "calls") == 0 && vn == 5 && memcmp(v, "@user", 5) == 0) {
        json_decref(s->calls);
        s->calls = json_array(); /* replaced by the message's script once the request is read */
        s->calls_from_user = true;
    } else if (strcmp(k, "calls") == 0) {
        json_decref(s->calls);
        s->calls_from_user = false;
        s->calls = calls_parse(v, vn, err, errlen);
        if (s->calls == NULL)
            return false;
    } else if (strcmp(k, "body") == 0) {
        s->body = (struct str){v, vn, true};
    } else if (strcmp(k, "key") == 0) {
        s->key = (struct str){v, vn, true};
    } else if (strcmp(k, "header_bytes") == 0) {
        if (!parse_u64(v, vn, 16u << 20, &s->header_bytes) || s->header_bytes == 0) {
            snprintf(err, errlen, "fake-upstream: header_bytes must be 1 to 16777216");
            return false;
        }
    } else if (strcmp(k, "retry_after") == 0) {
        for (size_t i = 0; i < vn; i++) {
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
                snprintf(err, errlen, "fake-upstream: bad retry_after");
                return false;
            }
        }
        if (vn == 0) {
            snprintf(err, errlen, "fake-upstream: bad retry_after");
            return false;
        }
        s->retry_after = (struct str){v, vn, true};
    } else if (strcmp(k, "tools") == 0) {
        if (!parse_u64(v, vn, 1, &u))
            goto bad_number;
        s->tools = u == 1;
    } else if (strcmp(k, "hang") == 0) {
        if (strcmp(v, "head") != 0) {
            snprintf(err, errlen, "fake-upstream: hang must be 'head' (use hang_after=B to hang mid-body)");
            return false;
        }
        s->hang_head = true;
    } else if (strcmp(k, "chunk") == 0) {
        if (strcmp(v, "random") == 0) {
            s->seg = SEG_RANDOM;
        } else {
            if (!parse_u64(v, vn, CHUNK_MAX, &s->chunk) || s->chunk == 0)
                goto bad_number;
            s->seg = SEG_FIXED;
        }
    } else {
        const struct {
            const char *name;
            uint64_t max;
            uint64_t *dst;
        } nums[] = {
            {"gen_bytes", GEN_MAX, &s->gen_bytes},
            {"gen_words", GEN_MAX / 8, &s->gen_words},
            {"seed", UINT64_MAX / 2, &s->seed},
            {"pace_ms", MS_MAX, &s->pace_ms},
            {"delay_ms", MS_MAX, &s->delay_ms},
            {"status", 599, &u},
            {"fail_times", UINT32_MAX, &s->fail_times},
            {"hang_after", SIZE_MAX / 2, &u},
            {"drop_after", SIZE_MAX / 2, &u},
            {"rounds", ROUNDS_MAX, &s->rounds},
            {"reply_pace_ms", MS_MAX, &s->reply_pace_ms},
            {"dim", EMBED_DIM_MAX, &s->dim},
        };
        size_t i;
        for (i = 0; i < sizeof nums / sizeof nums[0]; i++)
            if (strcmp(k, nums[i].name) == 0)
                break;
        if (i == sizeof nums / sizeof nums[0]) {
            snprintf(err, errlen, "fake-upstream: unknown scenario key '%s'", k);
            return false;
        }
        if (!parse_u64(v, vn, nums[i].max, nums[i].dst))
            goto bad_number;
        if (strcmp(k, "gen_bytes") == 0) {
            s->has_gen = true;
        } else if (strcmp(k, "fail_times") == 0) {
            s->has_fail = true;
        } else if (strcmp(k, "rounds") == 0) {
            if (s->rounds == 0)
                goto bad_number;
            s->has_rounds = true;
        } else if (strcmp(k, "reply_pace_ms") == 0) {
            s->has_reply_pace = true;
        } else if (strcmp(k, "dim") == 0) {
            if (s->dim == 0)
                goto bad_number;
        } else if (strcmp(k, "status") == 0) {
            if (u < 200)
                goto bad_number;
            s->status = (int)u;
        } else if (strcmp(k, "hang_after") == 0 || strcmp(k, "drop_after") == 0) {
            if (s->end != END_NORMAL) {
                snprintf(err, errlen, "fake-upstream: hang_after and drop_after exclude each other");
                return false;
            }
            s->end = k[0] == 'h' ? END_HANG : END_DROP;
            s->end_after = u;
        }
    }
    return true;
bad_number:
    snprintf(err, errlen, "fake-upstream: bad value for '%s': '%s'", k, v);
    return false;
}

static void scenario_free(struct scenario *s)
{
    free(s->qbuf);
    s->qbuf = NULL;
    free(s->gen_text);
    s->gen_text = NULL;
    json_decref(s->calls);
    s->calls = NULL;
}

static char *gen_word_list(uint64_t n, uint64_t seed);

/* Parses the query after "fake?". On error, err holds a message and the scenario must still be freed. */
static bool scenario_parse(struct scenario *s, const char *query, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->seed = 1;
    s->rounds = 1;
    s->qbuf = xstrndup(query, strlen(query));
    char *p = s->qbuf;
    while (p != NULL) {
        char *amp = strchr(p, '&');
        if (amp != NULL)
            *amp = '\0';
        if (*p != '\0') {
            char *eq = strchr(p, '=');
            char *v = eq != NULL ? eq + 1 : p + strlen(p);
            if (eq != NULL)
                *eq = '\0';
            pct_decode(p);
            size_t vn = pct_decode(v);
            if (!scenario_set(s, p, v, vn, err, errlen))
                return false;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    int contents = (int)s->file.set + (int)s->text.set + (int)s->has_gen + (int)s->tools + (s->gen_words > 0);
    if (contents > 1) {
        snprintf(err, errlen, "fake-upstream: file, text, gen_bytes, gen_words and tools exclude each other");
        return false;
    }
    if (s->gen_words > 0) { /* from here on it is a text= scenario whose text was generated */
        s->gen_text = gen_word_list(s->gen_words, s->seed);
        s->text = (struct str){s->gen_text, strlen(s->gen_text), true};
    }
    if (s->calls != NULL && (s->file.set || s->has_gen || s->tools)) {
        snprintf(err, errlen, "fake-upstream: calls excludes file, gen_bytes and tools (text is its final answer)");
        return false;
    }
    if (s->calls == NULL && (s->content_first.set || s->has_rounds || s->has_reply_pace)) {
        snprintf(err, errlen, "fake-upstream: content_first, rounds and reply_pace_ms need calls");
        return false;
    }
    if (s->hang_head && s->end != END_NORMAL) {
        snprintf(err, errlen, "fake-upstream: hang=head excludes hang_after/drop_after");
        return false;
    }
    if (s->body.set && s->status == 0) {
        snprintf(err, errlen, "fake-upstream: body needs status");
        return false;
    }
    if (s->has_fail && s->status == 0 && !s->hang_head && s->end == END_NORMAL) {
        snprintf(err, errlen, "fake-upstream: fail_times needs status (or hang/hang_after/drop_after)");
        return false;
    }
    return true;
}

/* fail_times: decides whether this request gets the failure part (status, hang, drop) of the scenario. */
static void scenario_apply_fail_times(struct scenario *s, const char *model)
{
    if (!s->has_fail)
        return;
    const char *key = s->key.set ? s->key.p : model;
    size_t keylen = s->key.set ? s->key.n : strlen(model);
    struct failkey *f = failkey_get(key, keylen);
    bool failing = f->count < s->fail_times;
    f->count++;
    if (!failing) {
        s->status = 0;
        s->hang_head = false;
        s->end = END_NORMAL;
    }
}

static const char *error_type(int status)
{
    switch (status) {
    case 400:
    case 404:
    case 409:
    case 413:
    case 415:
    case 422:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 408:
        return "timeout";
    case 429:
        return "rate_limit_exceeded";
    default:
        return status >= 500 ? "server_error" : "api_error";
    }
}

/* Fills the transport part of a plan (timing, write sizes, hang/drop) from the scenario. */
static void plan_transport(struct plan *p, const struct scenario *s)
{
    if (s->seg != SEG_DEFAULT)
        p->seg = s->seg;
    p->chunk = (size_t)s->chunk;
    p->seed = s->seed;
    p->pace_ms = s->pace_ms;
    p->delay_ms = s->delay_ms;
    p->hang_head = s->hang_head;
    p->end = s->end;
    p->end_after = s->end_after;
    p->header_bytes = s->header_bytes;
}

/* Starts sending the plan the way the scenario says (timing, write sizes, hang or drop, a failure's Retry-After). The
 * scenario may be freed once this returns. */
static void plan_send(struct conn *c, struct plan *p, const struct scenario *s, bool failing)
{
    plan_transport(p, s);
    if (failing && s->retry_after.set)
        p->retry_after = s->retry_after.p;
    start_response(c, p);
}

/* The status=CODE failure response. Returns false if there is none. */
static bool plan_status(struct plan *p, const struct scenario *s)
{
    if (s->status == 0)
        return false;
    char *body;
    size_t len;
    if (s->body.set) {
        body = xstrndup(s->body.p, s->body.n);
        len = s->body.n;
    } else {
        char msg[64];
        snprintf(msg, sizeof msg, "fake upstream error %d", s->status);
        body = openai_error_body(msg, error_type(s->status), NULL, &len);
    }
    plan_init(p, s->status, "application/json", body, len);
    return true;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* chat completions */

struct gen {
    char id[48];
    json_int_t created;
    const char *model;
    bool include_usage;
    uint64_t prompt_tokens;
    struct sbuf out;
    size_t *ev;
    size_t nev, evcap;
};

static void gen_event_end(struct gen *g)
{
    if (g->nev == g->evcap) {
        g->evcap = g->evcap ? g->evcap * 2 : 16;
        g->ev = xrealloc(g->ev, g->evcap * sizeof *g->ev);
    }
    g->ev[g->nev++] = g->out.len;
}

/* A generated stream as the plan: one write per event unless the scenario says otherwise. Takes g's buffers. */
static void plan_events(struct plan *p, struct gen *g)
{
    size_t len;
    char *body = sb_take(&g->out, &len);
    plan_init(p, 200, "text/event-stream", body, len);
    p->stream = true;
    p->seg = SEG_EVENTS;
    p->ev_ends = g->ev;
    p->nev = g->nev;
}

/* Appends "data: {json}\n\n" and takes the reference. */
static void gen_event(struct gen *g, json_t *j)
{
    sb_str(&g->out, "data: ");
    sb_json(&g->out, j, JSON_COMPACT);
    sb_str(&g->out, "\n\n");
    gen_event_end(g);
    json_decref(j);
}

/* Appends "event: TYPE\ndata: {json}\n\n" (the data's own "type" is TYPE) and takes the reference: the
 * framing of Anthropic's and the Responses API's streams. */
static void named_event(struct gen *g, json_t *j)
{
    sb_fmt(&g->out, "event: %s\ndata: ", json_string_value(json_object_get(j, "type")));
    sb_json(&g->out, j, JSON_COMPACT);
    sb_str(&g->out, "\n\n");
    gen_event_end(g);
    json_decref(j);
}

static json_t *gen_chunk(const struct gen *g, json_t *delta, const char *finish)
{
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    json_object_set_new(choice, "delta", delta);
    json_object_set_new(choice, "logprobs", json_null());
    json_object_set_new(choice, "finish_reason", finish != NULL ? json_string(finish) : json_null());
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(g->id));
    json_object_set_new(j, "object", json_string("chat.completion.chunk"));
    json_object_set_new(j, "created", json_integer(g->created));
    json_object_set_new(j, "model", json_string(g->model));
    json_object_set_new(j, "system_fingerprint", json_string("fp_fake"));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(j, "choices", choices);
    if (g->include_usage)
        json_object_set_new(j, "usage", json_null());
    return j;
}

static json_t *gen_usage(const struct gen *g, uint64_t completion_tokens)
{
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)g->prompt_tokens, "completion_tokens",
                     (json_int_t)completion_tokens, "total_tokens", (json_int_t)(g->prompt_tokens + completion_tokens));
}

static void gen_finish(struct gen *g, const char *finish, uint64_t completion_tokens)
{
    gen_event(g, gen_chunk(g, json_object(), finish));
    if (g->include_usage) {
        json_t *j = gen_chunk(g, json_object(), NULL);
        json_object_set_new(j, "choices", json_array());
        json_object_set_new(j, "usage", gen_usage(g, completion_tokens));
        gen_event(g, j);
    }
    sb_str(&g->out, "data: [DONE]\n\n");
    gen_event_end(g);
}

/* Appends s as a JSON string literal (with quotes); the input is valid UTF-8, which is copied as is. */
static void sb_json_string(struct sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_reserve(b, n + 2);
    b->p[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t el = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            el = 6;
            break;
        }
        sb_add(b, esc, el);
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

/* Where the piece of text that starts at i ends: `piece` bytes on when piece > 0, else after the leading whitespace and
 * the word that follow, so that the pieces join back to the text and each is a word as a model streams it. */
static size_t piece_end(const char *text, size_t n, size_t i, size_t piece)
{
    if (piece > 0)
        return n - i > piece ? i + piece : n;
    while (i < n && is_ws(text[i]))
        i++;
    while (i < n && !is_ws(text[i]))
        i++;
    return i;
}

/* One content chunk per word: each piece is leading whitespace + a word, so the pieces concatenate to text.
 * With piece > 0, fixed-size pieces instead. The content chunks are spliced into a template dumped once. */
static void gen_content_pieces(struct gen *g, const char *text, size_t n, size_t piece)
{
    size_t tlen;
    json_t *tj = gen_chunk(g, json_pack("{s:s}", "content", "\x01"), NULL);
    char *tpl = json_to_str(tj, JSON_COMPACT, &tlen);
    json_decref(tj);
    static const char marker[] = "{\"content\":\"\\u0001\"}"; /* unescaped quotes: only the delta can match */
    char *mark = strstr(tpl, marker);
    if (mark == NULL)
        die("content template");
    size_t pre = (size_t)(mark - tpl) + strlen("{\"content\":"), post_off = pre + strlen("\"\\u0001\"");
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        i = piece_end(text, n, i, piece);
        sb_str(&g->out, "data: ");
        sb_add(&g->out, tpl, pre);
        sb_json_string(&g->out, text + start, i - start);
        sb_add(&g->out, tpl + post_off, tlen - post_off);
        sb_str(&g->out, "\n\n");
        gen_event_end(g);
    }
    free(tpl);
}

static void gen_content_stream(struct gen *g, const char *text, size_t n, size_t piece)
{
    gen_event(g, gen_chunk(g, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
    gen_content_pieces(g, text, n, piece);
    gen_finish(g, "stop", count_words(text, n));
}

static const char *const tool_fragments[] = {"{\"city\"", ":\"Par", "is\"}"};

static void gen_tools_stream(struct gen *g)
{
    gen_event(g, gen_chunk(g, json_pack("{s:s, s:n}", "role", "assistant", "content"), NULL));
    gen_event(g, gen_chunk(g,
                           json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", 0, "id", "call_fake_1", "type",
                                     "function", "function", "name", "lookup_weather", "arguments", ""),
                           NULL));
    for (size_t i = 0; i < sizeof tool_fragments / sizeof tool_fragments[0]; i++)
        gen_event(
            g, gen_chunk(g, json_pack("{s:[{s:i, s:{s:s}}]}", "tool_calls", "index", 0, "function", "arguments", tool_fragments[i]),
                         NULL));
    gen_finish(g, "tool_calls", 8);
}

/* calls=: the text of a call's arguments (an object dumped compactly, a string as is, absent: {}). */
static char *call_arguments(const json_t *call, size_t *len)
{
    json_t *args = json_object_get(call, "arguments");
    if (args == NULL) {
        *len = 2;
        return xstrndup("{}", 2);
    }
    if (json_is_string(args)) {
        *len = json_string_length(args);
        return xstrndup(json_string_value(args), *len);
    }
    return json_to_str(args, JSON_COMPACT, len);
}

/* calls=: where the fragment of a call's arguments that starts at off ends: about ARG_FRAGMENT_BYTES on, but never inside a
 * UTF-8 sequence, so that every fragment is a JSON string of its own. */
static size_t fragment_end(const char *args, size_t alen, size_t off)
{
    size_t end = alen - off > ARG_FRAGMENT_BYTES ? off + ARG_FRAGMENT_BYTES : alen;
    while (end < alen && ((unsigned char)args[end] & 0xC0) == 0x80)
        end++;
    return end;
}

static void call_id(char *buf, size_t size, size_t index, uint64_t seq)
{
    snprintf(buf, size, "call_fake_%zu_%" PRIu64, index, seq);
}

static json_t *xpacked(json_t *j)
{
    if (j == NULL)
        die("json_pack failed");
    return j;
}

/* calls=: the model says content_first (if any), then calls every tool of the list in parallel (index 0, 1, ...), each
 * call's arguments streamed in fragments of about ARG_FRAGMENT_BYTES bytes cut anywhere but inside a UTF-8 sequence. */
static void gen_calls_stream(struct gen *g, const json_t *calls, uint64_t seq, const struct str *content_first)
{
    uint64_t tokens = 0;
    if (content_first->set) {
        gen_event(g, gen_chunk(g, xpacked(json_pack("{s:s, s:s}", "role", "assistant", "content", "")), NULL));
        gen_content_pieces(g, content_first->p, content_first->n, 0);
        tokens += count_words(content_first->p, content_first->n);
    } else {
        gen_event(g, gen_chunk(g, xpacked(json_pack("{s:s, s:n}", "role", "assistant", "content")), NULL));
    }
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        char id[64];
        call_id(id, sizeof id, i, seq);
        json_t *name = json_object_get(call, "name");
        gen_event(g, gen_chunk(g,
                               xpacked(json_pack("{s:[{s:I, s:s, s:s, s:{s:s%, s:s}}]}", "tool_calls", "index", (json_int_t)i, "id",
                                                 id, "type", "function", "function", "name", json_string_value(name),
                                                 json_string_length(name), "arguments", "")),
                               NULL));
        size_t alen;
        char *args = call_arguments(call, &alen);
        for (size_t off = 0, end; off < alen; off = end) {
            end = fragment_end(args, alen, off);
            gen_event(g, gen_chunk(g,
                                   xpacked(json_pack("{s:[{s:I, s:{s:s%}}]}", "tool_calls", "index", (json_int_t)i, "function",
                                                     "arguments", args + off, end - off)),
                                   NULL));
        }
        tokens += 1 + alen / 4;
        free(args);
    }
    gen_finish(g, "tool_calls", tokens);
}

/* A chat.completion with one choice; takes the reference to msg. */
static char *gen_completion_json(const struct gen *g, json_t *msg, const char *finish, uint64_t completion_tokens, size_t *len)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[{s:i, s:o, s:n, s:s}], s:o}", "id", g->id, "object", "chat.completion",
                          "created", g->created, "model", g->model, "system_fingerprint", "fp_fake", "choices", "index", 0,
                          "message", msg, "logprobs", "finish_reason", finish, "usage", gen_usage(g, completion_tokens));
    if (j == NULL)
        die("json_pack failed");
    char *s = json_to_str(j, JSON_COMPACT, len);
    json_decref(j);
    return s;
}

/* calls=, stream false: one chat.completion whose message has content_first (or null) and all the tool_calls. */
static char *gen_calls_completion(const struct gen *g, const json_t *calls, uint64_t seq, const struct str *content_first,
                                  size_t *len)
{
    uint64_t tokens = content_first->set ? count_words(content_first->p, content_first->n) : 0;
    json_t *tool_calls = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        char id[64];
        call_id(id, sizeof id, i, seq);
        size_t alen;
        char *args = call_arguments(call, &alen);
        json_t *name = json_object_get(call, "name");
        json_array_append_new(tool_calls,
                              xpacked(json_pack("{s:s, s:s, s:{s:s%, s:s%}}", "id", id, "type", "function", "function", "name",
                                                json_string_value(name), json_string_length(name), "arguments", args, alen)));
        tokens += 1 + alen / 4;
        free(args);
    }
    json_t *content = content_first->set ? json_stringn(content_first->p, content_first->n) : json_null();
    json_t *msg =
        xpacked(json_pack("{s:s, s:o, s:o, s:n}", "role", "assistant", "content", content, "tool_calls", tool_calls, "refusal"));
    return gen_completion_json(g, msg, "tool_calls", tokens, len);
}

static char *gen_completion(const struct gen *g, const char *text, size_t n, bool tools, size_t *len)
{
    json_t *msg;
    uint64_t completion_tokens;
    if (tools) {
        msg = json_pack("{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}], s:n}", "role", "assistant", "content", "tool_calls", "id",
                        "call_fake_1", "type", "function", "function", "name", "lookup_weather", "arguments",
                        "{\"city\":\"Paris\"}", "refusal");
        completion_tokens = 8;
    } else {
        msg = json_pack("{s:s, s:s%, s:n}", "role", "assistant", "content", text, n, "refusal");
        completion_tokens = count_words(text, n);
    }
    return gen_completion_json(g, msg, tools ? "tool_calls" : "stop", completion_tokens, len);
}

/* gen_bytes: N bytes of lowercase words separated by single spaces, deterministic for a seed. */
static char *gen_words(uint64_t n, uint64_t seed)
{
    static const char *const words[] = {"the",   "quick", "brown", "fox",    "jumps", "over",  "lazy",   "dog",
                                        "voice", "agent", "relay", "stream", "token", "model", "switch", "board",
                                        "hello", "world", "calm",  "river",  "light", "sound", "paper",  "green"};
    char *s = xmalloc((size_t)n + 1);
    size_t i = 0;
    uint64_t rng = seed;
    while (i < n) {
        const char *w = words[rng_next(&rng) % (sizeof words / sizeof words[0])];
        size_t k = strlen(w);
        if (k > n - i)
            k = (size_t)(n - i);
        memcpy(s + i, w, k);
        i += k;
        if (i < n)
            s[i++] = ' ';
    }
    s[n] = '\0';
    return s;
}

/* gen_words=N: N short words of a spoken answer separated by single spaces, deterministic for a seed. */
static char *gen_word_list(uint64_t n, uint64_t seed)
{
    static const char *const words[] = {"sure", "your", "table", "for", "four", "is", "booked", "at", "seven", "tonight"};
    struct sbuf out = {0};
    uint64_t rng = seed;
    for (uint64_t i = 0; i < n; i++)
        sb_fmt(&out, "%s%s", i ? " " : "", words[rng_next(&rng) % (sizeof words / sizeof words[0])]);
    size_t len;
    char *text = sb_take(&out, &len);
    return text != NULL ? text : xstrndup("", 0);
}

/* The words of a content: a string, or the text parts (and tool_result contents) of a part array. */
static uint64_t content_words(const json_t *content)
{
    if (json_is_string(content))
        return count_words(json_string_value(content), json_string_length(content));
    uint64_t words = 0;
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        json_t *t = json_object_get(block, "text");
        if (json_is_string(t))
            words += count_words(json_string_value(t), json_string_length(t));
        else if (json_object_get(block, "content") != NULL)
            words += content_words(json_object_get(block, "content"));
    }
    return words;
}

/* The words of the `member` content of every item (the messages' content, the Responses API's input items' output). */
static uint64_t items_words(const json_t *items, const char *member)
{
    uint64_t words = 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) words += content_words(json_object_get(item, member));
    return words;
}

static bool is_tool_message(const json_t *m)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    return role != NULL && strcmp(role, "tool") == 0;
}

/* The text of a tool message's content: a string as is, the text parts of an array joined, anything else as JSON. */
static void sb_tool_content(struct sbuf *b, const json_t *content)
{
    if (json_is_string(content)) {
        sb_add(b, json_string_value(content), json_string_length(content));
    } else if (json_is_array(content)) {
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            json_t *t = json_object_get(part, "text");
            if (json_is_string(t))
                sb_add(b, json_string_value(t), json_string_length(t));
        }
    } else if (content != NULL && !json_is_null(content)) {
        sb_json(b, content, JSON_COMPACT);
    }
}

/*
 * calls=, for an API that gives every tool result an item of its own (Chat Completions' role:"tool" messages, the
 * Responses API's function_call_output input items): whether this request gets the tool calls. If not (the results came
 * back after the last round), and results is not NULL, it gets "RESULTS " and the `member` (content, output) of each
 * trailing result joined with " | ".
 */
static bool calls_round(const json_t *items, bool (*is_result)(const json_t *), const char *member, const struct scenario *s,
                        struct sbuf *results)
{
    size_t n = json_array_size(items), first = n;
    uint64_t nresults = 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) nresults += is_result(item);
    while (first > 0 && is_result(json_array_get(items, first - 1)))
        first--;
    if (first == n || nresults < s->rounds * json_array_size(s->calls))
        return true;
    if (results != NULL) {
        sb_str(results, "RESULTS ");
        for (i = first; i < n; i++) {
            if (i > first)
                sb_str(results, " | ");
            sb_tool_content(results, json_object_get(json_array_get(items, i), member));
        }
    }
    return false;
}

static bool read_fixture(const char *name, char **data, size_t *len)
{
    char path[PATH_MAX];
    if (g_fixtures == NULL)
        return false;
    int k = snprintf(path, sizeof path, "%s/%s", g_fixtures, name);
    if (k < 0 || (size_t)k >= sizeof path)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return false;
    }
    struct sbuf b = {0};
    sb_reserve(&b, (size_t)st.st_size + 1);
    for (;;) {
        sb_reserve(&b, 65536);
        ssize_t n = read(fd, b.p + b.len, b.cap - b.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            sb_free(&b);
            return false;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    close(fd);
    *data = sb_take(&b, len);
    return true;
}

/* calls=@user: the text of the first item with role "user" (Chat Completions' and Anthropic's messages, the Responses
 * API's input items): its content when that is a string, else its first part's text; NULL when there is none. */
static const char *first_user_text(const json_t *items)
{
    size_t i;
    json_t *m;
    json_array_foreach(items, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role == NULL || strcmp(role, "user") != 0)
            continue;
        json_t *content = json_object_get(m, "content");
        if (json_is_array(content))
            content = json_object_get(json_array_get(content, 0), "text");
        return json_string_value(content);
    }
    return NULL;
}

/*
 * What a generated text answer says: text=, gen_bytes' words, the RESULTS line a finished calls= script left in results,
 * else the default. *owned is the storage to free afterwards (NULL when there is none).
 */
static const char *answer_text(const struct scenario *s, struct sbuf *results, char **owned, size_t *len)
{
    static const char fallback[] = "Hello from the fake upstream.";
    *owned = NULL;
    if (s->text.set) {
        *len = s->text.n;
        return s->text.p;
    }
    if (s->has_gen) {
        *owned = gen_words(s->gen_bytes, s->seed);
        *len = (size_t)s->gen_bytes;
        return *owned;
    }
    if (results->len > 0) {
        *owned = sb_take(results, len);
        return *owned;
    }
    *len = sizeof fallback - 1;
    return fallback;
}

static void handle_chat(struct conn *c)
{
    struct request *q = &c->req;
    json_error_t jerr;
    json_t *req = json_loadb(q->body.p ? q->body.p : "", q->body.len, 0, &jerr);
    if (!json_is_object(req)) {
        json_decref(req);
        send_error(c, 400,
                   "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                   "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                   "invalid_request_error", NULL);
        return;
    }
    const char *model = json_string_value(json_object_get(req, "model"));
    if (model == NULL) {
        json_decref(req);
        send_error(c, 400, "you must provide a model parameter", "invalid_request_error", NULL);
        return;
    }
    struct scenario s;
    char err[256];
    if (strncmp(model, "fake?", 5) == 0) {
        bool parsed = scenario_parse(&s, model + 5, err, sizeof err);
        if (parsed && s.dim != 0) {
            snprintf(err, sizeof err, "fake-upstream: dim applies to embeddings only");
            parsed = false;
        }
        if (parsed && s.calls_from_user)
            parsed = scenario_script(&s, first_user_text(json_object_get(req, "messages")),
                                     "fake-upstream: calls=@user needs a user message with text", err, sizeof err);
        if (!parsed) {
            scenario_free(&s);
            json_decref(req);
            send_error(c, 400, err, "invalid_request_error", NULL);
            return;
        }
    } else {
        memset(&s, 0, sizeof s);
        s.seed = 1;
    }
    scenario_apply_fail_times(&s, model);

    struct plan p;
    bool failing = plan_status(&p, &s);
    if (failing) {
        /* the status=CODE response */
    } else if (s.file.set) {
        char *data;
        size_t len;
        if (!read_fixture(s.file.p, &data, &len)) {
            char msg[300];
            snprintf(msg, sizeof msg, "fake-upstream: no fixture '%s'", s.file.p);
            scenario_free(&s);
            json_decref(req);
            send_error(c, 404, msg, "invalid_request_error", "fixture_not_found");
            return;
        }
        plan_init(&p, 200, "text/event-stream", data, len);
        p.stream = true;
    } else {
        struct gen g;
        memset(&g, 0, sizeof g);
        snprintf(g.id, sizeof g.id, "chatcmpl-fake%06" PRIu64, c->seq);
        g.created = (json_int_t)time(NULL);
        g.model = model;
        g.include_usage = json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage"));
        g.prompt_tokens = items_words(json_object_get(req, "messages"), "content");
        bool stream = json_is_true(json_object_get(req, "stream"));
        struct sbuf results = {0};
        bool calls = s.calls != NULL &&
                     calls_round(json_object_get(req, "messages"), is_tool_message, "content", &s, s.text.set ? NULL : &results);
        if (s.calls != NULL && !calls && s.has_reply_pace)
            s.pace_ms = s.reply_pace_ms;
        size_t tlen;
        char *genbuf;
        const char *text = answer_text(&s, &results, &genbuf, &tlen);
        if (stream) {
            if (s.tools)
                gen_tools_stream(&g);
            else if (calls)
                gen_calls_stream(&g, s.calls, c->seq, &s.content_first);
            else
                gen_content_stream(&g, text, tlen, s.has_gen ? GEN_EVENT_BYTES : 0);
            plan_events(&p, &g);
        } else {
            size_t len;
            char *body = calls ? gen_calls_completion(&g, s.calls, c->seq, &s.content_first, &len)
                               : gen_completion(&g, text, tlen, s.tools, &len);
            plan_init(&p, 200, "application/json", body, len);
        }
        free(genbuf);
    }
    plan_send(c, &p, &s, failing);
    scenario_free(&s);
    json_decref(req);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Anthropic Messages: POST …/messages, the same scenarios said as Anthropic streams them */

/* Anthropic's error types by status, as its API reference lists them. */
static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 504:
        return "timeout_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static char *anthropic_error_body(const char *msg, const char *type, size_t *len)
{
    json_t *j = xpacked(json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", msg));
    char *s = json_to_str(j, JSON_COMPACT, len);
    json_decref(j);
    return s;
}

static void anthropic_send_error(struct conn *c, int status, const char *msg)
{
    struct plan p;
    size_t len;
    char *body = anthropic_error_body(msg, anthropic_error_type(status), &len);
    plan_init(&p, status, "application/json", body, len);
    start_response(c, &p);
}

static uint64_t anthropic_prompt_words(const json_t *req)
{
    return content_words(json_object_get(req, "system")) + items_words(json_object_get(req, "messages"), "content");
}

static void anthropic_message_start(struct gen *g)
{
    char id[48];
    snprintf(id, sizeof id, "msg_fake%s", g->id + strlen("chatcmpl-fake"));
    named_event(g,
                xpacked(json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:I, s:i, s:i, s:i}}}", "type", "message_start",
                                  "message", "id", id, "type", "message", "role", "assistant", "model", g->model, "content",
                                  "stop_reason", "stop_sequence", "usage", "input_tokens", (json_int_t)g->prompt_tokens,
                                  "cache_creation_input_tokens", 0, "cache_read_input_tokens", 0, "output_tokens", 1)));
}

/* A text block at `index`: its start, one text_delta per word (leading whitespace + word), its stop. */
static void anthropic_text_block(struct gen *g, size_t index, const char *text, size_t n, size_t piece)
{
    named_event(g, xpacked(json_pack("{s:s, s:I, s:{s:s, s:s}}", "type", "content_block_start", "index", (json_int_t)index,
                                     "content_block", "type", "text", "text", "")));
    named_event(g, xpacked(json_pack("{s:s}", "type", "ping")));
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        i = piece_end(text, n, i, piece);
        named_event(g, xpacked(json_pack("{s:s, s:I, s:{s:s, s:s%}}", "type", "content_block_delta", "index", (json_int_t)index,
                                         "delta", "type", "text_delta", "text", text + start, i - start)));
    }
    named_event(g, xpacked(json_pack("{s:s, s:I}", "type", "content_block_stop", "index", (json_int_t)index)));
}

static void anthropic_finish(struct gen *g, const char *stop_reason, uint64_t output_tokens)
{
    named_event(g, xpacked(json_pack("{s:s, s:{s:s, s:n}, s:{s:I}}", "type", "message_delta", "delta", "stop_reason", stop_reason,
                                     "stop_sequence", "usage", "output_tokens", (json_int_t)output_tokens)));
    named_event(g, xpacked(json_pack("{s:s}", "type", "message_stop")));
}

/* calls=: content_first as a text block, then a tool_use block per call whose input streams as input_json_delta. */
static void anthropic_calls_stream(struct gen *g, const json_t *calls, uint64_t seq, const struct str *content_first)
{
    uint64_t tokens = 0;
    size_t block = 0;
    anthropic_message_start(g);
    if (content_first->set) {
        anthropic_text_block(g, block++, content_first->p, content_first->n, 0);
        tokens += count_words(content_first->p, content_first->n);
    }
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        char id[64];
        snprintf(id, sizeof id, "toolu_fake_%zu_%" PRIu64, i, seq);
        json_t *name = json_object_get(call, "name");
        named_event(g, xpacked(json_pack("{s:s, s:I, s:{s:s, s:s, s:s%, s:{}}}", "type", "content_block_start", "index",
                                         (json_int_t)block, "content_block", "type", "tool_use", "id", id, "name",
                                         json_string_value(name), json_string_length(name), "input")));
        size_t alen;
        char *args = call_arguments(call, &alen);
        for (size_t off = 0, end; off < alen; off = end) {
            end = fragment_end(args, alen, off);
            named_event(g, xpacked(json_pack("{s:s, s:I, s:{s:s, s:s%}}", "type", "content_block_delta", "index", (json_int_t)block,
                                             "delta", "type", "input_json_delta", "partial_json", args + off, end - off)));
        }
        named_event(g, xpacked(json_pack("{s:s, s:I}", "type", "content_block_stop", "index", (json_int_t)block)));
        block++;
        tokens += 1 + alen / 4;
        free(args);
    }
    anthropic_finish(g, "tool_use", tokens);
}

/* The tool_result blocks of a message, 0 when it has none. */
static size_t anthropic_results(const json_t *m)
{
    size_t n = 0, i;
    json_t *block;
    json_array_foreach(json_object_get(m, "content"), i, block)
    {
        const char *type = json_string_value(json_object_get(block, "type"));
        n += type != NULL && strcmp(type, "tool_result") == 0;
    }
    return n;
}

/* calls= on /messages: as calls_round, but with tool_result blocks for tool messages (the last message's are the results). */
static bool anthropic_calls_round(const json_t *req, const struct scenario *s, struct sbuf *results)
{
    json_t *msgs = json_object_get(req, "messages");
    size_t n = json_array_size(msgs), i;
    uint64_t nresults = 0;
    json_t *m;
    json_array_foreach(msgs, i, m) nresults += anthropic_results(m);
    json_t *last = json_array_get(msgs, n - 1);
    if (n == 0 || anthropic_results(last) == 0 || nresults < s->rounds * json_array_size(s->calls))
        return true;
    if (results != NULL) {
        sb_str(results, "RESULTS ");
        size_t k = 0;
        json_t *block;
        json_array_foreach(json_object_get(last, "content"), i, block)
        {
            const char *type = json_string_value(json_object_get(block, "type"));
            if (type == NULL || strcmp(type, "tool_result") != 0)
                continue;
            if (k++ > 0)
                sb_str(results, " | ");
            sb_tool_content(results, json_object_get(block, "content"));
        }
    }
    return false;
}

static void handle_messages(struct conn *c)
{
    struct request *q = &c->req;
    json_t *req = json_loadb(q->body.p ? q->body.p : "", q->body.len, 0, NULL);
    const char *model = json_string_value(json_object_get(req, "model"));
    if (!json_is_object(req) || model == NULL) {
        json_decref(req);
        anthropic_send_error(c, 400, json_is_object(req) ? "model: Field required" : "There was an error parsing the body");
        return;
    }
    struct scenario s;
    char err[256];
    if (strncmp(model, "fake?", 5) == 0) {
        bool parsed = scenario_parse(&s, model + 5, err, sizeof err);
        if (parsed && (s.dim != 0 || s.tools)) {
            snprintf(err, sizeof err, "fake-upstream: %s does not apply to /messages", s.dim != 0 ? "dim" : "tools");
            parsed = false;
        }
        if (parsed && s.calls_from_user)
            parsed = scenario_script(&s, first_user_text(json_object_get(req, "messages")),
                                     "fake-upstream: calls=@user needs a user message with text", err, sizeof err);
        if (!parsed) {
            scenario_free(&s);
            json_decref(req);
            anthropic_send_error(c, 400, err);
            return;
        }
    } else {
        memset(&s, 0, sizeof s);
        s.seed = 1;
    }
    scenario_apply_fail_times(&s, model);

    struct plan p;
    bool failing = s.status != 0;
    if (failing) {
        char msg[64];
        size_t len;
        snprintf(msg, sizeof msg, "fake upstream error %d", s.status);
        char *body = s.body.set ? xstrndup(s.body.p, s.body.n) : anthropic_error_body(msg, anthropic_error_type(s.status), &len);
        plan_init(&p, s.status, "application/json", body, s.body.set ? s.body.n : len);
    } else if (s.file.set) {
        char *data;
        size_t len;
        if (!read_fixture(s.file.p, &data, &len)) {
            char msg[300];
            snprintf(msg, sizeof msg, "fake-upstream: no fixture '%s'", s.file.p);
            scenario_free(&s);
            json_decref(req);
            anthropic_send_error(c, 404, msg);
            return;
        }
        plan_init(&p, 200, "text/event-stream", data, len);
        p.stream = true;
    } else {
        struct gen g;
        memset(&g, 0, sizeof g);
        snprintf(g.id, sizeof g.id, "chatcmpl-fake%06" PRIu64, c->seq);
        g.model = model;
        g.prompt_tokens = anthropic_prompt_words(req);
        struct sbuf results = {0};
        bool calls = s.calls != NULL && anthropic_calls_round(req, &s, s.text.set ? NULL : &results);
        if (s.calls != NULL && !calls && s.has_reply_pace)
            s.pace_ms = s.reply_pace_ms;
        size_t tlen;
        char *genbuf;
        const char *text = answer_text(&s, &results, &genbuf, &tlen);
        if (calls) {
            anthropic_calls_stream(&g, s.calls, c->seq, &s.content_first);
        } else {
            anthropic_message_start(&g);
            anthropic_text_block(&g, 0, text, tlen, s.has_gen ? GEN_EVENT_BYTES : 0);
            anthropic_finish(&g, "end_turn", count_words(text, tlen));
        }
        sb_free(&results);
        free(genbuf);
        plan_events(&p, &g);
    }
    plan_send(c, &p, &s, failing);
    scenario_free(&s);
    json_decref(req);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* embeddings */

static uint64_t hash_word(const char *w, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a mixer for well-spread low bits */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)w[i];
        h *= 0x100000001b3ULL;
    }
    return rng_next(&h);
}

/*
 * Bag of hashed words (ASCII letters/digits lowercased; bytes >= 0x80 are word characters), L2-normalised, into
 * out[0..dim). dim 0: the default 64-dim vector, each word adding +-1 to one component (a text without words gives
 * [1,0,0,...]). dim N: each word adds a pattern of N values in [-1, 1) drawn from its hash (a random projection), so
 * vectors are dense, as a real model's are (a text without words gives [1,0,...]). Returns the word count.
 */
static uint64_t embed_text(const char *s, size_t n, float *out, size_t dim)
{
    size_t len = dim != 0 ? dim : EMBED_DIM;
    double *v = calloc(len, sizeof(double));
    if (v == NULL)
        die("out of memory");
    char word[256];
    uint64_t words = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && !isalnum((unsigned char)s[i]) && (unsigned char)s[i] < 0x80)
            i++;
        size_t wl = 0;
        uint64_t h = 0;
        bool any = false;
        while (i < n && (isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)) {
            if (wl < sizeof word)
                word[wl++] = (char)tolower((unsigned char)s[i]);
            any = true;
            i++;
        }
        if (!any)
            continue;
        h = hash_word(word, wl);
        if (dim == 0) {
            v[h % EMBED_DIM] += (h >> 63) ? -1.0 : 1.0;
        } else {
            uint64_t r = h;
            for (size_t k = 0; k < dim; k++)
                v[k] += (double)(rng_next(&r) >> 11) / 4503599627370496.0 - 1.0; /* uniform in [-1, 1) */
        }
        words++;
    }
    double norm = 0;
    for (size_t k = 0; k < len; k++)
        norm += v[k] * v[k];
    norm = sqrt(norm);
    if (norm == 0) {
        v[0] = 1.0;
        norm = 1.0;
    }
    for (size_t k = 0; k < len; k++)
        out[k] = (float)(v[k] / norm);
    free(v);
    return words;
}

static json_t *embedding_base64(const float *vec, size_t dim)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nraw = dim * 4;
    unsigned char *raw = xmalloc(nraw);
    for (size_t k = 0; k < dim; k++) {
        uint32_t u;
        memcpy(&u, &vec[k], 4);
        raw[k * 4] = (unsigned char)u;
        raw[k * 4 + 1] = (unsigned char)(u >> 8);
        raw[k * 4 + 2] = (unsigned char)(u >> 16);
        raw[k * 4 + 3] = (unsigned char)(u >> 24);
    }
    char *out = xmalloc((nraw + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < nraw; i += 3) {
        uint32_t x = (uint32_t)raw[i] << 16;
        if (i + 1 < nraw)
            x |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < nraw)
            x |= raw[i + 2];
        out[o++] = tbl[(x >> 18) & 63];
        out[o++] = tbl[(x >> 12) & 63];
        out[o++] = i + 1 < nraw ? tbl[(x >> 6) & 63] : '=';
        out[o++] = i + 2 < nraw ? tbl[x & 63] : '=';
    }
    json_t *j = json_stringn(out, o);
    free(raw);
    free(out);
    return j;
}

static void handle_embeddings(struct conn *c)
{
    struct request *q = &c->req;
    json_error_t jerr;
    json_t *req = json_loadb(q->body.p ? q->body.p : "", q->body.len, 0, &jerr);
    json_t *input = json_object_get(req, "input");
    bool ok = json_is_string(input) || (json_is_array(input) && json_array_size(input) > 0);
    size_t i;
    json_t *item;
    json_array_foreach(input, i, item) ok = ok && json_is_string(item);
    if (!json_is_object(req) || !ok) {
        json_decref(req);
        send_error(c, 400, "'input' must be a string or a non-empty array of strings", "invalid_request_error", NULL);
        return;
    }
    const char *model = json_string_value(json_object_get(req, "model"));
    if (model == NULL)
        model = "text-embedding-fake";
    struct scenario s;
    memset(&s, 0, sizeof s);
    char err[256];
    if (strncmp(model, "fake?", 5) == 0) {
        bool parsed = scenario_parse(&s, model + 5, err, sizeof err);
        if (parsed && (s.file.set || s.text.set || s.has_gen || s.tools || s.calls != NULL)) {
            snprintf(err, sizeof err, "fake-upstream: file/text/gen_bytes/tools/calls do not apply to embeddings");
            parsed = false;
        }
        if (!parsed) {
            scenario_free(&s);
            json_decref(req);
            send_error(c, 400, err, "invalid_request_error", NULL);
            return;
        }
    }
    scenario_apply_fail_times(&s, model);
    const char *fmt = json_string_value(json_object_get(req, "encoding_format"));
    bool b64 = fmt != NULL && strcmp(fmt, "base64") == 0;

    struct plan p;
    bool failing = plan_status(&p, &s);
    if (!failing) {
        json_t *data = json_array();
        uint64_t tokens = 0;
        size_t n = json_is_string(input) ? 1 : json_array_size(input);
        for (i = 0; i < n; i++) {
            json_t *str = json_is_string(input) ? input : json_array_get(input, i);
            size_t dim = s.dim != 0 ? (size_t)s.dim : EMBED_DIM;
            float *vec = xmalloc(dim * sizeof(float));
            tokens += embed_text(json_string_value(str), json_string_length(str), vec, (size_t)s.dim);
            json_t *emb;
            if (b64) {
                emb = embedding_base64(vec, dim);
            } else {
                emb = json_array();
                for (size_t k = 0; k < dim; k++)
                    json_array_append_new(emb, json_real(vec[k]));
            }
            free(vec);
            json_array_append_new(data,
                                  json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i, "embedding", emb));
        }
        json_t *resp = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", model, "usage",
                                 "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
        if (resp == NULL)
            die("json_pack failed");
        size_t len;
        char *body = json_to_str(resp, JSON_COMPACT | JSON_REAL_PRECISION(9), &len);
        json_decref(resp);
        plan_init(&p, 200, "application/json", body, len);
    }
    plan_send(c, &p, &s, failing);
    scenario_free(&s);
    json_decref(req);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/*
 * the Responses API (POST …/responses): `file=` replays a recording; `text=`, `gen_bytes`, the default and `calls=`
 * generate the response.* events OpenAI streams, each `event: TYPE` with data {"type":TYPE,"sequence_number":N,...},
 * the other members named and ordered as in the recordings (openai_responses_*.sse). The transport and failure keys
 * apply as for chat.
 */

/* One event: its type and sequence number (the events before it), then the members of rest (taken). */
static void responses_event(struct gen *g, const char *type, json_t *rest)
{
    json_t *j = xpacked(json_pack("{s:s, s:I}", "type", type, "sequence_number", (json_int_t)g->nev));
    if (json_object_update(j, rest) != 0)
        die("json_object_update failed");
    json_decref(rest);
    named_event(g, j);
}

/* The response object the lifecycle events carry: output (taken), usage (taken, or NULL: null). */
static json_t *responses_object(const struct gen *g, const char *status, json_t *output, json_t *usage)
{
    return xpacked(json_pack("{s:s, s:s, s:I, s:s, s:n, s:n, s:s, s:o, s:o}", "id", g->id, "object", "response", "created_at",
                             g->created, "status", status, "error", "incomplete_details", "model", g->model, "output", output,
                             "usage", usage != NULL ? usage : json_null()));
}

static void responses_start(struct gen *g)
{
    responses_event(g, "response.created",
                    xpacked(json_pack("{s:o}", "response", responses_object(g, "in_progress", json_array(), NULL))));
    responses_event(g, "response.in_progress",
                    xpacked(json_pack("{s:o}", "response", responses_object(g, "in_progress", json_array(), NULL))));
}

/* response.completed: the items as done (taken) and the usage. */
static void responses_finish(struct gen *g, json_t *output, uint64_t output_tokens)
{
    json_t *usage =
        xpacked(json_pack("{s:I, s:{s:i}, s:I, s:{s:i}, s:I}", "input_tokens", (json_int_t)g->prompt_tokens, "input_tokens_details",
                          "cached_tokens", 0, "output_tokens", (json_int_t)output_tokens, "output_tokens_details",
                          "reasoning_tokens", 0, "total_tokens", (json_int_t)(g->prompt_tokens + output_tokens)));
    responses_event(g, "response.completed",
                    xpacked(json_pack("{s:o}", "response", responses_object(g, "completed", output, usage))));
}

/* An assistant message at output_index `index` saying text (pieces as for chat), appended to output once done. */
static uint64_t responses_message(struct gen *g, json_t *output, size_t index, uint64_t seq, const char *text, size_t n,
                                  size_t piece)
{
    char id[48];
    snprintf(id, sizeof id, "msg_fake_%" PRIu64, seq);
    responses_event(g, "response.output_item.added",
                    xpacked(json_pack("{s:I, s:{s:s, s:s, s:s, s:s, s:[]}}", "output_index", (json_int_t)index, "item", "type",
                                      "message", "id", id, "status", "in_progress", "role", "assistant", "content")));
    responses_event(g, "response.content_part.added",
                    xpacked(json_pack("{s:s, s:I, s:i, s:{s:s, s:s, s:[]}}", "item_id", id, "output_index", (json_int_t)index,
                                      "content_index", 0, "part", "type", "output_text", "text", "", "annotations")));
    uint64_t words = 0;
    for (size_t i = 0, end; i < n; i = end, words++) {
        end = piece_end(text, n, i, piece);
        responses_event(g, "response.output_text.delta",
                        xpacked(json_pack("{s:s, s:I, s:i, s:s%}", "item_id", id, "output_index", (json_int_t)index,
                                          "content_index", 0, "delta", text + i, end - i)));
    }
    responses_event(g, "response.output_text.done",
                    xpacked(json_pack("{s:s, s:I, s:i, s:s%}", "item_id", id, "output_index", (json_int_t)index, "content_index", 0,
                                      "text", text, n)));
    json_t *part = xpacked(json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text", text, n, "annotations"));
    responses_event(g, "response.content_part.done",
                    xpacked(json_pack("{s:s, s:I, s:i, s:O}", "item_id", id, "output_index", (json_int_t)index, "content_index", 0,
                                      "part", part)));
    json_t *item = xpacked(json_pack("{s:s, s:s, s:s, s:s, s:[o]}", "type", "message", "id", id, "status", "completed", "role",
                                     "assistant", "content", part));
    responses_event(g, "response.output_item.done",
                    xpacked(json_pack("{s:I, s:O}", "output_index", (json_int_t)index, "item", item)));
    json_array_append_new(output, item);
    return words;
}

/* calls=: content_first as a message, then a function_call item per call whose arguments stream in fragments. */
static void responses_calls_stream(struct gen *g, const json_t *calls, uint64_t seq, const struct str *content_first)
{
    json_t *output = json_array();
    uint64_t tokens = 0;
    responses_start(g);
    if (content_first->set)
        tokens += responses_message(g, output, 0, seq, content_first->p, content_first->n, 0);
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        char id[64], cid[64];
        snprintf(id, sizeof id, "fc_fake_%zu_%" PRIu64, i, seq);
        call_id(cid, sizeof cid, i, seq);
        json_int_t index = (json_int_t)json_array_size(output);
        json_t *name = json_object_get(call, "name");
        responses_event(
            g, "response.output_item.added",
            xpacked(json_pack("{s:I, s:{s:s, s:s, s:s, s:O, s:s, s:s}}", "output_index", index, "item", "type", "function_call",
                              "id", id, "call_id", cid, "name", name, "arguments", "", "status", "in_progress")));
        size_t alen;
        char *args = call_arguments(call, &alen);
        for (size_t off = 0, end; off < alen; off = end) {
            end = fragment_end(args, alen, off);
            responses_event(
                g, "response.function_call_arguments.delta",
                xpacked(json_pack("{s:s, s:I, s:s%}", "item_id", id, "output_index", index, "delta", args + off, end - off)));
        }
        responses_event(g, "response.function_call_arguments.done",
                        xpacked(json_pack("{s:s, s:O, s:I, s:s%}", "item_id", id, "name", name, "output_index", index, "arguments",
                                          args, alen)));
        json_t *item = xpacked(json_pack("{s:s, s:s, s:s, s:O, s:s%, s:s}", "type", "function_call", "id", id, "call_id", cid,
                                         "name", name, "arguments", args, alen, "status", "completed"));
        responses_event(g, "response.output_item.done", xpacked(json_pack("{s:I, s:O}", "output_index", index, "item", item)));
        json_array_append_new(output, item);
        tokens += 1 + alen / 4;
        free(args);
    }
    responses_finish(g, output, tokens);
}

static bool is_function_output(const json_t *item)
{
    const char *type = json_string_value(json_object_get(item, "type"));
    return type != NULL && strcmp(type, "function_call_output") == 0;
}

/* The words of the request: its instructions, and its input (a string, or the items' content and output). */
static uint64_t responses_prompt_words(const json_t *req)
{
    json_t *input = json_object_get(req, "input");
    return content_words(json_object_get(req, "instructions")) + content_words(json_is_string(input) ? input : NULL) +
           items_words(input, "content") + items_words(input, "output");
}

static void handle_responses(struct conn *c)
{
    struct request *q = &c->req;
    json_t *req = json_loadb(q->body.p ? q->body.p : "", q->body.len, 0, NULL);
    const char *model = json_string_value(json_object_get(req, "model"));
    if (model == NULL) {
        json_decref(req);
        send_error(c, 400, "a JSON body with a model is required", "invalid_request_error", NULL);
        return;
    }
    json_t *input = json_object_get(req, "input");
    struct scenario s;
    char err[256];
    memset(&s, 0, sizeof s);
    s.seed = 1;
    if (strncmp(model, "fake?", 5) == 0) {
        bool parsed = scenario_parse(&s, model + 5, err, sizeof err);
        if (parsed && (s.dim != 0 || s.tools)) {
            snprintf(err, sizeof err, "fake-upstream: %s does not apply to /responses", s.dim != 0 ? "dim" : "tools");
            parsed = false;
        }
        if (parsed && s.calls_from_user)
            parsed = scenario_script(&s, json_is_string(input) ? json_string_value(input) : first_user_text(input),
                                     "fake-upstream: calls=@user needs a user input item with text", err, sizeof err);
        if (!parsed) {
            scenario_free(&s);
            json_decref(req);
            send_error(c, 400, err, "invalid_request_error", NULL);
            return;
        }
    }
    scenario_apply_fail_times(&s, model);
    struct plan p;
    bool failing = plan_status(&p, &s);
    if (failing) {
        /* the status=CODE response */
    } else if (s.file.set) {
        char *data;
        size_t len;
        if (!read_fixture(s.file.p, &data, &len)) {
            scenario_free(&s);
            json_decref(req);
            send_error(c, 404, "fake-upstream: no such fixture", "invalid_request_error", "fixture_not_found");
            return;
        }
        plan_init(&p, 200, "text/event-stream", data, len);
        p.stream = true;
    } else {
        struct gen g;
        memset(&g, 0, sizeof g);
        snprintf(g.id, sizeof g.id, "resp_fake_%06" PRIu64, c->seq);
        g.created = (json_int_t)time(NULL);
        g.model = model;
        g.prompt_tokens = responses_prompt_words(req);
        struct sbuf results = {0};
        bool calls = s.calls != NULL && calls_round(input, is_function_output, "output", &s, s.text.set ? NULL : &results);
        if (s.calls != NULL && !calls && s.has_reply_pace)
            s.pace_ms = s.reply_pace_ms;
        if (calls) {
            responses_calls_stream(&g, s.calls, c->seq, &s.content_first);
        } else {
            size_t tlen;
            char *owned;
            const char *text = answer_text(&s, &results, &owned, &tlen);
            json_t *output = json_array();
            responses_start(&g);
            uint64_t words = responses_message(&g, output, 0, c->seq, text, tlen, s.has_gen ? GEN_EVENT_BYTES : 0);
            responses_finish(&g, output, words);
            free(owned);
        }
        sb_free(&results);
        plan_events(&p, &g);
    }
    plan_send(c, &p, &s, failing);
    scenario_free(&s);
    json_decref(req);
}

/* gemini: POST …/models/{model}:streamGenerateContent, the scenario in {model} */

/* Gemini's error body for a status: {"error":{"code","message","status"}} with the google.rpc code name. */
static char *gemini_error_body(int status, const char *msg, size_t *len)
{
    const char *name = status == 400   ? "INVALID_ARGUMENT"
                       : status == 401 ? "UNAUTHENTICATED"
                       : status == 403 ? "PERMISSION_DENIED"
                       : status == 404 ? "NOT_FOUND"
                       : status == 429 ? "RESOURCE_EXHAUSTED"
                       : status == 500 ? "INTERNAL"
                       : status == 503 ? "UNAVAILABLE"
                       : status == 504 ? "DEADLINE_EXCEEDED"
                                       : "UNKNOWN";
    json_t *j = xpacked(json_pack("{s:{s:i, s:s, s:s}}", "error", "code", status, "message", msg, "status", name));
    char *s = json_to_str(j, JSON_COMPACT, len);
    json_decref(j);
    return s;
}

static void gemini_send_error(struct conn *c, int status, const char *msg)
{
    struct plan p;
    size_t len;
    char *body = gemini_error_body(status, msg, &len);
    plan_init(&p, status, "application/json", body, len);
    start_response(c, &p);
}

static const char *gemini_role(const json_t *content)
{
    const char *role = json_string_value(json_object_get(content, "role"));
    return role != NULL ? role : "user";
}

/* The number of functionResponse parts in one content. */
static size_t gemini_responses(const json_t *content)
{
    size_t n = 0, i;
    json_t *part;
    json_array_foreach(json_object_get(content, "parts"), i, part) n += json_object_get(part, "functionResponse") != NULL;
    return n;
}

/* The text of the first user content's first text part, or NULL (calls=@user). */
static const char *gemini_first_user_text(const json_t *req)
{
    size_t i;
    json_t *content;
    json_array_foreach(json_object_get(req, "contents"), i, content)
    {
        if (strcmp(gemini_role(content), "user") == 0)
            return json_string_value(json_object_get(json_array_get(json_object_get(content, "parts"), 0), "text"));
    }
    return NULL;
}

static uint64_t gemini_prompt_words(const json_t *req)
{
    uint64_t words = 0;
    size_t i, k;
    json_t *content, *part;
    json_array_foreach(json_object_get(req, "contents"), i, content)
    {
        json_array_foreach(json_object_get(content, "parts"), k, part)
        {
            json_t *t = json_object_get(part, "text");
            if (json_is_string(t))
                words += count_words(json_string_value(t), json_string_length(t));
        }
    }
    return words;
}

/* calls=, Gemini's way: the tool calls unless the last content holds function results and all rounds are done; then
 * results gets "RESULTS " and each trailing result (response.result: a string as is, else its JSON) joined with " | ". */
static bool gemini_calls_round(const json_t *req, const struct scenario *s, struct sbuf *results)
{
    json_t *contents = json_object_get(req, "contents");
    size_t n = json_array_size(contents), i;
    uint64_t nresp = 0;
    json_t *content;
    json_array_foreach(contents, i, content) nresp += gemini_responses(content);
    json_t *last = json_array_get(contents, n - 1);
    if (n == 0 || gemini_responses(last) == 0 || nresp < s->rounds * json_array_size(s->calls))
        return true;
    if (results != NULL) {
        sb_str(results, "RESULTS ");
        size_t k = 0;
        json_t *part;
        json_array_foreach(json_object_get(last, "parts"), i, part)
        {
            json_t *resp = json_object_get(json_object_get(part, "functionResponse"), "response");
            if (resp == NULL)
                continue;
            if (k++ > 0)
                sb_str(results, " | ");
            json_t *r = json_object_get(resp, "result");
            if (json_is_string(r))
                sb_add(results, json_string_value(r), json_string_length(r));
            else
                sb_json(results, r != NULL ? r : resp, JSON_COMPACT);
        }
    }
    return false;
}

/* One streamed GenerateContentResponse: parts (taken), a finish reason or NULL, the running usage. */
static void gemini_event(struct gen *g, json_t *parts, const char *finish, uint64_t tokens)
{
    json_t *cand = xpacked(json_pack("{s:{s:o, s:s}, s:i}", "content", "parts", parts, "role", "model", "index", 0));
    if (finish != NULL)
        json_object_set_new(cand, "finishReason", json_string(finish));
    json_t *j = xpacked(json_pack("{s:[o], s:{s:I, s:I, s:I}, s:s, s:s}", "candidates", cand, "usageMetadata", "promptTokenCount",
                                  (json_int_t)g->prompt_tokens, "candidatesTokenCount", (json_int_t)tokens, "totalTokenCount",
                                  (json_int_t)(g->prompt_tokens + tokens), "modelVersion", g->model, "responseId", g->id));
    gen_event(g, j);
}

/* One event per word (leading whitespace + word, so they join back to the text); the last one says STOP unless more follows. */
static uint64_t gemini_words(struct gen *g, const char *text, size_t n, bool last)
{
    uint64_t tokens = 0;
    size_t i = 0;
    if (n == 0 && last)
        gemini_event(g, json_array(), "STOP", 0);
    while (i < n) {
        size_t start = i;
        i = piece_end(text, n, i, 0);
        tokens++;
        gemini_event(g, xpacked(json_pack("[{s:s%}]", "text", text + start, i - start)), last && i == n ? "STOP" : NULL, tokens);
    }
    return tokens;
}

/* A thought signature for the first call of a round, as Gemini sends one: opaque padded base64, here of "fake-signature-<seq>". */
static void gemini_signature(char *out, size_t size, uint64_t seq)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char raw[64];
    int n = snprintf(raw, sizeof raw, "fake-signature-%" PRIu64, seq);
    size_t o = 0;
    for (int i = 0; i < n && o + 5 < size; i += 3) {
        unsigned v = (unsigned char)raw[i] << 16 | (i + 1 < n ? (unsigned char)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned char)raw[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
}

/* calls=: content_first's words, then one event with every call whole (args an object), the first call signed. */
static void gemini_calls_stream(struct gen *g, const json_t *calls, uint64_t seq, const struct str *content_first)
{
    uint64_t tokens = content_first->set ? gemini_words(g, content_first->p, content_first->n, false) : 0;
    json_t *parts = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        json_t *args = json_object_get(call, "arguments");
        json_t *obj = args == NULL           ? json_object()
                      : json_is_object(args) ? json_incref(args)
                                             : json_loads(json_string_value(args), 0, NULL);
        if (!json_is_object(obj)) { /* a scripted malformed string: Gemini's args are always an object */
            json_decref(obj);
            obj = xpacked(json_pack("{s:O}", "raw", args));
        }
        json_t *part = xpacked(json_pack("{s:{s:O, s:o}}", "functionCall", "name", json_object_get(call, "name"), "args", obj));
        if (i == 0) {
            char sig[128];
            gemini_signature(sig, sizeof sig, seq);
            json_object_set_new(part, "thoughtSignature", json_string(sig));
        }
        json_array_append_new(parts, part);
        tokens += 4;
    }
    gemini_event(g, parts, "STOP", tokens);
}

static void handle_gemini(struct conn *c, const char *model_enc, size_t model_len)
{
    struct request *q = &c->req;
    char *model = xstrndup(model_enc, model_len);
    pct_decode(model);
    json_t *req = json_loadb(q->body.p ? q->body.p : "", q->body.len, 0, NULL);
    if (!json_is_object(req) || !json_is_array(json_object_get(req, "contents"))) {
        json_decref(req);
        free(model);
        gemini_send_error(c, 400, "Invalid JSON payload received: a GenerateContentRequest with contents is expected.");
        return;
    }
    struct scenario s;
    char err[256];
    if (strncmp(model, "fake?", 5) == 0) {
        bool parsed = scenario_parse(&s, model + 5, err, sizeof err);
        if (parsed && (s.dim != 0 || s.has_gen || s.tools)) {
            snprintf(err, sizeof err, "fake-upstream: gemini takes file, text, calls and the transport and failure keys");
            parsed = false;
        }
        if (parsed && s.calls_from_user)
            parsed = scenario_script(&s, gemini_first_user_text(req),
                                     "fake-upstream: calls=@user needs a user content with a text part", err, sizeof err);
        if (!parsed) {
            scenario_free(&s);
            json_decref(req);
            free(model);
            gemini_send_error(c, 400, err);
            return;
        }
    } else {
        memset(&s, 0, sizeof s);
        s.seed = 1;
    }
    scenario_apply_fail_times(&s, model);

    struct plan p;
    bool failing = s.status != 0;
    if (failing) {
        char msg[64];
        size_t len;
        snprintf(msg, sizeof msg, "fake upstream error %d", s.status);
        char *body = s.body.set ? xstrndup(s.body.p, s.body.n) : gemini_error_body(s.status, msg, &len);
        plan_init(&p, s.status, "application/json", body, s.body.set ? s.body.n : len);
    } else if (s.file.set) {
        char *data;
        size_t len;
        if (!read_fixture(s.file.p, &data, &len)) {
            char msg[300];
            snprintf(msg, sizeof msg, "fake-upstream: no fixture '%s'", s.file.p);
            scenario_free(&s);
            json_decref(req);
            free(model);
            gemini_send_error(c, 404, msg);
            return;
        }
        plan_init(&p, 200, "text/event-stream", data, len);
        p.stream = true;
    } else {
        struct gen g;
        memset(&g, 0, sizeof g);
        snprintf(g.id, sizeof g.id, "fake%06" PRIu64, c->seq);
        g.model = model;
        g.prompt_tokens = gemini_prompt_words(req);
        struct sbuf results = {0};
        bool calls = s.calls != NULL && gemini_calls_round(req, &s, s.text.set ? NULL : &results);
        if (s.calls != NULL && !calls && s.has_reply_pace)
            s.pace_ms = s.reply_pace_ms;
        if (calls) {
            gemini_calls_stream(&g, s.calls, c->seq, &s.content_first);
        } else {
            size_t tlen;
            char *owned;
            const char *text = answer_text(&s, &results, &owned, &tlen);
            gemini_words(&g, text, tlen, true);
            free(owned);
        }
        sb_free(&results);
        plan_events(&p, &g);
    }
    plan_send(c, &p, &s, failing);
    scenario_free(&s);
    json_decref(req);
    free(model);
}

/* Whether the path is …/models/{model}:streamGenerateContent; *model is then the (still escaped) name. */
static bool gemini_path(const char *path, size_t plen, const char **model, size_t *model_len)
{
    static const char tail[] = ":streamGenerateContent";
    const char *m = NULL;
    for (const char *p = path; p + 8 <= path + plen; p++)
        if (memcmp(p, "/models/", 8) == 0)
            m = p + 8; /* the last one: a base URL may hold "/models/" itself */
    if (m == NULL || !ends_with(path, plen, tail) || (size_t)(path + plen - m) <= sizeof tail - 1)
        return false;
    *model = m;
    *model_len = (size_t)(path + plen - m) - (sizeof tail - 1);
    return true;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* ---------------------------------------------------------------------------------------------------------------- */
/* routing */

static void dispatch(struct conn *c)
{
    struct request *q = &c->req;
    const char *qm = strchr(q->target, '?');
    size_t plen = qm != NULL ? (size_t)(qm - q->target) : strlen(q->target);
    bool post = strcmp(q->method, "POST") == 0, get = strcmp(q->method, "GET") == 0;
    const char *gm;
    size_t gmlen;
#define PATH_IS(s) (plen == strlen(s) && memcmp(q->target, s, plen) == 0)
    if (post && ends_with(q->target, plen, "/chat/completions")) {
        record_new(c);
        handle_chat(c);
    } else if (post && ends_with(q->target, plen, "/messages")) {
        record_new(c);
        handle_messages(c);
    } else if (post && gemini_path(q->target, plen, &gm, &gmlen)) {
        record_new(c);
        handle_gemini(c, gm, gmlen);
    } else if (post && ends_with(q->target, plen, "/responses")) {
        record_new(c);
        handle_responses(c);
    } else if (post && ends_with(q->target, plen, "/embeddings")) {
        record_new(c);
        handle_embeddings(c);
    } else if (get && PATH_IS("/_requests")) {
        json_t *arr = json_array();
        for (size_t i = 0; i < g_rec_count; i++)
            json_array_append(arr, g_records[(g_rec_head + i) % MAX_RECORDS]);
        size_t len;
        char *body = json_to_str(arr, JSON_COMPACT | JSON_REAL_PRECISION(16), &len);
        json_decref(arr);
        send_text(c, 200, "application/json", body, len);
    } else if (post && PATH_IS("/_reset")) {
        records_clear();
        send_text(c, 200, "application/json", xstrndup("{\"ok\":true}", 11), 11);
    } else if (get && PATH_IS("/_stats")) {
        char *body = xmalloc(96);
        int len = snprintf(body, 96, "{\"connections\":%llu,\"open\":%llu}", g_accepted, g_open);
        send_text(c, 200, "application/json", body, (size_t)len);
    } else if (get && PATH_IS("/_health")) {
        send_text(c, 200, "text/plain", xstrndup("ok", 2), 2);
    } else {
        struct sbuf m = {0};
        sb_fmt(&m,
               "Unknown request URL: %s %.*s. Please check the URL for typos, or see the docs at "
               "https://platform.openai.com/docs/api-reference/.",
               q->method, (int)plen, q->target);
        sb_reserve(&m, 1);
        m.p[m.len] = '\0';
        json_t *chk = json_string(m.p);
        if (chk == NULL) /* not UTF-8 */
            send_error(c, 404, "Unknown request URL", "invalid_request_error", "unknown_url");
        else
            send_error(c, 404, m.p, "invalid_request_error", "unknown_url");
        json_decref(chk);
        sb_free(&m);
    }
#undef PATH_IS
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* request parsing */

static void request_complete(struct conn *c)
{
    c->busy = true;
    c->pstate = PS_HEAD;
    c->t_received = now_ms();
    dispatch(c);
}

static bool has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0)
            return true;
    }
    return false;
}

/* Parses the request head in q->head (NUL-terminated). Returns an HTTP status on error, else 0. */
static int parse_head(struct request *q, const char **why)
{
    char *line = q->head;
    char *nl = strchr(line, '\n');
    if (nl == NULL)
        return *why = "malformed request line", 400;
    *nl = '\0';
    if (nl > line && nl[-1] == '\r')
        nl[-1] = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == line || sp2 == sp1 + 1 || strchr(sp2 + 1, ' ') != NULL)
        return *why = "malformed request line", 400;
    *sp1 = *sp2 = '\0';
    q->method = line;
    q->target = sp1 + 1;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        q->minor = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        q->minor = 0;
    else
        return *why = "unsupported HTTP version", 400;
    q->keep_alive = q->minor == 1;
    bool have_cl = false, chunked = false;
    for (line = nl + 1; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        if (nl > line && nl[-1] == '\r')
            nl[-1] = '\0';
        if (*line == '\0')
            break;
        if (*line == ' ' || *line == '\t')
            return *why = "obsolete header line folding", 400;
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            return *why = "malformed header line", 400;
        for (char *k = line; k < colon; k++) {
            if ((unsigned char)*k <= ' ' || *k == 0x7f)
                return *why = "malformed header name", 400;
            *k = (char)tolower((unsigned char)*k);
        }
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        char *end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (q->nhdr == MAX_HEADERS)
            return *why = "too many headers", 431;
        q->hdr[q->nhdr].name = line;
        q->hdr[q->nhdr].value = value;
        q->nhdr++;
        if (strcmp(line, "content-length") == 0) {
            uint64_t cl;
            if (!parse_u64(value, strlen(value), UINT64_MAX / 2, &cl) || (have_cl && cl != q->content_length))
                return *why = "bad Content-Length", 400;
            have_cl = true;
            q->content_length = cl;
        } else if (strcmp(line, "transfer-encoding") == 0) {
            const char *last = strrchr(value, ',');
            last = last != NULL ? last + 1 : value;
            while (*last == ' ' || *last == '\t')
                last++;
            if (strcasecmp(last, "chunked") != 0)
                return *why = "unsupported Transfer-Encoding", 501;
            chunked = true;
        } else if (strcmp(line, "connection") == 0) {
            if (has_token(value, "close"))
                q->keep_alive = false;
        } else if (strcmp(line, "expect") == 0) {
            if (strcasecmp(value, "100-continue") == 0)
                q->expect_continue = true;
        }
    }
    if (chunked) {
        q->content_length = 0; /* Transfer-Encoding wins over Content-Length */
        q->cstate = CS_SIZE;
        return -1; /* chunked body follows */
    }
    return 0;
}

static enum step head_step(struct conn *c)
{
    struct request *q = &c->req;
    if (c->scanned == 0)
        while (c->rpos < c->rlen && (c->rbuf[c->rpos] == '\r' || c->rbuf[c->rpos] == '\n'))
            c->rpos++;
    const char *p = c->rbuf + c->rpos;
    size_t avail = c->rlen - c->rpos, end = 0;
    for (size_t i = c->scanned > 0 ? c->scanned : 1; i < avail; i++) {
        if (p[i] == '\n' && (p[i - 1] == '\n' || (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n'))) {
            end = i + 1;
            break;
        }
    }
    if (end == 0) {
        c->scanned = avail;
        if (avail > MAX_HEAD)
            return bad_request(c, 431, "request head too large");
        return STEP_MORE;
    }
    if (end > MAX_HEAD)
        return bad_request(c, 431, "request head too large");
    request_reset(q);
    q->head = xstrndup(p, end);
    c->rpos += end;
    c->scanned = 0;
    const char *why = NULL;
    int rc = parse_head(q, &why);
    if (rc > 0)
        return bad_request(c, rc, why);
    if (q->content_length > MAX_BODY)
        return bad_request(c, 413, "request body too large (limit 8 MiB)");
    bool body = rc < 0 || q->content_length > 0;
    if (q->expect_continue && body && q->minor == 1)
        write_static(c, "HTTP/1.1 100 Continue\r\n\r\n");
    if (rc < 0) {
        c->pstate = PS_BODY_CHUNKED;
    } else if (q->content_length > 0) {
        sb_reserve(&q->body, (size_t)q->content_length);
        c->pstate = PS_BODY_CL;
    } else {
        request_complete(c);
    }
    return STEP_PROGRESS;
}

static enum step body_cl_step(struct conn *c)
{
    struct request *q = &c->req;
    size_t avail = c->rlen - c->rpos;
    size_t need = (size_t)q->content_length - q->body.len;
    size_t n = avail < need ? avail : need;
    if (n == 0)
        return STEP_MORE;
    sb_add(&q->body, c->rbuf + c->rpos, n);
    c->rpos += n;
    if (q->body.len == q->content_length)
        request_complete(c);
    return STEP_PROGRESS;
}

static enum step body_chunked_step(struct conn *c)
{
    struct request *q = &c->req;
    const char *p = c->rbuf + c->rpos;
    size_t avail = c->rlen - c->rpos;
    if (avail == 0)
        return STEP_MORE;
    switch (q->cstate) {
    case CS_SIZE: {
        const char *nl = memchr(p, '\n', avail);
        if (nl == NULL)
            return avail > 1024 ? bad_request(c, 400, "bad chunk size line") : STEP_MORE;
        size_t i = 0;
        uint64_t size = 0;
        while (p + i < nl && hexval((unsigned char)p[i]) >= 0) {
            if (size > (UINT64_MAX >> 8))
                return bad_request(c, 400, "chunk size too large");
            size = size * 16 + (uint64_t)hexval((unsigned char)p[i]);
            i++;
        }
        if (i == 0)
            return bad_request(c, 400, "bad chunk size line");
        while (p + i < nl && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (p + i < nl && p[i] != ';' && !(p[i] == '\r' && p + i + 1 == nl))
            return bad_request(c, 400, "bad chunk size line");
        c->rpos += (size_t)(nl - p) + 1;
        if (size == 0) {
            q->cstate = CS_TRAILER;
        } else {
            if (q->body.len + size > MAX_BODY)
                return bad_request(c, 413, "request body too large (limit 8 MiB)");
            q->chunk_left = size;
            q->cstate = CS_DATA;
        }
        return STEP_PROGRESS;
    }
    case CS_DATA: {
        size_t n = avail < q->chunk_left ? avail : (size_t)q->chunk_left;
        sb_add(&q->body, p, n);
        c->rpos += n;
        q->chunk_left -= n;
        if (q->chunk_left == 0)
            q->cstate = CS_DATA_END;
        return STEP_PROGRESS;
    }
    case CS_DATA_END:
        if (p[0] == '\n') {
            c->rpos += 1;
        } else if (p[0] == '\r') {
            if (avail < 2)
                return STEP_MORE;
            if (p[1] != '\n')
                return bad_request(c, 400, "bad chunk end");
            c->rpos += 2;
        } else {
            return bad_request(c, 400, "bad chunk end");
        }
        q->cstate = CS_SIZE;
        return STEP_PROGRESS;
    case CS_TRAILER: {
        const char *nl = memchr(p, '\n', avail);
        if (nl == NULL)
            return q->trailer_bytes + avail > MAX_HEAD ? bad_request(c, 431, "trailer too large") : STEP_MORE;
        size_t ll = (size_t)(nl - p);
        c->rpos += ll + 1;
        q->trailer_bytes += ll + 1;
        if (ll == 0 || (ll == 1 && p[0] == '\r'))
            request_complete(c);
        else if (q->trailer_bytes > MAX_HEAD)
            return bad_request(c, 431, "trailer too large");
        return STEP_PROGRESS;
    }
    }
    return STEP_MORE;
}

static void process_input(struct conn *c)
{
    while (!c->busy && !c->closing && !c->discarding) {
        enum step st;
        switch (c->pstate) {
        case PS_HEAD:
            st = head_step(c);
            break;
        case PS_BODY_CL:
            st = body_cl_step(c);
            break;
        default:
            st = body_chunked_step(c);
            break;
        }
        if (st != STEP_PROGRESS)
            break;
    }
    if (c->rpos > 0 && !c->closing) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* accepting and reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    if (c->discarding || c->closing) {
        *buf = uv_buf_init(g_scratch, sizeof g_scratch);
        return;
    }
    if (c->rcap - c->rlen < READ_MIN) {
        size_t n = c->rcap ? c->rcap : READ_MIN;
        while (n - c->rlen < READ_MIN)
            n *= 2;
        c->rbuf = xrealloc(c->rbuf, n);
        c->rcap = n;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (c->closing)
        return;
    if (n < 0) {
        client_gone(c); /* EOF or reset: immediately, whatever the response is doing */
        return;
    }
    if (n == 0 || c->discarding)
        return;
    c->rlen += (size_t)n;
    if (c->busy) {
        if (c->rlen - c->rpos > MAX_BUFFERED)
            client_gone(c);
        return; /* pipelined input waits for the current response */
    }
    process_input(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "fake-upstream: accept: %s\n", uv_strerror(status));
        return;
    }
    struct conn *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    uv_tcp_init(g_loop, &c->tcp);
    uv_timer_init(g_loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = g_conns;
    if (g_conns != NULL)
        g_conns->prev = c;
    g_conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    ++g_accepted;
    c->counted = true;
    ++g_open;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    (void)sig;
    (void)signum;
    if (g_shutting_down)
        return;
    g_shutting_down = true;
    uv_close((uv_handle_t *)&g_server, NULL);
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    for (struct conn *c = g_conns; c != NULL; c = c->next)
        conn_close(c);
}

static void usage(void)
{
    fprintf(stderr, "usage: fake-upstream --port N [--fixtures DIR] [--host 127.0.0.1]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
            char *end;
            errno = 0;
            port = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
                usage();
        } else if (i + 1 < argc && strcmp(argv[i], "--fixtures") == 0) {
            g_fixtures = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--host") == 0) {
            host = argv[++i];
        } else {
            usage();
        }
    }
    if (port < 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    g_loop = uv_default_loop();

    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr) != 0) {
        fprintf(stderr, "fake-upstream: bad --host '%s' (an IPv4 or IPv6 address)\n", host);
        return 2;
    }
    uv_tcp_init(g_loop, &g_server);
    int rc = uv_tcp_bind(&g_server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&g_server, 1024, on_connection);
    if (rc != 0) {
        fprintf(stderr, "fake-upstream: cannot listen on %s:%ld: %s\n", host, port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&g_server, (struct sockaddr *)&bound, &blen);
    int actual =
        ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port : ((struct sockaddr_in *)&bound)->sin_port);
    uv_signal_init(g_loop, &g_sigint);
    uv_signal_init(g_loop, &g_sigterm);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    printf("port %d\n", actual);
    fflush(stdout);

    uv_run(g_loop, UV_RUN_DEFAULT);
    records_clear();
    uv_loop_close(g_loop);
    return 0;
}
