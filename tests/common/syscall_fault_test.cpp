// test::fail_syscalls (syscall_fault.hpp): the chosen calls fail with their errno, only on the
// arguments asked for, the rest run, and the test process itself is never filtered.
#include "common/syscall_fault.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

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

}  // namespace
}  // namespace pepita::test
