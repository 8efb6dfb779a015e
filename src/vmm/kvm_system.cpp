// Opening /dev/kvm once: API version, vCPU mmap size, supported CPUID and the XCR0 bits the host
// lets guests enable.
#include "detail/kvm_system.hpp"

#include <cpuid.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "detail/sys.hpp"

namespace pepita::vmm {
namespace {

enum Reg { kEax, kEbx, kEcx, kEdx };
constexpr unsigned kXsaveBit = 26;  // leaf 1 ECX

// The host CPU's own CPUID answers, read with the instruction.
bool host_cpuid_bit(unsigned leaf, unsigned subleaf, unsigned reg, unsigned bit) {
  unsigned r[4] = {};
  if (__get_cpuid_max(0, nullptr) < leaf) return false;
  __cpuid_count(leaf, subleaf, r[kEax], r[kEbx], r[kEcx], r[kEdx]);
  return (r[reg] >> bit) & 1;
}

// One SIMD feature flag and the XCR0 state components it needs.
struct SimdFlag {
  unsigned leaf, subleaf;
  Reg reg;
  unsigned bit;
  uint64_t xcr0;
};

// The flags guest SIMD dispatch looks at (pepita's simd module and guest/examples): AVX, FMA,
// F16C, AVX2 and the AVX-512 subsets pepita uses.
constexpr SimdFlag kSimdFlags[] = {
    {1, 0, kEcx, 28, 0x7},  {1, 0, kEcx, 12, 0x7},  {1, 0, kEcx, 29, 0x7},   // AVX FMA F16C
    {7, 0, kEbx, 5, 0x7},                                                    // AVX2
    {7, 0, kEbx, 16, 0xe7}, {7, 0, kEbx, 17, 0xe7}, {7, 0, kEbx, 28, 0xe7},  // F DQ CD
    {7, 0, kEbx, 30, 0xe7}, {7, 0, kEbx, 31, 0xe7}, {7, 0, kEcx, 11, 0xe7},  // BW VL VNNI
    {7, 1, kEax, 5, 0xe7},                                                   // BF16
};

uint32_t& reg_of(kvm_cpuid_entry2& e, Reg reg) {
  switch (reg) {
    case kEax: return e.eax;
    case kEbx: return e.ebx;
    case kEcx: return e.ecx;
    case kEdx: break;
  }
  return e.edx;
}

}  // namespace

namespace detail {

void expose_host_simd(std::span<kvm_cpuid_entry2> table, HostCpuidBit host, bool xsave,
                      uint64_t xcr0) {
  for (auto& e : table) {
    if (e.function == 1 && xsave && host(1, 0, kEcx, kXsaveBit)) e.ecx |= 1u << kXsaveBit;
    for (const auto& f : kSimdFlags)
      if (e.function == f.leaf && e.index == f.subleaf && xsave && (xcr0 & f.xcr0) == f.xcr0 &&
          host(f.leaf, f.subleaf, f.reg, f.bit))
        reg_of(e, f.reg) |= 1u << f.bit;
  }
}

}  // namespace detail

Result<const KvmSystem*> KvmSystem::get() {
  static std::once_flag once;
  static std::optional<Result<KvmSystem>> instance;
  std::call_once(once, [] {
    instance.emplace([]() -> Result<KvmSystem> {
      KvmSystem sys;
      int fd = sys::open_kvm();
      if (fd < 0) {
        auto err = Error::from_errno(-fd, "open /dev/kvm");
        return std::unexpected(err.with_context(
            "micro-VMs need KVM: load kvm (kvm_intel/kvm_amd/kvm_pvm) and run as a member of "
            "group kvm"));
      }
      sys.fd_.reset(fd);
      int version = sys::ioctl(fd, KVM_GET_API_VERSION);
      if (version != KVM_API_VERSION)
        return fail(ErrorCode::Unsupported,
                    "/dev/kvm API version " + std::to_string(version) + ", expected 12");
      int size = sys::ioctl(fd, KVM_GET_VCPU_MMAP_SIZE);
      if (size < static_cast<int>(sizeof(kvm_run)))
        return fail_errno(size < 0 ? -size : EINVAL, "KVM_GET_VCPU_MMAP_SIZE");
      sys.vcpu_mmap_size_ = size;
      sys.has_xsave_ = sys::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 &&
                       sys::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;

      // KVM_GET_SUPPORTED_CPUID wants nent large enough; E2BIG says grow and retry.
      for (uint32_t nent = 64; nent <= 1024; nent *= 2) {
        size_t bytes = sizeof(sys::CpuidHeader) + nent * sizeof(kvm_cpuid_entry2);
        sys.cpuid_words_.assign((bytes + 7) / 8, 0);
        sys.cpuid_words_[0] = nent;  // CpuidHeader{nent, padding 0}, little-endian
        int res = sys::ioctl_ptr(fd, sys::kGetSupportedCpuid, sys.cpuid_words_.data());
        if (res == -E2BIG) continue;
        if (res < 0) return fail_errno(-res, "KVM_GET_SUPPORTED_CPUID");
        break;
      }
      const auto nent = static_cast<uint32_t>(sys.cpuid_words_[0]);
      // SAFETY: entries follow the 8-byte header in the kernel-filled buffer; copied out and back.
      char* table_bytes = reinterpret_cast<char*>(sys.cpuid_words_.data()) + 8;
      std::vector<kvm_cpuid_entry2> entries(nent);
      std::memcpy(entries.data(), table_bytes, nent * sizeof(kvm_cpuid_entry2));
      uint64_t xcr0_supported = 0;
      for (const auto& e : entries)
        if (e.function == 0xd && e.index == 0) xcr0_supported = (uint64_t{e.edx} << 32) | e.eax;
      // Whether guests get XSAVE is what KVM can switch (KVM_CAP_XSAVE/XCRS) and the state leaf
      // 0xD lets them enable, on a host CPU that has XSAVE. Leaf 1 of the supported table is not
      // the answer: kvm_pvm hosts report XSAVE = AVX = 0 there while leaf 0xD offers 0xe7, and
      // deciding from leaf 1 left guests at XCR0 = x87 (scalar code only).
      sys.has_xsave_ =
          sys.has_xsave_ && host_cpuid_bit(1, 0, kEcx, kXsaveBit) && (xcr0_supported & 3) == 3;
      // x87 | SSE | AVX, plus the AVX-512 trio only when all three are there (SDM 13.3).
      uint64_t want = xcr0_supported & 0x7;
      if ((xcr0_supported & 0xe0) == 0xe0 && (want & 0x4)) want |= 0xe0;
      sys.guest_xcr0_ = sys.has_xsave_ ? (want | 1) : 1;
      detail::expose_host_simd(entries, host_cpuid_bit, sys.has_xsave_, sys.guest_xcr0_);
      std::memcpy(table_bytes, entries.data(), nent * sizeof(kvm_cpuid_entry2));
      return sys;
    }());
  });
  if (!instance->has_value()) return std::unexpected(instance->error());
  return &**instance;
}

}  // namespace pepita::vmm
