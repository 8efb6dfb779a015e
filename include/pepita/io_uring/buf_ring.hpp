#pragma once
// Provided buffer rings (IORING_REGISTER_PBUF_RING, 5.19+): a ring of buffers shared with the
// kernel, from which a request flagged BUFFER_SELECT (prep_recv_multishot, prep_read_multishot)
// picks one when data arrives, naming it in the CQE. The application gives a buffer back once it
// has used the data. After liburing's io_uring_setup_buf_ring / io_uring_buf_ring_add /
// io_uring_buf_ring_advance.
//
//   auto bufs = PEPITA_TRY(BufferRing::create(ring, {.group = 1, .entries = 64, .buf_size =
//   4096})); prep_recv_multishot(*ring.get_sqe(), sock, 0, bufs.group());
//   ... for each CQE with res > 0:
//   consume(bufs.data(BufferRing::buffer_id(cqe), cqe.res));
//   bufs.recycle(BufferRing::buffer_id(cqe));   // back to the kernel
//   ... a CQE without cqe_flags::MORE (res -ENOBUFS when every buffer was in use): arm it again.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "pepita/abi/io_uring.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::io_uring {

class Ring;

struct BufferRingOptions {
  std::uint16_t group = 0;        // buffer group id (sqe->buf_group), unique per ring
  std::uint32_t entries = 64;     // buffers; a power of two, 1..32768
  std::uint32_t buf_size = 4096;  // bytes per buffer, 1..2^31
  bool kernel_allocated = false;  // the kernel allocates the ring, we mmap it (IOU_PBUF_RING_MMAP)
};

/// Owns a registered provided-buffer ring: the ring memory, the buffers, and the registration
/// (unregistered on destruction). It holds its own reference to the io_uring (a dup of the ring
/// fd), so it may outlive the Ring object it was created on. Single-threaded, like Ring.
class BufferRing {
 public:
  /// Registers a ring of `entries` buffers of `buf_size` bytes as group `group` of `ring`, all of
  /// them handed to the kernel. Errors: InvalidArgument (entries not a power of two up to 32768,
  /// buf_size 0), AlreadyExists (the group is registered on this ring already), Unsupported
  /// (kernel before 5.19).
  static Result<BufferRing> create(const Ring& ring, const BufferRingOptions& options);

  BufferRing(BufferRing&& other) noexcept = default;
  BufferRing& operator=(BufferRing&& other) noexcept {
    if (this != &other) {
      std::destroy_at(this);
      std::construct_at(this, std::move(other));
    }
    return *this;
  }
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing();

  std::uint16_t group() const noexcept { return group_; }
  std::uint32_t entries() const noexcept { return entries_; }
  std::uint32_t buf_size() const noexcept { return buf_size_; }

  /// Whether a CQE carries a provided buffer, and which (cqe_flags::BUFFER, id in the top half).
  static bool has_buffer(const abi::Cqe& cqe) noexcept {
    return (cqe.flags & abi::cqe_flags::BUFFER) != 0;
  }
  static std::uint16_t buffer_id(const abi::Cqe& cqe) noexcept {
    return static_cast<std::uint16_t>(cqe.flags >> abi::cqe_flags::BUFFER_SHIFT);
  }

  /// Buffer `bid`'s bytes (buf_size of them); empty for an id out of range.
  std::span<std::byte> buffer(std::uint16_t bid) const noexcept;
  /// The first `len` bytes of buffer `bid` (what a CQE with res = len filled), clamped.
  std::span<const std::byte> data(std::uint16_t bid, std::int32_t len) const noexcept;

  /// Queues buffer `bid` for the kernel; it sees queued buffers after publish(). Queue at most
  /// entries() buffers between publishes, and only ids the kernel handed back.
  void add(std::uint16_t bid) noexcept;
  /// Makes the queued buffers visible to the kernel (one release store of the ring tail).
  void publish() noexcept;
  /// add(bid) then publish().
  void recycle(std::uint16_t bid) noexcept {
    add(bid);
    publish();
  }
  /// How many buffers the kernel has taken from the ring so far (IORING_REGISTER_PBUF_STATUS,
  /// 6.8+), wrapping at 2^16.
  Result<std::uint16_t> kernel_head() const;

 private:
  BufferRing() = default;

  UniqueFd ring_fd_;  // dup of the io_uring fd: unregisters through it, keeps the ring alive
  Mapping ring_mem_;  // entries * sizeof(abi::Buf): ours, or the kernel's mmap-ed ring
  Mapping buffers_;   // entries * buf_size bytes
  abi::Buf* bufs_ = nullptr;
  std::uint16_t* ktail_ = nullptr;  // abi::BufRing::tail, read by the kernel
  std::uint16_t tail_ = 0;          // local tail: add() advances it, publish() stores it
  std::uint16_t group_ = 0;
  std::uint32_t entries_ = 0;
  std::uint32_t mask_ = 0;
  std::uint32_t buf_size_ = 0;
};

}  // namespace pepita::io_uring
