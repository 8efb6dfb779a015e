// Process, signal and thread system calls (see pepita/core/sys/process.hpp, sys/signal.hpp,
// sys/thread.hpp). pthread_* functions return a positive error number instead of setting errno;
// it is negated here.
#include "pepita/core/sys/process.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/signal.hpp"
#include "pepita/core/sys/thread.hpp"

namespace pepita::sys {

#ifndef P_PIDFD
inline constexpr idtype_t P_PIDFD = static_cast<idtype_t>(3);
#endif

// ---- processes --------------------------------------------------------------------------------

int pidfd_open(pid_t pid, unsigned flags) noexcept {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

Result<UniqueFd> open_pidfd(pid_t pid) {
  return check_fd(pidfd_open(pid),
                  std::string("pidfd_open of process ").append(std::to_string(pid)));
}

int pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0u));
}

int waitid_pidfd(int pidfd, siginfo_t* info, struct rusage* usage, int options) noexcept {
  info->si_pid = 0;
  // The raw syscall takes a fifth rusage argument that the glibc wrapper does not expose.
  const long rc = syscall(SYS_waitid, P_PIDFD, pidfd, info, options, usage);
  if (rc < 0) return static_cast<int>(rc);
  return info->si_pid == 0 ? 1 : 0;
}

int kill(pid_t pid, int sig) noexcept { return static_cast<int>(ret(::kill(pid, sig))); }
int kill_group(pid_t pgid, int sig) noexcept { return kill(-pgid, sig); }

// ---- signals ----------------------------------------------------------------------------------

sigset_t signal_set(std::initializer_list<int> signals) noexcept {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}

int set_signal_mask(int how, const sigset_t& set, sigset_t* old) noexcept {
  return -::pthread_sigmask(how, &set, old);
}

int block_signals(std::initializer_list<int> signals, sigset_t* old) noexcept {
  return set_signal_mask(SIG_BLOCK, signal_set(signals), old);
}

int unblock_signals(std::initializer_list<int> signals) noexcept {
  return set_signal_mask(SIG_UNBLOCK, signal_set(signals));
}

int install_handler(int sig, void (*handler)(int), int flags) noexcept {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = flags;
  return static_cast<int>(ret(::sigaction(sig, &sa, nullptr)));
}

int signalfd(const sigset_t& set, int flags) noexcept {
  return static_cast<int>(ret(::signalfd(-1, &set, flags | SFD_CLOEXEC)));
}

int wait_signal(const sigset_t& set, std::chrono::milliseconds limit) noexcept {
  const auto ms = limit.count() < 0 ? 0 : limit.count();
  const timespec tick{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  const int sig = ::sigtimedwait(&set, nullptr, &tick);
  if (sig > 0) return sig;
  return errno == EAGAIN || errno == EINTR ? 0 : -errno;
}

// ---- threads ----------------------------------------------------------------------------------

int membarrier(int cmd, unsigned flags) noexcept {
  return static_cast<int>(syscall(SYS_membarrier, cmd, flags, 0));
}

bool membarrier_register_private_expedited() noexcept {
  const int supported = membarrier(MEMBARRIER_CMD_QUERY, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) == 0;
}

int membarrier_private_expedited() noexcept {
  return membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0);
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

int pin_current_thread(int cpu) noexcept {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return -EINVAL;  // CPU_SET would write out of bounds
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return -::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
}

int set_current_thread_cpus(std::span<const unsigned> cpus) noexcept {
  if (cpus.empty()) return -EINVAL;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned cpu : cpus) {
    if (cpu >= CPU_SETSIZE) return -EINVAL;  // CPU_SET would write out of bounds
    CPU_SET(cpu, &set);
  }
  // pid 0: the calling thread only, not the whole process.
  return ::sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

int set_current_thread_name(const char* name) noexcept {
  char truncated[16] = {};
  for (int i = 0; i < 15 && name[i] != '\0'; ++i) truncated[i] = name[i];
  return -::pthread_setname_np(::pthread_self(), truncated);
}

int find_executable(const std::string& name, std::string& out) {
  if (name.find('/') != std::string::npos) {
    out = name;
    return 0;
  }
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  int err = -ENOENT;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find(':', start), path.size());
    std::string dir = path.substr(start, end - start);
    start = end + 1;
    std::string candidate = (dir.empty() ? std::string(".") : dir).append("/").append(name);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::access(candidate.c_str(), X_OK) != 0) {
      err = -EACCES;
      continue;
    }
    out = std::move(candidate);
    return 0;
  }
  return err;
}

}  // namespace pepita::sys
