#pragma once
// SlotNetns: a loopback-only network namespace made once per process-executor slot, which the
// slot's sandboxes with `network = "none"` join (the spawning thread enters it around the
// supervisor's clone) instead of each making its own with CLONE_NEWNET and bringing loopback up
// (issue 23: ~0.6 ms a task). It is owned by the executor's user namespace, so a task (which runs
// in a child user namespace of its own) holds no capability in it: it cannot add an address or a
// route or take loopback down. What it can leave behind (a TCP socket in TIME_WAIT after it
// exited) is found by pristine() before the next attempt, which then gets a fresh namespace.
// Files follow the kernel's network namespaces (man 7 network_namespaces) and proc(5)'s
// /proc/net/sockstat.
// Private to the executor module.

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::executor::detail {

class SlotNetns {
 public:
  SlotNetns() = default;
  SlotNetns(SlotNetns&&) noexcept = default;
  SlotNetns& operator=(SlotNetns&&) noexcept = default;

  /// Makes a network namespace holding only loopback, up (127.0.0.1 and ::1). The calling thread
  /// enters it (unshare) and goes back to `host` (an fd of the thread's own network namespace,
  /// /proc/thread-self/ns/net) before returning. Needs CAP_SYS_ADMIN (root): PermissionDenied
  /// otherwise, and the caller makes a namespace per task instead (CLONE_NEWNET).
  static Result<SlotNetns> make(int host);

  bool valid() const noexcept { return ns_.valid(); }
  /// The namespace (for setns(fd, CLONE_NEWNET)).
  int fd() const noexcept { return ns_.get(); }

  /// Whether the namespace is as make() left it: loopback up and running, and no TCP socket in
  /// any state (a TIME_WAIT or orphaned socket outlives the task that made it and would hold its
  /// port from the next task). False also when it cannot tell: the caller makes a fresh one.
  bool pristine() const noexcept;

 private:
  // A socket, and a /proc/net file, stays in the namespace it was opened in: these look into the
  // slot's from any thread.
  UniqueFd ns_;         // the namespace itself (an nsfs fd)
  UniqueFd ctl_;        // AF_INET datagram socket: SIOCGIFFLAGS of loopback
  UniqueFd sockstat_;   // /proc/net/sockstat: TCP sockets in use and in TIME_WAIT
  UniqueFd sockstat6_;  // /proc/net/sockstat6: TCP6 sockets in use (invalid without IPv6)
};

/// Enters network namespace `ns` on the calling thread for its lifetime, then returns to `host`
/// (setns(2) changes only the calling thread's namespace). Leaving cannot be allowed to fail: a
/// thread left in a sandbox's namespace would start later tasks there, so a failed return aborts.
class EnterNetns {
 public:
  /// A negative `ns` enters nothing. Errors: setns's (EPERM without CAP_SYS_ADMIN).
  static Result<EnterNetns> enter(int ns, int host);
  EnterNetns(EnterNetns&& o) noexcept : host_(o.host_) { o.host_ = -1; }
  EnterNetns& operator=(EnterNetns&&) = delete;
  EnterNetns(const EnterNetns&) = delete;
  EnterNetns& operator=(const EnterNetns&) = delete;
  ~EnterNetns();

 private:
  explicit EnterNetns(int host) noexcept : host_(host) {}
  int host_ = -1;  // where to return; -1: nothing entered
};

}  // namespace pepita::executor::detail
