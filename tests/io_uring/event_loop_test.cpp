// EventLoop: callbacks keyed by user_data, coroutine awaitables, timeouts and cancellation,
// back-pressure from a tiny SQ, shutdown with work in flight, and one loop per thread.
#include "pepita/io_uring/event_loop.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using namespace std::chrono_literals;
using test::Recorder;

// A loop, or a test failure (and nullptr) when EventLoop::create fails.
std::unique_ptr<EventLoop> make_loop(const RingOptions& o = {.entries = 64, .cq_entries = 512}) {
  auto loop = EventLoop::create(o);
  if (!loop) {
    ADD_FAILURE() << "io_uring is present but EventLoop::create failed: "
                  << loop.error().to_string();
    return nullptr;
  }
  return std::move(*loop);
}

// Skips the test when the probe finds no io_uring (fails it when PEPITA_REQUIRE names io_uring);
// otherwise a loop that cannot be created fails the test.
#define LOOP_OR_SKIP(var, ...)         \
  PEPITA_REQUIRE_CAPABILITY(io_uring); \
  auto var = make_loop(__VA_ARGS__);   \
  if (!var) return

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

TEST(EventLoop, CallbacksKeyedByUserData) {
  LOOP_OR_SKIP(loop);
  std::vector<int> hits(100, 0);
  std::vector<std::uint64_t> keys;
  for (int i = 0; i < 100; ++i) {
    auto key = loop->submit([](abi::Sqe& s) { prep_nop(s); },
                            [&hits, i](int res, std::uint32_t) {
                              EXPECT_EQ(res, 0);
                              ++hits[static_cast<std::size_t>(i)];
                            });
    ASSERT_TRUE(key) << key.error().to_string();
    keys.push_back(*key);
  }
  EXPECT_EQ(loop->in_flight(), 100u);
  ASSERT_TRUE(loop->run_until_idle());
  for (int h : hits) EXPECT_EQ(h, 1);
  EXPECT_EQ(loop->in_flight(), 0u);
  // Slots are recycled: a second round reuses the same keys.
  auto again = loop->submit([](abi::Sqe& s) { prep_nop(s); }, [](int, std::uint32_t) {});
  ASSERT_TRUE(again);
  EXPECT_NE(std::find(keys.begin(), keys.end(), *again), keys.end());
  ASSERT_TRUE(loop->run_until_idle());
}

// A freed callback slot is handed out once: two requests in flight after a round that freed one
// slot get different keys, and each callback runs once.
TEST(EventLoop, ARecycledCallbackSlotGoesToOneRequestOnly) {
  LOOP_OR_SKIP(loop);
  ASSERT_TRUE(loop->submit([](abi::Sqe& s) { prep_nop(s); }, [](int, std::uint32_t) {}));
  ASSERT_TRUE(loop->run_until_idle());  // its slot is free again
  std::array<int, 2> calls{};
  auto first =
      loop->submit([](abi::Sqe& s) { prep_nop(s); }, [&calls](int, std::uint32_t) { ++calls[0]; });
  auto second =
      loop->submit([](abi::Sqe& s) { prep_nop(s); }, [&calls](int, std::uint32_t) { ++calls[1]; });
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  ASSERT_NE(*first, *second) << "two requests in flight share one slot";
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_EQ(calls[0], 1);
  EXPECT_EQ(calls[1], 1);
}

TEST(EventLoop, CallbackMayResubmitFromInsideDispatch) {
  LOOP_OR_SKIP(loop);
  int remaining = 50;
  std::function<void(int, std::uint32_t)> step = [&](int res, std::uint32_t) {
    EXPECT_EQ(res, 0);
    if (--remaining > 0) {
      ASSERT_TRUE(loop->submit([](abi::Sqe& s) { prep_nop(s); }, step));
    }
  };
  ASSERT_TRUE(loop->submit([](abi::Sqe& s) { prep_nop(s); }, step));
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_EQ(remaining, 0);
}

TEST(EventLoop, MultishotCallbackStaysArmedUntilCancelled) {
  LOOP_OR_SKIP(loop);
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  int fired = 0;
  bool final_seen = false;
  auto key = loop->submit([&](abi::Sqe& s) { prep_poll_multishot(s, efd.get(), POLLIN); },
                          [&](int res, std::uint32_t flags) {
                            if ((flags & abi::cqe_flags::MORE) != 0) {
                              EXPECT_NE(res & POLLIN, 0);
                              ++fired;
                              std::uint64_t v;
                              EXPECT_EQ(::read(efd.get(), &v, 8), 8);
                            } else {
                              final_seen = true;
                            }
                          });
  ASSERT_TRUE(key);
  ASSERT_TRUE(loop->run_once(0ns));
  for (int i = 0; i < 3; ++i) {
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(efd.get(), &one, 8), 8);
    while (fired <= i) ASSERT_TRUE(loop->run_once(1s));
  }
  EXPECT_EQ(fired, 3);
  EXPECT_EQ(loop->in_flight(), 1u);
  ASSERT_TRUE(loop->cancel(*key));
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_TRUE(final_seen);
  EXPECT_FALSE(loop->cancel(0));
}

Task<Result<std::string>> write_then_read(EventLoop& loop, int fd, std::string text,
                                          std::uint64_t off) {
  auto w = co_await loop.write(fd, bytes_of(text), off);
  if (!w) co_return std::unexpected(w.error());
  std::string back(text.size(), '\0');
  auto r = co_await loop.read(fd, std::as_writable_bytes(std::span(back)), off);
  if (!r) co_return std::unexpected(r.error());
  back.resize(*r);
  co_return back;
}

TEST(EventLoop, CoroutineReadWriteIsStraightLine) {
  LOOP_OR_SKIP(loop);
  UniqueFd f = test::temp_file();
  auto out = loop->run(write_then_read(*loop, f.get(), "coroutines on io_uring", 4096));
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_TRUE(*out) << out->error().to_string();
  EXPECT_EQ(**out, "coroutines on io_uring");
}

// Every file op of the loop in one straight line: writev/readv, write_fixed/read_fixed into a
// registered buffer, fsync, openat + close of the same file through /proc/self/fd, and poll.
Task<Result<std::string>> file_ops(EventLoop& loop, int fd, std::span<std::byte> fixed) {
  std::string a = "vectored ", b = "io";
  const std::array<iovec, 2> out{iovec{a.data(), a.size()}, iovec{b.data(), b.size()}};
  auto wv = co_await loop.writev(fd, out, 0);
  if (!wv) co_return std::unexpected(wv.error());
  if (*wv != a.size() + b.size()) co_return fail(ErrorCode::Io, "short writev");
  std::string x(4, '\0'), y(7, '\0');
  const std::array<iovec, 2> in{iovec{x.data(), x.size()}, iovec{y.data(), y.size()}};
  auto rv = co_await loop.readv(fd, in, 0);
  if (!rv) co_return std::unexpected(rv.error());
  std::string got = x + y.substr(0, *rv - x.size());
  const std::string fixed_text = "|fixed";
  std::memcpy(fixed.data(), fixed_text.data(), fixed_text.size());
  auto wf = co_await loop.write_fixed(fd, fixed.first(fixed_text.size()), 4096, 0);
  if (!wf) co_return std::unexpected(wf.error());
  std::memset(fixed.data(), 0, fixed.size());
  auto rf = co_await loop.read_fixed(fd, fixed.first(fixed_text.size()), 4096, 0);
  if (!rf) co_return std::unexpected(rf.error());
  // SAFETY: std::byte and char alias; *rf <= fixed.size().
  got.append(reinterpret_cast<const char*>(fixed.data()), *rf);
  if (auto f = co_await loop.fsync(fd, /*datasync=*/true); !f) co_return std::unexpected(f.error());
  if (auto f = co_await loop.fsync(fd); !f) co_return std::unexpected(f.error());
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  auto again = co_await loop.openat(AT_FDCWD, self.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (!again) co_return std::unexpected(again.error());
  auto ready = co_await loop.poll(*again, POLLIN);  // a regular file is always readable
  if (!ready) co_return std::unexpected(ready.error());
  if ((*ready & POLLIN) == 0) co_return fail(ErrorCode::Io, "poll did not report POLLIN");
  if (auto c = co_await loop.close(*again); !c) co_return std::unexpected(c.error());
  // The fd is gone: closing it again is EBADF, reported as an error, not a crash.
  auto twice = co_await loop.close(*again);
  if (twice || twice.error().sys_errno() != EBADF) {
    co_return fail(ErrorCode::Io, "closing a closed fd did not fail with EBADF");
  }
  co_return got;
}

TEST(EventLoop, VectoredFixedSyncOpenClosePollOpsAllComplete) {
  LOOP_OR_SKIP(loop);
  UniqueFd f = test::temp_file();
  alignas(4096) static std::array<std::byte, 4096> fixed{};
  const std::array<iovec, 1> reg{iovec{fixed.data(), fixed.size()}};
  ASSERT_TRUE(loop->ring().register_buffers(reg));
  auto out = loop->run(file_ops(*loop, f.get(), fixed));
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_TRUE(*out) << out->error().to_string();
  EXPECT_EQ(**out, "vectored io|fixed");
}

TEST(EventLoop, FailedCqeBecomesErrorWithErrnoAndOpName) {
  LOOP_OR_SKIP(loop);
  auto job = [](EventLoop& l) -> Task<Result<std::size_t>> {
    std::array<std::byte, 8> buf{};
    co_return co_await l.read(987654, buf, 0);
  };
  auto out = loop->run(job(*loop));
  ASSERT_TRUE(out);
  ASSERT_FALSE(*out);
  EXPECT_EQ(out->error().sys_errno(), EBADF);
  EXPECT_NE(out->error().message().find("read"), std::string::npos) << out->error().message();
}

// A recv of up to 16 bytes bounded by a 10 ms linked timeout.
Task<Result<std::size_t>> timed_recv(EventLoop& l, int fd) {
  std::array<std::byte, 16> buf{};
  co_return co_await l.recv(fd, buf).with_timeout(10ms);
}

TEST(EventLoop, SleepAndTimeoutAndCancelFd) {
  LOOP_OR_SKIP(loop);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);

  const auto start = std::chrono::steady_clock::now();
  auto t = loop->run(timed_recv(*loop, a.get()));
  ASSERT_TRUE(t);
  ASSERT_FALSE(*t);
  EXPECT_EQ(t->error().code(), ErrorCode::TimedOut);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 8ms);

  // A recv whose data arrives in time is not affected by its timeout.
  ASSERT_EQ(::write(b.get(), "hi", 2), 2);
  auto ok = loop->run(timed_recv(*loop, a.get()));
  ASSERT_TRUE(ok && *ok);
  EXPECT_EQ(**ok, 2u);

  // One coroutine waits on a recv; another cancels every request on the fd.
  Result<std::size_t> waiter_result = 0u;
  bool waiter_done = false;
  auto waiter = [&](EventLoop& l) -> Task<void> {
    std::array<std::byte, 16> buf{};
    waiter_result = co_await l.recv(a.get(), buf);
    waiter_done = true;
  };
  auto canceller = [&](EventLoop& l) -> Task<void> {
    auto s = co_await l.sleep(5ms);
    EXPECT_TRUE(s);
    EXPECT_TRUE(l.cancel_fd(a.get()));
  };
  loop->spawn(waiter(*loop));
  ASSERT_TRUE(loop->run(canceller(*loop)));
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_TRUE(waiter_done);
  ASSERT_FALSE(waiter_result);
  EXPECT_EQ(waiter_result.error().code(), ErrorCode::Cancelled);
}

// sleep() splits its duration into the timeout's seconds and nanoseconds: a whole second is one
// second and no nanoseconds, not a timeout of nothing.
TEST(EventLoop, ASleepOfAWholeSecondWaitsIt) {
  LOOP_OR_SKIP(loop, {});
  const auto start = std::chrono::steady_clock::now();
  auto slept =
      loop->run([](EventLoop& l) -> Task<Result<void>> { co_return co_await l.sleep(1s); }(*loop));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(slept);
  EXPECT_TRUE(*slept) << slept->error().to_string();
  EXPECT_GE(took, 1s);
}

// A request with a linked timeout needs two SQEs in a row: on a one-entry ring it is refused as
// ResourceExhausted before anything is queued (never split from its timeout), and a request
// without one still runs on that ring.
TEST(EventLoop, ALinkedTimeoutOnAOneEntryRingIsRefusedAndPlainRequestsStillRun) {
  LOOP_OR_SKIP(loop, {.entries = 1, .cq_entries = 8});
  EXPECT_EQ(loop->ring().sq_entries(), 1u);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  auto t = loop->run(timed_recv(*loop, a.get()));
  ASSERT_TRUE(t);
  ASSERT_FALSE(*t);
  EXPECT_EQ(t->error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(t->error().message().find("linked request"), std::string::npos) << t->error().message();
  EXPECT_EQ(loop->in_flight(), 0u);
  auto nop = [](EventLoop& l) -> Task<Result<void>> { co_return co_await l.nop(); };
  auto n = loop->run(nop(*loop));
  ASSERT_TRUE(n);
  EXPECT_TRUE(*n);
}

Task<void> file_worker(EventLoop& loop, int fd, int id, int* done) {
  for (int round = 0; round < 5; ++round) {
    const std::string text = "worker " + std::to_string(id) + " round " + std::to_string(round);
    std::string block(64, '.');
    std::memcpy(block.data(), text.data(), text.size());
    const std::uint64_t off = static_cast<std::uint64_t>(id) * 64;
    auto w = co_await loop.write(fd, bytes_of(block), off);
    EXPECT_TRUE(w && *w == 64);
    if (id % 3 == 0) {
      EXPECT_TRUE(co_await loop.sleep(std::chrono::microseconds(100 * (id % 7))));
    }
    EXPECT_TRUE(co_await loop.nop());
    std::string back(64, '\0');
    auto r = co_await loop.read(fd, std::as_writable_bytes(std::span(back)), off);
    EXPECT_TRUE(r && *r == 64);
    EXPECT_EQ(back, block);
  }
  ++*done;
}

TEST(EventLoop, ManyConcurrentCoroutinesInterleave) {
  // 8-entry SQ and 16-entry CQ with 300 coroutines: exercises SQ back-pressure and CQ overflow
  // inside the loop.
  LOOP_OR_SKIP(loop, RingOptions{.entries = 8, .cq_entries = 16});
  UniqueFd f = test::temp_file();
  int done = 0;
  constexpr int kWorkers = 300;
  for (int i = 0; i < kWorkers; ++i) loop->spawn(file_worker(*loop, f.get(), i, &done));
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_EQ(done, kWorkers);
}

Task<void> echo_session(EventLoop& loop, UniqueFd conn) {
  std::array<std::byte, 256> buf{};
  for (;;) {
    auto n = co_await loop.recv(conn.get(), buf);
    if (!n || *n == 0) co_return;
    std::size_t sent = 0;
    while (sent < *n) {
      auto s = co_await loop.send(conn.get(), std::span(buf).subspan(sent, *n - sent));
      if (!s) co_return;
      sent += *s;
    }
  }
}

Task<void> echo_server(EventLoop& loop, int listener, int sessions) {
  for (int i = 0; i < sessions; ++i) {
    auto fd = co_await loop.accept(listener);
    EXPECT_TRUE(fd) << fd.error().to_string();
    if (!fd) co_return;
    loop.spawn(echo_session(loop, UniqueFd(*fd)));
  }
}

Task<void> echo_client(EventLoop& loop, sockaddr_in addr, int id, int* ok) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
  auto c = co_await loop.connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  EXPECT_TRUE(c) << c.error().to_string();
  if (!c) co_return;
  for (int m = 0; m < 10; ++m) {
    const std::string msg = "client " + std::to_string(id) + " msg " + std::to_string(m);
    auto sent = co_await loop.send(s.get(), bytes_of(msg));
    EXPECT_TRUE(sent && *sent == msg.size());
    std::string got;
    while (got.size() < msg.size()) {
      std::array<std::byte, 64> buf{};
      auto n = co_await loop.recv(s.get(), buf);
      if (!n || *n == 0) {
        ADD_FAILURE() << "echo connection closed early";
        co_return;
      }
      // SAFETY: viewing received bytes as chars.
      got.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    EXPECT_EQ(got, msg);
  }
  ++*ok;
}

TEST(EventLoop, TcpEchoWithManyClients) {
  LOOP_OR_SKIP(loop);
  sockaddr_in addr{};
  UniqueFd listener = test::tcp_listener(&addr);
  ASSERT_TRUE(listener);
  constexpr int kClients = 12;
  int ok = 0;
  loop->spawn(echo_server(*loop, listener.get(), kClients));
  for (int i = 0; i < kClients; ++i) loop->spawn(echo_client(*loop, addr, i, &ok));
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_EQ(ok, kClients);
}

TEST(EventLoop, ShutdownCancelsWorkInFlight) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  int callback_res = 1;
  Result<std::size_t> coro_res = 0u;
  bool coro_finished = false;
  {
    LOOP_OR_SKIP(loop);
    std::vector<std::byte> cb_buf(32);
    ASSERT_TRUE(loop->submit([&](abi::Sqe& s) { prep_recv(s, a.get(), cb_buf.data(), 32, 0); },
                             [&](int res, std::uint32_t) { callback_res = res; }));
    auto pending = [&](EventLoop& l) -> Task<void> {
      std::array<std::byte, 32> buf{};
      coro_res = co_await l.recv(a.get(), buf);
      // Any request after shutdown began is refused at once.
      auto again = co_await l.nop();
      EXPECT_FALSE(again);
      coro_finished = true;
    };
    loop->spawn(pending(*loop));
    ASSERT_TRUE(loop->run_once(0ns));
    EXPECT_EQ(loop->in_flight(), 2u);
  }  // ~EventLoop: cancel, drain, close
  EXPECT_EQ(callback_res, -ECANCELED);
  EXPECT_TRUE(coro_finished);
  ASSERT_FALSE(coro_res);
  EXPECT_EQ(coro_res.error().code(), ErrorCode::Cancelled);
}

TEST(EventLoop, WakeFromAnotherThreadEndsAWaitAndIsNotInFlight) {
  LOOP_OR_SKIP(loop);
  ASSERT_TRUE(loop->enable_wake());
  EXPECT_EQ(loop->in_flight(), 0u);
  ASSERT_TRUE(loop->run_until_idle());  // the armed wake poll does not keep the loop busy
  EXPECT_FALSE(loop->take_wake());
  for (int round = 0; round < 3; ++round) {
    std::thread waker([&] {
      std::this_thread::sleep_for(20ms);
      loop->wake();
      loop->wake();  // coalesces with the first
    });
    // No timeout: only the wake-up can end this wait.
    bool woken = false;
    while (!woken) {
      ASSERT_TRUE(loop->run_once());
      woken = loop->take_wake();
    }
    waker.join();
    EXPECT_FALSE(loop->take_wake());
  }
  // Re-armed after each wake-up: a request completes alongside it as usual.
  Recorder nop;
  auto sqe = loop->sqe_for(&nop);
  ASSERT_TRUE(sqe);
  prep_nop(**sqe);
  EXPECT_EQ(loop->in_flight(), 1u);
  ASSERT_TRUE(loop->run_until_idle());
  EXPECT_EQ(nop.calls, 1);
  EXPECT_EQ(nop.res, 0);
}

// With nothing of the caller's in flight, run_until_idle still hands the kernel what the loop
// queued for itself, a fresh wake poll or a cancel, without waiting for either: afterwards nothing
// is left queued and the kernel has consumed every SQ slot (its SQ head caught up).
TEST(EventLoop, RunUntilIdlePushesQueuedWakePollAndCancelToTheKernel) {
  LOOP_OR_SKIP(loop);
  const Ring& ring = loop->ring();
  auto expect_pushed_by_run_until_idle = [&](const char* what) {
    EXPECT_EQ(ring.sq_ready(), 1u) << what << " was not queued";
    ASSERT_TRUE(loop->run_until_idle()) << what;
    EXPECT_EQ(ring.sq_ready(), 0u) << what << " is still queued";
    EXPECT_EQ(ring.sq_space_left(), ring.sq_entries()) << "the kernel did not consume " << what;
    EXPECT_EQ(loop->in_flight(), 0u) << what;
  };
  ASSERT_TRUE(loop->enable_wake());
  expect_pushed_by_run_until_idle("the wake poll");
  auto done = loop->submit([](abi::Sqe& s) { prep_nop(s); }, [](int, std::uint32_t) {});
  ASSERT_TRUE(done) << done.error().to_string();
  ASSERT_TRUE(loop->run_until_idle());
  ASSERT_TRUE(loop->cancel(*done));  // a request already completed: the cancel finds nothing
  expect_pushed_by_run_until_idle("the cancel");
}

// Shutdown with the SQ full of requests not yet submitted: it submits them to make room for its
// cancel-everything, so each one still completes, as cancelled, before the ring closes.
TEST(EventLoop, ShutdownWithAFullSqStillCancelsEveryRequest) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::array<Recorder, 4> recs;
  std::array<std::array<std::byte, 16>, 4> bufs{};
  {
    LOOP_OR_SKIP(loop, {.entries = 4, .cq_entries = 16});
    for (std::size_t i = 0; i < recs.size(); ++i) {
      abi::Sqe* sqe = loop->try_sqe_for(&recs[i]);
      ASSERT_NE(sqe, nullptr);
      prep_recv(*sqe, a.get(), bufs[i].data(), 16, 0);  // nothing is ever sent
    }
    EXPECT_EQ(loop->ring().sq_space_left(), 0u);
    EXPECT_EQ(loop->in_flight(), 4u);
  }  // ~EventLoop
  for (const auto& r : recs) {
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.res, -ECANCELED);
  }
}

TEST(EventLoop, ShutdownWithWakeArmedCancelsTheRestPromptly) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  int callback_res = 1;
  std::vector<std::byte> buf(32);
  const auto start = std::chrono::steady_clock::now();
  {
    LOOP_OR_SKIP(loop);
    ASSERT_TRUE(loop->enable_wake());
    ASSERT_TRUE(loop->submit([&](abi::Sqe& s) { prep_recv(s, a.get(), buf.data(), 32, 0); },
                             [&](int res, std::uint32_t) { callback_res = res; }));
    ASSERT_TRUE(loop->run_once(0ns));
    EXPECT_EQ(loop->in_flight(), 1u);
  }  // ~EventLoop: the wake poll and the recv are cancelled; the recv's callback still runs
  EXPECT_EQ(callback_res, -ECANCELED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "shutdown waited out its budget";
}

TEST(EventLoop, UringCmdNeedsSqe128AndCompletesItsCompletion) {
  LOOP_OR_SKIP(plain);
  const std::array<std::byte, 16> cmd{};
  Recorder r;
  UniqueFd f = test::temp_file();
  auto refused = plain->uring_cmd(&r, f.get(), 1, cmd);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(plain->in_flight(), 0u);

  auto big = make_loop({.entries = 8, .sqe128 = true});
  if (!big) return;
  // A regular file has no uring_cmd handler: the kernel fails the command (EOPNOTSUPP; EINVAL
  // before Linux 5.19 knew the opcode), and the CQE still reaches our Completion.
  ASSERT_TRUE(big->uring_cmd(&r, f.get(), 1, cmd));
  EXPECT_EQ(big->in_flight(), 1u);
  ASSERT_TRUE(big->run_until_idle());
  EXPECT_EQ(r.calls, 1);
  EXPECT_TRUE(r.res == -EOPNOTSUPP || r.res == -EINVAL) << r.res;
}

TEST(EventLoop, TrySqeForAndReapLetAnotherThreadDeliver) {
  LOOP_OR_SKIP(loop, {.entries = 4, .cq_entries = 64});
  std::array<Recorder, 4> recs;
  for (auto& r : recs) {
    abi::Sqe* sqe = loop->try_sqe_for(&r);
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
  }
  Recorder extra;
  EXPECT_EQ(loop->try_sqe_for(&extra), nullptr) << "SQ of 4 is full: no submit, no dispatch";
  EXPECT_EQ(loop->in_flight(), 4u);
  ASSERT_TRUE(loop->submit());
  ASSERT_TRUE(loop->ring().wait(4, 5s));
  std::array<EventLoop::Reaped, 8> out{};
  const unsigned n = loop->reap(out);
  ASSERT_EQ(n, 4u);
  EXPECT_EQ(loop->in_flight(), 0u);
  for (const auto& r : recs) EXPECT_EQ(r.calls, 0) << "reap() must not run completions";
  std::thread deliverer([&] {
    for (unsigned i = 0; i < n; ++i) out[i].deliver();
  });
  deliverer.join();
  for (const auto& r : recs) {
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.res, 0);
  }
  EXPECT_EQ(loop->reap(out), 0u);
}

// On a two-entry ring a request with a linked timeout takes the whole SQ: with both entries
// queued, reserve() submits them and then has exactly the two it needs.
TEST(EventLoop, ALinkedTimeoutFillsATwoEntrySqOnceTheQueuedEntriesAreSubmitted) {
  LOOP_OR_SKIP(loop, {.entries = 2, .cq_entries = 8});
  ASSERT_EQ(loop->ring().sq_entries(), 2u);
  std::array<Recorder, 2> recs;
  for (auto& r : recs) {
    abi::Sqe* sqe = loop->try_sqe_for(&r);
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
  }
  auto timed_nop = [](EventLoop& l) -> Task<Result<void>> {
    co_return co_await l.nop().with_timeout(std::chrono::seconds(10));
  };
  auto t = loop->run(timed_nop(*loop));
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_TRUE(*t) << t->error().to_string();
  ASSERT_TRUE(loop->run_until_idle());
  for (const auto& r : recs) {
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.res, 0);
  }
}

// reap() fills at most out.size() entries, in batches of 64: a span of 100 with 130 CQEs ready
// takes 100 (writing nothing past the span) and leaves the other 30 for the next call.
TEST(EventLoop, ReapTakesNoMoreThanTheSpanHoldsAndLeavesTheRest) {
  LOOP_OR_SKIP(loop, {.entries = 256, .cq_entries = 256});
  std::vector<Recorder> recs(130);
  for (auto& r : recs) {
    abi::Sqe* sqe = loop->try_sqe_for(&r);
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
  }
  ASSERT_TRUE(loop->submit());
  ASSERT_TRUE(loop->ring().wait(130, 5s));
  constexpr Completion* kUntouched = nullptr;
  std::vector<EventLoop::Reaped> out(200, EventLoop::Reaped{kUntouched, 7, 7});
  const unsigned first = loop->reap(std::span(out).first(100));
  EXPECT_EQ(first, 100u);
  for (std::size_t i = 100; i < out.size(); ++i) {
    ASSERT_EQ(out[i].completion, kUntouched) << "entry " << i << " is past the span";
  }
  EXPECT_EQ(loop->in_flight(), 30u);
  const unsigned second = loop->reap(std::span(out).subspan(100));
  EXPECT_EQ(second, 30u);
  for (unsigned i = 0; i < 130; ++i) out[i].deliver();
  for (const auto& r : recs) {
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.res, 0);
  }
}

TEST(EventLoop, OneLoopPerThread) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  constexpr int kThreads = 4;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto loop = make_loop();
      if (!loop) return;  // make_loop recorded the failure
      UniqueFd f = test::temp_file();
      int done = 0;
      for (int i = 0; i < 20; ++i) loop->spawn(file_worker(*loop, f.get(), i + t, &done));
      int nops = 0;
      for (int i = 0; i < 200; ++i)
        (void)loop->submit([](abi::Sqe& s) { prep_nop(s); }, [&](int, std::uint32_t) { ++nops; });
      if (loop->run_until_idle() && done == 20 && nops == 200) ++ok;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads);
}

// reap() takes CQEs in batches of 64 but fills all of `out` while the CQ holds more: a full batch
// is not the end of the CQ, only a short one is (the contract: fewer than out.size() means empty).
TEST(EventLoop, ReapFillsAnOutLargerThanOneBatchFromAFullerCq) {
  constexpr unsigned kOps = 150;  // two full batches of 64 and a short one
  LOOP_OR_SKIP(loop, {.entries = 256, .cq_entries = 512});
  std::array<Recorder, kOps> recs;
  for (auto& r : recs) {
    abi::Sqe* sqe = loop->try_sqe_for(&r);
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
  }
  ASSERT_TRUE(loop->submit());
  ASSERT_TRUE(loop->ring().wait(kOps, 5s));
  std::vector<EventLoop::Reaped> out(200);
  EXPECT_EQ(loop->reap(out), kOps);
  EXPECT_EQ(loop->in_flight(), 0u);
  EXPECT_EQ(loop->ring().cq_ready(), 0u) << "every CQE was taken";
  for (unsigned i = 0; i < kOps; ++i) {
    EXPECT_EQ(out[i].res, 0);
    out[i].deliver();
  }
  for (const auto& r : recs) EXPECT_EQ(r.calls, 1);
}

}  // namespace
}  // namespace pepita::io_uring
