// Cgroup layout detection against unusual hierarchies, each staged in a private mount namespace
// (test::CgroupNamespaceTest): cgroup v2 without the memory controller, read-only or missing
// cgroups, no /proc. Split from cgroup_test.cpp, which covers the host's own hierarchy.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/file_text.hpp"
#include "common/private_cgroup.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "pepita/core/cgroup.hpp"

namespace pepita {
namespace {

using namespace std::chrono_literals;

using CgroupInOwnMountNamespace = test::CgroupNamespaceTest;
using test::cgroup_mounts;

// A child that burns `cpu` of CPU time in the cgroup whose cgroup.procs are `fds`, then exits 0.
pid_t cpu_burner(const std::vector<int>& fds, std::chrono::milliseconds cpu) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (int fd : fds)
      if (::write(fd, "0", 1) != 1) ::_exit(2);
    timespec t{};
    do {
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while (t.tv_sec * 1000 + t.tv_nsec / 1'000'000 < cpu.count());
    ::_exit(0);
  }
  return pid;
}

// On cgroup v2 (here the v1 memory hierarchy unmounted), without the memory controller delegated
// to us: a memory limit is refused saying how to get one, and a task still gets a cgroup that
// counts its CPU time, that cgroup.kill empties and that goes with the tree.
TEST_F(CgroupInOwnMountNamespace, OnV2WithoutMemoryTasksGetACgroupButNoMemoryLimit) {
  run([](const std::string& own) {
    unmount_v1_memory();
    auto tree = CgroupTree::acquire();
    ASSERT_TRUE(tree) << tree.error().message();
    EXPECT_EQ((*tree)->version(), CgroupVersion::V2);
    EXPECT_EQ((*tree)->path(), own + "/" + cgroup_parent_name(::getpid()));
    const bool memory =
        test::read_file_text(own + "/cgroup.controllers").find("memory") != std::string::npos;
    if (!memory) {
      EXPECT_FALSE((*tree)->can_limit_memory());
      EXPECT_NE(
          (*tree)->memory_note().find("memory controller is not available to our cgroup " + own),
          std::string::npos)
          << (*tree)->memory_note();
      EXPECT_NE((*tree)->memory_note().find("Delegate=yes"), std::string::npos);
      auto limited = (*tree)->make("limited", {.memory = 64ull << 20, .cpus = 0, .pids = 0});
      ASSERT_FALSE(limited);
      EXPECT_EQ(limited.error().code(), ErrorCode::Unsupported);
      EXPECT_NE(limited.error().message().find("cannot limit memory: cgroup v2: "),
                std::string::npos)
          << limited.error().message();
      EXPECT_FALSE(std::filesystem::is_directory((*tree)->path() + "/limited"));
    }
    auto cg = (*tree)->make("task-1", {.memory = 0, .cpus = 0.5, .pids = 16});
    ASSERT_TRUE(cg) << cg.error().message();
    EXPECT_EQ(cg->path(), (*tree)->path() + "/task-1");
    EXPECT_EQ(cg->paths(), std::vector<std::string>{cg->path()});

    const pid_t burner = cpu_burner(cg->join_fds(), 200ms);
    ASSERT_GT(burner, 0);
    int status = 0;
    ASSERT_EQ(::waitpid(burner, &status, 0), burner);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    const CgroupUsage u = cg->usage();
    EXPECT_GE(u.cpu, 100ms) << "cpu.stat's usage_usec of a child that burnt 200 ms";
    if (!memory) {
      EXPECT_EQ(u.peak_memory, 0u) << "no memory.peak or memory.current without the controller";
      EXPECT_FALSE(u.oom_kill_counted);
    }

    const pid_t a = ::fork();  // sleeps until killed
    if (a == 0) {
      for (;;) ::pause();
    }
    ASSERT_GT(a, 0);
    ASSERT_TRUE(cg->join(a));
    EXPECT_EQ(test::read_file_text(cg->path() + "/cgroup.procs"), std::to_string(a) + "\n");
    const std::string dir = cg->path();
    ASSERT_TRUE(cg->end());
    ASSERT_EQ(::waitpid(a, &status, 0), a);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    EXPECT_FALSE(std::filesystem::is_directory(dir));
    const std::string parent = (*tree)->path();
    tree->reset();
    EXPECT_FALSE(std::filesystem::is_directory(parent)) << "the last holder removes the tree";
  });
}

// Our cgroup lists the memory controller but the kernel will not enable it in the cgroup pepita
// makes beneath ours (simulated: the lists are files bound over ours, the child cgroup is real):
// pepita asked our cgroup for memory, cpu and pids for its children, then says that the memory
// limit cannot be had instead of setting a limit the kernel would not enforce.
TEST_F(CgroupInOwnMountNamespace, OnV2AMemoryControllerThatCannotBeEnabledBelowIsReported) {
  run([](const std::string& own) {
    unmount_v1_memory();
    test::TempDir tmp("cgroup-v2");
    bind_text(tmp, own + "/cgroup.controllers", "cpuset cpu io memory pids\n");
    bind_text(tmp, own + "/cgroup.subtree_control", "");
    auto tree = CgroupTree::acquire();
    ASSERT_TRUE(tree) << tree.error().message();
    EXPECT_EQ((*tree)->version(), CgroupVersion::V2);
    EXPECT_EQ(test::read_file_text(tmp.file("cgroup.subtree_control")), "+memory +cpu +pids");
    EXPECT_FALSE((*tree)->can_limit_memory());
    EXPECT_EQ((*tree)->memory_note(),
              "cgroup v2: cannot enable the memory controller in " + (*tree)->path());
    tree->reset();
    ASSERT_EQ(::umount2((own + "/cgroup.controllers").c_str(), 0), 0) << std::strerror(errno);
    ASSERT_EQ(::umount2((own + "/cgroup.subtree_control").c_str(), 0), 0) << std::strerror(errno);
  });
}

// Our cgroup lists the memory controller but refuses to enable it for our children (here its
// subtree_control is read-only): the note names our cgroup, the kernel's reason and the fix.
TEST_F(CgroupInOwnMountNamespace, OnV2AMemoryControllerWeCannotDelegateIsReportedWithTheFix) {
  run([](const std::string& own) {
    unmount_v1_memory();
    test::TempDir tmp("cgroup-v2");
    bind_text(tmp, own + "/cgroup.controllers", "memory pids\n");
    bind_text(tmp, own + "/cgroup.subtree_control", "pids\n", true);
    auto tree = CgroupTree::acquire();
    ASSERT_TRUE(tree) << tree.error().message();
    const std::string& note = (*tree)->memory_note();
    EXPECT_FALSE((*tree)->can_limit_memory());
    EXPECT_NE(note.find("cannot enable the memory controller for the children of " + own + " (" +
                        std::strerror(EROFS) + ")"),
              std::string::npos)
        << note;
    EXPECT_NE(note.find("Delegate=yes"), std::string::npos) << note;
    EXPECT_EQ(test::read_file_text(tmp.file("cgroup.subtree_control")), "pids\n");
    tree->reset();
    ASSERT_EQ(::umount2((own + "/cgroup.controllers").c_str(), 0), 0) << std::strerror(errno);
    ASSERT_EQ(::umount2((own + "/cgroup.subtree_control").c_str(), 0), 0) << std::strerror(errno);
  });
}

TEST_F(CgroupInOwnMountNamespace, NeitherCgroup2NorAV1MemoryHierarchyIsUnsupportedSayingWhatToDo) {
  run([](const std::string&) {
    unmount_v1_memory();
    for (const std::string& m : cgroup_mounts("cgroup2", "")) {
      ASSERT_EQ(::umount2(m.c_str(), MNT_DETACH), 0) << m << ": " << std::strerror(errno);
    }
    auto tree = CgroupTree::acquire();
    ASSERT_FALSE(tree);
    EXPECT_EQ(tree.error().code(), ErrorCode::Unsupported);
    EXPECT_NE(tree.error().message().find("mount cgroup2 at /sys/fs/cgroup"), std::string::npos)
        << tree.error().message();
  });
}

// Cgroups mounted read-only (a container without delegation; here a read-only bind of our
// cgroup over itself): Unsupported, naming the cgroup it tried to create and how to get a
// writable one.
TEST_F(CgroupInOwnMountNamespace, ReadOnlyCgroupsAreUnsupportedSayingHowToGetWritableOnes) {
  run([](const std::string& own) {
    unmount_v1_memory();
    ASSERT_EQ(::mount(own.c_str(), own.c_str(), nullptr, MS_BIND, nullptr), 0)
        << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, own.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
        << std::strerror(errno);
    auto tree = CgroupTree::acquire();
    ASSERT_EQ(::umount2(own.c_str(), 0), 0) << std::strerror(errno);
    ASSERT_FALSE(tree);
    EXPECT_EQ(tree.error().code(), ErrorCode::Unsupported);
    EXPECT_EQ(tree.error().sys_errno(), EROFS);
    const std::string& m = tree.error().message();
    EXPECT_NE(m.find("create cgroup " + own + "/pepita-"), std::string::npos) << m;
    EXPECT_NE(m.find("cgroups are mounted read-only"), std::string::npos) << m;
    EXPECT_NE(m.find("Delegate=yes"), std::string::npos) << m;
  });
}

// Our cgroup's directory missing where /proc says it is (here another cgroup bound over the
// directory ours is in): Unsupported, naming the errno and saying to check the cgroup mounts.
TEST_F(CgroupInOwnMountNamespace, OurCgroupMissingUnderItsMountIsUnsupportedSayingWhatToCheck) {
  run([](const std::string& own) {
    unmount_v1_memory();
    const std::string other = own + "/other";
    ASSERT_EQ(::mkdir(other.c_str(), 0755), 0) << std::strerror(errno);
    const std::string point = own.substr(0, own.rfind('/'));
    ASSERT_EQ(::mount(other.c_str(), point.c_str(), nullptr, MS_BIND, nullptr), 0)
        << point << ": " << std::strerror(errno);
    auto tree = CgroupTree::acquire();
    ASSERT_EQ(::umount2(point.c_str(), 0), 0) << std::strerror(errno);
    EXPECT_EQ(::rmdir(other.c_str()), 0) << std::strerror(errno);
    ASSERT_FALSE(tree);
    EXPECT_EQ(tree.error().code(), ErrorCode::Unsupported);
    EXPECT_EQ(tree.error().sys_errno(), ENOENT);
    EXPECT_NE(tree.error().message().find("check that cgroups are mounted under /sys/fs/cgroup "
                                          "and writable"),
              std::string::npos)
        << tree.error().message();
  });
}

// Without the right to create cgroups beneath ours (here: an unprivileged effective uid), acquire
// says so and how to get it.
TEST_F(CgroupInOwnMountNamespace, NoPermissionToCreateCgroupsIsUnsupportedSayingHowToGetIt) {
  run([](const std::string&) {
    ASSERT_EQ(::seteuid(65534), 0) << std::strerror(errno);
    auto tree = CgroupTree::acquire();
    ASSERT_EQ(::seteuid(0), 0) << std::strerror(errno);
    ASSERT_FALSE(tree);
    EXPECT_EQ(tree.error().code(), ErrorCode::Unsupported);
    EXPECT_EQ(tree.error().sys_errno(), EACCES);
    EXPECT_NE(tree.error().message().find("no permission to create cgroups beneath ours: run as "
                                          "root, or in a delegated cgroup"),
              std::string::npos)
        << tree.error().message();
  });
}

TEST_F(CgroupInOwnMountNamespace, WithoutProcCgroupsAreUnsupportedSayingProcIsNeeded) {
  run([](const std::string&) {
    ASSERT_EQ(::umount2("/proc", MNT_DETACH), 0) << std::strerror(errno);
    auto tree = CgroupTree::acquire();
    ASSERT_FALSE(tree);
    EXPECT_EQ(tree.error().code(), ErrorCode::Unsupported);
    EXPECT_NE(tree.error().message().find("cannot read /proc/self/cgroup: "), std::string::npos)
        << tree.error().message();
    EXPECT_NE(tree.error().message().find("/proc mounted is needed"), std::string::npos);
    auto reaped = reap_stale_cgroups();
    ASSERT_FALSE(reaped);
    EXPECT_EQ(reaped.error().code(), ErrorCode::Unsupported);
  });
}

}  // namespace
}  // namespace pepita
