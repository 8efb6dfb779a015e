// Raw syscalls of the scheduler module (see detail/sys.hpp).

#include "scheduler/detail/sys.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace pepita::scheduler::sys {

int membarrier(int cmd, unsigned flags) noexcept {
  long r = ::syscall(SYS_membarrier, cmd, flags, 0);
  return r < 0 ? -errno : static_cast<int>(r);
}

bool membarrier_register_private_expedited() noexcept {
  int supported = membarrier(MEMBARRIER_CMD_QUERY, 0);
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

int set_current_thread_name(const char* name) noexcept {
  char truncated[16] = {};
  for (int i = 0; i < 15 && name[i] != '\0'; ++i) truncated[i] = name[i];
  return -::pthread_setname_np(::pthread_self(), truncated);
}

}  // namespace pepita::scheduler::sys
