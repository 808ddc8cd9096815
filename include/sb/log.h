/*
 * Process log: one JSON object per line on stderr ({"ts","level","msg"}).
 * Messages must never contain secrets. Safe to call from any thread.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

typedef enum sb_log_level { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;

void sb_log_set_level(sb_log_level_t level);
void sb_log(sb_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sb_log_info(...) sb_log(SB_LOG_INFO, __VA_ARGS__)
#define sb_log_warn(...) sb_log(SB_LOG_WARN, __VA_ARGS__)
#define sb_log_error(...) sb_log(SB_LOG_ERROR, __VA_ARGS__)

#endif
