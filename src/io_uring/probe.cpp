// Opcode names of Linux 6.18's enum io_uring_op and the free-standing kernel probe.
#include "pepita/io_uring/probe.hpp"

#include <algorithm>
#include <array>

#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring {
namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(abi::Op::Last)> kNames = {
    "nop",
    "readv",
    "writev",
    "fsync",
    "read_fixed",
    "write_fixed",
    "poll_add",
    "poll_remove",
    "sync_file_range",
    "sendmsg",
    "recvmsg",
    "timeout",
    "timeout_remove",
    "accept",
    "async_cancel",
    "link_timeout",
    "connect",
    "fallocate",
    "openat",
    "close",
    "files_update",
    "statx",
    "read",
    "write",
    "fadvise",
    "madvise",
    "send",
    "recv",
    "openat2",
    "epoll_ctl",
    "splice",
    "provide_buffers",
    "remove_buffers",
    "tee",
    "shutdown",
    "renameat",
    "unlinkat",
    "mkdirat",
    "symlinkat",
    "linkat",
    "msg_ring",
    "fsetxattr",
    "setxattr",
    "fgetxattr",
    "getxattr",
    "socket",
    "uring_cmd",
    "send_zc",
    "sendmsg_zc",
    "read_multishot",
    "waitid",
    "futex_wait",
    "futex_wake",
    "futex_waitv",
    "fixed_fd_install",
    "ftruncate",
    "bind",
    "listen",
    "recv_zc",
    "epoll_wait",
    "readv_fixed",
    "writev_fixed",
    "pipe",
};
static_assert(kNames.size() == static_cast<std::size_t>(abi::Op::Last),
              "one name per opcode up to Linux 6.18's IORING_OP_LAST");

}  // namespace

std::string_view op_name(std::uint8_t opcode) noexcept {
  return opcode < kNames.size() ? kNames[opcode] : std::string_view("unknown");
}

std::vector<OpcodeInfo> OpcodeProbe::list() const {
  const std::size_t n = std::max<std::size_t>(kNames.size(), static_cast<std::size_t>(last_op) + 1);
  std::vector<OpcodeInfo> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto code = static_cast<std::uint8_t>(i);
    out.push_back(OpcodeInfo{code, op_name(code), supported.test(i)});
  }
  return out;
}

Result<OpcodeProbe> probe_supported_opcodes() {
  auto ring = PEPITA_TRY(Ring::create(RingOptions{.entries = 2}));
  return ring.probe();
}

}  // namespace pepita::io_uring
