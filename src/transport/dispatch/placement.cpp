// WorkerLedger and can_ever_fit_any: resource placement of the remote dispatcher (issue 22).
#include "pepita/transport/placement.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "pepita/core/format.hpp"

namespace pepita::transport {

WorkerLedger::WorkerLedger(task::Inventory inventory) : ledger_(std::move(inventory)) {}

void WorkerLedger::begin_scan() { reserved_.reset(); }

LeaseTable::Admit WorkerLedger::admit(std::uint64_t id, const task::ResourceRequest& request,
                                      std::uint32_t attempt) {
  using Admit = LeaseTable::Admit;
  if (request.empty()) return Admit::Take;
  const task::ResourceRequest at = request.at_attempt(attempt);
  if (!ledger_.inventory().can_ever_fit(at)) return Admit::Skip;  // another worker's task
  if (reserved_ && ledger_.competes(request, attempt, reserved_->first, reserved_->second)) {
    return Admit::Skip;
  }
  if (auto a = ledger_.try_take(request, attempt)) {
    taken_.insert_or_assign(id, std::move(*a));
    return Admit::Take;
  }
  if (!reserved_) reserved_.emplace(request, attempt);
  return Admit::Skip;
}

const task::Allocation* WorkerLedger::allocation(std::uint64_t id) const {
  auto it = taken_.find(id);
  return it == taken_.end() ? nullptr : &it->second;
}

void WorkerLedger::release(std::uint64_t id) {
  auto it = taken_.find(id);
  if (it == taken_.end()) return;
  ledger_.give_back(it->second);
  taken_.erase(it);
}

std::vector<std::uint64_t> WorkerLedger::holders() const {
  std::vector<std::uint64_t> out;
  out.reserve(taken_.size());
  for (const auto& [id, a] : taken_) out.push_back(id);
  return out;
}

Result<void> can_ever_fit_any(const std::vector<task::Inventory>& workers,
                              const task::ResourceRequest& request) {
  if (workers.empty() || request.empty()) return {};
  for (const auto& w : workers) {
    if (w.can_ever_fit(request)) return {};
  }
  // The largest worker, kind by kind: the most cores, memory, GPUs and of each named count.
  task::Inventory largest;
  for (const auto& w : workers) {
    if (w.cpus.size() > largest.cpus.size()) {
      largest.cpus = w.cpus;
      largest.numa = w.numa;
    }
    largest.memory = std::max(largest.memory, w.memory);
    if (w.gpus.size() > largest.gpus.size()) largest.gpus = w.gpus;
    for (const auto& [name, n] : w.named) {
      auto& have = largest.named[name];
      have = std::max(have, n);
    }
  }
  auto r = largest.can_ever_fit(request);
  if (!r) {
    // Inventory speaks of "this host"; here the host is the largest of the workers.
    std::string msg = r.error().message();
    if (auto at = msg.find("this host"); at != std::string::npos) {
      msg.replace(at, 9, "the largest worker");
    } else {
      msg = std::string("the largest worker cannot hold it: ").append(msg);
    }
    return fail(ErrorCode::Unsupported, std::move(msg));
  }
  std::string each;
  for (const auto& w : workers) {
    if (!each.empty()) each.append("; ");
    each.append(w.to_string());
  }
  return fail(ErrorCode::Unsupported,
              pepita::fmt("needs {} on one worker; each kind fits on some worker but no worker "
                          "has all of it (workers: {})",
                          request.to_string(), each));
}

}  // namespace pepita::transport
