// Provided buffer rings: a stream received fully and in order by multishot recv through a few
// recycled buffers (user-allocated and kernel-allocated rings, plain and DEFER_TASKRUN rings),
// ENOBUFS when the buffers run out reported and recovered from, bad input refused and the
// largest ring the kernel takes (32768 entries) accepted.
#include "pepita/io_uring/buf_ring.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "pepita/io_uring/completion.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

std::byte pattern_at(std::size_t i) { return static_cast<std::byte>((i * 31 + (i >> 12)) & 0xff); }

// What a receive loop saw.
struct Received {
  std::size_t bytes = 0;
  std::size_t mismatches = 0;  // bytes that differ from the pattern at their stream offset
  int enobufs = 0;             // times the group ran dry and the recv was armed again
  int other_errors = 0;
  std::size_t cqes = 0;
};

void arm(Ring& ring, int fd, const BufferRing& bufs) {
  abi::Sqe* sqe = ring.get_sqe();
  ASSERT_NE(sqe, nullptr);
  prep_recv_multishot(*sqe, fd, 0, bufs.group());
  sqe->user_data = 1;
  ASSERT_TRUE(ring.submit());
}

// Receives until end of stream (or `limit` bytes), checking every byte against the pattern.
// `recycle` false: buffers are not given back (to run the group dry).
// `start`: the stream offset of the first byte this call receives.
Received receive_stream(Ring& ring, int fd, BufferRing& bufs, std::size_t limit, bool recycle,
                        std::size_t start = 0) {
  Received got;
  arm(ring, fd, bufs);
  bool done = false;
  while (!done && got.bytes < limit) {
    auto w = ring.submit_and_wait(1);
    EXPECT_TRUE(w) << w.error().to_string();
    if (!w) break;
    bool rearm = false;
    ring.for_each_cqe([&](const abi::Cqe& c) {
      ++got.cqes;
      if (c.res > 0) {
        EXPECT_TRUE(BufferRing::has_buffer(c));
        const std::uint16_t bid = BufferRing::buffer_id(c);
        for (std::byte b : bufs.data(bid, c.res))
          got.mismatches += b != pattern_at(start + got.bytes++);
        if (recycle) bufs.recycle(bid);
      }
      if ((c.flags & abi::cqe_flags::MORE) != 0) return;
      if (c.res == 0) {
        done = true;  // end of stream
      } else if (c.res == -ENOBUFS) {
        ++got.enobufs;
        done = !recycle;
        rearm = recycle;
      } else if (c.res < 0) {
        ++got.other_errors;
        done = true;
      } else {
        rearm = true;  // the kernel ended the multishot (e.g. CQ full): arm it again
      }
    });
    if (rearm && !done && got.bytes < limit) arm(ring, fd, bufs);
  }
  return got;
}

class BufRingStream : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(BufRingStream, MultishotRecvReceivesTheWholeStreamInOrderThroughRecycledBuffers) {
  const auto [kernel_allocated, defer] = GetParam();
  PEPITA_REQUIRE_OP(abi::Op::Recv);
  PEPITA_RING_OR_SKIP(ring, defer ? RingOptions::single_thread(16) : RingOptions{.entries = 16});
  auto bufs = BufferRing::create(
      ring, {.group = 3, .entries = 8, .buf_size = 4096, .kernel_allocated = kernel_allocated});
  ASSERT_TRUE(bufs) << bufs.error().to_string();

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd rx(sv[0]), tx(sv[1]);
  constexpr std::size_t kTotal = 4u << 20;  // 1024 times the 8 buffers' 32 KiB
  std::thread writer([fd = tx.get()] {
    std::vector<std::byte> chunk(10000);
    std::size_t off = 0;
    while (off < kTotal) {
      const std::size_t n = std::min(chunk.size(), kTotal - off);
      for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern_at(off + i);
      std::size_t sent = 0;
      while (sent < n) {
        const ssize_t r = ::send(fd, chunk.data() + sent, n - sent, MSG_NOSIGNAL);
        if (r <= 0) return;
        sent += static_cast<std::size_t>(r);
      }
      off += n;
    }
    ::shutdown(fd, SHUT_WR);
  });
  const Received got = receive_stream(ring, rx.get(), *bufs, kTotal + 1, true);
  writer.join();
  EXPECT_EQ(got.bytes, kTotal);
  EXPECT_EQ(got.mismatches, 0u) << "bytes arrived out of order or a buffer was reused too early";
  EXPECT_EQ(got.other_errors, 0);
  EXPECT_GT(got.cqes, kTotal / (8 * 4096)) << "8 buffers of 4 KiB had to be recycled";
}

INSTANTIATE_TEST_SUITE_P(UserAndKernelRingsPlainAndDeferTaskrun, BufRingStream,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& param_info) {
                           return std::string(std::get<0>(param_info.param) ? "KernelRing"
                                                                            : "UserRing")
                               .append(std::get<1>(param_info.param) ? "DeferTaskrun" : "Plain");
                         });

TEST(BufRing, ExhaustedGroupReportsEnobufsAndRecoversAfterRecycling) {
  PEPITA_REQUIRE_OP(abi::Op::Recv);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  auto bufs = BufferRing::create(ring, {.group = 5, .entries = 4, .buf_size = 1024});
  ASSERT_TRUE(bufs) << bufs.error().to_string();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd rx(sv[0]), tx(sv[1]);
  constexpr std::size_t kTotal = 16 * 1024;  // four times what the group holds
  std::vector<std::byte> all(kTotal);
  for (std::size_t i = 0; i < kTotal; ++i) all[i] = pattern_at(i);
  ASSERT_EQ(::send(tx.get(), all.data(), all.size(), 0), static_cast<ssize_t>(kTotal));
  ::shutdown(tx.get(), SHUT_WR);

  // Without giving buffers back the group runs dry after 4 KiB: ENOBUFS, reported as such.
  Received first = receive_stream(ring, rx.get(), *bufs, kTotal, false);
  EXPECT_EQ(first.enobufs, 1);
  EXPECT_EQ(first.bytes, 4u * 1024) << "every buffer filled before the group ran dry";
  EXPECT_EQ(first.mismatches, 0u);
  auto err = op_result(abi::Op::Recv, -ENOBUFS);
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code(), ErrorCode::ResourceExhausted);

  // Recover: give all four back, arm again, and the rest of the stream arrives in order.
  for (std::uint16_t bid = 0; bid < 4; ++bid) bufs->add(bid);
  bufs->publish();
  const Received rest = receive_stream(ring, rx.get(), *bufs, kTotal, true, first.bytes);
  EXPECT_EQ(first.bytes + rest.bytes, kTotal);
  EXPECT_EQ(rest.mismatches, 0u) << "the rest of the stream continues where the first part ended";
  EXPECT_EQ(rest.other_errors, 0);
}

TEST(BufRing, KernelHeadCountsTheBuffersTaken) {
  PEPITA_REQUIRE_OP(abi::Op::Recv);
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  auto bufs = BufferRing::create(ring, {.group = 9, .entries = 4, .buf_size = 256});
  ASSERT_TRUE(bufs);
  auto head = bufs->kernel_head();
  ASSERT_TRUE(head) << head.error().to_string();
  EXPECT_EQ(*head, 0);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd rx(sv[0]), tx(sv[1]);
  ASSERT_EQ(::send(tx.get(), "hello", 5, 0), 5);
  abi::Sqe* sqe = ring.get_sqe();
  prep_recv(*sqe, rx.get(), nullptr, 0, 0);
  sqe->flags = abi::sqe_flags::BUFFER_SELECT;
  sqe->buf_group = 9;
  const test::Done d = test::submit_and_reap_one(ring);
  ASSERT_EQ(d.res, 5);
  EXPECT_NE(d.flags & abi::cqe_flags::BUFFER, 0u);
  const auto bid = static_cast<std::uint16_t>(d.flags >> abi::cqe_flags::BUFFER_SHIFT);
  EXPECT_EQ(std::memcmp(bufs->data(bid, d.res).data(), "hello", 5), 0);
  head = bufs->kernel_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(*head, 1);
}

TEST(BufRing, BadSizesAndADuplicateGroupAreRefused) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  auto three = BufferRing::create(ring, {.group = 1, .entries = 3, .buf_size = 64});
  ASSERT_FALSE(three);
  EXPECT_EQ(three.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(three.error().message().find("power of two"), std::string::npos);
  auto zero = BufferRing::create(ring, {.group = 1, .entries = 4, .buf_size = 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), ErrorCode::InvalidArgument);
  auto first = BufferRing::create(ring, {.group = 1, .entries = 4, .buf_size = 64});
  ASSERT_TRUE(first) << first.error().to_string();
  auto again = BufferRing::create(ring, {.group = 1, .entries = 4, .buf_size = 64});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::AlreadyExists) << again.error().to_string();
  // Dropping the first registration frees the group id.
  first = BufferRing::create(ring, {.group = 2, .entries = 4, .buf_size = 64});
  ASSERT_TRUE(first);
  auto reuse = BufferRing::create(ring, {.group = 1, .entries = 4, .buf_size = 64});
  EXPECT_TRUE(reuse) << "the group is free once its BufferRing is gone";
}

TEST(BufRing, EntriesUpToTheKernelMaximumOf32768AreAccepted) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 2});
  // 32768 is the largest power of two the kernel takes (it refuses 65536 and up).
  auto largest = BufferRing::create(ring, {.group = 1, .entries = 32768, .buf_size = 1});
  ASSERT_TRUE(largest) << largest.error().to_string();
  EXPECT_EQ(largest->entries(), 32768u);
  EXPECT_EQ(largest->buffer(32767).size(), 1u);
  EXPECT_TRUE(largest->buffer(32768).empty());
  auto over = BufferRing::create(ring, {.group = 2, .entries = 65536, .buf_size = 1});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(over.error().message().find("1..32768"), std::string::npos) << over.error().to_string();
}

TEST(BufRing, OutlivesTheRingObjectItWasCreatedOn) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  std::optional<BufferRing> bufs;
  {
    auto ring = Ring::create({.entries = 2});
    ASSERT_TRUE(ring);
    auto b = BufferRing::create(*ring, {.group = 1, .entries = 2, .buf_size = 64});
    ASSERT_TRUE(b);
    bufs.emplace(std::move(*b));
  }
  // The registration holds its own reference to the io_uring: the buffers are still ours, and
  // destruction unregisters through it.
  EXPECT_EQ(bufs->buffer(0).size(), 64u);
  EXPECT_EQ(bufs->group(), 1);
  EXPECT_TRUE(bufs->buffer(2).empty()) << "out-of-range ids give an empty span";
}

}  // namespace
}  // namespace pepita::io_uring
