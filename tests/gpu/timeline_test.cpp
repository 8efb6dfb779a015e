// TimelineSemaphore (host signal, wait with timeout, monotonic values) and the device queue's
// own timeline (every submission signals the next value).

#include "pepita/gpu/timeline.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "gpu_env.hpp"
#include "pepita/gpu/buffer.hpp"

namespace pepita::gpu {
namespace {

using namespace std::chrono_literals;
using test::env;

#define REQUIRE_GPU_WITH_TIMELINES()                                              \
  do {                                                                            \
    PEPITA_REQUIRE_GPU();                                                         \
    if (!env().device->info().timeline_semaphores)                                \
      GTEST_SKIP() << env().device->info().name << " has no timeline semaphores"; \
  } while (0)

TEST(GpuTimeline, StartsAtInitialValueAndWaitTimesOut) {
  REQUIRE_GPU_WITH_TIMELINES();
  auto sem = TimelineSemaphore::create(*env().device, 5);
  ASSERT_TRUE(sem) << sem.error().to_string();
  EXPECT_EQ(*sem->value(), 5u);
  auto reached = sem->wait(5, 0ns);  // already there: a poll succeeds
  ASSERT_TRUE(reached);
  EXPECT_TRUE(*reached);
  const auto t0 = std::chrono::steady_clock::now();
  reached = sem->wait(6, 50ms);
  ASSERT_TRUE(reached) << reached.error().to_string();
  EXPECT_FALSE(*reached);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 40ms);
}

TEST(GpuTimeline, SignalFromAnotherThreadReleasesTheWaiter) {
  REQUIRE_GPU_WITH_TIMELINES();
  auto sem = TimelineSemaphore::create(*env().device);
  ASSERT_TRUE(sem);
  std::jthread signaller([&] {
    for (std::uint64_t v = 1; v <= 3; ++v) {
      std::this_thread::sleep_for(10ms);
      ASSERT_TRUE(sem->signal(v));
    }
  });
  auto reached = sem->wait(3, 10s);
  ASSERT_TRUE(reached) << reached.error().to_string();
  EXPECT_TRUE(*reached);
  EXPECT_EQ(*sem->value(), 3u);
}

TEST(GpuTimeline, ValuesNeverGoBack) {
  REQUIRE_GPU_WITH_TIMELINES();
  auto sem = TimelineSemaphore::create(*env().device, 10);
  ASSERT_TRUE(sem);
  auto same = sem->signal(10);
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(same.error().message().find("must increase"), std::string::npos);
  EXPECT_FALSE(sem->signal(3));
  EXPECT_TRUE(sem->signal(11));
  EXPECT_EQ(*sem->value(), 11u);
  // Move-assigned, the semaphore it replaces goes and its value and rule come along.
  auto other = TimelineSemaphore::create(*env().device, 1);
  ASSERT_TRUE(other);
  *other = std::move(*sem);
  EXPECT_EQ(*other->value(), 11u);
  EXPECT_FALSE(other->signal(11));
  EXPECT_TRUE(other->signal(12));
}

TEST(GpuTimeline, QueueTimelineCountsEverySubmission) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  std::vector<float> host(1000, 1.0f);
  auto buf = Buffer::from<float>(dev, host);
  ASSERT_TRUE(buf);
  const std::uint64_t before = dev.submitted();
  // Several threads submitting at once: each waits on its own timeline value.
  std::vector<std::jthread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto s = env().builtins->sum(*buf, host.size());
        ASSERT_TRUE(s) << s.error().to_string();
        EXPECT_EQ(*s, 1000.0f);
      }
    });
  threads.clear();
  const std::uint64_t after = dev.submitted();
  EXPECT_GE(after - before, 20u);  // one run() per sum (plus staging copies on a discrete GPU)
  auto done = dev.completed();
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(*done, after);  // every submitter has returned, so the queue is idle
}

}  // namespace
}  // namespace pepita::gpu
