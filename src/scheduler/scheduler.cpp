// Scheduler internals: worker loop, randomized stealing, injection queue, and the sleep/wake
// protocol. Sleeping follows the "announce, then re-check" pattern: a worker puts itself on the
// idle list, issues a barrier, re-scans every queue, and only then parks. A producer pushes, then
// reads the idle count. Either the worker's re-scan sees the task or the producer sees the
// sleeper; the barrier that makes this true is membarrier(2) on the sleeper's side (Linux
// asymmetric fence), so a spawn pays no fence on its fast path.

#include "pepita/scheduler/scheduler.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "detail/parker.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/thread.hpp"
#include "pepita/scheduler/deque.hpp"

namespace pepita::scheduler {

namespace {

/// Owner-written, anyone-read counter: a plain load+store (no RMW) keeps the hot path cheap.
struct Counter {
  std::atomic<std::uint64_t> value{0};
  void bump() noexcept {
    value.store(value.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");  // SAFETY: a hint instruction with no memory or register effects.
#endif
}

// Set once per process when MEMBARRIER_CMD_PRIVATE_EXPEDITED is registered.
std::atomic<bool> g_membarrier{false};
std::once_flag g_membarrier_once;

void init_membarrier() {
  std::call_once(g_membarrier_once, [] {
    g_membarrier.store(sys::membarrier_register_private_expedited(), std::memory_order_relaxed);
  });
}

/// Producer half of the asymmetric fence: a compiler barrier when the sleeper uses membarrier,
/// otherwise a real full fence.
inline void light_barrier() noexcept {
  if (g_membarrier.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
#if defined(PEPITA_DEQUE_NO_FENCES)
    static std::atomic<int> dummy{0};
    dummy.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }
}

/// Sleeper half: forces every running thread of the process through a full barrier.
inline void heavy_barrier() noexcept {
  if (g_membarrier.load(std::memory_order_relaxed) && sys::membarrier_private_expedited() == 0) {
    return;
  }
#if defined(PEPITA_DEQUE_NO_FENCES)
  static std::atomic<int> dummy{0};
  dummy.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace

// Split by who touches what: the deque is shared with thieves; counters are owner-written.
struct alignas(kCacheLine) Worker {
  explicit Worker(std::size_t deque_capacity) : deque(deque_capacity) {}
  WorkStealingDeque<detail::TaskBase*> deque;
  alignas(kCacheLine) Counter executed;
  // Whether the worker takes work (deactivate_worker/add_worker write it, under members_mu).
  // Read by the owner once per task, so it shares the line of `executed`, which the owner
  // writes per task anyway: the check costs no extra cache line.
  std::atomic<bool> active{true};
  Counter steals_attempted;
  Counter steals_succeeded;
  Counter injected_taken;
  Counter parks;
  std::uint64_t rng = 0;  // owner-only xorshift state for victim selection
  bool hungry = false;    // owner-only: counted in Impl::hungry (looking for work or parked)
  unsigned index = 0;
  Scheduler::Impl* impl = nullptr;
  // Deactivation handshake: `stop_epoch` counts requests (written under Impl::members_mu); the
  // owner copies it to `stopped_epoch` once it takes no more tasks.
  alignas(kCacheLine) std::atomic<std::uint64_t> stop_epoch{0};
  std::atomic<std::uint64_t> stopped_epoch{0};
  alignas(kCacheLine) detail::Parker parker;
  std::thread thread;
};

namespace {
thread_local Worker* tls_worker = nullptr;
thread_local detail::Parker tls_parker;  // for non-worker threads that wait
}  // namespace

struct Scheduler::Impl {
  Options options;
  std::vector<std::unique_ptr<Worker>> workers;  // max_workers slots, allocated at create()
  // Slots [0, started) have had a thread started; thieves sweep only those. Written under
  // members_mu (release, after the slot is ready), read by every steal sweep (acquire).
  alignas(kCacheLine) std::atomic<unsigned> started{0};
  std::atomic<unsigned> active_count{0};  // written under members_mu
  std::mutex members_mu;                  // serialises add_worker / deactivate_worker

  alignas(kCacheLine) std::mutex inject_mu;
  std::deque<detail::TaskBase*> inject;  // guarded by inject_mu
  std::atomic<std::size_t> inject_size{0};

  alignas(kCacheLine) std::mutex idle_mu;
  std::vector<Worker*> idle;  // guarded by idle_mu
  std::atomic<int> num_idle{0};

  alignas(kCacheLine) std::mutex wait_mu;
  std::vector<std::pair<const void*, detail::Parker*>> waiters;  // guarded by wait_mu
  std::atomic<int> num_waiters{0};

  // Workers looking for work (own deque empty: searching, spinning or parked). Written only on
  // those transitions; read (relaxed) by every join() to decide whether to make work stealable.
  alignas(kCacheLine) std::atomic<int> hungry{0};

  alignas(kCacheLine) std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> external_executed{0};
  std::atomic<std::uint64_t> uncaught{0};

  // ---- queues ----
  detail::TaskBase* pop_injected() {
    if (inject_size.load(std::memory_order_seq_cst) == 0) return nullptr;
    std::lock_guard lock(inject_mu);
    if (inject.empty()) return nullptr;
    detail::TaskBase* t = inject.front();
    inject.pop_front();
    inject_size.fetch_sub(1, std::memory_order_relaxed);
    return t;
  }

  detail::TaskBase* steal_from_others(Worker& self) {
    const std::size_t n = started.load(std::memory_order_acquire);
    if (n < 2) return nullptr;
    // xorshift64: a uniformly random first victim (Blumofe–Leiserson), then one sweep.
    self.rng ^= self.rng << 13;
    self.rng ^= self.rng >> 7;
    self.rng ^= self.rng << 17;
    std::size_t start = static_cast<std::size_t>(self.rng % n);
    for (std::size_t k = 0; k < n; ++k) {
      Worker& victim = *workers[(start + k) % n];
      if (&victim == &self) continue;
      self.steals_attempted.bump();
      if (auto t = victim.deque.steal()) {
        self.steals_succeeded.bump();
        // The victim still has work and someone sleeps: pass the wake-up along.
        if (!victim.deque.empty_hint()) wake_one();
        return *t;
      }
    }
    return nullptr;
  }

  void set_hungry(Worker& w) noexcept {
    if (w.hungry) return;
    w.hungry = true;
    hungry.fetch_add(1, std::memory_order_relaxed);
  }
  void clear_hungry(Worker& w) noexcept {
    if (!w.hungry) return;
    w.hungry = false;
    hungry.fetch_sub(1, std::memory_order_relaxed);
  }

  detail::TaskBase* find_task(Worker& w) {
    if (auto t = w.deque.pop()) {
      clear_hungry(w);
      return *t;
    }
    set_hungry(w);  // join()s elsewhere now make their work stealable (lazy task creation)
    detail::TaskBase* t = pop_injected();
    if (t != nullptr) {
      w.injected_taken.bump();
    } else {
      t = steal_from_others(w);
    }
    if (t != nullptr) clear_hungry(w);
    return t;
  }

  bool work_visible() const noexcept {
    if (inject_size.load(std::memory_order_seq_cst) != 0) return true;
    const auto end = workers.begin() + started.load(std::memory_order_acquire);
    return std::any_of(workers.begin(), end, [](const auto& w) { return !w->deque.empty_hint(); });
  }

  static void execute(Worker& w, detail::TaskBase* t) noexcept {
    t->execute(t);
    w.executed.bump();
  }

  // ---- sleep / wake ----
  void wake_one() noexcept {
    if (num_idle.load(std::memory_order_seq_cst) == 0) return;
    Worker* w = nullptr;
    {
      std::lock_guard lock(idle_mu);
      if (idle.empty()) return;
      w = idle.back();
      idle.pop_back();
      num_idle.fetch_sub(1, std::memory_order_relaxed);
    }
    w->parker.unpark();
  }

  void register_idle(Worker& w) {
    std::lock_guard lock(idle_mu);
    idle.push_back(&w);
    num_idle.fetch_add(1, std::memory_order_seq_cst);
  }

  void unregister_idle(Worker& w) {
    std::lock_guard lock(idle_mu);
    auto it = std::find(idle.begin(), idle.end(), &w);
    if (it != idle.end()) {
      idle.erase(it);
      num_idle.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  void register_waiter(const void* key, detail::Parker* p) {
    std::lock_guard lock(wait_mu);
    waiters.emplace_back(key, p);
    num_waiters.fetch_add(1, std::memory_order_seq_cst);
  }

  void unregister_waiter(const void* key, detail::Parker* p) {
    std::lock_guard lock(wait_mu);
    auto it = std::find(waiters.begin(), waiters.end(), std::pair{key, p});
    if (it != waiters.end()) {
      waiters.erase(it);
      num_waiters.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  void notify(const void* key) noexcept {
    if (num_waiters.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard lock(wait_mu);
    for (auto& [k, p] : waiters) {
      if (k == key) p->unpark();
    }
  }

  void after_push() noexcept {
    light_barrier();  // paired with heavy_barrier() in a sleeper: see the file comment
    if (num_idle.load(std::memory_order_relaxed) != 0) wake_one();
  }

  void inject_task(detail::TaskBase* t) {
    {
      std::lock_guard lock(inject_mu);
      inject.push_back(t);
      inject_size.fetch_add(1, std::memory_order_seq_cst);
    }
    wake_one();
  }

  /// Spins through `rounds` failed searches; returns a task as soon as one shows up.
  detail::TaskBase* spin_for_task(Worker& w) {
    for (unsigned r = 0; r < options.spin_rounds; ++r) {
      for (unsigned i = 0; i < 32; ++i) cpu_relax();
      if (r % 8 == 7) std::this_thread::yield();  // let a preempted task owner run (2 cores)
      if (detail::TaskBase* t = find_task(w)) return t;
    }
    return nullptr;
  }

  // ---- deactivation ----
  /// The owner's side of deactivate_worker: move every queued task to the injection queue, then
  /// acknowledge. Called on the owner thread after it saw `active` false.
  void quiesce(Worker& w) {
    // acquire on `active` (the caller's load) ordered this after the request's epoch bump.
    const std::uint64_t epoch = w.stop_epoch.load(std::memory_order_acquire);
    // Every time, not only on the first call: a task still running on the worker when it was
    // deactivated (from itself, or blocked in a TaskGroup wait) may have pushed more since.
    while (auto t = w.deque.pop()) inject_task(*t);
    // A wake-up meant for work may have picked this worker off the idle list: pass it on.
    if (work_visible()) wake_one();
    if (w.stopped_epoch.load(std::memory_order_relaxed) == epoch) return;
    w.stopped_epoch.store(epoch, std::memory_order_release);  // deactivate_worker waits on it
    w.stopped_epoch.notify_all();
  }

  /// Parks an inactive worker until it is reactivated (true) or the scheduler stops (false).
  bool sit_out(Worker& w) {
    clear_hungry(w);  // an inactive worker takes no work: joins need not feed it
    for (;;) {
      // Acknowledge on every round: between two wake-ups the worker may have been reactivated
      // and deactivated again (a new epoch) without ever leaving this loop.
      quiesce(w);
      if (w.active.load(std::memory_order_acquire)) return true;
      if (stopping.load(std::memory_order_acquire)) return false;
      w.parks.bump();
      w.parker.park();
    }
  }

  void worker_main(Worker& w) {
    tls_worker = &w;
    std::string name = options.name + std::to_string(w.index);
    (void)sys::set_current_thread_name(name.c_str());
    if (options.pin_workers) {
      std::vector<int> cpus = sys::allowed_cpus();
      if (!cpus.empty()) (void)sys::pin_current_thread(cpus[w.index % cpus.size()]);
    }
    for (;;) {
      if (!w.active.load(std::memory_order_acquire)) {
        if (!sit_out(w)) break;
        continue;
      }
      detail::TaskBase* t = find_task(w);
      if (t == nullptr) t = spin_for_task(w);
      if (t != nullptr) {
        execute(w, t);
        continue;
      }
      register_idle(w);
      heavy_barrier();
      if (work_visible()) {
        unregister_idle(w);
        continue;
      }
      // Drain semantics: leave only once stopping and nothing is left anywhere we can see.
      if (stopping.load(std::memory_order_acquire)) {
        unregister_idle(w);
        break;
      }
      w.parks.bump();
      w.parker.park();
      unregister_idle(w);
    }
    clear_hungry(w);
    tls_worker = nullptr;
  }
};

// ---- Scheduler ----

WorkerStats Stats::total() const noexcept {
  WorkerStats sum;
  for (const WorkerStats& w : workers) {
    sum.tasks_executed += w.tasks_executed;
    sum.steals_attempted += w.steals_attempted;
    sum.steals_succeeded += w.steals_succeeded;
    sum.injected_taken += w.injected_taken;
    sum.parks += w.parks;
  }
  return sum;
}

Scheduler::Scheduler(Key, std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)), hungry_(&impl_->hungry) {}

Result<std::unique_ptr<Scheduler>> Scheduler::create(Options options) {
  constexpr unsigned kMaxWorkers = 4096;
  if (options.workers > kMaxWorkers) {
    return fail(ErrorCode::InvalidArgument, "scheduler: " + std::to_string(options.workers) +
                                                " workers requested, the limit is " +
                                                std::to_string(kMaxWorkers) +
                                                "; pass 0 for one per hardware thread");
  }
  if (options.workers == 0) {
    // The affinity mask, not hardware_concurrency(): in a cpuset-limited container the latter
    // counts CPUs we may never run on.
    std::size_t allowed = sys::allowed_cpus().size();
    options.workers = allowed != 0
                          ? static_cast<unsigned>(std::min<std::size_t>(allowed, kMaxWorkers))
                          : std::max(1u, std::thread::hardware_concurrency());
  }
  constexpr std::size_t kMaxDequeCapacity = std::size_t{1} << 24;
  if (options.deque_capacity > kMaxDequeCapacity) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("scheduler: deque_capacity {} is above the limit {}; deques grow on "
                            "demand, so a small initial capacity is enough",
                            options.deque_capacity, kMaxDequeCapacity));
  }
  if (options.max_workers == 0) options.max_workers = options.workers;
  if (options.max_workers < options.workers || options.max_workers > kMaxWorkers) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("scheduler: max_workers {} must lie between workers ({}) and {}; pass "
                            "0 for max_workers = workers",
                            options.max_workers, options.workers, kMaxWorkers));
  }
  init_membarrier();

  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const unsigned n = impl->options.workers;
  const unsigned slots = impl->options.max_workers;
  impl->workers.reserve(slots);
  impl->idle.reserve(slots);
  for (unsigned i = 0; i < slots; ++i) {
    auto w = std::make_unique<Worker>(impl->options.deque_capacity);
    w->index = i;
    w->impl = impl.get();
    w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    impl->workers.push_back(std::move(w));
  }
  impl->started.store(n, std::memory_order_release);
  impl->active_count.store(n, std::memory_order_relaxed);
  auto sched = std::make_unique<Scheduler>(Key{}, std::move(impl));
  Impl* raw = sched->impl_.get();
  for (unsigned i = 0; i < n; ++i) {
    Worker& w = *raw->workers[i];
    try {
      w.thread = std::thread([raw, &w] { raw->worker_main(w); });
    } catch (const std::system_error& e) {
      // The destructor joins the threads already started.
      return fail(ErrorCode::ResourceExhausted,
                  "scheduler: could not start worker thread " + std::to_string(i) + " of " +
                      std::to_string(n) + " (" + e.what() +
                      "); lower Options::workers or raise RLIMIT_NPROC",
                  e.code().value());
    }
  }
  return sched;
}

Scheduler& Scheduler::default_instance() {
  static std::unique_ptr<Scheduler> instance = [] {
    auto s = Scheduler::create();
    if (!s) {
      std::fprintf(stderr, "pepita: cannot start the default scheduler: %s\n",
                   s.error().to_string().c_str());
      std::abort();
    }
    return std::move(*s);
  }();
  return *instance;
}

Scheduler::~Scheduler() {
  Impl& im = *impl_;
  im.stopping.store(true, std::memory_order_seq_cst);
  {
    std::lock_guard lock(im.idle_mu);
    for (Worker* w : im.idle) w->parker.unpark();
    im.idle.clear();
    im.num_idle.store(0, std::memory_order_relaxed);
  }
  // Inactive workers park outside the idle list: wake them so they see `stopping` and leave.
  for (auto& w : im.workers) w->parker.unpark();
  for (auto& w : im.workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Workers only leave when every queue they can see is empty, but a task injected after the
  // last worker looked would be stranded: run such stragglers here (documented as a misuse).
  while (detail::TaskBase* t = im.pop_injected()) {
    t->execute(t);
    im.external_executed.fetch_add(1, std::memory_order_relaxed);
  }
}

unsigned Scheduler::worker_count() const noexcept {
  return impl_->started.load(std::memory_order_acquire);
}

std::size_t Scheduler::pending_tasks() const noexcept {
  std::size_t n = impl_->inject_size.load(std::memory_order_relaxed);
  const unsigned started = worker_count();
  for (unsigned i = 0; i < started; ++i) n += impl_->workers[i]->deque.size_hint();
  return n;
}

std::vector<std::size_t> Scheduler::worker_loads() const {
  const unsigned started = worker_count();
  std::vector<std::size_t> loads;
  loads.reserve(started);
  for (unsigned i = 0; i < started; ++i) loads.push_back(impl_->workers[i]->deque.size_hint());
  return loads;
}

bool Scheduler::is_running() const noexcept {
  return !impl_->stopping.load(std::memory_order_acquire);
}

Stats Scheduler::stats() const {
  Stats s;
  const unsigned started = worker_count();
  s.workers.reserve(started);
  for (unsigned i = 0; i < started; ++i) {
    const Worker* w = impl_->workers[i].get();
    s.workers.push_back(WorkerStats{w->executed.get(), w->steals_attempted.get(),
                                    w->steals_succeeded.get(), w->injected_taken.get(),
                                    w->parks.get()});
  }
  s.tasks_executed_external = impl_->external_executed.load(std::memory_order_relaxed);
  s.uncaught_exceptions = impl_->uncaught.load(std::memory_order_relaxed);
  return s;
}

// ---- membership ----

Result<WorkerId> Scheduler::add_worker() {
  Impl& im = *impl_;
  std::lock_guard lock(im.members_mu);
  const unsigned started = im.started.load(std::memory_order_relaxed);
  for (unsigned i = 0; i < started; ++i) {
    Worker& w = *im.workers[i];
    if (w.active.load(std::memory_order_relaxed)) continue;
    w.active.store(true, std::memory_order_release);  // sit_out's acquire sees it
    im.active_count.fetch_add(1, std::memory_order_relaxed);
    w.parker.unpark();
    return WorkerId{i};
  }
  if (started == im.workers.size()) {
    return fail(ErrorCode::ResourceExhausted,
                pepita::fmt("scheduler: all {} worker slots are active (max_workers = {}); create "
                            "the scheduler with a larger Options::max_workers",
                            started, im.workers.size()));
  }
  Worker& w = *im.workers[started];
  // The slot's deque and counters exist since create(); publish it to thieves, then start it.
  im.started.store(started + 1, std::memory_order_release);
  try {
    w.thread = std::thread([&im, &w] { im.worker_main(w); });
  } catch (const std::system_error& e) {
    im.started.store(started, std::memory_order_release);  // nothing was ever queued on it
    return fail(ErrorCode::ResourceExhausted,
                pepita::fmt("scheduler: could not start worker thread {} ({}); raise "
                            "RLIMIT_NPROC or lower the thread count",
                            started, e.what()),
                e.code().value());
  }
  im.active_count.fetch_add(1, std::memory_order_relaxed);
  return WorkerId{started};
}

Result<void> Scheduler::deactivate_worker(WorkerId id) {
  Impl& im = *impl_;
  std::unique_lock lock(im.members_mu);
  const unsigned started = im.started.load(std::memory_order_relaxed);
  if (id.value >= started) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("scheduler: worker id {} does not exist ({} workers started, ids "
                            "0..{})",
                            id.value, started, started - 1));
  }
  Worker& w = *im.workers[id.value];
  if (!w.active.load(std::memory_order_relaxed)) return {};
  if (im.active_count.load(std::memory_order_relaxed) == 1) {
    return fail(ErrorCode::Busy,
                pepita::fmt("scheduler: worker {} is the last active worker; add_worker() "
                            "another before deactivating it",
                            id.value));
  }
  // The epoch first, then `active` (release): an owner that sees active == false reads this
  // epoch or a later one, so the wait below cannot miss its acknowledgement.
  const std::uint64_t epoch = w.stop_epoch.load(std::memory_order_relaxed) + 1;
  w.stop_epoch.store(epoch, std::memory_order_relaxed);
  w.active.store(false, std::memory_order_release);
  im.active_count.fetch_sub(1, std::memory_order_relaxed);
  w.parker.unpark();  // if it sleeps (idle or in a TaskGroup wait), let it see the request
  if (tls_worker == &w) return {};  // the calling task is its current one: effective on return
  for (;;) {
    const std::uint64_t seen = w.stopped_epoch.load(std::memory_order_acquire);
    if (seen >= epoch) return {};
    w.stopped_epoch.wait(seen, std::memory_order_acquire);
  }
}

Result<bool> Scheduler::is_worker_active(WorkerId id) const {
  const unsigned started = worker_count();
  if (id.value >= started) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("scheduler: worker id {} does not exist ({} workers started)", id.value,
                            started));
  }
  return impl_->workers[id.value]->active.load(std::memory_order_acquire);
}

unsigned Scheduler::active_workers() const noexcept {
  return impl_->active_count.load(std::memory_order_relaxed);
}

bool Scheduler::on_worker_thread() const noexcept {
  return tls_worker != nullptr && tls_worker->impl == impl_.get();
}

int Scheduler::current_worker_index() noexcept {
  return tls_worker != nullptr ? static_cast<int>(tls_worker->index) : -1;
}

void Scheduler::spawn(detail::TaskBase* task) {
  Worker* w = tls_worker;
  if (w != nullptr && w->impl == impl_.get()) {
    w->deque.push(task);
    impl_->after_push();
  } else {
    impl_->inject_task(task);
  }
}

bool Scheduler::pop_local_until(const detail::TaskBase* mine) noexcept {
  Worker* w = tls_worker;
  if (w == nullptr || w->impl != impl_.get()) return false;
  for (;;) {
    std::optional<detail::TaskBase*> t = w->deque.pop();
    if (!t) return false;
    if (*t == mine) return true;
    Impl::execute(*w, *t);  // pushed after `mine` and not joined (a submit(), a group's task)
  }
}

bool Scheduler::local_queue_empty() const noexcept {
  Worker* w = tls_worker;
  return w != nullptr && w->impl == impl_.get() && w->deque.empty_hint();
}

void Scheduler::notify_waiters(const void* key) noexcept { impl_->notify(key); }

void Scheduler::count_uncaught(std::exception_ptr error) noexcept {
  impl_->uncaught.fetch_add(1, std::memory_order_relaxed);
  if (impl_->options.on_uncaught_exception) {
    try {
      impl_->options.on_uncaught_exception(std::move(error));
    } catch (...) {
      // The handler itself failed; nothing sensible is left to report to.
    }
  }
}

void Scheduler::block_until(const void* key, const std::function<bool()>& done,
                            const std::function<bool()>& arm) {
  Impl& im = *impl_;
  Worker* w = tls_worker;
  if (w != nullptr && w->impl == &im) {
    // A waiting worker keeps running tasks: its own first, then injected, then stolen.
    for (;;) {
      if (done()) return;
      if (!w->active.load(std::memory_order_acquire)) {
        // Deactivated: help no one; sleep until the awaited event or reactivation.
        im.quiesce(*w);
        im.register_waiter(key, &w->parker);
        if (!arm() && !w->active.load(std::memory_order_acquire)) {
          w->parks.bump();
          w->parker.park();
        }
        im.unregister_waiter(key, &w->parker);
        continue;
      }
      detail::TaskBase* t = im.find_task(*w);
      if (t == nullptr) {
        for (unsigned r = 0; r < im.options.spin_rounds && t == nullptr; ++r) {
          for (unsigned i = 0; i < 32; ++i) cpu_relax();
          if (done()) return;
          t = im.find_task(*w);
        }
      }
      if (t != nullptr) {
        Impl::execute(*w, t);
        continue;
      }
      // Sleep until the awaited event or new work, whichever first.
      im.register_waiter(key, &w->parker);
      im.register_idle(*w);
      heavy_barrier();
      if (!arm() && !im.work_visible()) {
        w->parks.bump();
        w->parker.park();
      }
      im.unregister_idle(*w);
      im.unregister_waiter(key, &w->parker);
    }
  }
  // Not a worker: no deque to help from, and the workers already occupy every core, so park.
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return;
      cpu_relax();
    }
    im.register_waiter(key, &tls_parker);
    if (!arm()) tls_parker.park();
    im.unregister_waiter(key, &tls_parker);
  }
}

}  // namespace pepita::scheduler
