/*
 * escalate_ticket: one statement records the escalation, marks the ticket
 * escalated (raising its priority, never lowering it) and logs an
 * 'escalation' interaction, all keyed by the turn's idempotency key. Then,
 * when SMTP is configured and the escalation is new, an email tells the
 * support team (SUPPORT_EMAIL) through libcurl's SMTP on the worker's curl
 * multi. The email is a notification, not the record: when it cannot be
 * sent the tool still succeeds (email_sent: false) and email_sent_at stays
 * NULL, which is what a human sweeping for unsent escalations looks for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "tools.h"
#include "sb/alloc.h"
#include "sb/buf.h"
#include "sb/log.h"

/* A voice turn waits for the email: bounded well below the caller's patience. */
#define SMTP_CONNECT_TIMEOUT_MS 3000L
#define SMTP_TOTAL_TIMEOUT_MS 8000L
#define MAX_MESSAGE_BYTES 65536

static const char *const priorities[] = {"low", "normal", "high", "urgent", NULL};

static char *escalate_sql;

/* The envelope sender (<addr>) and the From header, settled at start-up. */
static char mail_from[320], from_header[512], msgid_domain[256];

struct escalate_args {
    json_int_t ticket_id;
    const char *reason, *priority, *escalated_to;
};

static const sb_tool_arg_t escalate_rows[] = {
    SB_INT("ticket_id", 1, 1, INT64_MAX, 0, struct escalate_args, ticket_id, NULL),
    SB_TEXT("reason", 1, 1, 1000, struct escalate_args, reason, "why it needs a human"),
    SB_ENUM("priority", 0, priorities, struct escalate_args, priority, "how urgent; high when not given"),
    SB_TEXT("escalated_to", 0, 1, 200, struct escalate_args, escalated_to, "a team or person, e.g. tier 2"),
};

const sb_tool_args_t sb_args_escalate_ticket =
    SB_TOOL_ARGS("Escalate a support ticket to a human team (tier 2, a supervisor) with the reason, when you cannot solve it. "
                 "Marks the ticket escalated, raises its priority and notifies the support team by email.",
                 struct escalate_args, escalate_rows, NULL);

/*
 * $1 ticket id, $2 reason, $3 priority, $4 escalated to, $5 idempotency key,
 * $6/$7 scope. A repeat (the key is already there, also one written a
 * moment ago by a concurrent twin) changes nothing and returns the first
 * escalation with created:false. customer_email is for the
 * email only; the handler drops it from what the model reads.
 */
/* clang-format off: the statement reads as SQL, a line a clause */
static const char escalate_tmpl[] =
    "with tk as (select t.id, t.subject, t.customer_id, c.name as customer_name, c.email as customer_email"
    "  from {{tickets_table}} t left join customers c on c.id = t.customer_id"
    "  where t.id = $1 and ($6::bigint is null or t.customer_id = $6) and ($7::text is null or lower(c.email) = lower($7))),"
    " esc as (insert into escalations as e (ticket_id, reason, priority, escalated_to, idempotency_key)"
    "  select tk.id, $2, $3, $4, $5 from tk" REPEAT_RETURNS(
        "e.ticket_id = excluded.ticket_id") "),"
                                            " upd as (update {{tickets_table}} t set status = 'escalated', updated_at = now(),"
                                            "  priority = case when array_position(array['low','normal','high','urgent'], "
                                            "esc.priority)"
                                            "   > array_position(array['low','normal','high','urgent'], t.priority) then "
                                            "esc.priority else t.priority end"
                                            "  from esc where t.id = esc.ticket_id and esc.created returning t.id, t.status, "
                                            "t.priority),"
                                            " note as (insert into {{interactions_table}} (ticket_id, customer_id, kind, summary, "
                                            "idempotency_key)"
                                            "  select esc.ticket_id, tk.customer_id, 'escalation',"
                                            "   'Escalated' || coalesce(' to ' || esc.escalated_to, '') || ' (' || esc.priority || "
                                            "'): ' || esc.reason, esc.idempotency_key"
                                            "  from esc join tk on tk.id = esc.ticket_id where esc.created"
                                            "  on conflict (idempotency_key) do nothing returning id)"
                                            " select json_build_object('escalation_id', e.id, 'ticket_id', e.ticket_id, 'subject', "
                                            "tk.subject,"
                                            "  'ticket_status', coalesce((select status from upd), (select status from "
                                            "{{tickets_table}} where id = e.ticket_id)),"
                                            "  'ticket_priority', coalesce((select priority from upd), (select priority from "
                                            "{{tickets_table}} where id = e.ticket_id)),"
                                            "  'priority', e.priority, 'escalated_to', e.escalated_to, 'reason', e.reason, "
                                            "'customer_id', tk.customer_id,"
                                            "  'customer_name', tk.customer_name, 'customer_email', tk.customer_email, 'created', "
                                            "e.created,"
                                            "  'email_sent', e.email_sent_at is not null, 'note_added', exists (select 1 from "
                                            "note))"
                                            " from esc e join tk on tk.id = e.ticket_id";
/* clang-format on */

static const char mark_sent_sql[] = "update escalations set email_sent_at = now() where id = $1 and email_sent_at is null";

/* --- start-up --------------------------------------------------------------------------------- */

static int has_line_break(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* The address in "Name <addr>" or "addr", into out (as "<addr>"). 0, or -1 when there is none. */
static int envelope_address(const char *from, char *out, size_t cap)
{
    const char *lt = strrchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    const char *p = lt && gt ? lt + 1 : from, *end = lt && gt ? gt : from + strlen(from);
    while (p < end && *p == ' ')
        ++p;
    while (end > p && end[-1] == ' ')
        --end;
    if (end == p || memchr(p, '@', (size_t)(end - p)) == NULL || memchr(p, ' ', (size_t)(end - p)) != NULL)
        return -1;
    int n = snprintf(out, cap, "<%.*s>", (int)(end - p), p);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int mail_configured(const sb_config_t *c)
{
    return c->smtp_url != NULL && c->support_email != NULL;
}

int sb_escalations_init(const sb_config_t *config, char *err, size_t errlen)
{
    free(escalate_sql);
    escalate_sql = sb_tool_sql(escalate_tmpl, config);
    mail_from[0] = from_header[0] = msgid_domain[0] = '\0';
    if (config->smtp_url == NULL)
        return 0;
    if (strncmp(config->smtp_url, "smtp://", 7) != 0 && strncmp(config->smtp_url, "smtps://", 8) != 0)
        return snprintf(err, errlen, "SMTP_URL must start with smtp:// or smtps://"), -1;
    if (config->support_email == NULL)
        return snprintf(err, errlen, "SMTP_URL is set but SUPPORT_EMAIL is not: who should escalation emails go to?"), -1;
    /* header values: a line break would let a setting add headers of its own */
    if (has_line_break(config->support_email) || has_line_break(config->smtp_from))
        return snprintf(err, errlen, "SUPPORT_EMAIL and SMTP_FROM must be single lines"), -1;
    const char *from = config->smtp_from;
    int user_is_address = config->smtp_user != NULL && strchr(config->smtp_user, '@') && !has_line_break(config->smtp_user);
    if (from == NULL)
        from = user_is_address ? config->smtp_user : config->support_email;
    if (config->smtp_from == NULL && strchr(from, ',') != NULL) /* SUPPORT_EMAIL may list several: send as the first */
        return snprintf(err, errlen, "set SMTP_FROM: SUPPORT_EMAIL lists several addresses"), -1;
    if (envelope_address(from, mail_from, sizeof(mail_from)) != 0)
        return snprintf(err, errlen, "SMTP_FROM must be an email address (\"addr\" or \"Name <addr>\")"), -1;
    snprintf(from_header, sizeof(from_header), "%s", from);
    const char *at = strchr(mail_from, '@');
    snprintf(msgid_domain, sizeof(msgid_domain), "%.*s", (int)strcspn(at + 1, ">"), at + 1);
    /* every recipient must be an address too, or curl would fail each send */
    for (const char *p = config->support_email; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char item[320], addr[330];
        snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) - 1 ? n : sizeof(item) - 1), p);
        if (envelope_address(item, addr, sizeof(addr)) != 0)
            return snprintf(err, errlen, "SUPPORT_EMAIL must be email addresses separated by commas"), -1;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* --- the email -------------------------------------------------------------------------------- */

struct mail {
    char *text; /* the whole RFC 5322 message */
    size_t len, off;
    struct curl_slist *rcpt;
    json_t *result; /* what the model gets once the email is done */
    long long escalation_id, ticket_id;
};

static void mail_free(struct mail *m)
{
    free(m->text);
    curl_slist_free_all(m->rcpt);
    json_decref(m->result);
    free(m);
}

/* Header text must stay on its line: control characters (CR, LF, tab...) become spaces. */
static void one_line(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p != '\0'; ++p)
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

/*
 * Appends `s` (UTF-8) as RFC 2047 encoded words: the subject carries an em
 * dash and whatever the caller's words were. Each word holds at most 42 bytes
 * (56 base64 characters, a 77-character line with "Subject: "), split only
 * between characters, and words go on folded lines.
 */
static void append_encoded_words(sb_buf_t *b, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        size_t n = len - off < 42 ? len - off : 42;
        while (n > 0 && off + n < len && ((unsigned char)s[off + n] & 0xC0) == 0x80)
            --n; /* do not cut inside a character */
        char b64[sodium_base64_ENCODED_LEN(42, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)s + off, n, sodium_base64_VARIANT_ORIGINAL);
        sb_buf_appendf(b, "%s=?UTF-8?B?%s?=", off ? "\r\n " : "", b64);
        off += n;
    }
}

/* Appends `body` base64-encoded in 76-character lines: safe for any text, line length and leading dots. */
static void append_base64_body(sb_buf_t *b, const char *body, size_t len)
{
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        char line[sodium_base64_ENCODED_LEN(57, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(line, sizeof(line), (const unsigned char *)body + off, n, sodium_base64_VARIANT_ORIGINAL);
        sb_buf_appendf(b, "%s\r\n", line);
    }
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The message for `r` (the statement's result), or NULL when it does not fit. */
static char *compose(const sb_config_t *config, json_t *r, size_t *len)
{
    long long ticket = json_integer_value(json_object_get(r, "ticket_id"));
    char subject[1024]; /* 200 characters of up to 4 bytes */
    snprintf(subject, sizeof(subject), "%s", str_of(r, "subject"));
    one_line(subject);
    char to[1024];
    snprintf(to, sizeof(to), "%s", config->support_email);

    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    unsigned char nonce[8];
    char nonce_hex[sizeof(nonce) * 2 + 1];
    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2hex(nonce_hex, sizeof(nonce_hex), nonce, sizeof(nonce));

    sb_buf_t body;
    sb_buf_init(&body, MAX_MESSAGE_BYTES / 2);
    sb_buf_appendf(&body, "Ticket #%lld was escalated by the voice agent.\r\n\r\n", ticket);
    sb_buf_appendf(&body, "Ticket:       #%lld\r\n", ticket);
    sb_buf_appendf(&body, "Subject:      %s\r\n", str_of(r, "subject"));
    json_t *cid = json_object_get(r, "customer_id");
    if (json_is_integer(cid))
        sb_buf_appendf(&body, "Customer:     %s <%s> (id %lld)\r\n", str_of(r, "customer_name"), str_of(r, "customer_email"),
                       (long long)json_integer_value(cid));
    else
        sb_buf_appendz(&body, "Customer:     none on file\r\n");
    sb_buf_appendf(&body, "Priority:     %s\r\n", str_of(r, "priority"));
    if (json_is_string(json_object_get(r, "escalated_to")))
        sb_buf_appendf(&body, "Escalated to: %s\r\n", str_of(r, "escalated_to"));
    sb_buf_appendf(&body, "Escalation:   %lld\r\n\r\nReason:\r\n%s\r\n",
                   (long long)json_integer_value(json_object_get(r, "escalation_id")), str_of(r, "reason"));

    sb_buf_t m;
    sb_buf_init(&m, MAX_MESSAGE_BYTES);
    sb_buf_appendf(&m, "From: %s\r\nTo: %s\r\nSubject: ", from_header, to);
    char line[1100];
    snprintf(line, sizeof(line), "Escalation: ticket #%lld \xe2\x80\x94 %s", ticket, subject);
    append_encoded_words(&m, line);
    sb_buf_appendf(&m, "\r\nDate: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    sb_buf_appendf(&m, "Message-ID: <escalation-%lld.%s@%s>\r\n",
                   (long long)json_integer_value(json_object_get(r, "escalation_id")), nonce_hex, msgid_domain);
    sb_buf_appendz(&m, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n"
                       "Auto-Submitted: auto-generated\r\n\r\n");
    append_base64_body(&m, body.base ? body.base : "", body.len);
    sb_buf_dispose(&body);
    if (m.len == 0 || sb_buf_append(&m, "", 1) != 0) {
        sb_buf_dispose(&m);
        return NULL;
    }
    *len = m.len - 1;
    return m.base;
}

static size_t read_message(char *out, size_t size, size_t nitems, void *data)
{
    struct mail *m = data;
    size_t n = m->len - m->off < size * nitems ? m->len - m->off : size * nitems;
    memcpy(out, m->text + m->off, n);
    m->off += n;
    return n;
}

/* Best effort: a failure only leaves email_sent_at NULL (the email did go out), so it is logged, not reported. */
static void on_marked(void *data, const PGresult *res, sb_error_t err, const char *sqlstate)
{
    if (err != SB_OK)
        sb_log_warn("escalate_ticket: could not set email_sent_at: %s (SQLSTATE %s)", sb_error_name(err),
                    sqlstate && *sqlstate ? sqlstate : "none");
}

static void on_mail_done(sb_tool_call_t *call, void *ctx, CURLcode code, long status)
{
    struct mail *m = ctx;
    if (call == NULL) { /* the caller hung up: the escalation stands, email_sent_at stays NULL */
        mail_free(m);
        return;
    }
    int sent = code == CURLE_OK;
    if (sent) {
        char id[24];
        snprintf(id, sizeof(id), "%lld", m->escalation_id);
        const char *v[1] = {id};
        const sb_tool_env_t *env = sb_tool_call_env(call);
        sb_pgpool_query(env->pg, mark_sent_sql, 1, v, on_marked, NULL);
    } else {
        /* curl's message and the SMTP reply code say what went wrong; SMTP_URL may hold credentials, so it is not logged */
        sb_log_warn("escalate_ticket: email for ticket #%lld not sent: %s (SMTP reply %ld)", m->ticket_id, curl_easy_strerror(code),
                    status);
    }
    json_object_set_new(m->result, "email_sent", json_boolean(sent));
    json_t *r = m->result;
    m->result = NULL;
    mail_free(m);
    sb_tool_call_finish(call, r);
}

/* Starts the email for a new escalation. Returns 0 (the call finishes when it is done), or -1 (nothing started). */
static int send_mail(sb_tool_call_t *call, json_t *result)
{
    const sb_config_t *config = sb_tool_call_env(call)->config;
    struct mail *m = sb_calloc(1, sizeof(*m));
    m->ticket_id = json_integer_value(json_object_get(result, "ticket_id"));
    m->escalation_id = json_integer_value(json_object_get(result, "escalation_id"));
    m->text = compose(config, result, &m->len);
    for (const char *p = config->support_email; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char item[320], addr[330];
        snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) - 1 ? n : sizeof(item) - 1), p);
        if (envelope_address(item, addr, sizeof(addr)) == 0)
            m->rcpt = curl_slist_append(m->rcpt, addr);
        p += n + (p[n] == ',');
    }
    CURL *e = m->text && m->rcpt ? curl_easy_init() : NULL;
    if (e == NULL) {
        sb_log_warn("escalate_ticket: email for ticket #%lld not sent: could not compose it", m->ticket_id);
        mail_free(m);
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, config->smtp_url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    if (config->smtp_user != NULL) {
        curl_easy_setopt(e, CURLOPT_USERNAME, config->smtp_user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, config->smtp_password ? config->smtp_password : "");
    }
    /* STARTTLS when offered; required when a password would otherwise cross the network in the clear */
    curl_easy_setopt(e, CURLOPT_USE_SSL, config->smtp_user != NULL ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, mail_from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, m->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(e, CURLOPT_READDATA, m);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, SMTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, SMTP_TOTAL_TIMEOUT_MS);
    m->result = json_incref(result);
    if (sb_tool_call_transfer(call, e, on_mail_done, m) != 0) {
        sb_log_warn("escalate_ticket: email for ticket #%lld not sent: could not start the transfer", m->ticket_id);
        mail_free(m);
        return -1;
    }
    return 0;
}

/* --- the call --------------------------------------------------------------------------------- */

static void on_escalated(sb_tool_call_t *call, const PGresult *res)
{
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        sb_tool_call_fail(call, "no ticket with that id for this caller");
        return;
    }
    json_t *r = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    if (!json_is_object(r)) {
        json_decref(r);
        sb_tool_call_fail(call, "%s", sb_error_message(SB_E_INTERNAL));
        return;
    }
    const sb_config_t *config = sb_tool_call_env(call)->config;
    /* only a new escalation mails: a repeated turn must not tell the team twice */
    int mail = json_is_true(json_object_get(r, "created")) && mail_configured(config);
    if (mail && send_mail(call, r) == 0) {
        json_object_del(r, "customer_email"); /* m->result holds the same object: the model never reads the address */
        json_decref(r);
        return;
    }
    json_object_del(r, "customer_email");
    if (mail)
        json_object_set_new(r, "email_sent", json_false());
    sb_tool_call_finish(call, r);
}

void sb_run_escalate_ticket(sb_tool_call_t *call, const void *args)
{
    const struct escalate_args *a = args;
    char id[24];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, a->ticket_id);
    const char *v[7] = {id, a->reason, a->priority ? a->priority : "high", a->escalated_to, sb_tool_call_key(call), NULL, NULL};
    sb_tool_scope(call, v + 5);
    sb_tool_call_query(call, escalate_sql, 7, v, on_escalated);
}
