#pragma once
// KvmSystem: the process-wide /dev/kvm handle and what it reports once (vCPU mmap size, the
// supported CPUID table, XCR0 bits); opened on first use and shared by every VM.

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::vmm {

class KvmSystem {
 public:
  /// The shared instance, or the reason KVM cannot be used here (cached after the first call).
  static Result<const KvmSystem*> get();

  int fd() const noexcept { return fd_.get(); }
  int vcpu_mmap_size() const noexcept { return vcpu_mmap_size_; }
  bool has_xsave() const noexcept { return has_xsave_; }
  /// XCR0 value to give guests: x87|SSE|AVX (and AVX-512 state) as far as CPUID leaf 0xD allows.
  uint64_t guest_xcr0() const noexcept { return guest_xcr0_; }
  /// The supported CPUID table in KVM_SET_CPUID2's C layout: an 8-byte header (nent) followed by
  /// nent kvm_cpuid_entry2, stored as 8-byte words.
  const uint64_t* cpuid_table() const noexcept { return cpuid_words_.data(); }

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
  bool has_xsave_ = false;
  uint64_t guest_xcr0_ = 0;
  std::vector<uint64_t> cpuid_words_;
};

}  // namespace pepita::vmm
