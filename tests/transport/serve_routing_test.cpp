// runs_on_server (transport/worker.hpp, issue 26): which submitted tasks a worker runs on a
// persistent server instead of a process of their own. Anything the process path would
// enforce (a sandbox, limits, staged files, a cwd) keeps the task on the process path.
#include <gtest/gtest.h>

#include "pepita/transport/worker.hpp"

namespace pepita::transport {
namespace {

SubmitMsg served() {
  SubmitMsg m;
  m.kind = TaskKind::Process;
  m.path = "/usr/bin/python3";
  m.args = {"/opt/pepita/_runner.py"};
  m.env = {{std::string(kServeEnv), "1"}, {"PYTHONPATH", "/opt"}};
  return m;
}

const task::SandboxPolicy kNone{};

TEST(RunsOnServer, AMarkedUnsandboxedUnlimitedProcessTaskDoes) {
  EXPECT_TRUE(runs_on_server(served(), kNone));
  SubmitMsg m = served();
  m.allocation = task::Allocation{};  // asked for nothing
  EXPECT_TRUE(runs_on_server(m, kNone));
}

TEST(RunsOnServer, AnUnmarkedTaskDoesNot) {
  SubmitMsg m = served();
  m.env.erase(std::string(kServeEnv));
  EXPECT_FALSE(runs_on_server(m, kNone));
  // emplace, not operator[] = "0": assigning a literal trips g++ 12's -Werror=restrict at -O3
  m.env.emplace(std::string(kServeEnv), std::string(1, '0'));
  EXPECT_FALSE(runs_on_server(m, kNone));
}

TEST(RunsOnServer, ASandboxAfterTheWorkersFloorKeepsItAProcess) {
  EXPECT_FALSE(runs_on_server(served(), task::SandboxPolicy::standard()));
}

TEST(RunsOnServer, LimitsKeepItAProcess) {
  for (int which = 0; which < 6; ++which) {
    SubmitMsg m = served();
    task::Allocation a;
    switch (which) {
      case 0: a.cpus = 1; break;
      case 1: a.cores = {0}; break;
      case 2: a.memory = 1 << 20; break;
      case 3: a.gpus.push_back({}); break;
      case 4: a.named["licence"] = 1; break;
      default: a.pids = 10; break;
    }
    m.allocation = a;
    EXPECT_FALSE(runs_on_server(m, kNone)) << "limit " << which;
  }
}

TEST(RunsOnServer, FilesCwdARelativePathOrAFunctionKeepItOffTheServer) {
  SubmitMsg m = served();
  m.cwd = "/tmp";
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.files.push_back({});
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.inputs.push_back({});
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.outputs.push_back("out.bin");
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.path = "python3";
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.path = "blob:00";
  EXPECT_FALSE(runs_on_server(m, kNone));
  m = served();
  m.kind = TaskKind::Function;
  EXPECT_FALSE(runs_on_server(m, kNone));
}

}  // namespace
}  // namespace pepita::transport
