// io_uring_register(2) wrappers: fixed buffers, fixed files (dense and sparse, with updates),
// eventfd notification and the opcode probe.
#include <cerrno>
#include <string>

#include "detail/sys.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring {

Result<void> Ring::register_op(abi::RegisterOp op, const void* arg, unsigned nr,
                               const char* what) const {
  for (;;) {
    const int r = sys::register_(fd_.get(), static_cast<unsigned>(op), arg, nr);
    if (r >= 0) return {};
    // Buffer/file (un)registration waits for in-flight users and can be interrupted.
    if (r == -EINTR) continue;
    return fail_errno(r, std::string("io_uring_register ") + what);
  }
}

Result<void> Ring::register_buffers(std::span<const iovec> buffers) {
  if (buffers.empty())
    return fail(ErrorCode::InvalidArgument, "io_uring register_buffers: no buffers given");
  return register_op(abi::RegisterOp::RegisterBuffers, buffers.data(),
                     static_cast<unsigned>(buffers.size()), "(buffers)");
}

Result<void> Ring::unregister_buffers() {
  return register_op(abi::RegisterOp::UnregisterBuffers, nullptr, 0, "(unregister buffers)");
}

Result<void> Ring::register_files(std::span<const int> fds) {
  if (fds.empty())
    return fail(
        ErrorCode::InvalidArgument,
        "io_uring register_files: no fds given (use register_files_sparse for empty slots)");
  return register_op(abi::RegisterOp::RegisterFiles, fds.data(), static_cast<unsigned>(fds.size()),
                     "(files)");
}

Result<void> Ring::register_files_sparse(std::uint32_t count) {
  if (count == 0)
    return fail(ErrorCode::InvalidArgument, "io_uring register_files_sparse: count is 0");
  abi::RsrcRegister reg{};
  reg.nr = count;
  reg.flags = abi::RSRC_REGISTER_SPARSE;
  return register_op(abi::RegisterOp::RegisterFiles2, &reg, sizeof(reg), "(sparse files)");
}

Result<unsigned> Ring::update_files(std::uint32_t offset, std::span<const int> fds) {
  if (fds.empty()) return 0u;
  abi::FilesUpdate up{};
  up.offset = offset;
  up.fds = reinterpret_cast<std::uintptr_t>(fds.data());  // SAFETY: pointer to integer for the ABI
  for (;;) {
    const int r =
        sys::register_(fd_.get(), static_cast<unsigned>(abi::RegisterOp::RegisterFilesUpdate), &up,
                       static_cast<unsigned>(fds.size()));
    if (r >= 0) return static_cast<unsigned>(r);
    if (r == -EINTR) continue;
    return fail_errno(r, "io_uring_register (files update at slot " + std::to_string(offset) +
                             "; is a file table registered and large enough?)");
  }
}

Result<void> Ring::unregister_files() {
  return register_op(abi::RegisterOp::UnregisterFiles, nullptr, 0, "(unregister files)");
}

Result<void> Ring::register_eventfd(int eventfd, bool async_only) {
  return register_op(
      async_only ? abi::RegisterOp::RegisterEventfdAsync : abi::RegisterOp::RegisterEventfd,
      &eventfd, 1, "(eventfd)");
}

Result<void> Ring::unregister_eventfd() {
  return register_op(abi::RegisterOp::UnregisterEventfd, nullptr, 0, "(unregister eventfd)");
}

Result<OpcodeProbe> Ring::probe() const {
  struct {
    abi::Probe header;
    abi::ProbeOp ops[256];
  } buf{};
  static_assert(sizeof(buf.header) == abi::PROBE_OPS_OFFSET);
  const int r =
      sys::register_(fd_.get(), static_cast<unsigned>(abi::RegisterOp::RegisterProbe), &buf, 256);
  if (r < 0) {
    if (r == -EINVAL)
      return fail(ErrorCode::Unsupported,
                  "io_uring_register PROBE: this kernel predates opcode probing (Linux 5.6)",
                  EINVAL);
    return fail_errno(r, "io_uring_register PROBE");
  }
  OpcodeProbe probe;
  probe.last_op = buf.header.last_op;
  for (unsigned i = 0; i < buf.header.ops_len && i < 256; ++i) {
    if ((buf.ops[i].flags & abi::PROBE_OP_SUPPORTED) != 0) probe.supported.set(buf.ops[i].op);
  }
  return probe;
}

bool Ring::supports(abi::Op op) const {
  if (probed_ == 0) {
    auto p = probe();
    probed_ = p ? 1 : 2;
    if (p) probe_bits_ = p->supported;
  }
  return probed_ == 1 && probe_bits_.test(static_cast<std::uint8_t>(op));
}

}  // namespace pepita::io_uring
