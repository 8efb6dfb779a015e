// The process, socket, signal and thread half of core's kernel boundary: pidfds against real
// children, CLOEXEC sockets, unix listeners replacing stale sockets, SCM_RIGHTS passing, signal
// masks and synchronous waits, CPU pinning.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"

namespace pepita {
namespace {

using namespace std::chrono_literals;

std::string temp_path(const char* stem) {
  return std::string("/tmp/pepita-").append(stem).append("-").append(std::to_string(::getpid()));
}

// A child that sleeps until killed (or exits with `code` right away when code >= 0).
pid_t start_child(int code) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (code >= 0) ::_exit(code);
    for (;;) ::pause();
  }
  return pid;
}

TEST(SysProcess, PidfdSignalsAndReapsAChildWithRusage) {
  const pid_t pid = start_child(-1);
  ASSERT_GT(pid, 0);
  auto pidfd = sys::open_pidfd(pid);
  ASSERT_TRUE(pidfd.has_value()) << pidfd.error().message();
  siginfo_t info{};
  rusage usage{};
  EXPECT_EQ(sys::waitid_pidfd(pidfd->get(), &info, &usage), 1);  // still running
  EXPECT_EQ(sys::pidfd_send_signal(pidfd->get(), SIGKILL), 0);
  EXPECT_EQ(sys::waitid_pidfd(pidfd->get(), &info, &usage, WEXITED), 0);  // blocking reap
  EXPECT_EQ(info.si_pid, pid);
  EXPECT_EQ(info.si_code, CLD_KILLED);
  EXPECT_EQ(info.si_status, SIGKILL);
  // Reaped: the pidfd stays valid but the process is gone.
  EXPECT_EQ(sys::pidfd_send_signal(pidfd->get(), SIGKILL), -ESRCH);
  EXPECT_EQ(sys::waitid_pidfd(pidfd->get(), &info, &usage), -ECHILD);
}

TEST(SysProcess, ExitCodeComesBackAndMissingProcessesAreEsrch) {
  const pid_t pid = start_child(7);
  ASSERT_GT(pid, 0);
  const int pidfd = sys::pidfd_open(pid);
  ASSERT_GE(pidfd, 0);
  UniqueFd owned(pidfd);
  siginfo_t info{};
  EXPECT_EQ(sys::waitid_pidfd(pidfd, &info, nullptr, WEXITED), 0);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(info.si_status, 7);
  EXPECT_EQ(sys::pidfd_open(pid), -ESRCH);  // reaped
  auto gone = sys::open_pidfd(pid);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), ErrorCode::NotFound);
  EXPECT_NE(gone.error().message().find(std::to_string(pid)), std::string::npos);
  EXPECT_EQ(sys::pidfd_send_signal(-1, SIGTERM), -EBADF);
}

TEST(SysProcess, KillGroupReachesTheGroup) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    for (;;) ::pause();
  }
  ASSERT_GT(pid, 0);
  ::setpgid(pid, pid);  // races the child's own call harmlessly
  auto pidfd = sys::open_pidfd(pid);
  ASSERT_TRUE(pidfd.has_value());
  EXPECT_EQ(sys::kill(pid, 0), 0);
  EXPECT_EQ(sys::kill_group(pid, SIGTERM), 0);
  siginfo_t info{};
  EXPECT_EQ(sys::waitid_pidfd(pidfd->get(), &info, nullptr, WEXITED), 0);
  EXPECT_EQ(info.si_status, SIGTERM);
  EXPECT_EQ(sys::kill_group(pid, 0), -ESRCH);
}

TEST(SysSocket, PairSendAllAndRecvFullMoveEveryByte) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::string big(1 << 20, 'q');
  big[12345] = 'Z';
  std::string got(big.size(), '\0');
  int64_t received = 0;
  std::thread reader([&] { received = sys::recv_full(b.get(), got.data(), got.size()); });
  EXPECT_EQ(sys::send_all(a.get(), big.data(), big.size()), static_cast<int64_t>(big.size()));
  reader.join();
  EXPECT_EQ(received, static_cast<int64_t>(big.size()));
  EXPECT_EQ(got, big);
  a.reset();
  char c;
  EXPECT_EQ(sys::recv_full(b.get(), &c, 1), 0);  // orderly shutdown
  // Sending to a closed peer is EPIPE, not SIGPIPE (MSG_NOSIGNAL): the test process survives.
  EXPECT_EQ(sys::send_all(b.get(), "x", 1), -EPIPE);
  EXPECT_EQ(sys::send(b.get(), "x", 1), -EPIPE);
  // recv on something that is not a socket is its errno, not a short count.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  EXPECT_EQ(sys::recv_full(pr.get(), &c, 1), -ENOTSOCK);
}

TEST(SysSocket, NewSocketsAreCloexecAndOptionsStick) {
  const int raw = sys::socket(AF_INET, SOCK_STREAM);
  ASSERT_GE(raw, 0);
  UniqueFd s(raw);
  EXPECT_NE(::fcntl(s.get(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_EQ(sys::set_option(s.get(), SOL_SOCKET, SO_REUSEADDR, 1), 0);
  int value = 0;
  socklen_t len = sizeof value;
  ASSERT_EQ(::getsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &value, &len), 0);
  EXPECT_EQ(value, 1);
  EXPECT_EQ(sys::socket_error(s.get()), 0);
  EXPECT_EQ(sys::set_option(-1, SOL_SOCKET, SO_REUSEADDR, 1), -EBADF);
  EXPECT_EQ(sys::socket(AF_UNIX, SOCK_STREAM, 12345), -EPROTONOSUPPORT);
}

TEST(SysSocket, UnixListenAcceptsReplacesStaleSocketsAndRefusesOthers) {
  const std::string path = temp_path("sys-sock");
  ::unlink(path.c_str());
  {
    const int l = sys::unix_listen(path, 4);
    ASSERT_GE(l, 0) << l;
    UniqueFd listener(l);
    const int c = sys::unix_connect(path);
    ASSERT_GE(c, 0);
    UniqueFd client(c);
    const int s = sys::accept(listener.get());
    ASSERT_GE(s, 0);
    UniqueFd server(s);
    EXPECT_NE(::fcntl(server.get(), F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(sys::send_all(client.get(), "ping", 4), 4);
    char buf[4];
    EXPECT_EQ(sys::recv_full(server.get(), buf, 4), 4);
    EXPECT_EQ(std::string(buf, 4), "ping");
    // A live server owns the path; its probe shows up as a client that hung up at once.
    EXPECT_EQ(sys::unix_listen(path), -EADDRINUSE);
    const int probe = sys::accept(listener.get());
    ASSERT_GE(probe, 0);
    UniqueFd probed(probe);
    EXPECT_EQ(sys::recv_full(probed.get(), buf, 4), 0);
  }
  // The listener is closed but its socket file is left behind: a new server replaces it.
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  const int again = sys::unix_listen(path);
  ASSERT_GE(again, 0) << again;
  ::close(again);
  ::unlink(path.c_str());
  // A regular file is never deleted.
  const int file = sys::open(path.c_str(), O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(file, 0);
  ::close(file);
  EXPECT_EQ(sys::unix_listen(path), -EEXIST);
  EXPECT_EQ(::lstat(path.c_str(), &st), 0);
  ::unlink(path.c_str());
  EXPECT_EQ(sys::unix_listen(std::string(200, 'x')), -ENAMETOOLONG);
  EXPECT_EQ(sys::unix_connect(path), -ENOENT);
}

// Descriptor 0 is a descriptor like any other: with stdin closed the listening socket gets fd 0,
// and unix_listen must still bind and listen on it rather than take 0 for a failure.
TEST(SysSocket, UnixListenWorksWhenTheSocketGetsDescriptorZero) {
  const std::string path = temp_path("sys-sock-fd0");
  ::unlink(path.c_str());
  // In a child, so that closing stdin touches nothing of the test runner's. Its exit status: 0
  // listened on fd 0 and accepted a client, 1 got another fd or an error, 2 no client could
  // connect (nothing listens at the path), 3 accept failed.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    ::close(0);
    const int l = sys::unix_listen(path);
    if (l != 0) ::_exit(1);
    if (sys::unix_connect(path) < 0) ::_exit(2);
    ::_exit(sys::accept(l) >= 0 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::unlink(path.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: unix_listen returned fd 0 without listening";
}

TEST(SysSocket, DescriptorsTravelWithTheMessage) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  auto efd = sys::make_eventfd(EFD_NONBLOCK);
  ASSERT_TRUE(efd.has_value());
  const int fds[2] = {efd->get(), efd->get()};
  EXPECT_EQ(sys::send_with_fds(a.get(), "hdr!", 4, fds, 2), 4);
  char buf[4];
  int got_fds[1] = {-1};
  std::size_t nfds = 0;
  // Room for one descriptor: the second one is closed, not leaked.
  EXPECT_EQ(sys::recv_with_fds(b.get(), buf, 4, got_fds, 1, &nfds), 4);
  ASSERT_EQ(nfds, 1u);
  UniqueFd received(got_fds[0]);
  EXPECT_EQ(std::string(buf, 4), "hdr!");
  EXPECT_NE(::fcntl(received.get(), F_GETFD) & FD_CLOEXEC, 0);
  // The received fd is the same eventfd: a signal on one is drained on the other.
  EXPECT_EQ(sys::eventfd_signal(efd->get(), 5), 0);
  EXPECT_EQ(sys::eventfd_drain(received.get()), 5);
  // Orderly EOF before a message is 0; mid-message it is -EPROTO.
  EXPECT_EQ(sys::send_all(a.get(), "ab", 2), 2);
  a.reset();
  EXPECT_EQ(sys::recv_with_fds(b.get(), buf, 4, got_fds, 1, &nfds), -EPROTO);
  EXPECT_EQ(sys::recv_with_fds(b.get(), buf, 4, got_fds, 1, &nfds), 0);
  EXPECT_EQ(sys::send_with_fds(b.get(), "x", 1, fds, 9), -EINVAL);
}

TEST(SysFdPassing, EmptyMessageWithDescriptorsIsZeroNotAStaleErrno) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  const int fds[1] = {a.get()};
  errno = EBADF;  // left over from an earlier call: must not become the result
  EXPECT_EQ(sys::send_with_fds(a.get(), "", 0, fds, 1), 0);
}

void ignore_signal(int) {}

TEST(SysFdPassing, ASignalCuttingTheFirstSendmsgShortStillSendsEveryByte) {
  // 8 MiB cannot fit in a unix socket's buffer, so sendmsg is still in progress while nobody
  // reads; a signal (no SA_RESTART) then ends it with a partial count, and the rest goes out
  // through send_all once the reader drains. The result is the whole length, not what was left.
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = ignore_signal;
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  constexpr std::size_t kLen = 8u << 20;
  std::string data(kLen, '\0');
  for (std::size_t i = 0; i < kLen; ++i) data[i] = static_cast<char>(i * 131 + (i >> 12));
  const int fds[1] = {b.get()};
  int64_t sent = 0;
  std::thread sender([&] { sent = sys::send_with_fds(a.get(), data.data(), kLen, fds, 1); });
  int queued = 0;
  for (int i = 0; i < 5000 && queued < (64 << 10); ++i) {
    ASSERT_EQ(::ioctl(a.get(), SIOCOUTQ, &queued), 0);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GE(queued, 64 << 10) << "the sender never filled the socket buffer";
  ASSERT_EQ(::pthread_kill(sender.native_handle(), SIGUSR1), 0);
  std::string got(kLen, '\0');
  int got_fds[1] = {-1};
  std::size_t nfds = 0;
  EXPECT_EQ(sys::recv_with_fds(b.get(), got.data(), kLen, got_fds, 1, &nfds),
            static_cast<int>(kLen));
  sender.join();
  ASSERT_EQ(nfds, 1u);
  UniqueFd received(got_fds[0]);
  EXPECT_EQ(sent, static_cast<int64_t>(kLen));
  EXPECT_TRUE(got == data) << "the bytes arrived changed or out of order";
  ASSERT_EQ(::sigaction(SIGUSR1, &old, nullptr), 0);
}

TEST(SysSignal, BlockedSignalIsTakenSynchronouslyBySignalfdAndWait) {
  sigset_t old;
  ASSERT_EQ(sys::block_signals({SIGUSR2}, &old), 0);
  const sigset_t set = sys::signal_set({SIGUSR2});
  EXPECT_EQ(sys::wait_signal(set, 0ms), 0);  // none pending
  ASSERT_EQ(::raise(SIGUSR2), 0);
  EXPECT_EQ(sys::wait_signal(set, 1000ms), SIGUSR2);

  const int raw = sys::signalfd(set, SFD_NONBLOCK);
  ASSERT_GE(raw, 0);
  UniqueFd sfd(raw);
  EXPECT_NE(::fcntl(sfd.get(), F_GETFD) & FD_CLOEXEC, 0);
  signalfd_siginfo si{};
  EXPECT_EQ(sys::read(sfd.get(), &si, sizeof si), -EAGAIN);
  ASSERT_EQ(::raise(SIGUSR2), 0);
  EXPECT_EQ(sys::read(sfd.get(), &si, sizeof si), static_cast<long>(sizeof si));
  EXPECT_EQ(si.ssi_signo, static_cast<uint32_t>(SIGUSR2));
  ASSERT_EQ(sys::set_signal_mask(SIG_SETMASK, old), 0);
  EXPECT_EQ(sys::set_signal_mask(12345, old), -EINVAL);
  EXPECT_EQ(sys::install_handler(SIGKILL, SIG_IGN, 0), -EINVAL);
}

TEST(SysThread, PinsNamesAndBarriers) {
  const auto cpus = sys::allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  std::thread t([&] {
    EXPECT_EQ(sys::pin_current_thread(cpus.back()), 0);
    EXPECT_EQ(sys::allowed_cpus(), std::vector<int>{cpus.back()});
    EXPECT_EQ(sys::pin_current_thread(-1), -EINVAL);
    EXPECT_EQ(sys::set_current_thread_name("pepita-a-very-long-name"), 0);
    char name[16] = {};
    ASSERT_EQ(::pthread_getname_np(::pthread_self(), name, sizeof name), 0);
    EXPECT_EQ(std::string(name), "pepita-a-very-l");  // truncated to 15 chars
  });
  t.join();
  // A set of CPUs for one thread: that thread alone runs on them; a CPU past CPU_SETSIZE or an
  // empty set is refused before anything changes.
  std::thread u([&] {
    const std::vector<unsigned> two{static_cast<unsigned>(cpus.front()),
                                    static_cast<unsigned>(cpus.back())};
    EXPECT_EQ(sys::set_current_thread_cpus(two), 0);
    std::vector<int> want{cpus.front()};
    if (cpus.back() != cpus.front()) want.push_back(cpus.back());
    EXPECT_EQ(sys::allowed_cpus(), want);
    EXPECT_EQ(sys::set_current_thread_cpus({}), -EINVAL);
    const std::vector<unsigned> too_far{static_cast<unsigned>(cpus.front()), CPU_SETSIZE};
    EXPECT_EQ(sys::set_current_thread_cpus(too_far), -EINVAL);
    EXPECT_EQ(sys::allowed_cpus(), want) << "a refused set changed the thread's CPUs";
  });
  u.join();
  EXPECT_EQ(sys::allowed_cpus(), cpus) << "pinning a thread changed the process's other threads";
  if (sys::membarrier_register_private_expedited()) {
    EXPECT_EQ(sys::membarrier_private_expedited(), 0);
  } else {
    GTEST_LOG_(INFO) << "membarrier PRIVATE_EXPEDITED unsupported here; barrier not exercised";
  }
}

TEST(Format, FillsHolesInOrder) {
  EXPECT_EQ(fmt("queue {} of {}", 3, "sda"), "queue 3 of sda");
  EXPECT_EQ(fmt("no holes", 1, 2), "no holes");
  EXPECT_EQ(fmt("{} and {}", 1), "1 and {}");
  EXPECT_EQ(fmt("{}{}", 'a', 2.5), "a2.5");
  EXPECT_EQ(fmt(""), "");
}

}  // namespace
}  // namespace pepita
