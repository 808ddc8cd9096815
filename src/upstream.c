/*
 * The streaming call every provider API shares: POST the wire's body to the
 * route's URL over the worker's curl multi handle, decode the SSE stream as
 * bytes arrive, and hand each event to the wire (wire.h), whose deltas go to
 * the turn. Owns the upstream deadlines (first byte, gap, total) and the
 * single retry, which is allowed only while nothing reached the client.
 */
#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o/memory.h>

#include "limit.h"
#include "llm.h"
#include "metrics.h"
#include "wire.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"
#include "sb/sse.h"

#define MAX_ERROR_BODY 65536
#define MAX_MESSAGE 300
/* A provider connection idle this long is closed rather than reused (the cache is as large as the busiest moment). */
#define IDLE_CONNECTION_S 60L
/*
 * curl's receive buffer, one per call for the whole stream (curl's default is
 * 16 KiB). A streamed token is one SSE event of a few hundred bytes; a burst
 * of them takes a few reads instead of one. At 1,000 open streams, 4 KiB
 * instead of 16 saved about 1 KiB of RSS per stream, 2 KiB another 2, and
 * 1 KiB (curl's least) another 0.9. The price is paid by answers that arrive
 * all at once: an 8.7 KB burst takes nine reads (and curl's poll before each)
 * instead of five, about 5 % more CPU per such turn. A voice turn's tokens come
 * apart, a read each whatever the buffer, so its memory is what counts.
 */
#define RECEIVE_BUFFER_BYTES 1024L
/* An event this small is decoded into the stack rather than the call's scratch, which then never needs to exist. */
#define STACK_SCRATCH_BYTES 2048

enum state { ST_RUNNING, ST_BACKOFF, ST_FAILED, ST_ENDED };

struct call {
    sb_llm_call_t super;
    const sb_llm_env_t *env;
    const sb_endpoint_t *to;
    void *wire_state;    /* the wire's per-attempt parsing state, to->wire->state_size bytes */
    sb_llm_sink_t *sink; /* NULL once cancelled */
    sb_xfer_t xfer;
    char *body;
    size_t body_len;
    struct curl_slist *headers; /* the provider's headers and this turn's request id and trace context */
    sb_sse_decoder_t sse;
    char *scratch; /* decoded strings of the event being parsed; as large as the largest event yet */
    size_t scratch_cap;
    sb_buf_t errbody;
    sb_buf_t answer; /* a whole answer (whole): the 200 body, up to MAX_UPSTREAM_BYTES */
    uv_timer_t *timer;
    enum state state;
    long status;
    unsigned attempts;
    uint64_t started_at, attempt_at, last_data_at;
    size_t bytes;
    unsigned xfer_running : 1, got_header : 1, got_first_byte : 1, delivered : 1, saw_done : 1, paused : 1, pause_wanted : 1,
        asked_whole : 1, /* one whole answer is asked for (the request's whole, and a wire that reads one), not a stream */
        whole : 1,       /* this attempt's answer is read whole: asked_whole, unless the provider streamed anyway */
        finishing : 1;   /* on_xfer_done hands on the last of the answer: a sink that ends the call then leaves it to free */
    char retry_after[32];
    /* the outcome, filled before the sink hears of it */
    sb_error_t error;
    int timed_out;
    char *message; /* MAX_MESSAGE + 1 bytes, made when there is something to say; "" or NULL: nothing */
};

static void arm_timer(struct call *c);
static void on_deadline(uv_timer_t *t);

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void destroy(struct call *c)
{
    curl_easy_cleanup(c->xfer.easy);
    curl_slist_free_all(c->headers);
    free(c->wire_state);
    sb_sse_decoder_dispose(&c->sse);
    free(c->scratch);
    sb_buf_dispose(&c->errbody);
    sb_buf_dispose(&c->answer);
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
    free(c->body);
    free(c->message);
    free(c);
}

/*
 * Tells the sink how the call ended (once), then lets go of the transfer; the
 * call is freed when curl is done with it, which may be right here.
 */
static void end(struct call *c, sb_error_t error)
{
    if (c->state == ST_ENDED)
        return;
    c->state = ST_ENDED;
    uv_timer_stop(c->timer);
    sb_llm_sink_t *sink = c->sink;
    c->sink = NULL;
    if (sink != NULL) {
        sb_llm_end_t e = {error, c->message != NULL && c->message[0] ? c->message : NULL, c->retry_after[0] ? c->retry_after : NULL,
                          c->timed_out};
        sink->on_end(sink, &e);
    }
    if (c->xfer_running)
        sb_curlm_cancel(&c->xfer); /* on_xfer_done frees the call */
    else if (!c->finishing)        /* else on_xfer_done, which is telling the sink the last of it, frees it */
        destroy(c);
}

/* Copies a provider message for the client: bounded, printable, and never containing the provider key. */
static void set_message(struct call *c, const char *msg, size_t len)
{
    if (c->message == NULL)
        c->message = sb_alloc(MAX_MESSAGE + 1);
    const char *key = c->to->key;
    size_t o = 0;
    for (size_t i = 0; i < len && o < MAX_MESSAGE; ++i) {
        if (key != NULL && *key != '\0' && len - i >= strlen(key) && memcmp(msg + i, key, strlen(key)) == 0) {
            static const char mask[] = "[redacted]";
            for (const char *m = mask; *m != '\0' && o < MAX_MESSAGE; ++m)
                c->message[o++] = *m;
            i += strlen(key) - 1;
            continue;
        }
        unsigned char ch = (unsigned char)msg[i];
        c->message[o++] = ch < 0x20 ? ' ' : (char)ch;
    }
    /* never leave half a UTF-8 sequence at the cut */
    if (o == MAX_MESSAGE)
        while (o > 0 && ((unsigned char)c->message[o - 1] & 0xC0) == 0x80)
            --o;
    c->message[o] = '\0';
}

static void set_messagez(struct call *c, const char *msg)
{
    set_message(c, msg, strlen(msg));
}

/* Room for the decoded strings of `len` bytes of the provider's JSON (decoding never makes a string longer). */
static char *scratch(struct call *c, size_t len)
{
    if (len > c->scratch_cap) {
        c->scratch = sb_realloc(c->scratch, len);
        c->scratch_cap = len;
    }
    return c->scratch;
}

/* What the wire read (`what`: "a chunk", "an answer") into `d`: the delta goes to the turn; 0, or the error it was. */
static int hand_on(struct call *c, sb_wire_result_t read, const sb_delta_t *d, sb_error_t error, const char *what)
{
    switch (read) {
    case SB_WIRE_SKIP:
        return 0;
    case SB_WIRE_END:
        c->saw_done = 1;
        return 0;
    case SB_WIRE_ERROR:
        if (error == SB_E_UPSTREAM_BAD_RESPONSE && d->error_message.base == NULL) {
            char said[160];
            snprintf(said, sizeof(said), "the model provider sent %s %s", what,
                     d->problem != NULL ? d->problem : "it could not read");
            set_messagez(c, said);
        } else if (d->error_message.base != NULL) {
            set_message(c, d->error_message.base, d->error_message.len);
        }
        return error;
    case SB_WIRE_DELTA:
        break;
    }
    c->delivered = 1;
    c->sink->on_delta(c->sink, d);
    return 0;
}

static int on_sse_event(void *ctx, const sb_sse_event_t *ev)
{
    struct call *c = ctx;
    if (c->saw_done || c->sink == NULL)
        return 0;
    /* The SSE ceiling bounds the event, so the scratch stays within max_event_bytes. */
    sb_delta_t d;
    sb_error_t error = SB_E_UPSTREAM_ERROR;
    char small[STACK_SCRATCH_BYTES]; /* a token's event: nothing of it outlives this call (wire.h) */
    char *room = ev->data_len <= sizeof(small) ? small : scratch(c, ev->data_len);
    sb_wire_result_t read = c->to->wire->event(c->wire_state, ev, room, &d, &error);
    return hand_on(c, read, &d, error, "a chunk");
}

/* The whole answer is in: the wire reads it into one delta (words, every tool call whole, finish, usage). 0 or the error. */
static int read_whole(struct call *c)
{
    if (c->sink == NULL)
        return 0;
    sb_delta_t d;
    sb_error_t error = SB_E_UPSTREAM_ERROR;
    const char *body = c->answer.base != NULL ? c->answer.base : "";
    sb_wire_result_t read = c->to->wire->whole(body, c->answer.len, scratch(c, c->answer.len), &d, &error);
    return hand_on(c, read, &d, error, "an answer");
}

/*
 * The request body is let go of once the provider has taken all of it and
 * begun a 200 answer: no retry can follow then (retryable()), and curl reads
 * the body only while sending it. A turn holds its stream open for seconds;
 * the body is one of the larger things it holds.
 */
static void release_body(struct call *c)
{
    curl_off_t sent = 0;
    if (c->body == NULL || curl_easy_getinfo(c->xfer.easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK ||
        sent < (curl_off_t)c->body_len)
        return;
    free(c->body);
    c->body = NULL;
    curl_slist_free_all(c->headers); /* like the body, read only while the request went out */
    c->headers = NULL;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct call *c = userp;
    size_t len = size * nmemb;
    if (c->state != ST_RUNNING)
        return 0;
    if (!c->got_first_byte) {
        c->got_first_byte = 1;
        curl_easy_getinfo(c->xfer.easy, CURLINFO_RESPONSE_CODE, &c->status);
        if (c->status == 200)
            release_body(c);
    }
    c->last_data_at = uv_now(c->env->loop);
    c->bytes += len;
    if (c->bytes > c->env->config->max_upstream_bytes) {
        c->error = SB_E_UPSTREAM_TOO_LARGE;
        return 0;
    }
    if (c->status != 200) {
        size_t room = MAX_ERROR_BODY - c->errbody.len;
        sb_buf_append(&c->errbody, data, len < room ? len : room);
        return len;
    }
    if (c->whole) {
        if (sb_buf_append(&c->answer, data, len) != 0) {
            c->error = SB_E_ANSWER_TOO_LARGE;
            return 0;
        }
        return len;
    }
    int rc = sb_sse_decoder_feed(&c->sse, data, len, on_sse_event, c);
    if (rc != 0) {
        c->error = rc == SB_SSE_ERR_TOO_LARGE ? SB_E_UPSTREAM_TOO_LARGE : (sb_error_t)rc;
        return 0; /* aborts the transfer: on_xfer_done reports c->error */
    }
    if (c->pause_wanted && !c->paused) {
        c->paused = 1;
        curl_easy_pause(c->xfer.easy, CURLPAUSE_RECV);
    }
    return len;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    struct call *c = userp;
    size_t len = size * nmemb;
    c->got_header = 1;
    /* asked for a whole answer, a provider (or a proxy in front of it) may stream anyway: it is read as a stream then */
    static const char type[] = "content-type:";
    if (c->whole && len > sizeof(type) - 1 && strncasecmp(line, type, sizeof(type) - 1) == 0) {
        const char *v = line + sizeof(type) - 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            ++v;
        static const char sse[] = "text/event-stream";
        if ((size_t)(end - v) >= sizeof(sse) - 1 && strncasecmp(v, sse, sizeof(sse) - 1) == 0)
            c->whole = 0;
    }
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(line, name, sizeof(name) - 1) == 0) {
        const char *v = line + sizeof(name) - 1;
        size_t vlen = len - (sizeof(name) - 1);
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            ++v, --vlen;
        while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
            --vlen;
        size_t n = 0;
        for (; n < vlen && n < sizeof(c->retry_after) - 1; ++n)
            c->retry_after[n] = isprint((unsigned char)v[n]) ? v[n] : ' ';
        c->retry_after[n] = '\0';
    }
    return len;
}

static int start_attempt(struct call *c)
{
    if (c->body == NULL) /* let go of: the answer had begun, so no attempt may follow (release_body) */
        return -1;
    ++c->attempts;
    c->attempt_at = uv_now(c->env->loop);
    c->status = 0;
    c->got_header = c->got_first_byte = c->saw_done = c->paused = c->pause_wanted = 0;
    c->whole = c->asked_whole;
    c->retry_after[0] = '\0';
    if (c->message != NULL)
        c->message[0] = '\0';
    c->error = SB_OK;
    c->bytes = 0;
    if (c->wire_state != NULL)
        memset(c->wire_state, 0, c->to->wire->state_size);
    sb_buf_reset(&c->errbody);
    sb_buf_reset(&c->answer);
    sb_sse_decoder_dispose(&c->sse);
    sb_sse_decoder_init(&c->sse, c->env->config->max_event_bytes);
    if (sb_curlm_add(c->env->curlm, &c->xfer) != 0)
        return -1;
    c->xfer_running = 1;
    c->state = ST_RUNNING;
    arm_timer(c);
    return 0;
}

/* A failure worth one more try: nothing reached the client, and the provider may well answer next time. */
/*
 * Sockets to the provider, counted for the metrics (open connections, and
 * how many were opened: a pooled connection is reused, a new one costs a
 * handshake before the first token). curl keeps these callbacks with the
 * connection and closes it from its pool later, on this worker's thread,
 * so they use no per-call data.
 */
static curl_socket_t on_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)data;
    (void)purpose;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd != CURL_SOCKET_BAD)
        sb_metrics_provider_connection(1);
    else
        sb_limit_refused("open a connection to the provider", errno);
    return fd;
}

static int on_close_socket(void *data, curl_socket_t fd)
{
    (void)data;
    sb_metrics_provider_connection(-1);
    return close(fd);
}

static int retryable(struct call *c, CURLcode result)
{
    if (c->delivered || c->attempts >= 2 || c->sink == NULL)
        return 0;
    if (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST)
        return 1;
    if (result == CURLE_OPERATION_TIMEDOUT && !c->got_first_byte) /* only the connect timeout is curl's */
        return 1;
    if (result == CURLE_OK && (c->status == 429 || c->status >= 500)) {
        /* A provider asking for a long pause gets its 429 passed on instead. */
        long ra = c->retry_after[0] ? strtol(c->retry_after, NULL, 10) : 0;
        return ra <= 2;
    }
    return 0;
}

static void on_xfer_done(sb_xfer_t *x, CURLcode result)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, xfer, x);
    c->xfer_running = 0;
    if (c->state == ST_ENDED) {
        destroy(c);
        return;
    }
    if (result == CURLE_OK && c->status == 200) {
        /* the whole answer, or the stream's last event without its blank line: the sink may end the call hearing it */
        c->finishing = 1;
        int rc = c->whole ? read_whole(c) : sb_sse_decoder_finish(&c->sse, on_sse_event, c);
        c->finishing = 0;
        if (c->state == ST_ENDED) {
            destroy(c);
            return;
        }
        if (c->whole) {
            end(c, rc == 0 ? SB_OK : (sb_error_t)rc);
            return;
        }
        if (rc == 0 && c->sink != NULL && (c->delivered || c->saw_done)) {
            end(c, SB_OK);
            return;
        }
        c->error = rc == 0 ? SB_E_UPSTREAM_BAD_RESPONSE : rc == SB_SSE_ERR_TOO_LARGE ? SB_E_UPSTREAM_TOO_LARGE : (sb_error_t)rc;
        if (rc == 0)
            set_messagez(c, "the model provider ended the stream without an answer");
        end(c, c->error);
        return;
    }
    if (retryable(c, result)) {
        uint64_t base = c->env->config->llm_retry_backoff_ms;
        uint64_t delay = base / 2 + (base ? randombytes_uniform((uint32_t)base + 1) : 0); /* 50-150% */
        sb_log_warn("upstream attempt failed (%s, status %ld); retrying in %llu ms", curl_easy_strerror(result), c->status,
                    (unsigned long long)delay);
        sb_metrics_provider_retry(c->to->provider);
        c->state = ST_BACKOFF;
        uv_timer_start(c->timer, on_deadline, delay, 0);
        return;
    }
    sb_error_t error;
    if (c->error != SB_OK) {
        error = c->error;
    } else if (result == CURLE_OK) {
        error = sb_error_for_provider_status(c->status);
        if (error != SB_E_UPSTREAM_AUTH) { /* an auth failure message can quote the key: say ours */
            char said[MAX_MESSAGE + 1];
            c->to->wire->error_message(c->errbody.base != NULL ? c->errbody.base : "", c->errbody.len, said, sizeof(said));
            set_messagez(c, said);
        }
    } else if (result == CURLE_OPERATION_TIMEDOUT) {
        error = SB_E_UPSTREAM_TIMEOUT;
        c->timed_out = 1;
    } else if (!c->got_header) {
        error = SB_E_UPSTREAM_UNAVAILABLE;
    } else if (!c->got_first_byte) { /* it answered, but its head could not be read */
        error = SB_E_UPSTREAM_BAD_RESPONSE;
        set_messagez(c, result == CURLE_OUT_OF_MEMORY ? "the model provider sent a response header larger than 100 KB"
                                                      : "the model provider's response head could not be read");
    } else {
        error = SB_E_UPSTREAM_ERROR;
        set_messagez(c, "the model provider closed the stream early");
    }
    end(c, error);
}

/*
 * One timer per call. While running it enforces the deadlines, re-armed for the
 * nearest one; after a failed attempt it carries the backoff and starts the retry.
 */
static void on_deadline(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->state == ST_FAILED) { /* nothing was started: tell the turn why */
        end(c, c->error);
        return;
    }
    if (c->state == ST_BACKOFF) {
        if (start_attempt(c) != 0)
            end(c, SB_E_INTERNAL);
        return;
    }
    arm_timer(c);
}

static void arm_timer(struct call *c)
{
    const sb_config_t *cf = c->env->config;
    uint64_t now = uv_now(c->env->loop);
    uint64_t due = c->started_at + cf->llm_total_timeout_ms;
    if (!c->got_first_byte && !c->whole) {
        /* a whole answer's first byte comes when all of it is written: only LLM_TOTAL_TIMEOUT_MS bounds the wait */
        uint64_t fb = c->attempt_at + cf->llm_first_byte_timeout_ms;
        due = fb < due ? fb : due;
    } else if (c->got_first_byte && !c->paused) {
        uint64_t idle = c->last_data_at + cf->llm_idle_timeout_ms;
        due = idle < due ? idle : due;
    }
    if (due <= now) {
        c->timed_out = 1;
        char what[128];
        if (now >= c->started_at + cf->llm_total_timeout_ms)
            snprintf(what, sizeof(what), "the model provider did not finish within LLM_TOTAL_TIMEOUT_MS (%u ms)",
                     cf->llm_total_timeout_ms);
        else
            snprintf(what, sizeof(what), "%s",
                     c->got_first_byte ? "the model provider stalled mid-stream"
                                       : "the model provider did not start answering in time");
        set_messagez(c, what);
        end(c, SB_E_UPSTREAM_TIMEOUT);
        return;
    }
    uv_timer_start(c->timer, on_deadline, due - now, 0);
}

sb_llm_call_t *sb_upstream_start(const sb_llm_env_t *env, const sb_endpoint_t *to, const char *model, const sb_chat_request_t *req,
                                 sb_llm_sink_t *sink)
{
    const sb_wire_t *wire = to->wire;
    sb_wire_target_t target = {to->base_url, model != NULL ? model : req->model, env->config};
    struct call *c = sb_calloc(1, sizeof(*c));
    c->super.provider = &sb_provider_upstream;
    c->env = env;
    c->to = to;
    c->sink = sink;
    c->wire_state = wire->state_size ? sb_calloc(1, wire->state_size) : NULL;
    sb_buf_init(&c->errbody, MAX_ERROR_BODY);
    /* a whole answer is held until it is read: its words are bounded by MAX_ANSWER_BYTES, and JSON escapes at most
     * six bytes for one; past that the answer is refused as the turn would refuse its words */
    size_t most = env->config->max_answer_bytes <= (SIZE_MAX - 65536) / 6 ? env->config->max_answer_bytes * 6 + 65536 : SIZE_MAX;
    sb_buf_init(&c->answer, most < env->config->max_upstream_bytes ? most : env->config->max_upstream_bytes);
    c->asked_whole = c->whole = req->whole && wire->whole != NULL;
    sb_sse_decoder_init(&c->sse, env->config->max_event_bytes);
    c->timer = sb_alloc(sizeof(*c->timer));
    uv_timer_init(env->loop, c->timer);
    c->timer->data = c;
    char err[MAX_MESSAGE + 1] = "";
    c->body = wire->body(&target, req, err, sizeof(err));
    if (c->body == NULL) { /* this API cannot say the request: the turn hears why, from the loop as always */
        set_messagez(c, err[0] ? err : "the request cannot be sent to this model provider");
        c->error = SB_E_INVALID_REQUEST;
        c->state = ST_FAILED;
        uv_timer_start(c->timer, on_deadline, 0, 0);
        return &c->super;
    }
    c->body_len = strlen(c->body);

    CURL *e = c->xfer.easy = curl_easy_init();
    if (e == NULL)
        h2o_fatal("curl_easy_init failed");
    c->xfer.on_done = on_xfer_done;
    const sb_config_t *cf = env->config;
    char *url = wire->url(&target);
    curl_easy_setopt(e, CURLOPT_URL, url); /* curl keeps its own copy */
    free(url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    for (const struct curl_slist *h = to->headers; h != NULL; h = h->next)
        if (!c->whole || strncasecmp(h->data, "Accept:", 7) != 0)
            c->headers = curl_slist_append(c->headers, h->data);
    if (c->whole)
        c->headers = curl_slist_append(c->headers, "Accept: application/json");
    char line[128];
    snprintf(line, sizeof(line), "X-Request-Id: %s", req->request_id); /* both checked to be plain ASCII (request.c) */
    if (req->request_id[0] != '\0')
        c->headers = curl_slist_append(c->headers, line);
    snprintf(line, sizeof(line), "traceparent: %s", req->traceparent);
    if (req->traceparent[0] != '\0')
        c->headers = curl_slist_append(c->headers, line);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, RECEIVE_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, IDLE_CONNECTION_S);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cf->llm_connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, cf->llm_http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    /* A turn that finds the provider's connection still in its TLS handshake waits to learn whether it speaks HTTP/2
     * and joins it, instead of opening its own: a burst of turns then opens one connection, not one each. */
    if (cf->llm_http2 && strncmp(to->base_url, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (cf->llm_ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, cf->llm_ca_file);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "switchboard/" SB_VERSION);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);

    c->started_at = uv_now(env->loop);
    if (start_attempt(c) != 0) {
        c->xfer_running = 0;
        c->sink = NULL;
        destroy(c);
        return NULL;
    }
    return &c->super;
}

static void pause_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    c->pause_wanted = 1;
}

static void resume_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    c->pause_wanted = 0;
    if (!c->paused || c->state != ST_RUNNING)
        return;
    c->paused = 0;
    c->last_data_at = uv_now(c->env->loop);
    sb_curlm_unpause(&c->xfer);
}

static void cancel_call(sb_llm_call_t *call)
{
    struct call *c = H2O_STRUCT_FROM_MEMBER(struct call, super, call);
    c->sink = NULL;
    end(c, SB_OK);
}

const sb_provider_t sb_provider_upstream = {
    .name = "upstream",    /* every HTTP provider, spoken by its route's wire */
    .start = NULL,         /* started with its endpoint: sb_upstream_start (route.c) */
    .pause = pause_call,   /* curl pauses the transfer */
    .resume = resume_call, /* and unpauses it */
    .cancel = cancel_call, /* the transfer ends at once */
};
