#pragma once
// Runs task::ShaderTask on one Device for GpuExecutor: checks the task against the module's
// reflected interface and the device limits, builds the compute pipeline once per distinct
// (SPIR-V, layout) and keeps it in a small LRU cache, uploads the buffers, dispatches and reads
// the outputs back.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/kernel.hpp"
#include "pepita/task/task.hpp"

namespace pepita::gpu::detail {

class ShaderRunner {
 public:
  /// Pipelines kept; the least recently used goes first when a new one is built.
  static constexpr std::size_t kCacheEntries = 32;

  /// `device` must outlive the runner; `max_buffer_bytes` caps each buffer.
  ShaderRunner(Device& device, std::uint64_t max_buffer_bytes) noexcept
      : device_(device), max_bytes_(max_buffer_bytes) {}

  /// Runs `task` and returns its output buffers in binding order. `stopped` is polled between
  /// the steps (a dispatch on the device cannot be interrupted). Errors: InvalidArgument naming
  /// the field for a task that does not fit the shader or the device ("spirv: ...",
  /// "buffers: ...", "buffers[i]: ...", "push_constants: ...", "workgroups.x: ..."); Cancelled
  /// when `stopped` says so; the Device errors (Io when the device is lost).
  [[nodiscard]] Result<std::vector<std::vector<std::byte>>> run(
      const task::ShaderTask& task, const std::function<bool()>& stopped);

  /// Pipelines built so far (cache misses) and pipelines now cached.
  std::uint64_t pipelines_built() const;
  std::size_t pipelines_cached() const;

 private:
  struct Entry {
    std::uint64_t hash = 0;
    std::vector<std::uint32_t> spirv;
    KernelLayout layout;
    std::shared_ptr<const Kernel> kernel;
    std::uint64_t last_use = 0;
  };
  Result<std::shared_ptr<const Kernel>> pipeline(const task::ShaderTask& task, KernelLayout layout);

  Device& device_;
  std::uint64_t max_bytes_;
  mutable std::mutex mu_;  // guards the fields below
  std::vector<Entry> cache_;
  std::uint64_t tick_ = 0;
  std::uint64_t built_ = 0;
};

}  // namespace pepita::gpu::detail
