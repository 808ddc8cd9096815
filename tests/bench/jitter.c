/*
 * The machine's own scheduling delay, measured while a benchmark runs: asks to
 * be woken every millisecond (poll on stdin with a 1 ms timeout) and records
 * how late each wake-up came. A process that does nothing else and still
 * wakes 5 ms late shows a moment when the machine, not the code under test,
 * held everything up; tests/bench/tools.mjs sets the slowest tool rounds
 * beside those moments.
 *
 *   jitter            runs until its standard input is closed, then prints
 *                     {"wakeups":N,"p50_us":..,"p99_us":..,"p999_us":..,
 *                      "max_us":..,"late":[[t_ms,late_ms],...]}
 *
 * late lists every wake-up at least 1 ms late, t_ms on CLOCK_REALTIME (the fake
 * provider's clock), the moment the wake-up was due.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { MAX_WAKEUPS = 1 << 20, MAX_LATE = 1 << 14, LATE_US = 1000 };

static double now_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    static unsigned lateness[MAX_WAKEUPS]; /* µs late, per wake-up */
    static double late_at[MAX_LATE][2];    /* due (ms, realtime), late (ms) */
    size_t n = 0, nlate = 0;
    struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
    char scratch[256];

    for (;;) {
        double due = now_us(CLOCK_MONOTONIC) + 1000, due_real = now_us(CLOCK_REALTIME) + 1000;
        int r = poll(&in, 1, 1);
        if (r > 0 && read(STDIN_FILENO, scratch, sizeof(scratch)) <= 0)
            break; /* closed: report */
        if (r != 0)
            continue; /* input, or a signal: not a timed wake-up */
        double late = now_us(CLOCK_MONOTONIC) - due;
        if (late < 0)
            late = 0;
        if (n < MAX_WAKEUPS)
            lateness[n++] = (unsigned)late;
        if (late >= LATE_US && nlate < MAX_LATE) {
            late_at[nlate][0] = due_real / 1e3;
            late_at[nlate][1] = late / 1e3;
            nlate++;
        }
    }
    qsort(lateness, n, sizeof(lateness[0]), cmp);
#define AT(p) (n > 0 ? lateness[(size_t)((double)(n - 1) * (p))] : 0u)
    printf("{\"wakeups\":%zu,\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u,\"late\":[", n, AT(0.5), AT(0.99), AT(0.999),
           AT(1.0));
    for (size_t i = 0; i < nlate; ++i)
        printf("%s[%.3f,%.3f]", i > 0 ? "," : "", late_at[i][0], late_at[i][1]);
    printf("]}\n");
    return 0;
}
