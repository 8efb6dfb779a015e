// Device::run: validates a batch of dispatches against the kernels' layouts and the device
// limits, binds each to a fresh descriptor set from a per-batch pool, and records them into one
// command buffer with compute->compute barriers between them and a compute->host barrier at the
// end (Vulkan 1.1 spec, "Synchronization and Cache Control", memory barriers).

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "detail/context.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu {
namespace {

// Owns the per-batch descriptor pool (destroying it frees its sets).
struct PoolGuard {
  explicit PoolGuard(VkDevice d) : device(d) {}
  VkDevice device;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  PoolGuard(const PoolGuard&) = delete;
  PoolGuard& operator=(const PoolGuard&) = delete;
  ~PoolGuard() {
    if (pool != VK_NULL_HANDLE) vkDestroyDescriptorPool(device, pool, nullptr);
  }
};

Error invalid(std::size_t i, const std::string& what) {
  return Error(ErrorCode::InvalidArgument, "gpu dispatch " + std::to_string(i) + ": " + what);
}

}  // namespace

Result<void> Device::run(std::span<const Dispatch> dispatches) {
  if (dispatches.empty()) return {};
  detail::Context& c = *ctx_;
  const DeviceInfo& info = c.info;
  std::uint32_t total_buffers = 0;
  for (std::size_t i = 0; i < dispatches.size(); ++i) {
    const Dispatch& d = dispatches[i];
    if (d.kernel == nullptr || !d.kernel->impl_) return std::unexpected(invalid(i, "no kernel"));
    const detail::KernelImpl& k = *d.kernel->impl_;
    if (k.ctx != ctx_) return std::unexpected(invalid(i, "kernel was created on another Device"));
    if (d.buffers.size() != k.layout.buffers)
      return std::unexpected(invalid(i, "kernel expects " + std::to_string(k.layout.buffers) +
                                            " buffers, got " + std::to_string(d.buffers.size())));
    if (d.push.size() != k.layout.push_constant_bytes)
      return std::unexpected(
          invalid(i, "kernel expects " + std::to_string(k.layout.push_constant_bytes) +
                         " push-constant bytes, got " + std::to_string(d.push.size())));
    const std::uint32_t g[3] = {d.groups.x, d.groups.y, d.groups.z};
    for (int a = 0; a < 3; ++a) {
      if (g[a] == 0 || g[a] > info.max_group_count[a])
        return std::unexpected(
            invalid(i, std::string("group count ") + "xyz"[a] + " = " + std::to_string(g[a]) +
                           " is outside 1.." + std::to_string(info.max_group_count[a]) + " on " +
                           info.name + "; split the work or use a grid-stride loop"));
    }
    for (std::size_t b = 0; b < d.buffers.size(); ++b) {
      const Buffer* buf = d.buffers[b];
      if (buf == nullptr || !buf->impl_)
        return std::unexpected(invalid(i, "buffer " + std::to_string(b) + " is null"));
      if (buf->impl_->raw->ctx != ctx_)
        return std::unexpected(
            invalid(i, "buffer " + std::to_string(b) + " was created on another Device"));
      if (buf->size() > info.max_storage_buffer_range)
        return std::unexpected(invalid(i, "buffer " + std::to_string(b) + " is " +
                                              std::to_string(buf->size()) +
                                              " bytes, over the device's storage-buffer range of " +
                                              std::to_string(info.max_storage_buffer_range)));
    }
    total_buffers += k.layout.buffers;
  }

  PoolGuard pool{c.device};
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, std::max(total_buffers, 1u)};
  VkDescriptorPoolCreateInfo pi{};
  pi.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
  pi.maxSets = static_cast<std::uint32_t>(dispatches.size());
  pi.poolSizeCount = 1;
  pi.pPoolSizes = &size;
  if (VkResult r = vkCreateDescriptorPool(c.device, &pi, nullptr, &pool.pool); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateDescriptorPool"));

  std::vector<VkDescriptorSetLayout> layouts;
  for (const Dispatch& d : dispatches) layouts.push_back(d.kernel->impl_->set_layout);
  std::vector<VkDescriptorSet> sets(dispatches.size());
  VkDescriptorSetAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
  ai.descriptorPool = pool.pool;
  ai.descriptorSetCount = static_cast<std::uint32_t>(sets.size());
  ai.pSetLayouts = layouts.data();
  if (VkResult r = vkAllocateDescriptorSets(c.device, &ai, sets.data()); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkAllocateDescriptorSets"));

  std::vector<VkDescriptorBufferInfo> infos;
  infos.reserve(total_buffers);  // no reallocation: writes point into it
  std::vector<VkWriteDescriptorSet> writes;
  for (std::size_t i = 0; i < dispatches.size(); ++i) {
    for (std::size_t b = 0; b < dispatches[i].buffers.size(); ++b) {
      infos.push_back({dispatches[i].buffers[b]->impl_->raw->buffer, 0, VK_WHOLE_SIZE});
      VkWriteDescriptorSet w{};
      w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
      w.dstSet = sets[i];
      w.dstBinding = static_cast<std::uint32_t>(b);
      w.descriptorCount = 1;
      w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      w.pBufferInfo = &infos.back();
      writes.push_back(w);
    }
  }
  if (!writes.empty())
    vkUpdateDescriptorSets(c.device, static_cast<std::uint32_t>(writes.size()), writes.data(), 0,
                           nullptr);

  // Counted once submitted and finished (Device::dispatch_count).
  auto done = c.submit([&](VkCommandBuffer cmd) {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    // Host writes to mapped memory and earlier transfers are made visible by the submission
    // itself (host) and by this barrier (transfers), before the first dispatch reads them.
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         0, 1, &mb, 0, nullptr, 0, nullptr);
    for (std::size_t i = 0; i < dispatches.size(); ++i) {
      const Dispatch& d = dispatches[i];
      const detail::KernelImpl& k = *d.kernel->impl_;
      if (i > 0) {
        // Later dispatches read what earlier ones wrote (e.g. reduction pass 2).
        mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
        mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0,
                             nullptr);
      }
      vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k.pipeline);
      vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, k.pipeline_layout, 0, 1,
                              &sets[i], 0, nullptr);
      if (!d.push.empty())
        vkCmdPushConstants(cmd, k.pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                           static_cast<std::uint32_t>(d.push.size()), d.push.data());
      vkCmdDispatch(cmd, d.groups.x, d.groups.y, d.groups.z);
    }
    // Shader writes -> host reads of mapped memory and later staging copies.
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0,
                         nullptr, 0, nullptr);
  });
  if (done) c.dispatches.fetch_add(dispatches.size(), std::memory_order_relaxed);
  return done;
}

}  // namespace pepita::gpu
