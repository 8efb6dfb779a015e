// Issue 22's enforcement, with real cgroups and real processes: memory limits ending `oom` with
// the peak reported, CPU quota in the cgroup files, GPU ids in the environment, no descendant
// outliving its attempt, and no task outliving its driver (PR_SET_PDEATHSIG).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/require.hpp"
#include "common/syscall_fault.hpp"
#include "common/temp_dir.hpp"
#include "executor/process_test_util.hpp"
#include "pepita/core/cgroup.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/executor/process.hpp"

namespace pepita::executor {
namespace {

using test::make;
using test::process_running;
using test::run_one;
using namespace std::chrono_literals;
using task::Allocation;
using task::Task;

Task sh(const std::string& script) {
  return Task::binary("/bin/sh").args({"-c", script}).build().value();
}

std::string python() {
  return ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

// Writes 300 MiB (so every page is charged to the cgroup), then exits 0.
Task allocate_300m() {
  return Task::binary(python())
      .args({"-c", "b = b'x' * (300 << 20); print(len(b))"})
      .build()
      .value();
}

Allocation alloc(double cpus, std::uint64_t memory, std::vector<std::string> gpus = {},
                 std::vector<unsigned> cores = {}) {
  Allocation a;
  a.cpus = cpus;
  a.memory = memory;
  a.cores = std::move(cores);
  for (auto& id : gpus) a.gpus.push_back({.id = std::move(id), .fraction = 1.0});
  return a;
}

// Liveness, not speed: a generous bound so a loaded machine does not make it flaky.
bool gone_within(pid_t pid, std::chrono::seconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (process_running(pid)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

TEST(ProcessResources, MemoryLimitEndsOomWithPeakWhileTheUnlimitedSiblingSucceeds) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto exec = make();
  const std::uint64_t limit = 200ull << 20;
  const Task limited = allocate_300m().with_allocation(alloc(0, limit));
  std::promise<ExecutionResult> p1, p2;
  ASSERT_TRUE(exec->start(limited, {}, [&](ExecutionResult r) { p1.set_value(std::move(r)); }));
  ASSERT_TRUE(
      exec->start(allocate_300m(), {}, [&](ExecutionResult r) { p2.set_value(std::move(r)); }));
  const ExecutionResult oom = p1.get_future().get();
  const ExecutionResult sibling = p2.get_future().get();

  EXPECT_EQ(oom.status, Status::OutOfMemory) << oom.error;
  EXPECT_EQ(oom.memory_limit, limit);
  EXPECT_GT(oom.peak_memory, limit / 2);
  EXPECT_LE(oom.peak_memory, limit);
  EXPECT_NE(oom.error.find("killed by its memory limit: peak "), std::string::npos) << oom.error;
  EXPECT_NE(oom.error.find("of 200M (memory = \"200M\")"), std::string::npos) << oom.error;
  EXPECT_NE(oom.error.find("memory = \"200M * attempt\""), std::string::npos) << oom.error;
  ASSERT_TRUE(oom.allocation.has_value());
  EXPECT_EQ(oom.allocation->memory, limit);

  EXPECT_EQ(sibling.status, Status::Succeeded) << sibling.error;
  EXPECT_EQ(sibling.stdout_data, std::to_string(300 << 20) + "\n");
  EXPECT_EQ(sibling.memory_limit, 0u);
  EXPECT_GE(sibling.peak_memory, 300ull << 20) << "its cgroup measured the peak too";
}

TEST(ProcessResources, CpuQuotaAndMemoryLimitAreInTheTasksCgroupFiles) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  // The task reads its own cgroup's files (they are removed when it ends).
  const std::string script =
      (*tree)->version() == CgroupVersion::V1
          ? "m=$(grep ':memory:' /proc/self/cgroup | cut -d: -f3); "
            "c=$(grep -E ':cpu(,cpuacct)?:' /proc/self/cgroup | cut -d: -f3); "
            "cat /sys/fs/cgroup/memory$m/memory.limit_in_bytes; "
            "cat /sys/fs/cgroup/cpu$c/cpu.cfs_quota_us /sys/fs/cgroup/cpu$c/cpu.cfs_period_us"
          : "p=$(grep '^0::' /proc/self/cgroup | cut -d: -f3); "
            "cat /sys/fs/cgroup$p/memory.max /sys/fs/cgroup$p/cpu.max";
  auto exec = make();
  const auto r = run_one(*exec, sh(script).with_allocation(alloc(1.5, 64ull << 20)));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  if ((*tree)->version() == CgroupVersion::V1) {
    EXPECT_EQ(r.stdout_data, "67108864\n150000\n100000\n");
  } else {
    EXPECT_EQ(r.stdout_data, "67108864\n150000 100000\n");
  }
}

TEST(ProcessResources, GpuIdsOfTheAllocationAreInEveryGpuVariable) {
  auto exec = make();
  const std::string script =
      "echo \"$CUDA_VISIBLE_DEVICES|$ROCR_VISIBLE_DEVICES|$ZE_AFFINITY_MASK|$PEPITA_GPUS\"";
  const auto two = run_one(*exec, sh(script).with_allocation(alloc(0, 0, {"1", "3"})));
  ASSERT_EQ(two.status, Status::Succeeded) << two.error;
  EXPECT_EQ(two.stdout_data, "1,3|1,3|1,3|1,3\n");
}

TEST(ProcessResources, ATaskWithAnAllocationButNoGpuSeesNoGpuAndOneWithoutIsUntouched) {
  auto exec = make();
  const std::string script = "echo \"${CUDA_VISIBLE_DEVICES-unset}|${PEPITA_GPUS-unset}\"";
  const auto none = run_one(*exec, sh(script).with_allocation(alloc(1, 0)));
  ASSERT_EQ(none.status, Status::Succeeded) << none.error;
  EXPECT_EQ(none.stdout_data, "|\n") << "set and empty: the task asked for no GPU";
  auto plain = Task::binary("/bin/sh").args({"-c", script}).clear_env().build().value();
  const auto untouched = run_one(*exec, plain);
  ASSERT_EQ(untouched.status, Status::Succeeded) << untouched.error;
  EXPECT_EQ(untouched.stdout_data, "unset|unset\n");
}

TEST(ProcessResources, PinnedCoresOfTheAllocationAreTheTasksAffinity) {
  const auto allowed = sys::allowed_cpus();
  ASSERT_FALSE(allowed.empty());
  const auto core = static_cast<unsigned>(allowed.back());
  auto exec = make();
  const auto r = run_one(
      *exec,
      sh("grep Cpus_allowed_list /proc/self/status").with_allocation(alloc(1, 0, {}, {core})));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "Cpus_allowed_list:\t" + std::to_string(core) + "\n");
}

// Runs `body` with an executor that has no cgroups, in a forked child whose mkdir(2) a seccomp
// filter refuses (so CgroupTree::acquire cannot make the executor's parent cgroup).
void without_cgroups(const std::function<void(ProcessExecutor&)>& body) {
  const auto code = pepita::test::run_forked([&] {
    ASSERT_EQ(
        pepita::test::fail_syscalls({{.nr = SCMP_SYS(mkdir), .error = EACCES, .min_arg0 = 0},
                                     {.nr = SCMP_SYS(mkdirat), .error = EACCES, .min_arg0 = 0}}),
        "");
    body(*make(200ms));
  });
  EXPECT_EQ(code, 0) << "the forked child failed (its failures are printed above)";
}

// Without cgroups a memory limit cannot be enforced: the attempt is refused, saying why, and
// never runs unlimited. CPU time then comes from the reaped process's rusage alone (its user and
// system time, with what it waited for), at least what /proc said just before it exited.
TEST(ProcessResources, WithoutCgroupsAMemoryLimitIsRefusedAndCpuTimeIsTheRusage) {
  without_cgroups([](ProcessExecutor& exec) {
    const auto limited = run_one(exec, sh("true").with_allocation(alloc(0, 64 << 20)));
    EXPECT_EQ(limited.status, Status::LaunchFailed);
    EXPECT_EQ(limited.exit_code, -1);
    EXPECT_EQ(limited.signal, 0);
    EXPECT_EQ(limited.error.rfind("task asks for memory = \"64M\" but its limit cannot be "
                                  "enforced here: create cgroup ",
                                  0),
              0u)
        << limited.error;
    // User time in the shell's loop, system time in dd's copies; fields 14-17 of its stat are
    // the shell's and its waited children's user and system ticks.
    const auto busy = run_one(exec, sh("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; "
                                       "dd if=/dev/zero of=/dev/null bs=1M count=500 2>/dev/null; "
                                       "cut -d' ' -f14-17 /proc/$$/stat"));
    ASSERT_EQ(busy.status, Status::Succeeded) << busy.error;
    std::istringstream fields(busy.stdout_data);
    long ticks = 0;
    for (long t = 0; fields >> t;) ticks += t;
    const auto seen = std::chrono::milliseconds(ticks * 1000 / ::sysconf(_SC_CLK_TCK));
    EXPECT_GT(seen, 0ms) << busy.stdout_data;
    EXPECT_GE(busy.cpu, seen) << busy.stdout_data;
  });
}

// Without cgroups the executor's own sweep ends what the attempt left: a descendant that
// ignored the timeout's SIGTERM is SIGKILLed with the process group once the task is reaped.
TEST(ProcessResources, WithoutCgroupsADescendantIgnoringSigtermIsKilledWithTheGroup) {
  without_cgroups([](ProcessExecutor& exec) {
    const auto r = run_one(
        exec, Task::binary("/bin/sh")
                  .args({"-c", "(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & echo $!; sleep 30"})
                  .timeout(300ms)
                  .build()
                  .value());
    EXPECT_EQ(r.status, Status::TimedOut) << r.error;
    const pid_t descendant = std::stoi(r.stdout_data);
    ASSERT_GT(descendant, 0);
    EXPECT_TRUE(gone_within(descendant, 5s)) << "descendant " << descendant << " survived";
    ::kill(descendant, SIGKILL);
  });
}

TEST(ProcessResources, ABackgroundGrandchildIsKilledWhenTheTaskEnds) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto exec = make();
  const auto r = run_one(*exec, sh("sleep 100 >/dev/null 2>&1 & echo $!"));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const pid_t grandchild = std::stoi(r.stdout_data);
  ASSERT_GT(grandchild, 0);
  EXPECT_FALSE(process_running(grandchild)) << "the attempt's cgroup was ended with it";
}

TEST(ProcessResources, AllStagesOfAPipelineShareOneCgroup) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto exec = make();
  auto t = Task::pipeline()
               .add_stage(task::BinaryTask("/bin/sh").with_args(
                   {"-c", "grep -v '^0::' /proc/self/cgroup"}))
               .add_stage(task::BinaryTask("/bin/sh").with_args(
                   {"-c", "cat; grep -v '^0::' /proc/self/cgroup"}))
               .build();
  ASSERT_TRUE(t) << t.error().message();
  const auto r = run_one(*exec, *t);
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const std::string& out = r.stdout_data;
  ASSERT_EQ(out.size() % 2, 0u) << out;
  EXPECT_EQ(out.substr(0, out.size() / 2), out.substr(out.size() / 2)) << out;
  EXPECT_NE(out.find("/task-"), std::string::npos) << out;
}

TEST(ProcessResources, KillingTheDriverKillsItsTasksAndTheNextStartReapsItsCgroup) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  pepita::test::TempDir dir("resources-pdeathsig");
  const std::string pid_file = dir.path() + "/task.pid";
  // The driver: a forked helper that starts a long task through a ProcessExecutor and waits.
  const pid_t driver = ::fork();
  ASSERT_GE(driver, 0);
  if (driver == 0) {
    auto e = ProcessExecutor::create({.slots = 1});
    if (!e) ::_exit(3);
    auto task = sh("echo $$ > " + pid_file + ".tmp && mv " + pid_file + ".tmp " + pid_file +
                   " && exec sleep 100");
    if (!(*e)->start(task, {}, [](ExecutionResult) {})) ::_exit(4);
    for (;;) ::pause();
  }
  pid_t task_pid = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (task_pid == 0 && std::chrono::steady_clock::now() < until) {
    std::ifstream in(pid_file);
    if (!(in >> task_pid)) task_pid = 0;
    if (task_pid == 0) std::this_thread::sleep_for(20ms);
  }
  int status = 0;
  if (task_pid == 0) {
    ::kill(driver, SIGKILL);
    ::waitpid(driver, &status, 0);
    FAIL() << "the driver's task never started (driver status " << status << ")";
  }
  const std::string stale = cgroup_parent_name(driver);
  ASSERT_FALSE(stale.empty());
  ASSERT_EQ(::kill(driver, SIGKILL), 0);
  ASSERT_EQ(::waitpid(driver, &status, 0), driver);
  EXPECT_TRUE(gone_within(task_pid, 30s)) << "task " << task_pid << " outlived its driver";

  // What the crashed driver left: its pepita-<pid>-<starttime> cgroup, reaped at the next start.
  // (Another test run on this machine may reap it first: what counts is that it is gone.)
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  const std::string left = (*tree)->path().substr(0, (*tree)->path().rfind('/') + 1) + stale;
  auto removed = reap_stale_cgroups();
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_FALSE(std::filesystem::exists(left)) << left << " was left behind";
}

}  // namespace
}  // namespace pepita::executor
