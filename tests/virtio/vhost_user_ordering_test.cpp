// Write ordering of `pepita vhost-user-blk` on a file target, what makes a server that is killed
// mid-I/O safe: a write is acknowledged in the used ring only after it reached the file, and a
// FLUSH only after the file's fdatasync returned. The disk under the device delays every request
// by a few milliseconds, so an early acknowledgement would be seen by the frontend, which reads
// the file through its own descriptor the moment each used entry appears.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "driver_ring.hpp"
#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/vhost_user.hpp"
#include "vhost_frontend.hpp"

namespace pepita::virtio::vhost_user {
namespace {
using vhost_user::testing::Frontend;
using vhost_user::testing::SharedRing;
using virtio::testing::DriverRing;
namespace v = abi::virtio;
namespace vb = abi::virtio_blk;
using namespace std::chrono_literals;

// Forwards every request to `inner` after a delay, from its own thread, and records which
// requests the inner disk completed (before passing the completion up).
class SlowDisk final : public blk_mq::BlockDevice {
 public:
  explicit SlowDisk(std::unique_ptr<blk_mq::BlockDevice> inner)
      : inner_(std::move(inner)), thread_([this] { run(); }) {}
  ~SlowDisk() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  const blk_mq::DeviceInfo& info() const noexcept override { return inner_->info(); }
  void submit(uint32_t queue, const blk_mq::Request& req) noexcept override {
    auto p = std::make_unique<Pending>();
    p->owner = this;
    p->outer = req.completion;
    p->req = req;
    p->req.completion = p.get();
    p->queue = queue;
    std::lock_guard lock(mu_);
    queue_.push_back(p.get());
    all_.push_back(std::move(p));
    cv_.notify_all();
  }
  /// Writes the inner disk completed at `sector`; flushes it completed.
  int writes_done(uint64_t sector) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& d : done_) n += d.op == blk_mq::Op::Write && d.sector == sector ? 1 : 0;
    return n;
  }
  int flushes_done() {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const auto& d : done_) n += d.op == blk_mq::Op::Flush ? 1 : 0;
    return n;
  }

 private:
  struct Pending final : blk_mq::Completion {
    SlowDisk* owner = nullptr;
    blk_mq::Completion* outer = nullptr;
    blk_mq::Request req;
    uint32_t queue = 0;
    void complete(int res) noexcept override {
      {
        std::lock_guard lock(owner->mu_);
        owner->done_.push_back({req.op, req.sector, res});
      }
      outer->complete(res);
    }
  };
  struct Done {
    blk_mq::Op op;
    uint64_t sector;
    int res;
  };
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Pending* p = queue_.front();
      queue_.pop_front();
      lock.unlock();
      std::this_thread::sleep_for(3ms);
      inner_->submit(p->queue, p->req);
      lock.lock();
    }
  }

  std::unique_ptr<blk_mq::BlockDevice> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending*> queue_;
  std::vector<std::unique_ptr<Pending>> all_;  // alive until the disk goes
  std::vector<Done> done_;
  bool stop_ = false;
  std::thread thread_;  // last: joined before the members it uses go
};

struct TempFile {
  TempFile() {
    char name[] = "/tmp/pepita-vhost-order-XXXXXX";
    fd.reset(::mkstemp(name));
    path = name;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  UniqueFd fd;  // the frontend's own view of the file
  std::string path;
};

TEST(VhostUserOrdering, WritesAndFlushesAreAckedOnlyAfterTheyReachedTheFile) {
  TempFile file;
  ASSERT_TRUE(file.fd.valid());
  auto inner = blk_mq::FileDisk::create({.path = file.path, .capacity_bytes = 4 << 20});
  ASSERT_TRUE(inner.has_value()) << inner.error().to_string();
  auto slow_owned = std::make_unique<SlowDisk>(std::move(*inner));
  SlowDisk& slow = *slow_owned;
  auto device = blk::BlkDevice::create(std::move(slow_owned), {.num_queues = 1}).value();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd frontend_fd(sv[0]);
  auto backend = Backend::adopt(UniqueFd(sv[1]), *device).value();
  Result<void> served;
  std::thread server([&] { served = backend->serve_one(); });

  Frontend fe(frontend_fd.get());
  fe.send(SET_PROTOCOL_FEATURES, uint64_t{1} << protocol::REPLY_ACK);
  const uint64_t acked = v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_EVENT_IDX) |
                         v::feature_bit(F_PROTOCOL_FEATURES) | v::feature_bit(vb::F_FLUSH);
  fe.send(SET_FEATURES, acked);
  SharedRing sr(fe, 0, 64);
  DriverRing& d = *sr.ring;

  // Eight 4 KiB writes, each of its own byte value, published as one batch.
  constexpr uint16_t kWrites = 8;
  struct Posted {
    uint64_t sector;
    uint64_t status;
    uint8_t value;
    uint32_t kind;
  };
  std::vector<Posted> posted;  // indexed by chain head / 3
  auto post = [&](uint32_t type, uint64_t sector, uint8_t value) {
    const auto head = static_cast<uint16_t>(3 * posted.size());
    const uint64_t hdr = d.alloc(16);
    vb::RequestHeader rh{type, 0, sector};
    d.fill(hdr, &rh, sizeof rh);
    const uint64_t status = d.alloc(1);
    const uint8_t unset = 0xee;
    d.fill(status, &unset, 1);
    if (type == vb::T_OUT) {
      const uint64_t buf = d.alloc(4096);
      std::vector<uint8_t> data(4096, value);
      d.fill(buf, data.data(), data.size());
      d.desc(head, hdr, 16, v::DESC_F_NEXT, head + 1);
      d.desc(head + 1u, buf, 4096, v::DESC_F_NEXT, head + 2);
      d.desc(head + 2u, status, 1, v::DESC_F_WRITE);
    } else {
      d.desc(head, hdr, 16, v::DESC_F_NEXT, head + 1);
      d.desc(head + 1u, status, 1, v::DESC_F_WRITE);
    }
    posted.push_back({sector, status, value, type});
    d.publish(head);
  };
  // Watches the used ring; for each new entry, checks at that instant what the file holds.
  int checked = 0;
  auto observe_until = [&](uint16_t used_target) {
    uint16_t seen = d.used_idx();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (seen != used_target && std::chrono::steady_clock::now() < deadline) {
      const uint16_t now = d.used_idx();
      for (; seen != now; ++seen) {
        const Posted& p = posted.at(d.used(seen).id / 3);
        EXPECT_EQ(static_cast<uint8_t>(d.bytes(p.status, 1)[0]), vb::S_OK);
        if (p.kind == vb::T_OUT) {
          EXPECT_EQ(slow.writes_done(p.sector), 1) << "write acked before the disk completed it";
          std::vector<uint8_t> got(4096);
          ASSERT_EQ(::pread(file.fd.get(), got.data(), got.size(), p.sector * 512), 4096);
          EXPECT_EQ(got, std::vector<uint8_t>(4096, p.value))
              << "used entry for sector " << p.sector << " visible before the file holds it";
        } else {
          EXPECT_EQ(slow.flushes_done(), 1) << "flush acked before fdatasync returned";
        }
        ++checked;
      }
    }
    ASSERT_EQ(seen, used_target) << "requests not completed within 10 s";
  };

  for (uint16_t i = 0; i < kWrites; ++i) post(vb::T_OUT, 8u * i, static_cast<uint8_t>(0x10 + i));
  sr.notify();
  observe_until(kWrites);
  // As Linux's blk-mq: a FLUSH once the writes it must cover have completed.
  post(vb::T_FLUSH, 0, 0);
  sr.notify();
  observe_until(kWrites + 1);
  EXPECT_EQ(checked, kWrites + 1);
  EXPECT_EQ(device->stats(0).failed, 0u);

  backend->stop();
  server.join();
  EXPECT_TRUE(served.has_value());
}

}  // namespace
}  // namespace pepita::virtio::vhost_user
