// ublk I/O descriptor validation (see request.hpp): every value here comes from the kernel's
// mmap'ed descriptor array and is checked before it selects a buffer length or a device range.
#include "pepita/ublk/request.hpp"

#include <cerrno>

namespace pepita::ublk {
namespace {

ParsedIo refuse(int err, std::string_view reason) noexcept {
  ParsedIo io;
  io.neg_errno = -err;
  io.reason = reason;
  return io;
}

}  // namespace

ParsedIo parse_io_desc(const abi::ublk::IoDesc& desc, const IoLimits& limits) noexcept {
  const uint8_t raw_op = abi::ublk::io_desc_op(desc);
  if (!abi::blk_mq::is_valid_op(raw_op)) return refuse(EOPNOTSUPP, "unknown ublk op");
  const Op op = static_cast<Op>(raw_op);

  ParsedIo io;
  io.op = op;
  io.flags = desc.op_flags & kKnownIoFlags;
  switch (op) {
    case Op::Read:
    case Op::Write:
    case Op::Flush: break;
    case Op::Discard:
      if (!limits.discard) return refuse(EOPNOTSUPP, "discard not supported by this target");
      break;
    case Op::WriteZeroes:
      if (!limits.write_zeroes)
        return refuse(EOPNOTSUPP, "write-zeroes not supported by this target");
      break;
    default: return refuse(EOPNOTSUPP, "zoned and write-same ops are not supported");
  }
  if (limits.read_only && op != Op::Read && op != Op::Flush)
    return refuse(EROFS, "write to a read-only device");
  if (op == Op::Flush) return io;  // no range: blk-mq sends flushes with sector 0, length 0

  const uint64_t start = desc.start_sector;
  const uint32_t count = desc.nr_sectors;
  if (count == 0) return refuse(EINVAL, "zero-length request");
  // Checked end of range: start + count must neither wrap nor pass the capacity.
  if (start > limits.capacity_sectors || count > limits.capacity_sectors - start)
    return refuse(EIO, "request past the end of the device");
  if ((op == Op::Read || op == Op::Write) &&
      uint64_t{count} << abi::blk_mq::kSectorShift > limits.max_io_bytes)
    return refuse(EINVAL, "request larger than the I/O buffer");
  io.sector = start;
  io.nr_sectors = count;
  return io;
}

}  // namespace pepita::ublk
