/*
 * Unit tests for the LLM tools (tools/) against a real Postgres: every tool's
 * valid calls, its argument checks (which must run no SQL), not-found answers,
 * SQL-injection strings stored verbatim, caller scoping, idempotency keys,
 * the escalation email through a real SMTP server (python3 -m aiosmtpd), the
 * Agora RTM message through a fake HTTP endpoint on the test's own loop, and
 * cancellation mid-transfer. SB_TEST_DATABASE_URL names a database whose user
 * may CREATE DATABASE (tests/pg/cluster.sh start DIR prints one); without it
 * the file is skipped.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <uv.h>

#include "migrate.h"
#include "request.h"
#include "sb/buf.h"
#include "sb/config.h"
#include "sb/curl_uv.h"
#include "sb/pgpool.h"
#include "sb/tools.h"
#include "pgtest.h"
#include "tap.h"

static uv_loop_t *loop;
static sb_curlm_t *curlm;
static sb_pgpool_t *pool;
static sb_config_t config; /* the main configuration: database, SMTP (when aiosmtpd runs) and Agora */
static PGconn *db;
static char created_dbs[2][64];
static size_t ncreated;
static const sb_caller_t nobody;

/* --- the database ----------------------------------------------------------------------------- */

/* A fresh database, migrated and seeded with the given table names; returns its conninfo (free it). */
static char *fresh_db(const char *tag, char *tickets, char *interactions)
{
    char *name = created_dbs[ncreated++];
    snprintf(name, sizeof(created_dbs[0]), "sb_tools_test_%ld_%s", (long)getpid(), tag);
    exec_admin("DROP DATABASE IF EXISTS %s", name);
    exec_admin("CREATE DATABASE %s", name);
    char *url = conninfo_for(name);
    sb_config_t c;
    memset(&c, 0, sizeof(c));
    c.database_url = url;
    c.tickets_table = tickets;
    c.interactions_table = interactions;
    c.pg_connect_timeout_ms = 5000;
    if (sb_migrate_run(&c, 1, NULL) != 0) {
        printf("Bail out! cannot migrate and seed %s\n", name);
        exit(1);
    }
    return url;
}

static PGconn *open_db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        printf("Bail out! cannot connect: %s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

/* The first column of the first row of `sql` with up to two text parameters, malloc'd ("(null)", "(none)", "(error)"). */
static char *value2(const char *sql, const char *p1, const char *p2)
{
    const char *params[2] = {p1, p2};
    int n = p2 ? 2 : p1 ? 1 : 0;
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    char *v;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        printf("# %s: %s", sql, PQerrorMessage(db));
        v = strdup("(error)");
    } else if (PQntuples(res) == 0) {
        v = strdup("(none)");
    } else {
        v = strdup(PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return v;
}

static char *value(const char *sql, const char *p1)
{
    return value2(sql, p1, NULL);
}

static long long number2(const char *sql, const char *p1, const char *p2)
{
    char *v = value2(sql, p1, p2);
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end != '\0' || end == v)
        n = -1;
    free(v);
    return n;
}

static long long number(const char *sql, const char *p1)
{
    return number2(sql, p1, NULL);
}

/* Whether `sql` (one parameter) yields exactly `want`. */
static int db_is(const char *sql, const char *p1, const char *want)
{
    char *v = value(sql, p1);
    int same = strcmp(v, want) == 0;
    if (!same)
        printf("#   db got:  '%s'\n#   db want: '%s'\n", v, want);
    free(v);
    return same;
}

static long long seed_ticket(const char *key)
{
    return number("select id from support_tickets where idempotency_key = $1", key);
}

/* --- the loop --------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until cond(arg) holds or timeout_ms passes; returns whether it holds. */
static int run_until(int (*cond)(void *), void *arg, unsigned timeout_ms)
{
    uv_timer_t *tick = calloc(1, sizeof(*tick));
    uv_timer_init(loop, tick);
    uv_timer_start(tick, on_tick, 5, 5);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    int held;
    while (!(held = cond(arg)) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)tick, (uv_close_cb)free);
    return held;
}

static int no_transfers(void *arg)
{
    return sb_curlm_active(curlm) == 0;
}

/* --- calling tools ---------------------------------------------------------------------------- */

struct outcome {
    int calls;
    char *text;
};

static void on_done(void *data, const char *result, size_t len)
{
    struct outcome *o = data;
    ++o->calls;
    free(o->text);
    o->text = strndup(result, len);
}

static int finished(void *arg)
{
    return ((struct outcome *)arg)->calls > 0;
}

static const sb_tool_t *tool(const char *name)
{
    const sb_tool_t *t = sb_tools_find(name, strlen(name));
    if (t == NULL) {
        printf("Bail out! tool %s is not enabled\n", name);
        exit(1);
    }
    return t;
}

/* Runs one call to its end (at most 15 s); returns its parsed result, or NULL when it did not finish. */
static json_t *call_with(const sb_tool_t *t, const char *args, const char *key, const sb_caller_t *caller, sb_pgpool_t *pg,
                         const sb_config_t *cf)
{
    sb_tool_env_t env = {cf, pg, curlm, caller ? caller : &nobody};
    struct outcome o = {0, NULL};
    sb_tool_call_t *c = sb_tool_call_start(t, &env, args, strlen(args), key, on_done, &o);
    if (o.calls != 0)
        ok(0, "%s: done() ran inside sb_tool_call_start", t->name);
    if (!run_until(finished, &o, 15000)) {
        sb_tool_call_cancel(c);
        ok(0, "%s %s did not finish", t->name, args);
        return NULL;
    }
    json_t *r = json_loads(o.text, 0, NULL);
    if (r == NULL)
        printf("# not JSON: %s\n", o.text);
    free(o.text);
    return r;
}

static json_t *call_as(const char *name, const char *args, const char *key, const sb_caller_t *caller)
{
    return call_with(tool(name), args, key, caller, pool, &config);
}

static json_t *call(const char *name, const char *args, const char *key)
{
    return call_as(name, args, key, NULL);
}

/* Same, with the arguments built by json_pack (for strings that need escaping); takes the reference. */
static json_t *call_j(const char *name, json_t *args, const char *key, const sb_caller_t *caller)
{
    char *text = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    json_t *r = call_as(name, text, key, caller);
    free(text);
    return r;
}

static const char *err_of(json_t *r)
{
    return json_string_value(json_object_get(r, "error"));
}

static const char *str_of(json_t *r, const char *key)
{
    return json_string_value(json_object_get(r, key));
}

static long long int_of(json_t *r, const char *key)
{
    json_t *v = json_object_get(r, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static int is_true(json_t *r, const char *key)
{
    return json_is_true(json_object_get(r, key));
}

static void show(json_t *r)
{
    char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
    printf("#   result: %.600s\n", text ? text : "(none)");
    free(text);
}

/* ok() on a successful result (no "error"), printing it otherwise. */
static int ok_result(json_t *r, const char *what)
{
    int good = r != NULL && err_of(r) == NULL;
    if (!ok(good, "%s", what))
        show(r);
    return good;
}

/* ok() on an {"error": ...} result containing `needle`. */
static int ok_error(json_t *r, const char *needle, const char *what)
{
    const char *e = err_of(r);
    int good = e != NULL && strstr(e, needle) != NULL;
    if (!ok(good, "%s", what)) {
        printf("#   want an error containing '%s'\n", needle);
        show(r);
    }
    return good;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* --- a fake HTTP endpoint on the test's loop (Agora's REST API, or a server that never answers) -------- */

struct fake {
    uv_tcp_t server;
    int port;
    int status;         /* the answer's status */
    const char *answer; /* and body */
    int hold;           /* read, never answer */
    int accepted, requests, open, closed;
    char method[16], target[1024], auth[512], content_type[128];
    char *body;
};

struct fconn {
    uv_tcp_t tcp;
    struct fake *f;
    sb_buf_t in;
    uv_write_t w;
    char *out;
    int closing;
};

static void fconn_closed(uv_handle_t *h)
{
    struct fconn *c = (struct fconn *)h;
    --c->f->open;
    sb_buf_dispose(&c->in);
    free(c->out);
    free(c);
}

static void fconn_close(struct fconn *c)
{
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, fconn_closed);
    }
}

static void falloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    b->base = malloc(size);
    b->len = b->base ? size : 0;
}

static void fwritten(uv_write_t *w, int status)
{
    fconn_close(w->data);
}

/* The value of header `name` (with its colon) in the NUL-terminated head, into out. */
static void header(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strcasestr(head, name);
    if (p == NULL)
        return;
    p += strlen(name);
    while (*p == ' ')
        ++p;
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\r\n"), p);
}

static void fread_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct fconn *c = (struct fconn *)s;
    if (n > 0)
        sb_buf_append(&c->in, b->base, (size_t)n);
    free(b->base);
    if (n < 0) {
        fconn_close(c);
        return;
    }
    if (c->out != NULL || c->in.len == 0)
        return;
    sb_buf_append(&c->in, "", 1); /* a NUL for the string functions, dropped again below */
    --c->in.len;
    char *end = strstr(c->in.base, "\r\n\r\n");
    if (end == NULL)
        return;
    size_t head_len = (size_t)(end - c->in.base) + 4;
    char cl[32];
    end[2] = '\0'; /* the head, as a string, for a moment */
    header(c->in.base, "\r\ncontent-length:", cl, sizeof(cl));
    end[2] = '\r';
    size_t body_len = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (c->in.len < head_len + body_len)
        return;
    struct fake *f = c->f;
    ++f->requests;
    end[2] = '\0';
    sscanf(c->in.base, "%15s %1023s", f->method, f->target);
    header(c->in.base, "\r\nauthorization:", f->auth, sizeof(f->auth));
    header(c->in.base, "\r\ncontent-type:", f->content_type, sizeof(f->content_type));
    free(f->body);
    f->body = strndup(c->in.base + head_len, body_len);
    if (f->hold)
        return;
    sb_buf_t out;
    sb_buf_init(&out, 65536);
    sb_buf_appendf(&out,
                   "HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   f->status, strlen(f->answer), f->answer);
    c->out = out.base;
    uv_buf_t wb = uv_buf_init(c->out, (unsigned)out.len);
    c->w.data = c;
    uv_write(&c->w, (uv_stream_t *)&c->tcp, &wb, 1, fwritten);
}

static void on_fake_connection(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    struct fconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->f = f;
    sb_buf_init(&c->in, 1 << 20);
    uv_tcp_init(loop, &c->tcp);
    ++f->open;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        fconn_close(c);
        return;
    }
    ++f->accepted;
    uv_read_start((uv_stream_t *)&c->tcp, falloc, fread_cb);
}

static void fake_start(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->status = 200;
    f->answer = "{\"result\":\"success\",\"request_id\":\"r-1\",\"code\":\"message_sent\"}";
    uv_tcp_init(loop, &f->server);
    f->server.data = f;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&f->server, (const struct sockaddr *)&addr, 0);
    uv_listen((uv_stream_t *)&f->server, 16, on_fake_connection);
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&bound, &len);
    f->port = ntohs(bound.sin_port);
}

static int fake_idle(void *arg)
{
    return ((struct fake *)arg)->open == 0;
}

static void on_fake_closed(uv_handle_t *h)
{
    ((struct fake *)h->data)->closed = 1;
}

static int fake_closed(void *arg)
{
    return ((struct fake *)arg)->closed;
}

/* Closes the endpoint and waits until libuv is done with it (it may live on the caller's stack). */
static void fake_stop(struct fake *f)
{
    run_until(fake_idle, f, 5000);
    uv_close((uv_handle_t *)&f->server, on_fake_closed);
    run_until(fake_closed, f, 5000);
    free(f->body);
    f->body = NULL;
}

struct count_goal {
    int *count;
    int want;
};

static int reached(void *arg)
{
    struct count_goal *g = arg;
    return *g->count >= g->want;
}

/* A loopback port nothing listens on (bound, then released). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* --- a real SMTP server: python3 -m aiosmtpd, whose default handler prints each message ------------- */

static pid_t smtp_pid;
static int smtp_port;
static char smtp_out[64];
static char smtp_url[64];

static const char *python_with_aiosmtpd(void)
{
    /* Debian's python3-aiosmtpd lives in the system interpreter, which another python3 on PATH may shadow */
    static const char *const candidates[] = {"/usr/bin/python3", "python3"};
    for (size_t i = 0; i < 2; ++i) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "%s -c 'import aiosmtpd' >/dev/null 2>&1", candidates[i]);
        if (system(cmd) == 0)
            return candidates[i];
    }
    return NULL;
}

static int accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    return rc == 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int start_smtp(void)
{
    const char *python = python_with_aiosmtpd();
    if (python == NULL)
        return -1;
    snprintf(smtp_out, sizeof(smtp_out), "/tmp/sb_test_tools_smtp_XXXXXX");
    int fd = mkstemp(smtp_out);
    if (fd < 0)
        return -1;
    smtp_port = closed_port();
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", smtp_port);
    smtp_pid = fork();
    if (smtp_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test must not leave the server behind */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(fd, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
        execlp(python, python, "-u", "-m", "aiosmtpd", "-n", "-l", listen, (char *)NULL);
        _exit(127);
    }
    close(fd);
    double deadline = now_ms() + 20000;
    while (!accepts(smtp_port)) {
        int status;
        if (now_ms() > deadline || waitpid(smtp_pid, &status, WNOHANG) == smtp_pid)
            return -1;
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL); /* between polls, not a guess at readiness */
    }
    snprintf(smtp_url, sizeof(smtp_url), "smtp://127.0.0.1:%d", smtp_port);
    return 0;
}

static void stop_smtp(void)
{
    if (smtp_pid > 0) {
        kill(smtp_pid, SIGTERM);
        waitpid(smtp_pid, NULL, 0);
        unlink(smtp_out);
    }
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return strdup("");
    sb_buf_t b;
    sb_buf_init(&b, 64u << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        sb_buf_append(&b, chunk, n);
    fclose(fp);
    sb_buf_append(&b, "", 1);
    return b.base;
}

#define MESSAGE_START "---------- MESSAGE FOLLOWS ----------\n"
#define MESSAGE_END "------------ END MESSAGE ------------\n"

/* The number of complete messages aiosmtpd has printed. */
static int smtp_messages(void)
{
    char *all = slurp(smtp_out);
    int n = 0;
    for (const char *p = all; (p = strstr(p, MESSAGE_END)) != NULL; p += strlen(MESSAGE_END))
        ++n;
    free(all);
    return n;
}

static int smtp_has(void *arg)
{
    return smtp_messages() >= *(int *)arg;
}

/* The n-th (0-based) message as printed: its header lines (unfolded), and its body. Both malloc'd. */
static void smtp_message(int n, char **headers, char **body)
{
    char *all = slurp(smtp_out), *p = all;
    for (int i = 0; i <= n && p != NULL; ++i) {
        p = strstr(p, MESSAGE_START);
        if (p != NULL)
            p += strlen(MESSAGE_START);
    }
    char *end = p ? strstr(p, MESSAGE_END) : NULL;
    if (p == NULL || end == NULL) {
        *headers = strdup("");
        *body = strdup("");
        free(all);
        return;
    }
    *end = '\0';
    char *blank = strstr(p, "\n\n");
    if (blank == NULL)
        blank = p + strlen(p);
    sb_buf_t h;
    sb_buf_init(&h, 1 << 20);
    for (char *line = p; line < blank;) {
        size_t len = strcspn(line, "\n");
        if (line != p && (line[0] == ' ' || line[0] == '\t')) /* a folded line continues the previous header */
            --h.len;
        sb_buf_append(&h, line, len);
        sb_buf_append(&h, "\n", 1);
        line += len + 1;
    }
    sb_buf_append(&h, "", 1);
    *headers = h.base;
    *body = strdup(*blank ? blank + 2 : "");
    free(all);
}

/* The value of `name` ("Subject:") in unfolded headers, malloc'd ("" when absent). */
static char *header_value(const char *headers, const char *name)
{
    for (const char *line = headers; *line != '\0'; line += strcspn(line, "\n") + 1) {
        if (strncasecmp(line, name, strlen(name)) == 0) {
            const char *v = line + strlen(name);
            while (*v == ' ')
                ++v;
            return strndup(v, strcspn(v, "\n"));
        }
        if (line[strcspn(line, "\n")] == '\0')
            break;
    }
    return strdup("");
}

/* Decodes RFC 2047 =?UTF-8?B?...?= words (whitespace between them dropped); other text is kept. */
static char *decode_words(const char *s)
{
    sb_buf_t out;
    sb_buf_init(&out, 1 << 16);
    const char *p = s;
    while (*p != '\0') {
        if (strncmp(p, "=?UTF-8?B?", 10) == 0) {
            const char *start = p + 10, *stop = strstr(start, "?=");
            if (stop == NULL)
                break;
            unsigned char bin[512];
            size_t len = 0;
            if (sodium_base642bin(bin, sizeof(bin), start, (size_t)(stop - start), NULL, &len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) == 0)
                sb_buf_append(&out, bin, len);
            p = stop + 2;
            const char *q = p;
            while (*q == ' ' || *q == '\t')
                ++q;
            if (strncmp(q, "=?", 2) == 0)
                p = q;
            continue;
        }
        sb_buf_append(&out, p, 1);
        ++p;
    }
    sb_buf_append(&out, "", 1);
    return out.base;
}

static char *decode_base64_body(const char *b64)
{
    size_t cap = strlen(b64) + 1, len = 0;
    unsigned char *bin = malloc(cap);
    if (bin == NULL)
        abort();
    if (sodium_base642bin(bin, cap, b64, strlen(b64), " \r\n", &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
        len = 0;
    bin[len] = '\0';
    return (char *)bin;
}

/* --- stderr capture (the log) ----------------------------------------------------------------- */

static int saved_stderr = -1;
static char log_path[64];

static void capture_log(void)
{
    snprintf(log_path, sizeof(log_path), "/tmp/sb_test_tools_log_XXXXXX");
    int fd = mkstemp(log_path);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static char *captured_log(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    char *text = slurp(log_path);
    unlink(log_path);
    return text;
}

/* --- the tests -------------------------------------------------------------------------------- */

static const char *const all_tools[] = {
    "fetch_customer_profile", "fetch_recent_orders", "get_order_status",         "create_support_ticket",
    "update_ticket_status",   "get_ticket_details",  "log_customer_interaction", "escalate_ticket",
    "log_change_event",       "record_agent_event",  "send_rtm_message",
};
#define NALL (sizeof(all_tools) / sizeof(all_tools[0]))

/* A table entry whether or not it is enabled (sb_tools_find returns only enabled ones). */
static const sb_tool_t *table_tool(const char *name)
{
    size_t n;
    const sb_tool_t *rows = sb_tools_table(&n);
    for (size_t i = 0; i < n; ++i)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    printf("Bail out! no tool %s in the table\n", name);
    exit(1);
}

/* What a request without tools of its own is offered (sent as its `tools`). */
static json_t *offered_tools(void)
{
    json_t *body = json_object();
    uint32_t shadowed;
    const char *text = sb_tools_offer(body, 0, &shadowed);
    ok(json_object_size(body) == 0, "the body itself is left alone");
    json_decref(body);
    json_t *tools = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : json_array();
    ok(json_is_array(tools), "the offered tools are one JSON array");
    if (json_is_array(tools))
        return tools;
    json_decref(tools);
    return json_array();
}

static size_t offered_count(void)
{
    json_t *t = offered_tools();
    size_t n = json_array_size(t);
    json_decref(t);
    return n;
}

static int found(const char *name)
{
    return sb_tools_find(name, strlen(name)) != NULL;
}

static void test_availability(void)
{
    char err[256] = "";
    sb_config_t c = config;
    c.database_url = NULL;
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "init without DATABASE_URL");
    is_int(offered_count(), 1, "without DATABASE_URL only the tool that needs no database is offered");
    ok(found("send_rtm_message") && !found("get_order_status") && !found("escalate_ticket"),
       "send_rtm_message is offered, the database tools are not");
    json_t *r = call_with(table_tool("get_order_status"), "{\"order_number\":\"4417\"}", NULL, NULL, NULL, &c);
    ok_error(r, "database unavailable", "a database tool called without a pool says the database is unavailable");
    json_decref(r);

    c = config;
    c.agora_customer_secret = NULL;
    capture_log();
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "init with AGORA_APP_ID but no secret still starts");
    char *log = captured_log();
    ok(strstr(log, "send_rtm_message is not offered") != NULL, "and warns that messaging is not offered");
    free(log);
    is_int(offered_count(), NALL - 1, "without Agora credentials every tool but send_rtm_message is offered");
    ok(!found("send_rtm_message"), "send_rtm_message is not found");
    r = call_with(table_tool("send_rtm_message"), "{\"user_id\":\"u1\",\"message\":\"hi\"}", NULL, NULL, pool, &c);
    ok_error(r, "messaging is not configured", "called anyway, it says messaging is not configured");
    json_decref(r);

    c = config;
    c.tools_enabled = "escalate_ticket, send_rtm_message";
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "TOOLS_ENABLED with two names");
    ok(offered_count() == 2 && found("escalate_ticket") && found("send_rtm_message") && !found("get_ticket_details"),
       "offers exactly those two");
    c.tools_enabled = "none";
    sb_tools_init(&c, err, sizeof(err));
    is_int(offered_count(), 0, "TOOLS_ENABLED=none offers nothing");
    c.tools_enabled = "escalate_tickets";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "escalate_tickets") != NULL, "an unknown tool name is refused: %s",
       err);

    c = config;
    c.smtp_url = "http://mail.example";
    c.support_email = "desk@example.com";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "SMTP_URL") != NULL, "SMTP_URL must be smtp:// or smtps://: %s",
       err);
    c.smtp_url = "smtps://mail.example";
    c.support_email = NULL;
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "SUPPORT_EMAIL") != NULL, "SMTP_URL needs SUPPORT_EMAIL: %s", err);
    c.support_email = "desk@example.com";
    c.smtp_from = "desk@example.com\r\nBcc: everyone@example.com";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "SMTP_FROM") != NULL, "a line break in SMTP_FROM is refused: %s",
       err);
    c.smtp_from = "not an address";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "SMTP_FROM") != NULL, "SMTP_FROM must be an address: %s", err);
    c.smtp_from = NULL;
    c.support_email = "desk@example.com, lead@example.com";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "set SMTP_FROM") != NULL,
       "several SUPPORT_EMAIL addresses need SMTP_FROM: %s", err);
    c.smtp_from = "desk@example.com";
    c.support_email = "desk@example.com, nobody";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "SUPPORT_EMAIL must be") != NULL,
       "every SUPPORT_EMAIL entry must be an address: %s", err);
    c = config;
    c.agora_rtm_base_url = "ftp://api.agora.io";
    ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "AGORA_RTM_BASE_URL") != NULL,
       "AGORA_RTM_BASE_URL must be http(s): %s", err);

    is_int(sb_tools_init(&config, err, sizeof(err)), 0, "init with everything configured");
    json_t *tools = offered_tools();
    is_int(json_array_size(tools), NALL, "all eleven tools are offered");
    json_t *with_own = json_pack("{s:[{s:s, s:{s:s}}]}", "tools", "type", "function", "function", "name", "client_fn");
    uint32_t shadowed;
    ok(sb_tools_offer(with_own, 0, &shadowed) == NULL && shadowed == 0,
       "a request with tools of its own gets switchboard's in its array");
    json_t *merged = json_object_get(with_own, "tools");
    ok(json_array_size(merged) == NALL + 1 &&
           strcmp(json_string_value(json_object_get(json_object_get(json_array_get(merged, 0), "function"), "name")),
                  "client_fn") == 0,
       "after the client's own");
    json_decref(with_own);
    /* the client's own create_support_ticket replaces switchboard's for the request */
    json_t *same = json_pack("{s:[{s:s, s:{s:s, s:s}}]}", "tools", "type", "function", "function", "name", "create_support_ticket",
                             "description", "the client's");
    sb_tools_offer(same, 0, &shadowed);
    size_t copies = 0, k;
    json_t *entry;
    json_array_foreach(json_object_get(same, "tools"), k, entry)
    {
        json_t *fn = json_object_get(entry, "function");
        if (strcmp(json_string_value(json_object_get(fn, "name")), "create_support_ticket") == 0) {
            ++copies;
            ok(strcmp(json_string_value(json_object_get(fn, "description")), "the client's") == 0, "the one sent is the client's");
        }
    }
    is_int(copies, 1, "a client's tool of the same name: one tool of that name is sent");
    is_int(json_array_size(json_object_get(same, "tools")), NALL, "and the other ten of switchboard's");
    ok(sb_tools_find_offered("create_support_ticket", 21, shadowed) == NULL &&
           sb_tools_find_offered("get_order_status", 16, shadowed) != NULL,
       "its calls are the client's; the others still switchboard's");
    char names[128];
    sb_tools_names(shadowed, names, sizeof(names));
    is_str(names, "create_support_ticket", "the shadowed tool is named for the access log");
    json_decref(same);
    int good = 1;
    for (size_t i = 0; i < NALL; ++i) {
        int seen = 0;
        size_t j;
        json_t *t;
        json_array_foreach(tools, j, t)
        {
            json_t *fn = json_object_get(t, "function");
            if (strcmp(json_string_value(json_object_get(fn, "name")), all_tools[i]) != 0)
                continue;
            json_t *params = json_object_get(fn, "parameters");
            seen = json_is_object(params) && json_is_false(json_object_get(params, "additionalProperties")) &&
                   json_string_length(json_object_get(fn, "description")) > 20;
        }
        if (!seen)
            printf("#   %s is missing or has no strict schema\n", all_tools[i]);
        good &= seen;
    }
    ok(good, "each with a description and a schema that refuses unknown fields");
    json_decref(tools);
}

struct bad_case {
    const char *tool, *args, *needle;
};

static void test_invalid_arguments(void)
{
    char *s65 = repeat('a', 65), *s129 = repeat('a', 129), *s201 = repeat('a', 201), *s255 = repeat('a', 255);
    char *s1001 = repeat('a', 1001), *s2001 = repeat('a', 2001), *s4001 = repeat('a', 4001), *s4097 = repeat('a', 4097);
    char *big = repeat('a', 9000);
    /* {"tool", "arguments", "what the error must name"} */
    const struct bad_case fixed[] = {
        {"fetch_customer_profile", "{\"customer_id\":\"1\"}", "customer_id must be an integer"},
        {"fetch_customer_profile", "{}", "give customer_id or email"},
        {"fetch_customer_profile", "{\"customer_id\":-4}", "customer_id must be between"},
        {"fetch_customer_profile", "{\"customer_id\":1,\"name\":\"x\"}", "name"},
        {"fetch_customer_profile", "[1]", "must be a JSON object"},
        {"fetch_customer_profile", "{\"customer_id\":", "not valid JSON"},
        {"fetch_customer_profile", "{\"email\":null}", "email must be a string"},
        {"fetch_recent_orders", "{\"customer_id\":1,\"limit\":\"5\"}", "limit must be an integer"},
        {"fetch_recent_orders", "{\"limit\":5}", "give customer_id or email"},
        {"fetch_recent_orders", "{\"customer_id\":1,\"limit\":21}", "limit must be between 1 and 20"},
        {"fetch_recent_orders", "{\"customer_id\":1,\"limit\":0}", "limit must be between 1 and 20"},
        {"fetch_recent_orders", "{\"customer_id\":1,\"sort\":\"asc\"}", "sort"},
        {"fetch_recent_orders", "\"customer 1\"", "must be a JSON object"},
        {"get_order_status", "{\"order_number\":4417}", "order_number must be a string"},
        {"get_order_status", "{}", "order_number"},
        {"get_order_status", "{\"order_number\":\"123456789012345678901234567890123\"}", "order_number must be 1 to 32"},
        {"get_order_status", "{\"order_number\":\"4417\",\"verbose\":true}", "verbose"},
        {"get_order_status", "{\"order_number\":\"4417\",\"order_number\":\"1002\"}", "not valid JSON"},
        {"create_support_ticket", "{\"description\":\"no subject\"}", "subject"},
        {"create_support_ticket", "{\"subject\":\"x\",\"priority\":\"asap\"}",
         "priority must be one of: low, normal, high, urgent"},
        {"create_support_ticket", "{\"subject\":\"\"}", "subject must be 1 to 200"},
        {"create_support_ticket", "{\"subject\":\"x\",\"customer_id\":\"7\"}", "customer_id must be an integer"},
        {"create_support_ticket", "{\"subject\":\"x\",\"customer_id\":-1}", "customer_id must be between"},
        {"create_support_ticket", "{\"subject\":\"x\",\"status\":\"open\"}", "status"},
        {"create_support_ticket", "null", "must be a JSON object"},
        {"update_ticket_status", "{\"ticket_id\":1}", "status"},
        {"update_ticket_status", "{\"status\":\"open\"}", "ticket_id"},
        {"update_ticket_status", "{\"ticket_id\":1,\"status\":\"done\"}",
         "status must be one of: open, pending, in_progress, escalated, resolved, closed"},
        {"update_ticket_status", "{\"ticket_id\":0,\"status\":\"open\"}", "ticket_id must be between 1"},
        {"update_ticket_status", "{\"ticket_id\":\"1\",\"status\":\"open\"}", "ticket_id must be an integer"},
        {"update_ticket_status", "{\"ticket_id\":1,\"status\":\"open\",\"note\":\"\"}", "note must be 1 to 4000"},
        {"update_ticket_status", "{\"ticket_id\":1,\"status\":\"open\",\"by\":\"me\"}", "by"},
        {"get_ticket_details", "{}", "ticket_id"},
        {"get_ticket_details", "{\"ticket_id\":1.5}", "ticket_id must be an integer"},
        {"get_ticket_details", "{\"ticket_id\":-3}", "ticket_id must be between 1"},
        {"get_ticket_details", "{\"ticket_id\":99999999999999999999}", "not valid JSON"},
        {"get_ticket_details", "{\"ticket_id\":1,\"full\":true}", "full"},
        {"get_ticket_details", "[]", "must be a JSON object"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"summary\":\"x\"}", "kind"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"note\"}", "summary"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"fax\",\"summary\":\"x\"}",
         "kind must be one of: note, call, email, chat"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"status_change\",\"summary\":\"x\"}", "kind must be one of"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"note\",\"summary\":\"\"}", "summary must be 1 to 4000"},
        {"log_customer_interaction", "{\"ticket_id\":0,\"kind\":\"note\",\"summary\":\"x\"}", "ticket_id must be between 1"},
        {"log_customer_interaction", "{\"customer_id\":-2,\"kind\":\"note\",\"summary\":\"x\"}", "customer_id must be between 1"},
        {"log_customer_interaction", "{\"email\":5,\"kind\":\"note\",\"summary\":\"x\"}", "email must be a string"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"note\",\"summary\":\"x\",\"mood\":\"ok\"}", "mood"},
        {"escalate_ticket", "{\"ticket_id\":1}", "reason"},
        {"escalate_ticket", "{\"reason\":\"x\"}", "ticket_id"},
        {"escalate_ticket", "{\"ticket_id\":1,\"reason\":\"x\",\"priority\":\"critical\"}", "priority must be one of"},
        {"escalate_ticket", "{\"ticket_id\":1,\"reason\":\"\"}", "reason must be 1 to 1000"},
        {"escalate_ticket", "{\"ticket_id\":0,\"reason\":\"x\"}", "ticket_id must be between 1"},
        {"escalate_ticket", "{\"ticket_id\":true,\"reason\":\"x\"}", "ticket_id must be an integer"},
        {"escalate_ticket", "{\"ticket_id\":1,\"reason\":\"x\",\"escalated_to\":\"\"}", "escalated_to must be 1 to 200"},
        {"escalate_ticket", "{\"ticket_id\":1,\"reason\":\"x\",\"cc\":\"boss\"}", "cc"},
        {"log_change_event", "{\"entity_type\":\"ticket\",\"entity_id\":\"1\",\"change_type\":\"x\"}", "description"},
        {"log_change_event", "{\"entity_type\":\"ticket\",\"entity_id\":1,\"change_type\":\"x\",\"description\":\"d\"}",
         "entity_id must be a string"},
        {"log_change_event", "{\"entity_type\":\"ticket\",\"entity_id\":\"1\",\"change_type\":\"x\",\"description\":\"\"}",
         "description must be 1 to 2000"},
        {"log_change_event", "{\"entity_type\":\"\",\"entity_id\":\"1\",\"change_type\":\"x\",\"description\":\"d\"}",
         "entity_type must be 1 to 64"},
        {"log_change_event",
         "{\"entity_type\":\"t\",\"entity_id\":\"1\",\"change_type\":\"x\",\"description\":\"d\",\"actor\":\"me\"}", "actor"},
        {"record_agent_event", "{\"payload\":{}}", "event_type"},
        {"record_agent_event", "{\"event_type\":\"x\",\"payload\":[1,2]}", "payload must be a JSON object"},
        {"record_agent_event", "{\"event_type\":\"x\",\"payload\":\"{}\"}", "payload must be a JSON object"},
        {"record_agent_event", "{\"event_type\":\"x\",\"payload\":null}", "payload must be a JSON object"},
        {"record_agent_event", "{\"event_type\":\"x\",\"agent_id\":7}", "agent_id must be a string"},
        {"record_agent_event", "{\"event_type\":\"x\",\"turn_id\":\"t\"}", "turn_id"},
        {"send_rtm_message", "{\"user_id\":\"u1\"}", "message"},
        {"send_rtm_message", "{\"user_id\":\"\",\"message\":\"hi\"}", "user_id must be 1 to 64"},
        {"send_rtm_message", "{\"user_id\":\"u1\",\"message\":\"\"}", "message must be 1 to 4096"},
        {"send_rtm_message", "{\"user_id\":42,\"message\":\"hi\"}", "user_id must be a string"},
        {"send_rtm_message", "{\"user_id\":\"u1\",\"message\":\"hi\",\"channel\":\"c\"}", "channel"},
        {"send_rtm_message", "42", "must be a JSON object"},
    };
    /* the too-long cases, built */
    struct {
        const char *tool;
        json_t *args;
        const char *needle;
    } built[] = {
        {"fetch_customer_profile", json_pack("{s:s}", "email", s255), "email must be 3 to 254"},
        {"fetch_recent_orders", json_pack("{s:s}", "email", s255), "email must be 3 to 254"},
        {"create_support_ticket", json_pack("{s:s}", "subject", s201), "subject must be 1 to 200"},
        {"create_support_ticket", json_pack("{s:s, s:s}", "subject", "x", "description", s4001), "description must be 0 to 4000"},
        {"update_ticket_status", json_pack("{s:i, s:s, s:s}", "ticket_id", 1, "status", "open", "note", s4001),
         "note must be 1 to 4000"},
        {"log_customer_interaction", json_pack("{s:i, s:s, s:s}", "ticket_id", 1, "kind", "note", "summary", s4001),
         "summary must be 1 to 4000"},
        {"escalate_ticket", json_pack("{s:i, s:s}", "ticket_id", 1, "reason", s1001), "reason must be 1 to 1000"},
        {"escalate_ticket", json_pack("{s:i, s:s, s:s}", "ticket_id", 1, "reason", "x", "escalated_to", s201),
         "escalated_to must be 1 to 200"},
        {"log_change_event",
         json_pack("{s:s, s:s, s:s, s:s}", "entity_type", s65, "entity_id", "1", "change_type", "x", "description", "d"),
         "entity_type must be 1 to 64"},
        {"log_change_event",
         json_pack("{s:s, s:s, s:s, s:s}", "entity_type", "t", "entity_id", s129, "change_type", "x", "description", "d"),
         "entity_id must be 1 to 128"},
        {"log_change_event",
         json_pack("{s:s, s:s, s:s, s:s}", "entity_type", "t", "entity_id", "1", "change_type", s65, "description", "d"),
         "change_type must be 1 to 64"},
        {"log_change_event",
         json_pack("{s:s, s:s, s:s, s:s}", "entity_type", "t", "entity_id", "1", "change_type", "x", "description", s2001),
         "description must be 1 to 2000"},
        {"record_agent_event", json_pack("{s:s}", "event_type", s65), "event_type must be 1 to 64"},
        {"record_agent_event", json_pack("{s:s, s:{s:s}}", "event_type", "x", "payload", "blob", big),
         "payload must be at most 8192"},
        {"send_rtm_message", json_pack("{s:s, s:s}", "user_id", s65, "message", "hi"), "user_id must be 1 to 64"},
        {"send_rtm_message", json_pack("{s:s, s:s}", "user_id", "u1", "message", s4097), "message must be 1 to 4096"},
    };

    /* A pool of its own that opens connections only for a statement: still closed afterwards means no SQL ran. */
    sb_pgpool_config_t pc = {.conninfo = config.database_url,
                             .size = 2,
                             .statement_timeout_ms = 5000,
                             .connect_timeout_ms = 5000,
                             .queue_timeout_ms = 5000,
                             .max_queue = 100};
    sb_pgpool_t *sentinel = sb_pgpool_create(loop, &pc);
    int covered[NALL] = {0};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); ++i) {
        json_t *r = call_with(tool(fixed[i].tool), fixed[i].args, "k-invalid", NULL, sentinel, &config);
        char what[600];
        snprintf(what, sizeof(what), "%s %.80s: refused, naming '%s'", fixed[i].tool, fixed[i].args, fixed[i].needle);
        ok_error(r, fixed[i].needle, what);
        json_decref(r);
        for (size_t t = 0; t < NALL; ++t)
            covered[t] += strcmp(all_tools[t], fixed[i].tool) == 0;
    }
    for (size_t i = 0; i < sizeof(built) / sizeof(built[0]); ++i) {
        char *text = json_dumps(built[i].args, JSON_COMPACT);
        json_decref(built[i].args);
        json_t *r = call_with(tool(built[i].tool), text, "k-invalid", NULL, sentinel, &config);
        free(text);
        char what[300];
        snprintf(what, sizeof(what), "%s with a value too long: refused, naming '%s'", built[i].tool, built[i].needle);
        ok_error(r, built[i].needle, what);
        json_decref(r);
    }
    int all_covered = 1;
    for (size_t t = 0; t < NALL; ++t)
        all_covered &= covered[t] >= 5;
    ok(all_covered, "every tool has at least five kinds of invalid arguments tried");
    sb_pgpool_stats_t st;
    sb_pgpool_stats(sentinel, &st);
    ok(st.open == 0 && st.queued == 0 && st.busy == 0, "no invalid call ran SQL: their pool never opened a connection");
    json_t *r = call_with(tool("get_order_status"), "{\"order_number\":\"4417\"}", NULL, NULL, sentinel, &config);
    ok_result(r, "a valid call through the same pool");
    json_decref(r);
    sb_pgpool_stats(sentinel, &st);
    ok(st.open == 1, "opens a connection, so the check above could see a statement (open %u)", st.open);
    sb_pgpool_destroy(sentinel);
    free(s65), free(s129), free(s201), free(s255), free(s1001), free(s2001), free(s4001), free(s4097), free(big);
}

/*
 * Argument names a model answering in Spanish uses, and a name of 70
 * two-byte letters: jansson's own message for unexpected keys is cut at a
 * fixed length, which split a letter in two, and the result could not be
 * built (the process aborted). Every tool must answer each with an error the
 * model reads, naming the argument.
 */
static void test_hostile_argument_names(void)
{
    char long_name[160] = "a";
    for (int i = 0; i < 70; ++i)
        memcpy(long_name + 1 + 2 * i, "\xC3\xA9", 3); /* é, and the NUL after it */
    const char *const names[] = {long_name,
                                 "correo_electr\xC3\xB3nico",
                                 "n\xC3\xBA"
                                 "mero_de_pedido",
                                 "descripci\xC3\xB3n",
                                 "prioridad",
                                 "\xE5\xAE\xA2\xE6\x88\xB7",
                                 "\xF0\x9F\x93\xA6_pedido"};
    /* the issue's exact call first */
    json_t *args = json_pack("{s:s, s:s, s:s, s:s}", "subject",
                             "Pedido da\xC3\xB1"
                             "ado",
                             "description", "x", "priority", "low", long_name, "x");
    json_t *r = call_j("create_support_ticket", args, "k-hostile", NULL);
    ok_error(r, "unknown argument", "create_support_ticket with a name of 70 two-byte letters: an error result, no crash");
    ok(r != NULL && strstr(err_of(r), "subject, description") != NULL, "the error lists the arguments the tool takes");
    json_decref(r);
    long long tickets = number("select count(*) from support_tickets where idempotency_key = $1", "k-hostile");
    is_int(tickets, 0, "and no ticket was written");

    /* then every tool, with several names each, and all of them at once */
    int good = 0, tried = 0;
    for (size_t t = 0; t < NALL; ++t) {
        for (size_t i = 0; i <= sizeof(names) / sizeof(names[0]); ++i) {
            json_t *in = json_object();
            if (i < sizeof(names) / sizeof(names[0])) {
                json_object_set_new(in, names[i], json_string("valor"));
            } else {
                for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); ++j)
                    json_object_set_new(in, names[j], json_integer((json_int_t)j));
            }
            char *text = json_dumps(in, JSON_COMPACT);
            json_decref(in);
            json_t *res = call_with(tool(all_tools[t]), text, "k-hostile", NULL, pool, &config);
            ++tried;
            const char *e = err_of(res);
            if (e != NULL && (strstr(e, "unknown argument") != NULL || strstr(e, "is required") != NULL))
                ++good;
            else
                printf("# %s %s: %s\n", all_tools[t], text, e ? e : "(no error)");
            free(text);
            json_decref(res);
        }
    }
    is_int(good, tried, "every tool refuses %d sets of unknown non-ASCII names with an error the model reads", tried);
}

/* Valid arguments for each tool, so that one argument at a time can be pushed to its bounds. */
static json_t *valid_args(const char *tool)
{
    static const char *const sets[][2] = {
        {"fetch_customer_profile", "{\"customer_id\":1}"},
        {"fetch_recent_orders", "{\"customer_id\":1}"},
        {"get_order_status", "{\"order_number\":\"4417\"}"},
        {"create_support_ticket", "{\"subject\":\"x\"}"},
        {"update_ticket_status", "{\"ticket_id\":1,\"status\":\"open\"}"},
        {"get_ticket_details", "{\"ticket_id\":1}"},
        {"log_customer_interaction", "{\"ticket_id\":1,\"kind\":\"note\",\"summary\":\"x\"}"},
        {"escalate_ticket", "{\"ticket_id\":1,\"reason\":\"x\"}"},
        {"log_change_event", "{\"entity_type\":\"t\",\"entity_id\":\"1\",\"change_type\":\"x\",\"description\":\"d\"}"},
        {"record_agent_event", "{\"event_type\":\"x\"}"},
        {"send_rtm_message", "{\"user_id\":\"u1\",\"message\":\"hi\"}"},
    };
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); ++i)
        if (strcmp(sets[i][0], tool) == 0)
            return json_loads(sets[i][1], 0, NULL);
    return NULL;
}

/* Whether `tool` takes `args` (taken), or refuses them naming `name`. 1: taken, 0: refused naming it, -1: otherwise. */
static int verdict(const sb_tool_t *tool, json_t *args, const char *name)
{
    void *out = calloc(1, sb_tool_args_size(tool) + 1);
    char err[256] = "";
    int rc = sb_tool_parse(tool, args, out, err, sizeof(err));
    json_decref(args);
    free(out);
    if (rc == 0)
        return 1;
    return strncmp(err, name, strlen(name)) == 0 ? 0 : -1;
}

/*
 * The schema the model is told and the checks on what it sends must agree:
 * every bound of every offered schema is pushed through the parser, just
 * inside (taken) and just outside (refused, naming the argument).
 */
static void test_schema_bounds(void)
{
    size_t n;
    const sb_tool_t *tools = sb_tools_table(&n);
    json_t *offered = offered_tools();
    int checked = 0, agreed = 0;
    size_t i;
    json_t *entry;
    json_array_foreach(offered, i, entry)
    {
        json_t *fn = json_object_get(entry, "function");
        const char *tname = json_string_value(json_object_get(fn, "name"));
        const sb_tool_t *tool = NULL;
        for (size_t k = 0; k < n; ++k)
            if (strcmp(tools[k].name, tname) == 0)
                tool = &tools[k];
        const char *pname;
        json_t *p;
        json_object_foreach(json_object_get(json_object_get(fn, "parameters"), "properties"), pname, p)
        {
            const char *type = json_string_value(json_object_get(p, "type"));
            json_t *probes[8][2]; /* a value, and whether it must be taken */
            size_t np = 0;
            json_t *max = json_object_get(p, "maxLength"), *min = json_object_get(p, "minLength");
            if (json_is_integer(max)) {
                char *s = repeat('a', (size_t)json_integer_value(max) + 1);
                probes[np][0] = json_stringn(s, (size_t)json_integer_value(max)), probes[np++][1] = json_true();
                probes[np][0] = json_string(s), probes[np++][1] = json_false();
                free(s);
            }
            if (json_is_integer(min) && json_integer_value(min) > 0) {
                char *s = repeat('a', (size_t)json_integer_value(min));
                probes[np][0] = json_string(s), probes[np++][1] = json_true();
                probes[np][0] = json_stringn(s, (size_t)json_integer_value(min) - 1), probes[np++][1] = json_false();
                free(s);
            }
            if (strcmp(type, "integer") == 0) {
                json_int_t lo = json_integer_value(json_object_get(p, "minimum"));
                probes[np][0] = json_integer(lo), probes[np++][1] = json_true();
                probes[np][0] = json_integer(lo - 1), probes[np++][1] = json_false();
                if (json_is_integer(json_object_get(p, "maximum"))) {
                    json_int_t hi = json_integer_value(json_object_get(p, "maximum"));
                    probes[np][0] = json_integer(hi), probes[np++][1] = json_true();
                    probes[np][0] = json_integer(hi + 1), probes[np++][1] = json_false();
                }
            }
            json_t *words = json_object_get(p, "enum");
            if (json_is_array(words)) {
                probes[np][0] = json_incref(json_array_get(words, json_array_size(words) - 1)), probes[np++][1] = json_true();
                probes[np][0] = json_string("not-a-listed-word"), probes[np++][1] = json_false();
            }
            for (size_t k = 0; k < np; ++k) {
                json_t *args = valid_args(tname);
                json_object_set_new(args, pname, probes[k][0]);
                int v = verdict(tool, args, pname);
                int want = json_is_true(probes[k][1]);
                ++checked;
                if ((want && v == 1) || (!want && v == 0))
                    ++agreed;
                else
                    printf("# %s.%s: probe %zu %s\n", tname, pname, k, want ? "refused" : "taken");
                json_decref(probes[k][1]);
            }
        }
    }
    json_decref(offered);
    ok(checked > 60 && agreed == checked, "every bound in the schemas is the parser's: %d of %d probes agree", agreed, checked);
}

static void test_reads(void)
{
    json_t *r = call("fetch_customer_profile", "{\"customer_id\":1}", NULL);
    ok_result(r, "fetch_customer_profile by id");
    is_str(str_of(r, "name"), "Maya Patel", "is Maya Patel");
    ok(int_of(r, "order_count") >= 8, "with her orders counted (%lld)", int_of(r, "order_count"));
    json_decref(r);
    r = call("fetch_customer_profile", "{\"email\":\"MATEO.GARCIA@example.com\"}", NULL);
    is_str(str_of(r, "name"),
           "Mateo Garc\xc3\xad"
           "a",
           "by email, whatever its case, non-ASCII intact");
    json_decref(r);
    r = call("fetch_customer_profile", "{\"customer_id\":999999}", NULL);
    ok_error(r, "no customer matches", "an unknown customer is not found");
    json_decref(r);
    r = call("fetch_customer_profile", "{\"customer_id\":1,\"email\":\"james.oconnor@example.com\"}", NULL);
    ok_error(r, "no customer matches", "an id and another customer's email match nobody");
    json_decref(r);

    r = call("fetch_recent_orders", "{\"email\":\"maya.patel@example.com\",\"limit\":3}", NULL);
    ok_result(r, "fetch_recent_orders");
    json_t *orders = json_object_get(r, "orders");
    is_int(json_array_size(orders), 3, "three orders, as asked");
    is_str(str_of(json_array_get(orders, 0), "order_number"), "4417", "newest first: 4417");
    json_decref(r);
    r = call("fetch_recent_orders", "{\"customer_id\":2}", NULL);
    is_int(json_array_size(json_object_get(r, "orders")), 5, "five by default");
    json_decref(r);
    r = call("fetch_recent_orders", "{\"email\":\"nobody@example.com\"}", NULL);
    ok_error(r, "no customer matches", "an unknown email is not found");
    json_decref(r);

    r = call("get_order_status", "{\"order_number\":\" #4417 \"}", NULL);
    ok_result(r, "get_order_status");
    ok(str_of(r, "status") && strcmp(str_of(r, "status"), "shipped") == 0 && strcmp(str_of(r, "carrier"), "UPS") == 0,
       "4417 is shipped with UPS ('#' and spaces ignored)");
    json_decref(r);
    r = call("get_order_status", "{\"order_number\":\"99999\"}", NULL);
    ok_error(r, "no order with that number", "an unknown order is not found");
    json_decref(r);

    long long t3 = seed_ticket("seed:ticket:03");
    char args[128];
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", t3);
    r = call("get_ticket_details", args, NULL);
    ok_result(r, "get_ticket_details");
    ok(str_of(r, "subject") && strcmp(str_of(r, "subject"), "Gooseneck kettle stopped heating") == 0 &&
           strcmp(str_of(r, "status"), "escalated") == 0 && strcmp(str_of(r, "customer_name"), "Aisha Bello") == 0,
       "the seeded ticket, its status and customer");
    json_t *hist = json_object_get(r, "interactions");
    ok(json_array_size(hist) == 2 && strcmp(str_of(json_array_get(hist, 0), "kind"), "escalation") == 0,
       "with its history, newest first");
    is_int(int_of(r, "open_escalations"), 1, "and its open escalation");
    json_decref(r);
    r = call("get_ticket_details", "{\"ticket_id\":999999}", NULL);
    ok_error(r, "no ticket with that id for this caller", "an unknown ticket is not found");
    json_decref(r);
}

static void test_writes(void)
{
    /* create_support_ticket, idempotent */
    json_t *r = call(
        "create_support_ticket",
        "{\"subject\":\"Lid will not close\",\"description\":\"Since Tuesday.\",\"priority\":\"low\",\"order_number\":\"4417\"}",
        "k-create-1");
    ok_result(r, "create_support_ticket");
    long long tid = int_of(r, "ticket_id");
    ok(tid > 0 && is_true(r, "created") && int_of(r, "customer_id") == 1, "a new ticket for the order's customer");
    json_decref(r);
    r = call("create_support_ticket", "{\"subject\":\"Lid will not close (again)\",\"order_number\":\"4417\"}", "k-create-1");
    ok(int_of(r, "ticket_id") == tid && json_is_false(json_object_get(r, "created")),
       "the same key again: the same ticket, created:false");
    json_decref(r);
    is_int(number("select count(*) from support_tickets where idempotency_key = $1", "k-create-1"), 1, "one ticket with that key");
    r = call("create_support_ticket", "{\"subject\":\"x\",\"order_number\":\"00000\"}", "k-create-2");
    ok_error(r, "no matching customer or order", "an unknown order makes no ticket");
    json_decref(r);
    r = call("create_support_ticket", "{\"subject\":\"x\",\"customer_id\":2,\"order_number\":\"4417\"}", "k-create-3");
    ok_error(r, "no matching customer or order", "a customer with another customer's order makes no ticket");
    json_decref(r);
    is_int(number("select count(*) from support_tickets where idempotency_key in ('k-create-2', 'k-create-3')", NULL), 0,
           "neither was written");

    char args[512], id[24];
    snprintf(id, sizeof(id), "%lld", tid);

    /* update_ticket_status: one statement, the note keyed */
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"status\":\"in_progress\",\"note\":\"Replacement lid ordered.\"}", tid);
    r = call("update_ticket_status", args, "k-status-1");
    ok_result(r, "update_ticket_status");
    ok(str_of(r, "status") && strcmp(str_of(r, "status"), "in_progress") == 0 &&
           strcmp(str_of(r, "previous_status"), "open") == 0 && is_true(r, "note_added"),
       "open -> in_progress, with its note");
    json_decref(r);
    ok(db_is("select status from support_tickets where id = $1", id, "in_progress"), "the ticket's status changed");
    ok(db_is("select kind || ': ' || summary from support_interactions where idempotency_key = 'k-status-1' and ticket_id = $1", id,
             "status_change: Replacement lid ordered."),
       "a status_change interaction holds the note");
    r = call("update_ticket_status", args, "k-status-1");
    ok(str_of(r, "status") && strcmp(str_of(r, "status"), "in_progress") == 0 && json_is_false(json_object_get(r, "note_added")),
       "the same key again: same status, no second note");
    json_decref(r);
    is_int(number("select count(*) from support_interactions where idempotency_key = 'k-status-1'", NULL), 1, "one note");
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"status\":\"resolved\"}", tid);
    r = call("update_ticket_status", args, "k-status-2");
    ok(str_of(r, "status") && strcmp(str_of(r, "status"), "resolved") == 0 && json_is_false(json_object_get(r, "note_added")),
       "without a note: the status only");
    json_decref(r);
    is_int(number("select count(*) from support_interactions where idempotency_key = 'k-status-2'", NULL), 0, "and no interaction");
    r = call("update_ticket_status", "{\"ticket_id\":999999,\"status\":\"closed\",\"note\":\"x\"}", "k-status-3");
    ok_error(r, "no ticket with that id for this caller", "an unknown ticket is not found");
    json_decref(r);
    is_int(number("select count(*) from support_interactions where idempotency_key = 'k-status-3'", NULL), 0,
           "and nothing is logged");

    /* log_customer_interaction: on a ticket, on a customer, idempotent */
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"kind\":\"call\",\"summary\":\"Called to confirm the lid shipped.\"}", tid);
    r = call("log_customer_interaction", args, "k-int-1");
    ok_result(r, "log_customer_interaction on a ticket");
    long long iid = int_of(r, "interaction_id");
    ok(iid > 0 && int_of(r, "ticket_id") == tid && int_of(r, "customer_id") == 1 && is_true(r, "created"),
       "linked to the ticket and its customer");
    json_decref(r);
    r = call("log_customer_interaction", args, "k-int-1");
    ok(int_of(r, "interaction_id") == iid && json_is_false(json_object_get(r, "created")), "the same key again: created:false");
    json_decref(r);
    is_int(number("select count(*) from support_interactions where idempotency_key = 'k-int-1'", NULL), 1, "one row");
    r = call("log_customer_interaction",
             "{\"email\":\"Sofia.Rossi@example.com\",\"kind\":\"email\",\"summary\":\"Sent the label.\"}", "k-int-2");
    ok(r && err_of(r) == NULL && int_of(r, "customer_id") == 3 && json_is_null(json_object_get(r, "ticket_id")),
       "on a customer by email, no ticket");
    json_decref(r);
    r = call("log_customer_interaction", "{\"customer_id\":4,\"kind\":\"chat\",\"summary\":\"Asked about descaling.\"}", "k-int-3");
    ok(r && int_of(r, "customer_id") == 4, "on a customer by id");
    json_decref(r);
    r = call("log_customer_interaction", "{\"kind\":\"note\",\"summary\":\"Who?\"}", "k-int-4");
    ok_error(r, "nothing was logged", "with no ticket, customer or bound caller nothing is logged");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"customer_id\":2,\"kind\":\"note\",\"summary\":\"x\"}", tid);
    r = call("log_customer_interaction", args, "k-int-5");
    ok_error(r, "nothing was logged", "a ticket with another customer is refused");
    json_decref(r);
    r = call("log_customer_interaction", "{\"ticket_id\":999999,\"kind\":\"note\",\"summary\":\"x\"}", "k-int-6");
    ok_error(r, "nothing was logged", "an unknown ticket logs nothing");
    json_decref(r);
    is_int(number("select count(*) from support_interactions where idempotency_key in ('k-int-4', 'k-int-5', 'k-int-6')", NULL), 0,
           "none of those was written");

    /* get_ticket_details shows the five latest, newest first, and stays under the result ceiling */
    for (int i = 0; i < 6; ++i) {
        char key[32];
        snprintf(key, sizeof(key), "k-hist-%d", i);
        json_t *a = json_pack("{s:I, s:s, s:s}", "ticket_id", (json_int_t)tid, "kind", "note", "summary", "");
        char *summary = repeat((char)('a' + i), 4000);
        json_object_set_new(a, "summary", json_string(summary));
        free(summary);
        json_decref(call_j("log_customer_interaction", a, key, NULL));
    }
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", tid);
    r = call("get_ticket_details", args, NULL);
    ok_result(r, "get_ticket_details with six long notes");
    json_t *hist = json_object_get(r, "interactions");
    const char *first = str_of(json_array_get(hist, 0), "summary");
    ok(json_array_size(hist) == 5 && first && first[0] == 'f' && strlen(first) <= 600, "the five latest, newest first, cut short");
    json_decref(r);

    /* log_change_event */
    r = call("log_change_event",
             "{\"entity_type\":\"ticket\",\"entity_id\":\"42\",\"change_type\":\"status_change\",\"description\":\"Resolved after "
             "the lid shipped.\"}",
             "k-change-1");
    ok_result(r, "log_change_event");
    long long cid = int_of(r, "change_id");
    ok(cid > 0 && is_true(r, "created"), "a new change_log row");
    json_decref(r);
    r = call("log_change_event",
             "{\"entity_type\":\"ticket\",\"entity_id\":\"42\",\"change_type\":\"status_change\",\"description\":\"Resolved after "
             "the lid shipped.\"}",
             "k-change-1");
    ok(int_of(r, "change_id") == cid && json_is_false(json_object_get(r, "created")), "the same key again: created:false");
    json_decref(r);
    ok(db_is("select concat_ws('|', entity_type, entity_id, change_type, description, actor) from change_log where "
             "idempotency_key = $1",
             "k-change-1", "ticket|42|status_change|Resolved after the lid shipped.|agent"),
       "one row, as given, by the agent");
    is_int(number("select count(*) from change_log where idempotency_key = $1", "k-change-1"), 1, "only one");

    /* record_agent_event */
    r = call(
        "record_agent_event",
        "{\"event_type\":\"customer_verified\",\"payload\":{\"method\":\"email\",\"tries\":[1,2],\"ok\":true},\"agent_id\":\"a-7\","
        "\"channel\":\"support-line\"}",
        "k-event-1");
    ok_result(r, "record_agent_event");
    long long eid = int_of(r, "event_id");
    ok(eid > 0 && is_true(r, "created"), "a new agent_events row");
    json_decref(r);
    r = call("record_agent_event", "{\"event_type\":\"customer_verified\"}", "k-event-1");
    ok(int_of(r, "event_id") == eid && json_is_false(json_object_get(r, "created")), "the same key again: created:false");
    json_decref(r);
    ok(db_is("select concat_ws('|', event_type, agent_id, channel, payload::text) from agent_events where idempotency_key = $1",
             "k-event-1", "customer_verified|a-7|support-line|{\"ok\": true, \"tries\": [1, 2], \"method\": \"email\"}"),
       "stored with its payload as jsonb");
    r = call("record_agent_event", "{\"event_type\":\"call_ended\"}", "k-event-2");
    ok_result(r, "record_agent_event without a payload");
    json_decref(r);
    ok(db_is("select payload::text from agent_events where idempotency_key = $1", "k-event-2", "{}"), "stores an empty object");
    r = call("record_agent_event", "{\"event_type\":\"no_key\"}", NULL);
    json_decref(r);
    r = call("record_agent_event", "{\"event_type\":\"no_key\"}", NULL);
    json_decref(r);
    is_int(number("select count(*) from agent_events where event_type = 'no_key'", NULL), 2,
           "without an idempotency key (no turn id) each call writes");
}

/* Strings that would break a statement built by pasting text: they must come back as they went in. */
static const char *const evil[] = {
    "x'); drop table customers; --",
    "' or 1=1 --",
    "Robert'); DROP TABLE support_tickets;--",
    "\"; delete from orders; -- $1 %s %n \\ $$ E'\\x41'",
};

static void test_injection(void)
{
    for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); ++i) {
        const char *e = evil[i];
        char key[64], id[24];
        snprintf(key, sizeof(key), "k-evil-ticket-%zu", i);
        json_t *r = call_j("create_support_ticket", json_pack("{s:s, s:s, s:i}", "subject", e, "description", e, "customer_id", 4),
                           key, NULL);
        long long tid = int_of(r, "ticket_id");
        ok(tid > 0, "evil string %zu: a ticket with it as subject and description", i);
        json_decref(r);
        snprintf(id, sizeof(id), "%lld", tid);
        ok(db_is("select subject from support_tickets where id = $1", id, e) &&
               db_is("select description from support_tickets where id = $1", id, e),
           "stored verbatim");
        r = call_j("get_ticket_details", json_pack("{s:I}", "ticket_id", (json_int_t)tid), NULL, NULL);
        ok(str_of(r, "subject") && strcmp(str_of(r, "subject"), e) == 0 && strcmp(str_of(r, "description"), e) == 0,
           "and read back verbatim");
        json_decref(r);

        snprintf(key, sizeof(key), "k-evil-status-%zu", i);
        r = call_j("update_ticket_status",
                   json_pack("{s:I, s:s, s:s}", "ticket_id", (json_int_t)tid, "status", "pending", "note", e), key, NULL);
        ok(r && err_of(r) == NULL && db_is("select summary from support_interactions where idempotency_key = $1", key, e),
           "as a status note, verbatim");
        json_decref(r);
        snprintf(key, sizeof(key), "k-evil-int-%zu", i);
        r = call_j("log_customer_interaction",
                   json_pack("{s:I, s:s, s:s}", "ticket_id", (json_int_t)tid, "kind", "note", "summary", e), key, NULL);
        ok(r && err_of(r) == NULL && db_is("select summary from support_interactions where idempotency_key = $1", key, e),
           "as an interaction summary, verbatim");
        json_decref(r);
        snprintf(key, sizeof(key), "k-evil-change-%zu", i);
        r = call_j("log_change_event",
                   json_pack("{s:s, s:s, s:s, s:s}", "entity_type", e, "entity_id", e, "change_type", e, "description", e), key,
                   NULL);
        ok(r && err_of(r) == NULL &&
               db_is("select count(*) from change_log where idempotency_key = $1 and entity_type = description and entity_id = "
                     "description and change_type = description",
                     key, "1") &&
               db_is("select description from change_log where idempotency_key = $1", key, e),
           "in a change_log row, verbatim");
        json_decref(r);
        snprintf(key, sizeof(key), "k-evil-event-%zu", i);
        r = call_j("record_agent_event", json_pack("{s:s, s:{s:s}, s:s}", "event_type", e, "payload", e, e, "agent_id", e), key,
                   NULL);
        ok(r && err_of(r) == NULL && db_is("select event_type from agent_events where idempotency_key = $1", key, e) &&
               db_is("select payload ->> event_type from agent_events where idempotency_key = $1", key, e),
           "in an agent event and its payload (as key and value), verbatim");
        json_decref(r);
        snprintf(key, sizeof(key), "k-evil-esc-%zu", i);
        r = call_j("escalate_ticket", json_pack("{s:I, s:s, s:s}", "ticket_id", (json_int_t)tid, "reason", e, "escalated_to", e),
                   key, NULL);
        ok(r && err_of(r) == NULL && db_is("select reason from escalations where idempotency_key = $1", key, e) &&
               db_is("select escalated_to from escalations where idempotency_key = $1", key, e),
           "as an escalation reason, verbatim");
        json_decref(r);

        r = call_j("fetch_customer_profile", json_pack("{s:s}", "email", e), NULL, NULL);
        ok(err_of(r) != NULL, "as an email it matches no customer");
        json_decref(r);
        r = call_j("fetch_recent_orders", json_pack("{s:s}", "email", e), NULL, NULL);
        ok(err_of(r) != NULL, "nor any customer's orders");
        json_decref(r);
        r = call_j("get_order_status", json_pack("{s:s}", "order_number", e), NULL, NULL);
        ok(err_of(r) != NULL, "nor any order");
        json_decref(r);
    }
    is_int(number("select count(*) from customers", NULL), 40, "customers are all still there");
    ok(number("select count(*) from orders", NULL) >= 301, "orders too");
    is_int(number("select count(*) from pg_tables where schemaname = 'public' and tablename in ('customers', 'orders', "
                  "'support_tickets', 'support_interactions', 'escalations', 'change_log', 'agent_events')",
                  NULL),
           7, "and every table");
}

static void test_scoping(void)
{
    sb_caller_t maya = {.customer_id = 1}, sofia = {.customer_id = 0}, both_wrong = {.customer_id = 1};
    snprintf(sofia.email, sizeof(sofia.email), "SOFIA.ROSSI@example.com");
    snprintf(both_wrong.email, sizeof(both_wrong.email), "sofia.rossi@example.com");
    long long own = seed_ticket("seed:ticket:06"), foreign = seed_ticket("seed:ticket:01"), sofias = seed_ticket("seed:ticket:02"),
              nobodys = seed_ticket("seed:ticket:08");
    char args[256], fid[24];
    snprintf(fid, sizeof(fid), "%lld", foreign);

    json_t *r = call_as("fetch_customer_profile", "{\"customer_id\":1}", NULL, &maya);
    ok_result(r, "a bound caller reads their own profile");
    json_decref(r);
    r = call_as("fetch_customer_profile", "{\"customer_id\":2}", NULL, &maya);
    ok_error(r, "no customer matches", "but not another customer's, by id");
    json_decref(r);
    r = call_as("fetch_customer_profile", "{\"email\":\"james.oconnor@example.com\"}", NULL, &maya);
    ok_error(r, "no customer matches", "nor by email");
    json_decref(r);
    r = call_as("fetch_customer_profile", "{\"customer_id\":3}", NULL, &sofia);
    ok_result(r, "a caller bound by email (any case) reads their own profile");
    json_decref(r);
    r = call_as("fetch_customer_profile", "{\"customer_id\":1}", NULL, &sofia);
    ok_error(r, "no customer matches", "and not Maya's");
    json_decref(r);
    r = call_as("fetch_customer_profile", "{\"customer_id\":1}", NULL, &both_wrong);
    ok_error(r, "no customer matches", "a caller bound by an id and someone else's email reads nobody");
    json_decref(r);

    r = call_as("fetch_recent_orders", "{\"customer_id\":2}", NULL, &maya);
    ok_error(r, "no customer matches", "another customer's orders are not listed");
    json_decref(r);
    r = call_as("fetch_recent_orders", "{\"customer_id\":1}", NULL, &maya);
    ok_result(r, "one's own are");
    json_decref(r);
    r = call_as("get_order_status", "{\"order_number\":\"4417\"}", NULL, &maya);
    ok_result(r, "one's own order's status");
    json_decref(r);
    r = call_as("get_order_status", "{\"order_number\":\"4417\"}", NULL, &sofia);
    ok_error(r, "no order with that number for this caller", "another customer's order reads as not found");
    json_decref(r);

    r = call_as("create_support_ticket", "{\"subject\":\"Not mine\",\"customer_id\":2}", "k-scope-create-1", &maya);
    ok_error(r, "no matching customer or order", "no ticket for another customer");
    json_decref(r);
    r = call_as("create_support_ticket", "{\"subject\":\"Not mine\",\"order_number\":\"4417\"}", "k-scope-create-2", &sofia);
    ok_error(r, "no matching customer or order", "no ticket on another customer's order");
    json_decref(r);
    r = call_as("create_support_ticket", "{\"subject\":\"Mine\"}", "k-scope-create-3", &maya);
    ok(r && err_of(r) == NULL && int_of(r, "customer_id") == 1, "a ticket without ids is the bound caller's");
    json_decref(r);

    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", own);
    r = call_as("get_ticket_details", args, NULL, &maya);
    ok_result(r, "one's own ticket's details");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", foreign);
    r = call_as("get_ticket_details", args, NULL, &maya);
    ok_error(r, "no ticket with that id for this caller", "another customer's ticket is not found");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", nobodys);
    r = call_as("get_ticket_details", args, NULL, &maya);
    ok_error(r, "no ticket with that id for this caller", "nor a ticket with no customer");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", sofias);
    r = call_as("get_ticket_details", args, NULL, &sofia);
    ok_result(r, "a caller bound by email reads their ticket");
    json_decref(r);

    char *before = value("select status || updated_at::text from support_tickets where id = $1", fid);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"status\":\"closed\",\"note\":\"closing yours\"}", foreign);
    r = call_as("update_ticket_status", args, "k-scope-status", &maya);
    ok_error(r, "no ticket with that id for this caller", "another customer's ticket cannot be updated");
    json_decref(r);
    ok(db_is("select status || updated_at::text from support_tickets where id = $1", fid, before) &&
           number("select count(*) from support_interactions where idempotency_key = 'k-scope-status'", NULL) == 0,
       "it is untouched and nothing was logged");
    free(before);

    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"kind\":\"note\",\"summary\":\"x\"}", foreign);
    r = call_as("log_customer_interaction", args, "k-scope-int-1", &maya);
    ok_error(r, "nothing was logged", "no interaction on another customer's ticket");
    json_decref(r);
    r = call_as("log_customer_interaction", "{\"customer_id\":2,\"kind\":\"note\",\"summary\":\"x\"}", "k-scope-int-2", &maya);
    ok_error(r, "nothing was logged", "nor on another customer");
    json_decref(r);
    r = call_as("log_customer_interaction", "{\"kind\":\"note\",\"summary\":\"Prefers email.\"}", "k-scope-int-3", &sofia);
    ok(r && err_of(r) == NULL && int_of(r, "customer_id") == 3, "with no ids it goes on the bound caller");
    json_decref(r);

    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"reason\":\"Escalating yours\"}", foreign);
    r = call_as("escalate_ticket", args, "k-scope-esc", &maya);
    ok_error(r, "no ticket with that id for this caller", "another customer's ticket cannot be escalated");
    json_decref(r);
    is_int(number("select count(*) from escalations where idempotency_key = 'k-scope-esc'", NULL), 0, "no escalation was written");
}

static int email_marked(void *arg)
{
    return number("select count(*) from escalations where idempotency_key = $1 and email_sent_at is not null", arg) == 1;
}

static int contains(const char *hay, const char *needle, const char *what)
{
    int good = hay != NULL && strstr(hay, needle) != NULL;
    if (!ok(good, "%s", what))
        printf("#   want '%s' in:\n#   %.2000s\n", needle, hay ? hay : "(null)");
    return good;
}

static void test_escalation_email(void)
{
    if (config.smtp_url == NULL) {
        ok(1, "# SKIP no python3 with aiosmtpd: the escalation email is not tested");
        return;
    }
    int before = smtp_messages();
    const char *subject = "Kettle \xe2\x80\x94 won't heat";
    json_t *r = call_j("create_support_ticket",
                       json_pack("{s:s, s:i, s:s}", "subject", subject, "customer_id", 5, "priority", "low"), "k-esc-ticket", NULL);
    long long tid = int_of(r, "ticket_id");
    json_decref(r);
    char args[512], id[24];
    snprintf(id, sizeof(id), "%lld", tid);
    snprintf(args, sizeof(args),
             "{\"ticket_id\":%lld,\"reason\":\"Heating element failed twice.\\n.\\nCustomer hosts a tasting on Saturday.\","
             "\"escalated_to\":\"Tier 2\"}",
             tid);
    r = call("escalate_ticket", args, "k-esc-1");
    ok_result(r, "escalate_ticket");
    ok(is_true(r, "created") && is_true(r, "email_sent"), "a new escalation, and the email went out");
    ok(str_of(r, "priority") && strcmp(str_of(r, "priority"), "high") == 0 && strcmp(str_of(r, "ticket_priority"), "high") == 0 &&
           strcmp(str_of(r, "ticket_status"), "escalated") == 0,
       "priority high by default; the low ticket is raised to high and escalated");
    ok(json_object_get(r, "customer_email") == NULL, "the result does not carry the customer's address");
    long long eid = int_of(r, "escalation_id");
    json_decref(r);
    ok(db_is("select status || ' ' || priority from support_tickets where id = $1", id, "escalated high"), "the ticket row agrees");
    ok(db_is("select kind || ': ' || summary from support_interactions where idempotency_key = $1", "k-esc-1",
             "escalation: Escalated to Tier 2 (high): Heating element failed twice.\n.\nCustomer hosts a tasting on Saturday."),
       "an escalation interaction was logged in the same statement");

    int want = before + 1;
    ok(run_until(smtp_has, &want, 10000), "the SMTP server received the email");
    char *headers, *body;
    smtp_message(before, &headers, &body);
    char *from = header_value(headers, "From:"), *to = header_value(headers, "To:"), *subj = header_value(headers, "Subject:");
    char *msgid = header_value(headers, "Message-ID:"), *date = header_value(headers, "Date:");
    is_str(from, "Kettle & Co. Support <desk@kettle.example>", "From is SMTP_FROM");
    is_str(to, "tier2@kettle.example, lead@kettle.example", "To is SUPPORT_EMAIL");
    char *decoded = decode_words(subj), want_subject[256];
    snprintf(want_subject, sizeof(want_subject), "Escalation: ticket #%lld \xe2\x80\x94 %s", tid, subject);
    ok(strncmp(subj, "=?UTF-8?B?", 10) == 0, "the subject is MIME-encoded (it is not ASCII)");
    is_str(decoded, want_subject, "and reads 'Escalation: ticket #N — <subject>'");
    char msgid_end[64];
    snprintf(msgid_end, sizeof(msgid_end), "@kettle.example>");
    ok(strncmp(msgid, "<escalation-", 12) == 0 && strstr(msgid, msgid_end) != NULL, "a Message-ID: %s", msgid);
    ok(strlen(date) > 20 && strstr(date, "+0000") != NULL, "a Date: %s", date);
    contains(headers, "Content-Transfer-Encoding: base64", "the body is base64 (any text, any line length)");
    char *text = decode_base64_body(body);
    char line[128];
    snprintf(line, sizeof(line), "Ticket:       #%lld", tid);
    contains(text, line, "the body names the ticket");
    contains(text, subject, "its subject");
    contains(text, "Aisha Bello <aisha.bello@example.com> (id 5)", "the customer");
    contains(text, "Priority:     high", "the priority");
    contains(text, "Escalated to: Tier 2", "who it went to");
    contains(text, "Heating element failed twice.\n.\nCustomer hosts a tasting on Saturday.", "and the reason, intact");
    free(text), free(from), free(to), free(subj), free(msgid), free(date), free(decoded), free(headers), free(body);
    ok(run_until(email_marked, "k-esc-1", 5000), "email_sent_at is set once the email went out");

    r = call("escalate_ticket", args, "k-esc-1");
    ok(r && json_is_false(json_object_get(r, "created")) && int_of(r, "escalation_id") == eid && is_true(r, "email_sent"),
       "the same key again: the first escalation, created:false, email_sent from the record");
    json_decref(r);
    is_int(smtp_messages(), before + 1, "and no second email");
    is_int(number("select count(*) from escalations where idempotency_key = $1", "k-esc-1") +
               number("select count(*) from support_interactions where idempotency_key = $1", "k-esc-1"),
           2, "one escalation, one interaction");

    /* a long non-ASCII subject folds into several encoded words and survives */
    sb_buf_t longsub;
    sb_buf_init(&longsub, 1024);
    for (int i = 0; i < 95; ++i)
        sb_buf_appendz(&longsub, "\xc3\xa9");
    sb_buf_appendz(&longsub, " fin");
    sb_buf_append(&longsub, "", 1);
    r = call_j("create_support_ticket", json_pack("{s:s, s:i}", "subject", longsub.base, "customer_id", 6), "k-esc-ticket-2", NULL);
    long long tid2 = int_of(r, "ticket_id");
    json_decref(r);
    r = call_j("escalate_ticket",
               json_pack("{s:I, s:s, s:s}", "ticket_id", (json_int_t)tid2, "reason", "Long subject.", "priority", "low"), "k-esc-2",
               NULL);
    ok(r && is_true(r, "email_sent"), "an escalation of a ticket with a long accented subject is emailed");
    json_decref(r);
    want = before + 2;
    run_until(smtp_has, &want, 10000);
    smtp_message(before + 1, &headers, &body);
    subj = header_value(headers, "Subject:");
    decoded = decode_words(subj);
    snprintf(want_subject, sizeof(want_subject), "Escalation: ticket #%lld \xe2\x80\x94 %s", tid2, longsub.base);
    is_str(decoded, want_subject, "its subject, folded over several encoded words, decodes whole");
    int short_lines = 1;
    const char *w = subj;
    while ((w = strstr(w, "=?UTF-8?B?")) != NULL) {
        const char *e = strstr(w, "?=");
        short_lines &= e != NULL && e + 2 - w <= 75;
        w = e ? e + 2 : w + 1;
    }
    ok(short_lines, "every encoded word is at most 75 characters");
    free(subj), free(decoded), free(headers), free(body);
    sb_buf_dispose(&longsub);

    /* raising, never lowering: an urgent ticket escalated at normal stays urgent */
    long long urgent = seed_ticket("seed:ticket:03");
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"reason\":\"Second opinion.\",\"priority\":\"normal\"}", urgent);
    r = call("escalate_ticket", args, "k-esc-3");
    ok(r && str_of(r, "ticket_priority") && strcmp(str_of(r, "ticket_priority"), "urgent") == 0 &&
           strcmp(str_of(r, "priority"), "normal") == 0,
       "an escalation at normal leaves an urgent ticket urgent");
    json_decref(r);

    /* a failed send does not fail the tool */
    char err[256], refused[64];
    sb_config_t down = config;
    snprintf(refused, sizeof(refused), "smtp://127.0.0.1:%d", closed_port());
    down.smtp_url = refused;
    sb_tools_init(&down, err, sizeof(err));
    int sent_before = smtp_messages();
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"reason\":\"Mail server is down.\"}", tid2);
    capture_log();
    r = call_with(tool("escalate_ticket"), args, "k-esc-4", NULL, pool, &down);
    char *log = captured_log();
    ok(r && err_of(r) == NULL && is_true(r, "created") && json_is_false(json_object_get(r, "email_sent")),
       "with the mail server down the escalation is still recorded, email_sent:false");
    json_decref(r);
    ok(strstr(log, "not sent") != NULL, "and a warning is logged");
    free(log);
    ok(db_is("select (email_sent_at is null)::text from escalations where idempotency_key = $1", "k-esc-4", "true"),
       "email_sent_at stays empty, for a human to follow up");

    /* credentials demand TLS; this server offers none: refused before anything is sent, and the password is never logged */
    sb_config_t authed = config;
    authed.smtp_user = "mailer@kettle.example";
    authed.smtp_password = "hunter2-smtp-secret";
    sb_tools_init(&authed, err, sizeof(err));
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"reason\":\"Needs TLS.\"}", tid2);
    capture_log();
    r = call_with(tool("escalate_ticket"), args, "k-esc-5", NULL, pool, &authed);
    log = captured_log();
    ok(r && err_of(r) == NULL && json_is_false(json_object_get(r, "email_sent")),
       "with SMTP_USER and no STARTTLS on offer the email is not sent in the clear");
    char *text_r = r ? json_dumps(r, 0) : strdup("");
    ok(strstr(log, "not sent") != NULL && strstr(log, "hunter2") == NULL && strstr(text_r, "hunter2") == NULL,
       "the warning and the result do not contain the password");
    free(text_r);
    json_decref(r);
    free(log);
    is_int(smtp_messages(), sent_before, "neither failed send reached the server");
    sb_tools_init(&config, err, sizeof(err));
}

static void test_messaging(struct fake *f)
{
    json_t *r =
        call("send_rtm_message", "{\"user_id\":\"caller-42\",\"message\":\"Your tracking number is 1Z8K4C7E0344170417.\"}", NULL);
    ok_result(r, "send_rtm_message");
    ok(is_true(r, "sent") && str_of(r, "code") && strcmp(str_of(r, "code"), "message_sent") == 0, "sent, with Agora's code");
    json_decref(r);
    is_str(f->method, "POST", "a POST");
    is_str(f->target, "/dev/v2/project/app-0123/rtm/users/switchboard/peer_messages?wait_for_ack=false",
           "to the peer_messages path for the app and the sending user");
    char creds[128], b64[192], want_auth[256];
    snprintf(creds, sizeof(creds), "%s:%s", config.agora_customer_id, config.agora_customer_secret);
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)creds, strlen(creds), sodium_base64_VARIANT_ORIGINAL);
    snprintf(want_auth, sizeof(want_auth), "Basic %s", b64);
    is_str(f->auth, want_auth, "with Basic auth of the customer id and secret");
    is_str(f->content_type, "application/json", "a JSON body");
    json_t *body = json_loads(f->body ? f->body : "", 0, NULL);
    ok(json_object_size(body) == 4 && strcmp(str_of(body, "destination"), "caller-42") == 0 &&
           json_is_false(json_object_get(body, "enable_offline_messaging")) &&
           json_is_false(json_object_get(body, "enable_historical_messaging")) &&
           strcmp(str_of(body, "payload"), "Your tracking number is 1Z8K4C7E0344170417.") == 0,
       "{destination, enable_offline_messaging:false, enable_historical_messaging:false, payload}: %s", f->body);
    json_decref(body);

    r = call_j("send_rtm_message", json_pack("{s:s, s:s}", "user_id", "u\"1", "message", evil[0]), NULL, NULL);
    body = json_loads(f->body ? f->body : "", 0, NULL);
    ok(r && is_true(r, "sent") && strcmp(str_of(body, "payload"), evil[0]) == 0 && strcmp(str_of(body, "destination"), "u\"1") == 0,
       "quotes and SQL-looking text travel verbatim");
    json_decref(body);
    json_decref(r);

    r = call_with(tool("send_rtm_message"), "{\"user_id\":\"u1\",\"message\":\"no database needed\"}", NULL, NULL, NULL, &config);
    ok(r && is_true(r, "sent"), "it runs without a database pool");
    json_decref(r);

    f->answer = "not json";
    r = call("send_rtm_message", "{\"user_id\":\"u1\",\"message\":\"hi\"}", NULL);
    ok(r && is_true(r, "sent") && json_object_get(r, "code") == NULL, "any 2xx counts as sent");
    json_decref(r);
    f->answer = "{\"result\":\"failure\",\"reason\":\"invalid credentials for cust-id:s3cret-agora-value\"}";
    static const struct {
        int status;
        const char *needle;
    } errors[] = {{401, "rejected switchboard's credentials"},
                  {403, "rejected switchboard's credentials"},
                  {404, "rejected the message (HTTP 404)"},
                  {429, "rate limiting"},
                  {500, "failed (HTTP 500)"},
                  {503, "failed (HTTP 503)"}};
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); ++i) {
        f->status = errors[i].status;
        r = call("send_rtm_message", "{\"user_id\":\"u1\",\"message\":\"hi\"}", NULL);
        char what[128];
        snprintf(what, sizeof(what), "HTTP %d becomes a tool error", errors[i].status);
        ok_error(r, errors[i].needle, what);
        char *text = r ? json_dumps(r, 0) : strdup("");
        ok(strstr(text, "s3cret") == NULL, "which does not leak the secret (nor the answer's body)");
        free(text);
        json_decref(r);
    }
    f->status = 200;
    f->answer = "{\"result\":\"success\",\"code\":\"message_sent\"}";

    /* keyed: the engine repeating the turn does not message the caller twice */
    int before = f->requests;
    const char *msg = "{\"user_id\":\"u7\",\"message\":\"Your ticket is 1234.\"}";
    r = call("send_rtm_message", msg, "k-rtm-1");
    ok(r && is_true(r, "sent") && json_object_get(r, "created") == NULL, "a keyed message is sent");
    json_decref(r);
    r = call("send_rtm_message", msg, "k-rtm-1");
    ok(r && is_true(r, "sent") && json_is_false(json_object_get(r, "created")), "the same key again: already sent");
    json_decref(r);
    is_int(f->requests - before, 1, "and the messaging service heard it once");
    ok(db_is("select (sent_at is not null)::text from signaling_messages where idempotency_key = $1", "k-rtm-1", "true"),
       "the claim is marked sent");
    f->status = 503;
    r = call("send_rtm_message", msg, "k-rtm-2");
    ok_error(r, "failed (HTTP 503)", "a keyed message the service refused is a tool error");
    json_decref(r);
    is_int(number("select count(*) from signaling_messages where idempotency_key = $1", "k-rtm-2"), 0,
           "and its claim is taken back");
    f->status = 200;
    r = call("send_rtm_message", msg, "k-rtm-2");
    ok(r && is_true(r, "sent") && json_object_get(r, "created") == NULL, "so the retry sends it after all");
    json_decref(r);
    is_int(f->requests - before, 3, "three sends in all");

    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", closed_port());
    sb_config_t down = config;
    down.agora_rtm_base_url = base;
    r = call_with(tool("send_rtm_message"), "{\"user_id\":\"u1\",\"message\":\"hi\"}", NULL, NULL, pool, &down);
    ok_error(r, "could not reach the messaging service", "an unreachable service is a tool error");
    json_decref(r);

    sb_config_t odd = config;
    odd.agora_app_id = "app/../x y";
    odd.agora_rtm_user_id = "agent 1?";
    r = call_with(tool("send_rtm_message"), "{\"user_id\":\"u1\",\"message\":\"hi\"}", NULL, NULL, pool, &odd);
    json_decref(r);
    is_str(f->target, "/dev/v2/project/app%2F..%2Fx%20y/rtm/users/agent%201%3F/peer_messages?wait_for_ack=false",
           "ids in the path are escaped");
}

static void test_cancel(struct fake *f)
{
    /* an RTM message whose answer never comes */
    f->hold = 1;
    int want = f->requests + 1;
    sb_tool_env_t env = {&config, pool, curlm, &nobody};
    struct outcome o = {0, NULL};
    const char *args = "{\"user_id\":\"u1\",\"message\":\"hold\"}";
    sb_tool_call_t *c = sb_tool_call_start(tool("send_rtm_message"), &env, args, strlen(args), NULL, on_done, &o);
    struct count_goal g = {&f->requests, want};
    ok(run_until(reached, &g, 5000), "the held request reached the endpoint");
    sb_tool_call_cancel(c);
    ok(run_until(no_transfers, NULL, 5000), "cancelling the call stops its transfer");
    ok(run_until(fake_idle, f, 5000), "and closes its connection");
    is_int(o.calls, 0, "done() never runs for a cancelled call");
    f->hold = 0;

    /* a call cancelled while its statement runs */
    o.calls = 0;
    args = "{\"ticket_id\":1}";
    c = sb_tool_call_start(tool("get_ticket_details"), &env, args, strlen(args), NULL, on_done, &o);
    sb_tool_call_cancel(c);
    json_t *r = call("get_order_status", "{\"order_number\":\"4417\"}", NULL);
    ok_result(r, "the pool carries on after a cancelled statement");
    json_decref(r);
    is_int(o.calls, 0, "and the cancelled call never reports");

    /* a call cancelled before its deferred argument error is reported */
    c = sb_tool_call_start(tool("get_ticket_details"), &env, "[]", 2, NULL, on_done, &o);
    sb_tool_call_cancel(c);
    r = call("get_order_status", "{\"order_number\":\"4417\"}", NULL);
    json_decref(r);
    is_int(o.calls, 0, "a refused call cancelled at once never reports either");

    /* an escalation email held by a server that never greets */
    struct fake silent;
    fake_start(&silent);
    silent.hold = 1;
    char url[64], err[256];
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", silent.port);
    sb_config_t held = config;
    held.smtp_url = url;
    sb_tools_init(&held, err, sizeof(err));
    r = call("create_support_ticket", "{\"subject\":\"Held email\",\"customer_id\":7}", "k-cancel-ticket");
    long long tid = int_of(r, "ticket_id");
    json_decref(r);
    char eargs[128];
    snprintf(eargs, sizeof(eargs), "{\"ticket_id\":%lld,\"reason\":\"The mail server hangs.\"}", tid);
    env.config = &held;
    c = sb_tool_call_start(tool("escalate_ticket"), &env, eargs, strlen(eargs), "k-cancel-esc", on_done, &o);
    g = (struct count_goal){&silent.accepted, 1};
    ok(run_until(reached, &g, 10000), "the escalation was recorded and its email is connecting");
    sb_tool_call_cancel(c);
    ok(run_until(no_transfers, NULL, 5000), "cancelling stops the email");
    is_int(o.calls, 0, "and the call never reports");
    ok(db_is("select (email_sent_at is null)::text || ' ' || (select status from support_tickets t where t.id = e.ticket_id) from "
             "escalations e where idempotency_key = $1",
             "k-cancel-esc", "true escalated"),
       "the escalation stands, without email_sent_at");
    fake_stop(&silent);
    sb_tools_init(&config, err, sizeof(err));
    free(o.text);
}

static void test_custom_tables(void)
{
    char *url = fresh_db("custom", "helpdesk_tickets", "helpdesk_notes");
    sb_config_t c = config;
    c.database_url = url;
    c.tickets_table = "helpdesk_tickets";
    c.interactions_table = "helpdesk_notes";
    c.smtp_url = NULL;
    char err[256];
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "tools with SUPPORT_TICKETS_TABLE=helpdesk_tickets");
    sb_pgpool_config_t pc = {.conninfo = url,
                             .size = 2,
                             .statement_timeout_ms = 5000,
                             .connect_timeout_ms = 5000,
                             .queue_timeout_ms = 5000,
                             .max_queue = 100};
    sb_pgpool_t *p = sb_pgpool_create(loop, &pc);
    json_t *r =
        call_with(tool("create_support_ticket"), "{\"subject\":\"Renamed tables\",\"customer_id\":2}", "k-custom-1", NULL, p, &c);
    long long tid = int_of(r, "ticket_id");
    ok(tid > 0, "create_support_ticket writes to the renamed table");
    json_decref(r);
    char args[256];
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"status\":\"pending\",\"note\":\"Waiting.\"}", tid);
    r = call_with(tool("update_ticket_status"), args, "k-custom-2", NULL, p, &c);
    ok(r && str_of(r, "status") && strcmp(str_of(r, "status"), "pending") == 0, "update_ticket_status");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"kind\":\"call\",\"summary\":\"Called.\"}", tid);
    r = call_with(tool("log_customer_interaction"), args, "k-custom-3", NULL, p, &c);
    ok_result(r, "log_customer_interaction");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld,\"reason\":\"Renamed.\"}", tid);
    r = call_with(tool("escalate_ticket"), args, "k-custom-4", NULL, p, &c);
    ok(r && is_true(r, "created") && json_is_false(json_object_get(r, "email_sent")),
       "escalate_ticket (no SMTP: email_sent:false)");
    json_decref(r);
    snprintf(args, sizeof(args), "{\"ticket_id\":%lld}", tid);
    r = call_with(tool("get_ticket_details"), args, NULL, NULL, p, &c);
    ok(r && json_array_size(json_object_get(r, "interactions")) == 3 && strcmp(str_of(r, "status"), "escalated") == 0,
       "get_ticket_details reads the renamed tables");
    json_decref(r);
    PGconn *other = open_db(url);
    PGresult *res = PQexec(other, "select count(*) from helpdesk_notes where idempotency_key like 'k-custom-%'");
    is_str(PQgetvalue(res, 0, 0), "3", "the notes landed in helpdesk_notes");
    PQclear(res);
    PQfinish(other);
    sb_pgpool_destroy(p);
    sb_tools_init(&config, err, sizeof(err));
    free(url);
}

/* The names in a serialized tool array, comma-separated, in its order. */
static void names_of(const char *serialized, char *out, size_t cap)
{
    json_t *tools = serialized != NULL ? json_loads(serialized, 0, NULL) : json_array();
    size_t i, used = 0;
    json_t *t;
    out[0] = '\0';
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        int n = snprintf(out + used, cap - used, "%s%s", used ? "," : "", name ? name : "?");
        if (n > 0 && (size_t)n < cap - used)
            used += (size_t)n;
    }
    json_decref(tools);
}

/* A Chat Completions request from a channel that can act on the call (or not), its tools offered. */
static void offer_to(int call_control, sb_chat_request_t *r)
{
    sb_request_error_t err;
    static const char body[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"bye\"}]}";
    if (sb_chat_request_parse_body(body, sizeof(body) - 1, "gpt-test", NULL, r, &err) != 0) {
        printf("Bail out! %s\n", err.message);
        exit(1);
    }
    r->call_control = call_control;
    sb_chat_request_offer_tools(r);
}

static void test_call_tools(void)
{
    char err[256] = "", names[1024];
    sb_config_t c = config;
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "init without TRANSFER_NUMBER");
    uint32_t shadowed;
    json_t *body = json_object();
    names_of(sb_tools_offer(body, 0, &shadowed), names, sizeof(names));
    ok(strstr(names, "end_call") == NULL && strstr(names, "transfer_call") == NULL,
       "a channel that cannot act on the call is offered neither call tool");
    names_of(sb_tools_offer(body, 1, &shadowed), names, sizeof(names));
    ok(strstr(names, "send_rtm_message,end_call") != NULL && strstr(names, "transfer_call") == NULL,
       "one that can is offered end_call too, and transfer_call needs TRANSFER_NUMBER");
    json_decref(body);
    ok(sb_tools_calls() == ((1u << NALL) | (1u << (NALL + 1))), "the call tools are the last two rows");

    sb_chat_request_t r;
    offer_to(0, &r);
    names_of(r.offered_tools, names, sizeof(names));
    ok(strstr(names, "end_call") == NULL && sb_tools_find_offered("end_call", 8, r.shadowed | r.withheld) == NULL,
       "an HTTP turn neither offers end_call nor runs it when a model calls it anyway");
    sb_chat_request_dispose(&r);
    offer_to(1, &r);
    names_of(r.offered_tools, names, sizeof(names));
    ok(strstr(names, "end_call") != NULL && sb_tools_find_offered("end_call", 8, r.shadowed | r.withheld) != NULL,
       "a turn of a channel that can act offers and runs it");
    sb_chat_request_dispose(&r);

    static const char *const bad[] = {"14155550123",     "+0415555012",       "+1415",
                                      "+1 415 555 0123", "+1415555012345678", "+1-415-555-0123"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        c.transfer_number = (char *)bad[i];
        ok(sb_tools_init(&c, err, sizeof(err)) != 0 && strstr(err, "TRANSFER_NUMBER") != NULL, "TRANSFER_NUMBER %s is refused",
           bad[i]);
    }
    c.transfer_number = "+14155550123";
    is_int(sb_tools_init(&c, err, sizeof(err)), 0, "init with TRANSFER_NUMBER");
    body = json_object();
    names_of(sb_tools_offer(body, 1, &shadowed), names, sizeof(names));
    ok(strstr(names, "end_call,transfer_call") != NULL, "transfer_call is offered with a number");
    json_decref(body);

    json_t *res = call_with(table_tool("end_call"), "{\"reason\":\"the caller said goodbye\"}", NULL, NULL, NULL, &c);
    ok(json_is_true(json_object_get(res, "ending")), "end_call says the call is ending");
    json_decref(res);
    res = call_with(table_tool("transfer_call"), "{}", NULL, NULL, NULL, &c);
    ok(json_is_true(json_object_get(res, "transferring")) && strstr(json_string_value(json_object_get(res, "note")), "+1") == NULL,
       "transfer_call says so, and never tells the model the number");
    json_decref(res);
    res = call_with(table_tool("transfer_call"), "{\"number\":\"+19005550000\"}", NULL, NULL, NULL, &c);
    ok_error(res, "number", "a number of the model's own is refused");
    json_decref(res);
    is_int(sb_tools_init(&config, err, sizeof(err)), 0, "back to the main configuration");
}

int main(void)
{
    pgtest_start();
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        printf("Bail out! cannot initialise libsodium or libcurl\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    char *url = fresh_db("main", "support_tickets", "support_interactions");
    db = open_db(url);
    int have_smtp = start_smtp() == 0;
    if (!have_smtp)
        printf("# no python3 with aiosmtpd (Debian: python3-aiosmtpd): the email tests are skipped\n");

    loop = malloc(sizeof(*loop));
    uv_loop_init(loop);
    curlm = sb_curlm_create(loop, 0);
    struct fake agora;
    fake_start(&agora);
    static char agora_base[64];
    snprintf(agora_base, sizeof(agora_base), "http://127.0.0.1:%d/", agora.port);

    config.database_url = url;
    config.tickets_table = "support_tickets";
    config.interactions_table = "support_interactions";
    config.tools_enabled = "all";
    config.pg_pool_size = 4;
    config.pg_statement_timeout_ms = 5000;
    config.pg_connect_timeout_ms = 5000;
    config.support_email = "tier2@kettle.example, lead@kettle.example";
    config.smtp_url = have_smtp ? smtp_url : NULL;
    config.smtp_from = "Kettle & Co. Support <desk@kettle.example>";
    config.agora_app_id = "app-0123";
    config.agora_customer_id = "cust-id";
    config.agora_customer_secret = "s3cret-agora-value";
    config.agora_rtm_user_id = "switchboard";
    config.agora_rtm_base_url = agora_base;
    sb_pgpool_config_t pc = {.conninfo = url,
                             .size = 4,
                             .statement_timeout_ms = 5000,
                             .connect_timeout_ms = 5000,
                             .queue_timeout_ms = 5000,
                             .max_queue = 1000};
    pool = sb_pgpool_create(loop, &pc);

    test_availability();
    test_invalid_arguments();
    test_hostile_argument_names();
    test_schema_bounds();
    test_reads();
    test_writes();
    test_injection();
    test_scoping();
    test_escalation_email();
    test_messaging(&agora);
    test_cancel(&agora);
    test_custom_tables();
    test_call_tools();

    fake_stop(&agora);
    sb_pgpool_destroy(pool);
    sb_curlm_destroy(curlm);
    uv_run(loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(loop), 0, "every handle was closed");
    free(loop);
    stop_smtp();
    PQfinish(db);
    for (size_t i = 0; i < ncreated; ++i)
        exec_admin("DROP DATABASE IF EXISTS %s WITH (FORCE)", created_dbs[i]);
    PQfinish(admin);
    free(url);
    curl_global_cleanup();
    return done_testing();
}
