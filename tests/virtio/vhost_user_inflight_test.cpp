// vhost-user INFLIGHT_SHMFD against a scripted frontend: a backend serving a device that completes
// out of order (newest first, holding the oldest requests) is SIGKILLed in a child process with
// some requests used and some not; a new backend handed the same region with SET_INFLIGHT_FD
// resubmits exactly the unfinished ones, each once, in the order they were first popped, before
// new avail entries, and the used ring and every response end correct. Bad regions are refused
// with a clear NAK and the connection (and the backend) keeps serving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "driver_ring.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/virtio/inflight.hpp"
#include "pepita/virtio/vhost_user.hpp"
#include "vhost_frontend.hpp"

namespace pepita::virtio::vhost_user {
namespace {
using vhost_user::testing::Frontend;
using vhost_user::testing::kUvaBase;
using vhost_user::testing::ServedBackend;
using vhost_user::testing::SharedRing;
using virtio::testing::DriverRing;
namespace v = abi::virtio;
using namespace std::chrono_literals;

constexpr uint16_t kQueueSize = 32;

// Each request is a chain of two descriptors: an 8-byte value to read, an 8-byte answer to write
// (value * 3 + 1). The device pops everything available, holds the first `hold` requests it ever
// pops (never completing them) and completes the rest newest first.
class OutOfOrderDevice final : public VirtioDevice {
 public:
  explicit OutOfOrderDevice(size_t hold) : hold_(hold) {}

  uint32_t device_id() const noexcept override { return 0x7e57; }
  uint64_t features() const noexcept override { return v::feature_bit(v::F_VERSION_1); }
  uint16_t num_queues() const noexcept override { return 1; }
  uint16_t max_queue_size() const noexcept override { return 64; }
  std::span<const std::byte> config() const noexcept override { return {}; }
  Result<void> activate(uint64_t acked) override {
    if ((acked & ~features()) != 0) return fail(ErrorCode::InvalidArgument, "not offered");
    return {};
  }
  void reset() noexcept override {
    std::lock_guard lock(mu_);
    held_.clear();
  }
  Result<bool> process(uint16_t, Queue& queue) override {
    bool notify = false;
    for (;;) {
      std::vector<Chain> batch;
      Chain c;
      while (PEPITA_TRY(queue.pop(c))) {
        std::lock_guard lock(mu_);
        served_.push_back(c.head);
        if (served_.size() <= hold_) {
          held_.push_back(c.head);
        } else {
          batch.push_back(c);
        }
      }
      std::reverse(batch.begin(), batch.end());
      for (const Chain& done : batch) {
        if (done.segments.size() != 2 || done.segments[0].len != 8 || done.segments[1].len != 8)
          return fail(ErrorCode::Protocol, "test request is not 8 readable + 8 writable bytes");
        const auto value = PEPITA_TRY(queue.ram().read<uint64_t>(done.segments[0].gpa));
        PEPITA_TRY_VOID(queue.ram().write(done.segments[1].gpa, value * 3 + 1));
        PEPITA_TRY_VOID(queue.add_used(done.head, 8));
      }
      if (!batch.empty()) notify = PEPITA_TRY(queue.should_notify()) || notify;
      if (!PEPITA_TRY(queue.enable_kicks())) return notify;
    }
  }
  std::vector<uint16_t> served() {
    std::lock_guard lock(mu_);
    return served_;
  }

 private:
  const size_t hold_;
  std::mutex mu_;
  std::vector<uint16_t> served_;  // every head popped, in pop order
  std::vector<uint16_t> held_;
};

uint64_t value_of(uint16_t head) { return 1000u + head; }

// Posts request `head` (descriptors head, head + 1) and returns the gpa of its answer.
uint64_t post(DriverRing& d, uint16_t head) {
  const uint64_t in = d.alloc(8);
  const uint64_t out = d.alloc(8);
  const uint64_t value = value_of(head);
  d.fill(in, &value, 8);
  const uint64_t unset = ~0ull;
  d.fill(out, &unset, 8);
  d.desc(head, in, 8, v::DESC_F_NEXT, static_cast<uint16_t>(head + 1));
  d.desc(head + 1u, out, 8, v::DESC_F_WRITE);
  d.publish(head);
  return out;
}

bool wait_used(DriverRing& d, uint16_t target) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (d.used_idx() != target) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Protocol features with INFLIGHT_SHMFD, REPLY_ACK, and VERSION_1.
void negotiate(Frontend& fe) {
  fe.send(GET_PROTOCOL_FEATURES, nullptr, 0);
  const uint64_t offered = fe.recv_u64(GET_PROTOCOL_FEATURES);
  ASSERT_NE(offered & (1ull << protocol::INFLIGHT_SHMFD), 0u) << "INFLIGHT_SHMFD offered";
  fe.send(SET_PROTOCOL_FEATURES,
          uint64_t{(1ull << protocol::REPLY_ACK) | (1ull << protocol::INFLIGHT_SHMFD)});
  fe.send(SET_FEATURES, v::feature_bit(v::F_VERSION_1) | v::feature_bit(F_PROTOCOL_FEATURES), -1,
          kNeedReply);
  ASSERT_EQ(fe.recv_u64(SET_FEATURES), 0u);
}

// GET_INFLIGHT_FD for one queue of `size`: the reply's description and fd.
Inflight get_inflight(Frontend& fe, UniqueFd& fd, uint16_t queues = 1, uint16_t size = kQueueSize) {
  fe.send(GET_INFLIGHT_FD, Inflight{0, 0, queues, size, 0});
  auto p = fe.recv_reply_with_fd(GET_INFLIGHT_FD, fd);
  Inflight out{};
  EXPECT_EQ(p.size(), sizeof out);
  if (p.size() == sizeof out) std::memcpy(&out, p.data(), sizeof out);
  return out;
}

// SET_INFLIGHT_FD with REPLY_ACK: 0 on success.
uint64_t set_inflight(Frontend& fe, const Inflight& in, int fd) {
  fe.send(SET_INFLIGHT_FD, in, fd, kNeedReply);
  return fe.recv_u64(SET_INFLIGHT_FD);
}

TEST(VhostUserInflight, RestartedBackendResubmitsExactlyTheUnfinishedOutOfOrderRequests) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The first backend, in a process of its own so that it can really be killed mid-run.
    ::close(sv[0]);
    OutOfOrderDevice device(/*hold=*/3);
    auto backend = Backend::adopt(UniqueFd(sv[1]), device);
    if (!backend) ::_exit(2);
    (void)(*backend)->serve_one();
    ::_exit(0);
  }
  ::close(sv[1]);
  UniqueFd first_fd(sv[0]);
  Frontend fe(first_fd.get());
  negotiate(fe);
  UniqueFd region_fd;
  const Inflight region = get_inflight(fe, region_fd);
  ASSERT_TRUE(region_fd.valid()) << "GET_INFLIGHT_FD reply without an fd";
  ASSERT_EQ(region.mmap_size, inflight_queue_bytes(kQueueSize));
  ASSERT_EQ(set_inflight(fe, region, region_fd.get()), 0u);  // as QEMU: back before the rings
  SharedRing sr(fe, 0, kQueueSize);
  DriverRing& d = *sr.ring;

  // Eight requests, heads 0, 2, ..., 14. The device holds 0, 2, 4 and completes 14 .. 6.
  std::vector<uint64_t> answer(2 * kQueueSize);
  for (uint16_t head = 0; head < 16; head += 2) answer[head] = post(d, head);
  sr.notify();
  ASSERT_TRUE(wait_used(d, 5)) << "the first backend did not complete 5 requests in 10 s";
  for (uint16_t i = 0; i < 5; ++i) {
    EXPECT_EQ(d.used(i).id, 14u - 2u * i) << "completions newest first (out of order)";
  }
  // The frontend's view of the region. Kill once the last completion is recorded there too, so
  // that what it holds is known (a kill inside the used-ring write sequence is InflightQueue's
  // test: KilledAfterTheUsedIndexMovedTheLastBatchIsCleared).
  auto map = Mapping::map(region.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd.get(), 0,
                          "test view of the inflight region");
  ASSERT_TRUE(map.has_value());
  const auto* header = reinterpret_cast<const InflightHeader*>(map->bytes());
  const auto* desc = reinterpret_cast<const InflightDesc*>(map->bytes() + sizeof(InflightHeader));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::atomic_ref<const uint16_t>(header->used_idx).load() != 5 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the backend died of its SIGKILL, not before";
  ASSERT_EQ(header->used_idx, 5);
  EXPECT_EQ(header->version, kInflightVersion);
  for (uint16_t head = 0; head < kQueueSize; ++head) {
    EXPECT_EQ(desc[head].inflight, head == 0 || head == 2 || head == 4 ? 1 : 0) << head;
  }
  // The guest goes on posting while no backend runs.
  answer[16] = post(d, 16);
  answer[18] = post(d, 18);

  // The restarted backend: QEMU re-sends the region and resumes the ring at its used index.
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd second_fd(sv[0]);
  OutOfOrderDevice device(/*hold=*/0);
  auto backend = Backend::adopt(UniqueFd(sv[1]), device);
  ASSERT_TRUE(backend.has_value());
  Result<void> served;
  std::thread server([&] { served = (*backend)->serve_one(); });
  Frontend fe2(second_fd.get());
  negotiate(fe2);
  EXPECT_EQ(set_inflight(fe2, region, region_fd.get()), 0u);
  Memory mem{};
  mem.nregions = 1;
  mem.regions[0] = {0, DriverRing::kMemSize, kUvaBase, 0};
  fe2.send(SET_MEM_TABLE, &mem, 8 + 32, sr.memfd.get(), kNeedReply);
  EXPECT_EQ(fe2.recv_u64(SET_MEM_TABLE), 0u);
  fe2.send(SET_VRING_NUM, VringState{0, kQueueSize});
  fe2.send(SET_VRING_BASE, VringState{0, d.used_idx()});
  fe2.send(SET_VRING_ADDR,
           VringAddr{0, 0, kUvaBase + DriverRing::kDesc, kUvaBase + DriverRing::kUsed,
                     kUvaBase + DriverRing::kAvail, 0});
  UniqueFd call(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  fe2.send(SET_VRING_CALL, uint64_t{0}, call.get());
  fe2.send(SET_VRING_KICK, uint64_t{0}, kick.get(), kNeedReply);
  EXPECT_EQ(fe2.recv_u64(SET_VRING_KICK), 0u);
  EXPECT_TRUE(wait_used(d, 10)) << "used index " << d.used_idx() << ", expected 10";
  // GET_VRING_BASE stops the ring: the worker's last region stores are done after its reply.
  fe2.send(GET_VRING_BASE, VringState{0, 0});
  auto base = fe2.recv_reply(GET_VRING_BASE);
  ASSERT_EQ(base.size(), sizeof(VringState));
  VringState vs;
  std::memcpy(&vs, base.data(), sizeof vs);
  EXPECT_EQ(vs.num, 10u);

  EXPECT_EQ(device.served(), (std::vector<uint16_t>{0, 2, 4, 16, 18}))
      << "the unfinished requests once each, in pop order, then the new ones";
  std::vector<uint32_t> ids;
  for (uint16_t i = 0; i < d.used_idx(); ++i) {
    ids.push_back(d.used(i).id);
    EXPECT_EQ(d.used(i).len, 8u);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint32_t>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}))
      << "every request in the used ring exactly once";
  for (uint16_t head = 0; head < 20; head += 2) {
    uint64_t got = 0;
    std::memcpy(&got, d.bytes(answer[head], 8).data(), 8);
    EXPECT_EQ(got, value_of(head) * 3 + 1) << "answer of request " << head;
  }
  EXPECT_EQ(header->used_idx, 10);
  for (uint16_t head = 0; head < kQueueSize; ++head) EXPECT_EQ(desc[head].inflight, 0) << head;
  (*backend)->stop();
  server.join();
  EXPECT_TRUE(served.has_value());
}

struct Harness {
  OutOfOrderDevice device{0};
  ServedBackend link{device};
};

// The connection still answers.
void expect_alive(Frontend& fe) {
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 1u) << "the backend stopped answering";
}

TEST(VhostUserInflight, BadRegionsAreRefusedAndTheBackendServesOn) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  negotiate(fe);

  // GET_INFLIGHT_FD for a layout the device cannot have: mmap_size 0, no fd.
  UniqueFd none;
  EXPECT_EQ(get_inflight(fe, none, /*queues=*/0).mmap_size, 0u);
  EXPECT_FALSE(none.valid());
  EXPECT_EQ(get_inflight(fe, none, 1, /*size=*/48).mmap_size, 0u) << "not a power of two";
  EXPECT_EQ(get_inflight(fe, none, 2).mmap_size, 0u) << "more queues than the device has";
  expect_alive(fe);

  UniqueFd fd;
  const Inflight good = get_inflight(fe, fd);
  ASSERT_TRUE(fd.valid());
  // The fd missing.
  EXPECT_NE(set_inflight(fe, good, -1), 0u);
  // A region too small for its queues.
  EXPECT_NE(set_inflight(fe, Inflight{64, 0, 1, kQueueSize, 0}, fd.get()), 0u);
  // A region larger than the file behind it (a mapping past its end would SIGBUS us).
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size * 4, 0, 1, kQueueSize, 0}, fd.get()), 0u);
  // An offset whose end would wrap around 2^64 past the file-size check.
  EXPECT_NE(
      set_inflight(fe, Inflight{good.mmap_size, ~uint64_t{0} << 12, 1, kQueueSize, 0}, fd.get()),
      0u);
  // A file that could shrink under the mapping.
  UniqueFd unsealed(::memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(unsealed.get(), static_cast<off_t>(good.mmap_size)), 0);
  EXPECT_NE(set_inflight(fe, good, unsealed.get()), 0u);
  // Another region version.
  auto map = Mapping::map(good.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0,
                          "test view of the inflight region");
  ASSERT_TRUE(map.has_value());
  auto* header = reinterpret_cast<InflightHeader*>(map->bytes());
  header->version = 9;
  EXPECT_NE(set_inflight(fe, good, fd.get()), 0u);
  // A region initialised for 32 entries, offered as one for 16.
  header->version = kInflightVersion;
  header->desc_num = kQueueSize;
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size, 0, 1, 16, 0}, fd.get()), 0u);
  // No queues, more than the device has, or a size that is not a power of two.
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size, 0, 0, kQueueSize, 0}, fd.get()), 0u);
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size * 2, 0, 2, kQueueSize, 0}, fd.get()), 0u);
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size, 0, 1, 48, 0}, fd.get()), 0u);
  // An offset off the page grid.
  EXPECT_NE(set_inflight(fe, Inflight{good.mmap_size, 100, 1, kQueueSize, 0}, fd.get()), 0u);
  expect_alive(fe);

  // A fresh region for 16 entries is taken, but a 32-entry vring cannot start on it.
  UniqueFd small_fd;
  const Inflight small = get_inflight(fe, small_fd, 1, 16);
  ASSERT_TRUE(small_fd.valid());
  ASSERT_EQ(set_inflight(fe, small, small_fd.get()), 0u);
  SharedRing mismatch(fe, 0, kQueueSize);  // its KICK start fails (logged), the ring stays idle
  fe.send(SET_VRING_KICK, uint64_t{0}, mismatch.kick.get(), kNeedReply);
  EXPECT_NE(fe.recv_u64(SET_VRING_KICK), 0u) << "queue size mismatch at the vring's start";
  expect_alive(fe);

  // The good region, then the ring serves a request: the backend survived all of the above.
  fe.send(GET_VRING_BASE, VringState{0, 0});
  (void)fe.recv_reply(GET_VRING_BASE);
  header->version = 0;  // fresh again
  ASSERT_EQ(set_inflight(fe, good, fd.get()), 0u);
  fe.send(SET_VRING_KICK, uint64_t{0}, mismatch.kick.get(), kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_VRING_KICK), 0u);
  DriverRing& d = *mismatch.ring;
  const uint64_t out = post(d, 0);
  mismatch.notify();
  ASSERT_TRUE(wait_used(d, 1));
  uint64_t got = 0;
  std::memcpy(&got, d.bytes(out, 8).data(), 8);
  EXPECT_EQ(got, value_of(0) * 3 + 1);
  // Not while the ring runs: its worker writes the region being replaced.
  EXPECT_NE(set_inflight(fe, good, fd.get()), 0u) << "SET_INFLIGHT_FD while vring 0 runs";
  expect_alive(fe);
  fe.send(GET_VRING_BASE, VringState{0, 0});  // stops the worker: its region stores are done
  (void)fe.recv_reply(GET_VRING_BASE);
  EXPECT_EQ(header->version, kInflightVersion);
  EXPECT_EQ(header->used_idx, 1);
}

// GET_INFLIGHT_FD's reply: a region at offset 0 for the layout asked, the device's largest queue
// size included.
TEST(VhostUserInflight, GetInflightFdDescribesTheRegionForTheLayoutAsked) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  negotiate(fe);
  UniqueFd fd;
  const Inflight got = get_inflight(fe, fd, 1, h.device.max_queue_size());
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(got.mmap_size, inflight_queue_bytes(h.device.max_queue_size()));
  EXPECT_EQ(got.mmap_offset, 0u);
  EXPECT_EQ(got.num_queues, 1u);
  EXPECT_EQ(got.queue_size, h.device.max_queue_size());
  EXPECT_EQ(get_inflight(fe, fd, 1, 2 * h.device.max_queue_size()).mmap_size, 0u);
}

// A sealed memfd of `bytes` bytes (sparse), as a frontend may make its own region.
UniqueFd sealed_memfd(uint64_t bytes) {
  UniqueFd fd(::memfd_create("region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(bytes)), 0);
  EXPECT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
  return fd;
}

// SET_INFLIGHT_FD takes a region at any page-aligned offset and of up to 4 GiB, not more.
TEST(VhostUserInflight, SetInflightFdTakesAPageOffsetAndAtMost4GiB) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  negotiate(fe);
  const uint64_t bytes = inflight_queue_bytes(kQueueSize);
  const UniqueFd paged = sealed_memfd(4096 + bytes);
  EXPECT_EQ(set_inflight(fe, Inflight{bytes, 4096, 1, kQueueSize, 0}, paged.get()), 0u);
  constexpr uint64_t k4GiB = uint64_t{1} << 32;
  const UniqueFd big = sealed_memfd(k4GiB + 4096);
  EXPECT_EQ(set_inflight(fe, Inflight{k4GiB, 0, 1, kQueueSize, 0}, big.get()), 0u);
  EXPECT_NE(set_inflight(fe, Inflight{k4GiB + 4096, 0, 1, kQueueSize, 0}, big.get()), 0u);
  expect_alive(fe);
}

}  // namespace
}  // namespace pepita::virtio::vhost_user
