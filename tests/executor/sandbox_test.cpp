// Issue 23's jailer, with real namespaces and a real filter: a normal program runs and looks the
// same as without a sandbox, and each hostile task (tests/executor/sandbox_hostile.cc) is stopped
// and reported. The pure parts (the mount plan, the filter's table) are tested without a sandbox.
#include "pepita/task/sandbox.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/mount_namespace.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "detail/sandbox_spawn.hpp"
#include "executor/process_test_util.hpp"
#include "executor/sandbox_test_util.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/task/affinity.hpp"

namespace pepita::executor {
namespace {

using detail::MountOp;
using task::SandboxPolicy;
using task::Task;
using test::make;
using test::run_one;
using test::staging_candidates;
using test::WorkDir;
using namespace std::chrono_literals;

constexpr const char* kHostile = PEPITA_SANDBOX_HOSTILE;

Task sh_in(const std::string& dir, const std::string& script, const SandboxPolicy& policy) {
  return Task::binary("/bin/sh").args({"-c", script}).cwd(dir).sandbox(policy).build().value();
}

Task hostile_in(const std::string& dir, std::vector<std::string> args,
                const SandboxPolicy& policy) {
  return Task::binary(kHostile).args(std::move(args)).cwd(dir).sandbox(policy).build().value();
}

bool has_op(const std::vector<MountOp>& plan, MountOp::Kind kind, const std::string& target) {
  return std::any_of(plan.begin(), plan.end(), [&](const MountOp& op) {
    return op.kind == kind && op.target == "/newroot" + target;
  });
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool inside(const std::string& path, const std::string& dir) {
  return path == dir || path.starts_with(dir + "/");
}

// ---- the pure parts ----

TEST(SandboxPlan, BindsSystemDirsReadOnlyAndTheWorkDirWritableButNeverShadow) {
  WorkDir work("sandbox-plan");
  auto plan = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRO, "/usr") ||
              has_op(*plan, MountOp::Kind::Symlink, "/usr"));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::Copy, "/etc/passwd"));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRW, work.path()));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::Proc, "/proc"));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRW, "/dev/null"));
  for (const MountOp& op : *plan) {
    EXPECT_EQ(op.source.find("shadow"), std::string::npos) << op.source;
    EXPECT_EQ(op.target.find("shadow"), std::string::npos) << op.target;
    EXPECT_NE(op.source, "/oldroot/dev/tty");
  }
}

TEST(SandboxPlan, CopiesTheEtcFilesWithTheHostsContentsAndModeAndSharesThemBetweenPlans) {
  WorkDir work("sandbox-plan");
  auto first = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
  auto second = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
  ASSERT_TRUE(first && second);
  auto passwd = [](const std::vector<MountOp>& plan) {
    return std::find_if(plan.begin(), plan.end(), [](const MountOp& op) {
      return op.kind == MountOp::Kind::Copy && op.target == "/newroot/etc/passwd";
    });
  };
  const auto a = passwd(*first), b = passwd(*second);
  ASSERT_NE(a, first->end());
  ASSERT_NE(b, second->end());
  ASSERT_TRUE(a->data);
  std::ifstream host(std::filesystem::canonical("/etc/passwd"));
  const std::string text((std::istreambuf_iterator<char>(host)), std::istreambuf_iterator<char>());
  EXPECT_EQ(*a->data, text);
  struct stat st {};
  ASSERT_EQ(::stat("/etc/passwd", &st), 0);
  EXPECT_EQ(a->mode, st.st_mode & 0777);
  EXPECT_EQ(a->data, b->data);  // read once, while the host's file is unchanged
}

// Each copy keeps its source's permission bits, not the default 0644: on hosts (containers)
// whose /etc/hosts or /etc/resolv.conf is 0755 or 0600, a task must see the same mode.
TEST(SandboxPlan, EveryCopiedEtcFileKeepsItsSourcesPermissionBits) {
  WorkDir work("sandbox-plan");
  auto plan = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  std::size_t copies = 0;
  for (const MountOp& op : *plan) {
    if (op.kind != MountOp::Kind::Copy) continue;
    ++copies;
    struct stat st {};
    ASSERT_EQ(::stat(op.source.c_str(), &st), 0) << op.source;
    EXPECT_EQ(op.mode, st.st_mode & 0777) << op.source;
  }
  EXPECT_GT(copies, 0u);  // /etc/passwd at least
}

// Debian's alternatives (libblas.so.3 -> /etc/alternatives/... -> /usr/lib/...) must resolve
// inside, or torch and numpy's BLAS fail to load in a sandboxed task (issue 30).
// An /etc file too big to copy (over 1 MiB; here a file bound over /etc/hosts in a child's own
// mount namespace) is bound read-only onto a mount point made for it instead.
TEST(SandboxPlan, AnEtcFileTooBigToCopyIsBoundReadOnly) {
  PEPITA_REQUIRE_CAPABILITY(root);  // unshare(CLONE_NEWNS) and a bind over /etc/hosts
  const auto code = pepita::test::run_forked_in_own_mount_namespace([] {
    pepita::test::TempDir tmp("sandbox-plan");
    std::ofstream(tmp.file("hosts")) << std::string((1 << 20) + 1, '#') << std::flush;
    ASSERT_EQ(::mount(tmp.file("hosts").c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr), 0)
        << std::strerror(errno);
    WorkDir work("sandbox-plan");
    auto plan = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
    ASSERT_TRUE(plan) << plan.error().message();
    EXPECT_FALSE(has_op(*plan, MountOp::Kind::Copy, "/etc/hosts"));
    const auto touch = std::find_if(plan->begin(), plan->end(), [](const MountOp& op) {
      return op.kind == MountOp::Kind::Touch && op.target == "/newroot/etc/hosts";
    });
    ASSERT_NE(touch, plan->end()) << "no mount point for /etc/hosts";
    ASSERT_NE(touch + 1, plan->end());
    EXPECT_EQ((touch + 1)->kind, MountOp::Kind::BindRO);
    EXPECT_EQ((touch + 1)->target, "/newroot/etc/hosts");
    EXPECT_EQ((touch + 1)->what, "bind /etc/hosts");
    EXPECT_TRUE((touch + 1)->source.ends_with("/etc/hosts")) << (touch + 1)->source;
    ASSERT_EQ(::umount2("/etc/hosts", 0), 0) << std::strerror(errno);
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
}

TEST(SandboxPlan, BindsEtcAlternativesReadOnlyWhereTheHostHasIt) {
  struct stat st {};
  if (::lstat("/etc/alternatives", &st) != 0 || !S_ISDIR(st.st_mode))
    GTEST_SKIP() << "this host has no /etc/alternatives directory (not Debian-like)";
  WorkDir work("sandbox-plan");
  auto plan = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRO, "/etc/alternatives"));
  EXPECT_FALSE(has_op(*plan, MountOp::Kind::BindRW, "/etc/alternatives"));
}

TEST(SandboxPlan, DiskPutsTheWorkDirOnASizedTmpfsInsteadOfABind) {
  WorkDir work("sandbox-plan");
  SandboxPolicy p = SandboxPolicy::strict();
  p.disk = 1 << 20;
  auto plan = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_FALSE(has_op(*plan, MountOp::Kind::BindRW, work.path()));
  auto tmpfs = std::find_if(plan->begin(), plan->end(), [&](const MountOp& op) {
    return op.kind == MountOp::Kind::Tmpfs && op.target == "/newroot" + work.path();
  });
  ASSERT_NE(tmpfs, plan->end());
  EXPECT_NE(tmpfs->options.find("size=1048576"), std::string::npos) << tmpfs->options;
}

TEST(SandboxPlan, BindsABinaryOutsideTheSystemDirsAndTheDeclaredPaths) {
  WorkDir work("sandbox-plan");
  WorkDir input("sandbox-input");
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {input.path()};
  auto plan = detail::sandbox_mount_plan(p, kHostile, work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRO, std::filesystem::canonical(kHostile).string()));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRO, input.path()));
}

TEST(SandboxPlan, WithoutAPidNamespaceProcIsTheHostsReadOnly) {
  WorkDir work("sandbox-plan");
  SandboxPolicy p = SandboxPolicy::standard();
  p.pid_ns = false;
  auto plan = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_FALSE(has_op(*plan, MountOp::Kind::Proc, "/proc"));
  EXPECT_TRUE(has_op(*plan, MountOp::Kind::BindRO, "/proc"));
}

TEST(SandboxPlan, TheRootIsBuiltOverADirNoBindReadsFromAndWithTwoPivotsWhenEveryOneIsBound) {
  WorkDir work("sandbox-plan");
  const std::vector<std::string> dirs = staging_candidates();
  if (dirs.size() < 2) GTEST_SKIP() << "this host has fewer than two of /mnt, /srv, /opt, ...";
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {dirs[0]};
  auto plan = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  const char* staging = detail::sandbox_staging_dir(*plan);
  ASSERT_NE(staging, nullptr);
  EXPECT_NE(staging, dirs[0]);  // its tmpfs would hide the bind's source
  const std::string work_dir = std::filesystem::canonical(work.path()).string();
  EXPECT_FALSE(inside(work_dir, staging)) << staging << " holds the work dir " << work_dir;
  // Every candidate a bind's source (the work dir's bind covers the one holding it).
  p.read_only.clear();
  for (const auto& d : dirs)
    if (!inside(work_dir, d)) p.read_only.push_back(d);
  plan = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  EXPECT_EQ(detail::sandbox_staging_dir(*plan), nullptr);
}

TEST(SandboxPlan, RefusesARelativeOrMissingPathAndTheRootAsWorkDir) {
  WorkDir work("sandbox-plan");
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {"relative/dir"};
  auto rel = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_FALSE(rel);
  EXPECT_NE(rel.error().message().find("not absolute"), std::string::npos);
  p.read_only = {work.path() + "/missing"};
  auto missing = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("does not exist"), std::string::npos);
  auto root = detail::sandbox_mount_plan(SandboxPolicy::standard(), "/bin/sh", "/");
  ASSERT_FALSE(root);
  EXPECT_NE(root.error().message().find("other than '/'"), std::string::npos);
}

TEST(SandboxFilter, DeniesTheEscapeSyscallsAndNamesThem) {
  auto filter = detail::sandbox_filter(65534);
  ASSERT_TRUE(filter) << filter.error().message();
  EXPECT_FALSE((*filter)->program.empty());
  for (const char* name : {"ptrace", "mount", "init_module", "bpf", "setuid", "keyctl",
                           "perf_event_open", "userfaultfd", "open_by_handle_at", "kexec_load"}) {
    const auto& d = (*filter)->denied;
    EXPECT_TRUE(std::any_of(d.begin(), d.end(), [&](const auto& e) { return e.second == name; }))
        << name;
  }
  EXPECT_EQ((*filter)->name(SYS_ptrace), "ptrace");
  EXPECT_EQ((*filter)->name(SYS_getpid), "syscall " + std::to_string(SYS_getpid));
}

TEST(Sandbox, DeclaredPathsWithoutAMountNamespaceAreRefused) {
  WorkDir work("sandbox-custom");
  SandboxPolicy p = SandboxPolicy::standard();
  p.level = task::SandboxLevel::Custom;
  p.mount_ns = false;
  p.disk = 1 << 20;
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "true", p));
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("need the mount namespace"), std::string::npos) << r.error;
}

std::vector<pid_t> processes_with(const std::string& token);

// ---- a normal program ----

TEST(Sandbox, RunsAShellScriptWithItsExitCodeOutputAndWorkDir) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-run");
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(),
                                "echo out; echo err >&2; echo data > result.txt; "
                                "cat result.txt; hostname; exit 7",
                                SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.stdout_data, "out\ndata\npepita-sandbox\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  std::ifstream result(work.file("result.txt"));
  std::string line;
  EXPECT_TRUE(std::getline(result, line));
  EXPECT_EQ(line, "data");
}

TEST(Sandbox, TheTaskSeesOnlyItsOwnProcessesAndNoHostMounts) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-pidns");
  auto exec = make();
  auto r = run_one(
      *exec, sh_in(work.path(),
                   "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                   "ls /proc | grep -c '^[0-9]*$'; ls /; test -e /home && echo home; "
                   "grep -c . /proc/self/mountinfo >&2; grep oldroot /proc/self/mountinfo; true",
                   SandboxPolicy::standard()));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  std::istringstream lines(r.stdout_data);
  std::string self, init, count;
  std::getline(lines, self);
  std::getline(lines, init);
  std::getline(lines, count);
  EXPECT_EQ(self, "2");  // the supervisor is 1
  EXPECT_NE(init.find("pepita_executor_tests"), std::string::npos) << init;
  EXPECT_LE(std::stoi(count), 4) << r.stdout_data;  // supervisor, sh, ls, grep
  EXPECT_EQ(r.stdout_data.find("home"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("root\n"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("oldroot"), std::string::npos) << r.stdout_data;  // detached
  EXPECT_LE(std::stoi(r.stderr_data), 40) << "mounts: " << r.stderr_data;
}

// One pivot: the root's tmpfs goes over a host dir no bind reads from. A bind of the first
// candidate must show the host's files, not the root being built over it.
TEST(Sandbox, ABindOfTheFirstDirTheRootCouldBeBuiltOverShowsTheHostsFiles) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const std::vector<std::string> dirs = staging_candidates();
  if (dirs.empty()) GTEST_SKIP() << "this host has none of /mnt, /srv, /opt, ...";
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dirs[0]))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string host;
  for (const auto& n : names) host += n + "\n";
  WorkDir work("sandbox-staging");
  SandboxPolicy p = SandboxPolicy::strict();
  p.read_only = {dirs[0]};
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "LC_ALL=C ls -A1 " + dirs[0], p));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, host);
}

// Every candidate dir bound: bubblewrap's two pivots build the root, and leave nothing behind.
TEST(Sandbox, WithEveryDirTheRootCouldBeBuiltOverBoundTwoPivotsBuildIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-two-pivots");
  const std::string work_dir = std::filesystem::canonical(work.path()).string();
  SandboxPolicy p = SandboxPolicy::standard();
  for (const auto& d : staging_candidates())
    if (!inside(work_dir, d)) p.read_only.push_back(d);
  auto plan = detail::sandbox_mount_plan(p, "/bin/sh", work.path());
  ASSERT_TRUE(plan) << plan.error().message();
  ASSERT_EQ(detail::sandbox_staging_dir(*plan), nullptr);  // the path under test
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(),
                                "echo x > out && cat out && test -x /usr/bin/env && echo usr; "
                                "grep -c oldroot /proc/self/mountinfo; true",
                                p));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "x\nusr\n0\n");
}

TEST(Sandbox, TheEtcFilesAreTheHostsAndReadOnly) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-etc");
  auto exec = make();
  auto r =
      run_one(*exec, sh_in(work.path(),
                           "cat /etc/passwd; echo x >> /etc/passwd && echo wrote; "
                           "rm /etc/hosts && echo removed; test -e /etc/shadow && echo shadow; "
                           "true",
                           SandboxPolicy::standard()));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  std::ifstream host("/etc/passwd");
  const std::string text((std::istreambuf_iterator<char>(host)), std::istreambuf_iterator<char>());
  EXPECT_EQ(r.stdout_data, text);  // nothing written, removed, and no shadow
  EXPECT_NE(r.stderr_data.find("Read-only file system"), std::string::npos) << r.stderr_data;
}

TEST(Sandbox, ASignalThatKillsTheTaskPassesThrough) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-signal");
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "kill -TERM $$", SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Signaled) << r.error;
  EXPECT_EQ(r.signal, SIGTERM);
}

TEST(Sandbox, TheTaskHasNoCapabilitiesAndIsNotRootOutside) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-caps");
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(),
                                "grep CapEff /proc/self/status; grep CapBnd /proc/self/status; "
                                "cat /proc/self/uid_map; id -u",
                                SandboxPolicy::standard()));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_NE(r.stdout_data.find("CapEff:\t0000000000000000"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("CapBnd:\t0000000000000000"), std::string::npos) << r.stdout_data;
  // uid_map: "<inside> <outside> 1"; the outside id is the policy's, never 0.
  EXPECT_NE(r.stdout_data.find("65534      65534          1"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("\n65534\n"), std::string::npos) << r.stdout_data;
}

TEST(Sandbox, ReadsADeclaredReadOnlyInputButCannotWriteIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-ro");
  WorkDir input("sandbox-input");
  write_text(input.file("in.txt"), "input\n");
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {input.path()};
  auto exec = make();
  auto r = run_one(
      *exec, sh_in(work.path(),
                   "cat " + input.file("in.txt") + " && echo x > " + input.file("new.txt"), p));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.stdout_data, "input\n");
  EXPECT_NE(r.stderr_data.find("Read-only file system"), std::string::npos) << r.stderr_data;
  EXPECT_FALSE(std::filesystem::exists(input.file("new.txt")));
}

TEST(Sandbox, RlimitsAndAWritableBindApplyAndCoreDumpsAreOff) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-limits");
  WorkDir out("sandbox-out");
  SandboxPolicy p = SandboxPolicy::standard();
  p.level = task::SandboxLevel::Custom;
  p.max_open_files = 64;
  p.max_file_size = 4096;
  p.writable = {out.path()};
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(),
                                "ulimit -n; ulimit -c; echo shared > " + out.file("x.txt") +
                                    "; head -c 8192 /dev/zero > big",
                                p));
  // Writing past RLIMIT_FSIZE raises SIGXFSZ in head.
  EXPECT_EQ(r.status, Status::Failed) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "64\n0\n");
  std::ifstream shared(out.file("x.txt"));
  std::string line;
  EXPECT_TRUE(std::getline(shared, line));
  EXPECT_EQ(line, "shared");
  EXPECT_LE(std::filesystem::file_size(work.file("big")), 4096u);
}

// An rlimit the kernel refuses (RLIMIT_NOFILE above fs.nr_open) fails the launch naming the
// supervisor's step and the kernel's reason; the executor runs the next task.
TEST(Sandbox, AnRlimitTheKernelRefusesIsALaunchFailureNamingTheStep) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-rlimit");
  SandboxPolicy p = SandboxPolicy::standard();
  p.level = task::SandboxLevel::Custom;
  p.max_open_files = 1ull << 40;
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "echo ran", p));
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_NE(r.error.find("sandbox: cannot set the rlimits: "), std::string::npos) << r.error;
  p.max_open_files = 64;
  auto next = run_one(*exec, sh_in(work.path(), "echo ran", p));
  EXPECT_EQ(next.status, Status::Succeeded) << next.error;
  EXPECT_EQ(next.stdout_data, "ran\n");
}

// A work dir the sandbox's uid may not enter (mode 0600: bound, but no search permission) fails
// the launch naming the supervisor's step, and nothing runs.
TEST(Sandbox, AWorkDirTheSandboxIdCannotEnterIsALaunchFailureNamingTheStep) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-chdir");
  std::filesystem::permissions(
      work.path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "echo ran", SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_NE(r.error.find("sandbox: cannot chdir into the work dir: "), std::string::npos)
      << r.error;
}

// A pinned sandboxed task runs on its cores only (the supervisor is pinned before it starts).
TEST(Sandbox, APinnedTaskRunsOnlyOnItsCores) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-pinned");
  const unsigned last = task::online_cpus().value().back();
  auto exec = make();
  auto r = run_one(*exec, Task::binary("/bin/sh")
                              .args({"-c", "grep Cpus_allowed_list /proc/self/status"})
                              .cwd(work.path())
                              .sandbox(SandboxPolicy::standard())
                              .affinity(task::CpuAffinity::Core(last))
                              .build()
                              .value());
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "Cpus_allowed_list:\t" + std::to_string(last) + "\n");
}

// A program name not found on PATH is a launch failure naming it, before any namespace is made.
TEST(Sandbox, AProgramNotOnThePathIsALaunchFailureNamingIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-path");
  auto exec = make();
  auto r = run_one(*exec, Task::binary("pepita-no-such-program")
                              .cwd(work.path())
                              .sandbox(SandboxPolicy::standard())
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("cannot start 'pepita-no-such-program'"), std::string::npos) << r.error;
}

TEST(Sandbox, TheTaskHasItsOwnIpcNamespace) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-ipc");
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "readlink /proc/self/ns/ipc /proc/self/ns/uts",
                                SandboxPolicy::standard()));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  char ours[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/ipc", ours, sizeof ours - 1), 0);
  EXPECT_EQ(r.stdout_data.find(ours), std::string::npos) << r.stdout_data << " vs " << ours;
  EXPECT_NE(r.stdout_data.find("ipc:["), std::string::npos) << r.stdout_data;
}

TEST(Sandbox, AMissingBinaryIsALaunchFailureNamingIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-missing");
  auto exec = make();
  auto r = run_one(*exec, Task::binary(work.file("no-such-binary"))
                              .cwd(work.path())
                              .sandbox(SandboxPolicy::standard())
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("no-such-binary"), std::string::npos) << r.error;
}

TEST(Sandbox, ATimeoutStopsTheTaskThroughItsSupervisor) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-timeout");
  auto exec = make();
  Task t = Task::binary("/bin/sleep")
               .args({"100"})
               .cwd(work.path())
               .timeout(1s)
               .sandbox(SandboxPolicy::standard())
               .build()
               .value();
  auto r = run_one(*exec, t);
  EXPECT_EQ(r.status, Status::TimedOut) << r.error;
  // The supervisor forwarded the executor's SIGTERM to the task: no SIGKILL was needed.
  EXPECT_EQ(r.signal, SIGTERM) << r.error;
}

TEST(Sandbox, CancellingStopsTheTaskAndEverythingItStarted) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-cancel");
  auto exec = make();
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    stop.request_stop();
  });
  // The shell ignores SIGTERM; its sleep does not: the grace period's SIGKILL ends the supervisor
  // and with it the namespace.
  const std::string nap = "100." + std::to_string(::getpid());  // names its processes
  auto r = run_one(*exec,
                   sh_in(work.path(), "trap '' TERM; sleep " + nap + " & wait; sleep " + nap,
                         SandboxPolicy::standard()),
                   stop.get_token());
  canceller.join();
  EXPECT_EQ(r.status, Status::Cancelled) << r.error;
  EXPECT_TRUE(processes_with(nap).empty());
}

TEST(Sandbox, APipelineRunsEachStageInItsOwnSandbox) {
  PEPITA_REQUIRE_CAPABILITY(root);
  auto exec = make();
  Task t = Task::pipeline()
               .add_stage(task::BinaryTask("seq").with_args({"1", "100"}))
               .add_stage(task::BinaryTask("grep").with_args({"7"}))
               .add_stage(task::BinaryTask("wc").with_args({"-l"}))
               .sandbox(SandboxPolicy::strict())
               .build()
               .value();
  auto r = run_one(*exec, t);
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "19\n");
}

TEST(Sandbox, TheHarmlessDevicesWorkInsideTheSandbox) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-devices");
  auto exec = make();
  // /dev's binds are device nodes the task can open (not nodev like every other bind).
  auto r = run_one(*exec, sh_in(work.path(),
                                "echo gone > /dev/null && cat /dev/null && echo null; "
                                "head -c 5 /dev/zero | wc -c; head -c 6 /dev/urandom | wc -c; "
                                "head -c 7 /dev/random | wc -c; echo x > /dev/full || echo full",
                                SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "null\n5\n6\n7\nfull\n") << r.stderr_data;
  EXPECT_EQ(r.stderr_data.find("Permission denied"), std::string::npos) << r.stderr_data;
}

// The pipes this process has open, as /proc/self/fd names them ("pipe:[123]").
std::vector<std::string> open_pipes() {
  std::vector<std::string> pipes;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    if (!ec && target.starts_with("pipe:")) pipes.push_back(target);
  }
  std::sort(pipes.begin(), pipes.end());
  return pipes;
}

TEST(Sandbox, APipelineWhoseLaterStageCannotStartLeavesNoSupervisorPipeOpen) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-half-started");
  auto made = ProcessExecutor::create({.slots = 1});
  ASSERT_TRUE(made) << made.error().message();
  auto& exec = **made;
  // A first attempt in the slot: whatever the slot keeps between attempts is made now.
  auto warm = run_one(exec, sh_in(work.path(), "true", SandboxPolicy::standard()));
  ASSERT_EQ(warm.status, Status::Succeeded) << warm.error << warm.stderr_data;
  const std::vector<std::string> before = open_pipes();
  // Stage 0 starts under its supervisor; stage 1's binary is missing: the attempt is undone, and
  // the first supervisor's report pipe is closed with it (not kept until the slot's next attempt).
  Task t = Task::pipeline()
               .add_stage(task::BinaryTask("sleep").with_args({"100"}))
               .add_stage(task::BinaryTask(work.file("no-such-binary")))
               .cwd(work.path())
               .sandbox(SandboxPolicy::standard())
               .build()
               .value();
  auto r = run_one(exec, t);
  EXPECT_EQ(r.status, Status::LaunchFailed) << r.error;
  EXPECT_NE(r.error.find("no-such-binary"), std::string::npos) << r.error;
  // The result is delivered before the reactor's launch closes its own pipes (stdout, stderr, the
  // link between the stages): give it time to return. A leaked report pipe never closes.
  std::vector<std::string> after = open_pipes();
  for (auto until = std::chrono::steady_clock::now() + 10s;
       after != before && std::chrono::steady_clock::now() < until; after = open_pipes())
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(after, before);
}

TEST(Sandbox, AnUnprivilegedExecutorMapsTheSandboxIdToItsOwnUid) {
  PEPITA_REQUIRE_CAPABILITY(root);
  PEPITA_REQUIRE_CAPABILITY(userns);
  WorkDir work("sandbox-unprivileged");
  constexpr uid_t kUser = 4242;
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  // A child process drops to an ordinary uid and runs its own executor: the non-root path
  // (setgroups "deny", "65534 <own uid> 1", no cgroup: RLIMIT_NPROC).
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(out[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(kUser, kUser, kUser) != 0 ||
        ::setresuid(kUser, kUser, kUser) != 0)
      ::_exit(2);
    auto exec = ProcessExecutor::create({.slots = 1});
    if (!exec) ::_exit(3);
    auto r = run_one(**exec, sh_in(work.path(),
                                   "cat /proc/self/uid_map; id -u; echo hi > mine; "
                                   "cat /proc/1/environ > /dev/null 2>&1 && echo LEAKED; true",
                                   SandboxPolicy::standard()));
    const std::string text = std::string(to_string(r.status))
                                 .append("|")
                                 .append(r.stdout_data)
                                 .append("|")
                                 .append(r.error)
                                 .append(r.stderr_data);
    (void)!::write(out[1], text.data(), text.size());
    ::_exit(0);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(text.rfind("succeeded|", 0), 0u) << text;
  EXPECT_NE(text.find("65534       4242          1"), std::string::npos) << text;
  EXPECT_EQ(text.find("LEAKED"), std::string::npos) << text;  // the supervisor shares our uid
  EXPECT_NE(text.find("\n65534\n"), std::string::npos) << text;
  struct stat st {};
  ASSERT_EQ(::stat(work.file("mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kUser);
}

TEST(Sandbox, ADeclaredPathTheSandboxIdCannotReachIsALaunchFailureSayingWhy) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-unreachable");
  pepita::test::TempDir closed("sandbox-closed");  // 0700, root's
  write_text(closed.file("in.txt"), "input\n");
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {closed.file("in.txt")};
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(), "cat " + closed.file("in.txt"), p));
  EXPECT_EQ(r.status, Status::LaunchFailed) << r.error;
  EXPECT_NE(r.error.find("bind " + closed.file("in.txt")), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("uid 65534"), std::string::npos) << r.error;
}

// ---- the escapes ----

TEST(SandboxEscape, CannotReadEtcShadow) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-shadow");
  auto exec = make();
  auto r =
      run_one(*exec, hostile_in(work.path(), {"read", "/etc/shadow"}, SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Failed) << r.error << r.stdout_data;
  EXPECT_NE(r.stderr_data.find("No such file"), std::string::npos) << r.stderr_data;
}

TEST(SandboxEscape, CannotReadAKeyFileOutsideTheBinds) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-key");
  WorkDir secret("sandbox-secret");
  write_text(secret.file("worker.key"), "secret\n");
  ::chmod(secret.file("worker.key").c_str(), 0644);  // only the mount namespace hides it
  auto exec = make();
  auto r = run_one(*exec, hostile_in(work.path(), {"read", secret.file("worker.key")},
                                     SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.stdout_data.find("secret"), std::string::npos);
  EXPECT_NE(r.stderr_data.find("No such file"), std::string::npos) << r.stderr_data;
}

TEST(SandboxEscape, CannotReadTheSupervisorsCopyOfTheWorkersMemory) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-supervisor");
  auto exec = make();
  for (const char* path : {"/proc/1/environ", "/proc/1/mem", "/proc/1/maps"}) {
    auto r = run_one(*exec, hostile_in(work.path(), {"read", path}, SandboxPolicy::standard()));
    EXPECT_EQ(r.status, Status::Failed) << path << ": " << r.error << r.stdout_data;
    EXPECT_NE(r.stderr_data.find("Permission denied"), std::string::npos)
        << path << ": " << r.stderr_data;
  }
}

TEST(SandboxEscape, CannotWriteOutsideTheWorkDir) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-write");
  WorkDir other("sandbox-other");
  auto exec = make();
  for (const std::string& target :
       {other.file("escaped.txt"), std::string("/usr/escaped.txt"), std::string("/escaped.txt")}) {
    auto r = run_one(*exec, hostile_in(work.path(), {"write", target}, SandboxPolicy::standard()));
    EXPECT_EQ(r.status, Status::Failed) << target << ": " << r.error << r.stdout_data;
    EXPECT_FALSE(std::filesystem::exists(target)) << target;
  }
  EXPECT_FALSE(std::filesystem::exists(other.file("escaped.txt")));
}

TEST(SandboxEscape, CannotListAnotherAttemptsWorkDir) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-list");
  WorkDir other("sandbox-neighbour");
  write_text(other.file("neighbour-output.txt"), "theirs\n");
  auto exec = make();
  auto r =
      run_one(*exec, hostile_in(work.path(), {"list", other.path()}, SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.stdout_data.find("neighbour-output"), std::string::npos) << r.stdout_data;
}

TEST(SandboxEscape, StrictHasNoNetworkToReachTheDriver) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(s, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  WorkDir work("sandbox-net");
  auto exec = make();
  // standard keeps the host's network: the same program reaches the listener...
  auto host = run_one(*exec, hostile_in(work.path(), {"connect", port}, SandboxPolicy::standard()));
  EXPECT_EQ(host.status, Status::Succeeded) << host.error << host.stderr_data;
  // ...strict has only its own loopback.
  auto strict = run_one(*exec, hostile_in(work.path(), {"connect", port}, SandboxPolicy::strict()));
  EXPECT_EQ(strict.status, Status::Failed) << strict.error;
  EXPECT_NE(strict.stderr_data.find("Connection refused"), std::string::npos) << strict.stderr_data;
  ::close(s);
}

// A denied syscall ends the task with status `sandbox` and the syscall's name.
void expect_denied(const std::vector<std::string>& args, const std::string& syscall,
                   const SandboxPolicy& policy = SandboxPolicy::standard()) {
  WorkDir work("sandbox-deny");
  auto exec = make();
  auto r = run_one(*exec, hostile_in(work.path(), args, policy));
  EXPECT_EQ(r.status, Status::Sandboxed)
      << args[0] << ": " << r.error << " / " << r.stdout_data << r.stderr_data;
  EXPECT_EQ(r.error, "sandbox: syscall " + syscall + " denied");
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, SIGKILL);  // the supervisor kills the task at the denied call
  EXPECT_EQ(r.stdout_data, "");
}

TEST(SandboxEscape, PtraceOfItsParentIsDeniedAndReported) {
  PEPITA_REQUIRE_CAPABILITY(root);
  expect_denied({"ptrace"}, "ptrace");
}

TEST(SandboxEscape, MountIsDeniedAndReported) {
  PEPITA_REQUIRE_CAPABILITY(root);
  expect_denied({"mount"}, "mount", SandboxPolicy::strict());
}

TEST(SandboxEscape, LoadingAKernelModuleIsDeniedAndReported) {
  PEPITA_REQUIRE_CAPABILITY(root);
  expect_denied({"init_module"}, "init_module");
}

TEST(SandboxEscape, SetuidZeroIsDeniedAndReported) {
  PEPITA_REQUIRE_CAPABILITY(root);
  expect_denied({"setuid0"}, "setuid");
}

TEST(SandboxEscape, ADeniedSyscallInAGrandchildEndsTheWholeTask) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-grandchild");
  auto exec = make();
  SandboxPolicy p = SandboxPolicy::standard();
  p.read_only = {kHostile};  // the shell is the task: the hostile binary is a declared input
  auto r =
      run_one(*exec, sh_in(work.path(), std::string(kHostile).append(" ptrace; echo survived"), p));
  EXPECT_EQ(r.status, Status::Sandboxed) << r.error;
  EXPECT_EQ(r.error, "sandbox: syscall ptrace denied");
  EXPECT_EQ(r.stdout_data.find("survived"), std::string::npos) << r.stdout_data;
}

TEST(SandboxEscape, CannotKillTheWorker) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-kill");
  auto exec = make();
  auto r = run_one(*exec, hostile_in(work.path(), {"kill", std::to_string(::getpid())},
                                     SandboxPolicy::standard()));
  // In its pid namespace our pid is not even visible.
  EXPECT_EQ(r.status, Status::Failed) << r.error << r.stdout_data;
  EXPECT_NE(r.stderr_data.find("No such process"), std::string::npos) << r.stderr_data;
  EXPECT_TRUE(test::process_running(::getpid()));
}

TEST(SandboxEscape, AForkBombHitsThePidsLimitAndLeavesNothing) {
  PEPITA_REQUIRE_CAPABILITY(root);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  WorkDir work("sandbox-forkbomb");
  SandboxPolicy p = SandboxPolicy::standard();
  p.max_processes = 32;
  auto exec = make();
  auto r = run_one(*exec, hostile_in(work.path(), {"forkbomb", "100000"}, p));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.exit_code, 3) << r.stdout_data;
  const auto at = r.stdout_data.find("fork failed after ");
  ASSERT_NE(at, std::string::npos) << r.stdout_data;
  // The supervisor and the bomb itself count too.
  EXPECT_LE(std::stoul(r.stdout_data.substr(at + 18)), 30u) << r.stdout_data;
  // The host is unharmed: we can still fork.
  auto after = run_one(*exec, Task::binary("/bin/true").build().value());
  EXPECT_EQ(after.status, Status::Succeeded) << after.error;
}

// The names of processes whose command line holds `token`.
std::vector<pid_t> processes_with(const std::string& token) {
  std::vector<pid_t> found;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(token) != std::string::npos && test::process_running(std::stoi(name)))
      found.push_back(std::stoi(name));
  }
  return found;
}

TEST(SandboxEscape, ADaemonLeftBehindDiesWithTheTask) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-daemon");
  const std::string token = "pepita-daemon-token-" + std::to_string(::getpid());
  auto exec = make();
  auto r = run_one(*exec, hostile_in(work.path(), {"daemon", token}, SandboxPolicy::standard()));
  EXPECT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_NE(r.stdout_data.find("left"), std::string::npos);
  // The supervisor was pid 1: its exit took the namespace down before it could be reaped.
  EXPECT_TRUE(processes_with(token).empty());
}

// With a memory limit the supervisor gets a copy of the worker's memory rather than sharing it:
// the OOM killer, which may pick the supervisor, kills every process sharing the victim's memory.
TEST(SandboxEscape, AnOutOfMemoryKillInTheSandboxLeavesTheWorkerRunning) {
  PEPITA_REQUIRE_CAPABILITY(root);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/python3";
  WorkDir work("sandbox-oom");
  task::Allocation limit;
  limit.memory = 64ull << 20;
  const Task hog = Task::binary("/usr/bin/python3")
                       .args({"-c", "b = b'x' * (256 << 20); print(len(b))"})
                       .cwd(work.path())
                       .sandbox(SandboxPolicy::standard())
                       .build()
                       .value()
                       .with_allocation(limit);
  // A worker larger than the limit, so the supervisor, which holds (a copy of) its memory, looks
  // the largest process of the attempt's cgroup to the OOM killer.
  std::vector<char> ballast(160ull << 20);
  for (std::size_t i = 0; i < ballast.size(); i += 4096) ballast[i] = 1;
  auto exec = make();
  auto r = run_one(*exec, hog);
  EXPECT_EQ(r.status, Status::OutOfMemory) << r.error << r.stderr_data;
  // We are the worker: still here, and the executor still runs sandboxes.
  auto after = run_one(*exec, sh_in(work.path(), "echo alive", SandboxPolicy::standard()));
  EXPECT_EQ(after.status, Status::Succeeded) << after.error;
  EXPECT_EQ(after.stdout_data, "alive\n");
}

TEST(SandboxEscape, FillingTheWorkDirStopsAtTheDiskQuota) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-disk");
  SandboxPolicy p = SandboxPolicy::strict();
  p.disk = 1 << 20;
  auto exec = make();
  auto r = run_one(*exec, sh_in(work.path(),
                                "head -c 4194304 /dev/zero > big; s=$?; "
                                "wc -c < big; exit $s",
                                p));
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_NE(r.stderr_data.find("No space left"), std::string::npos) << r.stderr_data;
  EXPECT_LE(std::stoul(r.stdout_data.empty() ? "0" : r.stdout_data), 1u << 20);
  // A tmpfs: the host's work dir never saw the file.
  EXPECT_FALSE(std::filesystem::exists(work.file("big")));
}

// ---- the slot's prepared network namespace (strict's `network = "none"`) ----

// "net:[inode] lo up 127.0.0.1 unrouted": the task's network namespace as it finds it.
std::string netstate(Executor& exec, const std::string& dir) {
  auto r = run_one(exec, hostile_in(dir, {"netstate"}, SandboxPolicy::strict()));
  EXPECT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  return r.stdout_data;
}

std::string ns_of(const std::string& state) { return state.substr(0, state.find(' ')); }

TEST(SandboxEscape, CannotChangeTheSlotsNetworkNamespaceForTheNextTask) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-netadmin");
  auto exec = make();  // one task at a time: every attempt below runs in slot 0
  const std::string before = netstate(*exec, work.path());
  EXPECT_NE(before.find(" lo up 127.0.0.1 unrouted"), std::string::npos) << before;
  auto r = run_one(*exec, hostile_in(work.path(), {"netadmin"}, SandboxPolicy::strict()));
  EXPECT_EQ(r.status, Status::Failed) << r.error << r.stdout_data;
  EXPECT_EQ(r.stdout_data, "");  // nothing it tried worked
  for (const char* what : {"loopback down", "add an address", "add a route"}) {
    EXPECT_NE(r.stderr_data.find(std::string(what) + ": Operation not permitted"),
              std::string::npos)
        << what << ": " << r.stderr_data;
  }
  // The same namespace (reused, as root), exactly as it was.
  EXPECT_EQ(netstate(*exec, work.path()), before);
}

TEST(Sandbox, StrictTasksOfASlotShareItsPreparedLoopbackOnlyNamespace) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-netns-reuse");
  auto exec = make();
  const std::string first = netstate(*exec, work.path());
  const std::string second = netstate(*exec, work.path());
  EXPECT_EQ(ns_of(first), ns_of(second));
  char host[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/net", host, sizeof host - 1), 0);
  EXPECT_NE(ns_of(first), host);  // never the host's
  // standard keeps the host's network.
  auto std_task = run_one(*exec, hostile_in(work.path(), {"netstate"}, SandboxPolicy::standard()));
  EXPECT_EQ(ns_of(std_task.stdout_data), host) << std_task.stdout_data << std_task.stderr_data;
}

TEST(Sandbox, ASocketLeftInTimeWaitGivesTheNextTaskAFreshNetworkNamespace) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-netns-timewait");
  auto exec = make();
  const std::string before = netstate(*exec, work.path());
  auto r = run_one(*exec, hostile_in(work.path(), {"timewait"}, SandboxPolicy::strict()));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "left TIME_WAIT\n");
  const std::string after = netstate(*exec, work.path());
  EXPECT_NE(ns_of(after), ns_of(before)) << "the namespace holding a TIME_WAIT socket was reused";
  EXPECT_NE(after.find(" lo up 127.0.0.1 unrouted"), std::string::npos) << after;
}

// Without a pid namespace something of the task could outlive its supervisor and share the
// slot's loopback with the next task: each such sandbox makes its own (CLONE_NEWNET), loopback up.
TEST(Sandbox, WithoutAPidNamespaceEachTaskGetsALoopbackOnlyNamespaceOfItsOwn) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-netns-own");
  SandboxPolicy p = SandboxPolicy::strict();
  p.level = task::SandboxLevel::Custom;
  p.pid_ns = false;
  auto exec = make();
  auto first = run_one(*exec, hostile_in(work.path(), {"netstate"}, p));
  auto second = run_one(*exec, hostile_in(work.path(), {"netstate"}, p));
  ASSERT_EQ(first.status, Status::Succeeded) << first.error << first.stderr_data;
  ASSERT_EQ(second.status, Status::Succeeded) << second.error << second.stderr_data;
  EXPECT_NE(first.stdout_data.find(" lo up 127.0.0.1 unrouted"), std::string::npos)
      << first.stdout_data;
  EXPECT_NE(ns_of(first.stdout_data), ns_of(second.stdout_data));
  char host[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/net", host, sizeof host - 1), 0);
  EXPECT_NE(ns_of(first.stdout_data), host);
}

TEST(Sandbox, StrictTasksRunningAtOnceNeverShareALoopback) {
  PEPITA_REQUIRE_CAPABILITY(root);
  WorkDir work("sandbox-netns-slots");
  auto exec = make();
  // Both run at once (each holds its slot for a second), so they are in different slots.
  const Task t = sh_in(work.path(), "readlink /proc/self/ns/net; sleep 1", SandboxPolicy::strict());
  std::promise<ExecutionResult> p1, p2;
  ASSERT_TRUE(exec->start(t, {}, [&](ExecutionResult r) { p1.set_value(std::move(r)); }));
  ASSERT_TRUE(exec->start(t, {}, [&](ExecutionResult r) { p2.set_value(std::move(r)); }));
  const ExecutionResult a = p1.get_future().get(), b = p2.get_future().get();
  ASSERT_EQ(a.status, Status::Succeeded) << a.error << a.stderr_data;
  ASSERT_EQ(b.status, Status::Succeeded) << b.error << b.stderr_data;
  EXPECT_NE(a.stdout_data, b.stdout_data);
}

}  // namespace
}  // namespace pepita::executor
