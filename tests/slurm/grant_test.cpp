// apply_grant: a Slurm job's environment narrowing the detected inventory to what Slurm
// granted — no Slurm needed (the environment is a map).
#include "pepita/slurm/grant.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pepita::slurm {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

task::Inventory node() {
  task::Inventory inv;
  inv.cpus = {0, 1, 2, 3, 4, 5, 6, 7};
  inv.numa = {{0, {0, 1, 2, 3}}, {1, {4, 5, 6, 7}}};
  inv.memory = 64 * 1024 * kMiB;
  inv.gpus = {"0", "1", "2", "3"};
  return inv;
}

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(SlurmGrant, OutsideASlurmJobNothingChanges) {
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_MEM_PER_NODE", "1024"}})));
  EXPECT_EQ(inv, node());
  EXPECT_FALSE(in_slurm_job(env_of({})));
}

TEST(SlurmGrant, CpusPerTaskMemPerNodeAndGpusNarrowTheNode) {
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", "42"},
                                       {"SLURM_CPUS_PER_TASK", "2"},
                                       {"SLURM_CPUS_ON_NODE", "8"},
                                       {"SLURM_MEM_PER_NODE", "4096"},
                                       {"SLURM_JOB_GPUS", "2,3"}})));
  EXPECT_EQ(inv.cpus, (std::vector<unsigned>{0, 1}));
  EXPECT_EQ(inv.numa, (std::map<int, std::vector<unsigned>>{{0, {0, 1}}}));
  EXPECT_EQ(inv.memory, 4096 * kMiB);
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"2", "3"}));
}

TEST(SlurmGrant, MemPerCpuTimesTheCpusAndCudaVisibleDevicesFirst) {
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", "42"},
                                       {"SLURM_CPUS_ON_NODE", "4(x2)"},
                                       {"SLURM_MEM_PER_CPU", "512"},
                                       {"SLURM_JOB_GPUS", "2,3"},
                                       {"CUDA_VISIBLE_DEVICES", "0,1"}})));
  EXPECT_EQ(inv.cpus.size(), 4u);
  EXPECT_EQ(inv.memory, 4 * 512 * kMiB);
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"0", "1"}));
}

TEST(SlurmGrant, AGrantAboveTheNodeIsCappedAndUnsetKindsStayAsDetected) {
  task::Inventory inv = node();
  ASSERT_TRUE(
      apply_grant(inv, env_of({{"SLURM_JOB_ID", "42"}, {"SLURM_MEM_PER_NODE", "999999999"}})));
  EXPECT_EQ(inv.memory, node().memory);
  EXPECT_EQ(inv.cpus, node().cpus);
  EXPECT_EQ(inv.gpus, node().gpus);
}

TEST(SlurmGrant, MalformedVariablesAreNamed) {
  for (const auto& [name, value] :
       std::map<std::string, std::string>{{"SLURM_CPUS_PER_TASK", "two"},
                                          {"SLURM_MEM_PER_NODE", "-5"},
                                          {"SLURM_MEM_PER_CPU", "0"},
                                          {"CUDA_VISIBLE_DEVICES", "0,,1"}}) {
    task::Inventory inv = node();
    auto r = apply_grant(inv, env_of({{"SLURM_JOB_ID", "1"}, {name, value}}));
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find(name), std::string::npos) << r.error().message();
  }
}

// A variable set to the empty string counts as unset (Slurm exports some empty): an empty
// SLURM_JOB_ID is no job, and an empty SLURM_CPUS_PER_TASK leaves SLURM_CPUS_ON_NODE to decide.
TEST(SlurmGrant, EmptyVariablesCountAsUnset) {
  EXPECT_FALSE(in_slurm_job(env_of({{"SLURM_JOB_ID", ""}})));
  EXPECT_TRUE(in_slurm_job(env_of({{"SLURM_JOB_ID", "7"}})));
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", ""}, {"SLURM_CPUS_PER_TASK", "1"}})));
  EXPECT_EQ(inv, node());
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", "7"},
                                       {"SLURM_CPUS_PER_TASK", ""},
                                       {"SLURM_CPUS_ON_NODE", "6"},
                                       {"SLURM_MEM_PER_NODE", ""},
                                       {"SLURM_MEM_PER_CPU", "100"},
                                       {"CUDA_VISIBLE_DEVICES", ""},
                                       {"SLURM_JOB_GPUS", "gpu:1,3"}})));
  EXPECT_EQ(inv.cpus, (std::vector<unsigned>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(inv.numa, (std::map<int, std::vector<unsigned>>{{0, {0, 1, 2, 3}}, {1, {4, 5}}}));
  EXPECT_EQ(inv.memory, 6 * 100 * kMiB);
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"1", "3"}));
}

// More CPUs than the node has leave its CPUs and NUMA nodes as detected; memory per CPU without a
// CPU count is per detected CPU (one when none were detected); a node whose memory is unknown (0)
// takes the grant as it is.
TEST(SlurmGrant, MoreCpusThanTheNodeAndMemPerCpuWithoutACpuCount) {
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", "7"},
                                       {"SLURM_CPUS_PER_TASK", "16"},
                                       {"SLURM_MEM_PER_NODE", "2048"}})));
  EXPECT_EQ(inv.cpus, node().cpus);
  EXPECT_EQ(inv.numa, node().numa);
  EXPECT_EQ(inv.memory, 2048 * kMiB);

  task::Inventory per_cpu = node();
  ASSERT_TRUE(apply_grant(per_cpu, env_of({{"SLURM_JOB_ID", "7"}, {"SLURM_MEM_PER_CPU", "100"}})));
  EXPECT_EQ(per_cpu.memory, 8 * 100 * kMiB);
  EXPECT_EQ(per_cpu.cpus, node().cpus);

  task::Inventory unknown;
  ASSERT_TRUE(apply_grant(unknown, env_of({{"SLURM_JOB_ID", "7"}, {"SLURM_MEM_PER_CPU", "100"}})));
  EXPECT_EQ(unknown.memory, 100 * kMiB);
  EXPECT_TRUE(unknown.cpus.empty());
}

// The error names the variable and quotes its value; "4(x2)" is a count, "4x2" is not, and
// neither is an empty GPU id after the prefix.
TEST(SlurmGrant, MalformedValuesAreQuotedAndOnlyAParenthesisMayFollowACount) {
  struct Case {
    const char* name;
    const char* value;
    const char* message;
  };
  for (const Case& c :
       {Case{"SLURM_CPUS_ON_NODE", "4x2", "SLURM_CPUS_ON_NODE='4x2' is not a positive count"},
        Case{"SLURM_MEM_PER_NODE", "0", "SLURM_MEM_PER_NODE='0' is not a positive count"},
        Case{"SLURM_JOB_GPUS", "gpu:0,", ""},
        Case{"SLURM_JOB_GPUS", "gpu:,1", "SLURM_JOB_GPUS=',1' has an empty GPU id"}}) {
    SCOPED_TRACE(std::string(c.name) + "=" + c.value);
    task::Inventory inv = node();
    auto r = apply_grant(inv, env_of({{"SLURM_JOB_ID", "1"}, {c.name, c.value}}));
    if (std::string_view(c.message).empty()) {
      ASSERT_TRUE(r) << r.error().to_string();
      EXPECT_EQ(inv.gpus, (std::vector<std::string>{"0"}));
      EXPECT_EQ(inv.cpus, node().cpus) << "no CPU variable: the CPUs stay";
      EXPECT_EQ(inv.memory, node().memory) << "no memory variable: the memory stays";
      continue;
    }
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().message();
  }
}

// A one-CPU job keeps the node's first CPU and only its NUMA node.
TEST(SlurmGrant, AOneCpuGrantKeepsTheFirstCpu) {
  task::Inventory inv = node();
  ASSERT_TRUE(apply_grant(inv, env_of({{"SLURM_JOB_ID", "7"}, {"SLURM_CPUS_PER_TASK", "1"}})));
  EXPECT_EQ(inv.cpus, (std::vector<unsigned>{0}));
  EXPECT_EQ(inv.numa, (std::map<int, std::vector<unsigned>>{{0, {0}}}));
  EXPECT_EQ(inv.memory, node().memory);
  EXPECT_EQ(inv.gpus, node().gpus);
}

}  // namespace
}  // namespace pepita::slurm
