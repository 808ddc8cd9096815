/*
 * Process limits (limit.h): RLIMIT_NOFILE raised at start-up, and a refusal
 * because of a limit logged once with the limit's name, so that a server
 * turning callers away under load says why without a line per caller.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "limit.h"
#include "sb/log.h"

enum limit { L_NOFILE, L_SYSTEM_FILES, L_MEMORY, L_COUNT };

static atomic_int logged[L_COUNT];

void sb_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        sb_log_warn("cannot read RLIMIT_NOFILE: %s", strerror(errno));
        return;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            sb_log_warn("cannot raise RLIMIT_NOFILE from %llu to its hard limit %llu: %s", (unsigned long long)was,
                        (unsigned long long)rl.rlim_max, strerror(errno));
            return;
        }
    }
    /* two descriptors an open stream: the caller's and (over HTTP/1.1) the provider's */
    if (rl.rlim_max == RLIM_INFINITY)
        sb_log_info("file descriptors: RLIMIT_NOFILE %llu, hard limit unlimited", (unsigned long long)rl.rlim_cur);
    else if (was < rl.rlim_cur)
        sb_log_info("file descriptors: RLIMIT_NOFILE raised from %llu to its hard limit, %llu: room for about %llu open streams",
                    (unsigned long long)was, (unsigned long long)rl.rlim_max, (unsigned long long)rl.rlim_max / 2);
    else
        sb_log_info("file descriptors: RLIMIT_NOFILE %llu, its hard limit: room for about %llu open streams",
                    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur / 2);
}

void sb_limit_refused(const char *what, int err)
{
    enum limit l;
    const char *why;
    char nofile[96];
    struct rlimit rl;
    switch (err) {
    case EMFILE:
        l = L_NOFILE;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            snprintf(nofile, sizeof(nofile), "the process has RLIMIT_NOFILE (%llu) descriptors open",
                     (unsigned long long)rl.rlim_cur);
        else
            snprintf(nofile, sizeof(nofile), "the process has RLIMIT_NOFILE descriptors open");
        why = nofile;
        break;
    case ENFILE:
        l = L_SYSTEM_FILES;
        why = "the system has its limit of open files open (fs.file-max)";
        break;
    case ENOBUFS:
    case ENOMEM:
        l = L_MEMORY;
        why = "the kernel has no memory for another socket (net.ipv4.tcp_mem, the cgroup's memory limit)";
        break;
    default:
        return;
    }
    if (atomic_exchange(&logged[l], 1) == 0)
        sb_log_error("cannot %s: %s; connections are refused while it lasts (logged once)", what, why);
}
