#pragma once
// Helpers for transport tests: key files, an in-process worker, worker *processes* made by
// re-executing this test binary with PEPITA_TRANSPORT_TEST_WORKER set, and a batch of echo tasks
// checked for exactly-once completion.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/task/resources.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/worker.hpp"

namespace pepita::transport::test {

/// Log lines of a worker or dispatcher (its `log` option), readable while it runs.
struct LogLines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view l) {
      std::lock_guard lock(mu);
      lines.emplace_back(l);
    };
  }
  bool contains(std::string_view needle) {
    std::lock_guard lock(mu);
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(needle) != std::string::npos; });
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& l : lines) out.append(l).append("\n");
    return out;
  }
};

/// A fresh key and its 0600 file, removed on destruction.
struct KeyFile {
  KeyFile();
  ~KeyFile();
  KeyFile(const KeyFile&) = delete;
  KeyFile& operator=(const KeyFile&) = delete;
  Key key;
  std::string path;
};

/// An in-process worker on 127.0.0.1 with an ephemeral port and fast timers.
std::unique_ptr<Worker> start_worker(
    const Key& key, std::uint32_t slots,
    std::chrono::milliseconds handshake_timeout = std::chrono::milliseconds(2000));
/// The same, advertising `inventory` (as `pepita worker --resources ...` would) instead of what
/// this host has.
std::unique_ptr<Worker> start_worker(const Key& key, std::uint32_t slots,
                                     task::Inventory inventory);

/// A worker running in a child process; killed with SIGKILL on destruction if still alive.
class WorkerProcess {
 public:
  /// Starts one and waits until it listens on `host`. `port` 0 picks a free port; a non-empty
  /// `netns` runs it inside that network namespace (`ip netns exec`).
  static std::unique_ptr<WorkerProcess> spawn(const std::string& key_path, std::uint32_t slots,
                                              std::uint16_t port = 0, const std::string& netns = "",
                                              const std::string& host = "127.0.0.1");
  ~WorkerProcess();
  std::uint16_t port() const { return port_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  /// Sends `sig` and reaps the process; returns its wait status.
  int kill_and_wait(int sig);

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string host_ = "127.0.0.1";
  std::string port_file_;
};

/// Dispatcher options for tests: heartbeats every 100 ms, a worker dead after 2 s of silence,
/// reconnects within 20–200 ms, no log.
RemoteOptions fast_options(const Key& key, std::vector<std::string> workers);

/// A task running the workers' built-in `sleep_ms` function for `ms` milliseconds.
RemoteTask sleep_task(std::uint64_t id, int ms);

/// Tasks 1..n that each print their id after a short sleep, with a record of every completion,
/// for exactly-once checks across worker deaths.
class EchoTasks {
 public:
  /// Submits them all to `d`; false when a submit was refused.
  bool submit(RemoteDispatcher& d, int n, const std::string& sleep_s = "0.005");
  int done() const { return done_.load(); }
  /// Success when every task completed exactly once, succeeded, and printed its own id.
  ::testing::AssertionResult each_exactly_once() const;

 private:
  mutable std::mutex mu_;
  std::vector<int> completions_;
  std::vector<std::string> outputs_;
  std::vector<std::string> failures_;
  std::atomic<int> done_{0};
};

}  // namespace pepita::transport::test
