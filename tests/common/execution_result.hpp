#pragma once
// Test helpers for executor::ExecutionResult codecs (the journal record, the wire form): a
// field-by-field comparison that names the first field that differs, and a rapidcheck generator of
// results over every field a codec carries.

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pepita/executor/result.hpp"
#include "pepita/task/resources.hpp"

namespace pepita::test {

/// Equal in what a run produced: name, status, exit code, signal, wall and CPU time, max RSS,
/// both outputs and their byte counts, and the error. Not id or attempts, which the pool assigns
/// and each codec treats its own way (callers compare those themselves).
inline ::testing::AssertionResult same_outcome_fields(const executor::ExecutionResult& a,
                                                      const executor::ExecutionResult& b) {
  auto diff = [](const char* f) { return ::testing::AssertionFailure() << f << " differs"; };
  if (a.name != b.name) return diff("name");
  if (a.status != b.status) return diff("status");
  if (a.exit_code != b.exit_code) return diff("exit_code");
  if (a.signal != b.signal) return diff("signal");
  if (a.wall != b.wall) return diff("wall");
  if (a.cpu != b.cpu) return diff("cpu");
  if (a.max_rss_kb != b.max_rss_kb) return diff("max_rss_kb");
  if (a.stdout_data != b.stdout_data) return diff("stdout_data");
  if (a.stderr_data != b.stderr_data) return diff("stderr_data");
  if (a.stdout_bytes != b.stdout_bytes) return diff("stdout_bytes");
  if (a.stderr_bytes != b.stderr_bytes) return diff("stderr_bytes");
  if (a.error != b.error) return diff("error");
  return ::testing::AssertionSuccess();
}

/// Inside a rapidcheck property: a result with every outcome field arbitrary (any status, any
/// times, outputs with byte counts at or above their length, as a cap leaves them); id 0 and
/// attempts 0, for the caller to set.
inline executor::ExecutionResult arbitrary_outcome() {
  executor::ExecutionResult r;
  r.name = *rc::gen::arbitrary<std::string>();
  r.status = static_cast<executor::Status>(*rc::gen::inRange<int>(0, executor::kStatusCount));
  r.exit_code = *rc::gen::arbitrary<int>();
  r.signal = *rc::gen::arbitrary<int>();
  r.wall = std::chrono::nanoseconds(*rc::gen::arbitrary<std::int64_t>());
  r.cpu = std::chrono::nanoseconds(*rc::gen::arbitrary<std::int64_t>());
  r.max_rss_kb = *rc::gen::arbitrary<std::int64_t>();
  r.stdout_data = *rc::gen::arbitrary<std::string>();
  r.stderr_data = *rc::gen::arbitrary<std::string>();
  r.stdout_bytes = r.stdout_data.size() + *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
  r.stderr_bytes = r.stderr_data.size() + *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
  r.error = *rc::gen::arbitrary<std::string>();
  return r;
}

/// Equal in the resource fields (issue 22): peak memory, memory limit and the allocation.
inline ::testing::AssertionResult same_resource_fields(const executor::ExecutionResult& a,
                                                       const executor::ExecutionResult& b) {
  auto diff = [](const char* f) { return ::testing::AssertionFailure() << f << " differs"; };
  if (a.peak_memory != b.peak_memory) return diff("peak_memory");
  if (a.memory_limit != b.memory_limit) return diff("memory_limit");
  if (a.allocation != b.allocation) return diff("allocation");
  return ::testing::AssertionSuccess();
}

/// Inside a rapidcheck property: an arbitrary Allocation (finite, non-negative amounts).
inline task::Allocation arbitrary_allocation() {
  task::Allocation a;
  a.attempt = *rc::gen::inRange<std::uint32_t>(1, 100);
  a.cpus = *rc::gen::inRange<int>(0, 4096) / 4.0;
  a.cores = *rc::gen::container<std::vector<unsigned>>(rc::gen::inRange<unsigned>(0, 1024));
  a.memory = *rc::gen::arbitrary<std::uint64_t>();
  const auto n = *rc::gen::inRange<int>(0, 5);
  for (int i = 0; i < n; ++i) {
    a.gpus.push_back({*rc::gen::arbitrary<std::string>(), *rc::gen::inRange<int>(1, 100) / 100.0});
  }
  const auto m = *rc::gen::inRange<int>(0, 4);
  for (int i = 0; i < m; ++i) {
    a.named[*rc::gen::arbitrary<std::string>()] = *rc::gen::inRange<int>(0, 1000) / 8.0;
  }
  a.pids = *rc::gen::arbitrary<std::uint32_t>();
  return a;
}

/// arbitrary_outcome() with the resource fields arbitrary too (an allocation or none).
inline executor::ExecutionResult arbitrary_outcome_with_resources() {
  executor::ExecutionResult r = arbitrary_outcome();
  r.peak_memory = *rc::gen::arbitrary<std::uint64_t>();
  r.memory_limit = *rc::gen::arbitrary<std::uint64_t>();
  if (*rc::gen::arbitrary<bool>()) r.allocation = arbitrary_allocation();
  return r;
}

}  // namespace pepita::test
