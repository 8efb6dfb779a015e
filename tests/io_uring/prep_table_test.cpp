// Every opcode of abi::Op has a prep helper: a table maps each opcode to the helper that writes
// it, so an opcode added to abi::Op without a helper (and a row here) fails OpcodeTable. Plus the
// field layout of the newer helpers, as the kernel's io_uring/*.c prep functions read them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/openat2.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstring>
#include <string>

#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/probe.hpp"

namespace pepita::io_uring {
namespace {

struct PrepRow {
  abi::Op op;
  void (*prep)(abi::Sqe&);
};

// Arguments are placeholders: the table checks which opcode each helper writes.
char g_buf[64];
iovec g_iov{g_buf, sizeof g_buf};
msghdr g_msg{};
abi::KernelTimespec g_ts{};
sockaddr g_addr{};
socklen_t g_addrlen = sizeof g_addr;
int g_fds[2] = {-1, -1};
epoll_event g_ev{};
open_how g_how{};
abi::FutexWaitv g_waitv{};
std::uint32_t g_futex = 0;

constexpr std::array kTable{
    PrepRow{abi::Op::Nop, [](abi::Sqe& s) { prep_nop(s); }},
    PrepRow{abi::Op::Readv, [](abi::Sqe& s) { prep_readv(s, 3, &g_iov, 1, 0); }},
    PrepRow{abi::Op::Writev, [](abi::Sqe& s) { prep_writev(s, 3, &g_iov, 1, 0); }},
    PrepRow{abi::Op::Fsync, [](abi::Sqe& s) { prep_fsync(s, 3); }},
    PrepRow{abi::Op::ReadFixed, [](abi::Sqe& s) { prep_read_fixed(s, 3, g_buf, 8, 0, 0); }},
    PrepRow{abi::Op::WriteFixed, [](abi::Sqe& s) { prep_write_fixed(s, 3, g_buf, 8, 0, 0); }},
    PrepRow{abi::Op::PollAdd, [](abi::Sqe& s) { prep_poll_add(s, 3, 1); }},
    PrepRow{abi::Op::PollRemove, [](abi::Sqe& s) { prep_poll_remove(s, 1); }},
    PrepRow{abi::Op::SyncFileRange, [](abi::Sqe& s) { prep_sync_file_range(s, 3, 8, 0, 0); }},
    PrepRow{abi::Op::Sendmsg, [](abi::Sqe& s) { prep_sendmsg(s, 3, &g_msg, 0); }},
    PrepRow{abi::Op::Recvmsg, [](abi::Sqe& s) { prep_recvmsg(s, 3, &g_msg, 0); }},
    PrepRow{abi::Op::Timeout, [](abi::Sqe& s) { prep_timeout(s, &g_ts, 0, 0); }},
    PrepRow{abi::Op::TimeoutRemove, [](abi::Sqe& s) { prep_timeout_remove(s, 1, 0); }},
    PrepRow{abi::Op::Accept, [](abi::Sqe& s) { prep_accept(s, 3, &g_addr, &g_addrlen, 0); }},
    PrepRow{abi::Op::AsyncCancel, [](abi::Sqe& s) { prep_cancel(s, 1, 0); }},
    PrepRow{abi::Op::LinkTimeout, [](abi::Sqe& s) { prep_link_timeout(s, &g_ts, 0); }},
    PrepRow{abi::Op::Connect, [](abi::Sqe& s) { prep_connect(s, 3, &g_addr, g_addrlen); }},
    PrepRow{abi::Op::Fallocate, [](abi::Sqe& s) { prep_fallocate(s, 3, 0, 0, 8); }},
    PrepRow{abi::Op::Openat, [](abi::Sqe& s) { prep_openat(s, AT_FDCWD, "x", O_RDONLY, 0); }},
    PrepRow{abi::Op::Close, [](abi::Sqe& s) { prep_close(s, 3); }},
    PrepRow{abi::Op::FilesUpdate, [](abi::Sqe& s) { prep_files_update(s, g_fds, 2, 0); }},
    PrepRow{abi::Op::Statx, [](abi::Sqe& s) { prep_statx(s, AT_FDCWD, "x", 0, 0, nullptr); }},
    PrepRow{abi::Op::Read, [](abi::Sqe& s) { prep_read(s, 3, g_buf, 8, 0); }},
    PrepRow{abi::Op::Write, [](abi::Sqe& s) { prep_write(s, 3, g_buf, 8, 0); }},
    PrepRow{abi::Op::Fadvise, [](abi::Sqe& s) { prep_fadvise(s, 3, 0, 8, 0); }},
    PrepRow{abi::Op::Madvise, [](abi::Sqe& s) { prep_madvise(s, g_buf, 8, 0); }},
    PrepRow{abi::Op::Send, [](abi::Sqe& s) { prep_send(s, 3, g_buf, 8, 0); }},
    PrepRow{abi::Op::Recv, [](abi::Sqe& s) { prep_recv(s, 3, g_buf, 8, 0); }},
    PrepRow{abi::Op::Openat2,
            [](abi::Sqe& s) { prep_openat2(s, AT_FDCWD, "x", &g_how, sizeof g_how); }},
    PrepRow{abi::Op::EpollCtl, [](abi::Sqe& s) { prep_epoll_ctl(s, 3, 4, EPOLL_CTL_ADD, &g_ev); }},
    PrepRow{abi::Op::Splice, [](abi::Sqe& s) { prep_splice(s, 3, -1, 4, -1, 8, 0); }},
    PrepRow{abi::Op::ProvideBuffers,
            [](abi::Sqe& s) { prep_provide_buffers(s, g_buf, 8, 8, 1, 0); }},
    PrepRow{abi::Op::RemoveBuffers, [](abi::Sqe& s) { prep_remove_buffers(s, 8, 1); }},
    PrepRow{abi::Op::Tee, [](abi::Sqe& s) { prep_tee(s, 3, 4, 8, 0); }},
    PrepRow{abi::Op::Shutdown, [](abi::Sqe& s) { prep_shutdown(s, 3, SHUT_WR); }},
    PrepRow{abi::Op::Renameat,
            [](abi::Sqe& s) { prep_renameat(s, AT_FDCWD, "a", AT_FDCWD, "b", 0); }},
    PrepRow{abi::Op::Unlinkat, [](abi::Sqe& s) { prep_unlinkat(s, AT_FDCWD, "a", 0); }},
    PrepRow{abi::Op::Mkdirat, [](abi::Sqe& s) { prep_mkdirat(s, AT_FDCWD, "a", 0700); }},
    PrepRow{abi::Op::Symlinkat, [](abi::Sqe& s) { prep_symlinkat(s, "a", AT_FDCWD, "b"); }},
    PrepRow{abi::Op::Linkat,
            [](abi::Sqe& s) { prep_linkat(s, AT_FDCWD, "a", AT_FDCWD, "b", 0); }},
    PrepRow{abi::Op::MsgRing, [](abi::Sqe& s) { prep_msg_ring(s, 3, 0, 1, 0); }},
    PrepRow{abi::Op::Fsetxattr,
            [](abi::Sqe& s) { prep_fsetxattr(s, 3, "user.a", g_buf, 8, 0); }},
    PrepRow{abi::Op::Setxattr,
            [](abi::Sqe& s) { prep_setxattr(s, "p", "user.a", g_buf, 8, 0); }},
    PrepRow{abi::Op::Fgetxattr, [](abi::Sqe& s) { prep_fgetxattr(s, 3, "user.a", g_buf, 8); }},
    PrepRow{abi::Op::Getxattr, [](abi::Sqe& s) { prep_getxattr(s, "p", "user.a", g_buf, 8); }},
    PrepRow{abi::Op::Socket, [](abi::Sqe& s) { prep_socket(s, AF_INET, SOCK_STREAM, 0); }},
    PrepRow{abi::Op::UringCmd, [](abi::Sqe& s) { prep_uring_cmd(s, 3, 0); }},
    PrepRow{abi::Op::SendZc, [](abi::Sqe& s) { prep_send_zc(s, 3, g_buf, 8, 0); }},
    PrepRow{abi::Op::SendmsgZc, [](abi::Sqe& s) { prep_sendmsg_zc(s, 3, &g_msg, 0); }},
    PrepRow{abi::Op::ReadMultishot, [](abi::Sqe& s) { prep_read_multishot(s, 3, 0, 0, 1); }},
    PrepRow{abi::Op::Waitid, [](abi::Sqe& s) { prep_waitid(s, P_ALL, 0, nullptr, WEXITED); }},
    PrepRow{abi::Op::FutexWait,
            [](abi::Sqe& s) {
              prep_futex_wait(s, &g_futex, 0, abi::futex2::BITSET_MATCH_ANY,
                              abi::futex2::SIZE_U32);
            }},
    PrepRow{abi::Op::FutexWake,
            [](abi::Sqe& s) {
              prep_futex_wake(s, &g_futex, 1, abi::futex2::BITSET_MATCH_ANY,
                              abi::futex2::SIZE_U32);
            }},
    PrepRow{abi::Op::FutexWaitv, [](abi::Sqe& s) { prep_futex_waitv(s, &g_waitv, 1); }},
    PrepRow{abi::Op::FixedFdInstall, [](abi::Sqe& s) { prep_fixed_fd_install(s, 0); }},
    PrepRow{abi::Op::Ftruncate, [](abi::Sqe& s) { prep_ftruncate(s, 3, 8); }},
    PrepRow{abi::Op::Bind, [](abi::Sqe& s) { prep_bind(s, 3, &g_addr, g_addrlen); }},
    PrepRow{abi::Op::Listen, [](abi::Sqe& s) { prep_listen(s, 3, 8); }},
    PrepRow{abi::Op::RecvZc, [](abi::Sqe& s) { prep_recv_zc(s, 3, 0, 0); }},
    PrepRow{abi::Op::EpollWait, [](abi::Sqe& s) { prep_epoll_wait(s, 3, &g_ev, 1); }},
    PrepRow{abi::Op::ReadvFixed, [](abi::Sqe& s) { prep_readv_fixed(s, 3, &g_iov, 1, 0, 0, 0); }},
    PrepRow{abi::Op::WritevFixed,
            [](abi::Sqe& s) { prep_writev_fixed(s, 3, &g_iov, 1, 0, 0, 0); }},
    PrepRow{abi::Op::Pipe, [](abi::Sqe& s) { prep_pipe(s, g_fds, O_CLOEXEC); }},
};

// An SQE full of stale bytes, as a reused ring slot holds.
abi::Sqe stale_sqe() {
  abi::Sqe s;
  std::memset(&s, 0xab, sizeof s);
  return s;
}

TEST(PrepTable, EveryOpcodeOfAbiOpHasExactlyOneHelper) {
  constexpr auto kLast = static_cast<unsigned>(abi::Op::Last);
  std::array<int, kLast> rows{};
  for (const PrepRow& row : kTable) {
    const auto op = static_cast<unsigned>(row.op);
    ASSERT_LT(op, kLast);
    ++rows[op];
  }
  for (unsigned op = 0; op < kLast; ++op)
    EXPECT_EQ(rows[op], 1) << "abi::Op " << op_name(static_cast<std::uint8_t>(op))
                           << " needs one prep helper (and one row in kTable)";
  EXPECT_EQ(kTable.size(), kLast);
}

TEST(PrepTable, EachHelperWritesItsOpcodeAndClearsStaleBytes) {
  for (const PrepRow& row : kTable) {
    abi::Sqe s = stale_sqe();
    row.prep(s);
    EXPECT_EQ(s.opcode, static_cast<std::uint8_t>(row.op)) << op_name(row.op);
    EXPECT_EQ(s.personality, 0) << op_name(row.op);
    // Only BUFFER_SELECT (multishot reads) and FIXED_FILE (fixed_fd_install) are set by helpers.
    EXPECT_EQ(s.flags & ~(abi::sqe_flags::BUFFER_SELECT | abi::sqe_flags::FIXED_FILE), 0)
        << op_name(row.op);
  }
}

TEST(PrepTable, TheLastOpcodeIsLinux618s) {
  EXPECT_EQ(static_cast<unsigned>(abi::Op::Last), 63u);
  EXPECT_EQ(op_name(abi::Op::Pipe), "pipe");
  EXPECT_EQ(op_name(abi::Op::RecvZc), "recv_zc");
  EXPECT_EQ(op_name(abi::Op::EpollWait), "epoll_wait");
}

TEST(PrepLayout, SocketPutsDomainInFdTypeInOffProtocolInLen) {
  abi::Sqe s = stale_sqe();
  prep_socket(s, AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 17);
  EXPECT_EQ(s.fd, AF_INET6);
  EXPECT_EQ(s.off, static_cast<std::uint64_t>(SOCK_DGRAM | SOCK_CLOEXEC));
  EXPECT_EQ(s.len, 17u);
  EXPECT_EQ(s.rw_flags, 0u);  // the kernel refuses non-zero rw_flags
  EXPECT_EQ(s.file_index, 0u);
  prep_socket_direct(s, AF_INET, SOCK_STREAM, 0, 4);
  EXPECT_EQ(s.file_index, 5u);  // slot + 1
  prep_socket_direct(s, AF_INET, SOCK_STREAM, 0, abi::FILE_INDEX_ALLOC);
  EXPECT_EQ(s.file_index, abi::FILE_INDEX_ALLOC);
}

TEST(PrepLayout, FutexCarriesFlagsInFdValueInAddr2MaskInAddr3) {
  abi::Sqe s = stale_sqe();
  prep_futex_wait(s, &g_futex, 7, 0xff, abi::futex2::SIZE_U32 | abi::futex2::PRIVATE);
  EXPECT_EQ(s.fd, static_cast<int>(abi::futex2::SIZE_U32 | abi::futex2::PRIVATE));
  EXPECT_EQ(s.addr, reinterpret_cast<std::uintptr_t>(&g_futex));
  EXPECT_EQ(s.addr2, 7u);
  EXPECT_EQ(s.addr3, 0xffu);
  EXPECT_EQ(s.futex_flags, 0u);
  EXPECT_EQ(s.len, 0u);
}

TEST(PrepLayout, WaitidCarriesIdtypeInLenOptionsInFileIndexInfopInAddr2) {
  abi::Sqe s = stale_sqe();
  siginfo_t info{};
  prep_waitid(s, P_PID, 1234, &info, WEXITED);
  EXPECT_EQ(s.fd, 1234);
  EXPECT_EQ(s.len, static_cast<std::uint32_t>(P_PID));
  EXPECT_EQ(s.file_index, static_cast<std::uint32_t>(WEXITED));
  EXPECT_EQ(s.addr2, reinterpret_cast<std::uintptr_t>(&info));
  EXPECT_EQ(s.addr, 0u);
}

TEST(PrepLayout, RenameatAndLinkatCarryTheNewDirfdInLenAndPathInAddr2) {
  abi::Sqe s = stale_sqe();
  const char* from = "a";
  const char* to = "b";
  prep_renameat(s, 5, from, 6, to, RENAME_NOREPLACE);
  EXPECT_EQ(s.fd, 5);
  EXPECT_EQ(s.len, 6u);
  EXPECT_EQ(s.addr, reinterpret_cast<std::uintptr_t>(from));
  EXPECT_EQ(s.addr2, reinterpret_cast<std::uintptr_t>(to));
  EXPECT_EQ(s.rename_flags, static_cast<std::uint32_t>(RENAME_NOREPLACE));
}

TEST(PrepLayout, MultishotRecvSelectsABufferGroup) {
  abi::Sqe s = stale_sqe();
  prep_recv_multishot(s, 9, 0, 42);
  EXPECT_EQ(s.flags, abi::sqe_flags::BUFFER_SELECT);
  EXPECT_EQ(s.buf_group, 42);
  EXPECT_EQ(s.ioprio, abi::recvsend_flags::RECV_MULTISHOT);
  EXPECT_EQ(s.addr, 0u);
  EXPECT_EQ(s.len, 0u);
}

TEST(PrepLayout, FixedFdInstallSetsFixedFile) {
  abi::Sqe s = stale_sqe();
  prep_fixed_fd_install(s, 3, abi::FIXED_FD_NO_CLOEXEC);
  EXPECT_EQ(s.fd, 3);
  EXPECT_EQ(s.flags, abi::sqe_flags::FIXED_FILE);
  EXPECT_EQ(s.install_fd_flags, abi::FIXED_FD_NO_CLOEXEC);
}

}  // namespace
}  // namespace pepita::io_uring
