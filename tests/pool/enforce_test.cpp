// Issue 22 end to end on this host: the pool places a request, the process executor enforces it
// in a real cgroup, and a task killed by its memory limit is retried with more (retry_on oom,
// memory = "200M * attempt").
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/require.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using namespace std::chrono_literals;
using task::Growth;
using task::ResourceRequest;
using task::RetryOn;

TEST(PoolEnforce, ATaskRetriedAfterOomGetsTwiceTheMemoryAndSucceeds) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto exec = executor::ProcessExecutor::create({.slots = 2});
  ASSERT_TRUE(exec) << exec.error().message();
  auto inv = task::Inventory::detect();
  ASSERT_TRUE(inv) << inv.error().message();
  ASSERT_TRUE(inv->apply_overrides("memory=2G"));
  auto pool = Pool::builder()
                  .executor(std::shared_ptr<executor::Executor>(std::move(*exec)))
                  .resources(*inv)
                  .retry_policy(fault::RetryPolicy().max_attempts(1).base_delay(1ms).max_delay(2ms))
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();

  ResourceRequest r;
  r.memory = 200ull << 20;
  r.memory_growth = Growth::PerAttempt;
  const std::string python =
      ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  // Writes 300 MiB, so every page is charged: over 200M, under 400M.
  auto t = task::Task::binary(python)
               .args({"-c", "b = b'x' * (300 << 20); print(len(b))"})
               .resources(r)
               .retry_on({RetryOn::oom()})
               .max_retries(2)
               .build();
  ASSERT_TRUE(t) << t.error().message();
  auto res = pool->run(*t);
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_TRUE(res->ok()) << res->error;
  EXPECT_EQ(res->attempts, 2u) << "the first attempt ends oom under 200M";
  ASSERT_TRUE(res->allocation);
  EXPECT_EQ(res->allocation->memory, 400ull << 20);
  EXPECT_EQ(res->memory_limit, 400ull << 20);
  EXPECT_GE(res->peak_memory, 300ull << 20);
  EXPECT_EQ(res->stdout_data, std::to_string(300 << 20) + "\n");
}

}  // namespace
}  // namespace pepita::pool
