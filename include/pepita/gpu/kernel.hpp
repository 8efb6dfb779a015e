#pragma once
// Compute kernel: a SPIR-V module's GLCompute entry point as a Vulkan compute pipeline, with a
// descriptor-set layout of N storage buffers (set 0, bindings 0..N-1), a push-constant range and
// 32-bit specialization constants. SPIR-V 1.x spec section 2.3 ("Physical Layout") for validation.
//
//   auto spv = PEPITA_TRY(pepita::gpu::load_spirv("scale.spv"));
//   auto k = PEPITA_TRY(pepita::gpu::Kernel::create(dev, spv,
//       {.buffers = 2, .push_constant_bytes = 8, .spec_constants = {64,
//       std::bit_cast<uint32_t>(2.f)}}));

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/gpu/device.hpp"

namespace pepita::gpu {

namespace detail {
struct KernelImpl;
}

/// The interface a kernel's SPIR-V declares; it must match the shader exactly.
struct KernelLayout {
  /// Storage buffers at set 0, bindings 0..buffers-1 (at most DeviceInfo::max_storage_buffers).
  std::uint32_t buffers = 0;
  /// Size of the push-constant block (multiple of 4, at most max_push_constant_bytes).
  std::uint32_t push_constant_bytes = 0;
  /// spec_constants[i] is the 32-bit value of `layout(constant_id = i)` (floats via bit_cast).
  std::vector<std::uint32_t> spec_constants;
  std::string entry_point = "main";
};

/// Reads a SPIR-V binary file. Errors: NotFound / PermissionDenied / Io from the file system,
/// InvalidArgument when it is not SPIR-V (see validate_spirv).
[[nodiscard]] Result<std::vector<std::uint32_t>> load_spirv(const std::filesystem::path& path);

/// Structural check done before handing code to the driver (drivers may crash on garbage): magic
/// number, header, every instruction's word count within the module, and a GLCompute
/// OpEntryPoint named `entry_point`. Errors: InvalidArgument saying which check failed.
[[nodiscard]] Result<void> validate_spirv(std::span<const std::uint32_t> spirv,
                                          std::string_view entry_point = "main");

/// A compute pipeline. Move-only; keeps its device alive.
class Kernel {
 public:
  /// Builds the pipeline. Errors: InvalidArgument for invalid SPIR-V or a layout over the
  /// device limits; Unsupported/Internal when the driver rejects the module.
  [[nodiscard]] static Result<Kernel> create(Device& device, std::span<const std::uint32_t> spirv,
                                             KernelLayout layout);
  /// load_spirv(path) then create().
  [[nodiscard]] static Result<Kernel> from_file(Device& device, const std::filesystem::path& path,
                                                KernelLayout layout);

  Kernel(Kernel&&) noexcept;
  Kernel& operator=(Kernel&&) noexcept;
  ~Kernel();

  const KernelLayout& layout() const noexcept;

 private:
  friend class Device;
  friend class Builtins;
  friend struct detail::Context;
  explicit Kernel(std::unique_ptr<detail::KernelImpl> impl) noexcept;
  std::unique_ptr<detail::KernelImpl> impl_;
};

}  // namespace pepita::gpu
