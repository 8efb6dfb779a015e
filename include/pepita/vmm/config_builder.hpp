#pragma once
// The reference crate's VmConfig::builder(): a chain of setters that ends in build(), which
// validates the whole configuration and returns it or a clear error. It fills pepita's VmConfig
// (vm.hpp): vcpus and memory for Vm::create, kernel_path / cmdline / initrd for vmm::boot_linux,
// vsock_path for the virtio-vsock device.
//
//   auto config = PEPITA_TRY(VmConfig::builder().vcpus(2).memory_mb(256).build());
//   auto vm = PEPITA_TRY(MicroVm::create(image, config));

#include <cstdint>
#include <string>

#include "pepita/error.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {

/// The crate's MAX_VCPUS: the most vCPUs a configuration may name. The host may allow fewer
/// (max_vcpus(), KVM_CAP_MAX_VCPUS); Vm::create refuses those with the host's number.
inline constexpr uint32_t MAX_VCPUS = 254;

class VmConfigBuilder {
 public:
  /// The crate's defaults: 1 vCPU, 128 MiB, KVM on, no kernel, no vsock.
  VmConfigBuilder();

  VmConfigBuilder& vcpus(uint32_t count) &;
  VmConfigBuilder&& vcpus(uint32_t count) &&;
  VmConfigBuilder& memory_mb(uint64_t mb) &;
  VmConfigBuilder&& memory_mb(uint64_t mb) &&;
  /// A bzImage or vmlinux for vmm::boot_linux; build() checks it is a readable regular file.
  VmConfigBuilder& kernel_path(std::string path) &;
  VmConfigBuilder&& kernel_path(std::string path) &&;
  /// VmConfig::cmdline (at most kMaxCmdline bytes).
  VmConfigBuilder& kernel_cmdline(std::string cmdline) &;
  VmConfigBuilder&& kernel_cmdline(std::string cmdline) &&;
  /// VmConfig::initrd; build() checks it is a readable regular file and that a kernel is set.
  VmConfigBuilder& initrd_path(std::string path) &;
  VmConfigBuilder&& initrd_path(std::string path) &&;
  /// pepita runs VMs only on KVM: build() refuses enable_kvm(false) (the crate's flag chose KVM
  /// acceleration; pepita has no emulator to fall back to).
  VmConfigBuilder& enable_kvm(bool enable) &;
  VmConfigBuilder&& enable_kvm(bool enable) &&;
  /// VmConfig::vsock_path: the Unix socket of the virtio-vsock device (a path that fits
  /// sockaddr_un with room for the "_<port>" suffix of guest-initiated connections).
  VmConfigBuilder& vsock_path(std::string path) &;
  VmConfigBuilder&& vsock_path(std::string path) &&;

  /// The validated VmConfig. InvalidArgument for 0 or more than MAX_VCPUS vCPUs, memory outside
  /// 2 .. 4096 MiB, a command line or initrd without a kernel, a too-long cmdline or vsock path;
  /// NotFound / PermissionDenied for a kernel or initrd that cannot be read; Unsupported for
  /// enable_kvm(false). Each message names the value and what to change.
  Result<VmConfig> build() const;

  /// Longest kernel command line accepted (x86 COMMAND_LINE_SIZE 2048, less the NUL).
  static constexpr size_t kMaxCmdline = 2047;

 private:
  VmConfig config_;
  bool enable_kvm_ = true;
};

}  // namespace pepita::vmm
