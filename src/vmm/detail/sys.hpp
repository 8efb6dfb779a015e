#pragma once
// The vmm module's KVM layer: the ioctl numbers and layouts Linux 6.1's C++ view of kvm.h gets
// wrong, and opening /dev/kvm. The calls themselves are core's: pepita::sys::ioctl returns the
// result or a negative error number (liburing's syscall.h pattern).

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

#include "pepita/core/sys/fd.hpp"

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

/// core's ioctl(2): the non-negative result or a negative error number; EINTR is returned, not
/// retried, because KVM_RUN's EINTR is how the watchdog stops a vCPU.
using pepita::sys::ioctl;
using pepita::sys::ioctl_ptr;

/// /dev/kvm opened read-write (CLOEXEC): the fd or a negative error number.
inline int open_kvm() { return pepita::sys::open("/dev/kvm", O_RDWR); }

}  // namespace pepita::vmm::sys
