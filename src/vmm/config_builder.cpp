// VmConfig::builder(): the crate's setter chain over pepita's VmConfig, validated in build().
#include "pepita/vmm/config_builder.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace pepita::vmm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// A file build() will hand to the kernel loader: it must be a readable regular file.
Result<void> check_file(const std::string& what, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return fail(
        err == ENOENT ? ErrorCode::NotFound : code_from_errno(err),
        what + " " + path + ": " + std::strerror(err) + "; give the path of an existing " + what,
        err);
  }
  if (!S_ISREG(st.st_mode))
    return fail(ErrorCode::InvalidArgument, what + " " + path + " is not a regular file");
  if (::access(path.c_str(), R_OK) != 0)
    return fail(ErrorCode::PermissionDenied,
                what + " " + path + " is not readable by this user; fix its permissions", errno);
  return {};
}

}  // namespace

VmConfigBuilder VmConfig::builder() { return VmConfigBuilder(); }

VmConfigBuilder::VmConfigBuilder() {
  config_.vcpus = 1;
  config_.memory_bytes = 128 * kMiB;
}

#define PEPITA_BUILDER_SETTER(NAME, TYPE, ...)                                     \
  VmConfigBuilder& VmConfigBuilder::NAME(TYPE value)& {                            \
    __VA_ARGS__;                                                                   \
    return *this;                                                                  \
  }                                                                                \
  VmConfigBuilder&& VmConfigBuilder::NAME(TYPE value)&& {                          \
    return std::move(static_cast<VmConfigBuilder&>(*this).NAME(std::move(value))); \
  }

PEPITA_BUILDER_SETTER(vcpus, uint32_t, config_.vcpus = value)
// Saturates instead of wrapping so that an absurd size is reported as too large.
PEPITA_BUILDER_SETTER(memory_mb, uint64_t,
                      config_.memory_bytes = value > (~0ull / kMiB) ? ~0ull : value * kMiB)
PEPITA_BUILDER_SETTER(kernel_path, std::string, config_.kernel_path = std::move(value))
PEPITA_BUILDER_SETTER(kernel_cmdline, std::string, config_.cmdline = std::move(value))
PEPITA_BUILDER_SETTER(initrd_path, std::string, config_.initrd = std::move(value))
PEPITA_BUILDER_SETTER(enable_kvm, bool, enable_kvm_ = value)
PEPITA_BUILDER_SETTER(vsock_path, std::string, config_.vsock_path = std::move(value))

#undef PEPITA_BUILDER_SETTER

Result<VmConfig> VmConfigBuilder::build() const {
  if (!enable_kvm_)
    return fail(ErrorCode::Unsupported,
                "enable_kvm(false): pepita runs VMs only on KVM and has no emulator to fall back "
                "to; drop enable_kvm(false)");
  if (config_.vcpus == 0)
    return fail(ErrorCode::InvalidArgument, "vcpus(0): a VM needs at least 1 vCPU");
  if (config_.vcpus > MAX_VCPUS)
    return fail(ErrorCode::InvalidArgument, "vcpus(" + std::to_string(config_.vcpus) +
                                                ") is more than MAX_VCPUS (" +
                                                std::to_string(MAX_VCPUS) + "); ask for fewer");
  if (config_.memory_bytes < kMinMemory || config_.memory_bytes > kMaxMemory)
    return fail(ErrorCode::InvalidArgument,
                "memory_mb(" + std::to_string(config_.memory_bytes / kMiB) + ") is outside " +
                    std::to_string(kMinMemory / kMiB) + " .. " + std::to_string(kMaxMemory / kMiB) +
                    " MiB; pick a size in that range");
  if (config_.kernel_path.empty() && (!config_.cmdline.empty() || !config_.initrd.empty()))
    return fail(ErrorCode::InvalidArgument,
                std::string(config_.initrd.empty() ? "kernel_cmdline" : "initrd_path") +
                    " without kernel_path: set the kernel it belongs to");
  if (!config_.kernel_path.empty()) PEPITA_TRY_VOID(check_file("kernel", config_.kernel_path));
  if (!config_.initrd.empty()) PEPITA_TRY_VOID(check_file("initrd", config_.initrd));
  if (config_.cmdline.size() > kMaxCmdline)
    return fail(ErrorCode::InvalidArgument,
                "kernel_cmdline is " + std::to_string(config_.cmdline.size()) +
                    " bytes; x86 Linux takes at most " + std::to_string(kMaxCmdline));
  // Guest connections to host port P reach vsock_path + "_" + P: keep room for "_4294967295".
  constexpr size_t kVsockMax = sizeof(sockaddr_un{}.sun_path) - 1 - 11;
  if (config_.vsock_path.size() > kVsockMax)
    return fail(ErrorCode::InvalidArgument,
                "vsock_path is " + std::to_string(config_.vsock_path.size()) +
                    " bytes; a Unix socket path (with the \"_<port>\" suffix) fits " +
                    std::to_string(kVsockMax) + ": use a shorter path");
  return config_;
}

}  // namespace pepita::vmm
