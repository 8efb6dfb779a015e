#pragma once
// Shared helpers for the io_uring tests: ring creation that skips when the probe finds no io_uring
// (and fails when Ring::create fails anyway), single-op submit/reap, a recording Completion,
// temp files and loopback sockets.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bitset>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/require.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/io_uring/event_loop.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring::test {

/// Creates a ring or records why it could not be created (sets `error`).
inline std::optional<Ring> make_ring(const RingOptions& o, std::string* error) {
  auto r = Ring::create(o);
  if (!r) {
    *error = r.error().to_string();
    return std::nullopt;
  }
  return std::move(*r);
}

/// Declares `Ring& var` made with the given options. Skips the test when the independent probe
/// (a raw io_uring_setup, tests/common/require.hpp) finds no io_uring, fails it when
/// PEPITA_REQUIRE names io_uring; with io_uring there, Ring::create failing is a test failure.
#define PEPITA_RING_OR_SKIP(var, ...)                                                         \
  PEPITA_REQUIRE_CAPABILITY(io_uring);                                                        \
  std::string var##_error_;                                                                   \
  auto var##_opt_ = ::pepita::io_uring::test::make_ring(__VA_ARGS__, &var##_error_);          \
  if (!var##_opt_) FAIL() << "io_uring is present but Ring::create failed: " << var##_error_; \
  ::pepita::io_uring::Ring& var = *var##_opt_

/// A completion copied out of the ring.
struct Done {
  std::uint64_t user_data;
  int res;
  std::uint32_t flags;
};

/// Submits what is queued, waits for one CQE and consumes it.
inline Done submit_and_reap_one(Ring& ring) {
  auto s = ring.submit_and_wait(1);
  EXPECT_TRUE(s) << s.error().to_string();
  const abi::Cqe* cqe = ring.peek_cqe();
  EXPECT_NE(cqe, nullptr);
  if (cqe == nullptr) return Done{0, -9999, 0};
  Done d{cqe->user_data, cqe->res, cqe->flags};
  ring.cqe_seen();
  return d;
}

/// Waits for exactly `n` CQEs and returns them in arrival order.
inline std::vector<Done> reap(Ring& ring, unsigned n) {
  std::vector<Done> out;
  while (out.size() < n) {
    auto s = ring.submit_and_wait(1);
    EXPECT_TRUE(s) << s.error().to_string();
    if (!s) break;
    ring.for_each_cqe([&](const abi::Cqe& c) { out.push_back(Done{c.user_data, c.res, c.flags}); });
  }
  return out;
}

/// An unlinked temp file in `dir` (O_DIRECT optional).
inline UniqueFd temp_file(int extra_flags = 0, const char* dir = "/tmp") {
  std::string path = std::string(dir) + "/pepita_iou_XXXXXX";
  UniqueFd fd(::mkostemp(path.data(), O_CLOEXEC | extra_flags));
  if (fd) ::unlink(path.c_str());
  return fd;
}

/// A connected TCP loopback pair plus the listener.
struct TcpPair {
  UniqueFd listener;
  UniqueFd client;
  UniqueFd server;
};

inline UniqueFd tcp_listener(sockaddr_in* bound) {
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return UniqueFd();
  socklen_t len = sizeof a;
  ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len);  // SAFETY: as above
  if (::listen(l.get(), 16) != 0) return UniqueFd();
  *bound = a;
  return l;
}

/// The opcodes this kernel supports, probed with raw io_uring_setup/io_uring_register and the
/// kernel's own <linux/io_uring.h> structs, independently of Ring::probe/Ring::supports (the code
/// under test). Empty when there is no io_uring or no probe (Linux < 5.6).
inline const std::bitset<256>& kernel_opcodes() {
  static const std::bitset<256> bits = [] {
    std::bitset<256> out;
    io_uring_params p{};
    const long fd = ::syscall(__NR_io_uring_setup, 2, &p);
    if (fd < 0) return out;
    std::vector<unsigned char> buf(sizeof(io_uring_probe) + 256 * sizeof(io_uring_probe_op));
    auto* probe = reinterpret_cast<io_uring_probe*>(buf.data());  // SAFETY: sized for 256 ops
    if (::syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, probe, 256) == 0) {
      for (unsigned i = 0; i < probe->ops_len; ++i)
        if ((probe->ops[i].flags & IO_URING_OP_SUPPORTED) != 0) out.set(probe->ops[i].op);
    }
    ::close(static_cast<int>(fd));
    return out;
  }();
  return bits;
}

/// The skip-or-fail rule of tests/common/require.hpp for one opcode: skips (printing which) when
/// the independent probe says this kernel lacks `op`; fails instead when PEPITA_REQUIRE names
/// io_uring (CI), where the kernel is expected to have every opcode the tests use.
#define PEPITA_REQUIRE_OP(op)                                                              \
  do {                                                                                     \
    PEPITA_REQUIRE_CAPABILITY(io_uring);                                                   \
    if (!::pepita::io_uring::test::kernel_opcodes().test(static_cast<std::uint8_t>(op))) { \
      bool required_ = false;                                                              \
      for (auto c_ : ::pepita::test::requirements().required)                              \
        required_ = required_ || c_ == ::pepita::test::Capability::io_uring;               \
      const std::string msg_ = std::string("io_uring opcode ")                             \
                                   .append(::pepita::io_uring::op_name(op))                \
                                   .append(                                                \
                                       " is not supported by this kernel (the "            \
                                       "IORING_REGISTER_PROBE says so); a newer kernel "   \
                                       "provides it");                                     \
      if (required_) FAIL() << msg_ << " — PEPITA_REQUIRE names io_uring, so this fails."; \
      GTEST_SKIP() << msg_;                                                                \
    }                                                                                      \
  } while (0)

// A Completion that records its CQEs, as ublk's per-tag commands and FileDisk's requests do.
struct Recorder final : Completion {
  Recorder() noexcept : Completion(&Recorder::on_complete) {}
  static void on_complete(Completion* self, int res, std::uint32_t) noexcept {
    auto* r = static_cast<Recorder*>(self);
    r->res = res;
    ++r->calls;
  }
  int res = 1;
  int calls = 0;
};

}  // namespace pepita::io_uring::test
