// LeaseTable property tests (model-based): random sequences of add, lease, result, renew,
// expire, worker loss and cancel against a model of what was submitted and completed. After
// every step: no task completes twice, a task is leased to at most one worker, every live task
// is either queued or leased, expiry leaves no expired lease behind; at the end, once the
// workers are gone and a fresh one drains the queue, every task completed exactly once.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "pepita/transport/lease_table.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using Report = LeaseTable::Report;
using Action = LeaseTable::Action;

constexpr std::size_t kWorkers = 4;

struct Model {
  LeaseTable table{{.max_attempts = 3, .lease_ttl = 1s}};
  LeaseTable::TimePoint now{};
  std::vector<std::uint64_t> submitted;
  std::map<std::uint64_t, int> completions;

  void completed(std::uint64_t id) { ++completions[id]; }
  void completed(const std::vector<LeaseTable::Finished>& fs) {
    for (const auto& f : fs) completed(f.id);
  }
  std::uint64_t pick(std::uint8_t b) const {
    return submitted.empty() ? 12345 : submitted[b % submitted.size()];
  }
  bool live(std::uint64_t id) const {
    auto it = completions.find(id);
    return it == completions.end() || it->second == 0;
  }

  void check() const {
    std::size_t leased = 0, live_count = 0, live_leased = 0;
    for (std::uint64_t id : submitted) {
      auto it = completions.find(id);
      // (evaluated before RC_ASSERT: its expression capture would not short-circuit `||`)
      const bool at_most_once = it == completions.end() || it->second <= 1;
      RC_ASSERT(at_most_once);  // exactly-once
      const bool has_holder = table.holder(id).has_value();
      if (has_holder) ++leased;
      if (live(id)) {
        ++live_count;
        if (has_holder) ++live_leased;
        RC_ASSERT(table.contains(id));  // nothing lost
        RC_ASSERT(!table.completed(id));
      }
    }
    std::size_t held = 0;
    for (std::size_t w = 0; w < kWorkers; ++w) held += table.held(w);
    // Each lease is held by exactly the worker its task names: at most one holder per task.
    RC_ASSERT(held == leased);
    // A live task is queued or leased, never both, never neither.
    RC_ASSERT(table.queued() + live_leased == live_count);
  }

  void step(std::uint8_t op, std::uint8_t a, std::uint8_t b) {
    const std::size_t w = a % kWorkers;
    switch (op % 7) {
      case 0: {
        const std::uint64_t id = submitted.size() + 1;
        RC_ASSERT(table.add(id));
        submitted.push_back(id);
        break;
      }
      case 1: {
        const auto l = table.lease(w, 1 + b % 3, now);
        completed(l.exhausted);
        for (const auto& g : l.granted) {
          RC_ASSERT(live(g.id));
          RC_ASSERT(table.holder(g.id) == w);
          RC_ASSERT(g.attempt >= 1u);
          RC_ASSERT(g.attempt <= 3u);
        }
        break;
      }
      case 2: {
        const std::uint64_t id = pick(b);
        const Report r = static_cast<Report>((a / kWorkers) % 3);
        const bool was_live = live(id);
        const auto v = table.on_result(w, id, r);
        if (v.action == Action::Complete || v.action == Action::CompleteCancelled) {
          RC_ASSERT(was_live);
          completed(id);
        }
        if (!was_live) RC_ASSERT(v.action == Action::Duplicate);  // late results are dropped
        break;
      }
      case 3: {
        const auto r = table.worker_lost(w);
        completed(r.cancelled);
        RC_ASSERT(table.held(w) == 0u);
        for (std::uint64_t id : r.requeued) RC_ASSERT(!table.holder(id).has_value());
        break;
      }
      case 4: {
        const std::uint64_t id = pick(b);
        const auto c = table.cancel(id);
        if (c.action == LeaseTable::CancelAction::Completed) completed(id);
        if (c.action == LeaseTable::CancelAction::SendToHolder) {
          RC_ASSERT(table.holder(id) == c.holder);
        }
        break;
      }
      case 5: table.renew(w, now); break;
      case 6: {
        now += std::chrono::milliseconds(50) * b;
        const auto r = table.expire(now);
        completed(r.cancelled);
        for (std::uint64_t id : r.requeued) RC_ASSERT(!table.holder(id).has_value());
        // Every expired lease went in one sweep: a second finds none.
        RC_ASSERT(table.expire(now).leases == 0u);
        break;
      }
    }
    check();
  }

  // The workers go away; a fresh worker runs whatever is left to completion.
  void finish() {
    for (std::size_t w = 0; w < kWorkers; ++w) completed(table.worker_lost(w).cancelled);
    check();
    const std::size_t fresh = kWorkers + 1;
    for (int round = 0; round < 100 && table.queued() > 0; ++round) {
      const auto l = table.lease(fresh, 1000, now);
      completed(l.exhausted);
      for (const auto& g : l.granted) {
        const auto v = table.on_result(fresh, g.id, Report::Final);
        RC_ASSERT(v.action == Action::Complete);
        completed(g.id);
      }
    }
    for (std::uint64_t id : submitted) {
      RC_ASSERT(completions[id] == 1);
      RC_ASSERT(!table.contains(id));
    }
  }
};

RC_GTEST_PROP(LeaseTableModel, EveryTaskCompletesExactlyOnceAndNoneIsLost,
              (const std::vector<std::tuple<std::uint8_t, std::uint8_t, std::uint8_t>>& ops)) {
  Model m;
  for (const auto& [op, a, b] : ops) m.step(op, a, b);
  m.finish();
}

RC_GTEST_PROP(LeaseTableModel, AResultAfterCompletionIsAlwaysADuplicate,
              (const std::vector<std::tuple<std::uint8_t, std::uint8_t, std::uint8_t>>& ops,
               std::uint8_t worker)) {
  Model m;
  for (const auto& [op, a, b] : ops) m.step(op, a, b);
  m.finish();
  const std::uint64_t before = m.table.duplicates();
  for (std::uint64_t id : m.submitted) {
    RC_ASSERT(m.table.on_result(worker % kWorkers, id, Report::Final).action == Action::Duplicate);
  }
  RC_ASSERT(m.table.duplicates() == before + m.submitted.size());
}

}  // namespace
}  // namespace pepita::transport
