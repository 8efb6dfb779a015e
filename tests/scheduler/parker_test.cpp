// Parker: the futex-backed one-token semaphore idle workers sleep on.

#include "detail/parker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "pepita/core/sys/thread.hpp"

namespace pepita::scheduler::detail {
namespace {

TEST(Parker, TokenGivenBeforeParkIsNotLost) {
  Parker p;
  p.unpark();
  p.unpark();  // tokens do not accumulate
  p.park();    // returns at once, consuming the single token
  std::atomic<bool> woke{false};
  std::thread t([&] {
    p.park();  // no token left: must block until the unpark below
    woke.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(woke.load());
  p.unpark();
  t.join();
  EXPECT_TRUE(woke.load());
}

TEST(Parker, PingPongNeverLosesAWakeUp) {
  Parker a;
  Parker b;
  constexpr int kRounds = 20000;
  std::thread t([&] {
    for (int i = 0; i < kRounds; ++i) {
      a.park();
      b.unpark();
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    a.unpark();
    b.park();
  }
  t.join();
  SUCCEED();
}

TEST(SchedulerSys, MembarrierIsAvailableOrReportedMissing) {
  if (!sys::membarrier_register_private_expedited()) {
    GTEST_SKIP() << "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) unavailable (kernel < 4.14 or "
                    "seccomp): the scheduler falls back to a full fence per spawn";
  }
  EXPECT_EQ(sys::membarrier_private_expedited(), 0);
}

TEST(SchedulerSys, AllowedCpusIsNonEmptyAndPinningWorks) {
  auto cpus = sys::allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  int rc = -1;
  std::thread t([&] { rc = sys::pin_current_thread(cpus.front()); });
  t.join();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(sys::pin_current_thread(1 << 20), -EINVAL);  // no such CPU: an errno, not a crash
  EXPECT_EQ(sys::pin_current_thread(-1), -EINVAL);
}

}  // namespace
}  // namespace pepita::scheduler::detail
