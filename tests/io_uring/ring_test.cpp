// Ring mechanics on the real kernel: setup variants, submission/completion protocol, SQ-full
// back-pressure, CQ overflow without loss, timed waits, SQPOLL, SQE128/CQE32 and teardown.
#include "pepita/io_uring/ring.hpp"

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <rapidcheck/gtest.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pepita/io_uring/completion.hpp"
#include "pepita/io_uring/prep.hpp"
#include "syscall_trace.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using test::Done;
using namespace std::chrono_literals;

TEST(Ring, CreateReportsGeometryAndFeatures) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 100});
  EXPECT_EQ(ring.sq_entries(), 128u);  // rounded up to a power of two
  EXPECT_EQ(ring.cq_entries(), 256u);  // twice the SQ by default
  EXPECT_GE(ring.fd(), 0);
  EXPECT_TRUE(ring.has_feature(abi::feat::NODROP));
  EXPECT_EQ(ring.sq_space_left(), 128u);
  EXPECT_EQ(ring.cq_ready(), 0u);
  EXPECT_EQ(ring.peek_cqe(), nullptr);
}

TEST(Ring, CqSizeIsHonoured) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8, .cq_entries = 1024});
  EXPECT_EQ(ring.sq_entries(), 8u);
  EXPECT_EQ(ring.cq_entries(), 1024u);
  EXPECT_NE(ring.setup_flags() & abi::setup::CQSIZE, 0u);
}

TEST(Ring, BadSetupArgumentsAreClearErrors) {
  auto zero = Ring::create(RingOptions{.entries = 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), ErrorCode::InvalidArgument);

  PEPITA_REQUIRE_CAPABILITY(io_uring);
  auto huge = Ring::create(RingOptions{.entries = 1u << 20});
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(huge.error().sys_errno(), EINVAL);
  EXPECT_NE(huge.error().message().find("entries"), std::string::npos);

  auto clamped = Ring::create(RingOptions{.entries = 1u << 20, .clamp = true});
  ASSERT_TRUE(clamped) << clamped.error().to_string();
  EXPECT_EQ(clamped->sq_entries(), 32768u);

  auto unsupported = Ring::create(RingOptions{.extra_flags = abi::setup::NO_MMAP});
  ASSERT_FALSE(unsupported);
  EXPECT_EQ(unsupported.error().code(), ErrorCode::InvalidArgument);

  auto bogus = Ring::create(RingOptions{.extra_flags = 1u << 30});  // a flag no kernel defines
  ASSERT_FALSE(bogus);
  EXPECT_EQ(bogus.error().code(), ErrorCode::InvalidArgument);
}

// Ring::create on a thread whose io_uring_setup(2) a seccomp filter answers with `err` (a filter
// without TSYNC binds only the thread that installs it, so the rest of the test process keeps
// io_uring). nullopt when this kernel or container does not let a thread install a filter.
std::optional<Result<Ring>> create_with_setup_errno(int err) {
  std::optional<Result<Ring>> out;
  std::thread([&] {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K,
                 SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(err) & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return;
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return;
    out.emplace(Ring::create(RingOptions{.entries = 8}));
  }).join();
  return out;
}

// io_uring_setup failing for a reason outside pepita's arguments: each errno gets the code a
// caller acts on and a message saying what to check.
TEST(Ring, SetupRefusedByTheKernelSaysWhyAndWhatToCheck) {
  auto no_uring = create_with_setup_errno(ENOSYS);
  if (!no_uring) GTEST_SKIP() << "a thread cannot install a seccomp filter here";
  ASSERT_FALSE(*no_uring);
  EXPECT_EQ(no_uring->error().code(), ErrorCode::Unsupported);
  EXPECT_EQ(no_uring->error().sys_errno(), ENOSYS);
  EXPECT_NE(no_uring->error().message().find(
                "io_uring_setup(entries=8, flags=0x0): this kernel has no io_uring (needs Linux "
                "5.1+, CONFIG_IO_URING)"),
            std::string::npos)
      << no_uring->error().message();

  auto disabled = create_with_setup_errno(EPERM);
  ASSERT_TRUE(disabled);
  ASSERT_FALSE(*disabled);
  EXPECT_EQ(disabled->error().code(), ErrorCode::Unsupported);
  EXPECT_EQ(disabled->error().sys_errno(), EPERM);
  EXPECT_NE(disabled->error().message().find("io_uring is disabled for this process; check "
                                             "sysctl kernel.io_uring_disabled"),
            std::string::npos)
      << disabled->error().message();

  auto other = create_with_setup_errno(EMFILE);
  ASSERT_TRUE(other);
  ASSERT_FALSE(*other);
  EXPECT_EQ(other->error().code(), code_from_errno(EMFILE));
  EXPECT_EQ(other->error().sys_errno(), EMFILE);
  EXPECT_NE(other->error().message().find("io_uring_setup(entries=8, flags=0x0)"),
            std::string::npos)
      << other->error().message();
}

TEST(Ring, NopBatchesRoundTripUserData) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 64});
  for (unsigned round = 0; round < 20; ++round) {
    const unsigned batch = 1 + round * 3;
    for (unsigned i = 0; i < batch; ++i) {
      abi::Sqe* sqe = ring.get_sqe();
      ASSERT_NE(sqe, nullptr);
      prep_nop(*sqe);
      sqe->user_data = round * 1000 + i;
    }
    EXPECT_EQ(ring.sq_ready(), batch);
    auto submitted = ring.submit_and_wait(batch);
    ASSERT_TRUE(submitted) << submitted.error().to_string();
    EXPECT_EQ(*submitted, batch);
    EXPECT_EQ(ring.sq_ready(), 0u);
    EXPECT_EQ(ring.cq_ready(), batch);
    std::vector<std::uint64_t> seen;
    const unsigned n = ring.for_each_cqe([&](const abi::Cqe& c) {
      EXPECT_EQ(c.res, 0);
      seen.push_back(c.user_data);
    });
    EXPECT_EQ(n, batch);
    std::sort(seen.begin(), seen.end());
    for (unsigned i = 0; i < batch; ++i) EXPECT_EQ(seen[i], round * 1000 + i);
    EXPECT_EQ(ring.cq_ready(), 0u);
  }
}

TEST(Ring, PeekBatchDoesNotConsume) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 16});
  for (unsigned i = 0; i < 10; ++i) {
    prep_nop(*ring.get_sqe());
  }
  ASSERT_TRUE(ring.submit_and_wait(10));
  std::array<const abi::Cqe*, 4> batch{};
  EXPECT_EQ(ring.peek_batch(batch), 4u);
  EXPECT_EQ(ring.cq_ready(), 10u);
  ring.advance(4);
  EXPECT_EQ(ring.cq_ready(), 6u);
  std::array<const abi::Cqe*, 16> rest{};
  EXPECT_EQ(ring.peek_batch(rest), 6u);
  ring.advance(6);
  EXPECT_EQ(ring.peek_batch(rest), 0u);
}

TEST(Ring, FullSqGivesNullThenBackPressureSubmits) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4, .cq_entries = 64});
  for (unsigned i = 0; i < 4; ++i) {
    abi::Sqe* sqe = ring.get_sqe();
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
    sqe->user_data = i;
  }
  EXPECT_EQ(ring.get_sqe(), nullptr);
  EXPECT_EQ(ring.sq_space_left(), 0u);
  auto sqe = ring.acquire_sqe();  // submits the four, then hands out a slot
  ASSERT_TRUE(sqe) << sqe.error().to_string();
  prep_nop(**sqe);
  (*sqe)->user_data = 4;
  const auto done = test::reap(ring, 5);
  std::set<std::uint64_t> ids;
  for (const Done& d : done) ids.insert(d.user_data);
  EXPECT_EQ(ids, (std::set<std::uint64_t>{0, 1, 2, 3, 4}));
}

TEST(Ring, CqOverflowLosesNoCompletion) {
  // CQ of 8 entries, 200 completions posted before any is reaped: the kernel parks the excess in
  // its overflow list (FEAT_NODROP) and flags it; reaping must deliver all of them exactly once.
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8, .cq_entries = 8});
  if (!ring.has_feature(abi::feat::NODROP)) GTEST_SKIP() << "kernel lacks FEAT_NODROP";
  constexpr unsigned kTotal = 200;
  unsigned queued = 0;
  while (queued < kTotal) {
    abi::Sqe* sqe = ring.get_sqe();
    if (sqe == nullptr) {
      auto s = ring.submit();
      ASSERT_TRUE(s) << s.error().to_string();
      continue;
    }
    prep_nop(*sqe);
    sqe->user_data = queued++;
  }
  ASSERT_TRUE(ring.submit());
  EXPECT_TRUE(ring.cq_overflow_pending());
  // A flush while the CQ is still full has nowhere to move them: no error, nothing lost.
  ASSERT_TRUE(ring.flush_overflow());
  std::vector<int> seen(kTotal, 0);
  unsigned reaped = 0;
  for (int spins = 0; reaped < kTotal && spins < 10000; ++spins) {
    const abi::Cqe* cqe = ring.peek_cqe();
    if (cqe == nullptr) {
      ASSERT_TRUE(ring.flush_overflow());
      continue;
    }
    ASSERT_LT(cqe->user_data, kTotal);
    ++seen[cqe->user_data];
    ++reaped;
    ring.cqe_seen();
  }
  EXPECT_EQ(reaped, kTotal);
  for (unsigned i = 0; i < kTotal; ++i) EXPECT_EQ(seen[i], 1) << "user_data " << i;
  EXPECT_FALSE(ring.cq_overflow_pending());
  EXPECT_EQ(ring.cq_dropped(), 0u);
}

TEST(Ring, WaitTimesOutWithNothingInFlight) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  if (!ring.has_feature(abi::feat::EXT_ARG)) GTEST_SKIP() << "kernel lacks FEAT_EXT_ARG";
  const auto start = std::chrono::steady_clock::now();
  auto n = ring.wait(1, 20ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 0u);
  EXPECT_GE(elapsed, 15ms);
  EXPECT_LT(elapsed, 5s);

  prep_nop(*ring.get_sqe());
  auto m = ring.wait(1, 5s);  // submits the nop and returns as soon as it completes
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, 1u);
  ring.cqe_seen();
}

// wait() returns at once only when the CQ already holds enough and nothing is left to submit:
// an SQE queued meanwhile is submitted even then.
TEST(Ring, WaitSubmitsWhatIsQueuedEvenWhenTheCqAlreadyHoldsEnough) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  if (!ring.has_feature(abi::feat::EXT_ARG)) GTEST_SKIP() << "kernel lacks FEAT_EXT_ARG";
  prep_nop(*ring.get_sqe());
  ASSERT_TRUE(ring.submit_and_wait(1));
  ASSERT_EQ(ring.cq_ready(), 1u);
  prep_nop(*ring.get_sqe());
  auto n = ring.wait(1, 5s);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_GE(*n, 1u);
  EXPECT_EQ(ring.sq_ready(), 0u) << "the queued nop was not submitted";
  EXPECT_EQ(test::reap(ring, 2).size(), 2u);
}

// A wait that the CQ already satisfies, with nothing queued to submit, answers from the CQ ring
// alone: it makes no io_uring_enter (traced in a child). A CQ holding more than asked is enough
// too, and so is exactly as many.
TEST(Ring, AWaitTheCqAlreadySatisfiesDoesNotEnterTheKernel) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  const auto trace = test::trace_io_uring_enter([]() -> std::string {
    auto ring = Ring::create(RingOptions{.entries = 4});
    if (!ring) return ring.error().to_string();
    if (!ring->has_feature(abi::feat::EXT_ARG)) return "";  // wait() is Unsupported: no phases
    prep_nop(*ring->get_sqe());
    prep_nop(*ring->get_sqe());
    if (auto w = ring->submit_and_wait(2); !w) return w.error().to_string();
    test::mark_phase(1);
    auto more = ring->wait(1, 5s);
    auto exact = ring->wait(2, 5s);
    test::mark_phase(2);
    if (!more || *more != 2 || !exact || *exact != 2) return "wait did not report the 2 CQEs";
    return "";
  });
  if (trace.ptrace_denied) GTEST_SKIP() << "ptrace(PTRACE_TRACEME) is not permitted here";
  ASSERT_EQ(trace.exit_status, 0) << trace.child_error;
  const auto it = trace.enters.find(1);
  const std::size_t enters = it == trace.enters.end() ? 0 : it->second.size();
  EXPECT_EQ(enters, 0u) << "a satisfied wait entered the kernel";
}

// A timeout of more than a second waits its whole seconds too (the timespec's tv_sec), not only
// the sub-second rest. A lower bound only: a loaded machine may wait longer.
TEST(Ring, WaitTimesOutAfterWholeSeconds) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  if (!ring.has_feature(abi::feat::EXT_ARG)) GTEST_SKIP() << "kernel lacks FEAT_EXT_ARG";
  const auto start = std::chrono::steady_clock::now();
  auto n = ring.wait(1, 1010ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 0u);
  EXPECT_GE(elapsed, 1s);
}

// Submits 16 nops and reaps them from the CQ ring alone (no GETEVENTS wait, which would enter).
std::string sqpoll_round(Ring& ring, std::uint64_t base) {
  for (unsigned i = 0; i < 16; ++i) {
    abi::Sqe* sqe = ring.get_sqe();
    if (sqe == nullptr) return "SQ full";
    prep_nop(*sqe);
    sqe->user_data = base + i;
  }
  auto submitted = ring.submit();
  if (!submitted) return "submit: " + submitted.error().to_string();
  if (*submitted != 16) return "submit published " + std::to_string(*submitted) + " of 16";
  std::set<std::uint64_t> seen;
  std::string bad;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (seen.size() < 16 && std::chrono::steady_clock::now() < deadline) {
    ring.for_each_cqe([&](const abi::Cqe& c) {
      if (c.res != 0 || c.user_data < base || c.user_data >= base + 16) {
        bad = "unexpected CQE user_data " + std::to_string(c.user_data) + " res " +
              std::to_string(c.res);
      }
      seen.insert(c.user_data);
    });
    std::this_thread::sleep_for(50us);  // nanosleep: not an io_uring_enter
  }
  if (!bad.empty()) return bad;
  if (seen.size() != 16) return "only " + std::to_string(seen.size()) + " of 16 nops completed";
  return "";
}

TEST(Ring, SqpollThreadPinnedToOneOfOurCpusRunsNops) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mine)) ++cpu;
  ASSERT_LT(cpu, CPU_SETSIZE);
  auto ring = Ring::create(RingOptions{.entries = 32, .sqpoll = true, .sqpoll_cpu = cpu});
  if (!ring && ring.error().code() == ErrorCode::PermissionDenied) {
    GTEST_SKIP() << "SQPOLL is not permitted here: " << ring.error().to_string();
  }
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_NE(ring->setup_flags() & abi::setup::SQPOLL, 0u);
  EXPECT_NE(ring->setup_flags() & abi::setup::SQ_AFF, 0u);
  EXPECT_EQ(sqpoll_round(*ring, 500), "");
}

TEST(Ring, FromMappingsRefusesSetupFlagsItCannotDrive) {
  for (std::uint32_t flag :
       {abi::setup::NO_MMAP, abi::setup::REGISTERED_FD_ONLY, abi::setup::NO_SQARRAY}) {
    abi::Params p{};
    p.flags = flag;
    auto r = Ring::from_mappings(p, Mapping(), Mapping(), Mapping());
    ASSERT_FALSE(r) << flag;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find("are not supported"), std::string::npos)
        << r.error().message();
  }
}

TEST(OpResult, CancelledCompletionSaysWhatCancelsRequests) {
  auto r = op_result(abi::Op::Read, -ECANCELED);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_EQ(r.error().sys_errno(), ECANCELED);
  EXPECT_NE(r.error().message().find("cancel request, a failed link or ring teardown"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(op_result(abi::Op::Read, 17).value(), 17);
}

TEST(Ring, SqpollSubmitsWithoutEntering) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);  // the probe decides; the child's ring failing is a failure
  // The ring runs in a child under ptrace, so every io_uring_enter it makes is counted.
  constexpr std::uint32_t kIdleMs = 200;
  const auto trace = test::trace_io_uring_enter([]() -> std::string {
    auto ring = Ring::create(RingOptions{.entries = 32, .sqpoll = true, .sqpoll_idle_ms = kIdleMs});
    if (!ring) return "create: " + ring.error().to_string();
    if ((ring->setup_flags() & abi::setup::SQPOLL) == 0) return "ring has no SQPOLL";
    // The poller may be asleep right after setup (it is on Linux 6.18), so the first round may
    // have to wake it; after that it is awake.
    if (auto e = sqpoll_round(*ring, 1000); !e.empty()) return "warm-up round: " + e;
    test::mark_phase(1);  // the poller is awake: two rounds must not enter at all
    if (auto e = sqpoll_round(*ring, 0); !e.empty()) return "round 1: " + e;
    if (auto e = sqpoll_round(*ring, 100); !e.empty()) return "round 2: " + e;
    test::mark_phase(2);  // well past the idle time: the poller sleeps with NEED_WAKEUP set
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * kIdleMs));
    test::mark_phase(3);  // so this round enters exactly once, only to wake it
    if (auto e = sqpoll_round(*ring, 200); !e.empty()) return "round 3: " + e;
    test::mark_phase(4);  // control: a wait for a completion must enter, and is seen doing so
    prep_nop(*ring->get_sqe());
    if (auto w = ring->submit_and_wait(1); !w) return "submit_and_wait: " + w.error().to_string();
    test::mark_phase(5);
    return "";
  });
  if (const std::string why = trace.skip_reason(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_EQ(trace.exit_status, 0) << trace.child_error;
  auto enters = [&](int phase) { return trace.enters_in(phase); };
  auto flags = [&](int phase) {
    std::string text;
    for (std::uint64_t f : enters(phase)) text += " flags=" + std::to_string(f);
    return text;
  };
  EXPECT_EQ(enters(1).size(), 0u) << "submitting to an awake SQPOLL thread entered the kernel:"
                                  << flags(1);
  EXPECT_LE(enters(0).size(), 1u) << "the warm-up round entered more than to wake the poller:"
                                  << flags(0);
  EXPECT_EQ(enters(2).size(), 0u) << flags(2);
  ASSERT_EQ(enters(3).size(), 1u) << "waking the idle poller takes exactly one io_uring_enter";
  EXPECT_NE(enters(3)[0] & abi::enter::SQ_WAKEUP, 0u) << std::hex << enters(3)[0];
  EXPECT_EQ(enters(3)[0] & abi::enter::GETEVENTS, 0u) << std::hex << enters(3)[0];
  ASSERT_GE(enters(4).size(), 1u) << "the tracer missed the enter of submit_and_wait";
  EXPECT_NE(enters(4)[0] & abi::enter::GETEVENTS, 0u) << std::hex << enters(4)[0];
}

TEST(Ring, SqpollBackPressureWaitsForThePoller) {
  PEPITA_RING_OR_SKIP(
      ring, RingOptions{.entries = 4, .cq_entries = 256, .sqpoll = true, .sqpoll_idle_ms = 1});
  for (unsigned i = 0; i < 100; ++i) {
    auto sqe = ring.acquire_sqe();
    ASSERT_TRUE(sqe) << sqe.error().to_string();
    prep_nop(**sqe);
    (*sqe)->user_data = i;
  }
  EXPECT_EQ(test::reap(ring, 100).size(), 100u);
}

TEST(Ring, Sqe128UringCmdAndCqe32) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8, .sqe128 = true, .cqe32 = true});
  // Socket uring_cmds go through the protocol's ioctl: TCP has one, AF_UNIX does not.
  sockaddr_in addr{};
  UniqueFd listener = test::tcp_listener(&addr);
  ASSERT_TRUE(listener);
  UniqueFd b(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
  ASSERT_EQ(::connect(b.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  UniqueFd a(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(a);
  ASSERT_EQ(::write(b.get(), "hello", 5), 5);
  std::this_thread::sleep_for(10ms);  // loopback delivery

  // A plain op through the 64-byte view of a 128-byte slot.
  abi::Sqe* nop = ring.get_sqe();
  ASSERT_NE(nop, nullptr);
  prep_nop(*nop);
  nop->user_data = 1;
  // A socket uring_cmd (Linux 6.7+): SIOCINQ reports the 5 readable bytes.
  abi::Sqe128* cmd = ring.get_sqe128();
  ASSERT_NE(cmd, nullptr);
  prep_uring_cmd(*cmd, a.get(), static_cast<std::uint32_t>(abi::SocketOp::Siocinq), nullptr, 0);
  cmd->user_data = 2;
  const auto done = test::reap(ring, 2);
  ASSERT_EQ(done.size(), 2u);
  for (const Done& d : done) {
    if (d.user_data == 1) {
      EXPECT_EQ(d.res, 0);
    }
    if (d.user_data == 2) {
      if (d.res == -EOPNOTSUPP || d.res == -EINVAL) GTEST_SKIP() << "no socket uring_cmd";
      EXPECT_EQ(d.res, 5);
    }
  }
}

TEST(Ring, Sqe128ViewRefusedOnPlainRing) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  EXPECT_EQ(ring.get_sqe128(), nullptr);
  EXPECT_EQ(ring.sq_ready(), 0u);
}

TEST(Ring, BadFdCompletesWithEbadf) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  char buf[8];
  prep_read(*ring.get_sqe(), 1'000'000, buf, sizeof buf, 0);
  const Done d = test::submit_and_reap_one(ring);
  EXPECT_EQ(d.res, -EBADF);
}

TEST(Ring, TeardownWithOpsInFlight) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::vector<char> buf(64);
  {
    PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
    for (int i = 0; i < 4; ++i) prep_recv(*ring.get_sqe(), a.get(), buf.data(), buf.size(), 0);
    abi::KernelTimespec ts{.tv_sec = 100, .tv_nsec = 0};
    prep_timeout(*ring.get_sqe(), &ts, 0, 0);
    ASSERT_TRUE(ring.submit());
  }  // ring closed with 5 requests pending: the kernel cancels them
  // The socket is still usable afterwards.
  ASSERT_EQ(::write(b.get(), "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(a.get(), &c, 1), 1);
}

TEST(Ring, UsableFromAnotherThreadThanItsCreator) {
  // The registered ring fd belongs to the creating thread; elsewhere the Ring must fall back to
  // the plain fd transparently.
  for (bool registered : {true, false}) {
    PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8, .register_ring_fd = registered});
    prep_nop(*ring.get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
    int res = -1;
    std::thread other([&] {
      prep_nop(*ring.get_sqe());
      res = test::submit_and_reap_one(ring).res;
    });
    other.join();
    EXPECT_EQ(res, 0);
    prep_nop(*ring.get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
  }
  // A Ring created on a thread that has exited.
  std::optional<Ring> orphan;
  std::thread maker([&] {
    auto r = Ring::create(RingOptions{.entries = 4});
    if (r) orphan.emplace(std::move(*r));
  });
  maker.join();
  ASSERT_TRUE(orphan) << "Ring::create failed on the maker thread";
  prep_nop(*orphan->get_sqe());
  EXPECT_EQ(test::submit_and_reap_one(*orphan).res, 0);
}

// Whether `slot` of the calling thread's registered ring-fd table holds a ring: registering
// `ring_fd` there explicitly fails with EBUSY when it does. A probe that succeeds is undone.
bool ring_slot_taken(int ring_fd, unsigned slot) {
  io_uring_rsrc_update up{};
  up.offset = slot;
  up.data = static_cast<std::uint64_t>(ring_fd);
  if (::syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_RING_FDS, &up, 1) == 1) {
    up.data = 0;
    EXPECT_EQ(::syscall(__NR_io_uring_register, ring_fd, IORING_UNREGISTER_RING_FDS, &up, 1), 1);
    return false;
  }
  return errno == EBUSY;
}

// When its registered ring index is gone (enter says EBADF), a Ring forgets the index for good
// and enters through its plain fd from then on: a ring registered later in the freed slot is
// not the one its submissions reach. In a thread of its own, whose ring-fd table is empty.
TEST(Ring, AfterItsRegistrationIsGoneARingNeverEntersAnotherRingsIndex) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  bool supported = true;
  std::thread own_table([&] {
    std::string error;
    auto a = test::make_ring(RingOptions{.entries = 4}, &error);
    ASSERT_TRUE(a) << error;
    // Every slot of this thread's table dropped behind the Ring's back (a's included).
    std::array<io_uring_rsrc_update, 16> slots{};
    for (unsigned i = 0; i < 16; ++i) slots[i].offset = i;
    if (::syscall(__NR_io_uring_register, a->fd(), IORING_UNREGISTER_RING_FDS, slots.data(),
                  slots.size()) != 16) {
      supported = false;  // no registered ring fds (before 5.18)
      return;
    }
    prep_nop(*a->get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(*a).res, 0) << "EBADF falls back to the plain fd";
    // b takes the lowest free slot, the one a had.
    auto b = Ring::create(RingOptions{.entries = 4});
    ASSERT_TRUE(b) << b.error().to_string();
    prep_nop(*a->get_sqe());
    auto submitted = a->submit();
    ASSERT_TRUE(submitted) << submitted.error().to_string();
    EXPECT_EQ(*submitted, 1u) << "a's nop went to another ring";
    if (*submitted == 1) {
      EXPECT_EQ(test::reap(*a, 1).size(), 1u);
    }
    prep_nop(*b->get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(*b).res, 0);
    EXPECT_EQ(b->cq_ready(), 0u);
    // Nor does a's end unregister the slot, which is b's now.
    a.reset();
    EXPECT_TRUE(ring_slot_taken(b->fd(), 0)) << "a's end dropped b's registration";
  });
  own_table.join();
  if (!supported) GTEST_SKIP() << "the kernel has no IORING_UNREGISTER_RING_FDS";
}

// A Ring gives its slot of the ring-fd table back when it ends on the thread that registered
// it, that slot and no other; ending on another thread it leaves that thread's table alone.
// In threads of their own; the maker lives on until its ring has ended elsewhere.
TEST(Ring, EndingARingFreesItsOwnRegisteredSlotOnlyOnItsThread) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  std::optional<Ring> elsewhere;
  bool created = false;
  std::latch made(1), ended(1);
  std::thread maker([&] {
    auto r = Ring::create(RingOptions{.entries = 2});
    if (r) elsewhere.emplace(std::move(*r));  // slot 0 of the maker's table
    created = elsewhere.has_value();
    made.count_down();
    ended.wait();
  });
  made.wait();
  bool supported = true;
  std::thread own_table([&] {
    auto probe = Ring::create(RingOptions{.entries = 2, .register_ring_fd = false});
    ASSERT_TRUE(probe) << probe.error().to_string();
    std::string error;
    auto a = test::make_ring(RingOptions{.entries = 2}, &error);
    ASSERT_TRUE(a) << error;
    if (!ring_slot_taken(probe->fd(), 0)) {
      supported = false;  // no registered ring fds (before 5.18)
      return;
    }
    {
      auto b = Ring::create(RingOptions{.entries = 2});
      ASSERT_TRUE(b) << b.error().to_string();
      EXPECT_TRUE(ring_slot_taken(probe->fd(), 1));
    }
    EXPECT_FALSE(ring_slot_taken(probe->fd(), 1)) << "b's slot was not given back";
    EXPECT_TRUE(ring_slot_taken(probe->fd(), 0)) << "b gave back a's slot";
    elsewhere.reset();
    EXPECT_TRUE(ring_slot_taken(probe->fd(), 0)) << "another thread's ring dropped a's slot";
    a.reset();
    EXPECT_FALSE(ring_slot_taken(probe->fd(), 0)) << "a's slot was not given back";
  });
  own_table.join();
  ended.count_down();
  maker.join();
  ASSERT_TRUE(created) << "Ring::create failed on the maker thread";
  if (!supported) GTEST_SKIP() << "the kernel has no registered ring fds";
}

// A Ring whose creator has exited is used from a thread started later, which glibc often gives
// the creator's pthread_t again (its cached stack): the Ring must not enter through the
// creator's registered index, which in the new thread's table is another ring's, nor drop that
// ring's registration when it ends.
TEST(Ring, ARingFromAnExitedThreadNeverEntersTheIndexOfALaterThreadsRing) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  std::optional<Ring> orphan;
  std::thread maker([&] {
    auto r = Ring::create(RingOptions{.entries = 2});
    if (r) orphan.emplace(std::move(*r));  // slot 0 of the maker's table
  });
  maker.join();
  ASSERT_TRUE(orphan) << "Ring::create failed on the maker thread";
  std::thread later([&] {
    auto b = Ring::create(RingOptions{.entries = 2});  // slot 0 of this thread's table
    ASSERT_TRUE(b) << b.error().to_string();
    prep_nop(*orphan->get_sqe());
    auto submitted = orphan->submit();
    ASSERT_TRUE(submitted) << submitted.error().to_string();
    EXPECT_EQ(*submitted, 1u) << "the orphan's nop went to b";
    if (*submitted == 1) {
      EXPECT_EQ(test::reap(*orphan, 1).size(), 1u);
    }
    orphan.reset();
    EXPECT_TRUE(ring_slot_taken(b->fd(), 0)) << "the orphan's end dropped b's registration";
    prep_nop(*b->get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(*b).res, 0);
  });
  later.join();
}

TEST(Ring, MoveKeepsTheRingWorking) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  Ring moved = std::move(ring);
  prep_nop(*moved.get_sqe());
  EXPECT_EQ(test::submit_and_reap_one(moved).res, 0);
  // Move-assignment over a live ring, many times: the old one is torn down each time.
  for (int i = 0; i < 50; ++i) {
    auto next = Ring::create(RingOptions{.entries = 4});
    ASSERT_TRUE(next) << next.error().to_string();
    moved = std::move(*next);
    prep_nop(*moved.get_sqe());
    EXPECT_EQ(test::submit_and_reap_one(moved).res, 0);
  }
}

RC_GTEST_PROP(Ring, AnySubmitPatternCompletesEverything, (std::vector<std::uint8_t> batches)) {
  auto ring = Ring::create(RingOptions{.entries = 16, .cq_entries = 32});
  RC_PRE(ring.has_value());
  std::uint64_t next = 0;
  std::vector<int> seen;
  for (std::uint8_t b : batches) {
    const unsigned n = b % 40;  // may exceed both the SQ and the CQ
    for (unsigned i = 0; i < n; ++i) {
      auto sqe = ring->acquire_sqe();
      RC_ASSERT(sqe.has_value());
      prep_nop(**sqe);
      (*sqe)->user_data = next++;
    }
    RC_ASSERT(ring->submit().has_value());
    if (b & 1) {
      ring->for_each_cqe([&](const abi::Cqe& c) {
        if (seen.size() <= c.user_data) seen.resize(c.user_data + 1);
        ++seen[c.user_data];
      });
    }
  }
  std::uint64_t total = 0;
  for (int v : seen) total += static_cast<std::uint64_t>(v);
  while (total < next) {
    RC_ASSERT(ring->submit_and_wait(1).has_value());
    total += ring->for_each_cqe([&](const abi::Cqe& c) {
      if (seen.size() <= c.user_data) seen.resize(c.user_data + 1);
      ++seen[c.user_data];
    });
  }
  RC_ASSERT(total == next);
  for (int v : seen) RC_ASSERT(v == 1);
}

}  // namespace
}  // namespace pepita::io_uring
