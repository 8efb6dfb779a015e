#pragma once
// SPIR-V interface reflection: what a module's entry point needs from the pipeline that runs it
// (stage, local size, descriptor bindings, push-constant block size), read from the module's
// annotations (SPIR-V 1.6 spec sections 2.3, 3.20 "Decoration" and 3.32.2 "Annotation
// Instructions"), so a dispatch is checked against the shader instead of trusting the caller.
//
//   auto spv = PEPITA_TRY(pepita::gpu::load_spirv("scale.spv"));
//   auto in = PEPITA_TRY(pepita::gpu::reflect_spirv(spv));
//   if (in.storage_buffers() != buffers.size()) ...   // wrong buffer count for this shader

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::gpu {

/// The pipeline stage of an entry point (the crate's ShaderStage). pepita runs Compute only;
/// the others are reported so a graphics module is refused by name, not by a driver crash.
enum class ShaderStage : std::uint8_t { Vertex, Fragment, Compute };

/// "vertex", "fragment", "compute".
std::string_view to_string(ShaderStage stage) noexcept;

/// One descriptor the module declares (a variable decorated DescriptorSet + Binding).
struct ResourceBinding {
  enum class Kind : std::uint8_t {
    StorageBuffer,  // StorageBuffer class, or Uniform class with a BufferBlock struct
    UniformBuffer,  // Uniform class with a Block struct
    Other,          // images, samplers, ...
  };
  std::uint32_t set = 0;
  std::uint32_t binding = 0;
  Kind kind = Kind::Other;
};

/// What an entry point needs from its pipeline.
struct ShaderInterface {
  std::string entry_point;
  ShaderStage stage = ShaderStage::Compute;
  /// OpExecutionMode LocalSize of the entry point (1,1,1 when absent). A size set by
  /// local_size_x_id specialization constants reads as the literal default here.
  std::array<std::uint32_t, 3> local_size{1, 1, 1};
  /// Every descriptor the module declares, ordered by (set, binding).
  std::vector<ResourceBinding> bindings;
  /// Size in bytes of the push-constant block (highest member offset + its size); 0 when the
  /// module declares none; nullopt when a member's type is too complex to size here.
  std::optional<std::uint32_t> push_constant_bytes = 0;

  /// Storage buffers at set 0 (what Kernel binds).
  std::size_t storage_buffers() const noexcept;
};

/// validate_spirv(spirv, entry_point) and then reads the interface. Errors: validate_spirv's
/// (InvalidArgument "invalid SPIR-V: ..."), and InvalidArgument when the entry point's execution
/// model is not vertex, fragment or GLCompute.
[[nodiscard]] Result<ShaderInterface> reflect_spirv(std::span<const std::uint32_t> spirv,
                                                    std::string_view entry_point = "main");

/// Checks that a compute dispatch with `buffers` storage buffers and `push_bytes` of push
/// constants fits `in` as Kernel binds it (set 0, bindings 0..buffers-1, all storage buffers).
/// Errors: InvalidArgument naming the field — "buffers: ..." (count or binding mismatch, a
/// non-storage descriptor, a set other than 0), "push_constants: ..." (size differs from the
/// block), "spirv: ..." (not a compute entry point).
[[nodiscard]] Result<void> check_compute_interface(const ShaderInterface& in, std::size_t buffers,
                                                   std::size_t push_bytes);

}  // namespace pepita::gpu
