// ublk queue handling on the host, driven by a replay harness: this kernel has no ublk driver, and
// timings under the test guest's software CPU mean nothing, so we measure the server's own
// per-request path (descriptor parse -> BlockDevice -> commit batch) with the kernel replaced by a
// loop that refills each committed tag with the next request of a trace, as ublk_drv would.
//
// Anchor: the same target and trace submitted directly through BlockDevice::submit, without the
// ublk queue layer. ours/anchor (time) is what the ublk request handling adds per request.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "bench_util.hpp"
#include "pepita/ublk/queue.hpp"
#include "pepita/ublk/targets.hpp"

namespace {
using namespace pepita;
using namespace pepita::ublk;
namespace u = abi::ublk;
namespace pb = pepita::bench;

constexpr uint16_t kDepth = 64;
constexpr uint32_t kMaxIo = 128 << 10;
constexpr int kReps = 5;

struct Workload {
  const char* name;
  TargetKind kind;
  const char* comp;
  uint8_t op;
  uint32_t sectors;  // per request
  bool random;
  size_t requests;
};

std::vector<u::IoDesc> make_trace(const Workload& w, uint64_t capacity_sectors) {
  std::mt19937_64 rng(42);
  std::vector<u::IoDesc> trace(w.requests);
  const uint64_t slots = capacity_sectors / w.sectors;
  for (size_t i = 0; i < trace.size(); ++i) {
    trace[i].op_flags = w.op;
    trace[i].nr_sectors = w.sectors;
    trace[i].start_sector = (w.random ? rng() % slots : i % slots) * w.sectors;
  }
  return trace;
}

void fill_compressible(std::byte* p, size_t n) {
  static const char text[] =
      "pepita ublk replay: moderately compressible block payload 0123456789 ";
  for (size_t i = 0; i < n; ++i) p[i] = std::byte(text[(i * 7 + i / 4096) % (sizeof text - 1)]);
}

// Replays the trace through QueueHandler: every committed tag is refilled at once.
double run_ours(blk_mq::BlockDevice& dev, const std::vector<u::IoDesc>& trace,
                std::vector<std::byte>& buffers) {
  std::vector<u::IoDesc> descs(kDepth);
  QueueHandler q(dev, 0, descs, buffers,
                 {.capacity_sectors = dev.info().capacity_sectors, .max_io_bytes = kMaxIo});
  size_t next = 0;
  size_t done = 0;
  int64_t errors = 0;
  std::vector<uint16_t> free_tags;
  for (uint16_t t = 0; t < kDepth; ++t) free_tags.push_back(t);
  const auto t0 = std::chrono::steady_clock::now();
  while (done < trace.size()) {
    for (uint16_t tag : free_tags) {
      if (next == trace.size()) break;
      descs[tag] = trace[next++];
      q.on_request(tag);
    }
    free_tags.clear();
    done += q.drain([&](uint16_t tag, int32_t res) {
      errors += res < 0;
      free_tags.push_back(tag);
    });
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (errors != 0)
    std::fprintf(stderr, "ours: %lld requests failed\n", static_cast<long long>(errors));
  return s;
}

struct CountingCompletion final : blk_mq::Completion {
  int64_t errors = 0;
  void complete(int res) noexcept override { errors += res < 0; }
};

double run_anchor(blk_mq::BlockDevice& dev, const std::vector<u::IoDesc>& trace,
                  std::vector<std::byte>& buffers) {
  CountingCompletion completion;
  blk_mq::Request req;
  req.completion = &completion;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < trace.size(); ++i) {
    const u::IoDesc& d = trace[i];
    const uint32_t tag = static_cast<uint32_t>(i % kDepth);
    req.op = static_cast<blk_mq::Op>(d.op_flags & 0xff);
    req.sector = d.start_sector;
    req.nr_sectors = d.nr_sectors;
    req.tag = tag;
    req.data = buffers.data() + size_t{tag} * kMaxIo;
    dev.submit(0, req);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (completion.errors != 0)
    std::fprintf(stderr, "anchor: %lld requests failed\n",
                 static_cast<long long>(completion.errors));
  return s;
}

}  // namespace

int main() {
  const uint64_t size = 64ull << 20;
  const Workload workloads[] = {
      {"null 4K rand read", TargetKind::Null, "lz4", u::IO_OP_READ, 8, true, 1'000'000},
      {"null 64K seq write", TargetKind::Null, "lz4", u::IO_OP_WRITE, 128, false, 1'000'000},
      {"zram-lz4 4K rand write", TargetKind::Zram, "lz4", u::IO_OP_WRITE, 8, true, 100'000},
      {"zram-lz4 4K rand read", TargetKind::Zram, "lz4", u::IO_OP_READ, 8, true, 100'000},
      {"zram-zstd 4K rand write", TargetKind::Zram, "zstd", u::IO_OP_WRITE, 8, true, 50'000},
      {"zram-zstd 64K seq read", TargetKind::Zram, "zstd", u::IO_OP_READ, 128, false, 10'000},
  };
  pb::print_load();
  char title[200];
  std::snprintf(
      title, sizeof title,
      "ublk queue handling, host replay harness (no kernel ublk here; depth %u, 1 queue): "
      "ours = descriptor parse + target + commit batch via QueueHandler",
      kDepth);
  pb::Table table(title);
  std::vector<std::byte> buffers(size_t{kDepth} * kMaxIo);
  fill_compressible(buffers.data(), buffers.size());
  for (const Workload& w : workloads) {
    TargetSpec spec;
    spec.kind = w.kind;
    spec.size_bytes = size;
    spec.compression = w.comp;
    spec.queue_depth = kDepth;
    auto dev = make_target(spec);
    if (!dev) {
      std::fprintf(stderr, "%s: %s\n", w.name, dev.error().to_string().c_str());
      return 1;
    }
    if (w.kind == TargetKind::Zram) {  // populate so reads decompress real pages
      Workload fill = w;
      fill.op = u::IO_OP_WRITE;
      fill.random = false;
      fill.requests = size / (uint64_t{w.sectors} << 9);
      run_ours(**dev, make_trace(fill, (*dev)->info().capacity_sectors), buffers);
    }
    const auto trace = make_trace(w, (*dev)->info().capacity_sectors);
    auto [ours, anchor] = pb::alternate(
        pb::rounds(kReps), [&] { return run_ours(**dev, trace, buffers); },
        [&] { return run_anchor(**dev, trace, buffers); });
    const double n = static_cast<double>(trace.size());
    auto rate = [n](double s) { return n / s; };
    table.row(w.name, "BlockDevice::submit", pb::Clock::wall, "req/s", pb::map(ours, rate),
              pb::map(anchor, rate), pb::Kind::rate);
  }
  table.note("anchor: the same target and trace submitted directly, without the ublk queue layer");
  table.print();
  return 0;
}
