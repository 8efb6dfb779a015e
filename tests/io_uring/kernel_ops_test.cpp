// The opcodes after the first wave (sockets, directory ops, futexes, waitid, ftruncate, send_zc,
// pipe, epoll, fixed_fd_install) against this kernel, each result checked; an opcode the
// independent probe says the kernel lacks is a printed skip (PEPITA_REQUIRE_OP). Bad input comes
// back as a pepita error through op_result.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "pepita/io_uring/completion.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using test::Done;

// A temp directory removed with its contents at the end of the test.
struct TempDir {
  std::string path;
  UniqueFd fd;
  TempDir() {
    std::string tmpl = "/tmp/pepita_iou_dir_XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path = tmpl;
      fd = UniqueFd(::open(path.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    }
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

bool exists_at(int dirfd, const char* name) {
  struct stat st {};
  return ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

TEST(KernelOps, AbiOpCoversEveryOpcodeThisKernelLists) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  auto probe = ring.probe();
  ASSERT_TRUE(probe) << probe.error().to_string();
  EXPECT_LT(probe->last_op, static_cast<std::uint8_t>(abi::Op::Last))
      << "the kernel lists opcode " << int{probe->last_op}
      << " that abi::Op (and the prep helpers) do not have yet";
  // Ring::supports agrees with the independent raw probe on every opcode we know.
  for (unsigned op = 0; op < static_cast<unsigned>(abi::Op::Last); ++op)
    EXPECT_EQ(ring.supports(static_cast<abi::Op>(op)), test::kernel_opcodes().test(op))
        << op_name(static_cast<std::uint8_t>(op));
}

TEST(KernelOps, SocketBindListenThenAClientConnects) {
  PEPITA_REQUIRE_OP(abi::Op::Listen);
  PEPITA_REQUIRE_OP(abi::Op::Bind);
  PEPITA_REQUIRE_OP(abi::Op::Socket);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  prep_socket(*ring.get_sqe(), AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const Done s = test::submit_and_reap_one(ring);
  ASSERT_GE(s.res, 0) << std::strerror(-s.res);
  UniqueFd listener(s.res);

  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
  prep_bind(*ring.get_sqe(), listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  prep_listen(*ring.get_sqe(), listener.get(), 4);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);

  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  EXPECT_NE(a.sin_port, 0) << "bind to port 0 got a port";
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
      << "the ring's listen must make the socket accept connections";
  prep_accept(*ring.get_sqe(), listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  const Done acc = test::submit_and_reap_one(ring);
  ASSERT_GE(acc.res, 0);
  ::close(acc.res);
}

TEST(KernelOps, SocketWithABadDomainIsAClearError) {
  PEPITA_REQUIRE_OP(abi::Op::Socket);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  prep_socket(*ring.get_sqe(), 12345, SOCK_STREAM, 0);
  const Done d = test::submit_and_reap_one(ring);
  ASSERT_LT(d.res, 0);
  auto r = op_result(abi::Op::Socket, d.res);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("io_uring socket"), std::string::npos) << r.error().message();
}

TEST(KernelOps, ShutdownWriteSideGivesThePeerEndOfStream) {
  PEPITA_REQUIRE_OP(abi::Op::Shutdown);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  prep_shutdown(*ring.get_sqe(), a.get(), SHUT_WR);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  char c;
  EXPECT_EQ(::read(b.get(), &c, 1), 0);
}

TEST(KernelOps, DirectoryOpsOnATempDir) {
  PEPITA_REQUIRE_OP(abi::Op::Mkdirat);
  PEPITA_REQUIRE_OP(abi::Op::Linkat);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  TempDir dir;
  ASSERT_TRUE(dir.fd);
  const int d = dir.fd.get();

  prep_mkdirat(*ring.get_sqe(), d, "sub", 0700);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  struct stat st {};
  ASSERT_EQ(::fstatat(d, "sub", &st, 0), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  UniqueFd f(::openat(d, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_TRUE(f);
  prep_linkat(*ring.get_sqe(), d, "file", d, "hard", 0);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  prep_symlinkat(*ring.get_sqe(), "file", d, "soft");
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  char target[16] = {};
  EXPECT_EQ(::readlinkat(d, "soft", target, sizeof target - 1), 4);
  EXPECT_STREQ(target, "file");
  prep_renameat(*ring.get_sqe(), d, "hard", d, "renamed", 0);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  EXPECT_FALSE(exists_at(d, "hard"));
  ASSERT_EQ(::fstatat(d, "renamed", &st, 0), 0);
  EXPECT_EQ(st.st_nlink, 2u) << "renamed is the hard link of file";

  // RENAME_NOREPLACE onto an existing name: the kernel's EEXIST as AlreadyExists.
  prep_renameat(*ring.get_sqe(), d, "renamed", d, "file", RENAME_NOREPLACE);
  const Done clash = test::submit_and_reap_one(ring);
  EXPECT_EQ(clash.res, -EEXIST);
  EXPECT_EQ(op_result(abi::Op::Renameat, clash.res).error().code(), ErrorCode::AlreadyExists);

  prep_unlinkat(*ring.get_sqe(), d, "sub", AT_REMOVEDIR);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  for (const char* name : {"renamed", "soft", "file"}) {
    prep_unlinkat(*ring.get_sqe(), d, name, 0);
    ASSERT_EQ(test::submit_and_reap_one(ring).res, 0) << name;
    EXPECT_FALSE(exists_at(d, name)) << name;
  }
  // Unlinking what is gone: NotFound.
  prep_unlinkat(*ring.get_sqe(), d, "file", 0);
  const Done gone = test::submit_and_reap_one(ring);
  EXPECT_EQ(op_result(abi::Op::Unlinkat, gone.res).error().code(), ErrorCode::NotFound);
}

TEST(KernelOps, FtruncateSetsTheSize) {
  PEPITA_REQUIRE_OP(abi::Op::Ftruncate);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  UniqueFd f = test::temp_file();
  ASSERT_TRUE(f);
  prep_ftruncate(*ring.get_sqe(), f.get(), 12345);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(f.get(), &st), 0);
  EXPECT_EQ(st.st_size, 12345);
}

TEST(KernelOps, FtruncateToANegativeLengthIsInvalidArgumentSayingWhatToDo) {
  PEPITA_REQUIRE_OP(abi::Op::Ftruncate);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  UniqueFd f = test::temp_file();
  ASSERT_TRUE(f);
  prep_ftruncate(*ring.get_sqe(), f.get(), -1);
  const Done d = test::submit_and_reap_one(ring);
  ASSERT_EQ(d.res, -EINVAL);
  auto r = op_result(abi::Op::Ftruncate, d.res);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(r.error().sys_errno(), EINVAL);
  EXPECT_NE(r.error().message().find("prep_ftruncate"), std::string::npos) << r.error().message();
}

TEST(KernelOps, FutexWakeWakesAWaiterOnTheRing) {
  PEPITA_REQUIRE_OP(abi::Op::FutexWait);
  PEPITA_REQUIRE_OP(abi::Op::FutexWake);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  alignas(4) std::uint32_t word = 0;
  const std::uint32_t flags = abi::futex2::SIZE_U32 | abi::futex2::PRIVATE;
  abi::Sqe* w = ring.get_sqe();
  prep_futex_wait(*w, &word, 0, abi::futex2::BITSET_MATCH_ANY, flags);
  w->user_data = 1;
  ASSERT_TRUE(ring.submit());
  EXPECT_EQ(ring.cq_ready(), 0u) << "the wait must block while the word holds 0";
  abi::Sqe* k = ring.get_sqe();
  prep_futex_wake(*k, &word, 1, abi::futex2::BITSET_MATCH_ANY, flags);
  k->user_data = 2;
  const std::vector<Done> done = test::reap(ring, 2);
  ASSERT_EQ(done.size(), 2u);
  for (const Done& d : done) {
    if (d.user_data == 1) {
      EXPECT_EQ(d.res, 0) << "the waiter was woken";
    } else {
      EXPECT_EQ(d.res, 1) << "the wake woke one waiter";
    }
  }
  // A wait on a value the word does not hold returns at once with EAGAIN.
  prep_futex_wait(*ring.get_sqe(), &word, 5, abi::futex2::BITSET_MATCH_ANY, flags);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, -EAGAIN);
}

TEST(KernelOps, FutexWaitvReturnsTheIndexOfTheWokenFutex) {
  PEPITA_REQUIRE_OP(abi::Op::FutexWaitv);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  alignas(4) std::uint32_t words[2] = {0, 0};
  const std::uint32_t flags = abi::futex2::SIZE_U32 | abi::futex2::PRIVATE;
  abi::FutexWaitv v[2]{};
  for (int i = 0; i < 2; ++i) {
    v[i].uaddr = reinterpret_cast<std::uintptr_t>(&words[i]);
    v[i].val = 0;
    v[i].flags = flags;
  }
  abi::Sqe* w = ring.get_sqe();
  prep_futex_waitv(*w, v, 2);
  w->user_data = 1;
  ASSERT_TRUE(ring.submit());
  abi::Sqe* k = ring.get_sqe();
  prep_futex_wake(*k, &words[1], 1, abi::futex2::BITSET_MATCH_ANY, flags);
  k->user_data = 2;
  const std::vector<Done> done = test::reap(ring, 2);
  ASSERT_EQ(done.size(), 2u);
  for (const Done& d : done) {
    if (d.user_data == 1) {
      EXPECT_EQ(d.res, 1) << "futex 1 of the vector was woken";
    } else {
      EXPECT_EQ(d.res, 1) << "the wake woke the waitv";
    }
  }
}

TEST(KernelOps, WaitidReapsAnExitedChild) {
  PEPITA_REQUIRE_OP(abi::Op::Waitid);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(7);
  siginfo_t info{};
  prep_waitid(*ring.get_sqe(), P_PID, pid, &info, WEXITED);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  EXPECT_EQ(info.si_pid, pid);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(info.si_status, 7);
}

TEST(KernelOps, SendZcPostsTheByteCountThenANotification) {
  PEPITA_REQUIRE_OP(abi::Op::SendZc);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  sockaddr_in a{};
  UniqueFd listener = test::tcp_listener(&a);
  ASSERT_TRUE(listener);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);

  std::vector<char> payload(64 * 1024);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13);
  abi::Sqe* s = ring.get_sqe();
  prep_send_zc(*s, client.get(), payload.data(), payload.size(), 0);
  s->user_data = 9;
  const std::vector<Done> done = test::reap(ring, 2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].user_data, 9u);
  EXPECT_EQ(done[0].res, static_cast<int>(payload.size()));
  EXPECT_NE(done[0].flags & abi::cqe_flags::MORE, 0u) << "a notification follows";
  EXPECT_EQ(done[1].user_data, 9u);
  EXPECT_NE(done[1].flags & abi::cqe_flags::NOTIF, 0u) << "the second CQE is the notification";
  EXPECT_EQ(done[1].flags & abi::cqe_flags::MORE, 0u);

  std::vector<char> got(payload.size());
  std::size_t n = 0;
  while (n < got.size()) {
    const ssize_t r = ::recv(server.get(), got.data() + n, got.size() - n, 0);
    ASSERT_GT(r, 0);
    n += static_cast<std::size_t>(r);
  }
  EXPECT_EQ(got, payload);
}

TEST(KernelOps, SendZcOnAUnixSocketIsUnsupportedWithAHint) {
  PEPITA_REQUIRE_OP(abi::Op::SendZc);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  char byte = 'x';
  prep_send_zc(*ring.get_sqe(), a.get(), &byte, 1, 0);
  const Done d = test::submit_and_reap_one(ring);
  ASSERT_EQ(d.res, -EOPNOTSUPP);
  auto r = op_result(abi::Op::SendZc, d.res);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(r.error().message().find("send_zc"), std::string::npos);
}

TEST(KernelOps, PipeCreatesAConnectedPair) {
  PEPITA_REQUIRE_OP(abi::Op::Pipe);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  int fds[2] = {-1, -1};
  prep_pipe(*ring.get_sqe(), fds, O_CLOEXEC);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  UniqueFd r(fds[0]), w(fds[1]);
  ASSERT_TRUE(r && w);
  ASSERT_EQ(::write(w.get(), "ok", 2), 2);
  char buf[2];
  ASSERT_EQ(::read(r.get(), buf, 2), 2);
  EXPECT_EQ(std::string(buf, 2), "ok");
}

TEST(KernelOps, EpollCtlThenEpollWaitReportsAReadableFd) {
  PEPITA_REQUIRE_OP(abi::Op::EpollCtl);
  PEPITA_REQUIRE_OP(abi::Op::EpollWait);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 77;
  prep_epoll_ctl(*ring.get_sqe(), ep.get(), r.get(), EPOLL_CTL_ADD, &ev);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0);
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  std::array<epoll_event, 4> out{};
  prep_epoll_wait(*ring.get_sqe(), ep.get(), out.data(), static_cast<int>(out.size()));
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 1);
  EXPECT_EQ(out[0].data.u64, 77u);
  EXPECT_NE(out[0].events & EPOLLIN, 0u);
}

TEST(KernelOps, DirectSocketThenFixedFdInstallGivesANormalFd) {
  PEPITA_REQUIRE_OP(abi::Op::FixedFdInstall);
  PEPITA_REQUIRE_OP(abi::Op::Socket);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  ASSERT_TRUE(ring.register_files_sparse(2));
  prep_socket_direct(*ring.get_sqe(), AF_UNIX, SOCK_STREAM, 0, 1);
  ASSERT_EQ(test::submit_and_reap_one(ring).res, 0) << "a direct socket completes with 0";
  prep_fixed_fd_install(*ring.get_sqe(), 1);
  const Done d = test::submit_and_reap_one(ring);
  ASSERT_GE(d.res, 0) << std::strerror(-d.res);
  UniqueFd fd(d.res);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_NE(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "installed O_CLOEXEC by default";
}

TEST(KernelOps, FadviseAndMadviseSucceed) {
  PEPITA_REQUIRE_OP(abi::Op::Fadvise);
  PEPITA_REQUIRE_OP(abi::Op::Madvise);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  UniqueFd f = test::temp_file();
  ASSERT_TRUE(f);
  prep_fadvise(*ring.get_sqe(), f.get(), 0, 4096, POSIX_FADV_SEQUENTIAL);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
  auto m = Mapping::anonymous(1 << 16, "madvise test");
  ASSERT_TRUE(m);
  prep_madvise(*ring.get_sqe(), m->bytes(), 1 << 16, MADV_WILLNEED);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
}

TEST(KernelOps, OpResultPassesAValueThrough) {
  auto r = op_result(abi::Op::Read, 42);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  auto nobufs = op_result(abi::Op::Recv, -ENOBUFS);
  ASSERT_FALSE(nobufs);
  EXPECT_EQ(nobufs.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(nobufs.error().message().find("recycle"), std::string::npos);
}

}  // namespace
}  // namespace pepita::io_uring
