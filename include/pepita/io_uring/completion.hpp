#pragma once
// A completion's result as a pepita Result: res >= 0 is the operation's value (bytes, a new fd,
// a count), a negative errno becomes an Error that names the opcode and says what to do.
//
//   const int fd = PEPITA_TRY(op_result(abi::Op::Socket, cqe.res));

#include <cstdint>

#include "pepita/abi/io_uring.hpp"
#include "pepita/error.hpp"

namespace pepita::io_uring {

/// `res` of a CQE of opcode `op`: the value when res >= 0, else an Error carrying the errno.
/// EINVAL: InvalidArgument (the kernel rejected an argument or a reserved field: fill the SQE
/// with the opcode's prep_* helper and check its arguments); ENOBUFS: ResourceExhausted (the
/// provided-buffer group ran dry: give buffers back and arm the request again); EOPNOTSUPP:
/// Unsupported; ECANCELED: Cancelled; others as Error::from_errno.
Result<std::int32_t> op_result(abi::Op op, std::int32_t res);

}  // namespace pepita::io_uring
