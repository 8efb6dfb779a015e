// DmaBuffers as io_uring fixed buffers (see pepita/io_uring/dma.hpp).
#include "pepita/io_uring/dma.hpp"

#include <sys/uio.h>

#include <vector>

#include "pepita/core/format.hpp"
#include "pepita/io_uring/prep.hpp"

namespace pepita::io_uring {

Result<void> register_dma_buffers(Ring& ring, std::span<const memory::DmaBuffer* const> buffers) {
  if (buffers.empty())
    return fail(ErrorCode::InvalidArgument, "io_uring register_dma_buffers: no buffers given");
  if (buffers.size() > 16384)  // IORING_MAX_REG_BUFFERS
    return fail(ErrorCode::InvalidArgument,
                fmt("io_uring register_dma_buffers: {} buffers; the kernel takes at most 16384",
                    buffers.size()));
  std::vector<iovec> table;
  table.reserve(buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    const memory::DmaBuffer* buf = buffers[i];
    if (buf == nullptr || !buf->is_valid())
      return fail(ErrorCode::InvalidArgument,
                  fmt("io_uring register_dma_buffers: buffer {} holds no memory", i));
    if (buf->direction() == memory::DmaDirection::None)
      return fail(ErrorCode::InvalidArgument,
                  fmt("io_uring register_dma_buffers: buffer {} has direction none; the device "
                      "may not touch it",
                      i));
    table.push_back(iovec{buf->data(), buf->size()});
  }
  return ring.register_buffers(table);
}

Result<void> prep_read_fixed(abi::Sqe& sqe, int fd, const memory::DmaBuffer& buf,
                             std::uint16_t buf_index, std::uint64_t buf_offset, std::uint32_t len,
                             std::uint64_t file_offset) {
  PEPITA_TRY_VOID(
      buf.check_device_access(/*device_writes=*/true, buf_offset, len, "io_uring READ_FIXED"));
  prep_read_fixed(sqe, fd, buf.data() + buf_offset, len, file_offset, buf_index);
  return {};
}

Result<void> prep_write_fixed(abi::Sqe& sqe, int fd, const memory::DmaBuffer& buf,
                              std::uint16_t buf_index, std::uint64_t buf_offset, std::uint32_t len,
                              std::uint64_t file_offset) {
  PEPITA_TRY_VOID(
      buf.check_device_access(/*device_writes=*/false, buf_offset, len, "io_uring WRITE_FIXED"));
  prep_write_fixed(sqe, fd, buf.data() + buf_offset, len, file_offset, buf_index);
  return {};
}

}  // namespace pepita::io_uring
