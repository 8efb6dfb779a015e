#include <gtest/gtest.h>
#include <chrono>
#include <algorithm>
#include "executor/process_test_util.hpp"
#include "common/temp_dir.hpp"
namespace pepita::executor {
TEST(ZzMeasure, Spawn) {
  pepita::test::TempDir d("m");
  std::filesystem::permissions(d.path(), std::filesystem::perms::all);
  auto exec = test::make();
  auto mk = [](bool u, bool m, bool p, bool i, bool sc) { task::SandboxPolicy x; x.level = task::SandboxLevel::Custom; x.user_ns=u; x.mount_ns=m; x.pid_ns=p; x.ipc_uts_ns=i; x.seccomp=sc; return x; };
  std::vector<task::SandboxPolicy> pols{task::SandboxPolicy::none(), mk(0,0,0,0,0), mk(1,0,0,0,0), mk(1,1,0,0,0), mk(1,1,1,0,0), mk(1,1,1,1,0), mk(1,1,1,1,1), task::SandboxPolicy::strict()};
  const int K = 8;
  std::vector<std::vector<double>> all(K);
  for (int i = 0; i < 40; ++i) {
    for (int k = 0; k < K; ++k) {
      auto t = task::Task::binary("/bin/true").cwd(d.path()).sandbox(pols[k]).build().value();
      auto s = std::chrono::steady_clock::now();
      auto r = test::run_one(*exec, t);
      all[k].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
      ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    }
  }
  for (int k = 0; k < K; ++k) {
    auto& ms = all[k];
    std::sort(ms.begin(), ms.end());
    std::printf("%d%d%d%d%d %s median %.2f ms min %.2f max %.2f\n", pols[k].user_ns,pols[k].mount_ns,pols[k].pid_ns,pols[k].ipc_uts_ns,pols[k].seccomp,std::string(task::to_string(pols[k].level)).c_str(), ms[20], ms[0], ms.back());
  }
}
}
