#pragma once
// Resource placement on remote workers (issue 22): one WorkerLedger per worker, built from the
// task::Inventory it advertised at registration, decides which queued tasks a lease scan gives
// that worker, and keeps the Allocation each task it holds took. The reservation rule is the
// pool's (task::Ledger::competes): while the first task of the queue that could run on this
// worker waits for room, no later task may take what it is short of, so a stream of small tasks
// never starves a large one. Pure: no sockets, threads or clocks (the dispatcher's lock guards it).
//
//   WorkerLedger w(inventory);                    // from RegisterMsg::inventory
//   w.begin_scan();
//   table.lease(wi, slots, now, [&](auto id, auto) { return w.admit(id, req_of(id), 1); });
//   submit.allocation = *w.allocation(id);        // what to send with the task
//   w.release(id);                                // on its result, loss or lease expiry

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/transport/lease_table.hpp"

namespace pepita::transport {

class WorkerLedger {
 public:
  explicit WorkerLedger(task::Inventory inventory);

  /// Starts one lease scan over the queue: forgets the task the previous scan reserved for.
  void begin_scan();
  /// Whether task `id`, asking `request` at resource attempt `attempt`, goes to this worker now.
  /// Take: its Allocation is kept under `id` (allocation()). Skip: it never fits here, it does
  /// not fit now (the first such task becomes this scan's reservation), or it would take what
  /// the reserved task is short of. An empty request is always taken (a slot only).
  LeaseTable::Admit admit(std::uint64_t id, const task::ResourceRequest& request,
                          std::uint32_t attempt);
  /// What task `id` took; nullptr when it holds nothing here (an empty request, or released).
  const task::Allocation* allocation(std::uint64_t id) const;
  /// Gives back what task `id` took (no-op when it holds nothing).
  void release(std::uint64_t id);
  /// The tasks holding resources here.
  std::vector<std::uint64_t> holders() const;
  const task::Inventory& inventory() const noexcept { return ledger_.inventory(); }
  const task::Ledger& ledger() const noexcept { return ledger_; }

 private:
  task::Ledger ledger_;
  std::map<std::uint64_t, task::Allocation> taken_;
  std::optional<std::pair<task::ResourceRequest, std::uint32_t>> reserved_;
};

/// Whether `request` could ever run on one of `workers` (their advertised inventories). OK when
/// one can hold it when idle, or when `workers` is empty (nothing is known yet). Unsupported
/// otherwise, naming the largest worker: "needs 4 GPUs; the largest worker has 2", or, when
/// every kind fits on some worker but not all on one, the request and each worker's inventory.
Result<void> can_ever_fit_any(const std::vector<task::Inventory>& workers,
                              const task::ResourceRequest& request);

}  // namespace pepita::transport
