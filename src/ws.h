/*
 * A WebSocket connection for switchboard's socket channels (the session API,
 * Retell's custom LLM socket): the handshake on an HTTP/1 request, then
 * wslay's framing over the h2o socket h2o hands over. It enforces the
 * limits every channel wants (message size, message rate, idle time), writes
 * whatever is queued in one write at a time, tells its owner when a slow
 * reader has caught up, and ends in exactly one `closed` callback, always
 * from the loop and never from inside one of this module's calls. Loop
 * thread only.
 */
#ifndef SB_WS_H
#define SB_WS_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#define SB_WS_HIGH_WATER (64u << 10) /* queued output above this: sb_ws_send says so, the owner should pause */
#define SB_WS_LOW_WATER (16u << 10)  /* ...and `drained` follows once it is below this */

/* Close codes (RFC 6455 §7.4.1) the channels use. */
enum {
    SB_WS_NORMAL = 1000,
    SB_WS_GOING_AWAY = 1001,      /* the server drains, or the peer leaves */
    SB_WS_UNSUPPORTED = 1003,     /* a binary message where text was expected */
    SB_WS_ABNORMAL = 1006,        /* no close frame: the connection dropped */
    SB_WS_POLICY = 1008,          /* too many messages, an expired session */
    SB_WS_TOO_BIG = 1009,         /* a message over the size limit */
    SB_WS_INTERNAL = 1011,        /* something broke on this side */
    SB_WS_TRY_AGAIN_LATER = 1013, /* busy */
};

typedef struct sb_ws sb_ws_t;

typedef struct sb_ws_limits {
    size_t max_message; /* bytes of one message, fragments joined; a bigger one closes with 1009 */
    unsigned rate;      /* messages a second over any second, pings included; more closes with 1008 */
    uint64_t idle_ms;   /* no message from the peer for this long closes with 1001 */
} sb_ws_limits_t;

typedef struct sb_ws_ops {
    /* A whole text message (not checked for UTF-8: the owner's JSON parser does that). May send and close. */
    void (*message)(sb_ws_t *ws, void *data, const char *text, size_t len);
    /* After sb_ws_send returned 1, the queued output went below SB_WS_LOW_WATER. */
    void (*drained)(sb_ws_t *ws, void *data);
    /*
     * The connection is over: `code` is the peer's close code, or the one
     * this side sent, or SB_WS_ABNORMAL; `why` says which limit, if any
     * ("too_big", "rate", "idle", "binary"), else NULL. `ws` is freed when
     * this returns.
     */
    void (*closed)(sb_ws_t *ws, void *data, unsigned code, const char *why);
} sb_ws_ops_t;

/*
 * Whether `req` asks for a WebSocket: GET with Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version 13 and a 24-character key (into `key`,
 * borrowed from the request). 1: yes; 0: not a WebSocket request; -1: one
 * that is malformed (answer 400).
 */
int sb_ws_is_handshake(h2o_req_t *req, h2o_iovec_t *key);

/*
 * The value of parameter `name` in the query string of `req` (borrowed, as
 * sent: not percent-decoded), base NULL when absent. Where a socket's
 * credential comes when its client can set no header (a browser, a voice
 * platform): path_normalized, which the access log writes, never holds it.
 */
h2o_iovec_t sb_ws_query_param(h2o_req_t *req, const char *name);

/*
 * Answers the handshake of `req` (HTTP/1 only: sb_ws_is_handshake said 1)
 * with 101, naming `protocol` (NULL: none) as the chosen subprotocol, and
 * takes its connection over. `ops` (static) and `data` are the owner's.
 * Returns the connection; `closed` is its last callback, also when the
 * upgrade itself fails.
 */
sb_ws_t *sb_ws_accept(h2o_req_t *req, h2o_iovec_t key, const char *protocol, const sb_ws_limits_t *limits, const sb_ws_ops_t *ops,
                      void *data);

/*
 * Queues one text message (copied). Returns 0; 1 when the queued output is
 * above SB_WS_HIGH_WATER (queued all the same: the owner should stop
 * producing until `drained`); -1 when the connection is closing (dropped).
 */
int sb_ws_send(sb_ws_t *ws, const char *text, size_t len);

/*
 * Starts the closing handshake with `code` and `reason` (at most 123 bytes).
 * What is queued goes out first; a peer that does not answer within two
 * seconds is cut off. `closed` follows. Nothing when closing already.
 */
void sb_ws_close(sb_ws_t *ws, unsigned code, const char *reason);

/* Bytes of output queued and not yet written. */
size_t sb_ws_queued(const sb_ws_t *ws);

#endif
