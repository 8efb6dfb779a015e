// test::fail_syscalls (syscall_fault.hpp): the chosen calls fail with their errno, only on the
// arguments asked for, the rest run, and the test process itself is never filtered; and
// test::hold_syscalls: the chosen calls wait in the kernel until the test releases each one.
#include "common/syscall_fault.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "common/child.hpp"
#include "common/temp_dir.hpp"

namespace pepita::test {
namespace {

TEST(SyscallFault, AChosenCallFailsWithItsErrnoOnItsFdsAndStdoutStillWorks) {
  TempDir dir("syscall-fault");
  const std::string path = dir.file("file");
  const auto code = run_forked([&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 3);
    ASSERT_EQ(fail_syscalls({{SCMP_SYS(write), ENOSPC}}), "");
    errno = 0;
    EXPECT_EQ(::write(fd, "x", 1), -1);
    EXPECT_EQ(errno, ENOSPC);
    EXPECT_EQ(::write(1, "", 0), 0);  // fd 1 is below min_arg0: not filtered
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);  // other calls run
    EXPECT_EQ(st.st_size, 0);
    ::close(fd);
  });
  EXPECT_EQ(code, 0);
  // The parent is not filtered: its write reaches the file.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::write(fd, "y", 1), 1);
  ::close(fd);
}

TEST(SyscallFault, PathCallsFailThroughAtFdcwdAndMinArgZeroFailsEveryCall) {
  TempDir dir("syscall-fault");
  const std::string sub = dir.file("sub");
  const auto code = run_forked([&] {
    ASSERT_EQ(
        fail_syscalls(
            {{SCMP_SYS(mkdir), EROFS}, {SCMP_SYS(mkdirat), EROFS}, {SCMP_SYS(dup), EMFILE, 0}}),
        "");
    errno = 0;
    EXPECT_EQ(::mkdir(sub.c_str(), 0700), -1);  // mkdirat(AT_FDCWD, ...): -100 as unsigned
    EXPECT_EQ(errno, EROFS);
    errno = 0;
    EXPECT_EQ(::dup(0), -1);
    EXPECT_EQ(errno, EMFILE);
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(::access(sub.c_str(), F_OK), -1);
}

// A held call waits in the kernel until it is released: `before` sees it, not yet run, with its
// number and arguments, and then it runs as made. Calls on fds below 3 are never held, and with
// nothing held release_held_call times out and says so.
TEST(SyscallFault, AHeldCallWaitsForItsReleaseThenRunsAsMade) {
  TempDir dir("syscall-fault");
  const std::string path = dir.file("file");
  const auto code = run_forked([&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 3);
    std::string error;
    const int held = hold_syscalls({SCMP_SYS(pwrite64)}, error);
    ASSERT_GE(held, 0) << error;
    std::atomic<ssize_t> wrote{-2};  // -2: the writer's call has not returned
    std::thread writer([&] { wrote = ::pwrite(fd, "held", 4, 0); });
    bool saw_it = false;
    EXPECT_EQ(release_held_call(held, 10'000,
                                [&](const seccomp_data& call) {
                                  EXPECT_EQ(call.nr, SCMP_SYS(pwrite64));
                                  EXPECT_EQ(call.args[0], static_cast<std::uint64_t>(fd));
                                  EXPECT_EQ(call.args[2], 4u);
                                  EXPECT_EQ(wrote, -2) << "the call ran before its release";
                                  saw_it = true;
                                }),
              "");
    writer.join();
    EXPECT_TRUE(saw_it);
    EXPECT_EQ(wrote, 4);
    // fd 1 is below 3: not held, so the call returns (ESPIPE where stdout is a pipe).
    const ssize_t unheld = ::pwrite(1, "", 0, 0);
    EXPECT_TRUE(unheld == 0 || errno == ESPIPE) << std::strerror(errno);
    EXPECT_EQ(release_held_call(held, 10, [](const seccomp_data&) {}),
              "no call was held within 10 ms");
    ::close(fd);
  });
  EXPECT_EQ(code, 0);
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "held");
}

}  // namespace
}  // namespace pepita::test
