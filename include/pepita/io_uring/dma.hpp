#pragma once
// memory::DmaBuffer as io_uring fixed buffers: registration (IORING_REGISTER_BUFFERS pins the
// buffers once, so READ_FIXED/WRITE_FIXED skip the per-request page pinning) and prep helpers
// that check the buffer's DmaDirection and range before the SQE is filled: READ_FIXED has the
// kernel write the buffer (needs FromDevice or Bidirectional), WRITE_FIXED has it read the buffer
// (needs ToDevice or Bidirectional).
//
//   auto in = PEPITA_TRY(memory::DmaBuffer::allocate(1 << 20, memory::DmaDirection::FromDevice));
//   const memory::DmaBuffer* table[] = {&in};
//   PEPITA_TRY_VOID(register_dma_buffers(ring, table));   // fixed buffer 0 = in
//   PEPITA_TRY_VOID(prep_read_fixed(*ring.get_sqe(), fd, in, 0, /*buf_offset=*/0, 4096, 0));

#include <cstdint>
#include <span>

#include "pepita/abi/io_uring.hpp"
#include "pepita/error.hpp"
#include "pepita/io_uring/ring.hpp"
#include "pepita/memory/dma_buffer.hpp"

namespace pepita::io_uring {

/// Registers `buffers` as the ring's fixed buffers: buffers[i] is buf_index i. Each must hold
/// memory and have a direction other than None, and stay alive (not moved) until
/// ring.unregister_buffers() or the ring's end: the kernel keeps the pages pinned until then.
/// Errors: InvalidArgument naming the bad entry; those of Ring::register_buffers (Busy when a
/// table is already registered, ResourceExhausted over RLIMIT_MEMLOCK).
Result<void> register_dma_buffers(Ring& ring, std::span<const memory::DmaBuffer* const> buffers);

/// READ_FIXED of `len` bytes at file offset `file_offset` into bytes [buf_offset, buf_offset +
/// len) of `buf`, registered as `buf_index`. InvalidArgument (SQE untouched) when `buf` may not be
/// written by the device or the range lies outside it.
Result<void> prep_read_fixed(abi::Sqe& sqe, int fd, const memory::DmaBuffer& buf,
                             std::uint16_t buf_index, std::uint64_t buf_offset, std::uint32_t len,
                             std::uint64_t file_offset);

/// WRITE_FIXED of bytes [buf_offset, buf_offset + len) of `buf` (registered as `buf_index`) to
/// file offset `file_offset`. InvalidArgument (SQE untouched) when `buf` may not be read by the
/// device or the range lies outside it.
Result<void> prep_write_fixed(abi::Sqe& sqe, int fd, const memory::DmaBuffer& buf,
                              std::uint16_t buf_index, std::uint64_t buf_offset, std::uint32_t len,
                              std::uint64_t file_offset);

}  // namespace pepita::io_uring
