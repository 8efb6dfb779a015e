#pragma once
// KvmSystem: the process-wide /dev/kvm handle and what it reports once (vCPU mmap size, the
// supported CPUID table, XCR0 bits); opened on first use and shared by every VM.

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <span>
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

namespace detail {

/// Whether the host CPU's CPUID leaf `leaf`, subleaf `subleaf` sets `bit` of register `reg`
/// (0 EAX, 1 EBX, 2 ECX, 3 EDX).
using HostCpuidBit = bool (*)(unsigned leaf, unsigned subleaf, unsigned reg, unsigned bit);

/// Sets, in the CPUID table the vCPUs get, XSAVE (leaf 1 ECX 26) and every SIMD flag the host CPU
/// has whose state the guest's XCR0 enables: AVX, FMA, F16C and AVX2 need x87|SSE|AVX (0x7), the
/// AVX-512 subsets F, DQ, CD, BW, VL, VNNI and BF16 also the opmask and ZMM state (0xe0). Nothing
/// without `xsave`. What the guest's cpuid reports must match what it can execute.
void expose_host_simd(std::span<kvm_cpuid_entry2> table, HostCpuidBit host, bool xsave,
                      uint64_t xcr0);

}  // namespace detail

}  // namespace pepita::vmm
