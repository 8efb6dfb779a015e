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

/// How a buffer may be used: the crate's BufferUsage bit set (its values, wgpu's). A pepita
/// Buffer is always a storage buffer that can be copied from and to; a host-visible one can also
/// be mapped. Buffer::usage() reports which.
struct BufferUsage {
  std::uint32_t value = 0;

  static const BufferUsage MAP_READ, MAP_WRITE, COPY_SRC, COPY_DST, INDEX, VERTEX, UNIFORM, STORAGE,
      INDIRECT;

  static constexpr BufferUsage empty() noexcept { return {}; }
  constexpr BufferUsage union_with(BufferUsage other) const noexcept {
    return {value | other.value};
  }
  constexpr bool contains(BufferUsage other) const noexcept {
    return (value & other.value) == other.value;
  }
  constexpr std::uint32_t bits() const noexcept { return value; }
  friend constexpr BufferUsage operator|(BufferUsage a, BufferUsage b) noexcept {
    return a.union_with(b);
  }
  friend constexpr bool operator==(BufferUsage, BufferUsage) noexcept = default;
};
inline constexpr BufferUsage BufferUsage::MAP_READ{1u << 0};
inline constexpr BufferUsage BufferUsage::MAP_WRITE{1u << 1};
inline constexpr BufferUsage BufferUsage::COPY_SRC{1u << 2};
inline constexpr BufferUsage BufferUsage::COPY_DST{1u << 3};
inline constexpr BufferUsage BufferUsage::INDEX{1u << 4};
inline constexpr BufferUsage BufferUsage::VERTEX{1u << 5};
inline constexpr BufferUsage BufferUsage::UNIFORM{1u << 6};
inline constexpr BufferUsage BufferUsage::STORAGE{1u << 7};
inline constexpr BufferUsage BufferUsage::INDIRECT{1u << 8};

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

  // ---- the crate's Buffer operations (pepita/gpu/crate_api.hpp) ----
  /// Process-unique id, from 1 in creation order.
  std::uint64_t id() const noexcept;
  /// STORAGE | COPY_SRC | COPY_DST, plus MAP_READ | MAP_WRITE when host-visible.
  BufferUsage usage() const noexcept;
  /// The buffer's memory, mapped (host-visible buffers: lavapipe, integrated GPUs). Coherent:
  /// no flush needed, but do not touch it while a dispatch using the buffer runs. Valid while
  /// the Buffer lives. Errors: InvalidArgument for a device-local buffer (use read()/write()).
  [[nodiscard]] Result<std::span<const std::byte>> map_read() const;
  [[nodiscard]] Result<std::span<std::byte>> map_write();

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
