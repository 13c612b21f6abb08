#define _GNU_SOURCE
#include "CShimsAtomics.h"
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint32_t cshim_atomic_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void cshim_atomic_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
uint32_t cshim_atomic_fetch_add_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }

int cshim_atomic_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

int cshim_futex_wait(uint32_t *p, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    return (int)syscall(SYS_futex, p, FUTEX_WAIT, expected, &ts, NULL, 0);
}

int cshim_futex_wake_all(uint32_t *p) { return (int)syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, NULL, NULL, 0); }

void cshim_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}
