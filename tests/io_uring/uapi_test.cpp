// The kernel-named io_uring ABI (pepita/io_uring/uapi.hpp, the reference crate's IoUringSqe /
// IoUringCqe and IORING_OP_* / IOSQE_* / IORING_CQE_F_*): layout as the crate asserts it, every
// constant against the installed <linux/io_uring.h>, and the crate's factories run on a real ring.
#include "pepita/io_uring/uapi.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <type_traits>

// Each name once; expanded before the kernel header (our constants) and after it (its macros and
// enumerators), so the two tables line up entry by entry.
// clang-format off
#define PEPITA_IO_URING_NAMES(X) \
  X(IORING_OP_NOP) \
  X(IORING_OP_READV) \
  X(IORING_OP_WRITEV) \
  X(IORING_OP_FSYNC) \
  X(IORING_OP_READ_FIXED) \
  X(IORING_OP_WRITE_FIXED) \
  X(IORING_OP_POLL_ADD) \
  X(IORING_OP_POLL_REMOVE) \
  X(IORING_OP_SYNC_FILE_RANGE) \
  X(IORING_OP_SENDMSG) \
  X(IORING_OP_RECVMSG) \
  X(IORING_OP_TIMEOUT) \
  X(IORING_OP_TIMEOUT_REMOVE) \
  X(IORING_OP_ACCEPT) \
  X(IORING_OP_ASYNC_CANCEL) \
  X(IORING_OP_LINK_TIMEOUT) \
  X(IORING_OP_CONNECT) \
  X(IORING_OP_FALLOCATE) \
  X(IORING_OP_OPENAT) \
  X(IORING_OP_CLOSE) \
  X(IORING_OP_FILES_UPDATE) \
  X(IORING_OP_STATX) \
  X(IORING_OP_READ) \
  X(IORING_OP_WRITE) \
  X(IORING_OP_FADVISE) \
  X(IORING_OP_MADVISE) \
  X(IORING_OP_SEND) \
  X(IORING_OP_RECV) \
  X(IORING_OP_OPENAT2) \
  X(IORING_OP_EPOLL_CTL) \
  X(IORING_OP_SPLICE) \
  X(IORING_OP_PROVIDE_BUFFERS) \
  X(IORING_OP_REMOVE_BUFFERS) \
  X(IORING_OP_TEE) \
  X(IORING_OP_SHUTDOWN) \
  X(IORING_OP_RENAMEAT) \
  X(IORING_OP_UNLINKAT) \
  X(IORING_OP_MKDIRAT) \
  X(IORING_OP_SYMLINKAT) \
  X(IORING_OP_LINKAT) \
  X(IORING_OP_MSG_RING) \
  X(IORING_OP_FSETXATTR) \
  X(IORING_OP_SETXATTR) \
  X(IORING_OP_FGETXATTR) \
  X(IORING_OP_GETXATTR) \
  X(IORING_OP_SOCKET) \
  X(IORING_OP_URING_CMD) \
  X(IORING_OP_SEND_ZC) \
  X(IORING_OP_SENDMSG_ZC) \
  X(IORING_OP_READ_MULTISHOT) \
  X(IORING_OP_WAITID) \
  X(IORING_OP_FUTEX_WAIT) \
  X(IORING_OP_FUTEX_WAKE) \
  X(IORING_OP_FUTEX_WAITV) \
  X(IORING_OP_FIXED_FD_INSTALL) \
  X(IORING_OP_FTRUNCATE) \
  X(IORING_OP_BIND) \
  X(IORING_OP_LISTEN) \
  X(IOSQE_FIXED_FILE) \
  X(IOSQE_IO_DRAIN) \
  X(IOSQE_IO_LINK) \
  X(IOSQE_IO_HARDLINK) \
  X(IOSQE_ASYNC) \
  X(IOSQE_BUFFER_SELECT) \
  X(IOSQE_CQE_SKIP_SUCCESS) \
  X(IORING_CQE_F_BUFFER) \
  X(IORING_CQE_F_MORE) \
  X(IORING_CQE_F_SOCK_NONEMPTY) \
  X(IORING_CQE_F_NOTIF)
// clang-format on

namespace {
#define PEPITA_OURS(name) uint64_t{pepita::io_uring::name},
#define PEPITA_NAME(name) #name,
constexpr std::array kOurs{PEPITA_IO_URING_NAMES(PEPITA_OURS)};
constexpr std::array kNames{PEPITA_IO_URING_NAMES(PEPITA_NAME)};
}  // namespace

#include <pepita_test/kernel_uapi.hpp>  // must follow kOurs: it defines the names as macros

namespace {
#define PEPITA_KERNEL(name) static_cast<uint64_t>(name),
constexpr std::array kKernel{PEPITA_IO_URING_NAMES(PEPITA_KERNEL)};
}  // namespace

// After the 6.12 header: test_util.hpp pulls in the system's (older) <linux/io_uring.h>, whose
// include guard it now finds set.
#include "pepita/core/unique_fd.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

// The crate's ABI asserts, as written there (sizes, alignment, field offsets).
static_assert(sizeof(IoUringSqe) == 64, "IoUringSqe must be exactly 64 bytes");
static_assert(sizeof(IoUringCqe) == 16, "IoUringCqe must be exactly 16 bytes");
static_assert(alignof(IoUringSqe) >= 8 && alignof(IoUringCqe) >= 8);
static_assert(offsetof(IoUringSqe, opcode) == 0 && offsetof(IoUringSqe, flags) == 1);
static_assert(offsetof(IoUringSqe, ioprio) == 2 && offsetof(IoUringSqe, fd) == 4);
static_assert(offsetof(IoUringSqe, off) == 8 && offsetof(IoUringSqe, addr) == 16);
static_assert(offsetof(IoUringSqe, len) == 24);
static_assert(offsetof(IoUringSqe, rw_flags) == 28, "the crate's op_flags");
static_assert(offsetof(IoUringSqe, user_data) == 32 && offsetof(IoUringSqe, buf_index) == 40);
static_assert(offsetof(IoUringSqe, personality) == 42);
static_assert(offsetof(IoUringSqe, splice_fd_in) == 44 && offsetof(IoUringSqe, addr3) == 48);
static_assert(offsetof(IoUringCqe, user_data) == 0 && offsetof(IoUringCqe, res) == 8);
static_assert(offsetof(IoUringCqe, flags) == 12);
// The crate's methods did not cost the ABI structs their C layout.
static_assert(std::is_standard_layout_v<IoUringSqe> && std::is_trivially_copyable_v<IoUringSqe>);
static_assert(std::is_standard_layout_v<IoUringCqe> && std::is_trivially_copyable_v<IoUringCqe>);
static_assert(std::is_aggregate_v<IoUringSqe> && std::is_aggregate_v<IoUringCqe>);
static_assert(IoUringSqe::nop(5).is_nop() && IoUringSqe::uring_cmd(3, 1, 0).is_uring_cmd());

TEST(IoUringUapi, EveryConstantEqualsTheKernelHeaders) {
  for (size_t i = 0; i < kNames.size(); ++i)
    EXPECT_EQ(kOurs[i], kKernel[i]) << kNames[i] << " differs from <linux/io_uring.h>";
  EXPECT_EQ(IORING_OP_URING_CMD, 46);
  // The installed header is 6.12's: the opcodes 6.15..6.18 added continue where its LAST was,
  // and ours end at 6.18's LAST (63) — the running kernel's probe checks them (PrepTable).
  EXPECT_EQ(IORING_OP_RECV_ZC, static_cast<uint8_t>(::IORING_OP_LAST));
  EXPECT_EQ(IORING_OP_LAST, IORING_OP_PIPE + 1);
}

TEST(IoUringUapi, FactoriesFillTheFieldsTheKernelReads) {
  const IoUringSqe cmd = IoUringSqe::uring_cmd(7, 0xc0207504u, 99);
  EXPECT_EQ(cmd.opcode, IORING_OP_URING_CMD);
  EXPECT_EQ(cmd.fd, 7);
  EXPECT_EQ(cmd.cmd_op, 0xc0207504u);  // byte 8, where the kernel reads it
  EXPECT_EQ(cmd.rw_flags, 0u);
  EXPECT_EQ(cmd.user_data, 99u);
  IoUringSqe rd = IoUringSqe::read(4, 0x1000, 512, 4096, 1);
  EXPECT_EQ(rd.opcode, IORING_OP_READ);
  EXPECT_EQ(rd.addr, 0x1000u);
  EXPECT_EQ(rd.len, 512u);
  EXPECT_EQ(rd.off, 4096u);
  EXPECT_EQ(rd.flags, 0u);
  rd.set_async();
  rd.set_link();
  rd.set_fixed_file();
  EXPECT_EQ(rd.flags, IOSQE_ASYNC | IOSQE_IO_LINK | IOSQE_FIXED_FILE);
  EXPECT_FALSE(rd.is_nop());
  const IoUringSqe blank{};
  EXPECT_TRUE(blank.is_nop());  // all-zero: opcode 0
}

TEST(IoUringUapi, CqePredicatesReadResAndFlags) {
  const IoUringCqe ok{1, 4096, IORING_CQE_F_MORE};
  EXPECT_TRUE(ok.is_success());
  EXPECT_FALSE(ok.is_error());
  EXPECT_EQ(ok.error_number(), 0);
  EXPECT_EQ(cqe_result(ok), 4096u);
  EXPECT_TRUE(ok.has_more());
  const IoUringCqe bad{2, -EBADF, 0};
  EXPECT_TRUE(bad.is_error());
  EXPECT_EQ(bad.error_number(), EBADF);
  EXPECT_EQ(cqe_result(bad), std::nullopt);
  EXPECT_FALSE(bad.has_more());
}

TEST(IoUringUapi, CrateEntriesRunOnARealRing) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  const int raw = ::memfd_create("pepita-uapi", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd file(raw);
  char out[512];
  std::memset(out, 'p', sizeof out);
  char in[512] = {};
  const auto out_addr = reinterpret_cast<uint64_t>(out);
  const auto in_addr = reinterpret_cast<uint64_t>(in);

  *ring.get_sqe() = IoUringSqe::nop(10);
  // A linked write then read of the same bytes: the read starts only after the write succeeded.
  IoUringSqe wr = IoUringSqe::write(file.get(), out_addr, sizeof out, 0, 11);
  wr.set_link();
  *ring.get_sqe() = wr;
  *ring.get_sqe() = IoUringSqe::read(file.get(), in_addr, sizeof in, 0, 12);
  ASSERT_TRUE(ring.submit_and_wait(3));
  std::array<IoUringCqe, 3> seen{};
  size_t n = 0;
  while (n < seen.size()) {
    const IoUringCqe* cqe = ring.peek_cqe();
    if (cqe == nullptr) {
      ASSERT_TRUE(ring.submit_and_wait(1));
      continue;
    }
    seen[n++] = *cqe;
    ring.cqe_seen();
  }
  for (const IoUringCqe& cqe : seen) {
    EXPECT_TRUE(cqe.is_success()) << "user_data " << cqe.user_data << " res " << cqe.res;
    const uint32_t expected = cqe.user_data == 10 ? 0u : static_cast<uint32_t>(sizeof out);
    EXPECT_EQ(cqe_result(cqe), expected) << "user_data " << cqe.user_data;
  }
  EXPECT_EQ(std::memcmp(in, out, sizeof out), 0);
}

TEST(IoUringUapi, KernelRefusalsArriveAsErrorCqes) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  char buf[64];
  *ring.get_sqe() = IoUringSqe::read(-1, reinterpret_cast<uint64_t>(buf), sizeof buf, 0, 20);
  const test::Done bad_fd = test::submit_and_reap_one(ring);
  EXPECT_EQ(bad_fd.res, -EBADF);
  // A uring_cmd to a file whose driver has no ->uring_cmd (a memfd) is refused, not crashed.
  const int raw = ::memfd_create("pepita-uapi-cmd", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd file(raw);
  *ring.get_sqe() = IoUringSqe::uring_cmd(file.get(), 0xc0207504u, 21);
  const test::Done no_cmd = test::submit_and_reap_one(ring);
  const IoUringCqe cqe{no_cmd.user_data, no_cmd.res, no_cmd.flags};
  EXPECT_TRUE(cqe.is_error());
  EXPECT_EQ(cqe.error_number(), EOPNOTSUPP);
}

}  // namespace
}  // namespace pepita::io_uring
