// The fd half of core's kernel boundary: negative errno instead of errno, full-length loops over
// short transfers and EINTR, eventfd counts, and the -errno -> Error edge.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "pepita/core/sys.hpp"

namespace pepita {
namespace {

using namespace std::chrono_literals;

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(sys::pipe(fds), 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
  }
  UniqueFd r, w;
};

std::string temp_path(const char* stem) {
  return std::string("/tmp/pepita-").append(stem).append("-").append(std::to_string(::getpid()));
}

TEST(SysFd, BadFdIsMinusEbadfAndErrnoIsNotTheChannel) {
  char c = 0;
  errno = 0;
  EXPECT_EQ(sys::read(-1, &c, 1), -EBADF);
  EXPECT_EQ(sys::write(-1, &c, 1), -EBADF);
  EXPECT_EQ(sys::read_full(-1, &c, 1), -EBADF);
  EXPECT_EQ(sys::write_full(-1, &c, 1), -EBADF);
  EXPECT_EQ(sys::pread_full(-1, &c, 1, 0), -EBADF);
  EXPECT_EQ(sys::pwrite_full(-1, &c, 1, 0), -EBADF);
  EXPECT_EQ(sys::fsync(-1), -EBADF);
  EXPECT_EQ(sys::fdatasync(-1), -EBADF);
  EXPECT_EQ(sys::ftruncate(-1, 0), -EBADF);
  EXPECT_EQ(sys::file_size(-1), -EBADF);
  EXPECT_EQ(sys::lseek(-1, 0, SEEK_SET), -EBADF);
  EXPECT_EQ(sys::set_nonblocking(-1), -EBADF);
  EXPECT_EQ(sys::eventfd_signal(-1), -EBADF);
  EXPECT_EQ(sys::eventfd_drain(-1), -EBADF);
  EXPECT_EQ(sys::open("/nonexistent/pepita", O_RDONLY), -ENOENT);
}

TEST(SysFd, OpenAndPipeSetCloexec) {
  const int fd = sys::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  UniqueFd owned(fd);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  Pipe p;
  EXPECT_NE(::fcntl(p.r.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(::fcntl(p.w.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(SysFd, ReadFullCollectsShortReadsUntilEof) {
  Pipe p;
  std::thread writer([&] {
    // Three short writes with pauses: each read(2) returns only what is there.
    for (const char* part : {"abc", "defg", "hi"}) {
      ASSERT_EQ(sys::write_full(p.w.get(), part, std::strlen(part)),
                static_cast<int64_t>(std::strlen(part)));
      std::this_thread::sleep_for(10ms);
    }
    p.w.reset();
  });
  std::array<char, 16> buf{};
  const int64_t n = sys::read_full(p.r.get(), buf.data(), buf.size());
  writer.join();
  EXPECT_EQ(n, 9);  // fewer than asked only because the writer closed
  EXPECT_EQ(std::string(buf.data(), 9), "abcdefghi");
  EXPECT_EQ(sys::read_full(p.r.get(), buf.data(), buf.size()), 0);  // EOF
}

TEST(SysFd, WriteFullPushesMoreThanThePipeHolds) {
  Pipe p;
  std::vector<char> data(1 << 20);  // 16x the default 64 KiB pipe buffer
  std::iota(data.begin(), data.end(), 0);
  std::vector<char> got(data.size());
  int64_t read = 0;
  std::thread reader([&] { read = sys::read_full(p.r.get(), got.data(), got.size()); });
  EXPECT_EQ(sys::write_full(p.w.get(), data.data(), data.size()),
            static_cast<int64_t>(data.size()));
  reader.join();
  EXPECT_EQ(read, static_cast<int64_t>(data.size()));
  EXPECT_EQ(got, data);
}

TEST(SysFd, WriteFullOnAClosedPipeIsMinusEpipe) {
  Pipe p;
  p.r.reset();
  sigset_t old;
  ASSERT_EQ(sys::block_signals({SIGPIPE}, &old), 0);  // EPIPE instead of death
  EXPECT_EQ(sys::write_full(p.w.get(), "x", 1), -EPIPE);
  // Consume the pending SIGPIPE so restoring the mask does not deliver it.
  EXPECT_EQ(sys::wait_signal(sys::signal_set({SIGPIPE}), 0ms), SIGPIPE);
  ASSERT_EQ(sys::set_signal_mask(SIG_SETMASK, old), 0);
}

std::atomic<int> g_interrupts{0};
void count_interrupt(int) { g_interrupts.fetch_add(1, std::memory_order_relaxed); }

// A blocked read(2) interrupted by a handler installed without SA_RESTART returns EINTR: the
// single-shot call hands it back, the full loop retries and still returns all the data.
TEST(SysFd, FullReadRetriesEintrWhileSingleReadReturnsIt) {
  ASSERT_EQ(sys::install_handler(SIGUSR1, count_interrupt, 0), 0);
  ASSERT_EQ(sys::unblock_signals({SIGUSR1}), 0);

  Pipe single;
  std::atomic<bool> started{false};
  long single_rc = 0;
  std::thread single_reader([&] {
    char c;
    started = true;
    single_rc = sys::read(single.r.get(), &c, 1);
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);  // let it block in read(2)
  const int before = g_interrupts.load();
  ASSERT_EQ(::pthread_kill(single_reader.native_handle(), SIGUSR1), 0);
  single_reader.join();
  EXPECT_EQ(single_rc, -EINTR);
  EXPECT_EQ(g_interrupts.load(), before + 1);

  Pipe full;
  started = false;
  int64_t full_rc = 0;
  char buf[4] = {};
  std::thread full_reader([&] {
    started = true;
    full_rc = sys::read_full(full.r.get(), buf, sizeof buf);
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::pthread_kill(full_reader.native_handle(), SIGUSR1), 0);
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(sys::write_full(full.w.get(), "pepi", 4), 4);
  full_reader.join();
  EXPECT_EQ(full_rc, 4);
  EXPECT_EQ(std::string(buf, 4), "pepi");
  EXPECT_EQ(g_interrupts.load(), before + 2);
  ::signal(SIGUSR1, SIG_DFL);
}

TEST(SysFd, PreadPwriteFullAtOffsetsAndPastEof) {
  const std::string path = temp_path("sysfd");
  const int raw = sys::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(raw, 0);
  UniqueFd fd(raw);
  ::unlink(path.c_str());
  EXPECT_EQ(sys::pwrite_full(fd.get(), "world", 5, 6), 5);
  EXPECT_EQ(sys::pwrite_full(fd.get(), "hello ", 6, 0, RWF_DSYNC), 6);
  EXPECT_EQ(sys::file_size(fd.get()), 11);
  EXPECT_EQ(sys::regular_file_size(fd.get()), 11);
  char buf[32] = {};
  EXPECT_EQ(sys::pread_full(fd.get(), buf, sizeof buf, 0), 11);  // stops at EOF
  EXPECT_EQ(std::string(buf, 11), "hello world");
  EXPECT_EQ(sys::pread_full(fd.get(), buf, 4, 100), 0);
  EXPECT_EQ(sys::ftruncate(fd.get(), 4096), 0);
  EXPECT_EQ(sys::file_size(fd.get()), 4096);
  EXPECT_EQ(sys::fdatasync(fd.get()), 0);
  EXPECT_EQ(sys::fsync(fd.get()), 0);
  EXPECT_EQ(sys::lseek(fd.get(), 0, SEEK_END), 4096);
  Pipe p;
  EXPECT_EQ(sys::regular_file_size(p.r.get()), -EINVAL);
  EXPECT_EQ(sys::pread_full(p.r.get(), buf, 1, 0), -ESPIPE);
}

TEST(SysFd, SetNonblockingMakesAnEmptyReadEagain) {
  Pipe p;
  char c;
  ASSERT_EQ(sys::set_nonblocking(p.r.get()), 0);
  EXPECT_NE(::fcntl(p.r.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_EQ(sys::read(p.r.get(), &c, 1), -EAGAIN);
  EXPECT_EQ(sys::read_full(p.r.get(), &c, 1), -EAGAIN);
  pollfd pfd{p.r.get(), POLLIN, 0};
  EXPECT_EQ(sys::poll(&pfd, 1, 0), 0);
  ASSERT_EQ(sys::write(p.w.get(), "z", 1), 1);
  EXPECT_EQ(sys::poll(&pfd, 1, 1000), 1);
}

TEST(SysEventfd, CountsAddUpAndDrainResets) {
  auto efd = sys::make_eventfd(EFD_NONBLOCK);
  ASSERT_TRUE(efd.has_value()) << efd.error().message();
  EXPECT_NE(::fcntl(efd->get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_EQ(sys::eventfd_drain(efd->get()), -EAGAIN);  // nothing signalled yet
  EXPECT_EQ(sys::eventfd_signal(efd->get()), 0);
  EXPECT_EQ(sys::eventfd_signal(efd->get()), 0);
  EXPECT_EQ(sys::eventfd_signal(efd->get(), 40), 0);
  EXPECT_EQ(sys::eventfd_drain(efd->get()), 42);
  EXPECT_EQ(sys::eventfd_drain(efd->get()), -EAGAIN);
}

TEST(SysEventfd, AFullCounterStillCountsAsSignalled) {
  const int raw = sys::eventfd(0, EFD_NONBLOCK);
  ASSERT_GE(raw, 0);
  UniqueFd efd(raw);
  ASSERT_EQ(sys::eventfd_signal(efd.get(), UINT64_MAX - 1), 0);  // the counter's maximum
  EXPECT_EQ(sys::eventfd_signal(efd.get()), 0);  // EAGAIN: a wake-up is pending anyway
  EXPECT_EQ(sys::eventfd_drain(efd.get()), static_cast<int64_t>(UINT64_MAX - 1));
}

TEST(SysEventfd, BlockingDrainWaitsForASignalFromAnotherThread) {
  auto efd = sys::make_eventfd();
  ASSERT_TRUE(efd.has_value());
  // The drain must block until the other thread signals: it returns that signal's count, and the
  // signaller marks the moment it is about to signal (no timing assumption: a loaded machine may
  // run the signaller's whole sleep before this thread reaches the drain).
  std::atomic<bool> about_to_signal{false};
  std::thread signaller([&] {
    std::this_thread::sleep_for(20ms);
    about_to_signal = true;
    EXPECT_EQ(sys::eventfd_signal(efd->get(), 3), 0);
  });
  EXPECT_EQ(sys::eventfd_drain(efd->get()), 3);
  EXPECT_TRUE(about_to_signal.load());
  signaller.join();
}

TEST(SysCheck, NegativeErrnoBecomesAnErrorThatSaysWhatToDo) {
  auto bad = sys::check(int64_t{-ENOENT}, "open /dev/pepita");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(bad.error().sys_errno(), ENOENT);
  EXPECT_NE(bad.error().message().find("open /dev/pepita"), std::string::npos);
  EXPECT_NE(bad.error().message().find("check that the path exists"), std::string::npos);
  auto good = sys::check(7, "anything");
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(*good, 7);
  EXPECT_TRUE(sys::check_void(0, "x").has_value());
  auto denied = sys::check_void(-EACCES, "open /dev/kvm");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), ErrorCode::PermissionDenied);
  auto no_fd = sys::check_fd(sys::open("/nonexistent/x", O_RDONLY), "open /nonexistent/x");
  ASSERT_FALSE(no_fd.has_value());
  EXPECT_EQ(no_fd.error().sys_errno(), ENOENT);
  auto fd = sys::check_fd(sys::open("/dev/null", O_RDONLY), "open /dev/null");
  ASSERT_TRUE(fd.has_value());
  EXPECT_TRUE(fd->valid());
}

TEST(SysFd, RawSyscallAndIoctlReturnNegativeErrno) {
  EXPECT_EQ(sys::syscall(SYS_close, -1), -EBADF);
  EXPECT_GT(sys::syscall(SYS_getpid), 0);
  EXPECT_EQ(sys::ioctl(-1, 0), -EBADF);
  Pipe p;
  ASSERT_EQ(sys::write(p.w.get(), "abc", 3), 3);
  int avail = 0;
  EXPECT_EQ(sys::ioctl_ptr(p.r.get(), FIONREAD, &avail), 0);
  EXPECT_EQ(avail, 3);
}

}  // namespace
}  // namespace pepita
