// virtio-blk request path on the host, driven by a replay harness: the harness plays Linux's
// virtio_blk driver (header + data + status chains in guest RAM, avail ring publish, used ring
// reap) and BlkDevice::process serves the ring, as the vhost-user queue thread does after a kick.
// Guest timings under QEMU TCG (software CPU) say nothing about performance, so none are given.
//
// Anchor: the same target and trace submitted directly through BlockDevice::submit with the same
// batch depth, no virtqueue. ours/anchor (time) is what the ring + parsing + copies add.
// Alternated rounds; req/s on the wall clock (one thread, no I/O wait), median [min-max].
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bench_util.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/zram/zram_disk.hpp"

namespace {
using namespace pepita;
using namespace pepita::virtio;
namespace v = abi::virtio;
namespace vb = abi::virtio_blk;
namespace pb = pepita::bench;

constexpr uint16_t kQueueSize = 256;
constexpr uint16_t kBatch = 64;  // chains in flight per kick (the driver's queue depth)
constexpr uint64_t kCapacity = 64ull << 20;
constexpr int kReps = 5;

struct Workload {
  const char* name;
  const char* target;
  uint32_t type;
  uint32_t bytes;     // per request
  uint32_t segments;  // data descriptors per request (1 = served in place, >1 = bounce)
  size_t requests;
};

struct Sync final : blk_mq::Completion {
  int res = 0;
  void complete(int r) noexcept override { res = r; }
};

// A fresh target; for read workloads every block the trace reads is written first (reads of
// never-written blocks are a no-op fast path on both sides and would measure nothing).
std::unique_ptr<blk_mq::BlockDevice> make_disk(const Workload& w,
                                               const std::vector<uint64_t>& sectors) {
  std::unique_ptr<blk_mq::BlockDevice> disk;
  if (std::strcmp(w.target, "mem") == 0) {
    disk = std::move(blk_mq::MemDisk::create({.capacity_bytes = kCapacity}).value());
  } else {
    zram::ZramDiskConfig c;
    c.store.disksize = kCapacity;
    disk = std::move(zram::ZramDisk::create(c).value());
  }
  if (w.type == vb::T_IN) {
    std::vector<std::byte> buf(w.bytes);
    for (size_t i = 0; i < buf.size(); i += 64) buf[i] = std::byte(i >> 6);
    Sync c;
    blk_mq::Request r;
    r.op = blk_mq::Op::Write;
    r.nr_sectors = w.bytes / 512;
    r.data = buf.data();
    r.completion = &c;
    for (uint64_t s : sectors) {
      r.sector = s;
      disk->submit(0, r);
    }
  }
  return disk;
}

std::vector<uint64_t> make_sectors(const Workload& w) {
  std::mt19937_64 rng(42);
  const uint64_t slots = kCapacity / w.bytes;
  std::vector<uint64_t> s(w.requests);
  for (auto& x : s) x = (rng() % slots) * (w.bytes / 512);
  return s;
}

// Guest RAM layout: descriptor table, avail, used, then per-slot header/data/status areas.
struct Ring {
  static constexpr uint64_t kDesc = 0, kAvail = 0x10000, kUsed = 0x20000, kSlots = 0x100000;
  memory::GuestMemory mem;
  Queue q;
  uint16_t avail = 0;
  uint16_t used_seen = 0;
  uint32_t bytes, segments;

  Ring(uint32_t b, uint32_t segs)
      : mem(std::move(memory::GuestMemory::anonymous(PhysAddr(0), 64ull << 20).value())),
        bytes(b),
        segments(segs) {
    q = Queue::activate({kQueueSize, PhysAddr(kDesc), PhysAddr(kAvail), PhysAddr(kUsed)}, mem,
                        {.event_idx = true, .indirect = false})
            .value();
    // Fill some data so writes carry non-trivial (compressible-ish) content.
    auto all = mem.backing();
    for (size_t i = kSlots; i < all.size(); i += 64) all[i] = std::byte(i >> 6);
  }
  uint64_t slot_base(uint16_t slot) const { return kSlots + uint64_t{slot} * (bytes + 4096); }

  // Chain for `slot` (descriptors slot*(segs+2)...): header, data segments, status.
  void post(uint16_t slot, uint32_t type, uint64_t sector) {
    const uint16_t first = static_cast<uint16_t>(slot * (segments + 2));
    const uint64_t base = slot_base(slot);
    (void)mem.write(PhysAddr(base), vb::RequestHeader{type, 0, sector});
    uint16_t d = first;
    auto put = [&](uint64_t addr, uint32_t len, uint16_t flags) {
      (void)mem.write(PhysAddr(16ull * d), v::Desc{addr, len, flags, static_cast<uint16_t>(d + 1)});
      ++d;
    };
    put(base, 16, v::DESC_F_NEXT);
    const uint32_t seg = bytes / segments;
    const uint16_t wflag = type == vb::T_IN ? v::DESC_F_WRITE : 0;
    for (uint32_t i = 0; i < segments; ++i) {
      put(base + 4096 + uint64_t{i} * seg, seg, static_cast<uint16_t>(v::DESC_F_NEXT | wflag));
    }
    put(base + 64, 1, v::DESC_F_WRITE);
    (void)mem.write(PhysAddr(kAvail + 4 + 2ull * (avail % kQueueSize)), first);
    ++avail;
  }
  void publish() {
    (void)mem.write(PhysAddr(kAvail + 2), avail);
    (void)mem.write(PhysAddr(kAvail + 4 + 2ull * kQueueSize), static_cast<uint16_t>(avail - 1));
  }
  size_t reap() {
    const uint16_t idx = mem.read<uint16_t>(PhysAddr(kUsed + 2)).value();
    const size_t n = static_cast<uint16_t>(idx - used_seen);
    used_seen = idx;
    return n;
  }
};

// Chains per kick: kBatch, or fewer when each chain's descriptors would overflow the table (the
// driver would use indirect descriptors there; the same depth is given to the anchor).
size_t batch_for(const Workload& w) {
  return std::min<size_t>(kBatch, kQueueSize / (w.segments + 2));
}

double run_virtio(const Workload& w, const std::vector<uint64_t>& sectors) {
  auto dev = blk::BlkDevice::create(make_disk(w, sectors), {.num_queues = 1}).value();
  (void)dev->activate(dev->features());
  Ring ring(w.bytes, w.segments);
  const size_t batch = batch_for(w);
  const auto t0 = std::chrono::steady_clock::now();
  size_t done = 0;
  for (size_t i = 0; i < sectors.size();) {
    const size_t n = std::min<size_t>(batch, sectors.size() - i);
    for (size_t k = 0; k < n; ++k) ring.post(static_cast<uint16_t>(k), w.type, sectors[i + k]);
    ring.publish();
    if (auto r = dev->process(0, ring.q); !r) {
      std::fprintf(stderr, "%s: %s\n", w.name, r.error().to_string().c_str());
      std::abort();
    }
    done += ring.reap();
    i += n;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (done != sectors.size()) {
    std::fprintf(stderr, "%s: %zu of %zu requests completed\n", w.name, done, sectors.size());
    std::abort();
  }
  return s;
}

double run_direct(const Workload& w, const std::vector<uint64_t>& sectors) {
  auto disk = make_disk(w, sectors);
  // Same content shape as the ring's buffers (a zram page full of one byte would take zram's
  // same-filled fast path and flatter the anchor).
  std::vector<std::byte> buf(uint64_t{kBatch} * w.bytes);
  for (size_t i = 0; i < buf.size(); i += 64) buf[i] = std::byte(i >> 6);
  std::vector<Sync> comps(kBatch);
  std::vector<blk_mq::Request> reqs(kBatch);
  const size_t batch = batch_for(w);
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < sectors.size();) {
    const size_t n = std::min<size_t>(batch, sectors.size() - i);
    for (size_t k = 0; k < n; ++k) {
      auto& r = reqs[k];
      r.op = w.type == vb::T_IN ? blk_mq::Op::Read : blk_mq::Op::Write;
      r.sector = sectors[i + k];
      r.nr_sectors = w.bytes / 512;
      r.tag = static_cast<uint32_t>(k);
      r.data = buf.data() + k * w.bytes;
      r.completion = &comps[k];
      disk->submit(0, r);
      if (comps[k].res < 0) {
        std::fprintf(stderr, "%s: direct request failed %d\n", w.name, comps[k].res);
        std::abort();
      }
    }
    i += n;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const Workload workloads[] = {
      {"mem 4K randwrite", "mem", vb::T_OUT, 4096, 1, 100000},
      {"mem 4K randread", "mem", vb::T_IN, 4096, 1, 100000},
      {"mem 64K write, 16 segs", "mem", vb::T_OUT, 65536, 16, 10000},
      {"mem 64K read, 16 segs", "mem", vb::T_IN, 65536, 16, 10000},
      {"zram 4K randwrite", "zram", vb::T_OUT, 4096, 1, 50000},
      {"zram 4K randread", "zram", vb::T_IN, 4096, 1, 50000},
  };
  pb::print_load();
  char title[200];
  std::snprintf(title, sizeof title,
                "virtio-blk request path, host replay (queue size %u, %u chains per kick). Guest "
                "(TCG) timings are meaningless and not shown.",
                kQueueSize, kBatch);
  pb::Table table(title);
  for (const auto& w : workloads) {
    auto sectors = make_sectors(w);
    auto [ours, anchor] = pb::alternate(
        pb::rounds(kReps), [&] { return run_virtio(w, sectors); },
        [&] { return run_direct(w, sectors); });
    const double n = static_cast<double>(w.requests);
    auto rate = [n](double s) { return n / s; };
    table.row(w.name, "BlockDevice::submit", pb::Clock::wall, "req/s", pb::map(ours, rate),
              pb::map(anchor, rate), pb::Kind::rate);
  }
  table.note(
      "anchor: the same target and trace submitted directly at the same batch depth, no "
      "virtqueue");
  table.print();
  return 0;
}
