#pragma once
// Memory-management system calls: mlock(2)/munlock(2), mprotect(2) and the RLIMIT_MEMLOCK limit
// (getrlimit(2)). Each returns 0 or -errno, like the rest of the sys layer; pepita::memory's
// DmaBuffer and PageAllocator are their users.

#include <sys/mman.h>  // PROT_* of mprotect

#include <cstddef>
#include <cstdint>

namespace pepita::sys {

/// mlock(2): faults in and locks [addr, addr + len) in RAM; 0 or -errno (-ENOMEM or -EPERM when
/// RLIMIT_MEMLOCK is exceeded without CAP_IPC_LOCK).
int mlock(const void* addr, std::size_t len) noexcept;
/// munlock(2): 0 or -errno.
int munlock(const void* addr, std::size_t len) noexcept;
/// mprotect(2): 0 or -errno.
int mprotect(void* addr, std::size_t len, int prot) noexcept;
/// The soft RLIMIT_MEMLOCK in bytes (~0 for unlimited) in *soft: 0 or -errno.
int memlock_limit(uint64_t* soft) noexcept;

}  // namespace pepita::sys
