#pragma once
// SIGINT, SIGTERM and SIGHUP blocked in the calling thread — and so in every thread it starts
// afterwards; create it before any — and taken synchronously, so a command's teardown runs in
// order on an ordinary thread rather than in a signal handler. Children started with
// posix_spawn get an empty mask.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <ctime>

namespace pepita::cli {

class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  /// Blocks until one arrives; returns its number.
  int wait() const {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }
  /// Waits at most `limit`; the signal's number, or 0 when none came.
  int wait_for(std::chrono::milliseconds limit) const {
    const timespec tick{static_cast<time_t>(limit.count() / 1000),
                        static_cast<long>(limit.count() % 1000) * 1'000'000};
    const int sig = ::sigtimedwait(&set_, nullptr, &tick);
    return sig > 0 ? sig : 0;
  }

 private:
  sigset_t set_;
};

}  // namespace pepita::cli
