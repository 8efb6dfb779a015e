#pragma once
// Shared by the process executor's tests: one attempt run to its result, and an executor with
// four slots.
#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

#include "pepita/executor/process.hpp"

namespace pepita::executor::test {

/// Starts `task` on `exec` and waits for its result; an empty result (and a test failure) when
/// start() refuses it.
inline ExecutionResult run_one(Executor& exec, const task::Task& task, std::stop_token stop = {}) {
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  auto started =
      exec.start(task, std::move(stop), [&p](ExecutionResult r) { p.set_value(std::move(r)); });
  EXPECT_TRUE(started) << started.error().message();
  if (!started) return {};
  return f.get();
}

/// A ProcessExecutor with 4 slots and the given SIGTERM-to-SIGKILL grace.
inline std::unique_ptr<ProcessExecutor> make(
    std::chrono::nanoseconds grace = std::chrono::seconds(2)) {
  auto e = ProcessExecutor::create({.slots = 4, .kill_grace = grace});
  EXPECT_TRUE(e) << e.error().message();
  return std::move(*e);
}

/// Whether `pid` still runs: false once it is gone or a zombie.
inline bool process_running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

/// Waits (up to 10 s) for `path` to exist: the child's script creates it once it is set up.
inline bool wait_for_file(const std::string& path) {
  for (int i = 0; i < 1000; ++i) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace pepita::executor::test
