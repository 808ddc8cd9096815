/*
 * A WebSocket connection: h2o's HTTP/1 upgrade hands over the socket, wslay
 * frames and unframes, and this file owns the rest (h2o's own websocket.c
 * writes one frame per write and frees itself inside its callbacks; here
 * every frame queued since the last write goes out in the next one, and the
 * end is one deferred callback). One libuv timer serves the idle limit, the
 * closing handshake's deadline and that last callback.
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <wslay/wslay.h>

#include "sb/alloc.h"
#include "ws.h"

#include <h2o/http1.h> /* after h2o.h (ws.h), which it needs */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WRITE_BATCH (16u << 10) /* frames gathered into one write, unless one frame is bigger */
#define CLOSE_DEADLINE_MS 2000  /* a peer that does not answer our close frame is cut off after this */

typedef enum ws_state {
    WS_UPGRADING, /* the 101 is on its way: messages queue */
    WS_OPEN,
    WS_CLOSING, /* closing: our close frame follows what is queued, then the peer's is awaited (CLOSE_DEADLINE_MS) */
    WS_CLOSED,  /* the socket is closed; `closed` is due from the timer */
} ws_state_t;

struct sb_ws {
    h2o_socket_t *sock; /* NULL until upgraded, and once closed */
    wslay_event_context_ptr ctx;
    struct wslay_event_callbacks callbacks;
    const sb_ws_ops_t *ops;
    void *data;
    sb_ws_limits_t limits;
    uv_loop_t *loop;
    uv_timer_t timer; /* idle (OPEN), the close deadline (CLOSING), the last callback (CLOSED) */
    ws_state_t state;
    char *out; /* the write in flight, or the frames gathering for the next one */
    size_t out_len, out_cap;
    uint64_t last_message; /* uv_now() of the peer's last message */
    uint64_t window;       /* the second `count` counts messages in */
    unsigned count;
    unsigned code;   /* for `closed` */
    const char *why; /* for `closed`: which limit ended it, or NULL */
    int writing;     /* h2o_socket_write in flight */
    int in_recv;     /* inside wslay_event_recv: wslay must not be asked to send */
    int full;        /* sb_ws_send said 1: `drained` is owed */
    int close_owed;  /* sb_ws_close was called: the close frame is queued once the messages before it are out */
    unsigned close_code;
    char close_reason[124];
};

static void flush(sb_ws_t *ws);

/* --- the end --------------------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    sb_ws_t *ws = h->data;
    wslay_event_context_free(ws->ctx);
    free(ws->out);
    free(ws);
}

static void on_notify(uv_timer_t *timer)
{
    sb_ws_t *ws = timer->data;
    ws->ops->closed(ws, ws->data, ws->code, ws->why);
    uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

/* Closes the socket now and owes the owner its `closed` from the loop. */
static void finish(sb_ws_t *ws, unsigned code)
{
    if (ws->state == WS_CLOSED)
        return;
    if (ws->sock != NULL)
        h2o_socket_close(ws->sock); /* a write in flight is dropped: h2o clears its callback first */
    ws->sock = NULL;
    ws->state = WS_CLOSED;
    ws->code = code;
    uv_timer_start(&ws->timer, on_notify, 0, 0);
}

/* The code both sides agreed on: the peer's when it closed, else ours, else none was sent. */
static unsigned agreed_code(sb_ws_t *ws)
{
    if (wslay_event_get_close_received(ws->ctx)) {
        unsigned c = wslay_event_get_status_code_received(ws->ctx);
        return c == WSLAY_CODE_NO_STATUS_RCVD ? SB_WS_NORMAL : c;
    }
    return wslay_event_get_close_sent(ws->ctx) ? wslay_event_get_status_code_sent(ws->ctx) : SB_WS_ABNORMAL;
}

/* Both close frames have crossed (or reading and writing are over): the connection is done. */
static void finish_if_over(sb_ws_t *ws)
{
    if (ws->state == WS_CLOSED || ws->writing || wslay_event_want_read(ws->ctx) || wslay_event_want_write(ws->ctx))
        return;
    if (ws->why == NULL && wslay_event_get_close_sent(ws->ctx) && wslay_event_get_status_code_sent(ws->ctx) == SB_WS_TOO_BIG)
        ws->why = "too_big"; /* wslay refused an oversized message itself */
    finish(ws, agreed_code(ws));
}

/* --- wslay's side ---------------------------------------------------------------------------------- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    sb_ws_t *ws = user;
    if (ws->sock == NULL || ws->sock->input->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > ws->sock->input->size)
        len = ws->sock->input->size;
    memcpy(buf, ws->sock->input->bytes, len);
    h2o_buffer_consume(&ws->sock->input, len);
    return (ssize_t)len;
}

/* wslay hands over frame bytes: gathered for the next write, which one write in flight at a time holds back. */
static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    sb_ws_t *ws = user;
    if (ws->writing || (ws->out_len > 0 && ws->out_len + len > WRITE_BATCH)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (ws->out_len + len > ws->out_cap) {
        ws->out_cap = ws->out_len + len > WRITE_BATCH ? ws->out_len + len : WRITE_BATCH;
        ws->out = sb_realloc(ws->out, ws->out_cap);
    }
    memcpy(ws->out + ws->out_len, data, len);
    ws->out_len += len;
    return (ssize_t)len;
}

/* Whether the peer is within its message rate; each message, control frames included, counts. */
static int within_rate(sb_ws_t *ws)
{
    uint64_t second = uv_now(ws->loop) / 1000;
    if (second != ws->window) {
        ws->window = second;
        ws->count = 0;
    }
    return ++ws->count <= ws->limits.rate;
}

static void on_wslay_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    sb_ws_t *ws = user;
    if (ws->state != WS_OPEN || arg->opcode == WSLAY_CONNECTION_CLOSE)
        return; /* wslay answers a close frame itself */
    ws->last_message = uv_now(ws->loop);
    if (!within_rate(ws)) {
        ws->why = "rate";
        sb_ws_close(ws, SB_WS_POLICY, "too many messages");
        return;
    }
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        ws->ops->message(ws, ws->data, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        ws->why = "binary";
        sb_ws_close(ws, SB_WS_UNSUPPORTED, "text messages only");
        break;
    default: /* ping (wslay queues the pong) and pong */
        break;
    }
}

/* --- the socket's side ----------------------------------------------------------------------------- */

static void on_written(h2o_socket_t *sock, const char *err)
{
    sb_ws_t *ws = sock->data;
    ws->writing = 0;
    ws->out_len = 0;
    if (err != NULL) {
        finish(ws, SB_WS_ABNORMAL);
        return;
    }
    flush(ws);
    if (!ws->writing) { /* all out: an idle connection keeps no write buffer */
        free(ws->out);
        ws->out = NULL;
        ws->out_cap = 0;
    }
    if (ws->full && ws->state != WS_CLOSED && sb_ws_queued(ws) < SB_WS_LOW_WATER) {
        ws->full = 0;
        ws->ops->drained(ws, ws->data);
    }
    if (ws->state != WS_CLOSED)
        finish_if_over(ws);
}

/* Has wslay frame what is queued, and writes it when no write is in flight. Never from inside wslay_event_recv. */
static void flush(sb_ws_t *ws)
{
    if (ws->sock == NULL || ws->in_recv || ws->writing)
        return;
    /* wslay sends control frames ahead of messages: the close waits until every message before it is out */
    if (ws->close_owed && wslay_event_get_queued_msg_count(ws->ctx) == 0 && ws->out_len == 0) {
        ws->close_owed = 0;
        if (wslay_event_queue_close(ws->ctx, (uint16_t)ws->close_code, (const uint8_t *)ws->close_reason,
                                    strlen(ws->close_reason)) != 0) {
            finish(ws, ws->close_code);
            return;
        }
    }
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        finish(ws, SB_WS_ABNORMAL);
        return;
    }
    if (ws->out_len == 0)
        return;
    ws->writing = 1;
    h2o_iovec_t buf = h2o_iovec_init(ws->out, ws->out_len);
    h2o_socket_write(ws->sock, &buf, 1, on_written);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    sb_ws_t *ws = sock->data;
    if (err != NULL) {
        finish(ws, SB_WS_ABNORMAL);
        return;
    }
    ws->in_recv = 1;
    int failed = 0;
    while (!failed && ws->sock != NULL && ws->sock->input->size > 0 && wslay_event_want_read(ws->ctx))
        failed = wslay_event_recv(ws->ctx) != 0;
    ws->in_recv = 0;
    if (failed) {
        finish(ws, SB_WS_ABNORMAL);
        return;
    }
    if (ws->sock == NULL)
        return;
    if (ws->sock->input->size == 0) { /* an idle connection keeps no read buffer: h2o reserves one on the next read */
        h2o_buffer_dispose(&ws->sock->input);
        h2o_buffer_init(&ws->sock->input, &h2o_socket_buffer_prototype);
    }
    if (!wslay_event_want_read(ws->ctx))
        h2o_socket_read_stop(ws->sock);
    flush(ws);
    finish_if_over(ws);
}

static void on_timer(uv_timer_t *timer)
{
    sb_ws_t *ws = timer->data;
    if (ws->state == WS_CLOSING) {
        finish(ws, ws->close_code);
        return;
    }
    uint64_t idle = uv_now(ws->loop) - ws->last_message;
    if (idle < ws->limits.idle_ms) {
        uv_timer_start(&ws->timer, on_timer, ws->limits.idle_ms - idle, 0);
        return;
    }
    ws->why = "idle";
    sb_ws_close(ws, SB_WS_GOING_AWAY, "idle");
}

static void on_upgraded(void *user, h2o_socket_t *sock, size_t reqsize)
{
    sb_ws_t *ws = user;
    if (sock == NULL) {
        finish(ws, SB_WS_ABNORMAL);
        return;
    }
    ws->sock = sock;
    sock->data = ws;
    h2o_buffer_consume(&sock->input, reqsize);
    if (ws->state == WS_UPGRADING)
        ws->state = WS_OPEN;
    h2o_socket_read_start(sock, on_read);
    if (sock->input->size > 0) /* frames that came right behind the handshake */
        on_read(sock, NULL);
    else
        flush(ws);
}

/* --- public ---------------------------------------------------------------------------------------- */

static int header_is(h2o_req_t *req, const char *name, size_t len, const char *value, size_t vlen)
{
    ssize_t at = h2o_find_header_by_str(&req->headers, name, len, -1);
    return at >= 0 && h2o_lcstris(req->headers.entries[at].value.base, req->headers.entries[at].value.len, value, vlen);
}

int sb_ws_is_handshake(h2o_req_t *req, h2o_iovec_t *key)
{
    if (req->version >= 0x200 || !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) || req->upgrade.base == NULL ||
        !h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket")))
        return 0;
    ssize_t at = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-key"), -1);
    if (at < 0 || req->headers.entries[at].value.len != 24 ||
        !header_is(req, H2O_STRLIT("sec-websocket-version"), H2O_STRLIT("13")))
        return -1;
    *key = req->headers.entries[at].value;
    return 1;
}

h2o_iovec_t sb_ws_query_param(h2o_req_t *req, const char *name)
{
    size_t n = strlen(name);
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - q) > n && memcmp(q, name, n) == 0 && q[n] == '=')
            return h2o_iovec_init(q + n + 1, (size_t)(stop - q) - n - 1);
        q = stop + 1;
    }
    return h2o_iovec_init(NULL, 0);
}

sb_ws_t *sb_ws_accept(h2o_req_t *req, h2o_iovec_t key, const char *protocol, const sb_ws_limits_t *limits, const sb_ws_ops_t *ops,
                      void *data)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    sb_ws_t *ws = sb_calloc(1, sizeof(*ws));
    ws->ops = ops;
    ws->data = data;
    ws->limits = *limits;
    ws->loop = sock != NULL ? h2o_socket_get_loop(sock) : req->conn->ctx->loop;
    ws->last_message = uv_now(ws->loop);
    ws->callbacks.recv_callback = on_wslay_recv;
    ws->callbacks.send_callback = on_wslay_send;
    ws->callbacks.on_msg_recv_callback = on_wslay_message;
    if (wslay_event_context_server_init(&ws->ctx, &ws->callbacks, ws) != 0)
        h2o_fatal("wslay: out of memory");
    wslay_event_config_set_max_recv_msg_length(ws->ctx, limits->max_message);
    uv_timer_init(ws->loop, &ws->timer);
    ws->timer.data = ws;
    uv_timer_start(&ws->timer, on_timer, limits->idle_ms, 0);

    /* the accept key: base64(SHA-1(key . GUID)), RFC 6455 §4.2.2 */
    unsigned char src[24 + sizeof(WS_GUID) - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(src, key.base, 24);
    memcpy(src + 24, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1(src, sizeof(src), digest);
    char *accept = h2o_mem_alloc_pool(&req->pool, h2o_base64_encode_capacity(sizeof(digest)));
    size_t alen = h2o_base64_encode(accept, digest, sizeof(digest), 0);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept, alen);
    if (protocol != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"), 0, NULL, protocol,
                              strlen(protocol));
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, ws);
    return ws;
}

int sb_ws_send(sb_ws_t *ws, const char *text, size_t len)
{
    if (ws->state == WS_CLOSED || ws->state == WS_CLOSING)
        return -1;
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    if (wslay_event_queue_msg(ws->ctx, &msg) != 0)
        return -1;
    flush(ws);
    if (ws->state != WS_CLOSED && sb_ws_queued(ws) > SB_WS_HIGH_WATER) {
        ws->full = 1;
        return 1;
    }
    return 0;
}

void sb_ws_close(sb_ws_t *ws, unsigned code, const char *reason)
{
    if (ws->state == WS_CLOSED || ws->state == WS_CLOSING)
        return;
    ws->state = WS_CLOSING;
    ws->close_owed = 1;
    ws->close_code = code;
    snprintf(ws->close_reason, sizeof(ws->close_reason), "%s", reason != NULL ? reason : "");
    uv_timer_start(&ws->timer, on_timer, CLOSE_DEADLINE_MS, 0);
    flush(ws);
    if (ws->state != WS_CLOSED)
        finish_if_over(ws);
}

size_t sb_ws_queued(const sb_ws_t *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx) + ws->out_len;
}
