// A worker on another "host": its own network namespace joined to ours by a veth pair. Cutting
// the link mid-run moves its tasks to the other worker (heartbeat failure detector, no TCP
// reset to help); restoring the link brings it back. Needs root and `ip netns` (the netns
// capability, tests/common/require.hpp); skips otherwise, or fails under PEPITA_REQUIRE=netns.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "common/require.hpp"
#include "pepita/transport/remote.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// Creates namespace + veth pair; removes both on destruction.
struct NetnsLink {
  NetnsLink() {
    const int id = ::getpid() % 250;
    ns = "pepita-t" + std::to_string(::getpid());
    outer = "ppt" + std::to_string(::getpid() % 100000) + "a";
    inner = "ppt" + std::to_string(::getpid() % 100000) + "b";
    outer_ip = "10.213." + std::to_string(id) + ".1";
    inner_ip = "10.213." + std::to_string(id) + ".2";
    if (::geteuid() != 0) {
      why = "needs root to create network namespaces";
      return;
    }
    if (sh("ip -V") != 0) {
      why = "the ip tool (iproute2) is not installed";
      return;
    }
    if (sh("ip netns add " + ns) != 0) {
      why = "ip netns add failed (no CAP_SYS_ADMIN or netns unsupported here)";
      return;
    }
    created = true;
    const bool ok =
        sh("ip link add " + outer + " type veth peer name " + inner) == 0 &&
        sh("ip link set " + inner + " netns " + ns) == 0 &&
        sh("ip addr add " + outer_ip + "/30 dev " + outer) == 0 &&
        sh("ip link set " + outer + " up") == 0 &&
        sh("ip netns exec " + ns + " ip addr add " + inner_ip + "/30 dev " + inner) == 0 &&
        sh("ip netns exec " + ns + " ip link set " + inner + " up") == 0 &&
        sh("ip netns exec " + ns + " ip link set lo up") == 0;
    if (!ok) why = "could not set up the veth pair";
  }
  ~NetnsLink() {
    if (!created) return;
    sh("ip link del " + outer);
    sh("ip netns del " + ns);
  }
  bool ready() const { return created && why.empty(); }
  bool set_up(bool up) { return sh("ip link set " + outer + (up ? " up" : " down")) == 0; }

  std::string ns, outer, inner, outer_ip, inner_ip, why;
  bool created = false;
};

TEST(Netns, CutLinkMovesTasksAndRestoredWorkerRejoins) {
  PEPITA_REQUIRE_CAPABILITY(netns);  // root, `ip`, unshare(CLONE_NEWNET): then setup must work
  NetnsLink net;
  ASSERT_TRUE(net.ready()) << "network namespaces are available but the link setup failed: "
                           << net.why;
  test::KeyFile kf;
  auto local = test::WorkerProcess::spawn(kf.path, 2);
  auto remote = test::WorkerProcess::spawn(kf.path, 2, 0, net.ns, net.inner_ip);
  ASSERT_TRUE(local && remote);
  RemoteOptions o;
  o.workers = {local->address(), remote->address()};
  o.key = kf.key;
  o.heartbeat_interval = 100ms;
  o.suspect_after = 400ms;
  o.dead_after = 1000ms;
  o.reconnect_initial = 50ms;
  o.reconnect_max = 200ms;
  o.connection.connect_timeout = 300ms;
  o.connection.handshake_timeout = 1000ms;
  o.log = [](std::string_view) {};
  auto d = RemoteDispatcher::start(std::move(o)).value();
  const auto t0 = std::chrono::steady_clock::now();
  while (d->workers()[1].state != WorkerState::Alive &&
         std::chrono::steady_clock::now() - t0 < 10s) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(d->workers()[1].state, WorkerState::Alive) << "namespaced worker unreachable";

  constexpr int kTasks = 120;
  std::mutex mu;
  std::vector<int> seen(kTasks + 1, 0);
  std::atomic<int> done{0};
  for (int i = 1; i <= kTasks; ++i) {
    ASSERT_TRUE(
        d->submit(test::sleep_task(static_cast<std::uint64_t>(i), 20), [&](RemoteOutcome out) {
          EXPECT_EQ(out.result.status, TaskStatus::Succeeded) << out.result.error;
          std::lock_guard lock(mu);
          ++seen[out.id];
          done.fetch_add(1);
        }));
  }
  while (done.load() < kTasks / 5) std::this_thread::sleep_for(2ms);
  ASSERT_TRUE(net.set_up(false));  // partition: no FIN, no RST, just silence
  ASSERT_TRUE(d->wait_idle(30s)) << done.load() << " of " << kTasks;
  {
    std::lock_guard lock(mu);
    for (int i = 1; i <= kTasks; ++i) ASSERT_EQ(seen[i], 1) << "task " << i;
  }
  EXPECT_NE(d->workers()[1].state, WorkerState::Alive);

  ASSERT_TRUE(net.set_up(true));
  const auto t1 = std::chrono::steady_clock::now();
  while ((d->workers()[1].state != WorkerState::Alive || d->workers()[1].connects < 2) &&
         std::chrono::steady_clock::now() - t1 < 20s) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(d->workers()[1].state, WorkerState::Alive) << "worker did not rejoin";
  const std::uint64_t before = d->workers()[1].completed;
  for (int i = 1; i <= 40; ++i) {
    ASSERT_TRUE(d->submit(test::sleep_task(static_cast<std::uint64_t>(kTasks + i), 20),
                          [](RemoteOutcome) {}));
  }
  ASSERT_TRUE(d->wait_idle(30s));
  EXPECT_GT(d->workers()[1].completed, before) << "rejoined worker got no work";
}

}  // namespace
}  // namespace pepita::transport
