#pragma once
// CompletionBatch (issue 27): completions delivered in a row. An executor that calls several
// Completions one after another on its own thread (the zero executor's batch, the process
// reactor's round of exits) opens one around them; a receiver may then put off what it does
// after each completion to the end of the batch: the pool writes the journal once and starts the
// next attempts once per batch instead of once per completion.
//
//   {
//     CompletionBatch batch;                 // this thread's batch (nested ones add nothing)
//     for (auto& p : ready) p.done(result);  // a receiver joins: batch.join(owner, deferred)
//   }                                        // joined Deferreds run here, in joining order
//
// Only the executor's own thread opens one, and never while it holds a lock a receiver's
// deferred work could need (it runs at the end of the scope, on that thread).

#include <memory>
#include <utility>
#include <vector>

namespace pepita::executor {

class CompletionBatch {
 public:
  /// Work a receiver put off to the end of the batch.
  class Deferred {
   public:
    virtual ~Deferred() = default;
    virtual void run() noexcept = 0;
  };

  CompletionBatch() noexcept : outer_(current_) {
    if (outer_ == nullptr) current_ = this;
  }
  ~CompletionBatch() {
    if (outer_ != nullptr) return;  // nested: the outer batch runs everything
    // A Deferred's run() may complete more attempts on this thread (a launch that fails
    // completes at once): they join this batch again, so run until nothing is left.
    while (!joined_.empty()) {
      std::vector<std::pair<const void*, std::unique_ptr<Deferred>>> now;
      now.swap(joined_);
      for (auto& [owner, d] : now) d->run();
    }
    current_ = nullptr;
  }
  CompletionBatch(const CompletionBatch&) = delete;
  CompletionBatch& operator=(const CompletionBatch&) = delete;

  /// The batch open on this thread, or null (completions then come one at a time).
  static CompletionBatch* current() noexcept { return current_; }

  /// The Deferred `owner` joined this batch with (not yet run), or null.
  Deferred* find(const void* owner) const noexcept {
    for (const auto& [o, d] : joined_) {
      if (o == owner) return d.get();
    }
    return nullptr;
  }
  /// Runs `deferred` at the end of the batch; find(owner) returns it until then.
  void join(const void* owner, std::unique_ptr<Deferred> deferred) {
    joined_.emplace_back(owner, std::move(deferred));
  }

 private:
  static inline thread_local CompletionBatch* current_ = nullptr;
  CompletionBatch* outer_;
  std::vector<std::pair<const void*, std::unique_ptr<Deferred>>> joined_;
};

}  // namespace pepita::executor
