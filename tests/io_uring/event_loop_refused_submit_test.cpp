// EventLoop when the kernel refuses a submit: sqe_for, reserve and run_once reap and retry once
// on EBUSY and pass other errors on. The refusals are injected into the io_uring_enter calls of a
// child traced by syscall_trace.hpp (x86-64). Split from event_loop_test.cpp.
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "pepita/io_uring/event_loop.hpp"
#include "syscall_trace.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using test::Recorder;

/// Nops queued on a traced child's loop without submitting, each completing its own Recorder:
/// what both tests' children share. Errors come back as text (gtest does not cross the fork).
struct Nops {
  explicit Nops(EventLoop& l) : loop(l) {}

  Recorder* fresh() { return &recs[next++]; }
  std::string queue(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      abi::Sqe* sqe = loop.try_sqe_for(fresh());
      if (sqe == nullptr) return "try_sqe_for found the SQ of 4 full early";
      prep_nop(*sqe);
    }
    return "";
  }
  std::string drain() {
    auto idle = loop.run_until_idle();
    return idle ? "" : std::string("run_until_idle: ").append(idle.error().to_string());
  }
  /// "" when every nop handed out completed exactly once, with res 0.
  std::string each_completed_once() const {
    for (std::size_t i = 0; i < next; ++i) {
      if (recs[i].calls != 1 || recs[i].res != 0)
        return std::string("nop ")
            .append(std::to_string(i))
            .append(": ")
            .append(std::to_string(recs[i].calls))
            .append(" completion(s), res ")
            .append(std::to_string(recs[i].res));
    }
    return "";
  }

  EventLoop& loop;
  std::array<Recorder, 16> recs{};
  std::size_t next = 0;
};

// sqe_for on a full SQ submits what is queued to make room. When the kernel refuses that submit
// with EBUSY (it wants completions reaped first), sqe_for reaps, submits again and hands out the
// SQE (having run the completions it reaped); EBUSY twice, or an error that is not worth retrying,
// is returned after one retry or none. The refusals are injected into the io_uring_enter calls of a
// traced child.
TEST(EventLoop, SqeForOnAFullSqRetriesASubmitRefusedWithEbusyOnce) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);  // the probe decides; the child's loop failing is a failure
  const auto trace = test::trace_io_uring_enter(
      []() -> std::string {
        auto made = EventLoop::create({.entries = 4, .cq_entries = 64});
        if (!made) return std::string("create: ").append(made.error().to_string());
        EventLoop& loop = **made;
        Nops nops(loop);
        // Two nops completed but not yet reaped, then a full SQ.
        if (auto e = nops.queue(2); !e.empty()) return e;
        if (auto sent = loop.submit(); !sent)
          return std::string("submit: ").append(sent.error().to_string());
        if (auto w = loop.ring().wait(2, std::chrono::seconds(10)); !w || *w < 2)
          return "the two nops did not complete";
        if (auto e = nops.queue(4); !e.empty()) return e;
        test::mark_phase(1);  // the submit is refused once with EBUSY, then goes through
        auto sqe = loop.sqe_for(nops.fresh());
        if (!sqe) return std::string("sqe_for after one EBUSY: ").append(sqe.error().to_string());
        prep_nop(**sqe);
        if (nops.recs[0].calls != 1 || nops.recs[1].calls != 1)
          return "sqe_for did not reap the completions before submitting again";
        test::mark_phase(2);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.queue(4); !e.empty()) return e;
        test::mark_phase(3);  // refused twice: the error comes back
        Recorder unused;
        auto busy = loop.sqe_for(&unused);
        if (busy) return "sqe_for succeeded although both submits were refused";
        if (busy.error().code() != ErrorCode::Busy)
          return std::string("twice EBUSY: ").append(busy.error().to_string());
        test::mark_phase(4);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.queue(4); !e.empty()) return e;
        test::mark_phase(5);  // EINVAL is not retried
        auto bad = loop.sqe_for(&unused);
        if (bad) return "sqe_for succeeded although the submit failed with EINVAL";
        if (bad.error().sys_errno() != EINVAL)
          return std::string("EINVAL: ").append(bad.error().to_string());
        test::mark_phase(6);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.each_completed_once(); !e.empty()) return e;
        if (unused.calls != 0) return "a Completion whose sqe_for failed was completed";
        return "";
      },
      30, {{1, {-EBUSY}}, {3, {-EBUSY, -EBUSY}}, {5, {-EINVAL}}});
  if (const std::string why = trace.skip_reason(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(trace.exit_status, 0) << trace.child_error;
  EXPECT_EQ(trace.enters_in(1).size(), 2u) << "the refused submit, then the retry after reaping";
  EXPECT_EQ(trace.enters_in(3).size(), 2u) << "one retry only";
  EXPECT_EQ(trace.enters_in(5).size(), 1u) << "no retry after EINVAL";
}

// The other places that submit on their own absorb an EBUSY the same way: reserve() (a request
// with a linked timeout needs two free SQEs) reaps, then submits again; run_once() reaps instead
// of failing. An error that is not worth retrying reaches the request, or run_once's caller.
// Injected as above.
TEST(EventLoop, ReserveAndRunOnceReapWhenTheKernelRefusesASubmitWithEbusy) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  const auto trace = test::trace_io_uring_enter(
      []() -> std::string {
        auto made = EventLoop::create({.entries = 4, .cq_entries = 64});
        if (!made) return std::string("create: ").append(made.error().to_string());
        EventLoop& loop = **made;
        Nops nops(loop);
        int timed_errno = -1;  // -1 until the timed nop finishes; then 0 or its errno
        auto timed_nop = [&](EventLoop& l) -> Task<void> {
          auto r = co_await l.nop().with_timeout(std::chrono::seconds(10));
          timed_errno = r ? 0 : r.error().sys_errno();
        };
        // Two nops completed but not yet reaped, then a full SQ.
        if (auto e = nops.queue(2); !e.empty()) return e;
        if (auto sent = loop.submit(); !sent)
          return std::string("submit: ").append(sent.error().to_string());
        if (auto w = loop.ring().wait(2, std::chrono::seconds(10)); !w || *w < 2)
          return "the two nops did not complete";
        if (auto e = nops.queue(4); !e.empty()) return e;
        test::mark_phase(1);          // reserve(2)'s submit is refused once with EBUSY
        loop.spawn(timed_nop(loop));  // runs up to its first suspension: reserve, sqe_for
        if (timed_errno != -1)
          return std::string("the timed nop failed at once: errno ")
              .append(std::to_string(timed_errno));
        if (nops.recs[0].calls != 1 || nops.recs[1].calls != 1)
          return "reserve did not reap the completions before submitting again";
        test::mark_phase(2);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (timed_errno != 0)
          return std::string("timed nop: errno ").append(std::to_string(timed_errno));
        if (auto e = nops.queue(2); !e.empty()) return e;
        test::mark_phase(3);  // run_once's submit is refused with EBUSY
        auto once = loop.run_once();
        if (!once) return std::string("run_once after EBUSY: ").append(once.error().to_string());
        test::mark_phase(4);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.queue(4); !e.empty()) return e;
        test::mark_phase(5);  // reserve(2)'s submit fails with EINVAL: the request fails with it
        timed_errno = -1;
        loop.spawn(timed_nop(loop));
        if (timed_errno != EINVAL)
          return std::string("timed nop after EINVAL: errno ").append(std::to_string(timed_errno));
        test::mark_phase(6);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.queue(1); !e.empty()) return e;
        test::mark_phase(7);  // run_once's submit fails with EINVAL: run_once returns it
        auto failed = loop.run_once();
        if (failed) return "run_once succeeded although its submit failed with EINVAL";
        if (failed.error().sys_errno() != EINVAL)
          return std::string("run_once after EINVAL: ").append(failed.error().to_string());
        test::mark_phase(8);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (auto e = nops.queue(2); !e.empty()) return e;
        test::mark_phase(9);  // two free SQEs: room for the nop and its timeout, no submit
        timed_errno = -1;
        loop.spawn(timed_nop(loop));
        test::mark_phase(10);
        if (auto e = nops.drain(); !e.empty()) return e;
        if (timed_errno != 0)
          return std::string("timed nop in the last two SQEs: errno ")
              .append(std::to_string(timed_errno));
        if (auto e = nops.each_completed_once(); !e.empty()) return e;
        return "";
      },
      30, {{1, {-EBUSY}}, {3, {-EBUSY}}, {5, {-EINVAL}}, {7, {-EINVAL}}});
  if (const std::string why = trace.skip_reason(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(trace.exit_status, 0) << trace.child_error;
  EXPECT_EQ(trace.enters_in(1).size(), 2u) << "the refused submit, then the retry after reaping";
  EXPECT_EQ(trace.enters_in(3).size(), 1u) << "run_once reaps and returns; the next one submits";
  EXPECT_EQ(trace.enters_in(5).size(), 1u) << "no retry after EINVAL";
  EXPECT_EQ(trace.enters_in(7).size(), 1u);
  EXPECT_EQ(trace.enters_in(9).size(), 0u)
      << "reserve(2) submitted although exactly two SQEs were free";
}

}  // namespace
}  // namespace pepita::io_uring
