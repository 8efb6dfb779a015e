#pragma once
// Resources: what a task asks for (CPUs, memory, GPUs, named counts), what a host offers, and the
// ledger that hands out the one to the other without oversubscribing. The pool keeps one Ledger
// for this host; the remote dispatcher keeps one per worker. The process executor enforces an
// attempt's Allocation: a cgroup with its memory limit, CPU quota and pids limit, its cores with
// sched_setaffinity, its GPUs through CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES,
// ZE_AFFINITY_MASK and PEPITA_GPUS.
//
//   ResourceRequest req;
//   req.cpus = 2;
//   req.memory = parse_bytes("4G").value();
//   req.memory_growth = Growth::PerAttempt;        // 4G, then 8G on the first retry, ...
//   req.gpus = 0.5;                                // two such tasks share one GPU
//   auto t = Task::binary("./train").resources(req).retry_on({RetryOn::oom()}).build();
//
//   Inventory host = Inventory::detect().value();  // sysfs, /proc/meminfo, cgroup limit, GPUs
//   (void)host.apply_overrides("gpus=0,1,2,3");    // a fake or narrowed inventory
//   Ledger ledger(host);
//   if (auto a = ledger.try_take(req, 1)) { /* run with *a */ ledger.give_back(*a); }

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::task {

/// How a requested amount grows with the attempt number (Nextflow's `6.GB * task.attempt`):
/// Fixed stays as written; PerAttempt is multiplied by the attempt (1 for the first run).
enum class Growth : std::uint8_t { Fixed, PerAttempt };

/// What one task asks for. Every field at its default means "nothing requested": the task takes
/// an executor slot and no resources (how tasks behaved before requests existed).
struct ResourceRequest {
  /// CPUs. Fractional (0.5) is a CFS quota share on the process backend; whole numbers only
  /// when pin_cpus is set. 0: none requested.
  double cpus = 0;
  /// Give the task whole cores of its own and sched_setaffinity it to them (cpus must be whole).
  bool pin_cpus = false;
  /// Memory limit in bytes (the cgroup's memory.max / memory.limit_in_bytes). 0: none.
  std::uint64_t memory = 0;
  /// A GPU count: whole numbers take that many GPUs; a fraction below 1 shares one GPU (two 0.5
  /// tasks on one id). 0: none. Ignored when gpu_ids is set.
  double gpus = 0;
  /// Specific GPUs by inventory id instead of a count ("0", "2").
  std::vector<std::string> gpu_ids;
  /// Named counts a host advertises (license = 1, ssd_gb = 100). Names: [a-z0-9_], 1..31 chars,
  /// and not cpus/memory/gpus.
  std::map<std::string, double> named;
  /// pids.max of the task's cgroup; 0: the executor's default.
  std::uint32_t pids = 0;
  Growth cpus_growth = Growth::Fixed;
  Growth memory_growth = Growth::Fixed;
  Growth gpus_growth = Growth::Fixed;

  /// True when nothing is requested (see above).
  bool empty() const noexcept;
  /// The request of attempt `attempt` (1-based): each PerAttempt amount multiplied by it.
  ResourceRequest at_attempt(std::uint32_t attempt) const;
  /// InvalidArgument naming the field: a negative or non-finite amount, a fractional gpus above
  /// 1 (1.5), fractional cpus with pin_cpus, an empty or duplicate gpu id, a bad named resource.
  Result<void> validate() const;
  /// "cpus=2 memory=4G*attempt gpus=0.5 license=1" (what was asked; for messages and --json).
  std::string to_string() const;

  friend bool operator==(const ResourceRequest&, const ResourceRequest&) = default;
};

/// Parses a byte size: a number with an optional unit K, M, G, T (powers of 1024, also written
/// KiB, MiB, ...; KB/MB/GB/TB are powers of 1000), B or none for bytes; "1.5G" allowed.
/// InvalidArgument saying what is accepted ("memory 'lots' is not a size: use e.g. 512M, 4G").
Result<std::uint64_t> parse_bytes(std::string_view text);
/// "4G", "512M", "1.5G", "123" — the shortest exact-enough form for messages.
std::string format_bytes(std::uint64_t bytes);

/// One amount as job files write it: "4G", "4G * attempt", "2", "2 * attempt". `bytes` selects
/// parse_bytes for the number; otherwise a plain non-negative decimal.
struct Amount {
  double value = 0;
  Growth growth = Growth::Fixed;
};
Result<Amount> parse_amount(std::string_view text, bool bytes);

/// Which failed attempts a task retries (job files: retry_on = ["oom", "timeout", "exit:137"]).
/// A task with a retry_on list retries only those failures; without one, the pool's RetryPolicy
/// decides as before.
struct RetryOn {
  enum class Kind : std::uint8_t { Oom, Timeout, Exit, Signal, Launch, Any };
  Kind kind = Kind::Any;
  int code = -1;  // Exit: that exit status, Signal: that signal; -1: any

  static RetryOn oom() { return {Kind::Oom, -1}; }
  static RetryOn timeout() { return {Kind::Timeout, -1}; }
  static RetryOn exit(int status = -1) { return {Kind::Exit, status}; }
  static RetryOn signal(int sig = -1) { return {Kind::Signal, sig}; }
  friend bool operator==(const RetryOn&, const RetryOn&) = default;
};
/// "oom", "timeout", "exit", "exit:137", "signal", "signal:9", "launch", "any"; InvalidArgument
/// listing them otherwise.
Result<RetryOn> parse_retry_on(std::string_view text);
std::string to_string(const RetryOn& r);

/// One GPU (or a share of one) given to an attempt.
struct GpuShare {
  std::string id;
  double fraction = 1.0;
  friend bool operator==(const GpuShare&, const GpuShare&) = default;
};

/// What one attempt was given (Task::allocation()): the request at that attempt, made concrete.
struct Allocation {
  std::uint32_t attempt = 1;
  double cpus = 0;              // as requested (0: none)
  std::vector<unsigned> cores;  // the cores it owns when pinned; empty otherwise
  std::uint64_t memory = 0;     // the limit (0: none)
  std::vector<GpuShare> gpus;
  std::map<std::string, double> named;
  std::uint32_t pids = 0;

  /// The GPU ids, comma-joined ("0,1"), what goes into CUDA_VISIBLE_DEVICES and friends.
  std::string gpu_list() const;
  friend bool operator==(const Allocation&, const Allocation&) = default;
};

/// What one host (this machine, or a worker) offers.
struct Inventory {
  std::vector<unsigned> cpus;                 // usable cores, ascending (our affinity mask)
  std::map<int, std::vector<unsigned>> numa;  // node -> its usable cores
  std::uint64_t memory = 0;                   // bytes: MemTotal, or our cgroup's limit if lower
  std::vector<std::string> gpus;              // GPU ids ("0", "1", ...)
  std::map<std::string, double> named;

  /// This machine: CPUs from sched_getaffinity and sysfs NUMA nodes, memory from /proc/meminfo
  /// and the cgroup limit (v2 memory.max or v1 memory.limit_in_bytes) if lower, GPUs from
  /// `nvidia-smi -L` where it exists, else /sys/class/drm render nodes. (Vulkan physical
  /// devices are added by the gpu module's callers: it sits above this one.)
  static Result<Inventory> detect();
  /// Replaces what the spec names: "gpus=0,1,2,3" (ids), "gpus=4" (ids 0..3), "cpus=32" (cores
  /// 0..31, or a cpu list "cpus=0-3,8"), "memory=64G", any other name=count a named resource.
  /// Comma-separated items; a value holding commas (ids) continues until the next "name=".
  /// InvalidArgument naming the item.
  Result<void> apply_overrides(std::string_view spec);
  /// Whether `request` (at its first attempt) fits on this host when it is idle. Unsupported
  /// with the reason otherwise: "needs 4 GPUs; this host has 2", "needs license=1; this host has
  /// no 'license'".
  Result<void> can_ever_fit(const ResourceRequest& request) const;
  /// "cpus=2 memory=23.4G gpus=0,1 license=2".
  std::string to_string() const;

  friend bool operator==(const Inventory&, const Inventory&) = default;
};

/// The free part of one host's Inventory and the choice of what to give. Not thread-safe (its
/// owner's lock guards it). Placement: CPUs and memory are counted; pinned CPUs take whole free
/// cores (the lowest, preferring one NUMA node); a fractional GPU goes to the id with the least
/// room that still fits it (packing), whole GPUs to free ids; named counts are counted.
class Ledger {
 public:
  Ledger() = default;
  explicit Ledger(Inventory inventory);

  /// The Allocation for `request` at `attempt` when it fits now; nullopt when not (yet).
  std::optional<Allocation> try_take(const ResourceRequest& request, std::uint32_t attempt);
  /// Returns what try_take gave.
  void give_back(const Allocation& allocation);
  /// Whether `request` at `attempt` would take any kind of resource that `waiting` at
  /// `waiting_attempt` is short of now — the reservation rule: while the head of the queue
  /// waits, no other task may take what it needs more of.
  bool competes(const ResourceRequest& request, std::uint32_t attempt,
                const ResourceRequest& waiting, std::uint32_t waiting_attempt) const;
  const Inventory& inventory() const noexcept { return inventory_; }
  double free_cpus() const noexcept { return free_cpus_; }
  std::uint64_t free_memory() const noexcept { return free_memory_; }

 private:
  Inventory inventory_;
  double free_cpus_ = 0;
  std::vector<bool> core_taken_;  // by index in inventory_.cpus
  std::uint64_t free_memory_ = 0;
  std::map<std::string, double> gpu_free_;  // id -> free fraction
  std::map<std::string, double> named_free_;
  std::size_t outstanding_ = 0;  // allocations not given back; at 0 the totals are restored
};

}  // namespace pepita::task
