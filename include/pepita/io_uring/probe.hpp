#pragma once
// Which io_uring opcodes the running kernel supports (IORING_REGISTER_PROBE), with the opcode
// names of Linux 6.18's enum io_uring_op. Used by `pepita info` and by features that need an op.

#include <bitset>
#include <cstdint>
#include <string_view>
#include <vector>

#include "pepita/abi/io_uring.hpp"
#include "pepita/error.hpp"

namespace pepita::io_uring {

/// Lower-case name of an opcode as the kernel header spells it without IORING_OP_ ("read_fixed",
/// "uring_cmd"); "unknown" for an opcode newer than this build knows.
std::string_view op_name(std::uint8_t opcode) noexcept;
inline std::string_view op_name(abi::Op op) noexcept {
  return op_name(static_cast<std::uint8_t>(op));
}

/// One row of a probe: an opcode, its name, and whether this kernel accepts it.
struct OpcodeInfo {
  std::uint8_t code;
  std::string_view name;
  bool supported;
};

/// Result of a probe: a bitset of supported opcodes.
struct OpcodeProbe {
  std::uint8_t last_op = 0;    // highest opcode the kernel knows (not necessarily supported)
  std::bitset<256> supported;  // bit n set: opcode n supported

  bool supports(abi::Op op) const noexcept { return supported.test(static_cast<std::uint8_t>(op)); }
  /// Every opcode up to max(last_op, the last this build knows), with name and support.
  std::vector<OpcodeInfo> list() const;
  /// How many opcodes are supported.
  std::size_t count() const noexcept { return supported.count(); }
};

/// Probes the running kernel with a throw-away 2-entry ring. Errors: Unsupported when the kernel
/// has no io_uring (ENOSYS) or it is disabled (sysctl kernel.io_uring_disabled, EPERM), or when
/// the kernel predates IORING_REGISTER_PROBE (5.6).
Result<OpcodeProbe> probe_supported_opcodes();

}  // namespace pepita::io_uring
