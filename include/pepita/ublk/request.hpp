#pragma once
// Parsing of the ublk I/O descriptors the kernel writes into the mmap'ed descriptor array of
// /dev/ublkcN (struct ublksrv_io_desc, linux/ublk_cmd.h): a pure function, so every check on
// kernel-side input is unit-tested and fuzzed on a host without ublk.
//
//   IoLimits limits{.capacity_sectors = disk.info().capacity_sectors, .max_io_bytes = 512 << 10};
//   ParsedIo io = parse_io_desc(desc, limits);
//   if (io.neg_errno != 0) commit(tag, io.neg_errno);  // that request fails; the server goes on
//   else serve(io.op, io.sector, io.nr_sectors, io.flags);

#include <cstdint>
#include <string_view>

#include "pepita/abi/blk_mq.hpp"
#include "pepita/abi/ublk.hpp"

namespace pepita::ublk {

using abi::blk_mq::Op;

/// What the device accepts: its size, the per-tag buffer size and which optional ops it serves.
struct IoLimits {
  uint64_t capacity_sectors = 0;
  uint32_t max_io_bytes = 0;  // size of each tag's buffer (ADD_DEV's max_io_buf_bytes)
  bool discard = true;        // Discard served (else -EOPNOTSUPP)
  bool write_zeroes = true;   // WriteZeroes served (else -EOPNOTSUPP)
  bool read_only = false;     // Write, Discard, WriteZeroes refused with -EROFS
};

/// One parsed request. When neg_errno != 0 the descriptor was refused: complete the tag with
/// neg_errno and read no other field but `reason`.
struct ParsedIo {
  int neg_errno = 0;
  std::string_view reason;  // static text, for logs and tests
  Op op = Op::Read;
  uint32_t flags = 0;  // abi::blk_mq::flags bits the kernel set (unknown bits dropped)
  uint64_t sector = 0;
  uint32_t nr_sectors = 0;

  uint64_t byte_length() const noexcept {
    return uint64_t{nr_sectors} << abi::blk_mq::kSectorShift;
  }
  bool ok() const noexcept { return neg_errno == 0; }
};

/// Validates one descriptor against `limits` with overflow-checked arithmetic:
///   unknown op, zoned ops, WRITE_SAME, or an op the device does not serve -> -EOPNOTSUPP;
///   Read/Write/Discard/WriteZeroes of 0 sectors, or Read/Write longer than max_io_bytes ->
///   -EINVAL; a range past capacity (or whose end overflows) -> -EIO, as the kernel's
///   bio_check_eod; a modifying op on a read-only device -> -EROFS.
/// Flush carries no range: its sector/length fields are ignored.
ParsedIo parse_io_desc(const abi::ublk::IoDesc& desc, const IoLimits& limits) noexcept;

/// Flag bits of ublksrv_io_desc.op_flags this server understands (the rest are dropped).
inline constexpr uint32_t kKnownIoFlags =
    abi::ublk::IO_F_FAILFAST_DEV | abi::ublk::IO_F_FAILFAST_TRANSPORT |
    abi::ublk::IO_F_FAILFAST_DRIVER | abi::ublk::IO_F_META | abi::ublk::IO_F_FUA |
    abi::ublk::IO_F_NOUNMAP | abi::ublk::IO_F_SWAP;

}  // namespace pepita::ublk
