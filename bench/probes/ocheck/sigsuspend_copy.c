// valgrind 3.19 writes into the mask passed to rt_sigsuspend; libdispatch's dispatch_main passes a
// static const (read-only) mask, so valgrind SEGVs. Pass a writable copy instead.
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
