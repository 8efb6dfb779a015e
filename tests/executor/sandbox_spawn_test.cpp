// The sandboxed spawn itself (src/executor/sandbox_spawn.cpp), called without an executor: the
// host dir the root is built over, the supervisor's memory, and the error each step of the
// supervisor names when it fails. A step is made to fail for real by a seccomp filter
// (common/syscall_fault.hpp) in a forked child, which the supervisor it clones inherits.
#include "detail/sandbox_spawn.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/child.hpp"
#include "common/require.hpp"
#include "common/syscall_fault.hpp"
#include "executor/sandbox_test_util.hpp"
#include "pepita/task/sandbox.hpp"

namespace pepita::executor {
namespace {

using detail::MountOp;
using task::SandboxPolicy;
using test::staging_candidates;
using test::WorkDir;

// ---- the dir the root is built over ----

std::string staging_for(std::vector<MountOp> plan) {
  const char* dir = detail::sandbox_staging_dir(plan);
  return dir == nullptr ? "(two pivots)" : dir;
}

MountOp op_reading(MountOp::Kind kind, const std::string& source) {
  return {kind, source, "/newroot/data", "", ""};
}

MountOp bind_of(const std::string& source) { return op_reading(MountOp::Kind::BindRO, source); }

TEST(SandboxStagingDir, IsTheFirstCandidateNoBindReadsAtOrBelowOrAbove) {
  const std::vector<std::string> dirs = staging_candidates();
  if (dirs.size() < 2) GTEST_SKIP() << "this host has fewer than two of /mnt, /srv, /opt, ...";
  const std::string& first = dirs[0];
  EXPECT_EQ(staging_for({}), first);
  // Binds elsewhere, named as the plan names host paths (under /oldroot) or as the host does.
  EXPECT_EQ(staging_for({bind_of("/oldroot/usr")}), first);
  EXPECT_EQ(staging_for({bind_of("/usr")}), first);
  // A sibling whose name starts with the candidate's is not below it.
  EXPECT_EQ(staging_for({bind_of("/oldroot" + first + "x")}), first);
  // The candidate itself, below it (either kind of bind) or above it: the next candidate.
  EXPECT_EQ(staging_for({bind_of("/oldroot" + first)}), dirs[1]);
  EXPECT_EQ(staging_for({bind_of(first)}), dirs[1]);
  EXPECT_EQ(staging_for({bind_of("/oldroot" + first + "/sub")}), dirs[1]);
  EXPECT_EQ(staging_for({op_reading(MountOp::Kind::BindRW, "/oldroot" + first + "/sub")}), dirs[1]);
  EXPECT_EQ(staging_for({bind_of("/oldroot")}), "(two pivots)");  // the host's root
  EXPECT_EQ(staging_for({bind_of("/")}), "(two pivots)");
  // Only a bind reads the host: other steps naming the candidate do not move the root.
  for (const MountOp::Kind kind :
       {MountOp::Kind::Mkdir, MountOp::Kind::Touch, MountOp::Kind::Symlink, MountOp::Kind::Tmpfs,
        MountOp::Kind::Proc, MountOp::Kind::Copy}) {
    EXPECT_EQ(staging_for({op_reading(kind, "/oldroot" + first)}), first) << static_cast<int>(kind);
  }
}

// ---- the supervisor's memory ----

struct Mapping {
  std::uintptr_t start = 0, end = 0;
  std::string perms;  // "" when nothing is mapped there
};

// The /proc/self/maps entry that holds `addr`.
Mapping mapping_at(std::uintptr_t addr) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    Mapping m;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &m.start, &m.end, perms) != 3)
      continue;
    if (m.start <= addr && addr < m.end) {
      m.perms = perms;
      return m;
    }
  }
  return {};
}

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

const std::uintptr_t kPage = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));

TEST(SupervisorMemory, IsAGuardPageThenTheStackInWholePagesThenAPageOfArguments) {
  for (const auto& [bytes, stack] : {std::pair{std::size_t{1}, kPage}, std::pair{kPage, kPage},
                                     std::pair{kPage + 1, 2 * kPage}}) {
    SCOPED_TRACE(bytes);
    auto memory = detail::SupervisorMemory::make(bytes);
    ASSERT_TRUE(memory) << memory.error().message();
    ASSERT_TRUE(*memory);
    const std::uintptr_t args = address(memory->args());
    EXPECT_EQ(memory->stack_top(), memory->args());  // the stack grows down from the arguments
    const Mapping usable = mapping_at(args);
    EXPECT_EQ(usable.perms.substr(0, 2), "rw");
    EXPECT_EQ(usable.start, args - stack);
    EXPECT_GE(usable.end, args + kPage);
    const Mapping guard = mapping_at(args - stack - 1);
    EXPECT_EQ(guard.perms.substr(0, 3), "---");
    EXPECT_EQ(guard.end, args - stack);
    EXPECT_LE(guard.start, args - stack - kPage);
    memory->reaped();
    memory->reset();
    EXPECT_FALSE(*memory);
    EXPECT_EQ(memory->args(), nullptr);
    EXPECT_EQ(mapping_at(args - stack).perms, "");  // unmapped, guard included
    EXPECT_EQ(mapping_at(args - stack - 1).perms, "");
  }
}

TEST(SupervisorMemory, AMappingInUseIsLeftMappedWhenDroppedAndAReapedOneIsUnmapped) {
  auto in_use = detail::SupervisorMemory::make(kPage);
  ASSERT_TRUE(in_use) << in_use.error().message();
  const std::uintptr_t kept = address(in_use->args());
  {
    detail::SupervisorMemory moved(std::move(*in_use));  // still in use: a supervisor may run on it
    EXPECT_FALSE(*in_use);
    EXPECT_EQ(address(moved.args()), kept);
  }
  EXPECT_EQ(mapping_at(kept).perms.substr(0, 2), "rw");  // left in place
  ::munmap(reinterpret_cast<void*>(kept - 2 * kPage), 3 * kPage);

  auto first = detail::SupervisorMemory::make(kPage);
  auto second = detail::SupervisorMemory::make(kPage);
  ASSERT_TRUE(first && second);
  const std::uintptr_t first_args = address(first->args()), second_args = address(second->args());
  first->reaped();              // second stays in use
  *first = std::move(*second);  // drops first's own mapping: nothing runs on it
  EXPECT_EQ(mapping_at(first_args).perms, "");
  EXPECT_EQ(address(first->args()), second_args);
  EXPECT_FALSE(*second);
  first->reset();  // second's mapping came still in use: left in place
  EXPECT_EQ(mapping_at(second_args).perms.substr(0, 2), "rw");
  ::munmap(reinterpret_cast<void*>(second_args - 2 * kPage), 3 * kPage);
}

// ---- each step's failure ----

// Whether a mapping count can tell a leaked supervisor stack: not under ASan or TSan, whose
// runtimes map memory of their own while the spawn runs (its allocations, their shadow).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMappingsAreOurs = false;
#else
constexpr bool kMappingsAreOurs = true;
#endif

// The number of mappings /proc/self/maps, open as `fd`, lists now.
std::size_t mapping_count(int fd) {
  std::size_t lines = 0;
  char buf[4096];
  off_t at = 0;
  for (ssize_t n; (n = ::pread(fd, buf, sizeof buf, at)) > 0; at += n)
    lines += static_cast<std::size_t>(std::count(buf, buf + n, '\n'));
  return lines;
}

struct Attempt {
  SandboxPolicy policy = SandboxPolicy::standard();
  std::vector<unsigned> cpus;
  bool cgroup_unwritable = false;  // a cgroup.procs fd the spawn cannot write
};

// In a forked child in which `fault` fails (the supervisor inherits the filter), starts /bin/true
// in `attempt`'s sandbox: the spawn fails with a message holding `expected` (being it, when
// `whole`), and leaves nothing behind: no process (the supervisor was killed and reaped), no
// mapping (its memory).
void expect_spawn_fails(std::optional<pepita::test::SyscallFault> fault,
                        const std::string& expected, const Attempt& attempt = {},
                        bool whole = false) {
  WorkDir work("sandbox-step");
  const auto code = pepita::test::run_forked([&] {
    // What the plan and the filter read from the host is read now, before the fault.
    ASSERT_TRUE(detail::sandbox_mount_plan(attempt.policy, "/bin/true", work.path()));
    ASSERT_TRUE(detail::sandbox_filter(attempt.policy.id));
    const int null = ::open("/dev/null", attempt.cgroup_unwritable ? O_RDONLY : O_RDWR);
    ASSERT_GE(null, 3);
    const int maps = ::open("/proc/self/maps", O_RDONLY);  // before the fault: it may be openat
    ASSERT_GE(maps, 3);
    if (fault) {
      ASSERT_EQ(pepita::test::fail_syscalls({*fault}), "");
    }
    task::ProcessSpec spec("/bin/true");
    spec.cwd = work.path();
    const std::size_t mappings = mapping_count(maps);
    detail::SpawnExtras extras;
    const int procs[] = {null};
    if (attempt.cgroup_unwritable) extras.cgroup_procs = procs;
    extras.cpus = attempt.cpus;
    auto child = detail::spawn_sandboxed(spec, {null, null, null}, 0, extras, attempt.policy);
    ASSERT_FALSE(child) << "started; expected: " << expected;
    if (whole) {
      EXPECT_EQ(child.error().message(), expected);
    } else {
      EXPECT_NE(child.error().message().find(expected), std::string::npos)
          << child.error().message();
    }
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);  // no child: none running, none unreaped
    EXPECT_EQ(errno, ECHILD);
    if (kMappingsAreOurs) {
      EXPECT_EQ(mapping_count(maps), mappings);  // and its memory unmapped, as nothing runs on it
    }
  });
  EXPECT_EQ(code, 0);
}

pepita::test::SyscallFault any_call(int nr, int error) {
  return {.nr = nr, .error = error, .min_arg0 = 0};
}

// The plan's first step of `kind`, as the spawn's error names it.
std::string first_step(const Attempt& attempt, MountOp::Kind kind, const std::string& work) {
  auto plan = detail::sandbox_mount_plan(attempt.policy, "/bin/true", work);
  if (!plan) return "(no plan: " + plan.error().message() + ")";
  for (const MountOp& op : *plan) {
    if (op.kind != kind) continue;
    if (!op.what.empty()) return op.what;
    const std::string inside = op.target.substr(8);  // past "/newroot"
    return (kind == MountOp::Kind::Mkdir ? "mkdir " : "symlink ") + inside;
  }
  return "(no such step)";
}

TEST(SandboxSpawn, EachSupervisorStepThatFailsIsNamedWithTheKernelsReason) {
  PEPITA_REQUIRE_CAPABILITY(root);
  expect_spawn_fails(any_call(SCMP_SYS(mount), EPERM),
                     "sandbox: cannot make the mounts private: Operation not permitted");
  expect_spawn_fails(any_call(SCMP_SYS(pivot_root), EINVAL),
                     "sandbox: cannot pivot_root into the new root: Invalid argument");
  expect_spawn_fails(any_call(SCMP_SYS(umount2), EBUSY),
                     "sandbox: cannot pivot_root into the new root: Device or resource busy");
  expect_spawn_fails(any_call(SCMP_SYS(sethostname), EPERM),
                     "sandbox: cannot set the hostname: Operation not permitted");
  for (const int nr : {SCMP_SYS(setresgid), SCMP_SYS(setgroups), SCMP_SYS(setresuid)}) {
    SCOPED_TRACE(nr);
    expect_spawn_fails(any_call(nr, EPERM),
                       "sandbox: cannot switch to the sandbox's uid/gid: Operation not permitted");
  }
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(dup3), .error = EBADF},
                     "sandbox: cannot set up stdin/stdout/stderr: Bad file descriptor");
  // prctl's option is its first argument: PR_CAPBSET_DROP is 24, PR_SET_NO_NEW_PRIVS 38, those
  // before them (PR_SET_PDEATHSIG, PR_SET_DUMPABLE) are below.
  expect_spawn_fails(
      pepita::test::SyscallFault{
          .nr = SCMP_SYS(prctl), .error = EPERM, .min_arg0 = PR_CAPBSET_DROP},
      "sandbox: cannot drop the capability bounding set: Operation not permitted");
  expect_spawn_fails(
      pepita::test::SyscallFault{
          .nr = SCMP_SYS(prctl), .error = EPERM, .min_arg0 = PR_SET_NO_NEW_PRIVS},
      "sandbox: cannot set no_new_privs: Operation not permitted");
  expect_spawn_fails(any_call(SCMP_SYS(seccomp), EINVAL),
                     "sandbox: cannot install the seccomp filter: Invalid argument");
  expect_spawn_fails(any_call(SCMP_SYS(signalfd4), EMFILE),
                     "sandbox: cannot set up signals: Too many open files");
  expect_spawn_fails(any_call(SCMP_SYS(execve), EACCES),
                     "cannot start '/bin/true' in its sandbox: Permission denied");
}

TEST(SandboxSpawn, AFailedStepOfTheRootIsNamedAsThePlanNamesIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const Attempt standard;
  WorkDir work("sandbox-step-name");
  expect_spawn_fails(any_call(SCMP_SYS(mkdir), EPERM),
                     "sandbox: cannot " + first_step(standard, MountOp::Kind::Mkdir, work.path()) +
                         ": Operation not permitted (EPERM)");
  expect_spawn_fails(any_call(SCMP_SYS(symlink), EPERM),
                     "sandbox: cannot " +
                         first_step(standard, MountOp::Kind::Symlink, work.path()) +
                         ": Operation not permitted (EPERM)");
  const std::string bind = first_step(standard, MountOp::Kind::BindRO, work.path());
  // A bind refused for lack of permission says what to do; any other reason is the kernel's.
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(mount_setattr), .error = EPERM},
                     "sandbox: cannot " + bind +
                         ": Operation not permitted; the sandbox builds its root as uid 65534: "
                         "make the path readable by it and its parent dirs searchable");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(mount_setattr), .error = EROFS},
                     "sandbox: cannot " + bind + ": Read-only file system", standard, true);
}

TEST(SandboxSpawn, AStrictSandboxThatCannotBringUpItsLoopbackIsALaunchFailure) {
  PEPITA_REQUIRE_CAPABILITY(root);
  Attempt strict;
  strict.policy = SandboxPolicy::strict();
  expect_spawn_fails(any_call(SCMP_SYS(socket), EAFNOSUPPORT),
                     "sandbox: cannot bring up loopback: Address family not supported by protocol",
                     strict);
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(ioctl), .error = ENODEV},
                     "sandbox: cannot bring up loopback: No such device", strict);
}

TEST(SandboxSpawn, TheParentsOwnStepsNameTheCallThatFailed) {
  PEPITA_REQUIRE_CAPABILITY(root);
  Attempt without_user_ns;  // no id maps to write: the release is the first write
  without_user_ns.policy.user_ns = false;
  Attempt pinned;
  pinned.cpus = {0};
  Attempt cgroup_unwritable;
  cgroup_unwritable.cgroup_unwritable = true;
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(pipe2), .error = EMFILE},
                     "sandbox: pipe: Too many open files");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(mprotect), .error = ENOMEM},
                     "sandbox: mprotect the supervisor's guard page: Cannot allocate memory");
  // Only the supervisor's clone makes a user namespace (glibc's fork passes smaller flags);
  // ENOSPC is what user.max_user_namespaces reached gives.
  expect_spawn_fails(
      pepita::test::SyscallFault{.nr = SCMP_SYS(clone), .error = ENOSPC, .min_arg0 = CLONE_NEWUSER},
      "sandbox: clone into new namespaces (user namespaces need "
      "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or run as root): "
      "No space left on device");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(setpgid), .error = ESRCH},
                     "sandbox: setpgid: No such process");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(openat), .error = EACCES},
                     "/uid_map: Permission denied");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(write), .error = EIO},
                     "write '65534 65534 1\n' to /proc/");
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(sched_setaffinity), .error = EINVAL},
                     "sandbox: sched_setaffinity: Invalid argument", pinned);
  expect_spawn_fails(std::nullopt, "sandbox: join the attempt's cgroup: Bad file descriptor",
                     cgroup_unwritable);
  expect_spawn_fails(pepita::test::SyscallFault{.nr = SCMP_SYS(write), .error = EIO},
                     "sandbox: release the supervisor: Input/output error", without_user_ns);
}

// ---- a task that starts ----

// A supervisor that shares our memory (root, a user namespace, no memory limit) leaves us not
// dumpable for good; one with a copy (a memory limit) leaves us as we were. Either way its report
// gives the task's exit status.
TEST(SandboxSpawn, OnlyASupervisorSharingOurMemoryLeavesUsNotDumpable) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-dumpable");
  const SandboxPolicy policy = SandboxPolicy::standard();
  for (const bool memory_limit : {false, true}) {
    SCOPED_TRACE(memory_limit ? "a memory limit" : "no memory limit");
    const auto code = pepita::test::run_forked([&] {
      // Dumpable to begin with (an earlier sandbox of this test process may have cleared it).
      ASSERT_EQ(::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
      const int null = ::open("/dev/null", O_RDWR);
      ASSERT_GE(null, 3);
      task::ProcessSpec spec("/bin/sh");
      spec.args = {"-c", "exit 7"};
      spec.cwd = work.path();
      detail::SpawnExtras extras;
      extras.memory_limit = memory_limit;
      auto child = detail::spawn_sandboxed(spec, {null, null, null}, 0, extras, policy);
      ASSERT_TRUE(child) << child.error().message();
      EXPECT_EQ(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), memory_limit ? 1 : 0);
      int status = 0;
      ASSERT_EQ(::waitpid(child->pid, &status, 0), child->pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
      child->memory.reaped();
      const detail::SandboxOutcome out =
          detail::read_sandbox_outcome(child->report.get(), policy.id);
      EXPECT_TRUE(out.reported);
      EXPECT_EQ(out.code, CLD_EXITED);
      EXPECT_EQ(out.status, 7);
      EXPECT_EQ(out.reason, "");
    });
    EXPECT_EQ(code, 0);
  }
}

}  // namespace
}  // namespace pepita::executor
