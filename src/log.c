/*
 * Process log lines as JSON on stderr. Each line is built in one buffer and
 * written with a single write(2), so lines from different workers never mix.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/log.h"

static sb_log_level_t min_level = SB_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void sb_log_set_level(sb_log_level_t level)
{
    min_level = level;
}

void sb_log(sb_log_level_t level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    sb_buf_t line;
    sb_buf_init(&line, 8192);
    sb_buf_appendf(&line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":\"", when, ts.tv_nsec / 1000000, names[level]);
    sb_buf_append_json_escaped(&line, msg, mlen);
    sb_buf_append(&line, "\"}\n", 3);
    ssize_t w = write(STDERR_FILENO, line.base, line.len);
    (void)w;
    sb_buf_dispose(&line);
}
