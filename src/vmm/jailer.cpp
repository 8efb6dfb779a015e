// vmm::Jailer: the calling process confined in place (include/pepita/vmm/jailer.hpp).
#include "pepita/vmm/jailer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pepita/core/cgroup.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/seccomp.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/task/affinity.hpp"

namespace pepita::vmm {
namespace {

constexpr std::uint32_t kNobody = 65534;

// Threads of this process (entries of /proc/self/task); 0 when it cannot be read.
std::size_t thread_count() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  std::size_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

Result<void> write_file(const char* path, const std::string& text) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return fail_errno(errno, std::string("jailer: open ").append(path));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return fail_errno(errno, std::string("jailer: write ").append(path));
  return {};
}

std::string id_map_line(std::uint32_t id) {
  return std::to_string(id).append(" ").append(std::to_string(id)).append(" 1\n");
}

// Our own ids keep their numbers inside a user namespace of our own.
Result<void> write_id_maps(std::uint32_t uid, std::uint32_t gid) {
  PEPITA_TRY_VOID(write_file("/proc/self/setgroups", "deny"));
  PEPITA_TRY_VOID(write_file("/proc/self/uid_map", id_map_line(uid)));
  PEPITA_TRY_VOID(write_file("/proc/self/gid_map", id_map_line(gid)));
  return {};
}

// Loopback up in a fresh network namespace (it starts down).
Result<void> loopback_up() {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return fail_errno(errno, "jailer: socket for loopback");
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0) return fail_errno(errno, "jailer: lo flags");
  req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) < 0) return fail_errno(errno, "jailer: lo up");
  return {};
}

// Empties the effective, permitted and inheritable capability sets.
Result<void> drop_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capset, &header, data) < 0) return fail_errno(errno, "jailer: capset");
  return {};
}

}  // namespace

JailerConfig JailerConfig::minimal() {
  JailerConfig c = production("/srv/jailer");
  c.memory_limit = std::uint64_t{256} << 20;
  return c;
}

JailerConfig JailerConfig::production(std::string chroot) {
  JailerConfig c;
  c.chroot_dir = std::move(chroot);
  c.uid = kNobody;
  c.gid = kNobody;
  c.seccomp = true;
  c.netns = true;
  return c;
}

Result<void> Jailer::enter() {
  if (is_active()) return fail(ErrorCode::AlreadyExists, "jailer: this process is already jailed");
  // --- checks: nothing changes until they all pass ---
  if (const std::size_t threads = thread_count(); threads != 1) {
    return fail(ErrorCode::InvalidArgument,
                "jailer: the process runs " + std::to_string(threads) +
                    " threads; namespaces, the chroot and the ids would hold for the calling "
                    "thread only: enter the jail first thing in main, before any thread starts");
  }
  const bool root = ::geteuid() == 0;
  const std::uint32_t own_uid = ::getuid();
  const std::uint32_t own_gid = ::getgid();
  const std::uint32_t uid = config_.uid.value_or(own_uid);
  const std::uint32_t gid = config_.gid.value_or(config_.uid ? uid : own_gid);
  if (!root && (uid != own_uid || gid != own_gid)) {
    return fail(ErrorCode::PermissionDenied,
                "jailer: running as uid " + std::to_string(uid) + " gid " + std::to_string(gid) +
                    " needs root; leave uid and gid unset to stay uid " + std::to_string(own_uid));
  }
  if (config_.chroot_dir) {
    struct stat st {};
    if (::stat(config_.chroot_dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return fail(ErrorCode::NotFound,
                  "jailer: chroot dir '" + *config_.chroot_dir +
                      "' is not a directory: create it and put what the VMM needs inside (its "
                      "guest images; /dev/kvm opened before enter() stays usable)");
    }
  }
  std::vector<unsigned> cpus;
  if (config_.cpuset) {
    auto parsed = task::parse_cpu_list(*config_.cpuset);
    if (!parsed) {
      return fail(ErrorCode::InvalidArgument, "jailer: cpuset: " + parsed.error().message());
    }
    cpus = std::move(*parsed);
    // An affinity mask (cpu_set_t) names CPUs below CPU_SETSIZE only: a CPU past it would be
    // dropped from the mask without a word, pinning the process to the others.
    if (!cpus.empty() && cpus.back() >= CPU_SETSIZE) {
      const auto past =
          std::find_if(cpus.begin(), cpus.end(), [](unsigned c) { return c >= CPU_SETSIZE; });
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("jailer: cpuset '{}': CPU {} is at or above CPU_SETSIZE ({}), "
                              "past what an affinity mask holds; name CPUs 0-{} only",
                              *config_.cpuset, *past, CPU_SETSIZE, CPU_SETSIZE - 1));
    }
  }
  const sys::SeccompFilter* filter = nullptr;
  if (config_.seccomp) filter = PEPITA_TRY(sys::seccomp_deny_filter(uid, sys::SeccompDeny::Kill));

  // --- the jail ---
  if (config_.memory_limit) {
    auto tree = PEPITA_TRY(CgroupTree::acquire());
    CgroupLimits limits;
    limits.memory = *config_.memory_limit;
    auto cgroup = PEPITA_TRY(tree->make("jailer-" + std::to_string(::getpid()), limits));
    PEPITA_TRY_VOID(cgroup.join(::getpid()));
    // The process now lives in that cgroup until it exits: ending it (Cgroup's destructor kills
    // what is inside) must never run, so both stay with the process, never destroyed;
    // reap_stale_cgroups() removes the directories after it is gone.
    static auto* kept = new std::vector<std::pair<std::shared_ptr<CgroupTree>, Cgroup>>();
    kept->emplace_back(std::move(tree), std::move(cgroup));
  }
  if (!cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned c : cpus) CPU_SET(c, &set);  // each below CPU_SETSIZE, checked above
    if (::sched_setaffinity(0, sizeof set, &set) < 0)
      return fail_errno(errno, "jailer: sched_setaffinity to " + *config_.cpuset);
  }
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (config_.netns) flags |= CLONE_NEWNET;
  if (!root) flags |= CLONE_NEWUSER;  // unprivileged: the other namespaces need one of our own
  if (::unshare(flags) < 0) return fail_errno(errno, "jailer: unshare");
  if (!root) {
    // A process that changed its ids is not dumpable, and then its /proc files belong to root:
    // dumpable while the maps are written, as it was afterwards.
    const int dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (dumpable != 1) ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    auto maps = write_id_maps(own_uid, own_gid);
    if (dumpable != 1) ::prctl(PR_SET_DUMPABLE, dumpable < 0 ? 0 : dumpable, 0, 0, 0);
    PEPITA_TRY_VOID(maps);
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
    return fail_errno(errno, "jailer: making the mounts private");
  if (config_.netns) PEPITA_TRY_VOID(loopback_up());
  if (::sethostname("pepita-jail", 11) < 0) return fail_errno(errno, "jailer: sethostname");
  if (config_.chroot_dir) {
    if (::chdir(config_.chroot_dir->c_str()) < 0 || ::chroot(".") < 0 || ::chdir("/") < 0)
      return fail_errno(errno, "jailer: chroot to " + *config_.chroot_dir);
  }
  if (root) {
    if (::setgroups(0, nullptr) < 0) return fail_errno(errno, "jailer: setgroups");
  }
  // The bounding set needs CAP_SETPCAP, which the uid switch below takes away.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      return fail_errno(errno, "jailer: PR_CAPBSET_DROP");
  }
  if (::setresgid(gid, gid, gid) < 0) return fail_errno(errno, "jailer: setresgid");
  if (::setresuid(uid, uid, uid) < 0) return fail_errno(errno, "jailer: setresuid");
  PEPITA_TRY_VOID(drop_capabilities());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return fail_errno(errno, "jailer: PR_SET_NO_NEW_PRIVS");
  if (filter != nullptr) {
    sock_fprog prog{static_cast<unsigned short>(filter->program.size()),
                    const_cast<sock_filter*>(filter->program.data())};
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
      return fail_errno(errno, "jailer: installing the seccomp filter");
  }
  active_.store(true, std::memory_order_release);
  return {};
}

Result<void> Jailer::exit() {
  if (!is_active()) return {};
  return fail(ErrorCode::Unsupported,
              "jailer: a jail cannot be left (namespaces, the chroot, the ids and the seccomp "
              "filter hold until the process exits): run what must not be jailed in another "
              "process");
}

}  // namespace pepita::vmm
