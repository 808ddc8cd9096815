/*
 * A tiny TAP producer for switchboard's unit tests: `ok(cond, fmt, ...)` per
 * assertion, `done_testing()` prints the plan and gives main's exit status.
 */
#ifndef SB_TAP_H
#define SB_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_run, tap_failed;

__attribute__((format(printf, 2, 3))) static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    ++tap_run;
    if (!cond)
        ++tap_failed;
    printf("%sok %d - ", cond ? "" : "not ", tap_run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    return cond;
}

/* Compares two byte strings and prints both on mismatch. */
#define is_str(got, want, ...)                                                                                                     \
    do {                                                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                                                      \
        if (!ok(g_ != NULL && strcmp(g_, w_) == 0, __VA_ARGS__))                                                                   \
            printf("#   got:  '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)", w_);                                                    \
    } while (0)

#define is_int(got, want, ...)                                                                                                     \
    do {                                                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                                                   \
        if (!ok(g_ == w_, __VA_ARGS__))                                                                                            \
            printf("#   got:  %lld\n#   want: %lld\n", g_, w_);                                                                    \
    } while (0)

static inline int done_testing(void)
{
    printf("1..%d\n", tap_run);
    return tap_failed != 0;
}

#endif
