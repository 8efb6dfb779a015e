// CQE results as pepita errors, with what the user should do about each common errno.
#include "pepita/io_uring/completion.hpp"

#include <cerrno>
#include <string>

#include "pepita/core/format.hpp"
#include "pepita/io_uring/probe.hpp"

namespace pepita::io_uring {

Result<std::int32_t> op_result(abi::Op op, std::int32_t res) {
  if (res >= 0) return res;
  const int err = -res;
  const std::string what = pepita::fmt("io_uring {}", op_name(op));
  switch (err) {
    case EINVAL:
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("{}: EINVAL, the kernel rejected the request's arguments (a bad "
                              "flag, length, address size or a non-zero reserved field); fill the "
                              "SQE with prep_{} and check the values passed to it",
                              what, op_name(op)),
                  EINVAL);
    case ENOBUFS:
      return fail(ErrorCode::ResourceExhausted,
                  std::string(what).append(": ENOBUFS, the provided-buffer group has no free "
                                           "buffer; give used buffers back "
                                           "(BufferRing::recycle) and submit the request again"),
                  ENOBUFS);
    case EOPNOTSUPP:
      return fail(ErrorCode::Unsupported,
                  std::string(what).append(": EOPNOTSUPP, this file, socket or kernel does not "
                                           "support the operation; check Ring::supports and "
                                           "the fd's type"),
                  EOPNOTSUPP);
    case ECANCELED:
      return fail(ErrorCode::Cancelled,
                  std::string(what).append(": ECANCELED, the request was cancelled (a cancel "
                                           "request, a failed link or ring teardown)"),
                  ECANCELED);
    default: return fail_errno(err, what);
  }
}

}  // namespace pepita::io_uring
