// CpuAffinity: the cpulist parser, resolution against this machine's sysfs topology, and the
// builder's checks. Running a child under an affinity is tested in tests/executor.
#include "pepita/task/affinity.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/mount_namespace.hpp"
#include "common/require.hpp"
#include "pepita/task/task.hpp"

namespace pepita::task {
namespace {

using V = std::vector<unsigned>;

TEST(CpuList, ParsesRangesSinglesAndTrailingNewline) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11\n").value(), (V{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5").value(), (V{5}));
  EXPECT_EQ(parse_cpu_list("").value(), V{});  // a memory-only node lists no CPUs
  EXPECT_EQ(parse_cpu_list("3,1-2,2").value(), (V{1, 2, 3}));
}

TEST(CpuList, RejectsMalformedPartsNamingThem) {
  for (const char* bad : {"3-1", "a", "1,,2", "1-", "-1", "99999", "0-70000", "1 2"}) {
    auto r = parse_cpu_list(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find("cpu list part"), std::string::npos) << bad;
  }
}

RC_GTEST_PROP(CpuList, FormattedSetsRoundTrip, (std::vector<unsigned> raw)) {
  V cpus;
  for (unsigned c : raw) cpus.push_back(c % 512);
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  // Format as the kernel does: maximal runs as "a-b".
  std::string text;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!text.empty()) text += ",";
    text += std::to_string(cpus[i]);
    if (j > i) text += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  auto parsed = parse_cpu_list(text);
  RC_ASSERT(parsed.has_value());
  RC_ASSERT(*parsed == cpus);
}

TEST(CpuAffinity, AllowsCoreFollowsTheCrate) {
  EXPECT_TRUE(CpuAffinity::Any().allows_core(12345));
  EXPECT_TRUE(CpuAffinity::Core(1).allows_core(1));
  EXPECT_FALSE(CpuAffinity::Core(1).allows_core(0));
  const auto set = CpuAffinity::Cores({3, 0, 3});
  EXPECT_EQ(set.cores(), (V{0, 3}));
  EXPECT_TRUE(set.allows_core(3));
  EXPECT_FALSE(set.allows_core(2));
  // A NUMA node allows exactly the CPUs sysfs lists for it (no "simplified: true").
  const V node0 = numa_node_cpus(0).value();
  ASSERT_FALSE(node0.empty());
  EXPECT_TRUE(CpuAffinity::NumaNode(0).allows_core(node0.front()));
  EXPECT_FALSE(CpuAffinity::NumaNode(0).allows_core(node0.back() + 1));
  EXPECT_FALSE(CpuAffinity::NumaNode(4096).allows_core(0));
}

TEST(CpuAffinity, ResolvesAgainstOnlineCpusAndNodes) {
  const V online = online_cpus().value();
  ASSERT_FALSE(online.empty());
  EXPECT_EQ(CpuAffinity::Any().resolve().value(), V{});
  EXPECT_EQ(CpuAffinity::Core(online.front()).resolve().value(), V{online.front()});
  EXPECT_EQ(CpuAffinity::Cores(online).resolve().value(), online);
  EXPECT_EQ(CpuAffinity::NumaNode(0).resolve().value(), numa_node_cpus(0).value());
  EXPECT_EQ(to_string(CpuAffinity::Cores({0, 2})), "cores 0,2");
  EXPECT_EQ(to_string(CpuAffinity::NumaNode(1)), "numa node 1");
  EXPECT_EQ(to_string(CpuAffinity::Any()), "any");
  EXPECT_EQ(to_string(CpuAffinity::Core(3)), "core 3");
}

// Only the entries of /sys/devices/system/node named "node" and a whole number are nodes: not
// "node3x", "node", "nodes" or a number past unsigned. Shown in a child with its own mount
// namespace and a tmpfs over that directory.
TEST(CpuAffinity, OnlyEntriesNamedNodeAndAWholeNumberAreNumaNodes) {
  PEPITA_REQUIRE_CAPABILITY(root);  // unshare(CLONE_NEWNS) and a tmpfs over sysfs's node list
  const auto code = test::run_forked_in_own_mount_namespace([] {
    const std::string dir = "/sys/devices/system/node";
    ASSERT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=64k"), 0) << std::strerror(errno);
    for (const char* name : {"node0", "node3x", "node", "nodes", "node4294967296"})
      ASSERT_EQ(::mkdir((dir + "/" + name).c_str(), 0755), 0) << name;
    std::ofstream(dir + "/node0/cpulist") << "0\n";
    std::ofstream(dir + "/node3x/cpulist") << "0\n";
    EXPECT_EQ(CpuAffinity::NumaNode(0).resolve().value(), V{0});
    for (int node : {3, 1}) {
      auto r = CpuAffinity::NumaNode(node).resolve();
      ASSERT_FALSE(r) << "node " << node;
      EXPECT_NE(r.error().message().find("this machine has node(s) 0 ("), std::string::npos)
          << r.error().message();
    }
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0);
}

TEST(CpuAffinity, MissingCoreNodeOrEmptySetIsInvalidArgumentSayingWhatExists) {
  const unsigned missing = online_cpus().value().back() + 1;
  auto core = CpuAffinity::Core(missing).resolve();
  ASSERT_FALSE(core);
  EXPECT_EQ(core.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(core.error().message().find("core " + std::to_string(missing)), std::string::npos)
      << core.error().message();
  EXPECT_NE(core.error().message().find("online cores are"), std::string::npos);

  for (int node : {-1, 4096}) {
    auto n = CpuAffinity::NumaNode(node).resolve();
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(n.error().message().find("NUMA node " + std::to_string(node) + " does not exist"),
              std::string::npos)
        << n.error().message();
    EXPECT_NE(n.error().message().find("node(s) 0"), std::string::npos) << n.error().message();
  }

  auto empty = CpuAffinity::Cores({}).resolve();
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("core set is empty"), std::string::npos);
}

TEST(TaskBuilder, AffinityIsCheckedAtBuildAndKeptOnTheTask) {
  auto ok = Task::binary("/bin/true").affinity(CpuAffinity::Core(0)).build();
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->affinity(), CpuAffinity::Core(0));
  EXPECT_TRUE(Task::binary("/bin/true").build()->affinity().is_any());

  auto bad = Task::binary("/bin/true").name("pinned").affinity(CpuAffinity::Core(60000)).build();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("'pinned'"), std::string::npos);
  EXPECT_NE(bad.error().message().find("core 60000"), std::string::npos);

  // A function runs on the scheduler's shared workers: pinning "it" would pin them all.
  auto fn = Task::function([] {}).affinity(CpuAffinity::Core(0)).build();
  ASSERT_FALSE(fn);
  EXPECT_NE(fn.error().message().find("function task"), std::string::npos);

  // Only the local process executor applies it: elsewhere it would be silently ignored.
  auto remote =
      Task::binary("/bin/true").backend(Backend::Remote).affinity(CpuAffinity::Core(0)).build();
  ASSERT_FALSE(remote);
  EXPECT_NE(remote.error().message().find("backend 'remote' does not apply it"), std::string::npos)
      << remote.error().message();

  // The affinity changes where a task runs, not what it produces: same digest.
  auto a = Task::binary("/bin/true").build();
  auto b = Task::binary("/bin/true").affinity(CpuAffinity::Core(0)).build();
  EXPECT_EQ(a->spec_digest(), b->spec_digest());
}

}  // namespace
}  // namespace pepita::task
