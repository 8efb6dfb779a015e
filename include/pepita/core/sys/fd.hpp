#pragma once
// File-descriptor system calls: open, single-shot and full-length read/write (pread/pwrite),
// sync, size and flag helpers, poll, madvise, ioctl and raw syscall(2). Each returns the result
// or a negative errno and leaves errno alone for callers (liburing's syscall.h). The `*_full`
// loops retry EINTR and short transfers; the single-shot calls return -EINTR to the caller.

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "pepita/core/sys/check.hpp"

namespace pepita::sys {

/// syscall(2) for calls glibc does not wrap: the kernel's result or -errno.
template <typename... Args>
long syscall(long nr, Args... args) noexcept {
  return ret(::syscall(nr, args...));
}

/// open(2) with O_CLOEXEC added: the fd or -errno.
int open(const char* path, int flags, mode_t mode = 0) noexcept;
/// pipe2(2) with O_CLOEXEC added: 0 (fds[0] reads, fds[1] writes) or -errno.
int pipe(int fds[2], int flags = 0) noexcept;

/// One read(2)/write(2): bytes moved (possibly short, 0 at EOF) or -errno, -EINTR included.
long read(int fd, void* buf, std::size_t len) noexcept;
long write(int fd, const void* buf, std::size_t len) noexcept;

/// Reads until `len` bytes or end of file, retrying EINTR and short reads: the bytes read (fewer
/// than `len` only at EOF) or -errno. Bytes read before an error are lost to the caller.
int64_t read_full(int fd, void* buf, std::size_t len) noexcept;
/// Writes all `len` bytes, retrying EINTR and short writes: `len` or -errno (-EIO when the kernel
/// accepts nothing, which would otherwise loop forever). -EAGAIN on a full non-blocking fd.
int64_t write_full(int fd, const void* buf, std::size_t len) noexcept;
/// pread(2)/pwrite(2) of exactly `len` bytes at `offset`, with the same loops; a read past EOF
/// returns the bytes it got. `rwf` (RWF_DSYNC, ...) makes the write a pwritev2(2).
int64_t pread_full(int fd, void* buf, std::size_t len, uint64_t offset) noexcept;
int64_t pwrite_full(int fd, const void* buf, std::size_t len, uint64_t offset,
                    int rwf = 0) noexcept;

/// 0 or -errno.
int fsync(int fd) noexcept;
int fdatasync(int fd) noexcept;
int ftruncate(int fd, uint64_t size) noexcept;
int fallocate(int fd, int mode, uint64_t offset, uint64_t len) noexcept;
int fstat(int fd, struct stat* st) noexcept;
/// The new offset or -errno.
int64_t lseek(int fd, int64_t offset, int whence) noexcept;
/// st_size of `fd` or -errno.
int64_t file_size(int fd) noexcept;
/// Size of the regular file (memfd, hugetlbfs, tmpfs or disk file) behind `fd`; -EINVAL when it
/// is not a regular file, -errno when fstat fails.
int64_t regular_file_size(int fd) noexcept;
/// Sets O_NONBLOCK on `fd`: 0 or -errno.
int set_nonblocking(int fd) noexcept;

/// poll(2): ready count, 0 on timeout, or -errno (-EINTR returned: callers recompute deadlines).
int poll(pollfd* fds, nfds_t n, int timeout_ms) noexcept;

/// madvise(2): 0 or -errno.
int madvise(void* addr, std::size_t len, int advice) noexcept;

/// ioctl(2): the non-negative result or -errno; EINTR is returned, not retried (KVM_RUN's EINTR
/// is how a watchdog stops a vCPU).
int ioctl(int fd, unsigned long request, unsigned long arg = 0) noexcept;
template <typename T>
int ioctl_ptr(int fd, unsigned long request, T* arg) noexcept {
  // SAFETY: the request's ABI takes a pointer to T (each caller checks it against the uapi).
  return static_cast<int>(ret(::ioctl(fd, request, arg)));
}

}  // namespace pepita::sys
