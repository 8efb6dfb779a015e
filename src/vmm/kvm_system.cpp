// Opening /dev/kvm once: API version, vCPU mmap size, supported CPUID and the XCR0 bits the host
// lets guests enable.
#include "vmm/detail/kvm_system.hpp"

#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "vmm/detail/sys.hpp"

namespace pepita::vmm {
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
      uint64_t xcr0_supported = 0;
      bool osxsave_capable = false;
      for (uint32_t i = 0; i < nent; ++i) {
        kvm_cpuid_entry2 e;
        // SAFETY: entries follow the 8-byte header in the kernel-filled buffer; copied out.
        std::memcpy(&e, reinterpret_cast<const char*>(sys.cpuid_words_.data()) + 8 + i * sizeof e,
                    sizeof e);
        if (e.function == 0xd && e.index == 0) xcr0_supported = (uint64_t{e.edx} << 32) | e.eax;
        if (e.function == 1) osxsave_capable = (e.ecx & (1u << 26)) != 0;  // XSAVE
      }
      if (!osxsave_capable) sys.has_xsave_ = false;
      // x87 | SSE | AVX, plus the AVX-512 trio only when all three are there (SDM 13.3).
      uint64_t want = xcr0_supported & 0x7;
      if ((xcr0_supported & 0xe0) == 0xe0 && (want & 0x4)) want |= 0xe0;
      sys.guest_xcr0_ = want | 1;
      return sys;
    }());
  });
  if (!instance->has_value()) return std::unexpected(instance->error());
  return &**instance;
}

}  // namespace pepita::vmm
