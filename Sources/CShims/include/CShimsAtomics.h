// Atomics and futexes on memory shared between processes (MAP_SHARED), for the CPU tensor-parallel
// all-reduce. Swift's Synchronization types cannot live at an arbitrary address in a mapping.
#ifndef COLOCATE_CSHIMS_ATOMICS_H
#define COLOCATE_CSHIMS_ATOMICS_H
#include <stdint.h>

uint32_t cshim_atomic_load_u32(const uint32_t *p);
void cshim_atomic_store_u32(uint32_t *p, uint32_t v);
uint32_t cshim_atomic_fetch_add_u32(uint32_t *p, uint32_t v);
/// Stores `desired` if *p == expected. Returns 1 if it did.
int cshim_atomic_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired);
/// Sleeps while *p == expected, at most timeout_ns (shared futex). Returns 0, or -1 with errno.
int cshim_futex_wait(uint32_t *p, uint32_t expected, int64_t timeout_ns);
/// Wakes every waiter on p. Returns the number woken or -1.
int cshim_futex_wake_all(uint32_t *p);
/// A CPU pause hint for spin loops.
void cshim_cpu_relax(void);

#endif
