// Buffer: one VkBuffer per allocation (no sub-allocator: pepita's kernels use few, large
// buffers). Host-visible coherent memory is mapped once for the buffer's lifetime; device-local
// memory is reached through a temporary staging buffer and vkCmdCopyBuffer.

#include "pepita/gpu/buffer.hpp"

#include <atomic>
#include <cstring>
#include <string>
#include <utility>

#include "detail/context.hpp"

namespace pepita::gpu {
namespace detail {

RawBuffer::~RawBuffer() {
  if (!ctx) return;
  if (mapped != nullptr) vkUnmapMemory(ctx->device, memory);
  if (buffer != VK_NULL_HANDLE) vkDestroyBuffer(ctx->device, buffer, nullptr);
  if (memory != VK_NULL_HANDLE) vkFreeMemory(ctx->device, memory, nullptr);
}

Result<std::unique_ptr<RawBuffer>> RawBuffer::create(std::shared_ptr<Context> ctx,
                                                     std::size_t bytes, VkBufferUsageFlags usage,
                                                     VkMemoryPropertyFlags flags, bool map) {
  auto raw = std::make_unique<RawBuffer>();
  raw->ctx = std::move(ctx);
  raw->size = bytes;
  Context& c = *raw->ctx;
  VkBufferCreateInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bi.size = bytes;
  bi.usage = usage;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  if (VkResult r = vkCreateBuffer(c.device, &bi, nullptr, &raw->buffer); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkCreateBuffer(" + std::to_string(bytes) + " bytes)"));
  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(c.device, raw->buffer, &req);
  std::uint32_t type = PEPITA_TRY(c.memory_type(req.memoryTypeBits, flags));
  VkMemoryAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = type;
  if (VkResult r = vkAllocateMemory(c.device, &ai, nullptr, &raw->memory); r != VK_SUCCESS)
    return std::unexpected(vk_error(
        r, "vkAllocateMemory(" + std::to_string(req.size) + " bytes on " + c.info.name + ")"));
  if (VkResult r = vkBindBufferMemory(c.device, raw->buffer, raw->memory, 0); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkBindBufferMemory"));
  if (map) {
    if (VkResult r = vkMapMemory(c.device, raw->memory, 0, VK_WHOLE_SIZE, 0, &raw->mapped);
        r != VK_SUCCESS)
      return std::unexpected(vk_error(r, "vkMapMemory"));
  }
  return raw;
}

namespace {

constexpr VkMemoryPropertyFlags kHostFlags =
    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;

Result<void> check_range(std::size_t offset, std::size_t len, std::size_t size, const char* op) {
  if (offset > size || len > size - offset)
    return fail(ErrorCode::InvalidArgument, std::string("gpu::Buffer::") + op + " of " +
                                                std::to_string(len) + " bytes at offset " +
                                                std::to_string(offset) + " exceeds the buffer's " +
                                                std::to_string(size) + " bytes");
  return {};
}

}  // namespace
}  // namespace detail

Buffer::Buffer(std::unique_ptr<detail::BufferImpl> impl) noexcept : impl_(std::move(impl)) {}
Buffer::Buffer(Buffer&&) noexcept = default;
Buffer& Buffer::operator=(Buffer&&) noexcept = default;
Buffer::~Buffer() = default;

std::size_t Buffer::size() const noexcept { return impl_->raw->size; }
MemoryKind Buffer::kind() const noexcept { return impl_->kind; }

std::uint64_t Buffer::id() const noexcept { return impl_->id; }

BufferUsage Buffer::usage() const noexcept {
  BufferUsage u = BufferUsage::STORAGE | BufferUsage::COPY_SRC | BufferUsage::COPY_DST;
  if (impl_->raw->mapped != nullptr) u = u | BufferUsage::MAP_READ | BufferUsage::MAP_WRITE;
  return u;
}

Result<std::span<const std::byte>> Buffer::map_read() const {
  if (impl_->raw->mapped == nullptr)
    return fail(ErrorCode::InvalidArgument,
                "gpu::Buffer::map_read: the buffer is device-local (not MAP_READ); use read()");
  // SAFETY: `mapped` is the persistent host mapping of exactly size() bytes of coherent memory,
  // unmapped only when the buffer is destroyed.
  return std::span<const std::byte>(static_cast<const std::byte*>(impl_->raw->mapped), size());
}

Result<std::span<std::byte>> Buffer::map_write() {
  if (impl_->raw->mapped == nullptr)
    return fail(ErrorCode::InvalidArgument,
                "gpu::Buffer::map_write: the buffer is device-local (not MAP_WRITE); use write()");
  // SAFETY: as map_read.
  return std::span<std::byte>(static_cast<std::byte*>(impl_->raw->mapped), size());
}

Result<Buffer> Buffer::create(Device& device, std::size_t bytes) {
  if (bytes == 0) return fail(ErrorCode::InvalidArgument, "gpu::Buffer::create: size is 0 bytes");
  static std::atomic<std::uint64_t> next_id{1};
  auto impl = std::make_unique<detail::BufferImpl>();
  impl->id = next_id.fetch_add(1, std::memory_order_relaxed);
  constexpr VkBufferUsageFlags usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  if (device.ctx_->info.unified && !device.ctx_->force_staging) {
    impl->kind = MemoryKind::HostVisible;
    impl->raw = PEPITA_TRY(
        detail::RawBuffer::create(device.ctx_, bytes, usage, detail::kHostFlags, /*map=*/true));
  } else {
    impl->kind = MemoryKind::DeviceLocal;
    impl->raw = PEPITA_TRY(detail::RawBuffer::create(
        device.ctx_, bytes, usage, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, /*map=*/false));
  }
  return Buffer(std::move(impl));
}

Result<void> Buffer::write(std::span<const std::byte> data, std::size_t offset) {
  PEPITA_TRY_VOID(detail::check_range(offset, data.size(), size(), "write"));
  if (data.empty()) return {};
  detail::RawBuffer& raw = *impl_->raw;
  if (raw.mapped != nullptr) {
    // Coherent memory: visible to the device at the next queue submission.
    std::memcpy(static_cast<std::byte*>(raw.mapped) + offset, data.data(), data.size());
    return {};
  }
  auto staging = PEPITA_TRY(detail::RawBuffer::create(
      raw.ctx, data.size(), VK_BUFFER_USAGE_TRANSFER_SRC_BIT, detail::kHostFlags, true));
  std::memcpy(staging->mapped, data.data(), data.size());
  VkBuffer src = staging->buffer, dst = raw.buffer;
  VkBufferCopy region{0, offset, data.size()};
  return raw.ctx->submit([&](VkCommandBuffer cmd) { vkCmdCopyBuffer(cmd, src, dst, 1, &region); });
}

Result<void> Buffer::read(std::span<std::byte> out, std::size_t offset) const {
  PEPITA_TRY_VOID(detail::check_range(offset, out.size(), size(), "read"));
  if (out.empty()) return {};
  detail::RawBuffer& raw = *impl_->raw;
  if (raw.mapped != nullptr) {
    std::memcpy(out.data(), static_cast<const std::byte*>(raw.mapped) + offset, out.size());
    return {};
  }
  auto staging = PEPITA_TRY(detail::RawBuffer::create(
      raw.ctx, out.size(), VK_BUFFER_USAGE_TRANSFER_DST_BIT, detail::kHostFlags, true));
  VkBuffer src = raw.buffer, dst = staging->buffer;
  VkBufferCopy region{offset, 0, out.size()};
  PEPITA_TRY_VOID(raw.ctx->submit([&](VkCommandBuffer cmd) {
    vkCmdCopyBuffer(cmd, src, dst, 1, &region);
    // Make the transfer write visible to host reads after the fence.
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb,
                         0, nullptr, 0, nullptr);
  }));
  std::memcpy(out.data(), staging->mapped, out.size());
  return {};
}

}  // namespace pepita::gpu
