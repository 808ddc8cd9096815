/*
 * The load generator of the scale benchmark (tests/bench/scale.mjs): many
 * keep-alive HTTP/1.1 connections on one libuv loop, each sending the same
 * streamed Chat Completions request TURNS times in a row, the connections
 * started evenly over RAMP_MS. It reads every SSE event, times each turn's
 * first content token from the moment the request was written, and checks
 * every turn: status 200, TOKENS content events, `data: [DONE]`, the chunked
 * body ended. One process, no threads: it must cost far less than the proxy
 * it measures.
 *
 *   scale-load --port P --conns N --turns T --ramp-ms R --body FILE --key K --tokens C [--timeout-ms MS]
 *
 * Prints one JSON object on stdout when every connection is done:
 * {"conns":N,"turns":..,"ok":..,"errors":{kind:count},"first_token_ms":{"p50":..,"p90":..,"p99":..,"max":..},
 *  "open_peak":..,"duration_ms":..,"cpu_ms":..}
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define LINE_MAX_BYTES 16384
#define HEAD_MAX_BYTES 8192

enum error_kind { E_CONNECT, E_RESET, E_STATUS, E_HEAD, E_CHUNK, E_LINE, E_EVENT, E_TOKENS, E_NO_DONE, E_TIMEOUT, E_COUNT };
static const char *const error_names[E_COUNT] = {"connect",   "reset",       "status", "bad_head", "bad_chunk",
                                                 "long_line", "error_event", "tokens", "no_done",  "timeout"};

enum body_state {
    B_HEAD,
    B_CHUNK_SIZE,
    B_CHUNK_EXT,
    B_CHUNK_SIZE_LF,
    B_CHUNK_DATA,
    B_CHUNK_DATA_CR,
    B_CHUNK_DATA_LF,
    B_TRAILER,
    B_LENGTH,
    B_CLOSE
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    unsigned turns_left;
    int connected, in_turn, closing, failed;
    uint64_t t_sent; /* uv_hrtime of the request write */
    int first_seen, done_seen;
    unsigned tokens;
    int status, chunked, keep_alive;
    long long length_left;
    enum body_state state;
    size_t chunk_left;
    char head[HEAD_MAX_BYTES];
    size_t head_len;
    char *line;
    size_t line_len;
};

static uv_loop_t *loop;
static struct sockaddr_in addr;
static char *request;
static size_t request_len;
static unsigned nconns, turns, tokens_expected, started, finished, open_now, open_peak;
static uint64_t ramp_ns, timeout_ns, t0;
static struct conn *conns;
static double *latencies;
static size_t nlat;
static unsigned long long ok_turns, errors[E_COUNT];
static uv_timer_t ramp_timer, sweep_timer;
static char scratch[65536];

static void start_turn(struct conn *c);

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(c->line);
    c->line = NULL;
    if (++finished == nconns) {
        uv_timer_stop(&sweep_timer);
        uv_close((uv_handle_t *)&sweep_timer, NULL);
        if (!uv_is_closing((uv_handle_t *)&ramp_timer))
            uv_close((uv_handle_t *)&ramp_timer, NULL);
    }
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->in_turn) {
        c->in_turn = 0;
        --open_now;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* The turn failed: counted once, and the connection is given up (its remaining turns are not run). */
static void fail(struct conn *c, enum error_kind kind)
{
    if (!c->failed)
        ++errors[kind];
    c->failed = 1;
    conn_close(c);
}

/* One SSE line of the body (without its newline). */
static int on_line(struct conn *c, const char *p, size_t n)
{
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return 0;
    p += 5, n -= 5;
    if (n > 0 && *p == ' ')
        ++p, --n;
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        c->done_seen = 1;
        return 0;
    }
    if (n >= 9 && memcmp(p, "{\"error\":", 9) == 0)
        return -1;
    static const char key[] = "\"content\":\"";
    const char *at = memmem(p, n, key, sizeof(key) - 1);
    if (at == NULL || (size_t)(at - p) + sizeof(key) - 1 >= n || at[sizeof(key) - 1] == '"')
        return 0; /* no words in this event (role, finish, usage) */
    ++c->tokens;
    if (!c->first_seen) {
        c->first_seen = 1;
        latencies[nlat++] = (double)(uv_hrtime() - c->t_sent) / 1e6;
    }
    return 0;
}

/* Body bytes (chunk framing removed) into SSE lines. */
static int on_body(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        if (p[i] == '\n') {
            size_t len = c->line_len;
            if (len > 0 && c->line[len - 1] == '\r')
                --len;
            if (on_line(c, c->line, len) != 0)
                return E_EVENT;
            c->line_len = 0;
            continue;
        }
        if (c->line_len == LINE_MAX_BYTES)
            return E_LINE;
        c->line[c->line_len++] = p[i];
    }
    return -1;
}

static int header_is(const char *line, size_t len, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (len < nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    size_t left = len - nl - 1;
    while (left > 0 && (*v == ' ' || *v == '\t'))
        ++v, --left;
    return left >= vl && strncasecmp(v, value, vl) == 0;
}

/* The response head is complete in c->head: status, framing, keep-alive. */
static int parse_head(struct conn *c)
{
    if (c->head_len < 12 || memcmp(c->head, "HTTP/1.1 ", 9) != 0)
        return -1;
    c->status = (c->head[9] - '0') * 100 + (c->head[10] - '0') * 10 + (c->head[11] - '0');
    c->chunked = 0;
    c->keep_alive = 1;
    c->length_left = -1;
    const char *line = memchr(c->head, '\n', c->head_len) + 1, *end = c->head + c->head_len;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t len = (size_t)(eol - line);
        if (len > 0 && line[len - 1] == '\r')
            --len;
        if (header_is(line, len, "transfer-encoding", "chunked"))
            c->chunked = 1;
        else if (header_is(line, len, "connection", "close"))
            c->keep_alive = 0;
        else if (len > 15 && strncasecmp(line, "content-length:", 15) == 0)
            c->length_left = strtoll(line + 15, NULL, 10);
        line = eol + 1;
    }
    c->state = c->chunked ? B_CHUNK_SIZE : c->length_left >= 0 ? B_LENGTH : B_CLOSE;
    return 0;
}

/* A chunk size's digit, or -1 (OR 0x20 makes a letter lowercase and leaves digits as they are). */
static int hexval(char ch)
{
    static const char digits[] = "0123456789abcdef";
    const char *at = ch != '\0' ? strchr(digits, ch | 0x20) : NULL;
    return at != NULL ? (int)(at - digits) : -1;
}

/* The turn's response is complete: checked, and the next turn starts on the same connection. */
static void turn_complete(struct conn *c)
{
    c->in_turn = 0;
    --open_now;
    if (c->status != 200) {
        fail(c, E_STATUS);
        return;
    }
    if (!c->done_seen) {
        fail(c, E_NO_DONE);
        return;
    }
    if (c->tokens != tokens_expected) {
        fail(c, E_TOKENS);
        return;
    }
    ++ok_turns;
    if (--c->turns_left == 0 || !c->keep_alive) {
        conn_close(c);
        return;
    }
    start_turn(c);
}

/* Response bytes, through the head, the chunk framing and the SSE lines; a broken response fails the connection. */
static void on_bytes(struct conn *c, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && c->in_turn) {
        switch (c->state) {
        case B_HEAD: {
            char ch = p[i++];
            if (c->head_len == HEAD_MAX_BYTES) {
                fail(c, E_HEAD);
                return;
            }
            c->head[c->head_len++] = ch;
            if (ch == '\n' && c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0 && parse_head(c) != 0) {
                fail(c, E_HEAD);
                return;
            }
            if (c->state == B_LENGTH && c->length_left == 0)
                turn_complete(c);
            break;
        }
        case B_CHUNK_SIZE: {
            int v = hexval(p[i]);
            if (v >= 0) {
                if (c->chunk_left > (SIZE_MAX >> 8)) {
                    fail(c, E_CHUNK);
                    return;
                }
                c->chunk_left = c->chunk_left * 16 + (size_t)v;
            } else if (p[i] == ';') {
                c->state = B_CHUNK_EXT;
            } else if (p[i] == '\r') {
                c->state = B_CHUNK_SIZE_LF;
            } else {
                fail(c, E_CHUNK);
                return;
            }
            ++i;
            break;
        }
        case B_CHUNK_EXT:
            if (p[i++] == '\r')
                c->state = B_CHUNK_SIZE_LF;
            break;
        case B_CHUNK_SIZE_LF:
            if (p[i++] != '\n') {
                fail(c, E_CHUNK);
                return;
            }
            c->state = c->chunk_left == 0 ? B_TRAILER : B_CHUNK_DATA;
            c->head_len = 0; /* the trailer's line, in the head buffer */
            break;
        case B_CHUNK_DATA: {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            int e = on_body(c, p + i, take);
            if (e >= 0) {
                fail(c, (enum error_kind)e);
                return;
            }
            i += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0)
                c->state = B_CHUNK_DATA_CR;
            break;
        }
        case B_CHUNK_DATA_CR:
        case B_CHUNK_DATA_LF:
            if (p[i++] != (c->state == B_CHUNK_DATA_CR ? '\r' : '\n')) {
                fail(c, E_CHUNK);
                return;
            }
            c->state = c->state == B_CHUNK_DATA_CR ? B_CHUNK_DATA_LF : B_CHUNK_SIZE;
            break;
        case B_TRAILER: {
            char ch = p[i++];
            if (ch == '\n') {
                int empty = c->head_len == 0 || (c->head_len == 1 && c->head[0] == '\r');
                c->head_len = 0;
                if (empty)
                    turn_complete(c);
            } else if (c->head_len < HEAD_MAX_BYTES) {
                c->head[c->head_len++] = ch;
            }
            break;
        }
        case B_LENGTH: {
            size_t take = (long long)(n - i) < c->length_left ? n - i : (size_t)c->length_left;
            int e = on_body(c, p + i, take);
            if (e >= 0) {
                fail(c, (enum error_kind)e);
                return;
            }
            i += take;
            c->length_left -= (long long)take;
            if (c->length_left == 0)
                turn_complete(c);
            break;
        }
        case B_CLOSE: {
            int e = on_body(c, p + i, n - i);
            if (e >= 0) {
                fail(c, (enum error_kind)e);
                return;
            }
            i = n;
            break;
        }
        }
    }
    if (i < n && !c->closing)
        fail(c, E_HEAD); /* bytes after the response before the next request: nothing sane sends that */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch)); /* each read is consumed before the next */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (n < 0) {
        if (c->in_turn && c->state == B_CLOSE && n == UV_EOF) {
            c->keep_alive = 0;
            turn_complete(c);
            return;
        }
        if (c->in_turn)
            fail(c, E_RESET);
        else
            conn_close(c); /* closed between turns: the server's idle close, not a failed turn */
        return;
    }
    if (n > 0 && !c->in_turn) {
        fail(c, E_HEAD);
        return;
    }
    on_bytes(c, buf->base, (size_t)n);
}

static void on_written(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    if (status != 0 && !c->closing)
        fail(c, E_RESET);
}

static void start_turn(struct conn *c)
{
    c->in_turn = 1;
    if (++open_now > open_peak)
        open_peak = open_now;
    c->first_seen = c->done_seen = 0;
    c->tokens = 0;
    c->state = B_HEAD;
    c->head_len = c->line_len = c->chunk_left = 0;
    c->t_sent = uv_hrtime();
    uv_buf_t b = uv_buf_init(request, (unsigned)request_len); /* libuv does not write into it: every connection shares it */
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        fail(c, E_RESET);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status != 0) {
        fail(c, E_CONNECT);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    start_turn(c);
}

static void on_ramp(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    while (started < nconns && (ramp_ns == 0 || now - t0 >= ramp_ns * started / nconns)) {
        struct conn *c = &conns[started++];
        c->turns_left = turns;
        c->line = malloc(LINE_MAX_BYTES);
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c->connect.data = c;
        if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_connected) != 0)
            fail(c, E_CONNECT);
    }
    if (started == nconns) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
    }
}

/* Once a second: a turn past its deadline fails. */
static void on_sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    for (unsigned i = 0; i < started; ++i)
        if (conns[i].in_turn && !conns[i].closing && now - conns[i].t_sent > timeout_ns)
            fail(&conns[i], E_TIMEOUT);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double p)
{
    if (nlat == 0)
        return -1;
    size_t rank = (size_t)(p / 100 * (double)nlat + 0.999999);
    rank = rank < 1 ? 1 : rank > nlat ? nlat : rank;
    return latencies[rank - 1];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: scale-load --port P --conns N --turns T --ramp-ms R --body FILE --key K --tokens C [--timeout-ms MS]\n");
    exit(2);
}

static unsigned long num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    unsigned long port = 0, ramp_ms = 0, timeout_ms = 60000;
    const char *body_path = NULL, *key = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--port") == 0)
            port = num(v);
        else if (strcmp(k, "--conns") == 0)
            nconns = (unsigned)num(v);
        else if (strcmp(k, "--turns") == 0)
            turns = (unsigned)num(v);
        else if (strcmp(k, "--ramp-ms") == 0)
            ramp_ms = num(v);
        else if (strcmp(k, "--tokens") == 0)
            tokens_expected = (unsigned)num(v);
        else if (strcmp(k, "--timeout-ms") == 0)
            timeout_ms = num(v);
        else if (strcmp(k, "--body") == 0)
            body_path = v;
        else if (strcmp(k, "--key") == 0)
            key = v;
        else
            usage();
    }
    if (port == 0 || port > 65535 || nconns == 0 || turns == 0 || body_path == NULL || key == NULL)
        usage();
    size_t body_len;
    char *body = read_file(body_path, &body_len);
    if (body == NULL) {
        fprintf(stderr, "scale-load: cannot read %s\n", body_path);
        return 2;
    }
    request = malloc(body_len + 1024);
    int head = snprintf(request, 1024,
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%lu\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                        port, key, body_len);
    if (head < 0 || head >= 1024)
        usage();
    memcpy(request + head, body, body_len);
    request_len = (size_t)head + body_len;
    free(body);

    loop = uv_default_loop();
    uv_ip4_addr("127.0.0.1", (int)port, &addr);
    conns = calloc(nconns, sizeof(*conns));
    latencies = calloc((size_t)nconns * turns, sizeof(*latencies));
    ramp_ns = (uint64_t)ramp_ms * 1000000;
    timeout_ns = (uint64_t)timeout_ms * 1000000;
    t0 = uv_hrtime();
    uv_timer_init(loop, &ramp_timer);
    uv_timer_start(&ramp_timer, on_ramp, 0, 1);
    uv_timer_init(loop, &sweep_timer);
    uv_timer_start(&sweep_timer, on_sweep, 1000, 1000);
    uv_run(loop, UV_RUN_DEFAULT);

    double duration = (double)(uv_hrtime() - t0) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu =
        (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    qsort(latencies, nlat, sizeof(*latencies), cmp_double);
    printf("{\"conns\":%u,\"turns\":%llu,\"ok\":%llu,\"errors\":{", nconns, (unsigned long long)nconns * turns, ok_turns);
    int comma = 0;
    for (int k = 0; k < E_COUNT; ++k)
        if (errors[k] != 0) {
            printf("%s\"%s\":%llu", comma ? "," : "", error_names[k], errors[k]);
            comma = 1;
        }
    printf("},\"first_token_ms\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},", nlat, pct(50), pct(90), pct(99),
           pct(100));
    printf("\"open_peak\":%u,\"duration_ms\":%.0f,\"cpu_ms\":%.0f}\n", open_peak, duration, cpu);
    return 0;
}
