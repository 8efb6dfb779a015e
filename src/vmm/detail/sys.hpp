#pragma once
// The vmm module's thin kernel layer: KVM ioctls and timer syscalls that return the result or a
// negative errno. Nothing above this file reads errno (liburing's syscall.h pattern).

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>

namespace pepita::vmm::sys {

// Linux 6.1's UAPI declares flexible arrays with __DECLARE_FLEX_ARRAY, which in C++ adds an empty
// struct member: sizeof(kvm_cpuid2) becomes 12 and kvm_xsave 4100, so the KVM_*_CPUID2 / XSAVE
// ioctl numbers computed from them are wrong and `entries` sits at offset 12. These are the C
// layouts and numbers (checked in tests/vmm/sys_test.cpp).
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};  // followed by nent kvm_cpuid_entry2
struct Xsave {
  uint32_t region[1024];
};
inline constexpr unsigned long kGetSupportedCpuid =
    _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, sizeof(CpuidHeader));
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, sizeof(CpuidHeader));
inline constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, sizeof(Xsave));
inline constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, sizeof(Xsave));

/// ioctl(2) returning the non-negative result or -errno; EINTR is returned, not retried, because
/// KVM_RUN's EINTR is how the watchdog stops a vCPU.
inline int ioctl(int fd, unsigned long request, unsigned long arg = 0) {
  int res = ::ioctl(fd, request, arg);
  return res < 0 ? -errno : res;
}

template <typename T>
inline int ioctl_ptr(int fd, unsigned long request, T* arg) {
  // SAFETY: the request's ABI takes a pointer to T (checked by each caller against kvm.h).
  int res = ::ioctl(fd, request, arg);
  return res < 0 ? -errno : res;
}

inline int open_kvm() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

}  // namespace pepita::vmm::sys
