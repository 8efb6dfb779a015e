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
//
// hold_syscalls instead stops the chosen calls in the kernel (a seccomp user notification) until
// the test lets each one run with release_held_call, having changed what the call will find: a
// window between two calls of the code under test that no race decides.
#include <poll.h>
#include <seccomp.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace pepita::test {

struct SyscallFault {
  int nr = 0;     // the call: SCMP_SYS(write), or __NR_write
  int error = 0;  // the errno it returns
  /// The call fails only when its first argument, compared as unsigned 64-bit, is at least this;
  /// 0 makes every call fail.
  unsigned long long min_arg0 = 3;
};

namespace detail {

/// Adds to `ctx` the rule: call `nr` takes `action` when its first argument, compared as unsigned
/// 64-bit, is at least `min_arg0` (always when 0). Returns "" or what went wrong.
inline std::string add_rule(scmp_filter_ctx ctx, std::uint32_t action, int nr,
                            unsigned long long min_arg0) {
  const int rc =
      min_arg0 == 0 ? ::seccomp_rule_add(ctx, action, nr, 0)
                    : ::seccomp_rule_add(ctx, action, nr, 1,
                                         SCMP_A0(SCMP_CMP_GE, static_cast<scmp_datum_t>(min_arg0)));
  if (rc == 0) return "";
  return "seccomp_rule_add for syscall " + std::to_string(nr) + ": " + std::strerror(-rc);
}

struct Rule {
  std::uint32_t action;         // SCMP_ACT_ERRNO(e) or SCMP_ACT_NOTIFY
  int nr;                       // the call
  unsigned long long min_arg0;  // as SyscallFault::min_arg0
};

/// Builds a filter that lets every call run but those `rules` name, and loads it. seccomp_load
/// sets no_new_privs first (SCMP_FLTATR_CTL_NNP defaults on), as an unprivileged filter needs.
/// With `listener`, also returns the filter's user-notification fd there (-1 on failure).
/// Returns "" or what went wrong.
inline std::string install(const std::vector<Rule>& rules, int* listener = nullptr) {
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return "seccomp_init failed";
  std::string error;
  for (const Rule& r : rules) {
    error = add_rule(ctx, r.action, r.nr, r.min_arg0);
    if (!error.empty()) break;
  }
  if (error.empty()) {
    if (const int rc = ::seccomp_load(ctx); rc != 0)
      error = std::string("seccomp_load: ") + std::strerror(-rc);
  }
  if (listener != nullptr) {
    *listener = error.empty() ? ::seccomp_notify_fd(ctx) : -1;
    if (error.empty() && *listener < 0) error = "seccomp_notify_fd: no listener";
  }
  ::seccomp_release(ctx);
  return error;
}

}  // namespace detail

/// Installs a seccomp filter in the calling process under which each of `faults` fails with its
/// errno, and every other call runs as before. Irreversible (and inherited by threads created
/// after it and by children): call it only in a forked child. Returns "" or what went wrong.
inline std::string fail_syscalls(std::initializer_list<SyscallFault> faults) {
  std::vector<detail::Rule> rules;
  for (const SyscallFault& f : faults) rules.push_back({SCMP_ACT_ERRNO(f.error), f.nr, f.min_arg0});
  return detail::install(rules);
}

/// Installs a seccomp filter in the calling process under which each call in `nrs` whose first
/// argument is at least 3 (an fd the body opened, as for fail_syscalls) waits in the kernel until
/// release_held_call lets it run; every other call runs as before. Irreversible, and inherited
/// only by threads created after it: call it in a forked child, before starting the threads whose
/// calls are to be held, and never hold a call the releasing thread makes (nor `write`: ASan's
/// runtime probes memory by writing to a pipe of its own, from any thread). Returns the listener
/// fd, or -1 with `error` saying what went wrong.
inline int hold_syscalls(std::initializer_list<int> nrs, std::string& error) {
  std::vector<detail::Rule> rules;
  for (const int nr : nrs) rules.push_back({SCMP_ACT_NOTIFY, nr, 3});
  int listener = -1;
  error = detail::install(rules, &listener);
  return listener;
}

/// Waits up to `timeout_ms` for a call held by hold_syscalls' filter on `listener`, runs
/// `before` with the call's number and arguments (to change what it will find), then lets the call
/// run in the kernel as it was made. Returns "" or what went wrong (no call held in time).
inline std::string release_held_call(int listener, int timeout_ms,
                                     const std::function<void(const seccomp_data&)>& before) {
  pollfd ready{.fd = listener, .events = POLLIN, .revents = 0};
  if (::poll(&ready, 1, timeout_ms) != 1)
    return "no call was held within " + std::to_string(timeout_ms) + " ms";
  seccomp_notif* held = nullptr;
  seccomp_notif_resp* answer = nullptr;
  if (const int rc = ::seccomp_notify_alloc(&held, &answer); rc != 0)
    return std::string("seccomp_notify_alloc: ") + std::strerror(-rc);
  std::string error;
  if (const int rc = ::seccomp_notify_receive(listener, held); rc != 0) {
    error = std::string("seccomp_notify_receive: ") + std::strerror(-rc);
  } else {
    before(held->data);
    answer->id = held->id;
    answer->val = 0;
    answer->error = 0;
    answer->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // run the call as made (Linux 5.5+)
    if (const int sent = ::seccomp_notify_respond(listener, answer); sent != 0)
      error = std::string("seccomp_notify_respond: ") + std::strerror(-sent);
  }
  ::seccomp_notify_free(held, answer);
  return error;
}

}  // namespace pepita::test
