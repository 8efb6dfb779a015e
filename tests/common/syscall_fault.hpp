#pragma once
// Making chosen system calls fail for real, for the error paths a healthy kernel never takes here
// (a write to a full disk, a seal refused, a directory that cannot be made): a seccomp filter
// answers the calls with an errno before the kernel runs them. A filter cannot be removed, so it
// is installed only in a forked child (run_forked in common/child.hpp), after the body's setup:
//
//   auto code = test::run_forked([&] {
//     auto journal = Journal::open(dir);                         // works
//     ASSERT_EQ(test::fail_syscalls({{SCMP_SYS(write), ENOSPC}}), "");
//     auto r = journal->append(rec);                             // its write(2) fails
//     EXPECT_EQ(r.error().sys_errno(), ENOSPC);
//   });
//   EXPECT_EQ(code, 0);
//
// By default only calls whose first argument is at least 3 fail: for most calls that is an fd,
// so the child's stdin, stdout and stderr (and gtest's messages) keep working, while a path
// call's AT_FDCWD (-100, compared as unsigned) and any fd the body opened are hit.
#include <seccomp.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <string>

namespace pepita::test {

struct SyscallFault {
  int nr = 0;     // the call: SCMP_SYS(write), or __NR_write
  int error = 0;  // the errno it returns
  /// The call fails only when its first argument, compared as unsigned 64-bit, is at least this;
  /// 0 makes every call fail.
  unsigned long long min_arg0 = 3;
};

/// Installs a seccomp filter in the calling process under which each of `faults` fails with its
/// errno, and every other call runs as before. Irreversible (and inherited by threads created
/// after it and by children): call it only in a forked child. Returns "" or what went wrong.
inline std::string fail_syscalls(std::initializer_list<SyscallFault> faults) {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return "seccomp_init failed";
  std::string error;
  for (const SyscallFault& f : faults) {
    const int rc =
        f.min_arg0 == 0
            ? ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(f.error), f.nr, 0)
            : ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(f.error), f.nr, 1,
                                 SCMP_A0(SCMP_CMP_GE, static_cast<scmp_datum_t>(f.min_arg0)));
    if (rc != 0) {
      error = "seccomp_rule_add for syscall " + std::to_string(f.nr) + ": " + std::strerror(-rc);
      break;
    }
  }
  // seccomp_load sets no_new_privs first (SCMP_FLTATR_CTL_NNP defaults on), as an unprivileged
  // filter needs.
  if (error.empty()) {
    if (const int rc = ::seccomp_load(ctx); rc != 0)
      error = std::string("seccomp_load: ") + std::strerror(-rc);
  }
  ::seccomp_release(ctx);
  return error;
}

}  // namespace pepita::test
