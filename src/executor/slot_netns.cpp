// A process-executor slot's prepared loopback-only network namespace (detail/slot_netns.hpp).
// Made by the reactor thread with unshare(CLONE_NEWNET) and a setns back; its loopback is
// brought up once; what is opened inside it lets any thread look into it later (a socket, and a
// /proc/net file, belongs to the namespace it was opened in): an ioctl socket for loopback's flags
// and its sockstat files for the TCP sockets left (proc(5)).
#include "detail/slot_netns.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "pepita/core/sys.hpp"

namespace pepita::executor::detail {
namespace {

int setns_net(int fd) { return static_cast<int>(sys::syscall(SYS_setns, fd, CLONE_NEWNET)); }

// Loopback's flags through `ctl` (an AF_INET socket of the namespace), or -errno.
int loopback_flags(int ctl) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (int rc = sys::ioctl_ptr(ctl, SIOCGIFFLAGS, &ifr); rc < 0) return rc;
  return static_cast<unsigned short>(ifr.ifr_flags);
}

// The number after `key` in `text` ("TCP: inuse 0 orphan 0 tw 0"), or -1.
long field(const std::string& text, std::size_t line, const char* key) {
  const std::size_t eol = std::min(text.find('\n', line), text.size());
  const std::size_t at = text.find(key, line);
  if (at == std::string::npos || at >= eol) return -1;
  return std::strtol(text.c_str() + at + std::strlen(key), nullptr, 10);
}

// The whole text of a /proc/net file opened inside the namespace (a seq file: pread at 0 makes
// it anew, for the namespace it was opened in), or empty.
std::string pread_text(int fd) {
  char buf[1024];
  long n;
  do {
    n = sys::syscall(SYS_pread64, fd, buf, sizeof buf - 1, 0L);
  } while (n == -EINTR);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Whether sockstat and sockstat6 show no TCP socket in the namespace: none in use (listening,
// connected, closing, orphaned: all still hashed) and none in TIME_WAIT. (Both counters are the
// namespace's own; a sock_diag dump would walk the host's whole TCP hash table, ~1 ms.)
bool no_tcp(int sockstat, int sockstat6) {
  const std::string v4 = pread_text(sockstat);
  const std::size_t tcp = v4.find("\nTCP: ");
  if (tcp == std::string::npos) return false;
  if (field(v4, tcp + 1, " inuse ") != 0 || field(v4, tcp + 1, " tw ") != 0) return false;
  const std::string v6 = pread_text(sockstat6);
  const std::size_t tcp6 = v6.rfind("TCP6: ", 0) == 0 ? 0 : v6.find("\nTCP6: ");
  if (tcp6 == std::string::npos) return v6.empty() && sockstat6 < 0;  // no IPv6 at all
  return field(v6, tcp6, " inuse ") == 0;
}

}  // namespace

Result<SlotNetns> SlotNetns::make(int host) {
  if (long rc = sys::syscall(SYS_unshare, CLONE_NEWNET); rc < 0) {
    return fail_errno(static_cast<int>(rc),
                      "sandbox: make the slot's network namespace (unshare CLONE_NEWNET needs "
                      "CAP_SYS_ADMIN)");
  }
  // From here the thread is in the new namespace: every path out goes back to `host` first.
  SlotNetns made;
  int err = 0;
  const char* what = "";
  made.ns_.reset(sys::open("/proc/thread-self/ns/net", O_RDONLY));
  if (!made.ns_) {
    err = made.ns_.get();
    what = "open /proc/thread-self/ns/net";
  }
  if (err == 0) {
    made.ctl_.reset(sys::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    made.sockstat_.reset(sys::open("/proc/thread-self/net/sockstat", O_RDONLY));
    // Absent on a kernel without IPv6: then there is no TCP6 to count.
    made.sockstat6_.reset(sys::open("/proc/thread-self/net/sockstat6", O_RDONLY));
    if (!made.ctl_ || !made.sockstat_) {
      err = !made.ctl_ ? made.ctl_.get() : made.sockstat_.get();
      what = !made.ctl_ ? "open a socket in it" : "open its /proc/net/sockstat";
    }
  }
  if (err == 0) {
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, "lo", 3);
    const int flags = loopback_flags(made.ctl_.get());
    ifr.ifr_flags = static_cast<short>(flags | IFF_UP | IFF_RUNNING);
    err = flags < 0 ? flags : sys::ioctl_ptr(made.ctl_.get(), SIOCSIFFLAGS, &ifr);
    if (err < 0) what = "bring its loopback up";
  }
  if (int rc = setns_net(host); rc < 0) {
    // The reactor thread would start every later task in this namespace: nothing sane is left.
    std::fprintf(stderr, "pepita: cannot return to the executor's network namespace: %s\n",
                 std::strerror(-rc));
    std::abort();
  }
  if (err < 0)
    return fail_errno(err, std::string("sandbox: slot network namespace: ").append(what));
  return made;
}

bool SlotNetns::pristine() const noexcept {
  if (!ns_ || !ctl_ || !sockstat_) return false;
  const int flags = loopback_flags(ctl_.get());
  if (flags < 0 || (flags & IFF_UP) == 0 || (flags & IFF_RUNNING) == 0) return false;
  return no_tcp(sockstat_.get(), sockstat6_.get());
}

Result<EnterNetns> EnterNetns::enter(int ns, int host) {
  if (ns < 0) return EnterNetns(-1);
  if (int rc = setns_net(ns); rc < 0)
    return fail_errno(rc, "sandbox: enter the slot's network namespace");
  return EnterNetns(host);
}

EnterNetns::~EnterNetns() {
  if (host_ < 0) return;
  if (int rc = setns_net(host_); rc < 0) {
    std::fprintf(stderr, "pepita: cannot return to the executor's network namespace: %s\n",
                 std::strerror(-rc));
    std::abort();
  }
}

}  // namespace pepita::executor::detail
