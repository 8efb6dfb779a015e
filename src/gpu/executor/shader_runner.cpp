// ShaderRunner: shader tasks on the gpu backend — interface and limit checks, the pipeline cache
// keyed by a hash of the SPIR-V and its layout (full comparison on a hit, so a collision only
// costs a rebuild), upload, dispatch, read-back.

#include "detail/shader_runner.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <utility>

#include "pepita/core/format.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/reflect.hpp"

namespace pepita::gpu::detail {
namespace {

// FNV-1a over 32-bit words.
class Fnv {
 public:
  void add(std::uint32_t w) {
    for (int b = 0; b < 4; ++b) {
      h_ ^= (w >> (8 * b)) & 0xff;
      h_ *= 0x100000001b3ull;
    }
  }
  void add(std::span<const std::uint32_t> ws) {
    add(static_cast<std::uint32_t>(ws.size()));
    for (std::uint32_t w : ws) add(w);
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

std::uint64_t hash_of(std::span<const std::uint32_t> spirv, const KernelLayout& layout) {
  Fnv f;
  f.add(spirv);
  f.add(layout.buffers);
  f.add(layout.push_constant_bytes);
  f.add(layout.spec_constants);
  for (char c : layout.entry_point)
    f.add(static_cast<std::uint32_t>(static_cast<unsigned char>(c)));
  return f.value();
}

bool same_layout(const KernelLayout& a, const KernelLayout& b) {
  return a.buffers == b.buffers && a.push_constant_bytes == b.push_constant_bytes &&
         a.spec_constants == b.spec_constants && a.entry_point == b.entry_point;
}

Result<void> cancelled() {
  return fail(ErrorCode::Cancelled, "attempt already reported (cancelled or timed out)");
}

}  // namespace

Result<std::shared_ptr<const Kernel>> ShaderRunner::pipeline(const task::ShaderTask& task,
                                                             KernelLayout layout) {
  const std::uint64_t hash = hash_of(task.spirv, layout);
  {
    std::lock_guard lock(mu_);
    for (Entry& e : cache_) {
      if (e.hash == hash && e.spirv == task.spirv && same_layout(e.layout, layout)) {
        e.last_use = ++tick_;
        return e.kernel;
      }
    }
  }
  // Built outside the lock: pipeline creation is the slow part (a driver compile), and two
  // workers racing on the same new shader only build it twice.
  auto kernel = Kernel::create(device_, task.spirv, layout);
  if (!kernel) return std::unexpected(std::move(kernel.error()).with_context("spirv"));
  auto shared = std::make_shared<const Kernel>(std::move(*kernel));
  std::lock_guard lock(mu_);
  ++built_;
  if (cache_.size() >= kCacheEntries) {
    auto oldest = std::min_element(cache_.begin(), cache_.end(),
                                   [](auto& a, auto& b) { return a.last_use < b.last_use; });
    cache_.erase(oldest);  // a worker still using it holds its own shared_ptr
  }
  cache_.push_back({hash, task.spirv, std::move(layout), shared, ++tick_});
  return shared;
}

Result<std::vector<std::vector<std::byte>>> ShaderRunner::run(
    const task::ShaderTask& task, const std::function<bool()>& stopped) {
  PEPITA_TRY_VOID(task.validate());
  const DeviceInfo& info = device_.info();
  auto in = PEPITA_TRY(reflect_spirv(task.spirv, task.entry_point));
  if (task.push_constants.size() > info.max_push_constant_bytes)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("push_constants: {} bytes is over this device's limit of {} "
                            "(maxPushConstantsSize of {})",
                            task.push_constants.size(), info.max_push_constant_bytes, info.name));
  PEPITA_TRY_VOID(check_compute_interface(in, task.buffers.size(), task.push_constants.size()));
  if (task.buffers.size() > info.max_storage_buffers)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("buffers: {} storage buffers is over this device's limit of {}",
                            task.buffers.size(), info.max_storage_buffers));
  const std::uint32_t groups[] = {task.workgroups.x, task.workgroups.y, task.workgroups.z};
  for (int a = 0; a < 3; ++a) {
    if (groups[a] > info.max_group_count[a])
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("workgroups.{}: {} is over this device's limit of {} ({})", "xyz"[a],
                              groups[a], info.max_group_count[a], info.name));
  }
  for (std::size_t i = 0; i < task.buffers.size(); ++i) {
    if (task.buffers[i].data.size() > max_bytes_)
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("buffers[{}]: {} bytes is over the {}-byte limit per buffer "
                              "(GpuExecutor max_buffer_bytes or the device's storage-buffer "
                              "range)",
                              i, task.buffers[i].data.size(), max_bytes_));
  }

  KernelLayout layout;
  layout.buffers = static_cast<std::uint32_t>(task.buffers.size());
  layout.push_constant_bytes = static_cast<std::uint32_t>(task.push_constants.size());
  layout.spec_constants = task.spec_constants;
  layout.entry_point = task.entry_point;
  auto kernel = PEPITA_TRY(pipeline(task, std::move(layout)));

  std::vector<Buffer> bufs;
  bufs.reserve(task.buffers.size());
  for (std::size_t i = 0; i < task.buffers.size(); ++i) {
    if (stopped()) return std::unexpected(cancelled().error());
    auto b = Buffer::create(device_, task.buffers[i].data.size());
    if (!b)
      return std::unexpected(std::move(b.error()).with_context(pepita::fmt("buffers[{}]", i)));
    PEPITA_TRY_VOID(b->write(task.buffers[i].data));
    bufs.push_back(std::move(*b));
  }
  std::vector<const Buffer*> ptrs;
  for (const Buffer& b : bufs) ptrs.push_back(&b);
  if (stopped()) return std::unexpected(cancelled().error());
  PEPITA_TRY_VOID(
      device_.dispatch(*kernel, ptrs, {groups[0], groups[1], groups[2]}, task.push_constants));

  std::vector<std::vector<std::byte>> outputs;
  outputs.reserve(task.output_count());
  for (std::size_t i = 0; i < task.buffers.size(); ++i) {
    if (!task.buffers[i].output) continue;
    if (stopped()) return std::unexpected(cancelled().error());
    std::vector<std::byte> bytes(bufs[i].size());
    PEPITA_TRY_VOID(bufs[i].read(bytes));
    outputs.push_back(std::move(bytes));
  }
  return outputs;
}

std::uint64_t ShaderRunner::pipelines_built() const {
  std::lock_guard lock(mu_);
  return built_;
}

std::size_t ShaderRunner::pipelines_cached() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

}  // namespace pepita::gpu::detail
