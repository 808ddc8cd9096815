/*
 * The process limits that decide how many open streams a worker can hold:
 * the file-descriptor limit, raised to its hard limit at start-up, and the
 * one log line that names a limit when it starts refusing connections.
 */
#ifndef SB_LIMIT_H
#define SB_LIMIT_H

/*
 * Raises RLIMIT_NOFILE's soft limit to its hard limit (each open stream holds
 * two descriptors: the caller's and the provider's) and logs both. Once, at
 * start-up, before the workers run.
 */
void sb_limit_raise(void);

/*
 * `what` ("accept a connection", "connect to the provider") failed with
 * errno `err`. When a process or system limit is the cause (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM), logs it with the limit's name, once per limit for the
 * life of the process; other errors are not logged here. Any thread.
 */
void sb_limit_refused(const char *what, int err);

#endif
