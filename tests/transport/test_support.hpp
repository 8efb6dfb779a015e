#pragma once
// Helpers for transport tests: key files, an in-process worker, and worker *processes* made by
// re-executing this test binary with PEPITA_TRANSPORT_TEST_WORKER set (see worker_main.cpp).

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "pepita/transport/crypto.hpp"
#include "pepita/transport/worker.hpp"

namespace pepita::transport::test {

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

}  // namespace pepita::transport::test
