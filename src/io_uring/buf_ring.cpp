// Provided buffer rings: registration (user-allocated or kernel-mmapped ring), buffer hand-back
// and the ring tail protocol, after liburing's setup.c (io_uring_setup_buf_ring) and the
// kernel's io_uring/kbuf.c.
#include "pepita/io_uring/buf_ring.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "detail/sys.hpp"
#include "pepita/core/format.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring {
namespace {

constexpr std::uint32_t kMaxEntries = 32768;

Error register_error(int err, const BufferRingOptions& o) {
  const std::string what =
      pepita::fmt("io_uring_register PBUF_RING (group {}, {} entries)", o.group, o.entries);
  switch (-err) {
    case EEXIST:
      return Error(ErrorCode::AlreadyExists,
                   std::string(what).append(": the buffer group is registered on this ring "
                                            "already; pick another group id or drop the old one"),
                   EEXIST);
    case EINVAL:
      return Error(ErrorCode::Unsupported,
                   std::string(what).append(": the kernel refused the ring (provided buffer "
                                            "rings need Linux 5.19, kernel-allocated ones 6.4)"),
                   EINVAL);
    default: return Error::from_errno(err, what);
  }
}

}  // namespace

Result<BufferRing> BufferRing::create(const Ring& ring, const BufferRingOptions& o) {
  if (o.entries == 0 || o.entries > kMaxEntries || (o.entries & (o.entries - 1)) != 0)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("io_uring BufferRing: entries must be a power of two in 1..{}, got {}",
                            kMaxEntries, o.entries));
  if (o.buf_size == 0 || o.buf_size > (1u << 31))
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("io_uring BufferRing: buf_size must be 1..2^31 bytes, got {}", o.buf_size));
  if (ring.fd() < 0)
    return fail(ErrorCode::InvalidArgument, "io_uring BufferRing: the ring has no fd");

  BufferRing b;
  b.ring_fd_ = UniqueFd(::fcntl(ring.fd(), F_DUPFD_CLOEXEC, 0));
  if (!b.ring_fd_) return fail_errno(-errno, "io_uring BufferRing: dup of the ring fd");
  b.group_ = o.group;
  b.entries_ = o.entries;
  b.mask_ = o.entries - 1;
  b.buf_size_ = o.buf_size;
  b.buffers_ = PEPITA_TRY(
      Mapping::anonymous(std::size_t{o.entries} * o.buf_size, "io_uring BufferRing buffers"));
  const std::size_t ring_bytes = std::size_t{o.entries} * sizeof(abi::Buf);

  abi::BufReg reg{};
  reg.ring_entries = o.entries;
  reg.bgid = o.group;
  if (o.kernel_allocated) {
    reg.flags = abi::pbuf_ring::MMAP;
  } else {
    // Page-aligned, as the kernel pins whole pages of a user-provided ring.
    b.ring_mem_ = PEPITA_TRY(Mapping::anonymous(ring_bytes, "io_uring BufferRing ring"));
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(b.ring_mem_.bytes());  // SAFETY: the ABI's
  }
  const int r = sys::register_(b.ring_fd_.get(),
                               static_cast<unsigned>(abi::RegisterOp::RegisterPbufRing), &reg, 1);
  if (r < 0) {
    b.ring_fd_.reset();  // nothing registered: the destructor must not unregister
    return std::unexpected(register_error(r, o));
  }
  if (o.kernel_allocated) {
    const auto off = static_cast<off_t>(abi::mmap_off::PBUF_RING |
                                        (std::uint64_t{o.group} << abi::mmap_off::PBUF_SHIFT));
    // SAFETY: the kernel's ring of this group at its magic offset, ring_bytes long.
    auto m = Mapping::map(ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                          b.ring_fd_.get(), off, "io_uring BufferRing ring (kernel-allocated)");
    if (!m) return std::unexpected(m.error());  // ~BufferRing unregisters
    b.ring_mem_ = std::move(*m);
  }
  // SAFETY: the ring memory is entries * 16 bytes, page-aligned; struct io_uring_buf_ring's tail
  // overlays bufs[0].resv.
  b.bufs_ = reinterpret_cast<abi::Buf*>(b.ring_mem_.bytes());
  b.ktail_ = &reinterpret_cast<abi::BufRing*>(b.ring_mem_.bytes())->tail;
  for (std::uint32_t i = 0; i < o.entries; ++i) b.add(static_cast<std::uint16_t>(i));
  b.publish();
  return b;
}

BufferRing::~BufferRing() {
  if (!ring_fd_) return;
  abi::BufReg reg{};
  reg.bgid = group_;
  (void)sys::register_(ring_fd_.get(), static_cast<unsigned>(abi::RegisterOp::UnregisterPbufRing),
                       &reg, 1);
}

std::span<std::byte> BufferRing::buffer(std::uint16_t bid) const noexcept {
  if (bid >= entries_) return {};
  return {buffers_.bytes() + std::size_t{bid} * buf_size_, buf_size_};
}

std::span<const std::byte> BufferRing::data(std::uint16_t bid, std::int32_t len) const noexcept {
  auto b = buffer(bid);
  if (len <= 0) return {};
  return b.first(std::min<std::size_t>(b.size(), static_cast<std::size_t>(len)));
}

void BufferRing::add(std::uint16_t bid) noexcept {
  if (bid >= entries_) return;
  abi::Buf& slot = bufs_[tail_ & mask_];
  slot.addr = reinterpret_cast<std::uintptr_t>(buffer(bid).data());  // SAFETY: the ABI's encoding
  slot.len = buf_size_;
  slot.bid = bid;
  ++tail_;
}

void BufferRing::publish() noexcept {
  // The kernel load-acquires the tail and then reads the entries below it.
  std::atomic_ref<std::uint16_t>(*ktail_).store(tail_, std::memory_order_release);
}

Result<std::uint16_t> BufferRing::kernel_head() const {
  abi::BufStatus st{};
  st.buf_group = group_;
  const int r = sys::register_(ring_fd_.get(),
                               static_cast<unsigned>(abi::RegisterOp::RegisterPbufStatus), &st, 1);
  if (r < 0) return fail_errno(r, "io_uring_register PBUF_STATUS (needs Linux 6.8)");
  return static_cast<std::uint16_t>(st.head);
}

}  // namespace pepita::io_uring
