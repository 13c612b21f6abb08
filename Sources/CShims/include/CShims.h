// Small C helpers for system calls Swift cannot express directly: variadic prctl, the CMSG macros of
// SCM_RIGHTS / SO_PEERCRED, memfd_create. Each is a thin wrapper returning the raw result (-1 + errno on
// failure) so that Swift code checks every result in one place.
#ifndef COLOCATE_CSHIMS_H
#define COLOCATE_CSHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <spawn.h>
#include <sys/types.h>

/// prctl(PR_SET_PDEATHSIG, sig). Returns 0 or -1.
int cshim_set_parent_death_signal(int sig);

/// Peer credentials of a connected Unix socket (SO_PEERCRED). Returns 0 or -1.
int cshim_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// sendmsg of `len` bytes with one file descriptor attached (SCM_RIGHTS). Returns bytes sent or -1.
ssize_t cshim_send_with_fd(int sock, const void *buf, size_t len, int fd_to_send);

/// recvmsg of up to `len` bytes; *received_fd is the attached descriptor or -1. Returns bytes or -1.
ssize_t cshim_recv_with_fd(int sock, void *buf, size_t len, int *received_fd);

/// accept4(sock, NULL, NULL, SOCK_CLOEXEC): accepted sockets never leak into spawned workers.
/// Returns a descriptor or -1.
int cshim_accept_cloexec(int sock);

/// posix_spawn_file_actions_addclosefrom_np(actions, from) (glibc >= 2.34): the child gets no
/// descriptor >= `from`, even ones another thread opened without close-on-exec. Returns 0 or an errno
/// value (ENOSYS where the C library lacks it).
int cshim_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// A close-on-exec stream socket listening on the abstract Unix address `name` (`len` bytes, no
/// terminator; Linux only). Returns a descriptor or -1.
int cshim_listen_abstract(const char *name, size_t len, int backlog);

/// A close-on-exec stream socket connected to the abstract Unix address `name`, with send and receive
/// timeouts of `timeout_ms`. Returns a descriptor or -1.
int cshim_connect_abstract(const char *name, size_t len, int timeout_ms);

/// SO_RCVTIMEO and SO_SNDTIMEO of `timeout_ms`. Returns 0 or -1.
int cshim_set_socket_timeouts(int fd, int timeout_ms);

/// Makes stdout line-buffered, so that a log file holds every line printed before a kill.
void cshim_line_buffer_stdout(void);

/// memfd_create(name, MFD_CLOEXEC). Returns a descriptor or -1.
int cshim_memfd_create(const char *name);

/// CPUID feature check for x86-64-v3 (AVX2, FMA, F16C) including OS support of the YMM state.
int cshim_cpu_has_avx2_fma(void);

/// renameat2(a, b, RENAME_EXCHANGE): swaps two paths atomically (both must exist). Returns 0 or -1.
int cshim_rename_exchange(const char *a, const char *b);

#include "CShimsAtomics.h"

#endif
