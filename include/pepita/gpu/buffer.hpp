#pragma once
// GPU storage buffer: host-visible, persistently mapped memory on unified devices (lavapipe,
// integrated GPUs), device-local memory filled and read through staging copies on discrete GPUs.
// Vulkan 1.1 spec, "Memory Allocation" and "Copy Commands".
//
//   auto buf = PEPITA_TRY(pepita::gpu::Buffer::create(dev, n * sizeof(float)));
//   PEPITA_TRY_VOID(buf.upload(std::span<const float>(host)));
//   ... dispatch ...
//   PEPITA_TRY_VOID(buf.download(std::span<float>(host)));

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "pepita/error.hpp"
#include "pepita/gpu/device.hpp"

namespace pepita::gpu {

namespace detail {
struct BufferImpl;
}

enum class MemoryKind : std::uint8_t { HostVisible, DeviceLocal };

/// A storage buffer of fixed size. Move-only; frees its memory on destruction (keeping the
/// device alive until then).
class Buffer {
 public:
  /// Allocates `bytes` (> 0) of storage-buffer memory on `device`. Contents are unspecified.
  /// Errors: InvalidArgument for 0 bytes; ResourceExhausted when the device is out of memory.
  [[nodiscard]] static Result<Buffer> create(Device& device, std::size_t bytes);

  /// create() sized to `data`, then upload(data).
  template <typename T>
  [[nodiscard]] static Result<Buffer> from(Device& device, std::span<const T> data) {
    auto buf = create(device, data.size_bytes());
    if (!buf) return buf;
    if (auto ok = buf->upload(data); !ok) return std::unexpected(std::move(ok).error());
    return buf;
  }

  Buffer(Buffer&&) noexcept;
  Buffer& operator=(Buffer&&) noexcept;
  ~Buffer();

  std::size_t size() const noexcept;
  MemoryKind kind() const noexcept;

  /// Copies `data` into the buffer at byte `offset`. Waits for the copy (staging path).
  /// Errors: InvalidArgument when offset + data.size() exceeds size() (nothing is written).
  [[nodiscard]] Result<void> write(std::span<const std::byte> data, std::size_t offset = 0);
  /// Copies out.size() bytes starting at byte `offset` into `out`. Waits (staging path).
  /// Errors: InvalidArgument when offset + out.size() exceeds size().
  [[nodiscard]] Result<void> read(std::span<std::byte> out, std::size_t offset = 0) const;

  template <typename T>
  [[nodiscard]] Result<void> upload(std::span<const T> data, std::size_t offset = 0) {
    return write(std::as_bytes(data), offset);
  }
  template <typename T>
  [[nodiscard]] Result<void> download(std::span<T> out, std::size_t offset = 0) const {
    return read(std::as_writable_bytes(out), offset);
  }

 private:
  friend class Device;
  friend struct detail::Context;
  explicit Buffer(std::unique_ptr<detail::BufferImpl> impl) noexcept;
  std::unique_ptr<detail::BufferImpl> impl_;
};

}  // namespace pepita::gpu
