// apply_grant: a Slurm job's environment narrowing the detected inventory to what Slurm
// granted — no Slurm needed (the environment is a map).
#include "pepita/slurm/grant.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

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

}  // namespace
}  // namespace pepita::slurm
